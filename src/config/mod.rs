//! Session configuration: the option schema, the TOML session file, typed
//! values with validation, template variables, and the import of a reference
//! `gsyncd.conf`.

pub mod error;
pub mod file;
pub mod import;
pub mod schema;
pub mod template;
pub mod value;

use std::fs::File;
use std::path::{Path, PathBuf};

pub use error::ConfigError;
pub use file::SessionFile;
pub use schema::{OPTIONS, OptionSpec};
pub use value::{SecondaryUrl, Value};

/// The default directory of session files.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/gsyncd";

/// Session names become file names, systemd instance names and path
/// components, so they are restricted.
pub fn check_session_name(name: &str) -> Result<(), ConfigError> {
    let bad = |reason| Err(ConfigError::BadSessionName { name: name.to_owned(), reason });
    if name.is_empty() || name.len() > 64 {
        return bad("it must be 1 to 64 bytes long");
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return bad("it must start with a letter or digit");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
        return bad("it may hold only letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

/// The path of a session's file.
pub fn session_path(config_dir: &Path, session: &str) -> Result<PathBuf, ConfigError> {
    check_session_name(session)?;
    Ok(config_dir.join(format!("{session}.toml")))
}

/// An exclusive lock on the config directory, held while a session file is
/// read, changed and written, so two concurrent `config set` calls cannot
/// lose each other's change.
#[derive(Debug)]
pub struct DirLock(#[allow(dead_code)] File);

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<DirLock, ConfigError> {
        let f = File::open(dir).map_err(ConfigError::io("cannot open config directory", dir))?;
        f.lock().map_err(ConfigError::io("cannot lock config directory", dir))?;
        Ok(DirLock(f))
    }
}

/// A session's effective configuration: the file's values over the defaults.
#[derive(Debug)]
pub struct Config {
    pub session: String,
    pub file: SessionFile,
}

impl Config {
    /// Loads `<config_dir>/<session>.toml`.
    pub fn load(config_dir: &Path, session: &str) -> Result<Config, ConfigError> {
        let path = session_path(config_dir, session)?;
        if !path.exists() {
            return Err(ConfigError::NoSession { session: session.to_owned(), path });
        }
        Ok(Config { session: session.to_owned(), file: SessionFile::load(&path)? })
    }

    /// The effective raw value (before template expansion) of an option.
    pub fn raw(&self, spec: &OptionSpec) -> Value {
        self.file.get(spec).cloned().unwrap_or_else(|| default_value(spec))
    }

    /// Whether the session file sets the option.
    pub fn is_set(&self, spec: &OptionSpec) -> bool {
        self.file.get(spec).is_some()
    }

    /// A template variable's raw value: an option (by `_` name) or one of the
    /// identity variables. Role variables come from `extra`.
    pub fn variable(&self, name: &str, extra: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        if let Some(v) = extra(name) {
            return Some(v);
        }
        let secondary = self.secondary_url();
        match name {
            "session" => return Some(self.session.clone()),
            "secondaryvol" => return secondary.map(|s| s.volume),
            "secondaryuser" => return secondary.map(|s| s.user_or_root().to_owned()),
            "primary_secondary_host" => return secondary.map(|s| s.host),
            _ => {}
        }
        let spec = schema::spec(&name.replace('_', "-")).filter(|s| s.is_live())?;
        Some(self.raw(spec).to_string())
    }

    /// The effective value with template variables expanded. `extra` supplies
    /// role variables such as `local_id`; unknown ones stay as written.
    pub fn expanded(&self, spec: &OptionSpec, extra: &dyn Fn(&str) -> Option<String>) -> Value {
        match self.raw(spec) {
            Value::Str(s) if spec.template => Value::Str(template::expand(&s, &|v| self.variable(v, extra))),
            v => v,
        }
    }

    /// The parsed `secondary` option, when it is set and valid.
    pub fn secondary_url(&self) -> Option<SecondaryUrl> {
        let s = schema::spec("secondary")?;
        match self.file.get(s) {
            Some(Value::Str(u)) if !u.is_empty() => SecondaryUrl::parse(u).ok(),
            _ => None,
        }
    }
}

/// An option's default as a typed value. Defaults are checked by a unit test,
/// so the string fallback is only reached by a broken schema.
pub fn default_value(spec: &OptionSpec) -> Value {
    value::parse_text(spec, spec.default, value::Source::File).unwrap_or_else(|_| Value::Str(spec.default.to_owned()))
}

/// No role variables.
pub fn no_extra(_: &str) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_is_valid() {
        for o in OPTIONS {
            let parsed = value::parse_text(o, o.default, value::Source::File);
            assert!(parsed.is_ok(), "default of {} invalid: {:?}", o.name, parsed);
        }
    }

    #[test]
    fn session_names() {
        assert!(check_session_name("demo").is_ok());
        assert!(check_session_name("gv0_host.sv-1").is_ok());
        for bad in ["", ".x", "a/b", "a b", "-x", &"x".repeat(65)] {
            assert!(check_session_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn templates_expand_from_identity_and_options() {
        let f = SessionFile::parse(
            Path::new("/x/demo.toml"),
            b"primary = \"pv\"\nsecondary = \"geo@h2::sv\"\nrun-dir = \"/srv/run/${primary}\"\n".to_vec(),
        )
        .unwrap();
        let c = Config { session: "demo".into(), file: f };
        let pid = c.expanded(schema::spec("pid-file").unwrap(), &no_extra);
        assert_eq!(pid, Value::Str("/srv/run/pv/monitor.pid".into()));
        let state = c.expanded(schema::spec("state-file").unwrap(), &no_extra);
        assert_eq!(state, Value::Str("/var/lib/gsyncd/demo/monitor.status".into()));
        let log =
            c.expanded(schema::spec("gluster-log-file").unwrap(), &|v| (v == "local_id").then(|| "bricks-b1".into()));
        assert_eq!(log, Value::Str("/var/log/glusterfs/geo-replication/demo/mnt-bricks-b1.log".into()));
        assert_eq!(c.variable("secondaryuser", &no_extra).as_deref(), Some("geo"));
        assert_eq!(c.variable("primary_secondary_host", &no_extra).as_deref(), Some("h2"));
    }
}
