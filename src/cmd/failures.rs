//! `gsyncd failures list|retry|forget`: the failure ledgers of a session
//! (see [`crate::worker::ledger`]).
//!
//! While the session runs, retry and forget are queued beside each ledger
//! and applied by its worker at the next batch (within a rollover period);
//! while it is stopped, the ledgers are changed directly, under the session's
//! pid-file lock so that it cannot start meanwhile.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cli::{FailuresCmd, FailuresPickArgs};
use crate::config::{self, Config};
use crate::exit::{Exit, HasExit};
use crate::gluster::uuid::{Gfid, Uuid};
use crate::supervisor::pidfile::{PidFile, PidFileError};
use crate::worker::ledger::{self, Ledger, Request};

#[derive(Debug, thiserror::Error)]
pub enum FailuresError {
    #[error("{0:?} is not a GFID (expected the form 0b99ef11-4b79-4cd0-9730-b5a0e8c4a8c0)")]
    BadGfid(String),
    #[error("forget drops ledger items for good; add --yes to confirm")]
    NotConfirmed,
    #[error("no ledger item has GFID {0}")]
    NoSuchItem(String),
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
    #[error("cannot lock the session's pid file: {0}")]
    Lock(#[source] PidFileError),
}

impl HasExit for FailuresError {
    fn exit(&self) -> Exit {
        match self {
            FailuresError::BadGfid(_) | FailuresError::NotConfirmed => Exit::Usage,
            FailuresError::NoSuchItem(_) | FailuresError::Ledger(_) | FailuresError::Lock(_) => Exit::Failure,
        }
    }
}

/// The session a `failures` command names (for logging).
pub fn session_of(c: &FailuresCmd) -> &str {
    match c {
        FailuresCmd::List(a) => &a.session,
        FailuresCmd::Retry(a) => &a.session,
        FailuresCmd::Forget(a) => &a.pick.session,
    }
}

pub fn run(config_dir: &Path, cmd: FailuresCmd) -> anyhow::Result<()> {
    let cfg = Config::load(config_dir, session_of(&cmd))?;
    let path =
        |name: &str| config::schema::spec(name).map(|s| PathBuf::from(cfg.expanded(s, &config::no_extra).to_string()));
    let state_dir = path("state-dir").unwrap_or_default();
    let pid_file = path("pid-file").unwrap_or_default();
    match cmd {
        FailuresCmd::List(a) => list(&state_dir, a.json),
        FailuresCmd::Retry(a) => {
            let r = Request::Retry(pick(&a)?);
            change(&state_dir, &pid_file, &r, "to be tried at the next batch")
        }
        FailuresCmd::Forget(a) => {
            if !a.yes {
                return Err(FailuresError::NotConfirmed.into());
            }
            let r = Request::Forget(pick(&a.pick)?);
            change(&state_dir, &pid_file, &r, "forgotten")
        }
    }
}

fn pick(a: &FailuresPickArgs) -> Result<Option<Gfid>, FailuresError> {
    match (&a.gfid, a.all) {
        (_, true) | (None, _) => Ok(None),
        (Some(g), false) => Uuid::parse(g.trim().as_bytes()).map(Some).map_err(|_| FailuresError::BadGfid(g.clone())),
    }
}

/// One item as `list --json` prints it (a stable interface: fields are
/// only ever added).
#[derive(Debug, Serialize)]
struct Row<'a> {
    brick: &'a str,
    gfid: String,
    op: &'a str,
    path: &'a str,
    errno: Option<i32>,
    error: &'a str,
    first_seen: u64,
    last_seen: u64,
    attempts: u32,
    next_attempt: u64,
    changed_after: u64,
}

fn list(state_dir: &Path, json: bool) -> anyhow::Result<()> {
    let ledgers: Vec<Ledger> =
        ledger::files(state_dir).iter().map(|p| Ledger::open_file(p)).collect::<Result<_, _>>()?;
    let rows: Vec<Row<'_>> = ledgers
        .iter()
        .flat_map(|l| {
            l.items().map(move |i| Row {
                brick: l.brick(),
                gfid: i.gfid.to_string(),
                op: &i.op,
                path: &i.path,
                errno: i.errno,
                error: &i.error,
                first_seen: i.first_seen,
                last_seen: i.last_seen,
                attempts: i.attempts,
                next_attempt: i.retry_after,
                changed_after: i.changed,
            })
        })
        .collect();
    let out = std::io::stdout();
    let mut out = out.lock();
    if json {
        let doc = serde_json::json!({ "version": 1, "items": rows });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    if rows.is_empty() {
        writeln!(out, "no failures: every change up to each brick's stime is on the secondary")?;
        return Ok(());
    }
    let t = |s: u64| if s == 0 { "-".to_owned() } else { utc(s) };
    writeln!(
        out,
        "{:<24} {:<36} {:<7} {:>5} {:>8} {:<19} {:<19} {:<19} PATH / ERROR",
        "BRICK", "GFID", "OP", "ERRNO", "ATTEMPTS", "FIRST SEEN", "LAST SEEN", "NEXT ATTEMPT"
    )?;
    for r in &rows {
        writeln!(
            out,
            "{:<24} {:<36} {:<7} {:>5} {:>8} {:<19} {:<19} {:<19} {} ({})",
            r.brick,
            r.gfid,
            r.op,
            r.errno.map_or("-".to_owned(), |e| e.to_string()),
            r.attempts,
            t(r.first_seen),
            t(r.last_seen),
            t(r.next_attempt),
            r.path,
            r.error
        )?;
    }
    writeln!(out, "{} item(s)", rows.len())?;
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS` UTC.
fn utc(s: u64) -> String {
    let (y, m, d) = crate::gluster::htime::civil_from_days(s / 86_400);
    let r = s % 86_400;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", r / 3600, r / 60 % 60, r % 60)
}

fn change(state_dir: &Path, pid_file: &Path, r: &Request, done: &str) -> anyhow::Result<()> {
    let files = ledger::files(state_dir);
    let target = match r {
        Request::Retry(g) | Request::Forget(g) => *g,
    };
    // The items the request names, as the ledgers are now.
    let mut matching = 0usize;
    for f in &files {
        let l = Ledger::open_file(f)?;
        matching += l.items().filter(|i| target.is_none_or(|g| g == i.gfid)).count();
    }
    if let Some(g) = target
        && matching == 0
    {
        return Err(FailuresError::NoSuchItem(g.to_string()).into());
    }
    match PidFile::acquire(pid_file) {
        Ok(_held) => {
            // Stopped (and kept so while the lock is held): change the
            // ledgers themselves.
            let mut n = 0;
            for f in &files {
                let mut l = Ledger::open_file(f)?;
                let k = l.apply(r);
                if k > 0 {
                    l.save()?;
                }
                n += k;
            }
            println!("{n} item(s) {done}");
        }
        Err(PidFileError::Running { .. }) => {
            for f in &files {
                ledger::request(f, r.clone())?;
            }
            println!(
                "{matching} item(s) {done}: the session is running; its workers apply this at their next batch \
                 (within a changelog rollover period)"
            );
        }
        Err(e) => return Err(FailuresError::Lock(e).into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_795_500_901), "2026-11-24 06:15:01");
    }
}
