//! LSB-first bit reader over a byte slice that can start at any bit offset and tells the exact
//! bit offset it has reached (a chunk's decoding must end exactly where the next one starts).

use super::Error;

#[derive(Debug, Clone)]
pub(super) struct Bits<'a> {
    pub(super) data: &'a [u8],
    /// Next byte of `data` to load into `buf`.
    pub(super) pos: usize,
    pub(super) buf: u64,
    /// Valid bits in `buf`.
    pub(super) n: u32,
}

impl<'a> Bits<'a> {
    /// A reader positioned at bit `bit` of `data` (`Err(Truncated)` when past the end).
    pub(super) fn at(data: &'a [u8], bit: u64) -> Result<Self, Error> {
        let byte = usize::try_from(bit / 8).map_err(|_| Error::Truncated)?;
        if byte > data.len() {
            return Err(Error::Truncated);
        }
        let mut b = Bits {
            data,
            pos: byte,
            buf: 0,
            n: 0,
        };
        b.refill();
        b.consume((bit % 8) as u32)?;
        Ok(b)
    }

    /// Bit offset (from the start of `data`) of the next unread bit.
    pub(super) fn bit_pos(&self) -> u64 {
        self.pos as u64 * 8 - u64::from(self.n)
    }

    /// Load bytes until at least 56 bits are buffered or the input ends.
    #[inline(always)]
    pub(super) fn refill(&mut self) {
        if let Some(word) = self.data.get(self.pos..self.pos + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            self.buf |= u64::from_le_bytes(w) << self.n;
            self.pos += ((63 - self.n) >> 3) as usize;
            self.n |= 56;
        } else {
            while self.n <= 56 && self.pos < self.data.len() {
                self.buf |= u64::from(self.data[self.pos]) << self.n;
                self.pos += 1;
                self.n += 8;
            }
        }
    }

    /// Buffered bits available without a refill.
    #[inline(always)]
    pub(super) fn available(&self) -> u32 {
        self.n
    }

    /// The next bits (zero past the end of input), not consumed.
    #[inline(always)]
    pub(super) fn peek(&self) -> u64 {
        self.buf
    }

    #[inline(always)]
    pub(super) fn consume(&mut self, k: u32) -> Result<(), Error> {
        if k > self.n {
            return Err(Error::Truncated);
        }
        // k ≤ n ≤ 63 here, or k = n = 64 is impossible (n ≤ 63 after any refill).
        self.buf = self.buf.checked_shr(k).unwrap_or(0);
        self.n -= k;
        Ok(())
    }

    /// Read `k ≤ 32` bits as a number.
    #[inline(always)]
    pub(super) fn bits(&mut self, k: u32) -> Result<u32, Error> {
        if self.n < k {
            self.refill();
        }
        let v = (self.buf & ((1u64 << k) - 1)) as u32;
        self.consume(k)?;
        Ok(v)
    }

    /// Skip to the next byte boundary and hand out the remaining input as a slice position.
    pub(super) fn align_to_byte(&mut self) -> Result<(), Error> {
        let r = self.n % 8;
        self.consume(r)
    }

    /// Byte offset of the next unread byte (only after [`Self::align_to_byte`]).
    pub(super) fn byte_pos(&self) -> usize {
        self.pos - (self.n / 8) as usize
    }

    /// Continue at byte `byte` (after a stored block's bytes were copied out directly).
    pub(super) fn seek_byte(&mut self, byte: usize) {
        self.pos = byte;
        self.buf = 0;
        self.n = 0;
        self.refill();
    }

    pub(super) fn data(&self) -> &'a [u8] {
        self.data
    }
}
