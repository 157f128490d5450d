//! Small filesystem helpers shared by every room that keeps durable files
//! (session configs, failure ledgers, status files).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A step of [`write_atomically`] failed.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", .path.display())]
pub struct AtomicWriteError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Replaces `path` with `data` so that a reader (or a crash) sees the old
/// contents or the new, never a mix: a temporary file in the same
/// directory, fsync, rename over, fsync of the directory. An existing
/// file's mode is kept; a new file gets `new_mode`.
pub fn write_atomically(path: &Path, data: &[u8], new_mode: u32) -> Result<(), AtomicWriteError> {
    let err = |op: &'static str, p: &Path| {
        let path = p.to_path_buf();
        move |source| AtomicWriteError { op, path, source }
    };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let mode = fs::metadata(path).map(|m| m.permissions().mode() & 0o7777).unwrap_or(new_mode);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(err("cannot create temporary file", &tmp))?;
        f.set_permissions(fs::Permissions::from_mode(mode)).map_err(err("cannot set permissions", &tmp))?;
        f.write_all(data).map_err(err("cannot write", &tmp))?;
        f.sync_all().map_err(err("cannot fsync", &tmp))?;
        fs::rename(&tmp, path).map_err(err("cannot rename temporary file over", path))?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(err("cannot fsync directory", dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn whole_file(kind: i32) -> nix::libc::flock {
    nix::libc::flock {
        l_type: kind as nix::libc::c_short,
        l_whence: nix::libc::SEEK_SET as nix::libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

/// Takes an exclusive POSIX record lock on the whole file without waiting
/// (what `lockf(F_TLOCK)` takes, and what glusterd tests): `false` when
/// another process holds it. On a GlusterFS mount the lock is the
/// cluster's.
pub fn try_lock_exclusive(f: &File) -> std::io::Result<bool> {
    use nix::errno::Errno;
    match nix::fcntl::fcntl(f, nix::fcntl::FcntlArg::F_SETLK(&whole_file(nix::libc::F_WRLCK))) {
        Ok(_) => Ok(true),
        Err(Errno::EAGAIN | Errno::EACCES) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Whether some process holds a record lock on the file at `path`.
pub fn is_record_locked(path: &Path) -> bool {
    let Ok(f) = File::open(path) else { return false };
    let mut fl = whole_file(nix::libc::F_RDLCK);
    nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_GETLK(&mut fl)).is_ok()
        && fl.l_type != nix::libc::F_UNLCK as nix::libc::c_short
}

/// Opens `path` for reading or writing only if it is a regular file (a
/// final symlink is not followed): an `O_PATH` descriptor first, whose
/// `fstat` tells the type without opening the inode (a FIFO or a device
/// node is never opened), then the file itself through `/proc/self/fd`,
/// which resolves no name again. `None`: not a regular file. The `O_PATH`
/// descriptor comes back too: its `/proc/self/fd` path reaches the inode
/// for xattr calls without another lookup.
pub fn open_regular(path: &Path, write: bool) -> std::io::Result<Option<(File, File, fs::Metadata)>> {
    let handle = OpenOptions::new().read(true).custom_flags(nix::libc::O_PATH | nix::libc::O_NOFOLLOW).open(path)?;
    let m = handle.metadata()?;
    if !m.is_file() {
        return Ok(None);
    }
    let f = OpenOptions::new().read(!write).write(write).open(fd_path(&handle))?;
    Ok(Some((f, handle, m)))
}

/// `/proc/self/fd/<n>`: a name for an open descriptor's inode.
pub fn fd_path(f: &impl std::os::fd::AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_keeps_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_atomically(&p, b"one", 0o600).unwrap();
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomically(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o640);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1, "no temporary file left");
        let e = write_atomically(&d.path().join("no/such/f"), b"x", 0o600).unwrap_err();
        assert!(e.to_string().contains("cannot create temporary file"), "{e}");
    }

    #[test]
    fn open_regular_opens_only_regular_files() {
        use std::io::{Read, Write};
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        fs::write(&f, b"data").unwrap();
        let (mut w, _h, m) = open_regular(&f, true).unwrap().unwrap();
        assert_eq!(m.len(), 4);
        w.write_all(b"DA").unwrap();
        drop(w);
        let (mut r, h, _) = open_regular(&f, false).unwrap().unwrap();
        let mut got = String::new();
        r.read_to_string(&mut got).unwrap();
        assert_eq!(got, "DAta");
        assert_eq!(fs::metadata(fd_path(&h)).unwrap().len(), 4, "the handle's path reaches the inode");
        std::os::unix::fs::symlink(&f, d.path().join("l")).unwrap();
        assert!(open_regular(&d.path().join("l"), false).unwrap().is_none(), "a symlink is not followed");
        nix::unistd::mkfifo(&d.path().join("p"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(open_regular(&d.path().join("p"), false).unwrap().is_none(), "a FIFO is not opened (would block)");
        assert!(open_regular(d.path(), false).unwrap().is_none());
        assert_eq!(open_regular(&d.path().join("none"), false).unwrap_err().kind(), std::io::ErrorKind::NotFound);
    }
}
