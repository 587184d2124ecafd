//! A push-based tar walker: 512-byte headers (ustar, GNU long names, PAX), the hostile-member
//! policy, and delivery of accepted files' bytes to a [`TarSink`] without buffering them.
//!
//! Where tar readers resolve a header differently, the archive is refused rather than read one
//! way: what byom validates must be what GNU tar, Python's tarfile or any other tool extracts
//! (tests/test_tar_differential.py holds the three readers to that). Refused, because GNU tar
//! and tarfile disagree on them: a PAX global header (`g`) that sets a path, size or link; two
//! different names for one member (`L` and `x`, two `L`s, two `x` paths) or two sizes; PAX
//! `GNU.sparse.*` keys (tarfile renames members by them); prefix bytes in a header without
//! POSIX ustar magic (tarfile joins them to the name, GNU tar does not); a `'0'`/`'7'` member
//! whose name ends with `/` (a directory for GNU tar, a file for tarfile).

use std::collections::HashSet;

use super::path::{is_appledouble, normalise, PathProblem};
use crate::report::Issue;
use crate::rules::archive::{
    APPLEDOUBLE_IGNORED, CORRUPT_TAR, DUPLICATE_MEMBER, LINK_OR_SPECIAL, PATH_TOO_LONG, TOO_LARGE,
    TOO_MANY_ENTRIES, UNSAFE_PATH,
};
use crate::Limits;

const BLOCK: usize = 512;

/// Receives what the walk finds. Issues found by the walker's policy arrive through `issue`.
pub trait TarSink {
    /// Every member, in archive order, with its normalised path (raw path if refused, a
    /// trailing `/` for a directory). Accepted files are the ones `file_start` then announces.
    fn entry(&mut self, path: &str, size: u64);
    /// A regular file that passed the policy; its bytes follow through `file_data`.
    fn file_start(&mut self, path: &str, size: u64);
    fn file_data(&mut self, data: &[u8]);
    fn file_end(&mut self);
    /// A non-fatal issue (refused member, ignored AppleDouble file).
    fn issue(&mut self, issue: Issue);
}

#[derive(Debug)]
enum Mode {
    /// Deliver to the sink.
    Deliver,
    Skip,
    /// A GNU `L` long-name record (bytes kept up to the path limit; `true` if it overflowed).
    LongName(Vec<u8>, bool),
    /// A PAX extended header record: `x` (next member) or, when `true`, `g` (global).
    Pax(Vec<u8>, bool),
}

#[derive(Debug)]
enum State {
    Header,
    Data {
        remaining: u64,
        pad: u64,
        mode: Mode,
    },
    /// The end-of-archive block was seen; anything after it is ignored.
    End,
}

/// The tar walk over decompressed bytes.
#[derive(Debug)]
pub struct TarWalker {
    limits: Limits,
    state: State,
    header: Box<[u8; BLOCK]>,
    filled: usize,
    headers_seen: u64,
    members: u64,
    declared_bytes: u64,
    long_name: Option<(Vec<u8>, bool)>,
    pax_path: Option<String>,
    pax_size: Option<u64>,
    seen_files: HashSet<String>,
    appledouble_warned: bool,
    current: Option<String>,
}

impl TarWalker {
    pub fn new(limits: &Limits) -> Self {
        TarWalker {
            limits: limits.clone(),
            state: State::Header,
            header: Box::new([0; BLOCK]),
            filled: 0,
            headers_seen: 0,
            members: 0,
            declared_bytes: 0,
            long_name: None,
            pax_path: None,
            pax_size: None,
            seen_files: HashSet::new(),
            appledouble_warned: false,
            current: None,
        }
    }

    /// Sum of the sizes of regular files declared in headers.
    pub fn declared_bytes(&self) -> u64 {
        self.declared_bytes
    }

