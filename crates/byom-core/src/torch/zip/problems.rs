//! What can be wrong with a `.pt` zip, as types.
//!
//! Each [`ZipProblem`] variant is one rule (BYOM604, 606, 610, 613, 614, 615; `analyze` maps
//! them). The payloads carry the facts (offsets, names, budgets) so code and tests match on
//! variants instead of searching message text; their `Display` is the message the report
//! shows, byte for byte the text users already see — the report is the contract.
//!
//! A leaf module: every other part of the zip reader depends on it, it depends on none.

use std::fmt;

/// What went wrong, in terms the rules turn into issues.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZipProblem {
    /// Broken structure (→ BYOM604).
    #[error(transparent)]
    Corrupt(#[from] ZipCorruption),
    /// Local header and central directory disagree (→ BYOM606).
    #[error(transparent)]
    NameMismatch(#[from] DirectoryMismatch),
    /// A budget was exceeded (→ BYOM610).
    #[error(transparent)]
    Limit(#[from] ZipLimitHit),
    /// Two central-directory entries have the same name (→ BYOM613).
    #[error(transparent)]
    DuplicateName(#[from] DuplicateNames),
    /// Two names are equal once ASCII case is folded, as PyTorch's lookup compares (→ BYOM614).
    #[error(transparent)]
    CaseCollision(#[from] CaseCollisions),
    /// A name outside the archive folder PyTorch derives from the first entry (→ BYOM615).
    #[error(transparent)]
    OutsidePrefix(#[from] OutsidePrefix),
}

/// Broken zip structure (BYOM604): the file is not a zip torch would read as byom reads it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZipCorruption {
    #[error("unexpected bytes at offset {offset} where a zip record should start")]
    UnexpectedBytes { offset: u64 },
    /// torch compares raw name bytes; two different non-UTF-8 names could decode to the same
    /// text here. `torch.save` writes ASCII names.
    #[error("record name {name:?} at offset {offset} is not valid UTF-8")]
    LocalNameNotUtf8 { name: String, offset: u64 },
    #[error("record {name}: {error}")]
    Inflate {
        name: String,
        #[source]
        error: InflateError,
    },
    #[error("record {name} uses unsupported compression method {method}")]
    UnsupportedMethod { name: String, method: u16 },
    #[error("the .pt zip is truncated: it ends before its central directory")]
    Truncated,
    #[error("record {name}: {in_file} bytes in the file, {in_directory} in the central directory")]
    SizeMismatch {
        name: String,
        in_file: u64,
        in_directory: u64,
    },
    #[error("the .pt zip has no end-of-central-directory record")]
    NoEndRecord,
    #[error("the last end-of-central-directory record (at offset {offset}) does not end at the end of the file ({declared} bytes declared after it, {present} present)")]
    EndRecordNotAtEnd {
        offset: u64,
        declared: usize,
        present: usize,
    },
    #[error("the Zip64 end record is missing or misplaced")]
    Zip64EndMisplaced,
    #[error("the central directory declares {declared} records (limit {max})")]
    TooManyDeclared { declared: u64, max: u64 },
    #[error("the central directory offset {offset} does not point at the directory")]
    DirectoryOffset { offset: u64 },
    #[error("the central directory size runs past the end of the file")]
    DirectorySize,
    #[error("central directory entry {index} is malformed")]
    EntryMalformed { index: usize },
    #[error("central directory entry {index} runs past the directory")]
    EntryOverrun { index: usize },
    #[error("central directory entry {index} has a name that is not valid UTF-8")]
    EntryNameNotUtf8 { index: usize },
    #[error("record {name}: Zip64 sizes missing")]
    Zip64SizesMissing { name: String },
    #[error("the central directory has more than {max} records")]
    TooManyEntries { max: u64 },
    #[error("the end record declares {declared} entries, the directory holds {found}")]
    CountMismatch { declared: u64, found: usize },
}

/// A deflated record that does not inflate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    /// The decoder's own explanation (flate2's text: it names the bad block or code).
    #[error("bad deflate data: {0}")]
    Bad(String),
    #[error("the deflate stream ends early")]
    EndsEarly,
}

/// Local headers and central directory disagree (BYOM606): a reader trusting one and PyTorch
/// (which trusts the other) would see different files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryMismatch {
    #[error("the central directory lists the record at offset {offset} twice (again as {name:?})")]
    ListedTwice { offset: u64, name: String },
    #[error(
        "the central directory lists {name} at offset {offset}, where no local header was seen"
    )]
    NoLocalHeader { name: String, offset: u64 },
    #[error("the central directory calls the record at offset {offset} {central:?}, its local header calls it {local:?}")]
    NameDiffers {
        offset: u64,
        central: String,
        local: String,
    },
    /// torch inflates by the directory's method, byom by the local header's: the same bytes
    /// would be read as two different records.
    #[error("record {name:?}: compression method {local} in its local header, {central} in the central directory")]
    MethodDiffers {
        name: String,
        local: u16,
        central: u16,
    },
    #[error("local record {name:?} at offset {offset} is hidden: the central directory does not list it")]
    Hidden { name: String, offset: u64 },
}

/// A budget of [`super::ZipLimits`] was exceeded (BYOM610).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZipLimitHit {
    #[error("the zip central directory is larger than max_zip_directory_bytes ({max} bytes)")]
    DirectoryTooLarge { max: u64 },
    #[error("the .pt zip has more than {max} records")]
    TooManyRecords { max: u64 },
    #[error("record {name} takes the kept records over {budget} ({cap} bytes)")]
    KeptOverBudget {
        name: String,
        budget: Budget,
        cap: u64,
    },
}

/// Which shared budget of kept record bytes was exceeded, by its setting's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    PickleBytes,
    CodeBytes,
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Budget::PickleBytes => "max_pickle_bytes",
            Budget::CodeBytes => "max_code_bytes",
        })
    }
}

/// Central-directory names that occur more than once (BYOM613), each named once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the zip holds two or more records named {}: which one PyTorch reads is unspecified, so the one inspected may not be the one loaded", named(.names, |n| format!("{n:?}")))]
pub struct DuplicateNames {
    pub names: Vec<String>,
}

/// Pairs of names equal under ASCII case folding (BYOM614): (seen first, seen later).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("records {} differ only in letter case: PyTorch's zip reader ignores case, so it may load either", named(.pairs, |(a, b)| format!("{a:?} and {b:?}")))]
pub struct CaseCollisions {
    pub pairs: Vec<(String, String)>,
}

/// Names PyTorch cannot place under its archive folder (BYOM615).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutsidePrefix {
    #[error("the first record {name:?} is not in a folder: PyTorch takes the archive folder from the first record and cannot read this zip")]
    FirstNotInFolder { name: String },
    /// `folder` includes its trailing `/`.
    #[error("{} outside the archive folder {folder:?} PyTorch derives from the first record: {}", if .names.len() == 1 { "a record is" } else { "records are" }, named(.names, |n| format!("{n:?}")))]
    Outside { folder: String, names: Vec<String> },
}

/// Most entries named in one problem message.
const NAMED: usize = 5;

/// The first [`NAMED`] items, then how many more.
fn named<T>(list: &[T], show: impl Fn(&T) -> String) -> String {
    let shown: Vec<String> = list.iter().take(NAMED).map(show).collect();
    let more = list.len().saturating_sub(NAMED);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}
