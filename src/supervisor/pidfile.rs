//! The pid file: `<pid>\n`, held under an exclusive POSIX record lock (the
//! kind `lockf` takes) for the supervisor's life, so `status` and a second
//! `supervise` can tell whether the session runs.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, fcntl};
use nix::libc;

#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    #[error("session is already running (pid {pid}, lock on {})", .path.display())]
    Running { pid: String, path: PathBuf },
    #[error("{}: {op}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A held pid file; the lock goes with the process.
#[derive(Debug)]
pub struct PidFile {
    _file: File,
    pub path: PathBuf,
}

fn write_lock() -> libc::flock {
    // Whole file (start 0, length 0 = to the end).
    libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

impl PidFile {
    pub fn acquire(path: &Path) -> Result<PidFile, PidFileError> {
        let io = |op| move |source| PidFileError::Io { op, path: path.to_owned(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io("cannot create the directory of"))?;
        }
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map_err(io("cannot open pid file"))?;
        let fl = write_lock();
        if let Err(e) = fcntl(&f, FcntlArg::F_SETLK(&fl)) {
            if e == nix::errno::Errno::EAGAIN || e == nix::errno::Errno::EACCES {
                let mut pid = String::new();
                let _ = f.read_to_string(&mut pid);
                return Err(PidFileError::Running { pid: pid.trim().to_owned(), path: path.to_owned() });
            }
            return Err(io("cannot lock pid file")(e.into()));
        }
        f.set_len(0).map_err(io("cannot truncate pid file"))?;
        f.seek(SeekFrom::Start(0)).map_err(io("cannot write pid file"))?;
        writeln!(f, "{}", std::process::id()).map_err(io("cannot write pid file"))?;
        f.sync_all().map_err(io("cannot sync pid file"))?;
        Ok(PidFile { _file: f, path: path.to_owned() })
    }
}

/// Whether some process holds the pid file's lock (without taking it).
pub fn is_locked(path: &Path) -> bool {
    let Ok(f) = File::open(path) else { return false };
    let mut fl = write_lock();
    fl.l_type = libc::F_RDLCK as libc::c_short;
    fcntl(&f, FcntlArg::F_GETLK(&mut fl)).is_ok() && fl.l_type != libc::F_UNLCK as libc::c_short
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
