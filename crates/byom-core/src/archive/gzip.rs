//! Push-based gzip decoding: header parsing, raw-deflate inflation, trailer verification,
//! concatenated members, and the decompression-bomb caps.
//!
//! The header is parsed here rather than by `flate2::GzDecoder` because we need a pull-free
//! (push) decoder that works on chunks of any size, must tell "not gzip" from "plain tar" from
//! "trailing garbage", and must refuse a bomb while it inflates.
//!
//! Determinism: the verdict must not depend on how the bytes were chunked. Input is therefore
//! processed in pieces that never straddle a multiple of [`RATIO_CHECK_INTERVAL`] compressed
//! bytes, the inflater is drained completely after each piece, and the ratio is checked only at
//! those fixed offsets (and at the end). The total-size cap is enforced at the exact byte.

use crc32fast::Hasher;
use flate2::{Decompress, FlushDecompress, Status};

use crate::report::Issue;
use crate::rules::archive::{COMPRESSION_RATIO, CORRUPT_GZIP, NOT_GZIP, TOO_LARGE, TRAILING_DATA};
use crate::Limits;

/// Compressed offsets at which the compression ratio is checked. Small enough that a bomb is
/// caught after at most ~64 MiB of output (deflate expands at most ~1032×), large enough to be
/// free.
pub const RATIO_CHECK_INTERVAL: u64 = 64 * 1024;

/// Size of the inflate output buffer; the only per-stream buffer besides the inflater's window.
const OUT_BUF: usize = 64 * 1024;

/// Bytes kept to tell a plain tar (`ustar` at offset 257) from other non-gzip input.
const SNIFF_BYTES: usize = 263;

const FTEXT_FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const FRESERVED: u8 = 0xE0;

/// Where in the gzip framing the decoder is.
#[derive(Debug)]
enum State {
    /// Start of the file: waiting for the magic (keeping bytes to classify non-gzip input).
    Sniff(Vec<u8>),
    /// Inside a member header.
    Header(Header),
    /// Inflating a member's deflate data.
    Body,
    /// Reading a member's 8-byte trailer (CRC-32, ISIZE).
    Trailer([u8; 8], usize),
    /// Between members: either the end of the file or the magic of the next member.
    Between(Option<u8>),
    /// A fatal error was reported; input is ignored.
    Failed,
}

#[derive(Debug)]
enum HeaderStep {
    Fixed,
    ExtraLen,
    Extra(u64),
    Name,
    Comment,
    Crc,
    Done,
}

#[derive(Debug)]
struct Header {
    buf: [u8; 10],
    n: usize,
    flags: u8,
    step: HeaderStep,
    crc: Hasher,
}

impl Header {
    fn new() -> Self {
        Header {
            buf: [0; 10],
            n: 0,
            flags: 0,
            step: HeaderStep::Fixed,
            crc: Hasher::new(),
        }
    }
}

/// Streaming gzip decoder that hands inflated bytes to a sink.
pub struct GzipDecoder {
    state: State,
    inflater: Decompress,
    out: Vec<u8>,
    crc: Hasher,
    member_out: u64,
    members: u64,
    total_in: u64,
    total_out: u64,
    limits: Limits,
}

impl std::fmt::Debug for GzipDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GzipDecoder")
            .field("state", &self.state)
            .field("total_in", &self.total_in)
            .field("total_out", &self.total_out)
            .finish()
    }
}

/// Receives inflated bytes; an `Err` stops decoding (the issue is the verdict).
pub type Sink<'a> = dyn FnMut(&[u8]) -> Result<(), Issue> + 'a;

impl GzipDecoder {
    pub fn new(limits: &Limits) -> Self {
        GzipDecoder {
            state: State::Sniff(Vec::new()),
            inflater: Decompress::new(false),
            out: vec![0; OUT_BUF],
            crc: Hasher::new(),
            member_out: 0,
            members: 0,
            total_in: 0,
            total_out: 0,
            limits: limits.clone(),
        }
    }

