//! `gsyncd config get|set|reset|import`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use crate::cli::{ConfigCmd, ConfigGetArgs, ConfigImportArgs, ConfigResetArgs, ConfigSetArgs};
use crate::config::schema::{self, Lookup, OptionSpec};
use crate::config::value::{self, Source, Value};
use crate::config::{self, Config, ConfigError, DirLock, OPTIONS, SessionFile, import};

pub fn run(config_dir: &Path, cmd: ConfigCmd) -> anyhow::Result<()> {
    match cmd {
        ConfigCmd::Get(a) => get(config_dir, &a),
        ConfigCmd::Set(a) => set(config_dir, &a),
        ConfigCmd::Reset(a) => reset(config_dir, &a),
        ConfigCmd::Import(a) => import_cmd(config_dir, &a),
    }
}

fn print_notices(notices: &[String]) {
    for n in notices {
        eprintln!("gsyncd: note: {n}");
    }
}

/// Looks a name up for `set`/`reset`, or fails with exit 2.
fn find(name: &str) -> Result<Lookup, ConfigError> {
    schema::lookup(name)
        .ok_or_else(|| ConfigError::UnknownOption { name: name.to_owned(), suggestions: schema::suggestions(name) })
}

fn get(config_dir: &Path, a: &ConfigGetArgs) -> anyhow::Result<()> {
    // An unknown name is reported before a missing session, as the reference.
    let wanted = match &a.name {
        Some(n) => {
            let l = find(n)?;
            if let Some(reason) = l.spec.dead {
                return Err(ConfigError::NotConfigurable {
                    name: n.clone(),
                    reason: format!("it has no effect: {reason}"),
                }
                .into());
            }
            Some(l.spec)
        }
        None => None,
    };
    let cfg = Config::load(config_dir, &a.session)?;
    print_notices(&cfg.file.notices);
    let out = std::io::stdout();
    let mut out = out.lock();
    let rows: Vec<&'static OptionSpec> = match wanted {
        Some(s) => vec![s],
        None => OPTIONS.iter().filter(|o| o.is_live() && (a.show_defaults || cfg.is_set(o))).collect(),
    };
    if a.json {
        let mut sorted = rows;
        sorted.sort_by_key(|o| o.name);
        let items: Vec<serde_json::Value> = sorted
            .iter()
            .map(|o| {
                let default = match config::default_value(o) {
                    Value::Str(s) if o.template => {
                        Value::Str(crate::config::template::expand(&s, &|v| cfg.variable(v, &config::no_extra)))
                    }
                    v => v,
                };
                serde_json::json!({
                    "name": o.name,
                    "value": cfg.expanded(o, &config::no_extra).to_json(),
                    "default": default.to_json(),
                    "configurable": o.configurable,
                    "modified": cfg.is_set(o),
                })
            })
            .collect();
        let doc = if wanted.is_some() {
            items.into_iter().next().unwrap_or_default()
        } else {
            serde_json::Value::Array(items)
        };
        writeln!(out, "{}", serde_json::to_string_pretty(&doc).context("cannot encode JSON")?)
            .context("cannot write to stdout")?;
        return Ok(());
    }
    for o in rows {
        let v = cfg.expanded(o, &config::no_extra);
        if wanted.is_some() { writeln!(out, "{v}") } else { writeln!(out, "{}:{v}", o.name) }
            .context("cannot write to stdout")?;
    }
    Ok(())
}

