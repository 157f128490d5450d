//! The `glusterfs.gfid.newfile` blob: set on a parent `.gfid/<pgfid>` of an
//! aux-gfid mount, it asks the gfid-access translator to create an entry with
//! a chosen GFID (reference §5.5). All integers are big-endian u32:
//!
//! ```text
//! uid | gid | gfid (36 chars + NUL) | st_mode | name + NUL | then by type:
//!   directory: mode & 07777 | umask
//!   symlink:   target + NUL
//!   other:     mode & 07777 | rdev | umask
//! ```
//!
//! The umask is a field of the blob; building one never touches the
//! process umask (the reference's `os.umask(0)` does, so only its first
//! blob carries the real value).

use super::uuid::{CANONICAL_LEN, Gfid, Uuid};

pub const S_IFMT: u32 = 0o170_000;
pub const S_IFDIR: u32 = 0o040_000;
pub const S_IFLNK: u32 = 0o120_000;
pub const S_IFREG: u32 = 0o100_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NewFileError {
    #[error("entry name {0:?} is empty, `.`/`..`, or holds '/' or NUL")]
    BadName(String),
    #[error("symlink target holds NUL")]
    BadTarget,
    #[error("st_mode {0:o} has no file type")]
    NoType(u32),
    #[error("a symlink needs a target, and only a symlink has one")]
    TargetMismatch,
    #[error("blob is truncated or malformed at byte {0}")]
    Malformed(usize),
    #[error("blob has {0} bytes after its end")]
    Trailing(usize),
}

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFile {
    pub uid: u32,
    pub gid: u32,
    pub gfid: Gfid,
    /// Full `st_mode`, file type bits included.
    pub st_mode: u32,
    pub name: Vec<u8>,
    /// Symlink target; `Some` exactly for symlinks.
    pub target: Option<Vec<u8>>,
    /// Device number, for block and character devices (0 otherwise).
    pub rdev: u32,
    pub umask: u32,
}

fn check_name(name: &[u8]) -> Result<(), NewFileError> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
        return Err(NewFileError::BadName(String::from_utf8_lossy(name).into_owned()));
    }
    Ok(())
}

impl NewFile {
    pub fn encode(&self) -> Result<Vec<u8>, NewFileError> {
        check_name(&self.name)?;
        let kind = self.st_mode & S_IFMT;
        if kind == 0 {
            return Err(NewFileError::NoType(self.st_mode));
        }
        if (kind == S_IFLNK) != self.target.is_some() {
            return Err(NewFileError::TargetMismatch);
        }
        let mut b = Vec::with_capacity(64 + self.name.len());
        b.extend_from_slice(&self.uid.to_be_bytes());
        b.extend_from_slice(&self.gid.to_be_bytes());
        b.extend_from_slice(&self.gfid.canonical());
        b.push(0);
        b.extend_from_slice(&self.st_mode.to_be_bytes());
        b.extend_from_slice(&self.name);
        b.push(0);
        let perm = self.st_mode & 0o7777;
        match (kind, &self.target) {
            (S_IFDIR, _) => {
                b.extend_from_slice(&perm.to_be_bytes());
                b.extend_from_slice(&self.umask.to_be_bytes());
            }
            (S_IFLNK, Some(t)) => {
                if t.contains(&0) {
                    return Err(NewFileError::BadTarget);
                }
                b.extend_from_slice(t);
                b.push(0);
            }
            _ => {
                b.extend_from_slice(&perm.to_be_bytes());
                b.extend_from_slice(&self.rdev.to_be_bytes());
                b.extend_from_slice(&self.umask.to_be_bytes());
            }
        }
        Ok(b)
    }

