//! The supervisor: the main process of gsyncd@<session>.service. It owns the
//! pid file, signals, sd_notify, and spawns and reaps the monitor, agents and
//! workers. Not implemented yet (issue: the supervisor).

use std::path::Path;

use crate::cli::SuperviseArgs;
use crate::exit::NotImplemented;

pub fn run(_config_dir: &Path, _args: &SuperviseArgs) -> anyhow::Result<()> {
    Err(NotImplemented("the supervise role").into())
}