fn set(config_dir: &Path, a: &ConfigSetArgs) -> anyhow::Result<()> {
    let path = config::session_path(config_dir, &a.session)?;
    let l = find(&a.name)?;
    let spec = l.spec;
    if let Some(reason) = spec.dead {
        return Err(ConfigError::NotConfigurable {
            name: a.name.clone(),
            reason: format!("it has no effect: {reason}"),
        }
        .into());
    }
    if !spec.configurable {
        return Err(ConfigError::NotConfigurable {
            name: a.name.clone(),
            reason: format!("gsyncd sets it ({})", spec.default),
        }
        .into());
    }
    let text = if l.use_tarssh {
        match value::parse_bool(&a.value) {
            Some(true) => "tarssh".to_owned(),
            Some(false) => "rsync".to_owned(),
            None => {
                return Err(ConfigError::InvalidValue {
                    name: a.name.clone(),
                    reason: format!("{:?} is not a boolean; use true or false (or set sync-method)", a.value),
                }
                .into());
            }
        }
    } else {
        a.value.clone()
    };
    let new = value::parse_text(spec, &text, Source::CommandLine)
        .map_err(|e| ConfigError::InvalidValue { name: spec.name.to_owned(), reason: e.0 })?;
    if l.renamed {
        eprintln!("gsyncd: note: {} is an old name of {}; setting {}", a.name, spec.name, spec.name);
    }

    std::fs::create_dir_all(config_dir).map_err(ConfigError::io("cannot create config directory", config_dir))?;
    let _lock = DirLock::acquire(config_dir)?;
    let (mut file, created) = if path.exists() {
        (SessionFile::load(&path)?, false)
    } else {
        (SessionFile::new(path.clone(), &a.session), true)
    };
    print_notices(&file.notices);
    let unchanged = file.get(spec) == Some(&new) && file.entries.iter().any(|e| e.key == spec.name);
    if unchanged {
        return Ok(());
    }
    file.set(spec, new);
    file.save()?;
    if created {
        eprintln!("gsyncd: created session file {}", path.display());
    }
    tracing::info!(option = spec.name, "option set");
    Ok(())
}

fn reset(config_dir: &Path, a: &ConfigResetArgs) -> anyhow::Result<()> {
    let path = config::session_path(config_dir, &a.session)?;
    let targets: Vec<&'static OptionSpec> = if a.name == "all" {
        Vec::new()
    } else {
        let l = find(&a.name)?;
        if l.spec.is_live() && !l.spec.configurable {
            return Err(ConfigError::NotConfigurable {
                name: a.name.clone(),
                reason: format!("gsyncd sets it ({})", l.spec.default),
            }
            .into());
        }
        vec![l.spec]
    };
    if !path.exists() {
        return Err(ConfigError::NoSession { session: a.session.clone(), path }.into());
    }
    let _lock = DirLock::acquire(config_dir)?;
    let mut file = SessionFile::load(&path)?;
    print_notices(&file.notices);
    let targets = if a.name == "all" {
        file.entries.iter().map(|e| e.spec).filter(|s| s.name != "primary" && s.name != "secondary").collect()
    } else {
        targets
    };
    let mut changed = false;
    for spec in targets {
        changed |= file.reset(spec);
    }
    if changed {
        file.save()?;
    }
    Ok(())
}

fn import_cmd(config_dir: &Path, a: &ConfigImportArgs) -> anyhow::Result<()> {
    let path = config::session_path(config_dir, &a.session)?;
    std::fs::create_dir_all(config_dir).map_err(ConfigError::io("cannot create config directory", config_dir))?;
    let _lock = DirLock::acquire(config_dir)?;
    if path.exists() && !a.force {
        anyhow::bail!("{} already exists; use --force to replace it", path.display());
    }
    let imported = import::import(&a.file, path.clone(), &a.session, a.primary.as_deref(), a.secondary.as_deref())?;
    let out = std::io::stdout();
    let mut out = out.lock();
    writeln!(out, "import of {} into session {}:", a.file.display(), a.session).context("cannot write to stdout")?;
    for o in &imported.outcomes {
        writeln!(out, "  {o}").context("cannot write to stdout")?;
    }
    let refused = imported.refused().count();
    if refused > 0 && !a.force {
        return Err(ConfigError::Import {
            path: a.file.clone(),
            reason: format!("{refused} key(s) refused (listed above); nothing was written. Fix them, or use --force to leave them out"),
        }
        .into());
    }
    imported.file.save()?;
    writeln!(out, "wrote {}", path.display()).context("cannot write to stdout")?;
    Ok(())
}
