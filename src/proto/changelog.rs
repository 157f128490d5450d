//! The changelog channel between a brick's agent and worker (fd 4 in both).
//!
//! The worker asks; the agent answers [`ToAgent::History`] with what the
//! brick's HTIME index covers, and after [`ToAgent::Feed`] streams every
//! changelog rolled over after a time, oldest first: first what the index
//! already lists (history), then each new one as it appears (live). At most
//! [`WINDOW`] changelogs are unacknowledged at a time: the worker sends
//! [`ToAgent::Ack`] when a changelog's batch is durable, so a slow worker
//! holds the agent back instead of filling memory.

use std::os::unix::net::UnixStream;

use serde::{Deserialize, Serialize};

use super::{ProtoError, Role, handshake};
use crate::gluster::changelog::Record;
use crate::proto::ctl::CHANGELOG_FD;

/// Changelog frames carry whole parsed changelogs.
pub const MAX_FEED_FRAME: usize = 64 << 20;

/// Changelogs the agent sends ahead of the worker's acknowledgement.
pub const WINDOW: usize = 16;

/// Worker to agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToAgent {
    /// What the index covers of [start, end] -> [`ToWorker::History`].
    History { start: u64, end: u64 },
    /// Stream every changelog rolled over after `after` (exclusive), oldest
    /// first, history then live. Replaces any earlier feed. With `live`,
    /// once the feed is caught up, the records of the changelog still being
    /// written follow as they appear ([`ToWorker::Live`]).
    Feed { after: u64, generation: u32, live: bool },
    /// Every changelog up to `ts` is done with.
    Ack { ts: u64 },
    /// The last [`ToWorker::Live`] is done with: the next may come.
    LiveAck,
}

/// Agent to worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToWorker {
    History(HistoryAnswer),
    Changelog(Changelog),
    /// The agent cannot serve the brick's changelogs; the reason says why.
    Broken(String),
    /// The brick holds changelogs (the oldest rolled over at `since`) that
    /// the index did not deliver in three rollover periods: the agent
    /// recovers by itself; the worker shows it in status. `since` 0: the
    /// feed caught up again.
    Stalled {
        since: u64,
    },
    /// Records appended to the changelog still being written, after those
    /// sent before; one at a time, each after the worker's
    /// [`ToAgent::LiveAck`], and only while no rolled changelog is in flight.
    /// The rolled changelog says how many of its records came this way
    /// ([`Changelog::live_records`]).
    Live(LiveRecords),
}

/// A piece of the changelog still being written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveRecords {
    pub generation: u32,
    pub records: Vec<Record>,
}

/// libgfchangelog's history outcomes, with what the worker needs of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HistoryAnswer {
    Full {
        actual_end: u64,
        changelogs: u32,
    },
    Partial {
        actual_end: u64,
        changelogs: u32,
        /// A later index starts after `actual_end`: changes in between
        /// were not journaled, and the worker must crawl.
        gap: bool,
    },
    /// No index covers the start: the worker must crawl. The spans of the
    /// indexes there are, for the log.
    NotAvailable {
        indexes: Vec<(u64, u64)>,
    },
}

/// One rolled-over changelog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changelog {
    /// Rollover time: the changelog holds changes up to here.
    pub ts: u64,
    /// Where it was read (bytes).
    pub path: Vec<u8>,
    pub records: Vec<Record>,
    /// The index lists it but the file is gone (purged, or never written):
    /// its changes are unknown, and the worker must crawl to be sure.
    pub missing: bool,
    /// Its size on disk (what `changelog-batch-size` counts).
    pub size: u64,
    /// The first changelog of a newer index: changelog was off before it,
    /// and what changed meanwhile was not journaled (the worker crawls).
    pub gap_before: bool,
    /// The feed it belongs to (its [`ToAgent::Feed`]'s): a worker that asked
    /// for a new feed drops what is still in flight of an older one.
    pub generation: u32,
    /// Changelogs the agent holds for the worker after this one (the
    /// brick's backlog, for status).
    pub backlog: u32,
    /// Their size on disk.
    pub backlog_bytes: u64,
    /// Its first records that the worker already had as
    /// [`ToWorker::Live`] records, while the translator was writing it.
    pub live_records: u32,
}

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