    /// Feed compressed bytes. Returns the fatal issue, if any, after which nothing more is read.
    pub fn push(&mut self, mut input: &[u8], sink: &mut Sink<'_>) -> Result<(), Issue> {
        while !input.is_empty() {
            if matches!(self.state, State::Failed) {
                return Ok(());
            }
            let to_boundary = RATIO_CHECK_INTERVAL - self.total_in % RATIO_CHECK_INTERVAL;
            let take = usize::try_from(to_boundary)
                .unwrap_or(usize::MAX)
                .min(input.len());
            let (piece, rest) = input.split_at(take);
            input = rest;
            self.total_in += piece.len() as u64;
            let result = self.process(piece, sink).and_then(|()| {
                if self.total_in.is_multiple_of(RATIO_CHECK_INTERVAL) {
                    self.check_ratio()
                } else {
                    Ok(())
                }
            });
            if let Err(issue) = result {
                self.state = State::Failed;
                return Err(issue);
            }
        }
        Ok(())
    }

    /// End of input: the stream must end between members.
    pub fn finish(&mut self) -> Result<(), Issue> {
        let result = self.check_ratio().and_then(|()| match &self.state {
            State::Failed | State::Between(None) => Ok(()),
            State::Between(Some(_)) => {
                Err(TRAILING_DATA.issue(None, "A stray byte follows the end of the gzip data."))
            }
            State::Sniff(bytes) => Err(not_gzip(bytes)),
            State::Header(_) | State::Body | State::Trailer(..) => {
                Err(CORRUPT_GZIP.issue(None, "The gzip stream ends early: the file is truncated."))
            }
        });
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn check_ratio(&self) -> Result<(), Issue> {
        let l = &self.limits;
        if self.total_out > l.ratio_grace_bytes
            && self.total_out > l.max_compression_ratio.saturating_mul(self.total_in)
        {
            return Err(COMPRESSION_RATIO.issue(
                None,
                format!(
                    "The package decompresses more than {}× its compressed size: a decompression bomb \
                     (limit max_compression_ratio = {}).",
                    l.max_compression_ratio, l.max_compression_ratio
                ),
            ));
        }
        Ok(())
    }

    fn process(&mut self, mut input: &[u8], sink: &mut Sink<'_>) -> Result<(), Issue> {
        while !input.is_empty() {
            match &mut self.state {
                State::Failed => return Ok(()),
                State::Sniff(bytes) => {
                    let need = SNIFF_BYTES - bytes.len();
                    let take = need.min(input.len());
                    bytes.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if bytes.len() >= 2 && bytes[..2] == [0x1f, 0x8b] {
                        let replay = std::mem::take(bytes);
                        self.state = State::Header(Header::new());
                        self.process(&replay, sink)?;
                    } else if bytes.len() >= SNIFF_BYTES {
                        return Err(not_gzip(bytes));
                    }
                }
                State::Header(h) => {
                    let used = header_step(h, input)?;
                    input = &input[used..];
                    if header_done(h) {
                        self.state = State::Body;
                        self.inflater.reset(false);
                        self.crc = Hasher::new();
                        self.member_out = 0;
                    }
                }
                State::Body => {
                    let used = self.inflate(input, sink)?;
                    input = &input[used..];
                }
                State::Trailer(buf, n) => {
                    let take = (8 - *n).min(input.len());
                    buf[*n..*n + take].copy_from_slice(&input[..take]);
                    *n += take;
                    input = &input[take..];
                    if *n == 8 {
                        let crc = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
                        let isize = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
                        let actual = std::mem::replace(&mut self.crc, Hasher::new()).finalize();
                        if crc != actual {
                            return Err(CORRUPT_GZIP.issue(
                                None,
                                format!(
                                    "gzip CRC-32 mismatch in member {}: the data is corrupt.",
                                    self.members + 1
                                ),
                            ));
                        }
                        if u64::from(isize) != self.member_out & 0xFFFF_FFFF {
                            return Err(CORRUPT_GZIP.issue(
                                None,
                                format!(
                                    "gzip length mismatch in member {}: the data is corrupt.",
                                    self.members + 1
                                ),
                            ));
                        }
                        self.members += 1;
                        self.state = State::Between(None);
                    }
                }
                State::Between(first) => {
                    let b = input[0];
                    input = &input[1..];
                    match first {
                        None if b == 0x1f => *first = Some(b),
                        Some(_) if b == 0x8b => {
                            let mut h = Header::new();
                            h.buf[0] = 0x1f;
                            h.buf[1] = 0x8b;
                            h.n = 2;
                            h.crc.update(&[0x1f, 0x8b]);
                            self.state = State::Header(h);
                        }
                        _ => {
                            return Err(TRAILING_DATA.issue(
                                None,
                                "Bytes that are not gzip follow the end of the compressed data.",
                            ))
                        }
                    }
                }
            }
        }
        // Drain output the inflater still holds (a full output buffer on the last call).
        if matches!(self.state, State::Body) {
            self.inflate(&[], sink)?;
        }
        Ok(())
    }

    /// Inflate as much as possible; returns input bytes consumed.
    fn inflate(&mut self, input: &[u8], sink: &mut Sink<'_>) -> Result<usize, Issue> {
        let mut pos = 0;
        loop {
            let before_in = self.inflater.total_in();
            let before_out = self.inflater.total_out();
            // On corrupt data the inflater has still written everything decoded before the bad
            // code: hand that on first, so the verdict does not depend on the chunking.
            let result =
                self.inflater
                    .decompress(&input[pos..], &mut self.out, FlushDecompress::None);
            let consumed = usize::try_from(self.inflater.total_in() - before_in).unwrap_or(0);
            let produced = usize::try_from(self.inflater.total_out() - before_out).unwrap_or(0);
            pos += consumed;
            if produced > 0 {
                let room = self
                    .limits
                    .max_uncompressed_bytes
                    .saturating_sub(self.total_out);
                let allowed = produced.min(usize::try_from(room).unwrap_or(usize::MAX));
                let chunk = &self.out[..allowed];
                self.crc.update(chunk);
                self.member_out += allowed as u64;
                self.total_out += allowed as u64;
                sink(chunk)?;
                if allowed < produced {
                    return Err(TOO_LARGE.issue(
                        None,
                        format!(
                            "The package decompresses to more than {} bytes (limit max_uncompressed_bytes).",
                            self.limits.max_uncompressed_bytes
                        ),
                    ));
                }
            }
            // The inflater's own error text is not used: zlib-rs words the same corruption
            // differently depending on how much input one call gets (found by fuzzing:
            // "invalid distance too far back" vs "repeated call with bad state"), and the
            // report must not depend on the chunking.
            let status = result.map_err(|_| {
                CORRUPT_GZIP.issue(
                    None,
                    "The compressed data is corrupt: the deflate stream holds invalid data.",
                )
            })?;
            if status == Status::StreamEnd {
                self.state = State::Trailer([0; 8], 0);
                return Ok(pos);
            }
            let out_full = produced == self.out.len();
            if !out_full && (pos >= input.len() || (consumed == 0 && produced == 0)) {
                return Ok(pos);
            }
        }
    }
}

/// Advance a header parse; returns bytes used. Errors on a bad method or reserved flags.
fn header_step(h: &mut Header, input: &[u8]) -> Result<usize, Issue> {
    let mut used = 0;
    while used < input.len() && !header_done(h) {
        let b = input[used];
        match h.step {
            HeaderStep::Fixed => {
                h.buf[h.n] = b;
                h.n += 1;
                h.crc.update(&[b]);
                used += 1;
                if h.n == 10 {
                    if h.buf[2] != 8 {
                        return Err(CORRUPT_GZIP.issue(
                            None,
                            format!(
                                "Unknown gzip compression method {} (only deflate exists).",
                                h.buf[2]
                            ),
                        ));
                    }
                    h.flags = h.buf[3];
                    if h.flags & FRESERVED != 0 {
                        return Err(
                            CORRUPT_GZIP.issue(None, "The gzip header has reserved flag bits set.")
                        );
                    }
                    h.n = 0;
                    h.step = next_step(h.flags, 0);
                }
            }
            HeaderStep::ExtraLen => {
                h.buf[h.n] = b;
                h.n += 1;
                h.crc.update(&[b]);
                used += 1;
                if h.n == 2 {
                    let len = u16::from_le_bytes([h.buf[0], h.buf[1]]);
                    h.n = 0;
                    h.step = if len == 0 {
                        next_step(h.flags, 1)
                    } else {
                        HeaderStep::Extra(len.into())
                    };
                }
            }
            HeaderStep::Extra(left) => {
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(input.len() - used);
                h.crc.update(&input[used..used + take]);
                used += take;
                let left = left - take as u64;
                h.step = if left == 0 {
                    next_step(h.flags, 1)
                } else {
                    HeaderStep::Extra(left)
                };
            }
            HeaderStep::Name | HeaderStep::Comment => {
                h.crc.update(&[b]);
                used += 1;
                if b == 0 {
                    let after = if matches!(h.step, HeaderStep::Name) {
                        2
                    } else {
                        3
                    };
                    h.step = next_step(h.flags, after);
                }
            }
            HeaderStep::Done => break,
            HeaderStep::Crc => {
                h.buf[h.n] = b;
                h.n += 1;
                used += 1;
                if h.n == 2 {
                    let stored = u16::from_le_bytes([h.buf[0], h.buf[1]]);
                    let actual = (h.crc.clone().finalize() & 0xFFFF) as u16;
                    if stored != actual {
                        return Err(CORRUPT_GZIP
                            .issue(None, "The gzip header checksum (FHCRC) does not match."));
                    }
                    h.step = HeaderStep::Done;
                }
            }
        }
    }
    Ok(used)
}

/// The next header part after part `done` (0 fixed, 1 extra, 2 name, 3 comment).
fn next_step(flags: u8, done: u8) -> HeaderStep {
    if done < 1 && flags & FEXTRA != 0 {
        HeaderStep::ExtraLen
    } else if done < 2 && flags & FNAME != 0 {
        HeaderStep::Name
    } else if done < 3 && flags & FCOMMENT != 0 {
        HeaderStep::Comment
    } else if flags & FTEXT_FHCRC != 0 {
        HeaderStep::Crc
    } else {
        HeaderStep::Done
    }
}

fn header_done(h: &Header) -> bool {
    matches!(h.step, HeaderStep::Done)
}

/// The BYOM001 issue, naming what the bytes are when we can tell.
fn not_gzip(bytes: &[u8]) -> Issue {
    const PORTAL: &str =
        "Model artifact is not a valid tar.gz file. Please provide a gzipped tar archive.";
    if bytes.is_empty() {
        return NOT_GZIP.issue(None, format!("{PORTAL} The file is empty."));
    }
    if bytes.len() >= 262 && &bytes[257..262] == b"ustar" {
        return NOT_GZIP.issue_with_hint(
            None,
            format!("{PORTAL} This file is an uncompressed tar archive."),
            "Compress it: `gzip -c model.tar > model.tar.gz`, or create it with `tar czf` (note the `z`).",
        );
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return NOT_GZIP.issue_with_hint(
            None,
            format!("{PORTAL} This file is a zip archive (a bare .pt file is a zip)."),
            "A .pt alone is not a package: build one with `byom pack model.pt ...`, or create the tar.gz with config.yaml, mochi.json and export_artifacts/.",
        );
    }
    if bytes.len() >= 2 && bytes[..2] == [0x1f, 0x8b] {
        return CORRUPT_GZIP.issue(None, "The gzip stream ends early: the file is truncated.");
    }
    NOT_GZIP.issue(None, PORTAL)
}

/// Length of the gzip member header at the start of `bytes`, parsed and checked exactly as
/// [`GzipDecoder`] does (method, reserved flags, FEXTRA/FNAME/FCOMMENT, FHCRC); `None` when the
/// bytes are not a complete valid header. The parallel reader starts inflating there.
pub fn member_header_len(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < 2 || bytes[..2] != [0x1f, 0x8b] {
        return None;
    }
    let mut h = Header::new();
    let used = header_step(&mut h, bytes).ok()?;
    header_done(&h).then_some(used)
}
