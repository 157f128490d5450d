//! The reference's status files, so that tools written for it (and people
//! used to it) find what they expect: `monitor.status` (plain text:
//! `Started`, `Stopped`, ...) and `brick_<quote_plus(brick path)>.status`
//! (a JSON object, [`BrickStatus`]) in the session's state directory.
//!
//! Written as the reference writes them: the file is locked with
//! `flock(LOCK_EX)` (retried until the locked file is still the one at the
//! path), then replaced atomically.

use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::fsutil::{AtomicWriteError, write_atomically};
use crate::proto::status::BrickStatus;

#[derive(Debug, thiserror::Error)]
pub enum StatusFileError {
    #[error("cannot lock {}: {source}", .path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] AtomicWriteError),
}

/// Python's `urllib.parse.quote_plus`: letters, digits and `_.-~` stay,
/// a space becomes `+`, every other byte `%XX`.
pub fn quote_plus(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 3);
    for &c in b {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => s.push(char::from(c)),
            b' ' => s.push('+'),
            _ => s.push_str(&format!("%{c:02X}")),
        }
    }
    s
}

/// `<state dir>/brick_<quoted>.status`.
pub fn brick_file(state_dir: &Path, brick: &[u8]) -> PathBuf {
    state_dir.join(format!("brick_{}.status", quote_plus(brick)))
}

/// Locks `path` (created if missing) the way the reference's `LockedOpen`
/// does, then replaces it with `data`.
pub fn write_locked(path: &Path, data: &[u8]) -> Result<(), StatusFileError> {
    let lock_err = |source| StatusFileError::Lock { path: path.to_owned(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(lock_err)?;
    }
    let _held = loop {
        let f = OpenOptions::new().create(true).append(true).open(path).map_err(lock_err)?;
        let held = Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| lock_err(e.into()))?;
        // Replaced by another writer while we waited? Lock the new one.
        let same = match (held.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if same {
            break held;
        }
    };
    write_atomically(path, data, 0o644)?;
    Ok(())
}

pub fn write_brick(state_dir: &Path, brick: &[u8], st: &BrickStatus) -> Result<(), StatusFileError> {
    let body = serde_json::to_vec(st).map_err(|e| AtomicWriteError {
        op: "cannot encode",
        path: brick_file(state_dir, brick),
        source: std::io::Error::other(e),
    })?;
    write_locked(&brick_file(state_dir, brick), &body)
}

/// A brick's last written status, if its file is there and readable.
pub fn read_brick(state_dir: &Path, brick: &[u8]) -> Option<BrickStatus> {
    let b = std::fs::read(brick_file(state_dir, brick)).ok()?;
    serde_json::from_slice(&b).ok()
}

/// `monitor.status`: one word, no newline.
pub fn write_monitor(path: &Path, status: &str) -> Result<(), StatusFileError> {
    write_locked(path, status.as_bytes())
}

pub fn read_monitor(path: &Path) -> Option<String> {
    let mut s = String::new();
    std::io::Read::read_to_string(&mut File::open(path).ok()?, &mut s).ok()?;
    Some(s.trim_end().to_owned())
}

/// The brick path a status file name stands for (for listing).
pub fn brick_of(file_name: &std::ffi::OsStr) -> Option<Vec<u8>> {
    let n = file_name.as_bytes().strip_prefix(b"brick_")?.strip_suffix(b".status")?;
    let mut out = Vec::with_capacity(n.len());
    let mut i = 0;
    while i < n.len() {
        match n[i] {
            b'+' => out.push(b' '),
            b'%' if i + 3 <= n.len() => {
                let h = std::str::from_utf8(&n[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_matches_python() {
        // python3 -c 'import urllib.parse as u; print(u.quote_plus("/bricks/b 1/é%~"))'
        assert_eq!(quote_plus("/bricks/b 1/é%~".as_bytes()), "%2Fbricks%2Fb+1%2F%C3%A9%25~");
        assert_eq!(quote_plus(b"/d/b1"), "%2Fd%2Fb1");
        for b in [b"/bricks/b 1/\xff%+".as_slice(), b"/x", b"a"] {
            let f = brick_file(Path::new("/s"), b);
            assert_eq!(brick_of(f.file_name().unwrap()).as_deref(), Some(b));
        }
    }

    #[test]
    fn written_files_read_back() {
        let d = tempfile::tempdir().unwrap();
        let st = BrickStatus { worker_status: "Active".into(), last_synced: 7, ..BrickStatus::default() };
        write_brick(d.path(), b"/b/1", &st).unwrap();
        write_brick(d.path(), b"/b/1", &st).unwrap();
        assert_eq!(read_brick(d.path(), b"/b/1"), Some(st));
        assert!(d.path().join("brick_%2Fb%2F1.status").exists());
        let m = d.path().join("monitor.status");
        write_monitor(&m, "Started").unwrap();
        assert_eq!(std::fs::read(&m).unwrap(), b"Started");
        assert_eq!(read_monitor(&m).as_deref(), Some("Started"));
    }
}
