//! What a brick's backend directory tells about the volume's namespace.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::uuid::{Gfid, Uuid};

/// The brick's `.glusterfs/xx/yy/<gfid>` entry of `g`: a hard link of a
/// file (of any type but directory), a symlink for a directory.
pub fn gfid_link(brick: &Path, g: &Gfid) -> PathBuf {
    let c = g.canonical();
    let s = String::from_utf8_lossy(&c);
    brick.join(".glusterfs").join(&s[0..2]).join(&s[2..4]).join(&*s)
}

/// Where directory `g` lives: its parent's GFID and its name, read from the
/// brick's `.glusterfs/xx/yy/<gfid>` link (`../../pp/qq/<parent>/<name>`),
/// which every brick keeps for every directory. `None` when the brick has
/// no such link (not a directory, or unknown here).
pub fn dir_entry(brick: &Path, g: &Gfid) -> Option<(Gfid, Vec<u8>)> {
    let t = std::fs::read_link(gfid_link(brick, g)).ok()?;
    let t = t.as_os_str().as_bytes();
    let mut parts = t.rsplit(|&b| b == b'/');
    let (name, parent) = (parts.next()?, parts.next()?);
    let parent = Uuid::parse(parent).ok()?;
    (!name.is_empty()).then(|| (parent, name.to_vec()))
}

/// Names at a volume's root that belong to GlusterFS, not to its users,
/// and are never replicated: the brick's `.glusterfs` store, the trash
/// directory, and replicate's directory of anonymous inodes
/// (`.glusterfs-anonymous-inode-<volume id>`, on every brick since
/// GlusterFS 10, hidden from mounts; a lookup of its GFID through a mount
/// fails with EINVAL).
pub fn internal_at_root(name: &[u8]) -> bool {
    name == b".glusterfs" || name == b".trashcan" || name.starts_with(b".glusterfs-anonymous-inode-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_names_at_root() {
        assert!(internal_at_root(b".glusterfs"));
        assert!(internal_at_root(b".trashcan"));
        assert!(internal_at_root(b".glusterfs-anonymous-inode-31a089cf-503b-4c83-8ee7-0cf0b2557513"));
        assert!(!internal_at_root(b".glusterfs-x"));
        assert!(!internal_at_root(b"data"));
    }

    #[test]
    fn reads_the_directory_link() {
        let b = tempfile::tempdir().unwrap();
        let g = Uuid::parse(b"0b99ef11-4b79-4cd0-9730-b5a0e8c4a8c0").unwrap();
        let p = Uuid::parse(b"11111111-2222-3333-4444-555555555555").unwrap();
        std::fs::create_dir_all(b.path().join(".glusterfs/0b/99")).unwrap();
        std::os::unix::fs::symlink(
            "../../11/11/11111111-2222-3333-4444-555555555555/na\u{e9}me",
            b.path().join(".glusterfs/0b/99/0b99ef11-4b79-4cd0-9730-b5a0e8c4a8c0"),
        )
        .unwrap();
        assert_eq!(dir_entry(b.path(), &g), Some((p, "na\u{e9}me".as_bytes().to_vec())));
        assert_eq!(dir_entry(b.path(), &p), None);
    }
}
