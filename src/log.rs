//! Logging with `tracing`: to the journal when gsyncd runs under systemd (or
//! when asked), with structured fields `GSYNCD_SESSION`, `GSYNCD_ROLE` and
//! every event field as `GSYNCD_<FIELD>`; human-readable lines on stderr
//! otherwise.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::{LogLevel, LogTarget};

/// What the process logs, and as whom.
#[derive(Debug, Clone, Copy)]
pub struct LogSettings<'a> {
    /// `--log-level`: wins over everything.
    pub cli_level: Option<LogLevel>,
    /// The session's `log-level` option, used when neither `--log-level` nor
    /// `RUST_LOG` is given.
    pub session_level: Option<&'a str>,
    pub target: LogTarget,
    /// The role (`config`, `supervise`, `worker`, ...).
    pub role: &'a str,
    pub session: Option<&'a str>,
    /// When logging to stderr, also copy every record to the journal if one
    /// is reachable: for the secondary-side roles, whose stderr goes back to
    /// the primary over ssh but whose node's administrators read the journal.
    pub also_journal: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot log to the journal (is systemd-journald running?)")]
    Journald(#[source] std::io::Error),
    #[error("invalid RUST_LOG filter")]
    Filter(#[source] tracing_subscriber::filter::ParseError),
    #[error("a logger is already installed")]
    AlreadySet(#[source] tracing_subscriber::util::TryInitError),
}

fn level_directive(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    }
}

/// Maps a session `log-level` value (the reference's spellings) to a filter.
fn session_directive(level: &str) -> &'static str {
    match level.to_ascii_uppercase().as_str() {
        "ERROR" | "CRITICAL" => "error",
        "WARNING" | "WARN" => "warn",
        "DEBUG" => "debug",
        "TRACE" => "trace",
        _ => "info",
    }
}

fn directive(d: &str) -> Result<Targets, LogError> {
    d.parse::<Targets>().map_err(LogError::Filter)
}

/// The filter: `target=level` directives and a bare default level, as
/// `RUST_LOG` takes them (no span or field filters: they would pull a regex
/// engine into every gsyncd process for a feature nobody operating a daemon
/// needs).
fn filter(s: &LogSettings<'_>) -> Result<Targets, LogError> {
    if let Some(l) = s.cli_level {
        return directive(level_directive(l));
    }
    match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => directive(v.trim()),
        _ => directive(s.session_level.map(session_directive).unwrap_or("info")),
    }
}

/// Whether stderr is the journal stream systemd set up (`JOURNAL_STREAM` is
/// `device:inode` of that socket; see systemd.exec(5)).
pub fn stderr_is_journal() -> bool {
    let Some(expected) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let expected = expected.to_string_lossy().into_owned();
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    expected == format!("{}:{}", meta.dev(), meta.ino())
}

/// The installed logger. Keep it alive for the process lifetime: it holds
/// the process-wide span that carries the session and role.
#[derive(Debug)]
pub struct Logger {
    _span: tracing::span::EnteredSpan,
    /// Records go to the journal (so stderr need not repeat them).
    pub journald: bool,
}

/// Installs the global logger and enters a process-wide span carrying the
/// session and role.
pub fn init(s: &LogSettings<'_>) -> Result<Logger, LogError> {
    let filter = filter(s)?;
    let journald = match s.target {
        LogTarget::Journald => true,
        LogTarget::Stderr => false,
        LogTarget::Auto => stderr_is_journal(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let journal_layer = || {
        tracing_journald::layer()
            .map(|l| l.with_field_prefix(Some("GSYNCD".to_owned())).with_syslog_identifier("gsyncd".to_owned()))
    };
    if journald {
        match journal_layer() {
            Ok(layer) => {
                registry.with(layer).try_init().map_err(LogError::AlreadySet)?;
            }
            Err(e) if s.target == LogTarget::Journald => return Err(LogError::Journald(e)),
            Err(_) => {
                init_stderr(registry.with(None::<tracing_journald::Layer>))?;
                return Ok(Logger { _span: root_span(s), journald: false });
            }
        }
    } else {
        let copy = if s.also_journal && s.target == LogTarget::Auto { journal_layer().ok() } else { None };
        init_stderr(registry.with(copy))?;
    }
    Ok(Logger { _span: root_span(s), journald })
}

/// At ERROR level so that it is enabled whenever any record is.
fn root_span(s: &LogSettings<'_>) -> tracing::span::EnteredSpan {
    tracing::error_span!("gsyncd", session = s.session.unwrap_or(""), role = s.role).entered()
}

fn init_stderr<S>(registry: S) -> Result<(), LogError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    registry.with(layer).try_init().map_err(LogError::AlreadySet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_levels_map() {
        assert_eq!(session_directive("WARNING"), "warn");
        assert_eq!(session_directive("debug"), "debug");
        assert_eq!(session_directive("INFO"), "info");
    }

    #[test]
    fn cli_level_wins() {
        let s = LogSettings {
            cli_level: Some(LogLevel::Debug),
            session_level: Some("ERROR"),
            target: LogTarget::Stderr,
            role: "t",
            session: None,
            also_journal: false,
        };
        assert_eq!(filter(&s).unwrap().to_string(), "debug");
    }

    #[test]
    fn rust_log_directives() {
        use tracing::level_filters::LevelFilter;
        let t = directive("warn,gsyncd::worker=trace").unwrap();
        assert!(t.would_enable("gsyncd::worker::live", &tracing::Level::TRACE));
        assert!(!t.would_enable("gsyncd::agent", &tracing::Level::INFO));
        assert_eq!(t.default_level(), Some(LevelFilter::WARN));
        assert!(matches!(directive("gsyncd=loud"), Err(LogError::Filter(_))));
    }
}
