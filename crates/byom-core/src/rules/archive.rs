//! Rules about the archive itself (`BYOM0xx`): gzip framing, tar structure, hostile members
//! and size limits. The checks run inside the streaming walk ([`crate::archive`]), which
//! raises these issues as soon as the offending bytes pass.

use crate::report::Severity::{Error, Warning};
use crate::rules::Rule;

pub const NOT_GZIP: Rule = Rule {
    code: "BYOM001",
    name: "not-gzip",
    severity: Error,
    summary: "The package is not a gzip-compressed file.",
    hint: "Create the package with `tar czf model.tar.gz config.yaml mochi.json export_artifacts` (the `z` gzips it).",
    doc: "Model artifact is not a valid tar.gz file. Please provide a gzipped tar archive.\n\n\
The first two bytes of a gzip file are `1f 8b`. A plain (uncompressed) `.tar` gets the same \
code with a message saying so; a zip file or a bare `.pt` (which is a zip) is named as such.\n\n\
Example: `tar cf model.tar.gz ...` (no `z`) produces an uncompressed tar with a misleading name.",
};

pub const CORRUPT_GZIP: Rule = Rule {
    code: "BYOM002",
    name: "corrupt-gzip",
    severity: Error,
    summary: "The gzip stream is truncated or corrupt (bad deflate data, CRC or size mismatch).",
    hint: "The file was cut short or damaged in transfer: download or copy it again, then check it with `gzip -t model.tar.gz`.",
    doc: "The deflate data could not be decoded, the stream ends before its end marker, or the \
CRC-32 / length in a member's 8-byte trailer does not match the decompressed bytes.\n\n\
Example: an upload interrupted half way, or a file copied in text mode.",
};

pub const TRAILING_DATA: Rule = Rule {
    code: "BYOM003",
    name: "trailing-data",
    severity: Error,
    summary: "Bytes that are not gzip follow the last gzip member.",
    hint: "Re-create the package with `tar czf`; do not append anything to the .tar.gz.",
    doc: "Several gzip members one after another are valid gzip (`cat a.gz b.gz`), but anything \
else after the last member is not part of the package and is refused rather than silently \
ignored, so every reader sees the same bytes.",
};

pub const CORRUPT_TAR: Rule = Rule {
    code: "BYOM004",
    name: "corrupt-tar",
    severity: Error,
    summary: "The decompressed content is not a valid tar archive.",
    hint: "Create the package with `tar czf model.tar.gz ...` (or Python's `tarfile.open(path, \"w:gz\")`); gzip a single file is not enough.",
    doc: "A tar header has a bad checksum or an unreadable field, the archive ends in the middle \
of a member, or the gzipped content is not a tar at all (e.g. `gzip model.pt`).\n\n\
Also refused: headers that tar tools resolve differently, so that what is validated could \
differ from what GNU tar or Python's tarfile extract — a PAX global header (`g`) that sets \
`path`, `size` or `linkpath`; two different names for one member (GNU `L` and PAX `path`, two \
`L` records, two PAX paths) or two sizes; PAX `GNU.sparse.*` keys; prefix bytes in a header \
without POSIX ustar magic; a regular-file member (`0`, `7`) whose name ends with `/`. No \
standard tar writes these.",
};

pub const UNSAFE_PATH: Rule = Rule {
    code: "BYOM005",
    name: "unsafe-path",
    severity: Error,
    summary: "A member has an absolute path or a `..` component.",
    hint: "Create the archive from inside the package folder with relative paths: `tar czf model.tar.gz -C folder .`.",
    doc: "Members such as `/etc/passwd` or `../../x` would be written outside the extraction \
folder by a naive extractor (path traversal). They are refused and never read.",
};

pub const LINK_OR_SPECIAL: Rule = Rule {
    code: "BYOM006",
    name: "link-or-special",
    severity: Error,
    summary: "A member is a symlink, hardlink, device, FIFO or other special entry.",
    hint: "Package real files only: `tar czf --dereference model.tar.gz ...` copies the files that links point to.",
    doc: "Links can point outside the package (or at other members) and devices or FIFOs are not \
files at all; a model package only needs regular files and folders.",
};

