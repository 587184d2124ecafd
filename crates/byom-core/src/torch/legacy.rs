//! The legacy (non-zip) `torch.save` format, streamed.
//!
//! Layout: a pickle of the magic number 0x1950a86a20f9469cfc6c, a pickle of the protocol
//! version (1001), a pickle of `sys_info`, the main pickle (tensors as persistent ids
//! `('storage', type, key, location, numel, view_metadata)`), a pickle of the storage keys in
//! write order, then per key: the element count as a little-endian u64 and the raw bytes.
//! The pickles are buffered (bounded by `max_pickle_bytes`), the storages are only counted.

use std::collections::VecDeque;

use super::inventory::{dtype_size, Reader};
use super::pickle::{walk, Pickle, PickleError, WalkLimits};

/// The protocol-2 pickle of the magic number, as `torch.save` writes it.
pub const MAGIC_PICKLE: [u8; 14] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19,
];
/// The magic number's 10 little-endian bytes (as LONG1 `8a 0a` would carry them).
pub const MAGIC_LONG: [u8; 12] = [
    0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19,
];

/// Whether the first bytes are a pickled legacy magic number (any protocol, framed or not).
pub fn looks_legacy(head: &[u8]) -> bool {
    head.len() >= 2
        && head[0] == 0x80
        && head[..head.len().min(32)]
            .windows(MAGIC_LONG.len())
            .any(|w| w == MAGIC_LONG)
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyProblem {
    Corrupt(String),
    Limit(String),
    SizeMismatch(String),
}

#[derive(Debug)]
enum Stage {
    Pickles,
    Storages,
    Done,
    Failed,
}

/// Streaming reader of a legacy file.
#[derive(Debug)]
pub struct LegacyReader {
    walk_limits: WalkLimits,
    max_pickle_bytes: usize,
    buf: Vec<u8>,
    cursor: usize,
    next_try: usize,
    pub pickles: Vec<Pickle>,
    stage: Stage,
    /// (key, element size, declared numel) still to read.
    queue: VecDeque<(String, u64, u64)>,
    size_buf: Vec<u8>,
    skipping: u64,
    pub problems: Vec<LegacyProblem>,
    trailing: u64,
}

impl LegacyReader {
    pub fn new(walk_limits: WalkLimits, max_pickle_bytes: u64) -> Self {
        LegacyReader {
            walk_limits,
            max_pickle_bytes: usize::try_from(max_pickle_bytes).unwrap_or(usize::MAX),
            buf: Vec::new(),
            cursor: 0,
            next_try: 4096,
            pickles: Vec::new(),
            stage: Stage::Pickles,
            queue: VecDeque::new(),
            size_buf: Vec::new(),
            skipping: 0,
            problems: Vec::new(),
            trailing: 0,
        }
    }

    pub fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            match self.stage {
                Stage::Pickles => {
                    let take = chunk
                        .len()
                        .min(self.max_pickle_bytes.saturating_sub(self.buf.len()));
                    self.buf.extend_from_slice(&chunk[..take]);
                    chunk = &chunk[take..];
                    let full = self.buf.len() >= self.max_pickle_bytes;
                    if self.buf.len() >= self.next_try || full {
                        self.try_pickles(false);
                    }
                    if matches!(self.stage, Stage::Pickles) {
                        if full {
                            self.fail(LegacyProblem::Limit(format!(
                                "the legacy file's pickles are larger than max_pickle_bytes ({} bytes)",
                                self.max_pickle_bytes
                            )));
                        } else if chunk.is_empty() {
                            return;
                        }
                    }
                }
                Stage::Storages => {
                    let used = self.storages(chunk);
                    chunk = &chunk[used..];
                }
                Stage::Done => {
                    self.trailing += chunk.len() as u64;
                    return;
                }
                Stage::Failed => return,
            }
        }
    }

    fn fail(&mut self, p: LegacyProblem) {
        self.problems.push(p);
        self.stage = Stage::Failed;
        self.buf = Vec::new();
    }

    fn try_pickles(&mut self, final_try: bool) {
        while self.pickles.len() < 5 {
            let p = walk(&self.buf[self.cursor..], self.walk_limits);
            match &p.error {
                None => {
                    self.cursor += p.consumed;
                    self.pickles.push(p);
                }
                Some(PickleError::Truncated)
                    if !final_try && self.buf.len() < self.max_pickle_bytes =>
                {
                    self.next_try = self.buf.len().saturating_mul(2);
                    return;
                }
                Some(e) => {
                    let full = self.buf.len() >= self.max_pickle_bytes;
                    let msg = match e {
                        PickleError::Truncated if full => LegacyProblem::Limit(format!(
                            "the legacy file's pickles are larger than max_pickle_bytes ({} bytes)",
                            self.max_pickle_bytes
                        )),
                        PickleError::TooManyOps | PickleError::TooManyNodes => {
                            LegacyProblem::Limit(format!(
                                "legacy pickle {}: {e}",
                                self.pickles.len() + 1
                            ))
                        }
                        _ => LegacyProblem::Corrupt(format!(
                            "legacy pickle {}: {e}",
                            self.pickles.len() + 1
                        )),
                    };
                    self.pickles.push(p);
                    self.fail(msg);
                    return;
                }
            }
        }
        // All five pickles read: queue the storages in key order.
        let keys = self
            .pickles
            .get(4)
            .and_then(|p| p.root.and_then(|r| Reader::new(p).strings(r)));
        let storages = self
            .pickles
            .get(3)
            .map(|p| Reader::new(p).storages())
            .unwrap_or_default();
        let Some(keys) = keys else {
            self.fail(LegacyProblem::Corrupt(
                "the legacy file's storage key list is not a list of keys".into(),
            ));
            return;
        };
        for k in keys {
            match storages.get(&k) {
                Some(s) => self
                    .queue
                    .push_back((k, dtype_size(&s.dtype).unwrap_or(1), s.numel)),
                None => {
                    self.fail(LegacyProblem::Corrupt(format!(
                        "storage {k} is listed but no tensor uses it"
                    )));
                    return;
                }
            }
        }
        self.stage = Stage::Storages;
        let rest = std::mem::take(&mut self.buf);
        let rest = &rest[self.cursor..];
        let mut r = rest;
        while !r.is_empty() && matches!(self.stage, Stage::Storages) {
            let used = self.storages(r);
            r = &r[used..];
        }
        if matches!(self.stage, Stage::Done) {
            self.trailing += r.len() as u64;
        }
    }

    /// Consume storage bytes; returns bytes used.
    fn storages(&mut self, d: &[u8]) -> usize {
        let mut pos = 0;
        while pos < d.len() {
            if self.skipping > 0 {
                let n = (d.len() - pos).min(usize::try_from(self.skipping).unwrap_or(usize::MAX));
                pos += n;
                self.skipping -= n as u64;
                continue;
            }
            let Some(&(ref key, elsize, declared)) = self.queue.front() else {
                self.stage = Stage::Done;
                return pos;
            };
            let need = 8 - self.size_buf.len();
            let n = need.min(d.len() - pos);
            self.size_buf.extend_from_slice(&d[pos..pos + n]);
            pos += n;
            if self.size_buf.len() == 8 {
                let mut a = [0u8; 8];
                a.copy_from_slice(&self.size_buf);
                let numel = u64::from_le_bytes(a);
                if numel != declared {
                    let msg = format!("storage {key}: the pickle declares {declared} elements, the file holds {numel}");
                    self.problems.push(LegacyProblem::SizeMismatch(msg));
                }
                self.skipping = numel.saturating_mul(elsize);
                self.size_buf.clear();
                self.queue.pop_front();
                if self.queue.is_empty() && self.skipping == 0 {
                    self.stage = Stage::Done;
                }
            }
        }
        if self.queue.is_empty() && self.skipping == 0 {
            self.stage = Stage::Done;
        }
        pos
    }

    /// End of input: report what is incomplete.
    pub fn finish(&mut self) {
        if matches!(self.stage, Stage::Pickles) {
            self.try_pickles(true);
        }
        match self.stage {
            Stage::Pickles => {}
            Stage::Storages if !self.queue.is_empty() || self.skipping > 0 => {
                self.problems.push(LegacyProblem::Corrupt(format!(
                    "the legacy file is truncated: {} storage(s) incomplete",
                    self.queue.len().max(1)
                )));
            }
            _ => {}
        }
        if self.trailing > 0 {
            self.problems.push(LegacyProblem::Corrupt(format!(
                "{} unexpected bytes after the last storage",
                self.trailing
            )));
        }
    }

    /// The main pickle (the saved object), when read.
    pub fn main(&self) -> Option<&Pickle> {
        self.pickles.get(3).filter(|p| p.root.is_some())
    }
}
