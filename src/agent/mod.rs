//! The changelog agent of one primary brick: live changelogs and HTIME
//! history. Not implemented yet (issue: end-to-end replication).

use std::path::Path;

use crate::cli::BrickArgs;
use crate::exit::NotImplemented;

pub fn run(_config_dir: &Path, _args: &BrickArgs) -> anyhow::Result<()> {
    Err(NotImplemented("the agent role").into())
}
