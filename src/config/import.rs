//! Migration of a reference session file (`gsyncd.conf`, INI) into a gsyncd
//! session file. Both layouts of the reference are read: `[vars]` with
//! kebab-case keys (10.x) and the old `[peers PRIMARY SECONDARY]` section with
//! `_` keys. Every key is reported as kept, renamed, converted or dropped with
//! the reason; values are imported as the reference *read* them (its boolean
//! parser takes only `true`/`True`), so a session behaves as it did.

use std::fmt;
use std::path::{Path, PathBuf};

use super::error::ConfigError;
use super::file::SessionFile;
use super::schema::{self, Kind};
use super::value::{self, SecondaryUrl, Source};

/// What happened to one key of the imported file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Kept {
        name: String,
        value: String,
    },
    Renamed {
        from: String,
        to: &'static str,
        value: String,
    },
    Converted {
        from: String,
        to: &'static str,
        old: String,
        new: String,
        why: String,
    },
    Dropped {
        name: String,
        why: String,
    },
    /// Refused: an unknown key or an invalid value. Import stops unless forced.
    Refused {
        name: String,
        line: usize,
        why: String,
    },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Kept { name, value } => write!(f, "kept      {name} = {value}"),
            Outcome::Renamed { from, to, value } => write!(f, "renamed   {from} -> {to} = {value}"),
            Outcome::Converted { from, to, old, new, why } => {
                write!(f, "converted {from} = {old} -> {to} = {new} ({why})")
            }
            Outcome::Dropped { name, why } => write!(f, "dropped   {name}: {why}"),
            Outcome::Refused { name, line, why } => {
                write!(f, "REFUSED   {name} (line {line}): {why}")
            }
        }
    }
}

/// The result of an import: the new session file (not yet written) and a
/// line for every key.
#[derive(Debug)]
pub struct Import {
    pub file: SessionFile,
    pub outcomes: Vec<Outcome>,
}

impl Import {
    pub fn refused(&self) -> impl Iterator<Item = &Outcome> {
        self.outcomes.iter().filter(|o| matches!(o, Outcome::Refused { .. }))
    }
}

/// One `key = value` of an INI section.
#[derive(Debug)]
struct IniEntry {
    section: String,
    key: String,
    value: String,
    line: usize,
}

/// A small parser for Python's RawConfigParser format: `[section]`,
/// `key = value` or `key: value`, `#`/`;` comments, indented continuation lines.
fn parse_ini(path: &Path, text: &str) -> Result<Vec<IniEntry>, ConfigError> {
    let mut out: Vec<IniEntry> = Vec::new();
    let mut section: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if raw.starts_with([' ', '\t'])
            && let Some(last) = out.last_mut().filter(|e| Some(&e.section) == section.as_ref())
        {
            last.value.push('\n');
            last.value.push_str(trimmed);
            continue;
        }
        if let Some(inner) = trimmed.strip_prefix('[') {
            let name = inner.strip_suffix(']').ok_or_else(|| ConfigError::Import {
                path: path.to_owned(),
                reason: format!("line {line}: unterminated section header {trimmed:?}"),
            })?;
            section = Some(name.trim().to_owned());
            continue;
        }
        let Some(sec) = &section else {
            return Err(ConfigError::Import {
                path: path.to_owned(),
                reason: format!("line {line}: `{trimmed}` comes before any [section]"),
            });
        };
        let split = trimmed.find(['=', ':']).ok_or_else(|| ConfigError::Import {
            path: path.to_owned(),
            reason: format!("line {line}: expected `key = value`, found {trimmed:?}"),
        })?;
        out.push(IniEntry {
            section: sec.clone(),
            key: trimmed[..split].trim().to_owned(),
            value: trimmed[split + 1..].trim().to_owned(),
            line,
        });
    }
    Ok(out)
}

/// The reference's `to_bool`: true only for `true`/`True`.
fn reference_bool(s: &str) -> bool {
    s == "true" || s == "True"
}

/// Parses the secondary of a `[peers P S]` header: `[user@]host::vol` or the
/// canonical `ssh://[user@]host:gluster://127.0.0.1:vol`.
fn parse_peer_secondary(s: &str) -> Option<SecondaryUrl> {
    if let Ok(u) = SecondaryUrl::parse(s) {
        return Some(u);
    }
    let rest = s.strip_prefix("ssh://")?;
    let (userhost, url) = rest.split_once(":gluster://")?;
    let vol = url.rsplit(':').next()?;
    SecondaryUrl::parse(&format!("{userhost}::{vol}")).ok()
}

