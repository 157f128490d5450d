//! Typed option values: parsing from the command line, from TOML, validation,
//! and display.

use std::fmt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::schema::{Kind, OptionSpec, Validation};
use super::template;

/// A typed option value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Int(i) => write!(f, "{i}"),
            Value::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The value as a TOML item for the session file.
    pub fn to_toml(&self) -> toml_edit::Value {
        match self {
            Value::Str(s) => toml_edit::Value::from(s.as_str()),
            Value::Int(i) => toml_edit::Value::from(*i),
            Value::Bool(b) => toml_edit::Value::from(*b),
        }
    }

    /// The value as JSON, typed.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Str(s) => serde_json::Value::from(s.as_str()),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Bool(b) => serde_json::Value::from(*b),
        }
    }
}

/// Why a value was refused. The message completes "invalid value for NAME: ".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn invalid(msg: impl Into<String>) -> Invalid {
    Invalid(msg.into())
}

/// Parses a boolean as administrators write it. The reference accepts only
/// `true`/`false` and silently reads anything else as false; gsyncd accepts the
/// usual spellings and refuses the rest.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Where a value comes from, which decides a few checks: an executable is
/// looked for only when an operator sets it, `now` is a command-line word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    CommandLine,
    File,
}

/// Parses a command-line (or INI) string into a valid value of `spec`.
pub fn parse_text(spec: &OptionSpec, text: &str, source: Source) -> Result<Value, Invalid> {
    let value = match spec.kind {
        Kind::Str => Value::Str(text.to_owned()),
        Kind::Bool => Value::Bool(
            parse_bool(text).ok_or_else(|| invalid(format!("{text:?} is not a boolean; use true or false")))?,
        ),
        Kind::Int => {
            let t = text.trim();
            if spec.validation == Validation::UnixTime && t.eq_ignore_ascii_case("now") {
                Value::Int(now_secs())
            } else {
                Value::Int(
                    t.parse::<i64>().map_err(|_| invalid(format!("{text:?} is not an integer{}", range_hint(spec))))?,
                )
            }
        }
    };
    validate(spec, value, source)
}

/// Converts a TOML value from the session file into a valid value of `spec`.
pub fn from_toml(spec: &OptionSpec, item: &toml_edit::Value) -> Result<Value, Invalid> {
    let value = match (spec.kind, item) {
        (Kind::Str, toml_edit::Value::String(s)) => Value::Str(s.value().clone()),
        (Kind::Int, toml_edit::Value::Integer(i)) => Value::Int(*i.value()),
        (Kind::Bool, toml_edit::Value::Boolean(b)) => Value::Bool(*b.value()),
        (kind, other) => {
            return Err(invalid(format!(
                "expected {}, found {} `{}`",
                kind.name(),
                other.type_name(),
                other.to_string().trim()
            )));
        }
    };
    validate(spec, value, Source::File)
}

