//! The session file on disk: `<config-dir>/<session>.toml`, flat
//! `name = value` lines. Loading checks every key and value and names the line
//! of any problem; edits keep comments, order and formatting (toml_edit) and
//! replace the file atomically.

use std::fs;
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Key, Table};

use super::error::ConfigError;
use super::schema::{self, Lookup, OptionSpec};
use super::value::{self, Value};

/// One option line of a session file.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The key as written (may be a legacy or `_` spelling).
    pub key: String,
    pub spec: &'static OptionSpec,
    pub value: Value,
    pub line: usize,
}

/// A parsed, checked session file, ready to be read or edited.
#[derive(Debug)]
pub struct SessionFile {
    pub path: PathBuf,
    doc: DocumentMut,
    pub entries: Vec<Entry>,
    /// Lines that are accepted but worth telling the operator about
    /// (dead options, legacy spellings).
    pub notices: Vec<String>,
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, col)
}

/// Converts a looked-up key's TOML value, mapping the legacy `use-tarssh`
/// boolean onto `sync-method`.
fn convert(lookup: Lookup, item: &toml_edit::Value) -> Result<Value, String> {
    if lookup.use_tarssh {
        return match item {
            toml_edit::Value::Boolean(b) => Ok(Value::Str(if *b.value() { "tarssh" } else { "rsync" }.to_owned())),
            toml_edit::Value::String(s) => {
                let t = value::parse_bool(s.value())
                    .ok_or_else(|| format!("use-tarssh takes a boolean, not {:?}", s.value()))?;
                Ok(Value::Str(if t { "tarssh" } else { "rsync" }.to_owned()))
            }
            other => Err(format!("use-tarssh takes a boolean, not {}", other.type_name())),
        };
    }
    value::from_toml(lookup.spec, item).map_err(|e| e.0)
}

impl SessionFile {
    /// An empty file that does not exist on disk yet.
    pub fn new(path: PathBuf, session: &str) -> SessionFile {
        let mut doc = DocumentMut::new();
        doc.decor_mut().set_prefix(format!(
            "# gsyncd session {session:?}. Options: gsyncd.toml(5); edit with `gsyncd config set`.\n\n"
        ));
        SessionFile { path, doc, entries: Vec::new(), notices: Vec::new() }
    }

    /// Reads and checks a session file.
    pub fn load(path: &Path) -> Result<SessionFile, ConfigError> {
        let bytes = fs::read(path).map_err(ConfigError::io("cannot read session file", path))?;
        Self::parse(path, bytes)
    }