/// Reads a reference session file and builds the gsyncd session file
/// `target` from it. `primary` and `secondary` override what the file (or its
/// directory name, `PRIMARY_HOST_SECONDARY`) says.
pub fn import(
    source: &Path,
    target: PathBuf,
    session: &str,
    primary: Option<&str>,
    secondary: Option<&str>,
) -> Result<Import, ConfigError> {
    let bytes = std::fs::read(source).map_err(ConfigError::io("cannot read", source))?;
    let text = String::from_utf8(bytes).map_err(|e| ConfigError::Import {
        path: source.to_owned(),
        reason: format!("not valid UTF-8 (byte {})", e.utf8_error().valid_up_to()),
    })?;
    let entries = parse_ini(source, &text)?;

    let mut file = SessionFile::new(target, session);
    let mut outcomes = Vec::new();

    // Identity: the command line, then a [peers P S] header, then the
    // reference's directory name PRIMARY_SECONDARYHOST_SECONDARYVOL.
    let peers = entries
        .iter()
        .map(|e| e.section.as_str())
        .chain(text.lines().filter_map(|l| l.trim().strip_prefix('[')?.strip_suffix(']')))
        .find_map(|s| {
            let mut w = s.split_whitespace();
            (w.next() == Some("peers")).then(|| (w.next().map(str::to_owned), w.next().map(str::to_owned)))
        });
    let dir_name =
        source.parent().and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let dir_parts: Vec<&str> = dir_name.split('_').collect();
    let (inferred_p, inferred_s) = match (&peers, dir_parts.as_slice()) {
        (Some((p, s)), _) => (
            p.as_deref().map(|p| p.trim_start_matches(':').to_owned()),
            s.as_deref().and_then(parse_peer_secondary).map(|u| u.to_string()),
        ),
        (None, [p, h, v]) if !p.is_empty() && !h.is_empty() && !v.is_empty() => {
            (Some((*p).to_owned()), Some(format!("{h}::{v}")))
        }
        _ => (None, None),
    };
    for (name, given, inferred) in
        [("primary", primary.map(str::to_owned), inferred_p), ("secondary", secondary.map(str::to_owned), inferred_s)]
    {
        let Some(spec) = schema::spec(name) else {
            continue;
        };
        let from_cli = given.is_some();
        match given.or(inferred) {
            Some(v) => {
                let value = value::parse_text(spec, &v, Source::CommandLine)
                    .map_err(|e| ConfigError::InvalidValue { name: name.to_owned(), reason: e.0 })?;
                file.set(spec, value);
                outcomes.push(Outcome::Kept {
                    name: name.to_owned(),
                    value: format!(
                        "{v} ({})",
                        if from_cli { "from the command line" } else { "from the file's location" }
                    ),
                });
            }
            None => outcomes.push(Outcome::Dropped {
                name: name.to_owned(),
                why: format!("not found in the file; set it with `gsyncd config set {session} {name} ...`"),
            }),
        }
    }

    for e in &entries {
        let in_vars = e.section == "vars" || e.section.split_whitespace().next() == Some("peers");
        if !in_vars {
            // The template file's per-option sections, or [__meta__].
            continue;
        }
        let Some(lookup) = schema::lookup(&e.key) else {
            outcomes.push(Outcome::Refused {
                name: e.key.clone(),
                line: e.line,
                why: "unknown to the reference and to gsyncd".to_owned(),
            });
            continue;
        };
        let spec = lookup.spec;
        if let Some(reason) = spec.dead {
            outcomes.push(Outcome::Dropped { name: e.key.clone(), why: format!("no effect: {reason}") });
            continue;
        }
        if !spec.configurable {
            outcomes.push(Outcome::Dropped {
                name: e.key.clone(),
                why: format!("not configurable in gsyncd; it uses {}", spec.default),
            });
            continue;
        }
        if spec.name == "primary" || spec.name == "secondary" {
            continue;
        }
        let (text_value, conversion) = if lookup.use_tarssh {
            let m = if reference_bool(&e.value) { "tarssh" } else { "rsync" };
            (m.to_owned(), Some("use-tarssh was replaced by sync-method".to_owned()))
        } else if spec.kind == Kind::Bool {
            let b = reference_bool(&e.value);
            let why =
                (value::parse_bool(&e.value) != Some(b)).then(|| format!("the reference read {:?} as {b}", e.value));
            (b.to_string(), why)
        } else {
            (e.value.clone(), None)
        };
        match value::parse_text(spec, &text_value, Source::File) {
            Ok(v) => {
                file.set(spec, v.clone());
                let shown = v.to_string();
                outcomes.push(match conversion {
                    Some(why) => {
                        Outcome::Converted { from: e.key.clone(), to: spec.name, old: e.value.clone(), new: shown, why }
                    }
                    None if schema::normalize(&e.key) != spec.name => {
                        Outcome::Renamed { from: e.key.clone(), to: spec.name, value: shown }
                    }
                    None => Outcome::Kept { name: spec.name.to_owned(), value: shown },
                });
            }
            Err(err) => outcomes.push(Outcome::Refused { name: e.key.clone(), line: e.line, why: err.0 }),
        }
    }
    Ok(Import { file, outcomes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dir_name: &str, text: &str) -> Import {
        let d = tempfile::tempdir().unwrap();
        let sub = d.path().join(dir_name);
        std::fs::create_dir_all(&sub).unwrap();
        let src = sub.join("gsyncd.conf");
        std::fs::write(&src, text).unwrap();
        import(&src, d.path().join("s.toml"), "s", None, None).unwrap()
    }

    #[test]
    fn imports_vars_with_renames_and_reference_bools() {
        let i = run(
            "gv0_host2_sv",
            "[vars]\nsync-jobs = 5\nslave-timeout = 30\nignore-deletes = yes\nuse-tarssh = true\n\
             log-file = /x.log\npid-file = /p\nstime-xattr-prefix = trusted.glusterfs.a.b\n",
        );
        let out = i.file.render();
        assert!(out.contains("primary = \"gv0\""), "{out}");
        assert!(out.contains("secondary = \"host2::sv\""), "{out}");
        assert!(out.contains("sync-jobs = 5"), "{out}");
        assert!(out.contains("secondary-timeout = 30"), "{out}");
        assert!(out.contains("ignore-deletes = false"), "{out}");
        assert!(out.contains("sync-method = \"tarssh\""), "{out}");
        assert!(out.contains("stime-xattr-prefix"), "{out}");
        assert!(!out.contains("pid-file") && !out.contains("log-file"), "{out}");
        let report: Vec<String> = i.outcomes.iter().map(ToString::to_string).collect();
        let report = report.join("\n");
        assert!(report.contains("renamed   slave-timeout -> secondary-timeout"), "{report}");
        assert!(report.contains("the reference read \"yes\" as false"), "{report}");
        assert!(report.contains("dropped   log-file"), "{report}");
        assert!(report.contains("dropped   pid-file"), "{report}");
        assert_eq!(i.refused().count(), 0);
    }

    #[test]
    fn imports_old_peers_form() {
        let i = run(
            "whatever",
            "[peers gv0 ssh://geo@h2:gluster://127.0.0.1:sv]\nuse_tarssh = false\ntimeout = 40\nsync_jobs = 2\n",
        );
        let out = i.file.render();
        assert!(out.contains("primary = \"gv0\""), "{out}");
        assert!(out.contains("secondary = \"geo@h2::sv\""), "{out}");
        assert!(out.contains("sync-method = \"rsync\""), "{out}");
        assert!(out.contains("secondary-timeout = 40"), "{out}");
        assert!(out.contains("sync-jobs = 2"), "{out}");
    }

    #[test]
    fn refuses_unknown_and_invalid() {
        let i = run("a_b_c", "[vars]\nbogus = 1\nsync-jobs = 1000\n");
        let refused: Vec<String> = i.refused().map(ToString::to_string).collect();
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(refused[1].contains("1..100"), "{refused:?}");
    }

    #[test]
    fn bad_ini_is_an_error_with_line() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("gsyncd.conf");
        std::fs::write(&src, "[vars]\nno equals sign here\n").unwrap();
        let e = import(&src, d.path().join("s.toml"), "s", None, None).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }
}