fn range_hint(spec: &OptionSpec) -> String {
    match spec.validation {
        Validation::MinMax(lo, hi) => format!("; valid: {lo}..{hi}"),
        _ => String::new(),
    }
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// Checks a typed value against the option's validation and returns it in
/// canonical form (choices in their listed spelling).
pub fn validate(spec: &OptionSpec, value: Value, source: Source) -> Result<Value, Invalid> {
    if let Value::Str(s) = &value {
        if s.contains('\0') || s.contains('\n') {
            return Err(invalid("value must not contain NUL or newline"));
        }
        if spec.template {
            template::check_variables(s).map_err(invalid)?;
        }
    }
    match (spec.validation, value) {
        (Validation::None, v) => Ok(v),
        (Validation::MinMax(lo, hi), Value::Int(i)) => {
            if (lo..=hi).contains(&i) {
                Ok(Value::Int(i))
            } else {
                Err(invalid(format!("{i} is out of range; valid: {lo}..{hi}")))
            }
        }
        (Validation::Choice(choices), Value::Str(s)) => choices
            .iter()
            .find(|c| c.eq_ignore_ascii_case(s.trim()))
            .map(|c| Value::Str((*c).to_owned()))
            .ok_or_else(|| {
                let list: Vec<String> =
                    choices.iter().map(|c| if c.is_empty() { "\"\"".to_owned() } else { (*c).to_owned() }).collect();
                invalid(format!("{s:?} is not one of: {}", list.join(", ")))
            }),
        (Validation::ExecPath, Value::Str(s)) => {
            if source == Source::CommandLine {
                check_executable(&s)?;
            } else if s.trim().is_empty() {
                return Err(invalid("an executable is required"));
            }
            Ok(Value::Str(s))
        }
        (Validation::UnixTime, Value::Int(i)) => {
            // 1971-01-01: the reference refuses times in 1970 (a typo'd
            // checkpoint would complete at once).
            if i == 0 || (31_536_000..=253_402_300_799).contains(&i) {
                Ok(Value::Int(i))
            } else {
                Err(invalid(format!("{i} is not a unix time after 1971 (or 0 for none, or `now`)")))
            }
        }
        (Validation::AbsPath, Value::Str(s)) => {
            if s.starts_with('/') || s.starts_with("${") {
                Ok(Value::Str(s))
            } else {
                Err(invalid(format!("{s:?} is not an absolute path")))
            }
        }
        (Validation::VolumeName, Value::Str(s)) => {
            check_volume_name(&s).map_err(invalid)?;
            Ok(Value::Str(s))
        }
        (Validation::SecondaryUrl, Value::Str(s)) => {
            if !s.is_empty() {
                SecondaryUrl::parse(&s).map_err(invalid)?;
            }
            Ok(Value::Str(s))
        }
        (Validation::SocketAddr, Value::Str(s)) => {
            if !s.is_empty() && s.parse::<std::net::SocketAddr>().is_err() {
                return Err(invalid(format!(
                    "{s:?} is not an IP address and port such as 127.0.0.1:9469 or [::1]:9469 (or empty for off)"
                )));
            }
            Ok(Value::Str(s))
        }
        (validation, v) => Err(invalid(format!("{v} does not fit validation {validation:?}"))),
    }
}

/// GlusterFS volume names: letters, digits, `-` and `_`, at most 64 bytes
/// (glusterd's GD_VOLUME_NAME_MAX is 64 with the NUL, but 10.x allows 128;
/// the conservative bound keeps derived paths short). Empty is "not set yet".
pub fn check_volume_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    if s.len() > 64 {
        return Err(format!("volume name {s:?} is longer than 64 bytes"));
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(format!("volume name {s:?} may hold only letters, digits, '-' and '_'"));
    }
    Ok(())
}

fn check_executable(s: &str) -> Result<(), Invalid> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false);
    if s.contains('/') {
        return if is_exec(Path::new(s)) { Ok(()) } else { Err(invalid(format!("{s} is not an executable file"))) };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| is_exec(&dir.join(s))) {
        Ok(())
    } else {
        Err(invalid(format!("{s} is not found in PATH; give an absolute path to an executable")))
    }
}

/// A secondary as `[user@]host::volume`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondaryUrl {
    pub user: Option<String>,
    pub host: String,
    pub volume: String,
}

impl SecondaryUrl {
    pub fn parse(s: &str) -> Result<SecondaryUrl, String> {
        let (left, volume) = s.split_once("::").ok_or_else(|| format!("{s:?} is not [user@]host::volume"))?;
        let (user, host) = match left.split_once('@') {
            Some((u, h)) => (Some(u.to_owned()), h),
            None => (None, left),
        };
        if let Some(u) = &user
            && (u.is_empty() || !u.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)))
        {
            return Err(format!("{s:?}: user {u:?} is not a valid user name"));
        }
        if host.is_empty() || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)) {
            return Err(format!("{s:?}: host {host:?} is not a host name or address"));
        }
        if volume.is_empty() {
            return Err(format!("{s:?}: the volume is missing after ::"));
        }
        check_volume_name(volume)?;
        Ok(SecondaryUrl { user, host: host.to_owned(), volume: volume.to_owned() })
    }

    /// The ssh user; root when none is given, as in the reference.
    pub fn user_or_root(&self) -> &str {
        self.user.as_deref().unwrap_or("root")
    }
}

impl fmt::Display for SecondaryUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        write!(f, "{}::{}", self.host, self.volume)
    }
}

#[cfg(test)]
mod tests {
    use super::super::schema::spec;
    use super::*;

