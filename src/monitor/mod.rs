//! The monitor: topology, worker plan per local brick, Active/Passive, status
//! files. Not implemented yet (issue: end-to-end replication).

use std::path::Path;

use crate::cli::MonitorArgs;
use crate::exit::NotImplemented;

pub fn run(_config_dir: &Path, _args: &MonitorArgs) -> anyhow::Result<()> {
    Err(NotImplemented("the monitor role").into())
}
