"""Three tar readers, one verdict: GNU tar, Python's tarfile and byom over header variants.

Issue 9.3 / 10: the compile worker once re-read packages with a second tar parser (the `tar`
crate) that ignored `L`/`x` records without magic and skipped typeflag '7' members, so it
compiled another file than the one validated. The compile path now uses byom-core's own reader
(one pass, crates/byom-compile/src/package.rs); this test holds that reader to the others.

Each variant is built here byte by byte (no tar library writes most of them): v7 / ustar / GNU
magic, typeflags '0' / NUL / '7', ustar prefixes, GNU `L` / `K` records and PAX `x` / `g`
headers, with and without magic, and combinations where readers could resolve a name
differently. For every variant:

- wherever byom says valid, GNU tar and tarfile list the same regular files, in the same order,
  with the same bytes, and byom's report (entries, sizes, the model file, what the metadata
  declare) agrees with them;
- wherever GNU tar and tarfile disagree with each other, byom says invalid;
- each variant's verdict is pinned (`expect_valid`), so a reader change shows up here.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers import REPO, run_byom

TINY_PT = (REPO / "crates" / "byom-core" / "tests" / "data" / "tiny_traced.pt").read_bytes()

CONFIG = (
    "dataset:\n  image_width: 224\n  image_height: 224\n  num_classes: 2\n"
    "  class_names:\n    - good\n    - defect\n"
).encode()
MOCHI = json.dumps(
    {
        "stages": [
            {
                "type": "classification",
                "input_shape": [1, 3, 224, 224],
                "output_shape": [1, 2],
                "num_classes": 2,
            }
        ],
        "model_info": {"name": "differential", "version": "1.0.0", "framework": "pytorch"},
    }
).encode()
MANIFEST = json.dumps(
    {
        "model_graph": {
            "stages": [{"type": "classification", "input_shape": [1, 3, 224, 224], "output_shape": [1, 2]}]
        },
        "input_shape": [1, 3, 224, 224],
        "compilable_models": [
            {"filename": "model.pt", "data_input_config": {"input": [1, 3, 224, 224]}, "framework": "PYTORCH"}
        ],
        "postprocessing": {"type": "softmax"},
    }
).encode()

PT = "export_artifacts/model.pt"
FILES = [
    ("config.yaml", CONFIG),
    ("mochi.json", MOCHI),
    ("export_artifacts/manifest.json", MANIFEST),
    (PT, TINY_PT),
]

MAGIC = {
    "ustar": b"ustar\x0000",  # POSIX
    "gnu": b"ustar  \x00",  # old GNU
    "v7": b"\x00" * 8,  # none
}


def header(
    name: bytes,
    size: int,
    typeflag: bytes = b"0",
    magic: str = "ustar",
    prefix: bytes = b"",
    linkname: bytes = b"",
    base256: bool = False,
) -> bytes:
    """One 512-byte header with a correct checksum."""
    h = bytearray(512)
    h[0 : len(name[:100])] = name[:100]
    h[100:108] = b"0000644\x00"
    h[108:116] = b"0001750\x00"
    h[116:124] = b"0001750\x00"
    if base256:
        h[124] = 0x80
        h[128:136] = size.to_bytes(8, "big")
    else:
        h[124:136] = b"%011o\x00" % size
    h[136:148] = b"14712345670\x00"
    h[156:157] = typeflag
    h[157 : 157 + len(linkname)] = linkname
    h[257:265] = MAGIC[magic]
    if magic != "v7":
        h[265:270] = b"user\x00"
        h[297:302] = b"user\x00"
    h[345 : 345 + len(prefix)] = prefix
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\x00 " % sum(h)
    return bytes(h)


def padded(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 512)


def member(name: str | bytes, data: bytes, **kw) -> bytes:
    name = name.encode() if isinstance(name, str) else name
    return header(name, len(data), **kw) + padded(data)


def pax(records: dict[str, str]) -> bytes:
    """PAX records: each '<len> key=value\\n', len counting itself."""
    out = b""
    for k, v in records.items():
        body = f" {k}={v}\n".encode()
        n = len(body) + 1
        while len(str(n)) + len(body) != n:
            n = len(str(n)) + len(body)
        out += str(n).encode() + body
    return out


def ext(typeflag: bytes, payload: bytes, magic: str = "ustar", name: bytes = b"././@LongLink") -> bytes:
    """An extension record (`L`, `K`, `x`, `g`) followed by its payload."""
    return header(name, len(payload), typeflag=typeflag, magic=magic) + padded(payload)


def archive(*parts: bytes) -> bytes:
    return b"".join(parts) + b"\x00" * 1024


def plain(magic: str = "ustar", typeflag: bytes = b"0", only: str | None = None, **kw) -> list[bytes]:
    """The four files, each a plain member; `only` limits the variation to one file."""
    out = []
    for name, data in FILES:
        if only is None or name == only:
            out.append(member(name, data, magic=magic, typeflag=typeflag, **kw))
        else:
            out.append(member(name, data))
    return out


def with_pt(pt_parts: bytes) -> list[bytes]:
    """The three metadata files plain, then `pt_parts` in place of the model member."""
    return [member(n, d) for n, d in FILES[:3]] + [pt_parts]


@dataclass
class Variant:
    name: str
    parts: list[bytes]
    expect_valid: bool
    about: str = ""
    extra: dict = field(default_factory=dict)


DECOY = b"decoy/model.pt"

VARIANTS = [
    Variant("ustar", plain("ustar"), True),
    Variant("gnu_magic", plain("gnu"), True),
    Variant("v7_no_magic", plain("v7"), True),
    Variant("v7_nul_typeflag", plain("v7", typeflag=b"\x00"), True, "typeflag NUL is a regular file"),
    Variant("ustar_nul_typeflag", plain("ustar", typeflag=b"\x00"), True),
    Variant("typeflag7_mochi", plain(typeflag=b"7", only="mochi.json"), True,
            "contiguous file: regular for GNU tar, tarfile and byom (the tar crate skipped it)"),
    Variant("typeflag7_pt", plain(typeflag=b"7", only=PT), True),
    Variant("typeflag7_all_v7", plain("v7", typeflag=b"7"), True),
    Variant("base256_size", plain(base256=True, only=PT), True, "GNU base-256 size field"),
    Variant("dot_slash_names", [member("./" + n, d) for n, d in FILES], True),
    Variant("with_directories",
            [header(b"./", 0, typeflag=b"5"), header(b"export_artifacts/", 0, typeflag=b"5")]
            + [member(n, d) for n, d in FILES], True),
    Variant("ustar_prefix", with_pt(member("model.pt", TINY_PT, prefix=b"export_artifacts")), True,
            "POSIX prefix field joins the name"),
    Variant("gnu_L_long_name", with_pt(ext(b"L", PT.encode() + b"\x00", "gnu") + member(DECOY, TINY_PT, magic="gnu")), True,
            "GNU long name replaces the header's name"),
    Variant("L_without_magic", with_pt(ext(b"L", PT.encode() + b"\x00", "v7") + member(DECOY, TINY_PT, magic="v7")), True,
            "an L record honoured without magic (the tar crate ignored it)"),
    Variant("L_without_nul", with_pt(ext(b"L", PT.encode(), "gnu") + member(DECOY, TINY_PT, magic="gnu")), True),
    Variant("gnu_K_long_link", with_pt(ext(b"K", b"somewhere\x00", "gnu") + member(PT, TINY_PT, magic="gnu")), True,
            "a long link name on a regular file means nothing"),
    Variant("pax_x_path", with_pt(ext(b"x", pax({"path": PT}), name=b"PaxHeaders/model.pt") + member(DECOY, TINY_PT)), True),
    Variant("pax_x_without_magic",
            with_pt(ext(b"x", pax({"path": PT}), "v7", name=b"PaxHeaders/model.pt") + member(DECOY, TINY_PT, magic="v7")), True,
            "an x record honoured without magic (the tar crate ignored it)"),
    Variant("pax_x_size", with_pt(ext(b"x", pax({"size": str(len(TINY_PT))})) + header(PT.encode(), 0) + padded(TINY_PT)), True,
            "the PAX size overrides the header's 0"),
    Variant("pax_x_harmless", with_pt(ext(b"x", pax({"mtime": "1.5", "uname": "x"})) + member(PT, TINY_PT)), True),
    Variant("pax_g_harmless", [ext(b"g", pax({"comment": "hello"}), name=b"pax_global_header")] + [member(n, d) for n, d in FILES], True),
    Variant("pax_x_linkpath_on_a_file", with_pt(ext(b"x", pax({"linkpath": "elsewhere"})) + member(PT, TINY_PT)), True),
    # Links and special members: refused by byom (only regular files are allowed).
    Variant("hardlink_to_mochi", [member(n, d) for n, d in FILES] + [header(b"extra.json", 0, typeflag=b"1", linkname=b"mochi.json")], False),
    Variant("symlink", [member(n, d) for n, d in FILES] + [header(b"extra.json", 0, typeflag=b"2", linkname=b"/etc/passwd")], False),
    Variant("unknown_typeflag", [member(n, d) for n, d in FILES] + [member("extra.bin", b"data", typeflag=b"Z")], False,
            "GNU tar extracts an unknown type as a file, tarfile does not call it regular"),
    # Readers disagree from here on: byom must refuse.
    Variant("pax_g_path", with_pt(ext(b"g", pax({"path": PT}), name=b"pax_global_header") + member(DECOY, TINY_PT)), False,
            "a global path: GNU tar applies it to the next members, tarfile does not"),
    Variant("pax_g_size_then_x", [ext(b"g", pax({"size": "3"}), name=b"pax_global_header")] + [member(n, d) for n, d in FILES], False,
            "a global size: applied by GNU tar, merged into later x records by tarfile"),
    Variant("L_then_x_differ", with_pt(ext(b"L", b"export_artifacts/other.pt\x00", "gnu") + ext(b"x", pax({"path": PT})) + member(DECOY, TINY_PT)), False,
            "two names: tarfile takes the first record, GNU tar the PAX one"),
    Variant("x_then_L_differ", with_pt(ext(b"x", pax({"path": PT})) + ext(b"L", b"export_artifacts/other.pt\x00", "gnu") + member(DECOY, TINY_PT)), False),
    Variant("two_L_differ", with_pt(ext(b"L", b"export_artifacts/other.pt\x00", "gnu") + ext(b"L", PT.encode() + b"\x00", "gnu") + member(DECOY, TINY_PT, magic="gnu")), False),
    Variant("pax_gnu_sparse_name", with_pt(ext(b"x", pax({"GNU.sparse.name": "export_artifacts/other.pt"})) + member(PT, TINY_PT)), False,
            "tarfile renames the member by GNU.sparse.name"),
    Variant("v7_prefix_bytes", with_pt(member("model.pt", TINY_PT, magic="v7", prefix=b"export_artifacts")), False,
            "a prefix field without ustar magic: tarfile joins it, GNU tar does not"),
    Variant("gnu_prefix_bytes", with_pt(member(PT, TINY_PT, magic="gnu", prefix=b"12345670123")), False,
            "GNU atime in the prefix area: tarfile reads it as a prefix"),
    Variant("nul_typeflag_trailing_slash_is_a_directory",
            [header(b"export_artifacts/", 0, typeflag=b"\x00")] + [member(n, d) for n, d in FILES], True),
    Variant("regular_typeflag_trailing_slash",
            [header(b"export_artifacts/", 0, typeflag=b"0")] + [member(n, d) for n, d in FILES], False,
            "GNU tar makes a directory, tarfile a regular file"),
    Variant("typeflag7_trailing_slash",
            [header(b"extra/", 0, typeflag=b"7")] + [member(n, d) for n, d in FILES], False),
    Variant("duplicate_mochi", [member(n, d) for n, d in FILES] + [member("mochi.json", MOCHI.replace(b"differential", b"second"))], False,
            "GNU tar and tarfile keep the last copy, byom read the first"),
]


def norm(name: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/".join(parts)


def gnu_tar(pkg: Path, dest: Path) -> list[tuple[str, bytes]] | str:
    """(path, bytes) of regular files as GNU tar extracts them, in archive order."""
    listing = subprocess.run(["tar", "-tvzf", str(pkg)], capture_output=True, timeout=60)
    if listing.returncode != 0:
        return f"tar -t failed: {listing.stderr.decode(errors='replace')}"
    dest.mkdir()
    ex = subprocess.run(["tar", "-xzf", str(pkg), "-C", str(dest), "--no-same-owner"], capture_output=True, timeout=60)
    if ex.returncode != 0:
        return f"tar -x failed: {ex.stderr.decode(errors='replace')}"
    names = []
    for line in listing.stdout.decode().splitlines():
        # "-rw-r--r-- user/user 9249 2016-... 12:34 export_artifacts/model.pt"; a contiguous
        # file (typeflag '7') shows as "C".
        fields = line.split(None, 5)
        if line[:1] in ("-", "C") and len(fields) == 6:
            names.append(norm(fields[5]))
    out = []
    for n in names:
        p = dest / n
        out.append((n, p.read_bytes() if p.is_file() else b"<missing after extraction>"))
    return out


def python_tar(pkg: Path) -> list[tuple[str, bytes]] | str:
    try:
        with tarfile.open(pkg, "r:gz") as t:
            return [(norm(m.name), t.extractfile(m).read()) for m in t.getmembers() if m.isreg()]
    except (tarfile.TarError, OSError, EOFError) as e:
        return f"tarfile failed: {e}"


def last_copy(files: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """What an extraction leaves: the last copy of each path."""
    return [(n, d) for n, d in dict(files).items()]


@pytest.mark.parametrize("v", VARIANTS, ids=[v.name for v in VARIANTS])
def test_three_readers_agree_where_byom_accepts(v: Variant, byom_bin, tmp_path):
    pkg = tmp_path / f"{v.name}.tar.gz"
    pkg.write_bytes(gzip.compress(archive(*v.parts), mtime=0))

    proc = run_byom(byom_bin, "validate", "--format", "json", pkg, text=True)
    assert proc.stdout, proc.stderr
    report = json.loads(proc.stdout)
    codes = [e["code"] for e in report["errors"]]

    gnu = gnu_tar(pkg, tmp_path / "gnu")
    py = python_tar(pkg)
    agree = not isinstance(gnu, str) and not isinstance(py, str) and last_copy(gnu) == last_copy(py)
    if not agree:
        assert not report["valid"], f"{v.name}: GNU tar {gnu!r:.300} vs tarfile {py!r:.300}, yet byom says valid"

    assert report["valid"] == v.expect_valid, f"{v.name} ({v.about}): byom valid={report['valid']} {codes}"
    if not report["valid"]:
        return

    # byom accepted: all three read the same files with the same bytes.
    assert not isinstance(gnu, str), gnu
    assert gnu == py, f"{v.name}: GNU tar and tarfile disagree"
    names = [n for n, _ in py]
    contents = dict(py)
    summary = report["summary"]
    assert [e for e in summary["entries"] if not e.endswith("/")] == names
    assert sorted(names) == sorted(n for n, _ in FILES)
    assert summary["uncompressed_bytes"] == sum(len(d) for d in contents.values())
    assert summary["model_file"] == PT
    assert summary["model_file_bytes"] == len(contents[PT]) == report["model"]["file_bytes"]
    assert contents[PT] == TINY_PT
    # What byom declares is what the extracted metadata say.
    mochi = json.loads(contents["mochi.json"])
    stage = mochi["stages"][0]
    assert summary["model_type"] == stage["type"]
    assert summary["input_shape"] == stage["input_shape"]
    assert summary["output_shape"] == stage["output_shape"]
    names_in_config = re.findall(r"^\s+- (\w+)$", contents["config.yaml"].decode(), re.M)
    assert summary["class_names"] == names_in_config
    assert json.loads(contents["export_artifacts/manifest.json"]) == json.loads(MANIFEST)
