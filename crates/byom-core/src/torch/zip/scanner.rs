//! The streaming state machine: bytes in (any chunking), a [`ZipView`] out.
//!
//! The `.pt` arrives as a stream inside a tar.gz and may be gigabytes, so the scanner cannot
//! seek to the central directory first. PyTorch sets flag bit 3 (sizes are zero in local
//! headers, a data descriptor follows the data), so an entry's end is found by searching for
//! the next `PK\x03\x04` / `PK\x01\x02` signature and accepting it only if the bytes just
//! before it form a data descriptor whose compressed size equals the bytes seen since the
//! entry began (32- or 64-bit sizes, with or without the optional `PK\x07\x08` signature).
//! Random tensor bytes can contain the signature; the exact size check rejects such false
//! hits. Entries whose local header carries sizes are skipped exactly. Only the records
//! inspection needs are kept, within budgets; tensor data is counted, never copied. From the
//! first central-directory signature on, the tail is kept (bounded) and parsed at `finish`.

use super::directory::{cross_check, parse_directory};
use super::inflate::decode;
use super::names::{check_names, rel_key};
use super::problems::{Budget, ZipCorruption, ZipLimitHit, ZipProblem};
use super::records::{
    signature, DataDescriptor, DescriptorLayout, LocalHeader, SIG_CENTRAL, SIG_EOCD, SIG_EOCD64,
    SIG_LOCAL,
};
use super::view::{LocalEntry, ZipLimits, ZipView};

/// Bytes kept back while searching for the end of an entry: a 24-byte descriptor plus 3 bytes
/// of a signature that may continue in the next chunk.
const KEEP_BACK: usize = 27;

/// Largest small record (`version`, `byteorder`) worth keeping.
const SMALL_RECORD: usize = 64;

/// How much of a chunk is appended to the carry at a time, so that a huge chunk after a partial
/// header is never copied whole.
const CARRY_STEP: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    No,
    Pickle,
    Code,
    Small,
    /// An unknown record (not tensor data): kept while the pickle budget allows, silently
    /// dropped otherwise, so a pickle hidden under another name (`data.txt`) is still walked.
    Maybe,
}

fn wanted(name: &str) -> Keep {
    // Classified as torch will look it up: `archive/DATA.PKL` is what torch reads as data.pkl.
    let key = rel_key(name);
    let rel = key.as_str();
    if rel.ends_with(".pkl") {
        Keep::Pickle
    } else if rel == "version"
        || rel == ".data/version"
        || rel == "byteorder"
        || rel == ".format_version"
    {
        Keep::Small
    } else if rel.starts_with("code/") && (rel.ends_with(".py") || rel.ends_with(".debug_pkl")) {
        Keep::Code
    } else if rel.starts_with("data/")
        || rel.starts_with(".data/")
        || rel.starts_with("constants/")
        || rel.starts_with("traced_inputs/")
    {
        Keep::No
    } else {
        Keep::Maybe
    }
}

/// The record being kept for the current entry.
#[derive(Debug)]
struct Kept {
    name: String,
    keep: Keep,
    buf: Vec<u8>,
    truncated: bool,
}

#[derive(Debug)]
enum State {
    Header,
    /// Inside an entry of known compressed size.
    Known {
        remaining: u64,
    },
    /// Inside a bit-3 entry: searching for the descriptor + next signature.
    Search {
        committed: u64,
        scan_from: usize,
    },
    /// In the central directory / end records: everything is kept (bounded).
    Tail,
    /// Structure broken or a budget hit: the rest is only counted.
    Stopped,
}

/// The streaming scanner. Feed any chunk sizes; the result does not depend on them.
#[derive(Debug)]
pub struct ZipScanner {
    limits: ZipLimits,
    state: State,
    /// Unconsumed bytes carried between feeds (a partial header, the search window).
    carry: Vec<u8>,
    /// Absolute offset of the next byte to process.
    offset: u64,
    view: ZipView,
    /// Record being kept for the current entry, if any.
    current: Option<Kept>,
    pickle_total: u64,
    code_total: u64,
    tail: Vec<u8>,
    tail_offset: u64,
}

impl ZipScanner {
    pub fn new(limits: ZipLimits) -> Self {
        ZipScanner {
            limits,
            state: State::Header,
            carry: Vec::new(),
            offset: 0,
            view: ZipView::default(),
            current: None,
            pickle_total: 0,
            code_total: 0,
            tail: Vec::new(),
            tail_offset: 0,
        }
    }

