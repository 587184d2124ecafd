//! A streaming view of the `.pt` zip: names from local headers as they pass, sizes and offsets
//! from the central directory in the tail, and only the few records inspection needs.
//!
//! Why not a zip crate: the `.pt` arrives as a stream inside a tar.gz and may be gigabytes, so
//! we cannot seek to the central directory first, and PyTorch's reader (miniz behind caffe2's
//! `PyTorchStreamReader`) must be matched quirk for quirk — a scanner that reads a zip
//! differently from `torch.load` inspects a different file. The reader is split along the
//! seams of the format, like streaming zip readers such as rc-zip:
//!
//! - `records`: each zip record (local header, data descriptor, Zip64 extra, central entry,
//!   end records) parsed from bytes into a typed value; the only place with field offsets.
//! - `scanner`: the streaming state machine ([`ZipScanner`]): finds each entry's end,
//!   keeps the records inspection needs within budgets, and the tail.
//! - `inflate`: a kept record's bytes to its content (stored or DEFLATE), capped.
//! - `directory`: the central directory through the end record, and its one-to-one
//!   cross-check against the local headers.
//! - `names`: names as PyTorch looks them up (archive folder, ASCII case folding) and the
//!   checks that make the record byom inspects provably the one torch loads.
//! - `problems`: what can be wrong, as types ([`ZipProblem`], [`ZipCorruption`], ...);
//!   their `Display` is the report text.
//! - `view`: the result ([`ZipView`]) and the scanner's budgets ([`ZipLimits`]).
//!
//! Dependencies point one way (problems ← records ← names ← view ← inflate/directory ←
//! scanner); this file only declares and re-exports.

mod directory;
mod inflate;
mod names;
mod problems;
mod records;
mod scanner;
mod view;

pub use inflate::inflate;
pub use names::{check_names, rel_key, rel_name};
pub use problems::{
    Budget, CaseCollisions, DirectoryMismatch, DuplicateNames, InflateError, OutsidePrefix,
    ZipCorruption, ZipLimitHit, ZipProblem,
};
pub use records::CentralEntry;
pub use scanner::ZipScanner;
pub use view::{LocalEntry, Record, ZipLimits, ZipView};

#[cfg(test)]
pub(crate) mod tests;
