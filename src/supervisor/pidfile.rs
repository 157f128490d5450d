//! The pid file: `<pid>\n`, held under an exclusive POSIX record lock (the
//! kind `lockf` takes) for the supervisor's life, so `status` and a second
//! `supervise` can tell whether the session runs.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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
        if !crate::fsutil::try_lock_exclusive(&f).map_err(io("cannot lock pid file"))? {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            return Err(PidFileError::Running { pid: pid.trim().to_owned(), path: path.to_owned() });
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
    crate::fsutil::is_record_locked(path)
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
