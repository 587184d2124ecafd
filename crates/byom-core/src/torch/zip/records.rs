//! The zip records byom reads, each parsed from its bytes into a typed value: local header,
//! data descriptor, Zip64 extra field, central-directory entry, end of central directory
//! (plus its Zip64 locator and record). Field offsets are APPNOTE's; all integers little-endian.
//!
//! Why a module of its own: the scanner and the directory parser decide *what* to do with a
//! record; this module only knows *where* each field lies, so byte arithmetic lives in one
//! place and every parse is bounds-checked by construction (a record is parsed only from a
//! slice at least as long as its fixed part; variable parts use checked `get`).

use super::problems::ZipCorruption;

pub(super) const SIG_LOCAL: [u8; 4] = *b"PK\x03\x04";
pub(super) const SIG_CENTRAL: [u8; 4] = *b"PK\x01\x02";
pub(super) const SIG_EOCD: [u8; 4] = *b"PK\x05\x06";
pub(super) const SIG_EOCD64: [u8; 4] = *b"PK\x06\x06";
pub(super) const SIG_LOC64: [u8; 4] = *b"PK\x06\x07";
pub(super) const SIG_DESC: [u8; 4] = *b"PK\x07\x08";

/// A 32-bit field at this value means "see the Zip64 extra field".
const ZIP64_MARK: u32 = 0xFFFF_FFFF;

pub(super) fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

pub(super) fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

pub(super) fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// The first four bytes of `d` (which must hold at least four).
pub(super) fn signature(d: &[u8]) -> [u8; 4] {
    [d[0], d[1], d[2], d[3]]
}

/// A local file header, borrowed from the stream.
#[derive(Debug, Clone, Copy)]
pub(super) struct LocalHeader<'a> {
    pub flags: u16,
    pub method: u16,
    /// Declared compressed size (from the Zip64 extra field when marked so); meaningless
    /// when [`LocalHeader::has_descriptor`] (PyTorch writes zero).
    pub compressed_size: u64,
    /// The name as stored (torch compares raw bytes).
    pub name: &'a [u8],
    /// Bytes of the whole header: fixed part, name and extra field.
    pub len: usize,
}

impl<'a> LocalHeader<'a> {
    const FIXED: usize = 30;

    /// The header at the start of `d` (which begins with [`SIG_LOCAL`]); `None` while `d` does
    /// not yet hold all of it.
    pub fn parse(d: &'a [u8]) -> Option<Self> {
        if d.len() < Self::FIXED {
            return None;
        }
        let flags = le16(&d[6..8]);
        let method = le16(&d[8..10]);
        let mut compressed_size = u64::from(le32(&d[18..22]));
        let uncompressed = le32(&d[22..26]);
        let nlen = usize::from(le16(&d[26..28]));
        let xlen = usize::from(le16(&d[28..30]));
        let len = Self::FIXED + nlen + xlen;
        if d.len() < len {
            return None;
        }
        let name = &d[Self::FIXED..Self::FIXED + nlen];
        if compressed_size == u64::from(ZIP64_MARK) {
            let extra = &d[Self::FIXED + nlen..len];
            if let Some(z) = Zip64Extra::parse(extra, uncompressed == ZIP64_MARK, true, false) {
                compressed_size = z.compressed.unwrap_or(compressed_size);
            }
        }
        Some(LocalHeader {
            flags,
            method,
            compressed_size,
            name,
            len,
        })
    }

    /// General-purpose flag bit 3: sizes follow the data in a descriptor (what `torch.save`
    /// writes to a stream), so the entry's end must be searched for.
    pub fn has_descriptor(&self) -> bool {
        self.flags & 0x8 != 0
    }
}

/// The Zip64 extra field (id 1): the 64-bit values of the fields that were 0xFFFFFFFF, stored
/// in this order and only for those fields.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Zip64Extra {
    pub uncompressed: Option<u64>,
    pub compressed: Option<u64>,
    pub offset: Option<u64>,
}

impl Zip64Extra {
    /// Find the field in an extra block; `None` when absent or the block is malformed.
    pub fn parse(extra: &[u8], want_u: bool, want_c: bool, want_o: bool) -> Option<Self> {
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
                let uncompressed = next(want_u);
                let compressed = next(want_c);
                let offset = next(want_o);
                return Some(Zip64Extra {
                    uncompressed,
                    compressed,
                    offset,
                });
            }
            p += 4 + len;
        }
        None
    }
}

/// One way a data descriptor may be laid out: with or without its optional signature,
/// 32- or 64-bit sizes.
#[derive(Debug, Clone, Copy)]
pub(super) struct DescriptorLayout {
    signed: bool,
    wide: bool,
}

impl DescriptorLayout {
    /// Every layout, in the order tried.
    pub const ALL: [DescriptorLayout; 4] = [
        DescriptorLayout {
            signed: true,
            wide: false,
        },
        DescriptorLayout {
            signed: false,
            wide: false,
        },
        DescriptorLayout {
            signed: true,
            wide: true,
        },
        DescriptorLayout {
            signed: false,
            wide: true,
        },
    ];

    /// Bytes of a descriptor in this layout.
    pub fn len(self) -> usize {
        4 * usize::from(self.signed) + 4 + if self.wide { 16 } else { 8 }
    }
}

/// A data descriptor: the sizes of the entry it follows.
#[derive(Debug, Clone, Copy)]
pub(super) struct DataDescriptor {
    pub compressed_size: u64,
    pub uncompressed_size: u64,
}