    /// Checks the contents of a session file.
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<SessionFile, ConfigError> {
        let text = String::from_utf8(bytes).map_err(|e| {
            let (line, column) = line_col(&String::from_utf8_lossy(e.as_bytes()), e.utf8_error().valid_up_to());
            ConfigError::Syntax { path: path.to_owned(), line, column, message: "the file is not valid UTF-8".into() }
        })?;
        let parsed = toml_edit::Document::parse(text.as_str()).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(&text, s.start)).unwrap_or((1, 1));
            ConfigError::Syntax {
                path: path.to_owned(),
                line,
                column,
                message: format!("TOML syntax error: {}", e.message().trim()),
            }
        })?;
        let mut entries: Vec<Entry> = Vec::new();
        let mut notices = Vec::new();
        for (key, item) in parsed.as_table().iter() {
            let line = parsed
                .as_table()
                .key(key)
                .and_then(Key::span)
                .or_else(|| item.span())
                .map(|s| line_col(&text, s.start).0)
                .unwrap_or(0);
            let Some(v) = item.as_value() else {
                return Err(ConfigError::NotAValue { path: path.to_owned(), line, key: key.to_owned() });
            };
            let Some(lookup) = schema::lookup(key) else {
                return Err(ConfigError::UnknownKey {
                    path: path.to_owned(),
                    line,
                    key: key.to_owned(),
                    suggestions: schema::suggestions(key),
                });
            };
            if let Some(first) = entries.iter().find(|e| std::ptr::eq(e.spec, lookup.spec)) {
                return Err(ConfigError::DuplicateKey {
                    path: path.to_owned(),
                    line,
                    key: key.to_owned(),
                    option: lookup.spec.name,
                    first_line: first.line,
                });
            }
            let value = convert(lookup, v).map_err(|reason| ConfigError::BadValueInFile {
                path: path.to_owned(),
                line,
                key: key.to_owned(),
                reason,
            })?;
            if lookup.spec.is_live() && !lookup.spec.configurable {
                return Err(ConfigError::FixedInFile {
                    path: path.to_owned(),
                    line,
                    key: key.to_owned(),
                    default: lookup.spec.default,
                });
            }
            if let Some(reason) = lookup.spec.dead {
                notices.push(format!("{}:{line}: option {key} has no effect: {reason}", path.display()));
            } else if lookup.renamed {
                notices.push(format!("{}:{line}: {key} is an old name of {}", path.display(), lookup.spec.name));
            }
            entries.push(Entry { key: key.to_owned(), spec: lookup.spec, value, line });
        }
        Ok(SessionFile { path: path.to_owned(), doc: parsed.into_mut(), entries, notices })
    }

    /// The value set for an option, if any.
    pub fn get(&self, spec: &OptionSpec) -> Option<&Value> {
        self.entries.iter().find(|e| std::ptr::eq(e.spec, spec)).map(|e| &e.value)
    }

    /// Sets an option. A key in another spelling is renamed to the canonical
    /// name in place; a value's trailing comment is kept.
    pub fn set(&mut self, spec: &'static OptionSpec, value: Value) {
        let table = self.doc.as_table_mut();
        let existing = self.entries.iter().find(|e| std::ptr::eq(e.spec, spec)).map(|e| e.key.clone());
        let mut new_value = value.to_toml();
        match existing {
            Some(key) => {
                if key != spec.name {
                    rename_key(table, &key, spec.name);
                }
                // Replace the value in place: `Table::insert` would reformat
                // the key and drop the comments above it.
                match table.get_mut(spec.name) {
                    Some(slot) => {
                        if let Some(old) = slot.as_value() {
                            *new_value.decor_mut() = old.decor().clone();
                        }
                        *slot = Item::Value(new_value);
                    }
                    None => {
                        table.insert(spec.name, Item::Value(new_value));
                    }
                }
            }
            None => {
                table.insert(spec.name, Item::Value(new_value));
            }
        }
        self.entries.retain(|e| !std::ptr::eq(e.spec, spec));
        self.entries.push(Entry { key: spec.name.to_owned(), spec, value, line: 0 });
    }

    /// Removes an option (in whatever spelling). Returns whether it was set.
    /// Comments directly above it go with it; a comment block separated from
    /// it by a blank line (a file header) stays.
    pub fn reset(&mut self, spec: &OptionSpec) -> bool {
        let Some(key) = self.entries.iter().find(|e| std::ptr::eq(e.spec, spec)).map(|e| e.key.clone()) else {
            return false;
        };
        remove_keeping_paragraphs(&mut self.doc, &key);
        self.entries.retain(|e| !std::ptr::eq(e.spec, spec));
        true
    }

    /// The file's text as it would be written.
    pub fn render(&self) -> String {
        self.doc.to_string()
    }

    /// Writes the file atomically: a temporary file in the same directory,
    /// fsync, rename over the old file, fsync of the directory. The old file's
    /// permissions are kept.
    pub fn save(&self) -> Result<(), ConfigError> {
        write_atomically(&self.path, self.render().as_bytes())
    }
}

/// Writes `path` atomically with the contents `data`.
pub fn write_atomically(path: &Path, data: &[u8]) -> Result<(), ConfigError> {
    crate::fsutil::write_atomically(path, data, 0o644).map_err(|e| ConfigError::Io {
        op: e.op,
        path: e.path,
        source: e.source,
    })
}

/// Renames `old` to `new` keeping the key's position and comments.
fn rename_key(table: &mut Table, old: &str, new: &str) {
    let keys: Vec<String> = table.iter().map(|(k, _)| k.to_owned()).collect();
    let mut drained = Vec::with_capacity(keys.len());
    for k in &keys {
        if let Some(pair) = table.remove_entry(k) {
            drained.push(pair);
        }
    }
    for (key, item) in drained {
        if key.get() == old {
            let renamed = Key::new(new).with_leaf_decor(key.leaf_decor().clone());
            table.insert_formatted(&renamed, item);
        } else {
            table.insert_formatted(&key, item);
        }
    }
}

