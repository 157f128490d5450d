//! The secondary side: the RPC server on the aux-gfid mount, and the ssh
//! forced command that admits it. Not implemented yet (issue: the secondary
//! side).

use crate::cli::{SecondaryArgs, SshGateArgs};
use crate::exit::NotImplemented;

pub fn run(_args: &SecondaryArgs) -> anyhow::Result<()> {
    Err(NotImplemented("the secondary role").into())
}

pub fn gate(_args: &SshGateArgs) -> anyhow::Result<()> {
    Err(NotImplemented("the ssh-gate role").into())
}
