//! The changelog agent of one primary brick. This version runs the process
//! lifecycle (ctl hello, changelog-channel hello with its worker, Ready,
//! heartbeats, orderly shutdown); reading the brick's changelogs and feeding
//! the worker come with the replication issue.

use std::path::Path;

use tracing::info;

use crate::cli::BrickArgs;
use crate::proto::Role;
use crate::proto::ctl::{Link, ToSupervisor};

pub fn run(_config_dir: &Path, args: &BrickArgs) -> anyhow::Result<()> {
    let mut link = Link::connect(Role::Agent)?;
    link.send(&ToSupervisor::Phase("connecting to the worker".into()))?;
    let _feed = crate::proto::changelog::connect(Role::Agent)?;
    link.send(&ToSupervisor::Ready)?;
    info!(brick = %args.brick.display(), "agent ready");
    Ok(link.wait_for_shutdown()?)
}
