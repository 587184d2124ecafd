//! The bulk of a chunk, once its window is known, inflated by zlib-rs — the inflater the
//! sequential reader runs — through zlib's documented API (`libz-rs-sys`): `inflatePrime`
//! starts it at any bit, `inflateSetDictionary` hands it the window, `Z_BLOCK` stops it at every
//! block end, and `data_type` says how many bits it holds unused, so the exact bit of each
//! block end is known. The result is the same [`Outcome`] as [`super::inflate`] gives (checked
//! by the differential tests), at zlib-rs's speed: our own decoder runs at ~0.6× of it per core
//! and is kept for what zlib cannot do — decoding with an unknown window (markers) and the
//! boundary search.
//!
//! The only `unsafe` of the parallel reader is here: calls into zlib's C-shaped API, each with
//! the pointers it is given coming from live slices of the right lengths.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::mem::MaybeUninit;

use libz_rs_sys as z;

use super::{BlockEnd, Error, Outcome, WINDOW};

/// Output room added at a time (the buffer doubles beyond this).
const MIN_ROOM: usize = 64 * 1024;

/// A raw-deflate zlib stream, ended on drop. Boxed: zlib's API wants the `z_stream` not to
/// move between calls.
struct Stream(Box<z::z_stream>);

impl Stream {
    fn raw() -> Result<Stream, Error> {
        let mut strm = Box::new(z::z_stream::default());
        let size = std::mem::size_of::<z::z_stream>() as i32;
        // SAFETY: `strm` is a valid, default (allocator-configured) z_stream; the version is
        // the library's own NUL-terminated string.
        let ret = unsafe { z::inflateInit2_(&mut *strm, -15, z::zlibVersion(), size) };
        if ret != z::Z_OK {
            return Err(Error::Unavailable);
        }
        Ok(Stream(strm))
    }

    fn set_dictionary(&mut self, window: &[u8]) -> Result<(), Error> {
        // `window` is at most 32 KiB.
        let len = window.len() as u32;
        // SAFETY: initialised stream; `window` is live for `len` bytes and zlib copies it.
        let ret = unsafe { z::inflateSetDictionary(&mut *self.0, window.as_ptr(), len) };
        if ret == z::Z_OK {
            Ok(())
        } else {
            Err(Error::Unavailable)
        }
    }

    fn prime(&mut self, bits: u32, value: u8) -> Result<(), Error> {
        // SAFETY: initialised stream; no pointers are passed.
        let ret = unsafe { z::inflatePrime(&mut *self.0, bits as i32, i32::from(value)) };
        if ret == z::Z_OK {
            Ok(())
        } else {
            Err(Error::Unavailable)
        }
    }

    /// One `inflate(Z_BLOCK)` call: `(return code, input bytes used, output bytes written)`.
    fn block(&mut self, input: &[u8], out: &mut [MaybeUninit<u8>]) -> (i32, usize, usize) {
        let avail_in = input.len().min(u32::MAX as usize);
        let avail_out = out.len().min(u32::MAX as usize);
        let s = &mut *self.0;
        s.next_in = input.as_ptr();
        s.avail_in = avail_in as u32;
        s.next_out = out.as_mut_ptr().cast();
        s.avail_out = avail_out as u32;
        // SAFETY: initialised stream; `next_in`/`avail_in` describe a live shared slice and
        // `next_out`/`avail_out` a live exclusive one (zlib writes only, never reads, there).
        let ret = unsafe { z::inflate(s, z::Z_BLOCK) };
        let used = avail_in - s.avail_in as usize;
        let written = avail_out - s.avail_out as usize;
        s.next_in = std::ptr::null();
        s.next_out = std::ptr::null_mut();
        (ret, used, written)
    }

    /// Bits read into zlib's buffer and not yet used (zlib's `data_type & 63`).
    fn unused_bits(&self) -> u64 {
        (self.0.data_type & 63) as u64
    }

    /// True once the block being decoded (or just ended) is marked final (BFINAL).
    fn in_final_block(&self) -> bool {
        self.0.data_type & 64 != 0
    }

    /// True when the last call returned right after a block's end-of-block code.
    fn at_block_end(&self) -> bool {
        self.0.data_type & 128 != 0
    }

