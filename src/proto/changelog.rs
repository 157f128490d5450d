//! The changelog channel between a brick's agent and worker (fd 4 in both).
//! This version carries only the hello; the changelog feed comes with the
//! replication roles.

use std::os::unix::net::UnixStream;

use super::{ProtoError, Role, handshake};
use crate::proto::ctl::CHANGELOG_FD;

#[derive(Debug, thiserror::Error)]
pub enum ChangelogLinkError {
    #[error("no changelog channel at fd 4")]
    Missing(#[source] std::io::Error),
    #[error(transparent)]
    Proto(#[from] ProtoError),
}

/// Takes fd 4 and exchanges hellos with the other end (the agent talks to
/// the worker and the other way round).
pub fn connect(ours: Role) -> Result<UnixStream, ChangelogLinkError> {
    let fd = crate::sys::take_inherited_fd(CHANGELOG_FD).map_err(ChangelogLinkError::Missing)?;
    let mut s = UnixStream::from(fd);
    let (expect, peer) = if ours == Role::Agent { (Role::Worker, "worker") } else { (Role::Agent, "agent") };
    handshake(&mut s, ours, expect, peer)?;
    Ok(s)
}
