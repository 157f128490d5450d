//! The ctl channel between the supervisor and each child (fd 3 in the
//! child): readiness, heartbeats, the monitor's worker plan, shutdown.

use serde::{Deserialize, Serialize};

/// The fd number of the ctl socket in a child.
pub const CTL_FD: i32 = 3;
/// The fd number of the changelog socket in agents and workers.
pub const CHANGELOG_FD: i32 = 4;
/// Environment variable naming the supervisor's pid, so a child can tell
/// whether it was orphaned before it set its parent-death signal.
pub const SUPERVISOR_PID_ENV: &str = "GSYNCD_SUPERVISOR_PID";

/// Ctl frames are small.
pub const MAX_CTL_FRAME: usize = 1 << 20;

/// Child to supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToSupervisor {
    /// The child finished starting (mounted, connected, ...).
    Ready,
    /// Still alive and making progress.
    Heartbeat,
    /// What the child is doing now; named in the log if it fails there.
    Phase(String),
    /// The monitor's worker plan.
    Plan(Plan),
    /// The child stops for a reason a restart will not cure (bad config).
    Fatal(String),
    /// A worker's replication status (sent when it changes).
    Status(Box<super::status::BrickStatus>),
    /// The child stops because of this error (its whole chain); a restart
    /// may cure it. Shown as the brick's last error.
    Failed(String),
}

/// Supervisor to child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToChild {
    /// Sent right after the hello: how often to heartbeat.
    Config { heartbeat_ms: u64 },
    /// Monitor: read the topology again (SIGHUP, or a timer).
    Replan,
    /// Finish up and exit 0.
    Shutdown,
    /// Monitor: a brick's status, to write to its status file.
    BrickStatus { brick: Vec<u8>, status: Box<super::status::BrickStatus> },
}

/// What the monitor wants running on this node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Plan {
    /// One agent and one worker per local primary brick, in volume order.
    pub bricks: Vec<PlannedBrick>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PlannedBrick {
    /// Brick path on this node (bytes).
    pub path: Vec<u8>,
    /// Index of its replica/disperse set.
    pub subvol: u32,
}

/// A child's end of its ctl channel: the hello exchange, the heartbeat
/// thread, and the messages from the supervisor.
#[derive(Debug)]
pub struct Link {
    writer: std::sync::Arc<std::sync::Mutex<std::os::unix::net::UnixStream>>,
    reader: std::os::unix::net::UnixStream,
    pub heartbeat: std::time::Duration,
}

impl Link {
    /// Takes fd 3, checks that the supervisor that started this process is
    /// still its parent, exchanges hellos, reads the heartbeat interval and
    /// starts heartbeating.
    pub fn connect(role: super::Role) -> Result<Link, LinkError> {
        if let Some(expected) = std::env::var(SUPERVISOR_PID_ENV).ok().and_then(|v| v.parse::<i32>().ok())
            && nix::unistd::getppid().as_raw() != expected
        {
            return Err(LinkError::Orphaned { expected });
        }
        let fd = crate::sys::take_inherited_fd(CTL_FD).map_err(LinkError::NoCtl)?;
        let mut stream = std::os::unix::net::UnixStream::from(fd);
        super::handshake(&mut stream, role, super::Role::Supervisor, "supervisor")?;
        let heartbeat = match super::recv::<ToChild>(&mut stream, MAX_CTL_FRAME, "supervisor")? {
            Some(ToChild::Config { heartbeat_ms }) => std::time::Duration::from_millis(heartbeat_ms.max(10)),
            Some(other) => return Err(LinkError::Unexpected(format!("{other:?}"))),
            None => return Err(super::ProtoError::Closed { peer: "supervisor".into() }.into()),
        };
        let writer = stream.try_clone().map_err(LinkError::NoCtl)?;
        let link = Link { writer: std::sync::Arc::new(std::sync::Mutex::new(writer)), reader: stream, heartbeat };
        let w = std::sync::Arc::clone(&link.writer);
        std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(heartbeat);
                    let mut g = w.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if super::send(&mut *g, &ToSupervisor::Heartbeat, MAX_CTL_FRAME, "supervisor").is_err() {
                        return;
                    }
                }
            })
            .map_err(LinkError::NoCtl)?;
        Ok(link)
    }

    /// Passes `r` through; an error is first told to the supervisor (the
    /// process is about to exit with it).
    pub fn report<T>(&self, r: anyhow::Result<T>) -> anyhow::Result<T> {
        if let Err(e) = &r {
            let _ = self.send(&ToSupervisor::Failed(format!("{e:#}")));
        }
        r
    }

    /// Sends a message to the supervisor.
    pub fn send(&self, msg: &ToSupervisor) -> Result<(), super::ProtoError> {
        let mut g = self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        super::send(&mut *g, msg, MAX_CTL_FRAME, "supervisor")
    }

    /// The next message from the supervisor; `None` when it closed the
    /// channel (it is gone: exit).
    pub fn recv(&mut self) -> Result<Option<ToChild>, super::ProtoError> {
        super::recv(&mut self.reader, MAX_CTL_FRAME, "supervisor")
    }

    /// Waits until the supervisor asks this child to stop, or goes away.
    pub fn wait_for_shutdown(&mut self) -> Result<(), super::ProtoError> {
        loop {
            match self.recv()? {
                Some(ToChild::Shutdown) | None => return Ok(()),
                Some(_) => {}
            }
        }
    }

    /// Sends `stop` on `tx` from a thread when the supervisor asks this
    /// child to stop or goes away (other messages are ignored).
    pub fn spawn_stop_watch<E: Send + 'static>(&self, tx: std::sync::mpsc::Sender<E>, stop: E) -> std::io::Result<()> {
        let mut r = self.try_clone_reader()?;
        std::thread::Builder::new().name("ctl".into()).spawn(move || {
            loop {
                match super::recv::<ToChild>(&mut r, MAX_CTL_FRAME, "supervisor") {
                    Ok(Some(ToChild::Shutdown)) | Ok(None) | Err(_) => break,
                    Ok(Some(_)) => {}
                }
            }
            let _ = tx.send(stop);
        })?;
        Ok(())
    }

    /// A second reader of the channel, for a thread that waits for
    /// messages while the main thread works.
    pub fn try_clone_reader(&self) -> std::io::Result<std::os::unix::net::UnixStream> {
        self.reader.try_clone()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("started by supervisor {expected}, which is gone")]
    Orphaned { expected: i32 },
    #[error("no ctl channel at fd 3 (roles are started by `gsyncd supervise`)")]
    NoCtl(#[source] std::io::Error),
    #[error(transparent)]
    Proto(#[from] super::ProtoError),
    #[error("unexpected first message from the supervisor: {0}")]
    Unexpected(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let plan = ToSupervisor::Plan(Plan { bricks: vec![PlannedBrick { path: b"/b/\xff1".to_vec(), subvol: 1 }] });
        for m in [ToSupervisor::Ready, ToSupervisor::Heartbeat, ToSupervisor::Phase("x".into()), plan] {
            let b = postcard::to_stdvec(&m).unwrap();
            assert_eq!(postcard::from_bytes::<ToSupervisor>(&b).unwrap(), m);
        }
        for m in [ToChild::Config { heartbeat_ms: 250 }, ToChild::Replan, ToChild::Shutdown] {
            let b = postcard::to_stdvec(&m).unwrap();
            assert_eq!(postcard::from_bytes::<ToChild>(&b).unwrap(), m);
        }
    }
}
