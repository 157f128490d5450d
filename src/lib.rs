//! gsyncd: GlusterFS geo-replication daemon. The binary's `main` parses the
//! command line and calls [`cmd::run`]; everything else is in rooms by role
//! (see ARCHITECTURE.md §4).

pub mod agent;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod exit;
pub mod fsutil;
pub mod gluster;
pub mod log;
pub mod monitor;
pub mod proto;
pub mod secondary;
pub mod supervisor;
pub mod sys;
pub mod worker;
