//! Operator commands (what an administrator types). Roles live in their own
//! rooms; this module only dispatches to them.

pub mod changelog;
pub mod checkpoint;
pub mod cleanup;
pub mod config;
pub mod create;
pub mod doctor;
pub mod failures;
pub mod preflight;
pub mod status;

use crate::cli::{Cli, Command};

/// Runs the parsed command line. Logging is already set up.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let config_dir = cli.global.config_dir;
    match cli.command {
        Command::Config(c) => config::run(&config_dir, c),
        Command::Changelog(c) => changelog::run(c),
        Command::CleanupMounts(a) => cleanup::run(&config_dir, &a),
        Command::Create(a) => create::create(&config_dir, &a),
        Command::Delete(a) => create::delete(&config_dir, &a),
        Command::Doctor(a) => doctor::run(&config_dir, &a),
        Command::Failures(c) => failures::run(&config_dir, c),
        Command::Status(a) => status::run(&config_dir, &a),
        Command::Checkpoint(c) => checkpoint::run(&config_dir, c),
        Command::Supervise(a) => crate::supervisor::run(&config_dir, &a),
        Command::Monitor(a) => crate::monitor::run(&config_dir, &a),
        Command::Agent(a) => crate::agent::run(&config_dir, &a),
        Command::Worker(a) => crate::worker::run(&config_dir, &a),
        Command::Secondary(a) => crate::secondary::run(&a),
        Command::SshGate(a) => crate::secondary::gate(&a),
        Command::MountGuard(a) => crate::secondary::mount_guard(&a),
        Command::Receive(a) => crate::secondary::gate::run_receive(&a.command),
    }
}