    fn error(&self) -> Error {
        if self.0.msg.is_null() {
            return Error::BadSymbol;
        }
        // SAFETY: zlib sets `msg` to null or to one of its static NUL-terminated messages.
        let msg = unsafe { CStr::from_ptr(self.0.msg) }.to_bytes();
        match msg {
            b"invalid block type" => Error::BadBlockType,
            b"invalid stored block lengths" => Error::BadStoredLength,
            b"invalid distance too far back" => Error::TooFarBack,
            b"invalid literal/length code" | b"invalid distance code" => Error::BadSymbol,
            _ => Error::BadCode,
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: initialised stream, ended once.
        unsafe { z::inflateEnd(&mut *self.0) };
    }
}

/// [`super::inflate`] for bytes, by zlib-rs: decode from bit `start_bit` of `input`, appending
/// to `out` (whose last 32 KiB, if any, are the window), until a block ends at or past
/// `stop_bit` or the final block ends; at most `max_out` bytes are appended. Output of a
/// failed decode is garbage and must be discarded.
pub fn inflate_bytes(
    input: &[u8],
    start_bit: u64,
    stop_bit: u64,
    out: &mut Vec<u8>,
    max_out: usize,
) -> Result<Outcome, Error> {
    let window = &out[out.len().saturating_sub(WINDOW)..];
    let mut inflater = ByteInflater::new(input, start_bit, window)?;
    let mut blocks = Vec::new();
    match inflater.fill(input, stop_bit, out, max_out, &mut blocks)? {
        Fill::Full => Err(Error::OutputLimit),
        Fill::Stopped {
            end_bit,
            stream_end,
        } => Ok(Outcome {
            end_bit,
            stream_end,
            blocks,
            window_clean: false,
        }),
    }
}

/// Where a [`ByteInflater::fill`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// The room given is full; call again to go on.
    Full,
    /// A block ended at or past the stop bit (`end_bit`), or the final block ended.
    Stopped { end_bit: u64, stream_end: bool },
}

/// zlib-rs decoding from a given bit with a given window, resumable: each [`Self::fill`]
/// appends at most the room it is given and the next one goes on where it stopped (zlib keeps
/// its own window), so a caller can hand a long output on in bounded pieces.
pub struct ByteInflater {
    zs: Stream,
    /// Next byte of the input to hand to zlib.
    pos: usize,
    /// Bit of the last block end reported.
    last_bit: u64,
    /// Bytes produced by all calls so far (block ends count from the first of them).
    produced: u64,
}

impl ByteInflater {
    /// Start at bit `start_bit` of `input`, with `window` (at most its last 32 KiB are used)
    /// as the bytes before it.
    pub fn new(input: &[u8], start_bit: u64, window: &[u8]) -> Result<Self, Error> {
        let byte = usize::try_from(start_bit / 8)
            .ok()
            .filter(|&b| b <= input.len())
            .ok_or(Error::Truncated)?;
        let mut zs = Stream::raw()?;
        if !window.is_empty() {
            zs.set_dictionary(&window[window.len().saturating_sub(WINDOW)..])?;
        }
        let mut pos = byte;
        let shift = (start_bit % 8) as u32;
        if shift != 0 {
            let b = *input.get(byte).ok_or(Error::Truncated)?;
            zs.prime(8 - shift, b >> shift)?;
            pos += 1;
        }
        Ok(ByteInflater {
            zs,
            pos,
            last_bit: start_bit,
            produced: 0,
        })
    }

    /// The input bit decoding has reached (zlib's bytes read less the bits it holds unused).
    pub fn bit(&self) -> u64 {
        self.pos as u64 * 8 - self.zs.unused_bits()
    }

    /// Decode on, appending at most `room` (> 0) bytes to `out`, until a block ends at or past
    /// `stop_bit` or the final block ends. Every block end is pushed to `blocks`, its `out`
    /// counted from this inflater's first byte. `input` must be the one given to [`Self::new`].
    pub fn fill(
        &mut self,
        input: &[u8],
        stop_bit: u64,
        out: &mut Vec<u8>,
        room: usize,
        blocks: &mut Vec<BlockEnd>,
    ) -> Result<Fill, Error> {
        let prefix = out.len();
        loop {
            let filled = out.len() - prefix;
            if out.capacity() - out.len() < MIN_ROOM {
                let want = out.len().max(MIN_ROOM).min(room - filled);
                out.reserve(want);
            }
            let space = (out.capacity() - out.len()).min(room - filled);
            let rest = input.get(self.pos..).ok_or(Error::Truncated)?;
            let (ret, used, written) = self.zs.block(rest, &mut out.spare_capacity_mut()[..space]);
            // SAFETY: zlib initialised the first `written` bytes of the spare capacity.
            unsafe { out.set_len(out.len() + written) };
            self.pos += used;
            self.produced += written as u64;
            let bit = self.bit();
            match ret {
                z::Z_OK | z::Z_BUF_ERROR => {
                    if self.zs.at_block_end() && bit > self.last_bit {
                        self.last_bit = bit;
                        blocks.push(BlockEnd {
                            bit,
                            out: self.produced,
                        });
                        // The final block: stop here, before zlib byte-aligns for a trailer.
                        let stream_end = self.zs.in_final_block();
                        if stream_end || bit >= stop_bit {
                            return Ok(Fill::Stopped {
                                end_bit: bit,
                                stream_end,
                            });
                        }
                    } else if written == space {
                        if out.len() - prefix >= room {
                            return Ok(Fill::Full);
                        }
                    } else if self.pos == input.len() {
                        return Err(Error::Truncated);
                    } else if used == 0 && written == 0 {
                        // No progress with input and room left: cannot happen with zlib; never
                        // loop.
                        return Err(Error::Unavailable);
                    }
                }
                // `Z_STREAM_END` only comes after the final block's `Z_BLOCK` stop, which
                // returned.
                z::Z_DATA_ERROR => return Err(self.zs.error()),
                _ => return Err(Error::Unavailable),
            }
        }
    }
}
