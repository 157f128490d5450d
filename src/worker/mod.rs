//! The sync worker of one primary brick: crawls, entry/meta/data phases,
//! stime. Not implemented yet (issue: end-to-end replication).

use std::path::Path;

use crate::cli::WorkerArgs;
use crate::exit::NotImplemented;

pub fn run(_config_dir: &Path, _args: &WorkerArgs) -> anyhow::Result<()> {
    Err(NotImplemented("the worker role").into())
}