    pub fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            if self.carry.is_empty() {
                let used = self.process(chunk);
                self.carry.extend_from_slice(&chunk[used..]);
                return;
            }
            let n = chunk.len().min(CARRY_STEP);
            self.carry.extend_from_slice(&chunk[..n]);
            chunk = &chunk[n..];
            let carry = std::mem::take(&mut self.carry);
            let used = self.process(&carry);
            self.carry = carry;
            self.carry.drain(..used);
        }
    }

    fn stop(&mut self, p: impl Into<ZipProblem>) {
        self.view.problems.push(p.into());
        self.state = State::Stopped;
        self.current = None;
    }

    /// Run the state machine over `data` (which starts at `self.offset`); returns bytes used.
    fn process(&mut self, data: &[u8]) -> usize {
        let mut pos = 0usize;
        loop {
            let d = &data[pos..];
            match self.state {
                State::Stopped => {
                    pos = data.len();
                    self.offset += d.len() as u64;
                    return pos;
                }
                State::Tail => {
                    let room = self
                        .limits
                        .max_directory_bytes
                        .saturating_sub(self.tail.len() as u64);
                    if d.len() as u64 > room {
                        self.stop(ZipLimitHit::DirectoryTooLarge {
                            max: self.limits.max_directory_bytes,
                        });
                        continue;
                    }
                    self.tail.extend_from_slice(d);
                    self.offset += d.len() as u64;
                    return data.len();
                }
                State::Header => {
                    if d.len() < 4 {
                        return pos;
                    }
                    let sig = signature(d);
                    if sig == SIG_CENTRAL || sig == SIG_EOCD || sig == SIG_EOCD64 {
                        self.tail_offset = self.offset;
                        self.state = State::Tail;
                        continue;
                    }
                    if sig != SIG_LOCAL {
                        self.stop(ZipCorruption::UnexpectedBytes {
                            offset: self.offset,
                        });
                        continue;
                    }
                    let Some(header) = LocalHeader::parse(d) else {
                        return pos;
                    };
                    self.begin_entry(&header);
                    pos += header.len;
                    self.offset += header.len as u64;
                }
                State::Known { remaining } => {
                    let n = (d.len() as u64).min(remaining) as usize;
                    self.keep(&d[..n]);
                    pos += n;
                    self.offset += n as u64;
                    let remaining = remaining - n as u64;
                    if remaining == 0 {
                        self.end_entry(None);
                        self.state = State::Header;
                    } else {
                        self.state = State::Known { remaining };
                        return pos;
                    }
                }
                State::Search {
                    committed,
                    scan_from,
                } => {
                    let stored = self.view.local.last().is_some_and(|e| e.method == 0);
                    match find_entry_end(d, scan_from, committed, stored) {
                        Some((data_len, skip)) => {
                            self.keep(&d[..data_len]);
                            pos += skip;
                            self.offset += skip as u64;
                            self.end_entry(Some(committed + data_len as u64));
                            self.state = State::Header;
                        }
                        None => {
                            let scanned_to = d.len().saturating_sub(3).max(scan_from);
                            let commit = d.len().saturating_sub(KEEP_BACK);
                            self.keep(&d[..commit]);
                            pos += commit;
                            self.offset += commit as u64;
                            self.state = State::Search {
                                committed: committed + commit as u64,
                                scan_from: scanned_to - commit,
                            };
                            return pos;
                        }
                    }
                }
            }
        }
    }

    /// A whole local header at `self.offset`: record the entry, decide whether to keep its
    /// bytes, and enter the state that finds its end. Stops at the record budget.
    fn begin_entry(&mut self, header: &LocalHeader<'_>) {
        let name = String::from_utf8_lossy(header.name).into_owned();
        if std::str::from_utf8(header.name).is_err() {
            self.view
                .problems
                .push(ZipProblem::Corrupt(ZipCorruption::LocalNameNotUtf8 {
                    name: name.clone(),
                    offset: self.offset,
                }));
        }
        if self.view.local.len() as u64 >= self.limits.max_records {
            self.stop(ZipLimitHit::TooManyRecords {
                max: self.limits.max_records,
            });
            return;
        }
        if self.view.prefix.is_none() {
            self.view.prefix = Some(name.split_once('/').map_or("", |(p, _)| p).to_string());
        }
        let keep = wanted(&name);
        self.current = (keep != Keep::No).then(|| Kept {
            name: name.clone(),
            keep,
            buf: Vec::new(),
            truncated: false,
        });
        self.view.local.push(LocalEntry {
            name,
            header_offset: self.offset,
            data_offset: self.offset + header.len as u64,
            method: header.method,
            flags: header.flags,
            size: None,
        });
        self.state = if header.has_descriptor() {
            State::Search {
                committed: 0,
                scan_from: 0,
            }
        } else {
            State::Known {
                remaining: header.compressed_size,
            }
        };
    }

    fn keep(&mut self, bytes: &[u8]) {
        let Some(Kept {
            name,
            keep,
            buf,
            truncated,
        }) = self.current.as_mut()
        else {
            return;
        };
        if *truncated || bytes.is_empty() {
            return;
        }
        let (total, cap) = match keep {
            Keep::Pickle => (&mut self.pickle_total, self.limits.max_pickle_bytes),
            Keep::Code => (&mut self.code_total, self.limits.max_code_bytes),
            Keep::Small => {
                let room = SMALL_RECORD.saturating_sub(buf.len());
                buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
                *truncated = bytes.len() > room;
                return;
            }
            Keep::Maybe => {
                if self.pickle_total + bytes.len() as u64 > self.limits.max_pickle_bytes {
                    *truncated = true;
                    buf.clear();
                    return;
                }
                (&mut self.pickle_total, self.limits.max_pickle_bytes)
            }
            Keep::No => return,
        };
        if *total + bytes.len() as u64 > cap {
            *truncated = true;
            let budget = if *keep == Keep::Code {
                Budget::CodeBytes
            } else {
                Budget::PickleBytes
            };
            buf.clear();
            buf.shrink_to_fit();
            let hit = ZipLimitHit::KeptOverBudget {
                name: name.clone(),
                budget,
                cap,
            };
            self.view.problems.push(hit.into());
            return;
        }
        *total += bytes.len() as u64;
        buf.extend_from_slice(bytes);
    }

    fn end_entry(&mut self, measured: Option<u64>) {
        let idx = self.view.local.len().saturating_sub(1);
        if let Some(e) = self.view.local.get_mut(idx) {
            let data_len = self.offset.saturating_sub(e.data_offset);
            e.size = Some(measured.unwrap_or(data_len));
        }
        let Some(Kept {
            name,
            keep,
            buf,
            truncated,
        }) = self.current.take()
        else {
            return;
        };
        let method = self.view.local.get(idx).map_or(0, |e| e.method);
        let cap = match keep {
            Keep::Pickle | Keep::Maybe => self.limits.max_pickle_bytes,
            Keep::Code => self.limits.max_code_bytes,
            _ => SMALL_RECORD as u64,
        };
        let record = match decode(&name, method, buf, truncated, cap) {
            Ok(record) => record,
            Err(e) => {
                self.view.problems.push(e.into());
                return;
            }
        };
        match self.view.records.entry(name) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(record);
            }
            // A second record of one name (refused, BYOM613): kept aside, still walked, so
            // a payload is named whichever of the two torch would read.
            std::collections::btree_map::Entry::Occupied(o) => {
                self.view.shadowed.push((o.key().clone(), record));
            }
        }
    }

    /// Finish the scan: parse the tail and cross-check it against the local headers.
    pub fn finish(mut self) -> ZipView {
        match self.state {
            State::Tail => {}
            State::Stopped => return self.view,
            _ => {
                self.view.problems.push(ZipCorruption::Truncated.into());
                return self.view;
            }
        }
        let tail = std::mem::take(&mut self.tail);
        match parse_directory(&tail, self.tail_offset, self.limits.max_records) {
            Ok(central) => {
                self.view.central = central;
                let mut problems = cross_check(&self.view.local, &self.view.central);
                problems.extend(check_names(&self.view.central));
                self.view.problems.extend(problems);
            }
            Err(e) => self.view.problems.push(e.into()),
        }
        self.view
    }
}

