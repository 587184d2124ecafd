//! A streaming view of the `.pt` zip: names from local headers as they pass, sizes and offsets
//! from the central directory in the tail, and only the few records inspection needs.
//!
//! Why not a zip crate: the `.pt` arrives as a stream inside a tar.gz and may be gigabytes, so we
//! cannot seek to the central directory first. PyTorch sets flag bit 3 (sizes are zero in local
//! headers, a data descriptor follows the data), so an entry's end is found by searching for the
//! next `PK\x03\x04` / `PK\x01\x02` signature and accepting it only if the bytes just before it
//! form a data descriptor whose compressed size equals the bytes seen since the entry began
//! (32- or 64-bit sizes, with or without the optional `PK\x07\x08` signature). Random tensor
//! bytes can contain the signature; the exact size check rejects such false hits. Entries whose
//! local header carries sizes are skipped exactly.
//!
//! At `finish` the tail (from the first central-directory signature) is parsed and every
//! central-directory entry must match a local header seen at that offset with the same name,
//! size and compression method, one to one: a reader that trusts local headers and PyTorch
//! (which trusts the central directory) would otherwise see different files — a known scanner
//! bypass.
//!
//! One view of the names, PyTorch's. Its reader (caffe2 `PyTorchStreamReader` over miniz) takes
//! the archive folder from the FIRST central-directory name (text before its first `/`) and
//! finds every record with `mz_zip_reader_locate_file(archive + "/" + name, flags 0)`: a binary
//! search over names sorted with `MZ_TOLOWER`, so a lookup matches any name of the same length
//! equal byte by byte after ASCII lower-casing (nothing else is normalised: not `\` vs `/`,
//! not `./`, not Unicode). With two such names which one torch reads is unspecified (heap sort,
//! then binary search), so a zip holding two `data.pkl` (or `data.pkl` and `DATA.PKL`) lets a
//! scanner inspect one while `torch.load` runs the other. Hence, on the central directory:
//! an exact duplicate name, two names equal under ASCII case folding, and a name outside the
//! archive folder are each refused ([`ZipProblem::DuplicateName`], [`ZipProblem::CaseCollision`],
//! [`ZipProblem::OutsidePrefix`]); and records are classified and looked up case-insensitively,
//! as torch does, so the record byom inspects as `data.pkl` is provably the one torch loads.
//! The checks are bounded by `max_records` (one folded name per entry in a hash map).
//! The end record is chosen as miniz chooses it (the last `PK\x05\x06` with 22 bytes after
//! it), and refused unless it ends exactly at the end of the file.

use std::collections::{BTreeMap, HashMap, HashSet};

const SIG_LOCAL: [u8; 4] = *b"PK\x03\x04";
const SIG_CENTRAL: [u8; 4] = *b"PK\x01\x02";
const SIG_EOCD: [u8; 4] = *b"PK\x05\x06";
const SIG_EOCD64: [u8; 4] = *b"PK\x06\x06";
const SIG_LOC64: [u8; 4] = *b"PK\x06\x07";
const SIG_DESC: [u8; 4] = *b"PK\x07\x08";

/// Bytes kept back while searching for the end of an entry: a 24-byte descriptor plus 3 bytes
/// of a signature that may continue in the next chunk.
const KEEP_BACK: usize = 27;

/// Largest small record (`version`, `byteorder`) worth keeping.
const SMALL_RECORD: usize = 64;

/// Budgets of the scanner, from [`crate::Limits`].
#[derive(Debug, Clone, Copy)]
pub struct ZipLimits {
    pub max_pickle_bytes: u64,
    pub max_code_bytes: u64,
    pub max_directory_bytes: u64,
    pub max_records: u64,
}

/// One entry as its local header announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEntry {
    pub name: String,
    pub header_offset: u64,
    pub data_offset: u64,
    pub method: u16,
    pub flags: u16,
    /// Compressed size as measured (bit-3 entries) or declared (others); `None` until known.
    pub size: Option<u64>,
}

/// One central-directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CentralEntry {
    pub name: String,
    pub header_offset: u64,
    pub compressed_size: u64,
    pub uncompressed_size: u64,
    pub method: u16,
}

/// What went wrong, in terms the rules turn into issues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZipProblem {
    /// Broken structure (→ BYOM604).
    Corrupt(String),
    /// Local header and central directory disagree (→ BYOM606).
    NameMismatch(String),
    /// A budget was exceeded (→ BYOM610).
    Limit(String),
    /// Two central-directory entries have the same name (→ BYOM613).
    DuplicateName(String),
    /// Two names are equal once ASCII case is folded, as PyTorch's lookup compares (→ BYOM614).
    CaseCollision(String),
    /// A name outside the archive folder PyTorch derives from the first entry (→ BYOM615).
    OutsidePrefix(String),
}