    /// Walk the next decompressed bytes. An `Err` is fatal.
    pub fn push(&mut self, mut input: &[u8], sink: &mut dyn TarSink) -> Result<(), Issue> {
        while !input.is_empty() {
            match &mut self.state {
                State::End => return Ok(()),
                State::Header => {
                    let take = (BLOCK - self.filled).min(input.len());
                    self.header[self.filled..self.filled + take].copy_from_slice(&input[..take]);
                    self.filled += take;
                    input = &input[take..];
                    if self.filled == BLOCK {
                        self.filled = 0;
                        self.on_header(sink)?;
                    }
                }
                State::Data {
                    remaining,
                    pad,
                    mode,
                } => {
                    if *remaining > 0 {
                        let take = usize::try_from(*remaining)
                            .unwrap_or(usize::MAX)
                            .min(input.len());
                        let data = &input[..take];
                        match mode {
                            Mode::Deliver => sink.file_data(data),
                            Mode::Skip => {}
                            Mode::LongName(buf, overflow) => {
                                let cap = usize::try_from(self.limits.max_path_bytes)
                                    .unwrap_or(usize::MAX)
                                    .saturating_add(1);
                                let room = cap.saturating_sub(buf.len());
                                let keep = room.min(data.len());
                                buf.extend_from_slice(&data[..keep]);
                                if keep < data.len() {
                                    *overflow = true;
                                }
                            }
                            Mode::Pax(buf, _) => buf.extend_from_slice(data),
                        }
                        *remaining -= take as u64;
                        input = &input[take..];
                        if *remaining == 0 {
                            self.end_member(sink)?;
                        }
                    } else {
                        let take = usize::try_from(*pad).unwrap_or(usize::MAX).min(input.len());
                        *pad -= take as u64;
                        input = &input[take..];
                        if *pad == 0 {
                            self.state = State::Header;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// End of decompressed data: the archive must not stop inside a member.
    pub fn finish(&mut self) -> Result<(), Issue> {
        match &self.state {
            State::End => Ok(()),
            State::Header if self.filled == 0 && self.headers_seen > 0 => Ok(()),
            State::Header if self.filled == 0 => {
                Err(CORRUPT_TAR.issue(None, "The archive is empty: the gzip holds no tar data."))
            }
            State::Data {
                pad, remaining: 0, ..
            } if *pad == 0 => Ok(()),
            _ => Err(CORRUPT_TAR.issue(
                self.current.as_deref(),
                "The tar archive ends in the middle of a member: it is truncated.",
            )),
        }
    }

    fn end_member(&mut self, sink: &mut dyn TarSink) -> Result<(), Issue> {
        let State::Data { mode, pad, .. } = &mut self.state else {
            return Ok(());
        };
        let pad_left = *pad;
        match std::mem::replace(mode, Mode::Skip) {
            Mode::Deliver => sink.file_end(),
            Mode::Skip => {}
            Mode::LongName(mut buf, overflow) => {
                // GNU tar and tarfile stop the name at the first NUL.
                if let Some(nul) = buf.iter().position(|b| *b == 0) {
                    buf.truncate(nul);
                }
                if self
                    .long_name
                    .as_ref()
                    .is_some_and(|(prev, _)| *prev != buf)
                {
                    return Err(ambiguous(
                        "Two GNU long-name records name one member differently",
                    ));
                }
                self.long_name = Some((buf, overflow));
            }
            Mode::Pax(buf, global) => self.parse_pax(&buf, global)?,
        }
        if pad_left == 0 {
            self.state = State::Header;
        }
        Ok(())
    }

    fn parse_pax(&mut self, buf: &[u8], global: bool) -> Result<(), Issue> {
        let bad = || CORRUPT_TAR.issue(None, "A PAX extended header is malformed.");
        let mut rest = buf;
        while !rest.is_empty() {
            let space = rest.iter().position(|b| *b == b' ').ok_or_else(bad)?;
            let len: usize = std::str::from_utf8(&rest[..space])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)?;
            if len <= space + 1 || len > rest.len() {
                return Err(bad());
            }
            let record = &rest[space + 1..len];
            let record = record.strip_suffix(b"\n").unwrap_or(record);
            if let Some(eq) = record.iter().position(|b| *b == b'=') {
                let (key, value) = (&record[..eq], &record[eq + 1..]);
                let sparse = key.starts_with(b"GNU.sparse.");
                if global && (sparse || matches!(key, b"path" | b"size" | b"linkpath")) {
                    return Err(ambiguous(&format!(
                        "A PAX global header sets '{}' (GNU tar applies it to every later member, Python's tarfile does not)",
                        key.escape_ascii()
                    )));
                }
                if sparse {
                    return Err(ambiguous(&format!(
                        "A PAX header carries '{}' (sparse files are not supported, and Python's tarfile renames the member by it)",
                        key.escape_ascii()
                    )));
                }
                match key {
                    _ if global => {}
                    b"path" => {
                        let path = String::from_utf8_lossy(value).into_owned();
                        if self.pax_path.as_ref().is_some_and(|p| *p != path) {
                            return Err(ambiguous("Two PAX headers name one member differently"));
                        }
                        self.pax_path = Some(path);
                    }
                    b"size" => {
                        let size = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
                        let size = size.ok_or_else(bad)?;
                        if self.pax_size.is_some_and(|s| s != size) {
                            return Err(ambiguous(
                                "Two PAX headers give one member different sizes",
                            ));
                        }
                        self.pax_size = Some(size);
                    }
                    _ => {}
                }
            }
            rest = &rest[len..];
        }
        Ok(())
    }

    fn on_header(&mut self, sink: &mut dyn TarSink) -> Result<(), Issue> {
        let h = &*self.header;
        if h.iter().all(|b| *b == 0) {
            if self.headers_seen == 0 {
                return Err(CORRUPT_TAR.issue(None, "The archive is empty: it holds no files."));
            }
            self.state = State::End;
            return Ok(());
        }
        let first = self.headers_seen == 0;
        self.headers_seen += 1;
        if !checksum_ok(h) {
            let msg = if first {
                "The decompressed content is not a tar archive (was a single file gzipped instead of tarred?)."
            } else {
                "A tar header has a bad checksum: the archive is corrupt."
            };
            return Err(CORRUPT_TAR.issue(None, msg));
        }
        let typeflag = h[156];
        let header_size = parse_number(&h[124..136])
            .ok_or_else(|| CORRUPT_TAR.issue(None, "A tar header has an unreadable size field."))?;
        let size = if matches!(typeflag, b'x' | b'g' | b'L' | b'K') {
            header_size
        } else {
            self.pax_size.take().unwrap_or(header_size)
        };
        let pad = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        let data = |mode| State::Data {
            remaining: size,
            pad,
            mode,
        };

        match typeflag {
            b'L' => {
                self.state = data(Mode::LongName(Vec::new(), false));
                return Ok(());
            }
            b'x' | b'g' => {
                if size > self.limits.max_metadata_bytes {
                    return Err(
                        CORRUPT_TAR.issue(None, "A PAX extended header is implausibly large.")
                    );
                }
                self.state = data(Mode::Pax(Vec::new(), typeflag == b'g'));
                return Ok(());
            }
            b'K' => {
                self.state = data(Mode::Skip);
                return Ok(());
            }
            _ => {}
        }

        // tarfile joins a non-empty prefix field to the name whatever the magic; GNU tar (and
        // this walker) only under POSIX ustar magic. Old GNU headers keep times there, which
        // GNU tar writes only for incremental dumps.
        if &h[257..263] != b"ustar\0" && h[345] != 0 {
            return Err(ambiguous(
                "A tar header without POSIX ustar magic has bytes in its prefix field (Python's tarfile joins them to the name, GNU tar does not)",
            ));
        }

        self.members += 1;
        if self.members > self.limits.max_entries {
            return Err(TOO_MANY_ENTRIES.issue(
                None,
                format!(
                    "The archive has more than {} members (limit max_entries).",
                    self.limits.max_entries
                ),
            ));
        }

        let (raw, name_overflow) = match (self.long_name.take(), self.pax_path.take()) {
            // tarfile lets the first of the two records win, GNU tar the PAX one.
            (Some((bytes, _)), Some(p)) if String::from_utf8_lossy(&bytes) != p => {
                return Err(ambiguous(
                    "A GNU long-name record and a PAX path name one member differently",
                ));
            }
            (Some((bytes, overflow)), _) => {
                (String::from_utf8_lossy(&bytes).into_owned(), overflow)
            }
            (None, Some(p)) => (p, false),
            (None, None) => (ustar_name(h), false),
        };
        // A trailing slash makes a NUL-typed member a directory for every reader; on a '0' or
        // '7' member GNU tar still makes a directory but tarfile a regular file.
        if matches!(typeflag, b'0' | b'7') && raw.ends_with('/') {
            return Err(ambiguous(&format!(
                "Member '{}' is a regular file (type '{}') whose name ends with '/' (GNU tar makes it a directory, Python's tarfile a file)",
                raw.chars().take(80).collect::<String>(),
                typeflag.escape_ascii()
            )));
        }
        let is_dir = typeflag == b'5' || (typeflag == 0 && raw.ends_with('/'));
        let is_file = matches!(typeflag, b'0' | 0 | b'7') && !is_dir;

        // Policy, in order: escape, length, type, AppleDouble, duplicate.
        let mut accept = false;
        let path = match normalise(&raw) {
            Err(problem) => {
                let why = match problem {
                    PathProblem::Absolute => "an absolute path",
                    PathProblem::ParentComponent => "a `..` component",
                };
                sink.entry(&raw, size);
                sink.issue(UNSAFE_PATH.issue(
                    Some(&raw),
                    format!("Member '{raw}' has {why}; it was not read."),
                ));
                raw
            }
            Ok(path) => {
                if name_overflow || path.len() as u64 > self.limits.max_path_bytes {
                    let shown: String = path.chars().take(80).collect();
                    sink.entry(&shown, size);
                    sink.issue(PATH_TOO_LONG.issue(
                        None,
                        format!(
                            "A member path is longer than {} bytes (limit max_path_bytes): '{shown}…'.",
                            self.limits.max_path_bytes
                        ),
                    ));
                } else if !is_dir && !is_file {
                    let what = match typeflag {
                        b'1' => "a hardlink",
                        b'2' => "a symlink",
                        b'3' => "a character device",
                        b'4' => "a block device",
                        b'6' => "a FIFO",
                        _ => "an unsupported special entry",
                    };
                    sink.entry(&path, size);
                    sink.issue(LINK_OR_SPECIAL.issue(
                        Some(&path),
                        format!("Member '{path}' is {what} (type '{}'); only regular files are allowed.", typeflag.escape_ascii()),
                    ));
                } else if is_appledouble(&path) {
                    sink.entry(&path, size);
                    if !self.appledouble_warned {
                        self.appledouble_warned = true;
                        sink.issue(APPLEDOUBLE_IGNORED.issue(
                            Some(&path),
                            format!(
                                "macOS metadata member '{path}' (and any like it) was ignored."
                            ),
                        ));
                    }
                } else if is_dir || path.is_empty() {
                    if !path.is_empty() {
                        sink.entry(&format!("{path}/"), 0);
                    }
                } else if self.seen_files.contains(&path) {
                    sink.entry(&path, size);
                    sink.issue(DUPLICATE_MEMBER.issue(
                        Some(&path),
                        format!("'{path}' appears more than once in the archive (as '{raw}'); only the first copy was read."),
                    ));
                } else {
                    self.declared_bytes = self.declared_bytes.saturating_add(size);
                    if self.declared_bytes > self.limits.max_uncompressed_bytes {
                        return Err(TOO_LARGE.issue(
                            Some(&path),
                            format!(
                                "The files declare more than {} bytes in total (limit max_uncompressed_bytes).",
                                self.limits.max_uncompressed_bytes
                            ),
                        ));
                    }
                    self.seen_files.insert(path.clone());
                    sink.entry(&path, size);
                    sink.file_start(&path, size);
                    accept = true;
                }
                path
            }
        };
        self.current = Some(path);
        if accept {
            if size == 0 {
                sink.file_end();
                self.state = State::Header;
            } else {
                self.state = data(Mode::Deliver);
            }
        } else {
            self.state = if size == 0 {
                State::Header
            } else {
                data(Mode::Skip)
            };
        }
        Ok(())
    }
}

/// Fatal: a header that tar readers resolve differently (see the module documentation).
fn ambiguous(what: &str) -> Issue {
    CORRUPT_TAR.issue(
        None,
        format!("{what}: tar tools would read this archive differently, so it is refused. Re-create it with a standard tar (`tar czf`)."),
    )
}

/// The header checksum: unsigned sum of all bytes with the checksum field read as spaces
/// (some old tars used a signed sum; both are accepted).
fn checksum_ok(h: &[u8; BLOCK]) -> bool {
    let Some(stored) = parse_octal(&h[148..156]) else {
        return false;
    };
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, b) in h.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { *b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed)
}

/// A numeric header field: octal text, or GNU base-256 (high bit set) for large sizes.
fn parse_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut v: u64 = u64::from(field[0] & 0x3f);
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(v);
    }
    parse_octal(field)
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let text: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| *b != 0 && *b != b' ')
        .collect();
    if text.is_empty() {
        return Some(0);
    }
    let s = std::str::from_utf8(&text).ok()?;
    u64::from_str_radix(s, 8).ok()
}

/// `prefix/name` for POSIX ustar headers, `name` otherwise (GNU uses the prefix bytes for times).
fn ustar_name(h: &[u8; BLOCK]) -> String {
    let field = |r: std::ops::Range<usize>| {
        let f = &h[r];
        let end = f.iter().position(|b| *b == 0).unwrap_or(f.len());
        String::from_utf8_lossy(&f[..end]).into_owned()
    };
    let name = field(0..100);
    if &h[257..263] == b"ustar\0" {
        let prefix = field(345..500);
        if !prefix.is_empty() {
            return format!("{prefix}/{name}");
        }
    }
    name
}
