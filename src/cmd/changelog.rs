//! `gsyncd changelog show`: a brick's changelogs, readable.

use std::io::{self, BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::cli::{ChangelogCmd, ChangelogShowArgs};
use crate::exit::{Exit, HasExit};
use crate::gluster::changelog::{self, ChangelogError, EntryArgs, EntryRef, RecordRef};
use crate::gluster::htime::{ChangelogDir, HtimeError};

#[derive(Debug, thiserror::Error)]
pub enum ShowError {
    #[error(transparent)]
    Changelog(#[from] ChangelogError),
    #[error(transparent)]
    Htime(#[from] HtimeError),
    #[error("{0}: no such file or directory")]
    NotFound(String),
    #[error("{count} changelog(s) listed in the HTIME index are missing, first {first}")]
    Missing { count: usize, first: String },
    #[error("cannot write output")]
    Output(#[source] io::Error),
}

impl HasExit for ShowError {
    fn exit(&self) -> Exit {
        match self {
            ShowError::Changelog(ChangelogError::Format { .. }) | ShowError::Htime(HtimeError::Format { .. }) => {
                Exit::BadInput
            }
            _ => Exit::Failure,
        }
    }
}

pub fn run(cmd: ChangelogCmd) -> anyhow::Result<()> {
    match cmd {
        ChangelogCmd::Show(a) => match show(&a) {
            Err(ShowError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            r => r.map_err(Into::into),
        },
    }
}

/// A name for JSON: the processed form's escapes, plus `%XX` for bytes
/// that are not UTF-8, so it is lossless and readable.
fn json_name(name: &[u8]) -> String {
    let mut esc = Vec::with_capacity(name.len());
    crate::gluster::escape::escape_into(name, &mut esc);
    let mut out = String::with_capacity(esc.len());
    for chunk in esc.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn json_entry(e: &EntryRef<'_>) -> serde_json::Value {
    serde_json::json!({ "parent": e.parent.to_string(), "name": json_name(e.name) })
}

fn json_record(r: &RecordRef<'_>, ts: Option<u64>) -> serde_json::Value {
    let mut v = match r {
        RecordRef::Data { gfid } => serde_json::json!({ "type": "D", "gfid": gfid.to_string() }),
        RecordRef::Meta { gfid, fop } => {
            serde_json::json!({ "type": "M", "gfid": gfid.to_string(), "op": fop.to_string() })
        }
        RecordRef::Entry { gfid, fop, args } => {
            let mut v = serde_json::json!({ "type": "E", "gfid": gfid.to_string(), "op": fop.to_string() });
            match args {
                EntryArgs::New { mode, uid, gid, entry } => {
                    v["mode"] = (*mode).into();
                    v["uid"] = (*uid).into();
                    v["gid"] = (*gid).into();
                    v["entry"] = json_entry(entry);
                }
                EntryArgs::Delete { entry, path } => {
                    v["entry"] = json_entry(entry);
                    if !path.is_empty() {
                        v["path"] = json_name(path).into();
                    }
                }
                EntryArgs::Rename { from, to } => {
                    v["entry"] = json_entry(from);
                    v["entry1"] = json_entry(to);
                }
                EntryArgs::Link { entry } => v["entry"] = json_entry(entry),
            }
            v
        }
    };
    if let Some(ts) = ts {
        v["changelog"] = ts.into();
    }
    v
}

/// Prints every record of one changelog file.
fn print_file(path: &Path, json: bool, out: &mut impl Write) -> Result<u64, ShowError> {
    let ts = path.file_name().and_then(|n| changelog::name_ts(n.as_bytes())).map(|(t, _)| t);
    let mut reader = changelog::Reader::open(path)?;
    let mut line = Vec::with_capacity(256);
    let mut n = 0u64;
    while let Some(r) = reader.next_record()? {
        line.clear();
        if json {
            serde_json::to_writer(&mut line, &json_record(&r, ts)).map_err(|e| ShowError::Output(e.into()))?;
            line.push(b'\n');
        } else {
            changelog::processed_line(&r, &mut line);
        }
        out.write_all(&line).map_err(ShowError::Output)?;
        n += 1;
    }
    Ok(n)
}

fn show(a: &ChangelogShowArgs) -> Result<(), ShowError> {
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    if a.path.is_file() {
        print_file(&a.path, a.json, &mut out)?;
        return out.flush().map_err(ShowError::Output);
    }
    if !a.path.is_dir() {
        return Err(ShowError::NotFound(a.path.display().to_string()));
    }
    let dir = ChangelogDir::new(&a.path);
    let since = a.since.unwrap_or(0);
    let until = a.until.unwrap_or(u64::MAX);
    let mut missing: Vec<String> = Vec::new();
    'files: for index in dir.htime_files()? {
        for e in &index.entries {
            if e.ts < since {
                continue;
            }
            if !e.empty {
                match dir.locate(e) {
                    Some(p) => {
                        if !a.json {
                            writeln!(out, "# {}", p.display()).map_err(ShowError::Output)?;
                        }
                        print_file(&p, a.json, &mut out)?;
                    }
                    None => missing.push(String::from_utf8_lossy(&e.path).into_owned()),
                }
            }
            if e.ts >= until {
                break 'files;
            }
        }
    }
    out.flush().map_err(ShowError::Output)?;
    match missing.first() {
        Some(first) => Err(ShowError::Missing { count: missing.len(), first: first.clone() }),
        None => Ok(()),
    }
}