/// A record kept for inspection (decompressed when it was deflated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub data: Vec<u8>,
    /// The record was larger than what was kept.
    pub truncated: bool,
}

/// The result of a scan.
#[derive(Debug, Clone, Default)]
pub struct ZipView {
    /// Text before the first `/` of the first entry (`archive`, the file stem, ...).
    pub prefix: Option<String>,
    pub local: Vec<LocalEntry>,
    pub central: Vec<CentralEntry>,
    /// Records kept, by full entry name.
    pub records: BTreeMap<String, Record>,
    /// Later records whose name is already in `records` (a duplicate, refused as BYOM613).
    pub shadowed: Vec<(String, Record)>,
    pub problems: Vec<ZipProblem>,
}

impl ZipView {
    /// Name relative to the top folder.
    pub fn rel<'n>(&self, name: &'n str) -> &'n str {
        rel_name(name)
    }

    /// A name as PyTorch looks it up: relative to the top folder, ASCII lower-cased (miniz
    /// compares names with `MZ_TOLOWER`). Compare it with lower-case constants.
    pub fn key(&self, name: &str) -> String {
        rel_key(name)
    }

    /// A kept record by its name relative to the top folder, found as PyTorch finds it
    /// (ASCII case-insensitively; names that collide so are refused, so at most one matches).
    pub fn record(&self, rel: &str) -> Option<&Record> {
        self.records
            .iter()
            .find(|(k, _)| rel_name(k).eq_ignore_ascii_case(rel))
            .map(|(_, v)| v)
    }

    /// Sizes of every entry, from the central directory (authoritative), by full name.
    pub fn sizes(&self) -> impl Iterator<Item = (&str, u64)> {
        self.central
            .iter()
            .map(|c| (c.name.as_str(), c.uncompressed_size))
    }
}

/// Text after the first `/` (the whole name when there is none).
pub fn rel_name(name: &str) -> &str {
    match name.split_once('/') {
        Some((_, r)) => r,
        None => name,
    }
}

/// [`rel_name`], ASCII lower-cased: the name as PyTorch's case-insensitive lookup sees it.
pub fn rel_key(name: &str) -> String {
    rel_name(name).to_ascii_lowercase()
}

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
    current: Option<(String, Keep, Vec<u8>, bool)>,
    pickle_total: u64,
    code_total: u64,
    tail: Vec<u8>,
    tail_offset: u64,
}

