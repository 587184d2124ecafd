//! A raw DEFLATE (RFC 1951) decoder built for two-stage parallel decompression (pugz,
//! rapidgzip): it starts at any bit offset, may decode without the 32 KiB window that precedes
//! it (back-references into that window become markers, resolved once the previous chunk is
//! known), stops after the first block that ends at or past a given bit, reports every block
//! end, and caps its output.
//!
//! It is never the reference: the sequential zlib-rs reader ([`super::gzip`]) is. Whatever this
//! decoder accepts must be exactly what zlib-rs accepts and produce the same bytes (checked by
//! the differential tests); every refusal here only sends the caller back to the sequential
//! reader, so being stricter costs speed, never a different verdict.
//!
//! Once a chunk's window is known (its last 32 KiB of output hold no marker, or the stitcher
//! decodes again from a proven bit), the bytes are zlib-rs's own ([`inflate_bytes`]): our
//! decoder only does what zlib cannot, at ~0.6× its speed per core.

mod bits;
mod decode;
mod huffman;
mod search;
mod zlib;

pub use decode::{inflate, inflate_markers, BlockEnd, Outcome, Symbol, MARKER, WINDOW};
pub use search::find_and_inflate;
pub use zlib::{inflate_bytes, ByteInflater, Fill};

/// Why a decode stopped without an answer. Deliberately coarse: the caller only falls back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the input ends inside the deflate stream")]
    Truncated,
    #[error("invalid deflate block type")]
    BadBlockType,
    #[error("stored block length does not match its complement")]
    BadStoredLength,
    #[error("invalid Huffman code lengths")]
    BadCode,
    #[error("invalid code in the compressed data")]
    BadSymbol,
    #[error("a back-reference reaches before the start of the data")]
    TooFarBack,
    #[error("the output cap was reached")]
    OutputLimit,
    #[error(
        "zlib-rs could not start or went on without progress (out of memory, or an internal error)"
    )]
    Unavailable,
}
