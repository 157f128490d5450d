//! Process exit codes. Every code here is listed in gsyncd(8) (EXIT STATUS);
//! a test keeps the two in step.

use std::process::ExitCode;

/// How a gsyncd process ends. The numeric values are part of the interface:
/// scripts and glusterd-era tooling test them, so never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// A runtime failure: I/O, a peer that went away, a failed child command.
    Failure = 1,
    /// A configuration option name that gsyncd does not know (as the reference).
    UnknownOption = 2,
    /// A configuration value that fails the option's validation (as the reference).
    InvalidValue = 3,
    /// An option that cannot be changed with `config set` (as the reference).
    NotConfigurable = 4,
    /// A session file that cannot be read or parsed; the message names file and line.
    BadConfigFile = 5,
    /// The named session has no session file.
    NoSuchSession = 6,
    /// An input file (changelog, HTIME index) is malformed; the message names
    /// file and byte offset.
    BadInput = 7,
    /// `supervise` found the session already running (its pid file locked).
    AlreadyRunning = 8,
    /// `checkpoint wait` gave up at its --timeout.
    TimedOut = 9,
    /// The session is not running (`checkpoint wait`).
    NotRunning = 10,
    /// `checkpoint wait` timed out while only failure-ledger items held the
    /// checkpoint back (stime passed it).
    FailuresPending = 11,
    /// `doctor`: a check failed (the message names it and its fix).
    CheckFailed = 12,
    /// Wrong command-line usage (sysexits EX_USAGE).
    Usage = 64,
    /// A role or command that this build does not implement yet (sysexits EX_UNAVAILABLE).
    Unavailable = 69,
}

impl Exit {
    /// Every code with its one-line meaning, in the order gsyncd(8) lists them.
    pub const ALL: [(Exit, &'static str); 15] = [
        (Exit::Ok, "success"),
        (Exit::Failure, "runtime failure (I/O, a peer or child command failed)"),
        (Exit::UnknownOption, "unknown configuration option name"),
        (Exit::InvalidValue, "invalid configuration value"),
        (Exit::NotConfigurable, "option cannot be changed with config set"),
        (Exit::BadConfigFile, "session file unreadable or malformed"),
        (Exit::NoSuchSession, "no session file for the named session"),
        (Exit::BadInput, "malformed input file (changelog, HTIME index)"),
        (Exit::AlreadyRunning, "the session is already running"),
        (Exit::TimedOut, "checkpoint wait: timed out before the checkpoint completed"),
        (Exit::NotRunning, "the session is not running (checkpoint wait)"),
        (
            Exit::FailuresPending,
            "checkpoint wait: timed out with only failure-ledger items holding the checkpoint back",
        ),
        (Exit::CheckFailed, "doctor: a check failed (named with its fix)"),
        (Exit::Usage, "command-line usage error (including a role started by hand)"),
        (Exit::Unavailable, "role or command not implemented in this build"),
    ];

    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e.code())
    }
}

/// An error that knows which exit code it maps to. Errors without one map to
/// [`Exit::Failure`].
pub trait HasExit {
    fn exit(&self) -> Exit;
}

/// A role or command this build does not implement yet.
#[derive(Debug, thiserror::Error)]
#[error("{0} is not implemented yet in gsyncd {ver}", ver = env!("CARGO_PKG_VERSION"))]
pub struct NotImplemented(pub &'static str);

impl HasExit for NotImplemented {
    fn exit(&self) -> Exit {
        Exit::Unavailable
    }
}