/// Look for the end of a bit-3 entry in `d` (bytes after the `committed` data bytes already
/// seen). Returns (data bytes in `d`, bytes to skip up to the next signature).
fn find_entry_end(
    d: &[u8],
    scan_from: usize,
    committed: u64,
    stored: bool,
) -> Option<(usize, usize)> {
    let mut i = scan_from;
    while i + 4 <= d.len() {
        let hit = match memchr_pk(&d[i..]) {
            Some(k) => i + k,
            None => return None,
        };
        if hit + 4 > d.len() {
            return None;
        }
        let sig = signature(&d[hit..]);
        if sig == SIG_LOCAL || sig == SIG_CENTRAL {
            for layout in DescriptorLayout::ALL {
                let Some(desc) = DataDescriptor::ending_at(d, hit, layout) else {
                    continue;
                };
                let data_len = hit - layout.len();
                if desc.compressed_size == committed + data_len as u64
                    && (!stored || desc.uncompressed_size == desc.compressed_size)
                {
                    return Some((data_len, hit));
                }
            }
        }
        i = hit + 1;
    }
    None
}

/// First "PK" in `d`. Entries with data descriptors (what `torch.save` writes to a stream) are
/// scanned end to end for the next signature, so this runs over nearly every byte of a
/// state dict: a SIMD substring search, not a byte loop.
fn memchr_pk(d: &[u8]) -> Option<usize> {
    static PK: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"PK"));
    PK.find(d)
}