/// Removes `key`; moves any comment paragraph above it that is separated by
/// a blank line onto the following key (or the end of the document).
fn remove_keeping_paragraphs(doc: &mut DocumentMut, key: &str) {
    let table = doc.as_table_mut();
    let keys: Vec<String> = table.iter().map(|(k, _)| k.to_owned()).collect();
    let Some(pos) = keys.iter().position(|k| k == key) else {
        return;
    };
    let Some((removed, _)) = table.remove_entry(key) else {
        return;
    };
    let prefix = removed.leaf_decor().prefix().and_then(|p| p.as_str()).unwrap_or("").to_owned();
    let keep = match prefix.rfind("\n\n") {
        Some(i) => prefix[..i + 2].to_owned(),
        None => String::new(),
    };
    if keep.trim().is_empty() {
        return;
    }
    if let Some(next) = keys.get(pos + 1) {
        if let Some(mut k) = table.key_mut(next) {
            let old = k.leaf_decor().prefix().and_then(|p| p.as_str()).unwrap_or("").to_owned();
            k.leaf_decor_mut().set_prefix(format!("{keep}{old}"));
        }
    } else {
        let trailing = doc.trailing().as_str().unwrap_or("").to_owned();
        doc.set_trailing(format!("{keep}{trailing}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn parse(text: &str) -> Result<SessionFile, ConfigError> {
        SessionFile::parse(Path::new("/etc/gsyncd/t.toml"), text.as_bytes().to_vec())
    }

    #[test]
    fn reports_line_of_unknown_key() {
        let e = parse("# c\nsync-jobs = 3\nbogus = 1\n").unwrap_err();
        assert_eq!(e.to_string().split(':').nth(1), Some("3"), "{e}");
        assert!(e.to_string().contains("bogus"));
    }

    #[test]
    fn reports_syntax_error_position() {
        let e = parse("sync-jobs = 3\nlog-level = \n").unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { line: 2, .. }), "{e}");
    }

    #[test]
    fn reports_bad_value_and_duplicates() {
        let e = parse("sync-jobs = 0\n").unwrap_err();
        assert!(matches!(e, ConfigError::BadValueInFile { line: 1, .. }), "{e}");
        let e = parse("secondary-timeout = 5\nslave_timeout = 6\n").unwrap_err();
        assert!(matches!(e, ConfigError::DuplicateKey { line: 2, first_line: 1, .. }), "{e}");
        let e = parse("[vars]\nx = 1\n").unwrap_err();
        assert!(matches!(e, ConfigError::NotAValue { .. }), "{e}");
    }

    #[test]
    fn fixed_options_are_refused_in_files_and_dead_ones_noted() {
        let e = parse("pid-file = \"/x\"\n").unwrap_err();
        assert!(matches!(e, ConfigError::FixedInFile { line: 1, .. }), "{e}");
        let f = parse("log-file = \"/x\"\n").unwrap();
        assert!(f.notices[0].contains("no effect"), "{:?}", f.notices);
    }

    #[test]
    fn set_keeps_comments_and_renames_legacy_keys() {
        let mut f =
            parse("# header\n\n# timeout for the secondary\nslave-timeout = 10 # short\nsync-jobs = 3\n").unwrap();
        let spec = schema::spec("secondary-timeout").unwrap();
        f.set(spec, Value::Int(30));
        assert_eq!(
            f.render(),
            "# header\n\n# timeout for the secondary\nsecondary-timeout = 30 # short\nsync-jobs = 3\n"
        );
        f.set(schema::spec("ignore-deletes").unwrap(), Value::Bool(true));
        assert!(f.render().ends_with("sync-jobs = 3\nignore-deletes = true\n"), "{}", f.render());
    }

    #[test]
    fn reset_keeps_the_header() {
        let mut f = parse("# header\n\n# about jobs\nsync-jobs = 3\nlog-level = \"DEBUG\"\n").unwrap();
        assert!(f.reset(schema::spec("sync-jobs").unwrap()));
        assert_eq!(f.render(), "# header\n\nlog-level = \"DEBUG\"\n");
        assert!(!f.reset(schema::spec("sync-jobs").unwrap()));
    }

    #[test]
    fn use_tarssh_maps_to_sync_method() {
        let f = parse("use_tarssh = true\n").unwrap();
        assert_eq!(f.get(schema::spec("sync-method").unwrap()), Some(&Value::Str("tarssh".into())));
        assert_eq!(f.notices.len(), 1);
    }

    #[test]
    fn atomic_write_keeps_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.toml");
        fs::write(&p, "sync-jobs = 3\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        let mut f = SessionFile::load(&p).unwrap();
        f.set(schema::spec("sync-jobs").unwrap(), Value::Int(4));
        f.save().unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "sync-jobs = 4\n");
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }
}
