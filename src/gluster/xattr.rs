//! Byte layouts of the extended attributes geo-replication reads and writes
//! (reference §5.4), and the builders of their keys. Pure codecs: the file
//! system calls live with the roles that make them.

use super::uuid::{Uuid, UuidError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XattrError {
    #[error("{key}: expected {expected} bytes, found {found}")]
    Length { key: &'static str, expected: &'static str, found: usize },
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn len_err(key: &'static str, expected: &'static str, found: usize) -> XattrError {
    XattrError::Length { key, expected, found }
}

/// A point in time as the marker and gsyncd store it: seconds and
/// microseconds, each a big-endian u32 (`!II`). Used by xtime, stime and
/// entry_stime. Ordering is chronological.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize)]
pub struct XTime {
    pub sec: u32,
    pub usec: u32,
}

impl XTime {
    pub const LEN: usize = 8;

    pub fn new(sec: u32, usec: u32) -> XTime {
        XTime { sec, usec }
    }

    pub fn encode(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&self.sec.to_be_bytes());
        b[4..].copy_from_slice(&self.usec.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<XTime, XattrError> {
        let arr: [u8; 8] = b.try_into().map_err(|_| len_err("xtime/stime", "8", b.len()))?;
        Ok(XTime { sec: be32(&arr[..4]), usec: be32(&arr[4..]) })
    }
}

fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

/// `trusted.glusterfs.volume-mark`: served by the marker on the primary
/// mount root to client-pid -1 (27 bytes), and written by gsyncd on the
/// secondary as a keep-alive with an expiry (31 bytes, the "foreign" mark).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VolumeMark {
    pub major: u8,
    pub minor: u8,
    /// The primary volume's id.
    pub uuid: Uuid,
    /// 0 when the marker's timestamp file could be read, 1 otherwise.
    pub retval: u8,
    /// The marker timestamp.
    pub time: XTime,
    /// Expiry (unix seconds), only in the foreign mark.
    pub timeout: Option<u32>,
}

impl VolumeMark {
    pub const NATIVE_LEN: usize = 27;
    pub const FOREIGN_LEN: usize = 31;

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(Self::FOREIGN_LEN);
        b.push(self.major);
        b.push(self.minor);
        b.extend_from_slice(self.uuid.as_bytes());
        b.push(self.retval);
        b.extend_from_slice(&self.time.encode());
        if let Some(t) = self.timeout {
            b.extend_from_slice(&t.to_be_bytes());
        }
        b
    }

    /// Decodes either form, by length.
    pub fn decode(b: &[u8]) -> Result<VolumeMark, XattrError> {
        if b.len() != Self::NATIVE_LEN && b.len() != Self::FOREIGN_LEN {
            return Err(len_err("volume-mark", "27 or 31", b.len()));
        }
        let uuid = Uuid::from_bytes(&b[2..18])
            .map_err(|e: UuidError| XattrError::Invalid { key: "volume-mark", reason: e.to_string() })?;
        Ok(VolumeMark {
            major: b[0],
            minor: b[1],
            uuid,
            retval: b[18],
            time: XTime { sec: be32(&b[19..23]), usec: be32(&b[23..27]) },
            timeout: (b.len() == Self::FOREIGN_LEN).then(|| be32(&b[27..31])),
        })
    }
}

/// `trusted.glusterfs.node-uuid` of a file on the primary mount: the node
/// UUIDs of the bricks holding it, space-separated, NUL-terminated.
pub fn decode_node_uuids(b: &[u8]) -> Result<Vec<Uuid>, XattrError> {
    let text = b.strip_suffix(b"\0").unwrap_or(b);
    text.split(|&c| c == b' ')
        .filter(|s| !s.is_empty())
        .map(|s| Uuid::parse(s).map_err(|e| XattrError::Invalid { key: "node-uuid", reason: e.to_string() }))
        .collect()
}

/// `trusted.glusterfs.htime` on an HTIME file: `"<last ts>:<count>"`.
pub fn decode_htime(b: &[u8]) -> Result<(u64, u64), XattrError> {
    let invalid = || XattrError::Invalid {
        key: "trusted.glusterfs.htime",
        reason: format!("{:?} is not <ts>:<count>", String::from_utf8_lossy(b)),
    };
    let text = std::str::from_utf8(b.strip_suffix(b"\0").unwrap_or(b)).map_err(|_| invalid())?;
    let (ts, n) = text.split_once(':').ok_or_else(invalid)?;
    Ok((ts.parse().map_err(|_| invalid())?, n.parse().map_err(|_| invalid())?))
}

/// The canonical text of a GFID or UUID returned by a virtual xattr such as
/// `glusterfs.gfid.string` (a trailing NUL is allowed).
pub fn decode_uuid_string(b: &[u8]) -> Result<Uuid, XattrError> {
    Uuid::parse(b.strip_suffix(b"\0").unwrap_or(b))
        .map_err(|e| XattrError::Invalid { key: "glusterfs.gfid.string", reason: e.to_string() })
}

/// Xattr key names.
pub mod keys {
    use super::Uuid;

    pub const GFID: &str = "trusted.gfid";
    pub const GFID_STRING: &str = "glusterfs.gfid.string";
    pub const GFID_NEWFILE: &str = "glusterfs.gfid.newfile";
    pub const GFID2PATH: &str = "glusterfs.gfid2path";
    pub const NODE_UUID: &str = "trusted.glusterfs.node-uuid";
    pub const VOLUME_MARK: &str = "trusted.glusterfs.volume-mark";
    pub const DHT_LINKTO: &str = "trusted.glusterfs.dht.linkto";
    pub const DHT_SUBVOL_STATUS: &str = "dht.subvol.status";
    pub const HTIME: &str = "trusted.glusterfs.htime";
    pub const CURRENT_HTIME: &str = "trusted.glusterfs.current_htime";
    pub const TRIGGER_SYNC: &str = "glusterfs.geo-rep.trigger-sync";

    /// `trusted.glusterfs.<primary>.<secondary>`: the session's stime prefix
    /// (the `stime-xattr-prefix` option).
    pub fn session_prefix(primary: &Uuid, secondary: &Uuid) -> String {
        format!("trusted.glusterfs.{primary}.{secondary}")
    }
    /// The marker's per-inode change time on primary bricks.
    pub fn xtime(primary: &Uuid) -> String {
        format!("trusted.glusterfs.{primary}.xtime")
    }
    /// Data sync progress on a primary brick root.
    pub fn stime(prefix: &str) -> String {
        format!("{prefix}.stime")
    }
    /// Entry sync progress on a primary brick root.
    pub fn entry_stime(prefix: &str) -> String {
        format!("{prefix}.entry_stime")
    }
    /// The legacy per-session xtime, read when stime is missing.
    pub fn session_xtime(prefix: &str) -> String {
        format!("{prefix}.xtime")
    }
    /// The keep-alive mark gsyncd sets on the secondary root; a non-root
    /// secondary cannot write `trusted.*` and uses `system.*`.
    pub fn foreign_volume_mark(primary: &Uuid, non_root: bool) -> String {
        let ns = if non_root { "system" } else { "trusted" };
        format!("{ns}.glusterfs.volume-mark.{primary}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn xtime_layout() {
        let t = XTime::new(0x0102_0304, 5);
        assert_eq!(t.encode(), [1, 2, 3, 4, 0, 0, 0, 5]);
        assert_eq!(XTime::decode(&t.encode()), Ok(t));
        assert!(matches!(XTime::decode(&[0; 7]), Err(XattrError::Length { found: 7, .. })));
        assert!(XTime::new(5, 1) > XTime::new(4, 999_999));
    }

    #[test]
    fn volume_mark_layouts() {
        let m = VolumeMark {
            major: 1,
            minor: 0,
            uuid: Uuid([7; 16]),
            retval: 0,
            time: XTime::new(1_700_000_000, 42),
            timeout: None,
        };
        let b = m.encode();
        assert_eq!(b.len(), 27);
        assert_eq!(&b[..3], &[1, 0, 7]);
        assert_eq!(VolumeMark::decode(&b), Ok(m));
        let f = VolumeMark { timeout: Some(1_700_000_120), ..m };
        let b = f.encode();
        assert_eq!(b.len(), 31);
        assert_eq!(&b[27..], &1_700_000_120u32.to_be_bytes());
        assert_eq!(VolumeMark::decode(&b), Ok(f));
        assert!(VolumeMark::decode(&b[..30]).is_err());
    }

    #[test]
    fn node_uuids_and_htime() {
        let v =
            decode_node_uuids(b"0b99ef11-4b79-4cd0-9730-b5a0e8c4a8c0 00000000-0000-0000-0000-000000000001\0").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1], Uuid::ROOT);
        assert!(decode_node_uuids(b"nonsense\0").is_err());
        assert_eq!(decode_htime(b"1700000000:42"), Ok((1_700_000_000, 42)));
        assert!(decode_htime(b"17:").is_err());
    }

    #[test]
    fn key_names() {
        let p = Uuid([0xaa; 16]);
        let s = Uuid([0xbb; 16]);
        let prefix = keys::session_prefix(&p, &s);
        assert_eq!(
            keys::stime(&prefix),
            "trusted.glusterfs.aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa.bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb.stime"
        );
        assert!(keys::entry_stime(&prefix).ends_with(".entry_stime"));
        assert_eq!(keys::xtime(&p), "trusted.glusterfs.aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa.xtime");
        assert!(keys::foreign_volume_mark(&p, true).starts_with("system.glusterfs.volume-mark."));
        assert!(keys::foreign_volume_mark(&p, false).starts_with("trusted.glusterfs.volume-mark."));
    }

    proptest! {
        #[test]
        fn codecs_round_trip(sec in any::<u32>(), usec in any::<u32>(), id in any::<[u8; 16]>(), rv in any::<u8>(), to in proptest::option::of(any::<u32>())) {
            let t = XTime::new(sec, usec);
            prop_assert_eq!(XTime::decode(&t.encode()), Ok(t));
            let m = VolumeMark { major: 1, minor: 0, uuid: Uuid(id), retval: rv, time: t, timeout: to };
            prop_assert_eq!(VolumeMark::decode(&m.encode()), Ok(m));
        }

        #[test]
        fn decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = XTime::decode(&b);
            let _ = VolumeMark::decode(&b);
            let _ = decode_node_uuids(&b);
            let _ = decode_htime(&b);
            let _ = decode_uuid_string(&b);
        }
    }
}
