//! The primary as the worker sees it through its aux mount (its working
//! directory). Only "no such file" (ENOENT, or ESTALE for a GFID that is
//! gone) means gone: any other error is an error, so that a dead or
//! failing mount aborts the batch instead of reading as an empty volume,
//! dropping failures as superseded and moving stime over nothing.

use std::ffi::OsStr;
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use crate::gluster::uuid::{Gfid, Uuid};

#[derive(Debug, thiserror::Error)]
#[error("cannot read {path} on the primary mount: {source}")]
pub struct PrimaryError {
    pub path: String,
    #[source]
    pub source: io::Error,
}

pub type Res<T> = Result<T, PrimaryError>;

/// Whether an error means the path is gone (and nothing else does).
pub fn gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(nix::libc::ENOENT | nix::libc::ESTALE))
}

fn err(path: &[u8], source: io::Error) -> PrimaryError {
    PrimaryError { path: path.escape_ascii().to_string(), source }
}

/// `lstat`; `None` when it does not exist.
pub fn lstat(path: &[u8]) -> Res<Option<Metadata>> {
    match std::fs::symlink_metadata(OsStr::from_bytes(path)) {
        Ok(m) => Ok(Some(m)),
        Err(e) if gone(&e) => Ok(None),
        Err(e) => Err(err(path, e)),
    }
}

/// A symlink's target; `None` when it does not exist (or is no symlink).
pub fn readlink(path: &[u8]) -> Res<Option<Vec<u8>>> {
    match std::fs::read_link(OsStr::from_bytes(path)) {
        Ok(t) => Ok(Some(t.into_os_string().into_vec())),
        Err(e) if gone(&e) || e.raw_os_error() == Some(nix::libc::EINVAL) => Ok(None),
        Err(e) => Err(err(path, e)),
    }
}

/// The GFID the mount gives `path` (`.gfid/<pgfid>/<name>`); `None` when
/// the name does not exist.
pub fn gfid_at(path: &[u8]) -> Res<Option<Gfid>> {
    match xattr::get(OsStr::from_bytes(path), "glusterfs.gfid.string") {
        Ok(Some(v)) => Ok(Uuid::parse(v.strip_suffix(b"\0").unwrap_or(&v)).ok()),
        Ok(None) => Ok(None),
        Err(e) if gone(&e) => Ok(None),
        Err(e) => Err(err(path, e)),
    }
}

/// The mount answers: its root is there by GFID. Checked before a batch's
/// failures are saved and stime moves.
pub fn check() -> Res<()> {
    let root = format!(".gfid/{}", Uuid::ROOT);
    match lstat(root.as_bytes())? {
        Some(_) => Ok(()),
        None => Err(err(root.as_bytes(), io::Error::from_raw_os_error(nix::libc::ENOTCONN))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_is_only_no_such_file() {
        assert!(lstat(b"/nonexistent/x").unwrap().is_none());
        assert!(lstat(b"/").unwrap().is_some());
        // A path through a file: ENOTDIR is an error, not "gone".
        assert!(lstat(b"/etc/hostname/x").is_err());
        assert!(readlink(b"/etc/hostname").unwrap().is_none(), "not a symlink");
        assert!(gfid_at(b"/nonexistent/x").unwrap().is_none());
    }
}
