//! UUIDs as GlusterFS uses them: GFIDs of inodes (`trusted.gfid`, 16 raw
//! bytes), volume and node ids, all written in the canonical 36-character
//! lower-case form.

use std::fmt;

/// A 16-byte UUID. GFIDs, volume ids and node ids share the type.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Uuid(pub [u8; 16]);

/// A GlusterFS inode id.
pub type Gfid = Uuid;

/// Length of the canonical text form.
pub const CANONICAL_LEN: usize = 36;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UuidError {
    #[error("a UUID is 16 bytes, not {0}")]
    Length(usize),
    #[error("{0:?} is not a canonical UUID (8-4-4-4-12 hex digits)")]
    Syntax(String),
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The value of one hex digit, either case.
pub(crate) fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl Uuid {
    /// The root directory of every volume.
    pub const ROOT: Uuid = Uuid([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    /// The virtual `/.gfid` directory of an aux-gfid mount.
    pub const AUX_GFID_DIR: Uuid = Uuid([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0d]);
    pub const NULL: Uuid = Uuid([0; 16]);

    /// From the raw bytes of `trusted.gfid` (exactly 16).
    pub fn from_bytes(b: &[u8]) -> Result<Uuid, UuidError> {
        let arr: [u8; 16] = b.try_into().map_err(|_| UuidError::Length(b.len()))?;
        Ok(Uuid(arr))
    }

    /// Parses the canonical form (hex digits of either case). Trailing NULs,
    /// as virtual xattrs return them, are not accepted here: strip first.
    pub fn parse(s: &[u8]) -> Result<Uuid, UuidError> {
        let bad = || UuidError::Syntax(String::from_utf8_lossy(s).into_owned());
        if s.len() != CANONICAL_LEN {
            return Err(bad());
        }
        let mut out = [0u8; 16];
        let mut i = 0;
        let mut o = 0;
        while i < CANONICAL_LEN {
            if matches!(i, 8 | 13 | 18 | 23) {
                if s[i] != b'-' {
                    return Err(bad());
                }
                i += 1;
                continue;
            }
            let hi = hex_val(s[i]).ok_or_else(bad)?;
            let lo = hex_val(s[i + 1]).ok_or_else(bad)?;
            out[o] = hi << 4 | lo;
            o += 1;
            i += 2;
        }
        Ok(Uuid(out))
    }

    /// Parses a UUID string, as in `parse`.
    pub fn parse_str(s: &str) -> Result<Uuid, UuidError> {
        Uuid::parse(s.as_bytes())
    }

    /// The canonical lower-case form.
    pub fn canonical(&self) -> [u8; CANONICAL_LEN] {
        let mut out = [b'-'; CANONICAL_LEN];
        let mut o = 0;
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                o += 1;
            }
            out[o] = HEX[usize::from(b >> 4)];
            out[o + 1] = HEX[usize::from(b & 0xf)];
            o += 2;
        }
        out
    }

    pub fn is_null(&self) -> bool {
        self.0 == [0; 16]
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.canonical();
        // The canonical form is ASCII by construction.
        f.write_str(std::str::from_utf8(&c).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({self})")
    }
}

impl std::str::FromStr for Uuid {
    type Err = UuidError;
    fn from_str(s: &str) -> Result<Uuid, UuidError> {
        Uuid::parse_str(s)
    }
}

/// Canonical text in human-readable formats (JSON), 16 raw bytes on the wire.
impl serde::Serialize for Uuid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() { s.collect_str(self) } else { s.serialize_bytes(&self.0) }
    }
}

impl<'de> serde::Deserialize<'de> for Uuid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Uuid;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a UUID as canonical text or 16 bytes")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Uuid, E> {
                Uuid::parse_str(v).map_err(E::custom)
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Uuid, E> {
                Uuid::from_bytes(v).map_err(E::custom)
            }
        }
        if d.is_human_readable() { d.deserialize_str(V) } else { d.deserialize_bytes(V) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn constants() {
        assert_eq!(Uuid::ROOT.to_string(), "00000000-0000-0000-0000-000000000001");
        assert_eq!(Uuid::AUX_GFID_DIR.to_string(), "00000000-0000-0000-0000-00000000000d");
    }

    #[test]
    fn parse_and_errors() {
        let g = Uuid::parse_str("0B99EF11-4b79-4cd0-9730-b5a0e8c4a8c0").unwrap();
        assert_eq!(g.to_string(), "0b99ef11-4b79-4cd0-9730-b5a0e8c4a8c0");
        for bad in [
            "",
            "0b99ef11-4b79-4cd0-9730-b5a0e8c4a8c",
            "0b99ef114b79-4cd0-9730-b5a0e8c4a8c0x",
            "0b99ef11-4b79-4cd0-9730-b5a0e8c4a8cg",
        ] {
            assert!(Uuid::parse_str(bad).is_err(), "{bad}");
        }
        assert_eq!(Uuid::from_bytes(&[1; 15]), Err(UuidError::Length(15)));
    }

    #[test]
    fn serde_forms() {
        let g = Uuid::parse_str("0b99ef11-4b79-4cd0-9730-b5a0e8c4a8c0").unwrap();
        let wire = postcard::to_stdvec(&g).unwrap();
        assert_eq!(wire.len(), 17);
        assert_eq!(postcard::from_bytes::<Uuid>(&wire).unwrap(), g);
        let json = serde_json::to_string(&g).unwrap();
        assert_eq!(json, "\"0b99ef11-4b79-4cd0-9730-b5a0e8c4a8c0\"");
        assert_eq!(serde_json::from_str::<Uuid>(&json).unwrap(), g);
        assert!(postcard::from_bytes::<Uuid>(&[3, 1, 2, 3]).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(b in any::<[u8; 16]>()) {
            let u = Uuid(b);
            prop_assert_eq!(Uuid::parse(&u.canonical()), Ok(u));
            prop_assert_eq!(Uuid::from_bytes(&b), Ok(u));
        }

        #[test]
        fn parse_never_panics(s in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = Uuid::parse(&s);
        }
    }
}