    /// Parses a blob as the gfid-access translator does (for tests and for
    /// diagnosing what a peer sent).
    pub fn decode(b: &[u8]) -> Result<NewFile, NewFileError> {
        let mut at = 0usize;
        let u32_at = |at: &mut usize| -> Result<u32, NewFileError> {
            let s = b.get(*at..*at + 4).ok_or(NewFileError::Malformed(*at))?;
            *at += 4;
            Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        };
        let cstr = |at: &mut usize| -> Result<Vec<u8>, NewFileError> {
            let rest = b.get(*at..).ok_or(NewFileError::Malformed(*at))?;
            let n = rest.iter().position(|&c| c == 0).ok_or(NewFileError::Malformed(*at))?;
            let v = rest[..n].to_vec();
            *at += n + 1;
            Ok(v)
        };
        let uid = u32_at(&mut at)?;
        let gid = u32_at(&mut at)?;
        let g = b.get(at..at + CANONICAL_LEN + 1).ok_or(NewFileError::Malformed(at))?;
        if g[CANONICAL_LEN] != 0 {
            return Err(NewFileError::Malformed(at + CANONICAL_LEN));
        }
        let gfid = Uuid::parse(&g[..CANONICAL_LEN]).map_err(|_| NewFileError::Malformed(at))?;
        at += CANONICAL_LEN + 1;
        let st_mode = u32_at(&mut at)?;
        let name = cstr(&mut at)?;
        check_name(&name)?;
        let kind = st_mode & S_IFMT;
        let (target, rdev, umask) = match kind {
            0 => return Err(NewFileError::NoType(st_mode)),
            S_IFDIR => {
                let _perm = u32_at(&mut at)?;
                (None, 0, u32_at(&mut at)?)
            }
            S_IFLNK => (Some(cstr(&mut at)?), 0, 0),
            _ => {
                let _perm = u32_at(&mut at)?;
                let rdev = u32_at(&mut at)?;
                (None, rdev, u32_at(&mut at)?)
            }
        };
        if at != b.len() {
            return Err(NewFileError::Trailing(b.len() - at));
        }
        Ok(NewFile { uid, gid, gfid, st_mode, name, target, rdev, umask })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reference_mkdir_example_is_62_bytes() {
        let n = NewFile {
            uid: 0,
            gid: 0,
            gfid: Uuid::parse_str("0b99ef11-4b79-4cd0-9730-b5a0e8c4a8c0").unwrap(),
            st_mode: 0o40755,
            name: b"dir1".to_vec(),
            target: None,
            rdev: 0,
            umask: 0o22,
        };
        let b = n.encode().unwrap();
        assert_eq!(b.len(), 62);
        let mut want = vec![0u8; 8];
        want.extend_from_slice(b"0b99ef11-4b79-4cd0-9730-b5a0e8c4a8c0\0");
        want.extend_from_slice(&[0, 0, 0x41, 0xed]);
        want.extend_from_slice(b"dir1\0");
        want.extend_from_slice(&[0, 0, 0x01, 0xed, 0, 0, 0, 0x12]);
        assert_eq!(b, want);
        assert_eq!(NewFile::decode(&b), Ok(n));
    }

    #[test]
    fn symlink_and_file_layouts() {
        let base = NewFile {
            uid: 1000,
            gid: 100,
            gfid: Uuid([1; 16]),
            st_mode: S_IFLNK | 0o777,
            name: b"l".to_vec(),
            target: Some(b"../t a".to_vec()),
            rdev: 0,
            umask: 0,
        };
        let b = base.encode().unwrap();
        assert_eq!(b.len(), 4 + 4 + 37 + 4 + 2 + 7);
        assert!(b.ends_with(b"l\0../t a\0"));
        let f = NewFile { st_mode: S_IFREG | 0o4644, target: None, umask: 0o22, ..base };
        let b = f.encode().unwrap();
        assert!(b.ends_with(&[0, 0, 0x09, 0xa4, 0, 0, 0, 0, 0, 0, 0, 0x12]), "{b:?}");
        assert_eq!(NewFile::decode(&b), Ok(f.clone()));
        let mut extra = b;
        extra.push(0);
        assert_eq!(NewFile::decode(&extra), Err(NewFileError::Trailing(1)));
        assert!(NewFile { name: b"a/b".to_vec(), ..f.clone() }.encode().is_err());
        assert!(NewFile { name: Vec::new(), ..f.clone() }.encode().is_err());
        assert!(NewFile { target: Some(b"x".to_vec()), ..f.clone() }.encode().is_err());
        assert!(NewFile { st_mode: 0o644, ..f }.encode().is_err());
    }

    fn arb_newfile() -> impl Strategy<Value = NewFile> {
        let name = proptest::collection::vec(any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0), 1..40)
            .prop_filter("not . or ..", |n| n != b"." && n != b"..");
        let kind = prop_oneof![Just(S_IFDIR), Just(S_IFLNK), Just(S_IFREG), Just(0o020_000), Just(0o010_000)];
        (
            any::<u32>(),
            any::<u32>(),
            any::<[u8; 16]>(),
            kind,
            0u32..0o10000,
            name,
            proptest::collection::vec(1u8..=255, 0..40),
            any::<u32>(),
            0u32..0o1000,
        )
            .prop_map(|(uid, gid, g, kind, perm, name, target, rdev, umask)| {
                let lnk = kind == S_IFLNK;
                NewFile {
                    uid,
                    gid,
                    gfid: Uuid(g),
                    st_mode: kind | perm,
                    name,
                    target: lnk.then_some(target),
                    rdev: if lnk || kind == S_IFDIR { 0 } else { rdev },
                    umask: if lnk { 0 } else { umask },
                }
            })
    }

    proptest! {
        #[test]
        fn round_trip(n in arb_newfile()) {
            let b = n.encode().unwrap();
            prop_assert_eq!(NewFile::decode(&b), Ok(n));
        }

        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = NewFile::decode(&b);
        }
    }
}
