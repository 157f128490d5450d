use std::path::PathBuf;

use crate::exit::{Exit, HasExit};

/// Everything that can go wrong with session configuration. Each variant
/// names the file, line, option and what would be valid, so the operator can
/// fix it without reading code.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown option {name:?}{}", did_you_mean(.suggestions))]
    UnknownOption { name: String, suggestions: Vec<&'static str> },

    #[error("invalid value for {name}: {reason}")]
    InvalidValue { name: String, reason: String },

    #[error("option {name} is not configurable: {reason}")]
    NotConfigurable { name: String, reason: String },

    #[error("{}:{line}:{column}: {message}", .path.display())]
    Syntax { path: PathBuf, line: usize, column: usize, message: String },

    #[error("{}:{line}: unknown option {key:?}{}", .path.display(), did_you_mean(.suggestions))]
    UnknownKey { path: PathBuf, line: usize, key: String, suggestions: Vec<&'static str> },

    #[error("{}:{line}: invalid value for {key}: {reason}", .path.display())]
    BadValueInFile { path: PathBuf, line: usize, key: String, reason: String },

    #[error("{}:{line}: {key} sets option {option}, which line {first_line} already sets", .path.display())]
    DuplicateKey { path: PathBuf, line: usize, key: String, option: &'static str, first_line: usize },

    #[error("{}:{line}: option {key} is not configurable; remove the line (gsyncd uses {default})", .path.display())]
    FixedInFile { path: PathBuf, line: usize, key: String, default: &'static str },

    #[error("{}:{line}: {key} is a table; session files hold only `name = value` lines", .path.display())]
    NotAValue { path: PathBuf, line: usize, key: String },

    #[error("no session {session:?}: {} does not exist (create it with `gsyncd config set {session} primary VOLUME` or `gsyncd config import`)", .path.display())]
    NoSession { session: String, path: PathBuf },

    #[error("invalid session name {name:?}: {reason}")]
    BadSessionName { name: String, reason: &'static str },

    #[error("{}: {op}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: {reason}", .path.display())]
    Import { path: PathBuf, reason: String },
}

fn did_you_mean(s: &[&'static str]) -> String {
    if s.is_empty() {
        "; `gsyncd config get SESSION --show-defaults` lists every option".to_owned()
    } else {
        format!("; did you mean {}?", s.join(" or "))
    }
}

impl HasExit for ConfigError {
    fn exit(&self) -> Exit {
        match self {
            ConfigError::UnknownOption { .. } => Exit::UnknownOption,
            ConfigError::InvalidValue { .. } => Exit::InvalidValue,
            ConfigError::NotConfigurable { .. } | ConfigError::FixedInFile { .. } => Exit::NotConfigurable,
            ConfigError::Syntax { .. }
            | ConfigError::UnknownKey { .. }
            | ConfigError::BadValueInFile { .. }
            | ConfigError::DuplicateKey { .. }
            | ConfigError::NotAValue { .. }
            | ConfigError::Import { .. } => Exit::BadConfigFile,
            ConfigError::NoSession { .. } => Exit::NoSuchSession,
            ConfigError::BadSessionName { .. } => Exit::Usage,
            ConfigError::Io { .. } => Exit::Failure,
        }
    }
}

impl ConfigError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ConfigError {
        let path = path.into();
        move |source| ConfigError::Io { op, path, source }
    }
}