    fn s(name: &str) -> &'static OptionSpec {
        spec(name).expect("option exists")
    }

    #[test]
    fn ints_and_ranges() {
        assert_eq!(parse_text(s("sync-jobs"), "5", Source::CommandLine), Ok(Value::Int(5)));
        let e = parse_text(s("sync-jobs"), "0", Source::CommandLine).unwrap_err();
        assert!(e.0.contains("1..100"), "{e}");
        assert!(parse_text(s("sync-jobs"), "x", Source::CommandLine).unwrap_err().0.contains("1..100"));
        assert!(parse_text(s("ssh-port"), "65536", Source::CommandLine).is_err());
    }

    #[test]
    fn bools_accept_common_spellings_and_refuse_the_rest() {
        for t in ["true", "Yes", "on", "1"] {
            assert_eq!(parse_text(s("ignore-deletes"), t, Source::CommandLine), Ok(Value::Bool(true)));
        }
        for f in ["false", "NO", "off", "0"] {
            assert_eq!(parse_text(s("ignore-deletes"), f, Source::CommandLine), Ok(Value::Bool(false)));
        }
        assert!(parse_text(s("ignore-deletes"), "maybe", Source::CommandLine).is_err());
    }

    #[test]
    fn choices_are_case_insensitive_and_canonical() {
        assert_eq!(parse_text(s("log-level"), "debug", Source::CommandLine), Ok(Value::Str("DEBUG".into())));
        let e = parse_text(s("sync-method"), "scp", Source::CommandLine).unwrap_err();
        assert!(e.0.contains("rsync, tarssh"), "{e}");
    }

    #[test]
    fn checkpoint_times() {
        assert_eq!(parse_text(s("checkpoint"), "0", Source::CommandLine), Ok(Value::Int(0)));
        assert!(parse_text(s("checkpoint"), "1000", Source::CommandLine).is_err());
        let now = parse_text(s("checkpoint"), "now", Source::CommandLine).unwrap();
        assert!(now.as_int().is_some_and(|t| t > 1_700_000_000));
    }

    #[test]
    fn executables() {
        assert!(parse_text(s("ssh-command"), "sh", Source::CommandLine).is_ok());
        assert!(parse_text(s("ssh-command"), "/bin/sh", Source::CommandLine).is_ok());
        assert!(parse_text(s("ssh-command"), "/nonexistent/ssh", Source::CommandLine).is_err());
        assert!(parse_text(s("ssh-command"), "no-such-binary-here", Source::CommandLine).is_err());
        // A file is not checked against this machine's PATH.
        assert!(parse_text(s("ssh-command"), "no-such-binary-here", Source::File).is_ok());
    }

    #[test]
    fn socket_addresses() {
        for ok in ["", "127.0.0.1:9469", "0.0.0.0:9469", "[::1]:9469"] {
            assert_eq!(parse_text(s("metrics-listen"), ok, Source::CommandLine), Ok(Value::Str(ok.into())), "{ok}");
        }
        for bad in ["9469", "localhost:9469", "127.0.0.1", "::1:9469", "127.0.0.1:70000"] {
            let e = parse_text(s("metrics-listen"), bad, Source::CommandLine).unwrap_err();
            assert!(e.0.contains("IP address and port"), "{bad}: {e}");
        }
    }

    #[test]
    fn toml_types_are_checked() {
        let v: toml_edit::Value = "\"5\"".parse().unwrap();
        let e = from_toml(s("sync-jobs"), &v).unwrap_err();
        assert!(e.0.contains("expected integer, found string"), "{e}");
        let v: toml_edit::Value = "7".parse().unwrap();
        assert_eq!(from_toml(s("sync-jobs"), &v), Ok(Value::Int(7)));
    }

    #[test]
    fn secondary_urls() {
        let u = SecondaryUrl::parse("geo@host-2::sv").unwrap();
        assert_eq!((u.user.as_deref(), u.host.as_str(), u.volume.as_str()), (Some("geo"), "host-2", "sv"));
        assert_eq!(u.to_string(), "geo@host-2::sv");
        assert_eq!(SecondaryUrl::parse("h::v").unwrap().user_or_root(), "root");
        for bad in ["h:v", "::v", "h::", "@h::v", "h::v/x", "h h::v"] {
            assert!(SecondaryUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn templates_are_checked() {
        assert!(parse_text(s("ssh-options"), "-i ${state_dir}/k", Source::CommandLine).is_ok());
        let e = parse_text(s("ssh-options"), "-i ${stat_dir}/k", Source::CommandLine).unwrap_err();
        assert!(e.0.contains("stat_dir"), "{e}");
    }
}
