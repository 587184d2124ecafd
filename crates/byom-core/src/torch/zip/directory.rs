//! The tail of the zip: the central directory found through the end record, and its
//! cross-check against the local headers the scanner saw pass.
//!
//! Every central-directory entry must match a local header seen at that offset with the same
//! name, size and compression method, one to one: a reader that trusts local headers and
//! PyTorch (which trusts the central directory) would otherwise see different files — a known
//! scanner bypass. The end record is chosen as miniz chooses it (see [`Eocd::find`]).

use std::collections::{HashMap, HashSet};

use super::problems::{DirectoryMismatch, ZipCorruption, ZipProblem};
use super::records::{CentralEntry, Eocd};
use super::view::LocalEntry;

/// Parse the end records and the central directory from the kept tail (the file's bytes from
/// absolute offset `tail_offset` to the end).
pub(super) fn parse_directory(
    tail: &[u8],
    tail_offset: u64,
    max_records: u64,
) -> Result<Vec<CentralEntry>, ZipCorruption> {
    let eocd = Eocd::find(tail, tail_offset)?;
    if eocd.entries > max_records {
        return Err(ZipCorruption::TooManyDeclared {
            declared: eocd.entries,
            max: max_records,
        });
    }
    let start = eocd
        .directory_offset
        .checked_sub(tail_offset)
        .and_then(|r| usize::try_from(r).ok())
        .filter(|&r| r <= tail.len())
        .ok_or(ZipCorruption::DirectoryOffset {
            offset: eocd.directory_offset,
        })?;
    let end = usize::try_from(eocd.directory_size)
        .ok()
        .and_then(|s| start.checked_add(s))
        .filter(|&x| x <= tail.len())
        .ok_or(ZipCorruption::DirectorySize)?;
    let cd = &tail[start..end];
    let mut out = Vec::new();
    let mut p = 0usize;
    while p < cd.len() {
        let (entry, len) = CentralEntry::parse(&cd[p..], out.len())?;
        out.push(entry);
        if out.len() as u64 > max_records {
            return Err(ZipCorruption::TooManyEntries { max: max_records });
        }
        p += len;
    }
    if out.len() as u64 != eocd.entries {
        return Err(ZipCorruption::CountMismatch {
            declared: eocd.entries,
            found: out.len(),
        });
    }
    Ok(out)
}

/// Local headers and central directory must describe the same records one to one: each
/// directory entry at a local header seen at its offset, with the same name, size and
/// compression method; no offset listed twice; no local record the directory hides.
pub(super) fn cross_check(local: &[LocalEntry], central: &[CentralEntry]) -> Vec<ZipProblem> {
    let by_offset: HashMap<u64, &LocalEntry> = local.iter().map(|e| (e.header_offset, e)).collect();
    let mut listed: HashSet<u64> = HashSet::with_capacity(central.len());
    let mut problems = Vec::new();
    for c in central {
        if !listed.insert(c.header_offset) {
            problems.push(
                DirectoryMismatch::ListedTwice {
                    offset: c.header_offset,
                    name: c.name.clone(),
                }
                .into(),
            );
            continue;
        }
        match by_offset.get(&c.header_offset) {
            None => problems.push(
                DirectoryMismatch::NoLocalHeader {
                    name: c.name.clone(),
                    offset: c.header_offset,
                }
                .into(),
            ),
            Some(l) if l.name != c.name => problems.push(
                DirectoryMismatch::NameDiffers {
                    offset: c.header_offset,
                    central: c.name.clone(),
                    local: l.name.clone(),
                }
                .into(),
            ),
            Some(l) => {
                if let Some(in_file) = l.size.filter(|&s| s != c.compressed_size) {
                    problems.push(
                        ZipCorruption::SizeMismatch {
                            name: c.name.clone(),
                            in_file,
                            in_directory: c.compressed_size,
                        }
                        .into(),
                    );
                }
                if l.method != c.method {
                    problems.push(
                        DirectoryMismatch::MethodDiffers {
                            name: c.name.clone(),
                            local: l.method,
                            central: c.method,
                        }
                        .into(),
                    );
                }
            }
        }
    }
    // Always checked (not only when the directory is shorter): a directory listing one
    // record twice could otherwise hide another at the same count.
    for l in local {
        if !listed.contains(&l.header_offset) {
            problems.push(
                DirectoryMismatch::Hidden {
                    name: l.name.clone(),
                    offset: l.header_offset,
                }
                .into(),
            );
        }
    }
    problems
}