impl DataDescriptor {
    /// The descriptor in `layout` that ends just before `end` in `d`, if its bytes fit there
    /// (and carry the signature when the layout has one).
    pub fn ending_at(d: &[u8], end: usize, layout: DescriptorLayout) -> Option<Self> {
        let start = end.checked_sub(layout.len())?;
        let desc = &d[start..end];
        let body = if layout.signed {
            if desc[..4] != SIG_DESC {
                return None;
            }
            &desc[4..]
        } else {
            desc
        };
        // body[0..4] is the CRC-32, not checked here (torch does not either).
        let (compressed_size, uncompressed_size) = if layout.wide {
            (le64(&body[4..12]), le64(&body[12..20]))
        } else {
            (u64::from(le32(&body[4..8])), u64::from(le32(&body[8..12])))
        };
        Some(DataDescriptor {
            compressed_size,
            uncompressed_size,
        })
    }
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

impl CentralEntry {
    const FIXED: usize = 46;

    /// The entry at the start of `cd` (entry number `index`, for messages); returns it and
    /// its length in bytes.
    pub(super) fn parse(cd: &[u8], index: usize) -> Result<(Self, usize), ZipCorruption> {
        if cd.len() < Self::FIXED || signature(cd) != SIG_CENTRAL {
            return Err(ZipCorruption::EntryMalformed { index });
        }
        let method = le16(&cd[10..12]);
        let mut compressed_size = u64::from(le32(&cd[20..24]));
        let mut uncompressed_size = u64::from(le32(&cd[24..28]));
        let nlen = usize::from(le16(&cd[28..30]));
        let xlen = usize::from(le16(&cd[30..32]));
        let clen = usize::from(le16(&cd[32..34]));
        let mut header_offset = u64::from(le32(&cd[42..46]));
        let len = Self::FIXED + nlen + xlen + clen;
        if len > cd.len() {
            return Err(ZipCorruption::EntryOverrun { index });
        }
        let name = std::str::from_utf8(&cd[Self::FIXED..Self::FIXED + nlen])
            .map_err(|_| ZipCorruption::EntryNameNotUtf8 { index })?
            .to_string();
        let mark = u64::from(ZIP64_MARK);
        if compressed_size == mark || uncompressed_size == mark || header_offset == mark {
            let extra = &cd[Self::FIXED + nlen..Self::FIXED + nlen + xlen];
            let z = Zip64Extra::parse(
                extra,
                uncompressed_size == mark,
                compressed_size == mark,
                header_offset == mark,
            )
            .ok_or_else(|| ZipCorruption::Zip64SizesMissing { name: name.clone() })?;
            uncompressed_size = z.uncompressed.unwrap_or(uncompressed_size);
            compressed_size = z.compressed.unwrap_or(compressed_size);
            header_offset = z.offset.unwrap_or(header_offset);
        }
        let entry = CentralEntry {
            name,
            header_offset,
            compressed_size,
            uncompressed_size,
            method,
        };
        Ok((entry, len))
    }
}

/// Where the central directory lies, as the end records declare it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Eocd {
    /// Entries declared (Zip64 value when there is a Zip64 end record).
    pub entries: u64,
    pub directory_size: u64,
    /// Absolute offset of the directory's first entry.
    pub directory_offset: u64,
}

impl Eocd {
    const LEN: usize = 22;
    /// A Zip64 end-of-central-directory locator, just before the end record.
    const LOCATOR_LEN: usize = 20;
    /// Fixed part of a Zip64 end-of-central-directory record.
    const ZIP64_LEN: usize = 56;

    /// The end records in `tail` (the file's bytes from absolute offset `tail_offset` to the
    /// end). The end record is the last signature with a whole record after it, as miniz
    /// (PyTorch's reader) picks it; its comment must then reach exactly to the end. Skipping a
    /// signature whose comment length does not fit (as this search once did) would let a
    /// second end record, hidden in the real one's comment, point torch at another central
    /// directory. A tail shorter than one record has none (found by cargo fuzz: a 13-byte tail
    /// made the search index past its end).
    pub fn find(tail: &[u8], tail_offset: u64) -> Result<Self, ZipCorruption> {
        let last = tail
            .len()
            .checked_sub(Self::LEN)
            .ok_or(ZipCorruption::NoEndRecord)?;
        let e = (0..=last)
            .rev()
            .find(|&u| tail[u..u + 4] == SIG_EOCD)
            .ok_or(ZipCorruption::NoEndRecord)?;
        let comment = usize::from(le16(&tail[e + 20..e + 22]));
        if e + Self::LEN + comment != tail.len() {
            return Err(ZipCorruption::EndRecordNotAtEnd {
                offset: tail_offset + e as u64,
                declared: comment,
                present: tail.len() - e - Self::LEN,
            });
        }
        let mut eocd = Eocd {
            entries: u64::from(le16(&tail[e + 10..e + 12])),
            directory_size: u64::from(le32(&tail[e + 12..e + 16])),
            directory_offset: u64::from(le32(&tail[e + 16..e + 20])),
        };
        if e >= Self::LOCATOR_LEN && tail[e - Self::LOCATOR_LEN..e - 16] == SIG_LOC64 {
            let z_off = le64(&tail[e - 12..e - 4]);
            let z = z_off
                .checked_sub(tail_offset)
                .and_then(|r| usize::try_from(r).ok())
                .filter(|&r| r + Self::ZIP64_LEN <= tail.len() && tail[r..r + 4] == SIG_EOCD64)
                .ok_or(ZipCorruption::Zip64EndMisplaced)?;
            eocd.entries = le64(&tail[z + 32..z + 40]);
            eocd.directory_size = le64(&tail[z + 40..z + 48]);
            eocd.directory_offset = le64(&tail[z + 48..z + 56]);
        }
        Ok(eocd)
    }
}