pub const DUPLICATE_MEMBER: Rule = Rule {
    code: "BYOM007",
    name: "duplicate-member",
    severity: Error,
    summary: "The same path appears twice in the archive.",
    hint: "Re-create the archive so every file appears once (`tar czf` from a clean folder; do not `tar rf` append).",
    doc: "`config.yaml` and `./config.yaml` are the same file. Extractors disagree on which copy \
wins (first or last), so the browser and the server could check different files; a duplicate \
is therefore an error. Only the first copy is read.",
};

pub const COMPRESSION_RATIO: Rule = Rule {
    code: "BYOM008",
    name: "compression-ratio",
    severity: Error,
    summary: "The package decompresses far more than real model files do (a decompression bomb).",
    hint: "Model weights barely compress; if this package is genuine, raise `limits.max_compression_ratio` in the settings.",
    doc: "After `ratio_grace_bytes` of output, decompressed bytes may not exceed \
`max_compression_ratio` times the compressed bytes read. A few KiB that inflate to gigabytes \
of zeros are refused within milliseconds instead of filling memory or disk.",
};

pub const TOO_LARGE: Rule = Rule {
    code: "BYOM009",
    name: "too-large",
    severity: Error,
    summary: "The package decompresses to more than the total size limit.",
    hint:
        "Shrink the model (fp16, pruning) or raise `limits.max_uncompressed_bytes` in the settings.",
    doc: "The sum of decompressed bytes (and of the sizes declared in tar headers) may not exceed \
`max_uncompressed_bytes`.",
};

pub const TOO_MANY_ENTRIES: Rule = Rule {
    code: "BYOM010",
    name: "too-many-entries",
    severity: Error,
    summary: "The archive has more members than allowed.",
    hint: "A package needs four files; package only config.yaml, mochi.json and export_artifacts/.",
    doc: "More than `max_entries` members. Real packages have four files.",
};

pub const PATH_TOO_LONG: Rule = Rule {
    code: "BYOM011",
    name: "path-too-long",
    severity: Error,
    summary: "A member path is longer than allowed.",
    hint: "Use short file names; the package layout needs only `export_artifacts/<name>.pt`.",
    doc: "A member path (after GNU/PAX long-name records) is longer than `max_path_bytes`.",
};

pub const METADATA_TOO_LARGE: Rule = Rule {
    code: "BYOM012",
    name: "metadata-too-large",
    severity: Error,
    summary: "A metadata file is larger than the metadata size limit.",
    hint: "config.yaml, mochi.json and manifest.json are a few hundred bytes; remove embedded data or raise `limits.max_metadata_bytes`.",
    doc: "`config.yaml`, `mochi.json` and `export_artifacts/manifest.json` are read into memory, \
so each is capped at `max_metadata_bytes` (1 MiB by default).",
};

pub const APPLEDOUBLE_IGNORED: Rule = Rule {
    code: "BYOM013",
    name: "appledouble-ignored",
    severity: Warning,
    summary: "macOS metadata members (`._*`, `__MACOSX/`) were ignored.",
    hint: "On macOS create the archive with `COPYFILE_DISABLE=1 tar czf model.tar.gz ...` to leave them out.",
    doc: "macOS tar adds an AppleDouble `._name` file next to every file (extended attributes). \
They are not part of the model and are skipped.",
};

pub const NESTED_TOP_FOLDER: Rule = Rule {
    code: "BYOM014",
    name: "nested-top-folder",
    severity: Error,
    summary: "All files sit inside one top-level folder instead of at the archive root.",
    hint: "Create the archive from inside the folder: `tar czf model.tar.gz -C folder .`.",
    doc:
        "`tar czf model.tar.gz my-model/` stores `my-model/config.yaml`; the package format needs \
`config.yaml` at the root.",
};

pub const ALL: &[&Rule] = &[
    &NOT_GZIP,
    &CORRUPT_GZIP,
    &TRAILING_DATA,
    &CORRUPT_TAR,
    &UNSAFE_PATH,
    &LINK_OR_SPECIAL,
    &DUPLICATE_MEMBER,
    &COMPRESSION_RATIO,
    &TOO_LARGE,
    &TOO_MANY_ENTRIES,
    &PATH_TOO_LONG,
    &METADATA_TOO_LARGE,
    &APPLEDOUBLE_IGNORED,
    &NESTED_TOP_FOLDER,
];
