//! The monitor's status socket, `<run-dir>/status.sock`: `gsyncd status`
//! and `gsyncd checkpoint wait` read the running session's status from the
//! monitor itself, which hears every worker's status as it changes; the
//! status files may lag behind it or, after a crash, be stale.
//!
//! A client connects; the monitor writes one [`LiveStatus`] as JSON and
//! closes. It reads nothing, so a client cannot change anything, and the
//! socket is as readable as the status files are (mode 0666, like their
//! 0644).

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tracing::debug;

use crate::proto::ctl::Plan;
use crate::proto::status::{self, BrickStatus, LIVE_STATUS_VERSION, LiveBrick, LiveStatus};

/// A slow client is dropped after this long.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("cannot create the status socket's directory {}: {source}", .path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} exists and is not a socket; not replacing it", .0.display())]
    NotSocket(PathBuf),
    #[error("cannot listen on {}: {source}", .path.display())]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the monitor knows now, shared with the socket's thread.
#[derive(Debug, Default)]
pub struct LiveState {
    pub session: String,
    pub monitor_status: String,
    pub plan: Plan,
    pub bricks: BTreeMap<Vec<u8>, BrickStatus>,
}

impl LiveState {
    /// The plan's bricks in volume order (a brick no status arrived for yet
    /// is initializing), then any other brick a status arrived for.
    pub fn snapshot(&self) -> LiveStatus {
        let mut bricks: Vec<LiveBrick> = self
            .plan
            .bricks
            .iter()
            .map(|b| LiveBrick {
                path: b.path.clone(),
                subvol: Some(b.subvol),
                status: self.bricks.get(&b.path).cloned().unwrap_or_else(|| BrickStatus {
                    worker_status: status::INITIALIZING.into(),
                    ..BrickStatus::default()
                }),
            })
            .collect();
        for (path, st) in &self.bricks {
            if !self.plan.bricks.iter().any(|b| &b.path == path) {
                bricks.push(LiveBrick { path: path.clone(), subvol: None, status: st.clone() });
            }
        }
        LiveStatus {
            version: LIVE_STATUS_VERSION,
            session: self.session.clone(),
            pid: std::process::id(),
            monitor_status: self.monitor_status.clone(),
            bricks,
        }
    }
}

pub type Shared = Arc<Mutex<LiveState>>;

/// The listening socket; its file is removed when this is dropped (if it is
/// still the one bound here).
#[derive(Debug)]
pub struct StatusSocket {
    path: PathBuf,
    ino: u64,
}

impl Drop for StatusSocket {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Listens on `path` (a socket left there by a dead monitor is replaced)
/// and serves `shared` from a thread.
pub fn serve(path: &Path, shared: Shared) -> Result<StatusSocket, SocketError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| SocketError::Dir { path: dir.to_owned(), source })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            // Only one monitor runs per session (the supervisor holds the
            // pid lock): this one is a dead monitor's.
            let _ = std::fs::remove_file(path);
        }
        Ok(_) => return Err(SocketError::NotSocket(path.to_owned())),
        Err(_) => {}
    }
    let bind_err = |source| SocketError::Bind { path: path.to_owned(), source };
    let listener = UnixListener::bind(path).map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(bind_err)?;
    let ino = std::fs::symlink_metadata(path).map_err(bind_err)?.ino();
    std::thread::Builder::new()
        .name("status-socket".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(mut s) => {
                        let snap = shared.lock().unwrap_or_else(PoisonError::into_inner).snapshot();
                        let _ = s.set_write_timeout(Some(WRITE_TIMEOUT));
                        match serde_json::to_vec(&snap) {
                            Ok(mut body) => {
                                body.push(b'\n');
                                if let Err(e) = s.write_all(&body) {
                                    debug!("status socket client: {e}");
                                }
                            }
                            Err(e) => debug!("cannot encode the status: {e}"),
                        }
                    }
                    // Out of fds, say: do not spin.
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        })
        .map_err(bind_err)?;
    Ok(StatusSocket { path: path.to_owned(), ino })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ctl::PlannedBrick;
    use std::io::Read;

    #[test]
    fn serves_the_plan_and_statuses_then_removes_its_file() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("run/status.sock");
        let shared: Shared = Arc::default();
        {
            let mut s = shared.lock().unwrap();
            s.session = "s".into();
            s.monitor_status = "Started".into();
            s.plan = Plan {
                bricks: vec![
                    PlannedBrick { path: b"/b/1".to_vec(), subvol: 0 },
                    PlannedBrick { path: b"/b/2".to_vec(), subvol: 1 },
                ],
            };
            s.bricks.insert(b"/b/2".to_vec(), BrickStatus { worker_status: "Active".into(), ..BrickStatus::default() });
            s.bricks.insert(b"/old".to_vec(), BrickStatus::default());
        }
        // A dead monitor's socket is replaced.
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let sock = serve(&path, Arc::clone(&shared)).unwrap();
        let mut body = Vec::new();
        std::os::unix::net::UnixStream::connect(&path).unwrap().read_to_end(&mut body).unwrap();
        let live: LiveStatus = serde_json::from_slice(&body).unwrap();
        assert_eq!(live.version, LIVE_STATUS_VERSION);
        assert_eq!(live.monitor_status, "Started");
        let rows: Vec<(&[u8], Option<u32>, &str)> =
            live.bricks.iter().map(|b| (&b.path[..], b.subvol, b.status.worker_status.as_str())).collect();
        assert_eq!(
            rows,
            [(&b"/b/1"[..], Some(0), status::INITIALIZING), (b"/b/2", Some(1), "Active"), (b"/old", None, "N/A")]
        );
        drop(sock);
        assert!(!path.exists());
    }

    #[test]
    fn a_file_in_the_way_is_not_replaced() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("status.sock");
        std::fs::write(&path, b"x").unwrap();
        assert!(matches!(serve(&path, Arc::default()), Err(SocketError::NotSocket(_))));
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
    }
}
