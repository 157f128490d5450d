//! The sync worker of one primary brick. This version runs the process
//! lifecycle (ctl hello, changelog-channel hello with its agent, Ready,
//! heartbeats, orderly shutdown); the crawls and the entry, metadata and
//! data phases come with the replication issue.

use std::path::Path;

use tracing::info;

use crate::cli::WorkerArgs;
use crate::proto::Role;
use crate::proto::ctl::{Link, ToSupervisor};

pub fn run(_config_dir: &Path, args: &WorkerArgs) -> anyhow::Result<()> {
    let mut link = Link::connect(Role::Worker)?;
    link.send(&ToSupervisor::Phase("connecting to the agent".into()))?;
    let _feed = crate::proto::changelog::connect(Role::Worker)?;
    link.send(&ToSupervisor::Ready)?;
    info!(brick = %args.brick.brick.display(), "worker ready");
    Ok(link.wait_for_shutdown()?)
}