/// How much of a chunk is appended to the carry at a time, so that a huge chunk after a partial
/// header is never copied whole.
const CARRY_STEP: usize = 64 * 1024;

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

    fn stop(&mut self, p: ZipProblem) {
        self.view.problems.push(p);
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
                        self.stop(ZipProblem::Limit(format!(
                            "the zip central directory is larger than max_zip_directory_bytes ({} bytes)",
                            self.limits.max_directory_bytes
                        )));
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
                    let sig = [d[0], d[1], d[2], d[3]];
                    if sig == SIG_CENTRAL || sig == SIG_EOCD || sig == SIG_EOCD64 {
                        self.tail_offset = self.offset;
                        self.state = State::Tail;
                        continue;
                    }
                    if sig != SIG_LOCAL {
                        let at = self.offset;
                        self.stop(ZipProblem::Corrupt(format!(
                            "unexpected bytes at offset {at} where a zip record should start"
                        )));
                        continue;
                    }
                    if d.len() < 30 {
                        return pos;
                    }
                    let flags = le16(&d[6..8]);
                    let method = le16(&d[8..10]);
                    let mut csize = u64::from(le32(&d[18..22]));
                    let usize_ = u64::from(le32(&d[22..26]));
                    let nlen = usize::from(le16(&d[26..28]));
                    let xlen = usize::from(le16(&d[28..30]));
                    let hlen = 30 + nlen + xlen;
                    if d.len() < hlen {
                        return pos;
                    }
                    let raw_name = &d[30..30 + nlen];
                    let name = String::from_utf8_lossy(raw_name).into_owned();
                    if std::str::from_utf8(raw_name).is_err() {
                        // torch compares raw bytes; two different non-UTF-8 names could decode
                        // to the same text here. torch.save writes ASCII names.
                        self.view.problems.push(ZipProblem::Corrupt(format!(
                            "record name {name:?} at offset {} is not valid UTF-8",
                            self.offset
                        )));
                    }
                    if csize == 0xFFFF_FFFF {
                        if let Some(z) =
                            zip64_extra(&d[30 + nlen..hlen], usize_ == 0xFFFF_FFFF, true, false)
                        {
                            csize = z.1.unwrap_or(csize);
                        }
                    }
                    if self.view.local.len() as u64 >= self.limits.max_records {
                        let max = self.limits.max_records;
                        self.stop(ZipProblem::Limit(format!(
                            "the .pt zip has more than {max} records"
                        )));
                        continue;
                    }
                    if self.view.prefix.is_none() {
                        self.view.prefix =
                            Some(name.split_once('/').map_or("", |(p, _)| p).to_string());
                    }
                    let keep = wanted(&name);
                    self.current =
                        (keep != Keep::No).then(|| (name.clone(), keep, Vec::new(), false));
                    self.view.local.push(LocalEntry {
                        name,
                        header_offset: self.offset,
                        data_offset: self.offset + hlen as u64,
                        method,
                        flags,
                        size: None,
                    });
                    pos += hlen;
                    self.offset += hlen as u64;
                    self.state = if flags & 0x8 != 0 {
                        State::Search {
                            committed: 0,
                            scan_from: 0,
                        }
                    } else {
                        State::Known { remaining: csize }
                    };
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

    fn keep(&mut self, bytes: &[u8]) {
        let Some((name, keep, buf, truncated)) = self.current.as_mut() else {
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
            let what = if *keep == Keep::Pickle {
                "max_pickle_bytes"
            } else {
                "max_code_bytes"
            };
            let msg = format!("record {name} takes the kept records over {what} ({cap} bytes)");
            buf.clear();
            buf.shrink_to_fit();
            self.view.problems.push(ZipProblem::Limit(msg));
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
        if let Some((name, keep, buf, truncated)) = self.current.take() {
            let method = self.view.local.get(idx).map_or(0, |e| e.method);
            let cap = match keep {
                Keep::Pickle | Keep::Maybe => self.limits.max_pickle_bytes,
                Keep::Code => self.limits.max_code_bytes,
                _ => SMALL_RECORD as u64,
            };
            let record = match method {
                0 => Record {
                    data: buf,
                    truncated,
                },
                8 => match inflate(&buf, cap) {
                    Ok((data, more)) => Record {
                        data,
                        truncated: truncated || more,
                    },
                    Err(e) => {
                        self.view
                            .problems
                            .push(ZipProblem::Corrupt(format!("record {name}: {e}")));
                        return;
                    }
                },
                m => {
                    self.view.problems.push(ZipProblem::Corrupt(format!(
                        "record {name} uses unsupported compression method {m}"
                    )));
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
    }

    /// Finish the scan: parse the tail and cross-check it against the local headers.
    pub fn finish(mut self) -> ZipView {
        match self.state {
            State::Tail => {}
            State::Stopped => return self.view,
            _ => {
                self.view.problems.push(ZipProblem::Corrupt(
                    "the .pt zip is truncated: it ends before its central directory".into(),
                ));
                return self.view;
            }
        }
        let tail = std::mem::take(&mut self.tail);
        match parse_directory(&tail, self.tail_offset, self.limits.max_records) {
            Ok(central) => {
                self.view.central = central;
                self.cross_check();
            }
            Err(e) => self.view.problems.push(ZipProblem::Corrupt(e)),
        }
        self.view
    }

    /// Local headers and central directory must describe the same records one to one: each
    /// directory entry at a local header seen at its offset, with the same name, size and
    /// compression method; no offset listed twice; no local record the directory hides.
    fn cross_check(&mut self) {
        let by_offset: HashMap<u64, &LocalEntry> = self
            .view
            .local
            .iter()
            .map(|e| (e.header_offset, e))
            .collect();
        let mut listed: HashSet<u64> = HashSet::with_capacity(self.view.central.len());
        let mut problems = Vec::new();
        for c in &self.view.central {
            if !listed.insert(c.header_offset) {
                problems.push(ZipProblem::NameMismatch(format!(
                    "the central directory lists the record at offset {} twice (again as {:?})",
                    c.header_offset, c.name
                )));
                continue;
            }
            match by_offset.get(&c.header_offset) {
                None => problems.push(ZipProblem::NameMismatch(format!(
                    "the central directory lists {} at offset {}, where no local header was seen",
                    c.name, c.header_offset
                ))),
                Some(l) if l.name != c.name => problems.push(ZipProblem::NameMismatch(format!(
                    "the central directory calls the record at offset {} {:?}, its local header calls it {:?}",
                    c.header_offset, c.name, l.name
                ))),
                Some(l) => {
                    if l.size.is_some_and(|s| s != c.compressed_size) {
                        problems.push(ZipProblem::Corrupt(format!(
                            "record {}: {} bytes in the file, {} in the central directory",
                            c.name,
                            l.size.unwrap_or(0),
                            c.compressed_size
                        )));
                    }
                    if l.method != c.method {
                        // torch inflates by the directory's method, we by the local header's:
                        // the same bytes would be read as two different records.
                        problems.push(ZipProblem::NameMismatch(format!(
                            "record {:?}: compression method {} in its local header, {} in the central directory",
                            c.name, l.method, c.method
                        )));
                    }
                }
            }
        }
        // Always checked (not only when the directory is shorter): a directory listing one
        // record twice could otherwise hide another at the same count.
        for l in &self.view.local {
            if !listed.contains(&l.header_offset) {
                problems.push(ZipProblem::NameMismatch(format!(
                    "local record {:?} at offset {} is hidden: the central directory does not list it",
                    l.name, l.header_offset
                )));
            }
        }
        problems.extend(check_names(&self.view.central));
        self.view.problems.extend(problems);
    }
}

/// Most entries named in one problem message.
const NAMED: usize = 5;

fn named(list: &[String]) -> String {
    let shown: Vec<&str> = list.iter().take(NAMED).map(String::as_str).collect();
    let more = list.len().saturating_sub(NAMED);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// The names as PyTorch's reader sees them (see the module doc): the archive folder is the
/// text before the first `/` of the first central-directory name; every name must be under it
/// (exactly: `getAllRecords` compares it with `strncmp`); no two names may be equal, or equal
/// after ASCII lower-casing (miniz's lookup). One problem per kind, naming the entries.
/// Memory: one folded copy of each name, bounded by `max_records` and the directory limit.
pub fn check_names(central: &[CentralEntry]) -> Vec<ZipProblem> {
    let mut out = Vec::new();
    let Some(first) = central.first() else {
        return out;
    };
    let mut outside = Vec::new();
    let prefix = match first.name.split_once('/') {
        Some((p, _)) => Some(format!("{p}/")),
        None => {
            out.push(ZipProblem::OutsidePrefix(format!(
                "the first record {:?} is not in a folder: PyTorch takes the archive folder from the first record and cannot read this zip",
                first.name
            )));
            None
        }
    };
    let mut seen: HashMap<String, &str> = HashMap::with_capacity(central.len());
    let mut duplicates = Vec::new();
    let mut collisions = Vec::new();
    for c in central {
        if let Some(p) = &prefix {
            if !c.name.starts_with(p.as_str()) {
                outside.push(format!("{:?}", c.name));
            }
        }
        match seen.get(c.name.to_ascii_lowercase().as_str()) {
            Some(&other) if other == c.name => {
                let n = format!("{:?}", c.name);
                if !duplicates.contains(&n) {
                    duplicates.push(n);
                }
            }
            Some(&other) => collisions.push(format!("{other:?} and {:?}", c.name)),
            None => {
                seen.insert(c.name.to_ascii_lowercase(), c.name.as_str());
            }
        }
    }
    if let (Some(p), false) = (&prefix, outside.is_empty()) {
        out.push(ZipProblem::OutsidePrefix(format!(
            "{} outside the archive folder {p:?} PyTorch derives from the first record: {}",
            if outside.len() == 1 {
                "a record is"
            } else {
                "records are"
            },
            named(&outside)
        )));
    }
    if !duplicates.is_empty() {
        out.push(ZipProblem::DuplicateName(format!(
            "the zip holds two or more records named {}: which one PyTorch reads is unspecified, so the one inspected may not be the one loaded",
            named(&duplicates)
        )));
    }
    if !collisions.is_empty() {
        out.push(ZipProblem::CaseCollision(format!(
            "records {} differ only in letter case: PyTorch's zip reader ignores case, so it may load either",
            named(&collisions)
        )));
    }
    out
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
        let sig = [d[hit], d[hit + 1], d[hit + 2], d[hit + 3]];
        if sig == SIG_LOCAL || sig == SIG_CENTRAL {
            // Descriptor layouts: (signature?, 64-bit sizes?) → length.
            for (with_sig, wide) in [(true, false), (false, false), (true, true), (false, true)] {
                let dl = 4 * usize::from(with_sig) + 4 + if wide { 16 } else { 8 };
                if hit < dl {
                    continue;
                }
                let desc = &d[hit - dl..hit];
                let body = if with_sig {
                    if desc[..4] != SIG_DESC {
                        continue;
                    }
                    &desc[4..]
                } else {
                    desc
                };
                let (csize, usize_) = if wide {
                    (le64(&body[4..12]), le64(&body[12..20]))
                } else {
                    (u64::from(le32(&body[4..8])), u64::from(le32(&body[8..12])))
                };
                let data_len = hit - dl;
                if csize == committed + data_len as u64 && (!stored || usize_ == csize) {
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

fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Read the Zip64 extra field (id 1): (uncompressed, compressed, offset) for the fields that
/// were 0xFFFFFFFF, in that order.
fn zip64_extra(
    extra: &[u8],
    want_u: bool,
    want_c: bool,
    want_o: bool,
) -> Option<(Option<u64>, Option<u64>, Option<u64>)> {
    let mut p = 0usize;
    while p + 4 <= extra.len() {
        let id = le16(&extra[p..p + 2]);
        let len = usize::from(le16(&extra[p + 2..p + 4]));
        let body = extra.get(p + 4..p + 4 + len)?;
        if id == 1 {
            let mut q = 0usize;
            let mut next = |want: bool| -> Option<u64> {
                if !want {
                    return None;
                }
                let v = body.get(q..q + 8).map(le64);
                q += 8;
                v
            };
            let u = next(want_u);
            let c = next(want_c);
            let o = next(want_o);
            return Some((u, c, o));
        }
        p += 4 + len;
    }
    None
}

const NO_EOCD: &str = "the .pt zip has no end-of-central-directory record";

/// Parse EOCD / Zip64 EOCD and the central directory from the kept tail.
fn parse_directory(
    tail: &[u8],
    tail_offset: u64,
    max_records: u64,
) -> Result<Vec<CentralEntry>, String> {
    // EOCD: the last signature with a whole record after it, as miniz (PyTorch's reader)
    // picks it; its comment must then reach exactly to the end. Skipping a signature whose
    // comment length does not fit (as this search once did) would let a second end record,
    // hidden in the real one's comment, point torch at another central directory.
    // A tail shorter than one EOCD record has none (found by cargo fuzz: a 13-byte tail made
    // the search index past its end).
    let e = (0..=tail.len().checked_sub(22).ok_or(NO_EOCD)?)
        .rev()
        .find(|&u| tail[u..u + 4] == SIG_EOCD)
        .ok_or(NO_EOCD)?;
    let comment = usize::from(le16(&tail[e + 20..e + 22]));
    if e + 22 + comment != tail.len() {
        return Err(format!(
            "the last end-of-central-directory record (at offset {}) does not end at the end of the file ({} bytes declared after it, {} present)",
            tail_offset + e as u64,
            comment,
            tail.len() - e - 22
        ));
    }
    let mut count = u64::from(le16(&tail[e + 10..e + 12]));
    let mut cd_size = u64::from(le32(&tail[e + 12..e + 16]));
    let mut cd_off = u64::from(le32(&tail[e + 16..e + 20]));
    if e >= 20 && tail[e - 20..e - 16] == SIG_LOC64 {
        let z_off = le64(&tail[e - 12..e - 4]);
        let z = z_off
            .checked_sub(tail_offset)
            .and_then(|r| usize::try_from(r).ok())
            .filter(|&r| r + 56 <= tail.len() && tail[r..r + 4] == SIG_EOCD64)
            .ok_or("the Zip64 end record is missing or misplaced")?;
        count = le64(&tail[z + 32..z + 40]);
        cd_size = le64(&tail[z + 40..z + 48]);
        cd_off = le64(&tail[z + 48..z + 56]);
    }
    if count > max_records {
        return Err(format!(
            "the central directory declares {count} records (limit {max_records})"
        ));
    }
    let start = cd_off
        .checked_sub(tail_offset)
        .and_then(|r| usize::try_from(r).ok())
        .filter(|&r| r <= tail.len())
        .ok_or_else(|| {
            format!("the central directory offset {cd_off} does not point at the directory")
        })?;
    let end = usize::try_from(cd_size)
        .ok()
        .and_then(|s| start.checked_add(s))
        .filter(|&x| x <= tail.len())
        .ok_or("the central directory size runs past the end of the file")?;
    let cd = &tail[start..end];
    let mut out = Vec::new();
    let mut p = 0usize;
    while p < cd.len() {
        if p + 46 > cd.len() || cd[p..p + 4] != SIG_CENTRAL {
            return Err(format!(
                "central directory entry {} is malformed",
                out.len()
            ));
        }
        let method = le16(&cd[p + 10..p + 12]);
        let mut csize = u64::from(le32(&cd[p + 20..p + 24]));
        let mut usize_ = u64::from(le32(&cd[p + 24..p + 28]));
        let nlen = usize::from(le16(&cd[p + 28..p + 30]));
        let xlen = usize::from(le16(&cd[p + 30..p + 32]));
        let clen = usize::from(le16(&cd[p + 32..p + 34]));
        let mut off = u64::from(le32(&cd[p + 42..p + 46]));
        let total = 46 + nlen + xlen + clen;
        if p + total > cd.len() {
            return Err(format!(
                "central directory entry {} runs past the directory",
                out.len()
            ));
        }
        let name = std::str::from_utf8(&cd[p + 46..p + 46 + nlen])
            .map_err(|_| {
                format!(
                    "central directory entry {} has a name that is not valid UTF-8",
                    out.len()
                )
            })?
            .to_string();
        let extra = &cd[p + 46 + nlen..p + 46 + nlen + xlen];
        if csize == 0xFFFF_FFFF || usize_ == 0xFFFF_FFFF || off == 0xFFFF_FFFF {
            let (u, c, o) = zip64_extra(
                extra,
                usize_ == 0xFFFF_FFFF,
                csize == 0xFFFF_FFFF,
                off == 0xFFFF_FFFF,
            )
            .ok_or_else(|| format!("record {name}: Zip64 sizes missing"))?;
            usize_ = u.unwrap_or(usize_);
            csize = c.unwrap_or(csize);
            off = o.unwrap_or(off);
        }
        out.push(CentralEntry {
            name,
            header_offset: off,
            compressed_size: csize,
            uncompressed_size: usize_,
            method,
        });
        if out.len() as u64 > max_records {
            return Err(format!(
                "the central directory has more than {max_records} records"
            ));
        }
        p += total;
    }
    if out.len() as u64 != count {
        return Err(format!(
            "the end record declares {count} entries, the directory holds {}",
            out.len()
        ));
    }
    Ok(out)
}

/// Inflate a raw deflate stream, keeping at most `cap` bytes. Returns (data, more was left).
pub fn inflate(data: &[u8], cap: u64) -> Result<(Vec<u8>, bool), String> {
    use flate2::{Decompress, FlushDecompress, Status};
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let mut d = Decompress::new(false);
    let mut out = Vec::with_capacity(data.len().saturating_mul(3).min(cap).min(1 << 20));
    loop {
        if out.len() >= cap {
            return Ok((out, true));
        }
        if out.capacity() == out.len() {
            let grow = (out.capacity().max(4096)).min(cap - out.len());
            out.reserve(grow);
        }
        let before_in = d.total_in();
        let before_out = d.total_out();
        let input = data.get(d.total_in() as usize..).unwrap_or(&[]);
        let room = (out.capacity() - out.len()).min(cap - out.len());
        let mut tmp = vec![0u8; room.min(1 << 20)];
        let status = d
            .decompress(input, &mut tmp, FlushDecompress::Finish)
            .map_err(|e| format!("bad deflate data: {e}"))?;
        let produced = (d.total_out() - before_out) as usize;
        out.extend_from_slice(&tmp[..produced]);
        match status {
            Status::StreamEnd => return Ok((out, false)),
            _ if d.total_in() == before_in && produced == 0 => {
                return Err("the deflate stream ends early".into());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const LIM: ZipLimits = ZipLimits {
        max_pickle_bytes: 1 << 20,
        max_code_bytes: 1 << 20,
        max_directory_bytes: 1 << 20,
        max_records: 1000,
    };

    /// Build a PyTorch-style zip: bit 3, zero sizes in local headers, descriptors, Zip64-less.
    pub(crate) fn build_zip(entries: &[(&str, &[u8])], cd_names: Option<&[&str]>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut cd = Vec::new();
        for (k, (name, data)) in entries.iter().enumerate() {
            let off = out.len() as u32;
            let crc = crc32fast::hash(data);
            out.extend_from_slice(&SIG_LOCAL);
            out.extend_from_slice(&[20, 0, 8, 0, 0, 0, 0, 0, 0, 0]);
            out.extend_from_slice(&[0; 12]);
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(data);
            out.extend_from_slice(&SIG_DESC);
            out.extend_from_slice(&crc.to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            let cname = cd_names.map_or(*name, |n| n[k]);
            cd.extend_from_slice(&SIG_CENTRAL);
            cd.extend_from_slice(&[20, 0, 20, 0, 8, 0, 0, 0, 0, 0, 0, 0]);
            cd.extend_from_slice(&crc.to_le_bytes());
            cd.extend_from_slice(&(data.len() as u32).to_le_bytes());
            cd.extend_from_slice(&(data.len() as u32).to_le_bytes());
            cd.extend_from_slice(&(cname.len() as u16).to_le_bytes());
            cd.extend_from_slice(&[0; 12]);
            cd.extend_from_slice(&off.to_le_bytes());
            cd.extend_from_slice(cname.as_bytes());
        }
        let cd_off = out.len() as u32;
        out.extend_from_slice(&cd);
        out.extend_from_slice(&SIG_EOCD);
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(cd.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_off.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out
    }

    fn scan(bytes: &[u8], chunk: usize) -> ZipView {
        let mut s = ZipScanner::new(LIM);
        for c in bytes.chunks(chunk.max(1)) {
            s.feed(c);
        }
        s.finish()
    }

    #[test]
    fn finds_entries_whatever_the_chunking() {
        // Tensor bytes that contain a local-header signature must not end the entry.
        let mut tensor = vec![7u8; 300];
        tensor[100..104].copy_from_slice(&SIG_LOCAL);
        tensor[150..154].copy_from_slice(&SIG_CENTRAL);
        let z = build_zip(
            &[
                ("m/data.pkl", b"\x80\x02}q\x00."),
                ("m/data/0", &tensor),
                ("m/version", b"3\n"),
            ],
            None,
        );
        for chunk in [1, 2, 3, 7, 64, 100_000] {
            let v = scan(&z, chunk);
            assert!(v.problems.is_empty(), "chunk {chunk}: {:?}", v.problems);
            assert_eq!(v.prefix.as_deref(), Some("m"));
            assert_eq!(
                v.local.iter().map(|e| e.size).collect::<Vec<_>>(),
                vec![Some(6), Some(300), Some(2)]
            );
            assert_eq!(
                v.record("version").map(|r| r.data.clone()),
                Some(b"3\n".to_vec())
            );
            assert_eq!(v.record("data.pkl").map(|r| r.data.len()), Some(6));
            assert!(v.record("data/0").is_none(), "tensor bytes are never kept");
        }
    }

    #[test]
    fn name_mismatch_is_reported() {
        let z = build_zip(
            &[("a/data.pkl", b"\x80\x02N."), ("a/x", b"1")],
            Some(&["a/data.pkl", "a/evil.pkl"]),
        );
        let v = scan(&z, 5);
        assert!(
            v.problems
                .iter()
                .any(|p| matches!(p, ZipProblem::NameMismatch(_))),
            "{:?}",
            v.problems
        );
    }

    fn has(v: &ZipView, f: fn(&ZipProblem) -> bool) -> bool {
        v.problems.iter().any(f)
    }

    #[test]
    fn duplicate_name_is_reported_and_named() {
        // The hostile data.pkl first, a benign one after: the scanner keeps the last by name,
        // torch's binary search may read either.
        let z = build_zip(
            &[
                ("archive/data.pkl", b"cos\nsystem\n(S'x'\ntR."),
                ("archive/data.pkl", b"\x80\x02}q\x00."),
                ("archive/version", b"3\n"),
            ],
            None,
        );
        let v = scan(&z, 7);
        let dup: Vec<&ZipProblem> = v
            .problems
            .iter()
            .filter(|p| matches!(p, ZipProblem::DuplicateName(_)))
            .collect();
        assert_eq!(dup.len(), 1, "{:?}", v.problems);
        assert!(
            matches!(dup[0], ZipProblem::DuplicateName(m) if m.contains("\"archive/data.pkl\"")),
            "{dup:?}"
        );
        assert!(!has(&v, |p| matches!(p, ZipProblem::NameMismatch(_))));
        // Neither record is dropped: the first stays the record, the second is kept aside.
        assert!(v
            .record("data.pkl")
            .is_some_and(|r| r.data.starts_with(b"cos")));
        assert_eq!(v.shadowed.len(), 1);
        assert!(v.shadowed[0].1.data.starts_with(b"\x80\x02"));
    }

    #[test]
    fn names_equal_under_case_folding_collide() {
        let z = build_zip(
            &[
                ("archive/data.pkl", b"\x80\x02}q\x00."),
                ("archive/DATA.PKL", b"cos\nsystem\n(S'x'\ntR."),
                ("archive/version", b"3\n"),
            ],
            None,
        );
        let v = scan(&z, 3);
        assert!(
            has(&v, |p| matches!(p, ZipProblem::CaseCollision(m)
                if m.contains("\"archive/data.pkl\" and \"archive/DATA.PKL\""))),
            "{:?}",
            v.problems
        );
        assert!(!has(&v, |p| matches!(p, ZipProblem::DuplicateName(_))));
        // Only ASCII letters fold (miniz's MZ_TOLOWER): these names are distinct for torch.
        let z = build_zip(
            &[
                ("archive/data.pkl", b"\x80\x02}q\x00."),
                ("archive/data/0", b"1"),
                ("archive/data\\0", b"1"),
                ("archive/d\u{c4}ta.pkl", b"1"),
                ("archive/d\u{e4}ta.pkl", b"1"),
            ],
            None,
        );
        assert!(scan(&z, 64).problems.is_empty());
    }

    #[test]
    fn record_outside_the_archive_folder_is_reported() {
        let z = build_zip(
            &[
                ("archive/data.pkl", b"\x80\x02}q\x00."),
                ("other/data.pkl", b"\x80\x02}q\x00."),
                ("ARCHIVE/x", b"1"),
                ("loose", b"1"),
            ],
            None,
        );
        let v = scan(&z, 64);
        let m = v
            .problems
            .iter()
            .find_map(|p| match p {
                ZipProblem::OutsidePrefix(m) => Some(m.clone()),
                _ => None,
            })
            .expect("outside-prefix problem");
        for n in ["other/data.pkl", "ARCHIVE/x", "loose"] {
            assert!(m.contains(n), "{m}");
        }
        // The folder comes from the first central-directory record; a first record without
        // one makes the zip unreadable for torch.
        let z = build_zip(&[("data.pkl", b"\x80\x02}q\x00.")], None);
        assert!(has(&scan(&z, 64), |p| matches!(
            p,
            ZipProblem::OutsidePrefix(_)
        )));
    }

    #[test]
    fn record_lookups_ignore_case_like_torch() {
        let z = build_zip(
            &[
                ("archive/DATA.PKL", b"\x80\x02}q\x00."),
                ("archive/Version", b"3\n"),
            ],
            None,
        );
        let v = scan(&z, 64);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.record("data.pkl").map(|r| r.data.len()), Some(6));
        assert_eq!(
            v.record("version").map(|r| r.data.clone()),
            Some(b"3\n".to_vec())
        );
        assert_eq!(v.key("archive/DATA.PKL"), "data.pkl");
    }

    #[test]
    fn directory_listing_one_record_twice_cannot_hide_another() {
        // Same count of directory entries as local headers, but the second entry points at the
        // first record again: the second local record is hidden from torch.
        let mut z = build_zip(
            &[("a/data.pkl", b"\x80\x02N."), ("a/evil.pkl", b"\x80\x02N.")],
            Some(&["a/data.pkl", "a/data.pkl"]),
        );
        let cd = (0..z.len())
            .rev()
            .find(|&i| z[i..].starts_with(&SIG_CENTRAL))
            .unwrap();
        z[cd + 42..cd + 46].copy_from_slice(&0u32.to_le_bytes());
        let v = scan(&z, 5);
        assert!(
            has(
                &v,
                |p| matches!(p, ZipProblem::NameMismatch(m) if m.contains("twice"))
            ),
            "{:?}",
            v.problems
        );
        assert!(
            has(
                &v,
                |p| matches!(p, ZipProblem::NameMismatch(m) if m.contains("a/evil.pkl") && m.contains("hidden"))
            ),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn compression_method_mismatch_is_reported() {
        let mut z = build_zip(&[("a/data.pkl", b"\x80\x02N.")], None);
        let cd = (0..z.len())
            .find(|&i| z[i..].starts_with(&SIG_CENTRAL))
            .unwrap();
        z[cd + 10] = 8; // the directory says deflated, the local header stored
        let v = scan(&z, 5);
        assert!(
            has(
                &v,
                |p| matches!(p, ZipProblem::NameMismatch(m) if m.contains("compression method"))
            ),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn end_record_is_the_last_signature_as_miniz_picks_it() {
        // A second end record hidden in the real one's comment: miniz takes the last signature,
        // whatever its comment length says; so it must be the one that ends the file.
        let mut z = build_zip(&[("a/data.pkl", b"\x80\x02N.")], None);
        let mut fake = SIG_EOCD.to_vec();
        fake.extend_from_slice(&[0; 16]);
        fake.extend_from_slice(&100u16.to_le_bytes());
        let comment = [fake.as_slice(), b"xx"].concat();
        let n = z.len();
        z[n - 2..].copy_from_slice(&(comment.len() as u16).to_le_bytes());
        z.extend_from_slice(&comment);
        let v = scan(&z, 9);
        assert!(
            has(
                &v,
                |p| matches!(p, ZipProblem::Corrupt(m) if m.contains("end-of-central-directory"))
            ),
            "{:?}",
            v.problems
        );
        // A comment without a signature is fine.
        let mut z = build_zip(&[("a/data.pkl", b"\x80\x02N.")], None);
        let n = z.len();
        z[n - 2..].copy_from_slice(&5u16.to_le_bytes());
        z.extend_from_slice(b"hello");
        assert!(scan(&z, 9).problems.is_empty());
    }

    #[test]
    fn non_utf8_names_are_refused() {
        let mut z = build_zip(&[("a/data.pkl", b"\x80\x02N.")], None);
        // Patch the name byte in the local header and the directory alike.
        for i in 0..z.len() - 10 {
            if &z[i..i + 10] == b"a/data.pkl" {
                z[i + 2] = 0xFF;
            }
        }
        let v = scan(&z, 64);
        assert!(
            has(
                &v,
                |p| matches!(p, ZipProblem::Corrupt(m) if m.contains("UTF-8"))
            ),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn truncated_zip_is_corrupt() {
        let z = build_zip(&[("a/data.pkl", b"\x80\x02N.")], None);
        for cut in [3, 10, 40, z.len() - 5] {
            let v = scan(&z[..cut], 4);
            assert!(
                v.problems
                    .iter()
                    .any(|p| matches!(p, ZipProblem::Corrupt(_))),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn huge_declared_sizes_do_not_allocate() {
        let mut z = build_zip(&[("a/data.pkl", b"\x80\x02N.")], None);
        // Clear bit 3 and declare a 4 GiB entry: the scanner waits for bytes, then reports truncation.
        z[6] = 0;
        z[18..22].copy_from_slice(&u32::MAX.to_le_bytes());
        let v = scan(&z, 3);
        assert!(!v.problems.is_empty());
    }

    #[test]
    fn pickle_cap_is_enforced() {
        let big = vec![b'N'; 5000];
        let z = build_zip(&[("a/data.pkl", &big)], None);
        let mut s = ZipScanner::new(ZipLimits {
            max_pickle_bytes: 1000,
            ..LIM
        });
        s.feed(&z);
        let v = s.finish();
        assert!(v.problems.iter().any(|p| matches!(p, ZipProblem::Limit(_))));
        assert!(v.record("data.pkl").is_some_and(|r| r.truncated));
    }
}
