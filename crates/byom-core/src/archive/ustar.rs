//! The one tar *writer*: POSIX ustar headers for the regular files byom writes itself (packages
//! from [`crate::pack`], the compile server's per-target bundles).
//!
//! Why by hand and in one place: the headers byom writes are a tiny subset of tar (regular
//! files, short names, owner 0, mode 0644, mtime 0), so a library would add a second tar
//! implementation for nothing; and a writer that only this module knows can be checked against
//! the one reader ([`super::tar::TarWalker`]) and against GNU tar and Python's tarfile
//! (`tests/test_tar_differential.py` reads byom's own packages too). Output depends only on the
//! names and contents, so the same inputs give the same bytes.

/// A tar block.
pub const BLOCK: usize = 512;

/// The end of an archive: two zero blocks.
pub const END_OF_ARCHIVE: [u8; 2 * BLOCK] = [0; 2 * BLOCK];

/// The longest name a ustar header holds without its prefix field (which byom never writes).
pub const MAX_NAME: usize = 100;

/// A member name a header cannot hold as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UstarError {
    #[error("the name {name:?} is {len} bytes: a tar header holds at most {MAX_NAME}; use a shorter file name")]
    NameTooLong { name: String, len: usize },
    #[error("the name {0:?} is empty, absolute, has a NUL byte or a '..' part: not a member name byom writes")]
    BadName(String),
}

/// The header of a regular file `name` of `size` bytes. Sizes from 8 GiB on use GNU's base-256
/// field, which GNU tar, Python and the core all read. A name is refused, never truncated: a
/// truncated name would put the bytes under another file's name.
pub fn header(name: &str, size: u64) -> Result<[u8; BLOCK], UstarError> {
    if name.is_empty()
        || name.starts_with('/')
        || name.contains('\0')
        || name.split('/').any(|part| part == "..")
    {
        return Err(UstarError::BadName(name.to_string()));
    }
    if name.len() > MAX_NAME {
        return Err(UstarError::NameTooLong {
            name: name.to_string(),
            len: name.len(),
        });
    }
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    if size < 1 << 33 {
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    } else {
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    Ok(h)
}

/// Zero bytes that follow a member of `size` bytes up to the next block.
pub fn padding(size: u64) -> &'static [u8] {
    const ZEROS: [u8; BLOCK] = [0; BLOCK];
    &ZEROS[..((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data) in files {
            out.extend_from_slice(&header(name, data.len() as u64).unwrap());
            out.extend_from_slice(data);
            out.extend_from_slice(padding(data.len() as u64));
        }
        out.extend_from_slice(&END_OF_ARCHIVE);
        out
    }

    #[test]
    fn sizes_octal_and_base256() {
        let h = header("model.pt", 1300).unwrap();
        assert_eq!(&h[124..136], b"00000002424\0");
        let big = header("model.pt", 9 << 30).unwrap();
        assert_eq!(big[124], 0x80);
        assert_eq!(
            u64::from_be_bytes(big[128..136].try_into().unwrap()),
            9 << 30
        );
    }

    #[test]
    fn names_are_refused_not_truncated() {
        let long = "a".repeat(MAX_NAME + 1);
        assert!(matches!(
            header(&long, 1),
            Err(UstarError::NameTooLong { len: 101, .. })
        ));
        assert!(header(&"b".repeat(MAX_NAME), 1).is_ok());
        for bad in ["", "/etc/passwd", "a/../b", "a\0b"] {
            assert!(
                matches!(header(bad, 1), Err(UstarError::BadName(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn padding_reaches_the_next_block() {
        assert_eq!(padding(0).len(), 0);
        assert_eq!(padding(1).len(), 511);
        assert_eq!(padding(512).len(), 0);
        assert_eq!(padding(1300).len(), 236);
    }

    /// What this writer writes, the one reader reads back: names, sizes, bytes, no issue.
    #[test]
    fn reads_back_through_the_core_reader() {
        use crate::archive::tar::{TarSink, TarWalker};
        use crate::report::Issue;
        #[derive(Default)]
        struct Files {
            files: Vec<(String, u64, usize)>,
            issues: Vec<Issue>,
        }
        impl TarSink for Files {
            fn entry(&mut self, _path: &str, _size: u64) {}
            fn file_start(&mut self, path: &str, size: u64) {
                self.files.push((path.to_string(), size, 0));
            }
            fn file_data(&mut self, data: &[u8]) {
                self.files.last_mut().unwrap().2 += data.len();
            }
            fn file_end(&mut self) {}
            fn issue(&mut self, issue: Issue) {
                self.issues.push(issue);
            }
        }
        let body = vec![7u8; 1300];
        let full = "c".repeat(MAX_NAME);
        let tar = archive(&[("config.yaml", b"a: 1\n"), (&full, &body)]);
        let mut sink = Files::default();
        let mut walker = TarWalker::new(&crate::Limits::default());
        walker.push(&tar, &mut sink).unwrap();
        walker.finish().unwrap();
        assert!(sink.issues.is_empty(), "{:?}", sink.issues);
        assert_eq!(
            sink.files,
            [("config.yaml".to_string(), 5, 5), (full, 1300, 1300)]
        );
    }
}
