//! The gsyncd binary: parse the command line, set up logging, run, and map
//! the outcome to an exit code listed in gsyncd(8). The error chain is
//! printed once, on stderr.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use gsyncd::cli::{Cli, Command};
use gsyncd::cmd::changelog::ShowError;
use gsyncd::cmd::checkpoint::CheckpointError;
use gsyncd::cmd::create::{CreateError, DeleteError};
use gsyncd::cmd::doctor::DoctorError;
use gsyncd::config::ConfigError;
use gsyncd::exit::{Exit, HasExit, NotImplemented};
use gsyncd::log::{self, LogSettings};
use gsyncd::proto::ctl::LinkError;
use gsyncd::supervisor::pidfile::PidFileError;

fn role_name(c: &Command) -> &'static str {
    match c {
        Command::Config(_) => "config",
        Command::Changelog(_) => "changelog",
        Command::CleanupMounts(_) => "cleanup-mounts",
        Command::Create(_) => "create",
        Command::Delete(_) => "delete",
        Command::Doctor(_) => "doctor",
        Command::Failures(_) => "failures",
        Command::Status(_) => "status",
        Command::Checkpoint(_) => "checkpoint",
        Command::Supervise(_) => "supervise",
        Command::Monitor(_) => "monitor",
        Command::Agent(_) => "agent",
        Command::Worker(_) => "worker",
        Command::Secondary(_) => "secondary",
        Command::SshGate(_) => "ssh-gate",
        Command::MountGuard(_) => "mount-guard",
        Command::Receive(_) => "receive",
    }
}

fn session_of(c: &Command) -> Option<&str> {
    use gsyncd::cli::{CheckpointCmd, ConfigCmd};
    match c {
        Command::Status(a) => a.session.as_deref(),
        Command::Checkpoint(CheckpointCmd::Set(a)) => Some(&a.session),
        Command::Checkpoint(CheckpointCmd::Wait(a)) => Some(&a.session),
        Command::Config(ConfigCmd::Get(a)) => Some(&a.session),
        Command::Config(ConfigCmd::Set(a)) => Some(&a.session),
        Command::Config(ConfigCmd::Reset(a)) => Some(&a.session),
        Command::Config(ConfigCmd::Import(a)) => Some(&a.session),
        Command::Create(a) => Some(&a.session),
        Command::Delete(a) => Some(&a.session),
        Command::Doctor(a) => Some(&a.session),
        Command::Failures(c) => Some(gsyncd::cmd::failures::session_of(c)),
        Command::Supervise(a) => Some(&a.session),
        Command::Monitor(a) => Some(&a.session),
        Command::Agent(a) => Some(&a.session),
        Command::Worker(a) => Some(&a.brick.session),
        Command::Secondary(_)
        | Command::Changelog(_)
        | Command::MountGuard(_)
        | Command::SshGate(_)
        | Command::Receive(_) => None,
        Command::CleanupMounts(a) => a.session.as_deref(),
    }
}

/// The exit code of the first error in the chain that has one.
fn exit_for(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<ConfigError>() {
            return e.exit();
        }
        if let Some(e) = cause.downcast_ref::<NotImplemented>() {
            return e.exit();
        }
        if let Some(e) = cause.downcast_ref::<ShowError>() {
            return e.exit();
        }
        if let Some(e) = cause.downcast_ref::<CreateError>() {
            return e.exit();
        }
        if let Some(e) = cause.downcast_ref::<DeleteError>() {
            return e.exit();
        }
        if let Some(e) = cause.downcast_ref::<DoctorError>() {
            return e.exit();
        }
        if let Some(e) = cause.downcast_ref::<gsyncd::cmd::failures::FailuresError>() {
            return e.exit();
        }
        if let Some(e) = cause.downcast_ref::<CheckpointError>() {
            return e.exit();
        }
        if let Some(PidFileError::Running { .. }) = cause.downcast_ref::<PidFileError>() {
            return Exit::AlreadyRunning;
        }
        if let Some(LinkError::NoCtl(_)) = cause.downcast_ref::<LinkError>() {
            return Exit::Usage;
        }
    }
    Exit::Failure
}

fn main() -> ExitCode {
    gsyncd::sys::tune_malloc();
    // A mount guard waits for its parent before it loads anything.
    gsyncd::gluster::auxmount::guard_wait_early(gsyncd::proto::ctl::CTL_FD);
    // `gsyncd --version` alone (as the ssh gate admits it) also tells the
    // versions of the tools, the clock and whether ssh forced the command,
    // for `gsyncd doctor` on the other side; `-V` prints the first line only.
    if std::env::args_os().skip(1).eq([std::ffi::OsString::from("--version")]) {
        use std::io::Write;
        let report = gsyncd::cmd::preflight::version_report();
        return match std::io::stdout().lock().write_all(report.as_bytes()) {
            Ok(()) => Exit::Ok.into(),
            Err(_) => Exit::Failure.into(),
        };
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Exit::Ok,
                _ => Exit::Usage,
            };
            // Printing help or a usage error can only fail if stderr/stdout is
            // gone; there is nowhere left to report that.
            let _ = e.print();
            return code.into();
        }
    };
    let role = role_name(&cli.command);
    let session = session_of(&cli.command).map(str::to_owned);
    // The session's log-level option, for the session's own processes (a
    // file that does not load is reported by the role itself).
    let configured: Option<String> = match &cli.command {
        Command::Supervise(_) | Command::Monitor(_) | Command::Agent(_) | Command::Worker(_) => session
            .as_deref()
            .and_then(|s| gsyncd::config::Config::load(&cli.global.config_dir, s).ok())
            .and_then(|c| gsyncd::config::schema::spec("log-level").map(|o| c.raw(o).to_string())),
        _ => None,
    };
    let settings = LogSettings {
        cli_level: cli.global.log_level,
        // Operator commands speak through stdout/stderr; their log is quiet
        // unless asked.
        session_level: match &cli.command {
            Command::Secondary(a) => a.secondary_log_level.as_deref(),
            _ if configured.is_some() => configured.as_deref(),
            _ => matches!(
                role,
                "config" | "changelog" | "create" | "delete" | "doctor" | "failures" | "status" | "checkpoint"
            )
            .then_some("WARNING"),
        },
        target: cli.global.log_target,
        role,
        session: session.as_deref(),
        also_journal: matches!(
            cli.command,
            Command::Secondary(_) | Command::SshGate(_) | Command::MountGuard(_) | Command::Receive(_)
        ),
    };
    let logger = match log::init(&settings) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gsyncd: error: {:#}", anyhow::Error::from(e));
            return Exit::Failure.into();
        }
    };
    match gsyncd::cmd::run(cli) {
        Ok(()) => Exit::Ok.into(),
        Err(e) => {
            let exit = exit_for(&e);
            if logger.journald {
                // Under systemd stderr is the journal too: log the chain once,
                // as an error record with the session's fields.
                tracing::error!(exit = exit.code(), "{e:#}");
            } else {
                eprintln!("gsyncd: error: {e:#}");
            }
            exit.into()
        }
    }
}
