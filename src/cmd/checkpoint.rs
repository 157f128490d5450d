//! `gsyncd checkpoint set SESSION [now|TIME]` and `gsyncd checkpoint wait
//! SESSION [--timeout S]`.
//!
//! A checkpoint is the session's `checkpoint` option: `set` changes it
//! through `gsyncd config set` (same validation, same locked atomic write),
//! and the running workers read it again without a restart. A worker
//! reports the checkpoint complete once its stime passed it and no
//! failure-ledger item older than it is left; `wait` polls the session's
//! status (as `gsyncd status` reads it) until every Active brick of this
//! node says so.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cli::{CheckpointCmd, CheckpointSetArgs, CheckpointWaitArgs, ConfigCmd, ConfigSetArgs};
use crate::cmd::status::{self, BrickRow, Clock};
use crate::config::{Config, ConfigError};
use crate::exit::{Exit, HasExit};
use crate::proto::status as st;

/// How often `wait` looks.
const POLL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("session {session} has no checkpoint; set one with `gsyncd checkpoint set {session}`")]
    NoCheckpoint { session: String },
    #[error("session {session} is not running (start it: systemctl start gsyncd@{session}.service)")]
    NotRunning { session: String },
    #[error("checkpoint {checkpoint} of session {session} not complete after {secs} s:{waiting}")]
    TimedOut { session: String, checkpoint: String, secs: u64, waiting: String },
    #[error(
        "checkpoint {checkpoint} of session {session} is held back by failure-ledger items (stime passed it; \
         they are retried with every batch):{waiting}"
    )]
    FailuresPending { session: String, checkpoint: String, waiting: String },
}

impl HasExit for CheckpointError {
    fn exit(&self) -> Exit {
        match self {
            CheckpointError::NoCheckpoint { .. } => Exit::Failure,
            CheckpointError::NotRunning { .. } => Exit::NotRunning,
            CheckpointError::TimedOut { .. } => Exit::TimedOut,
            CheckpointError::FailuresPending { .. } => Exit::FailuresPending,
        }
    }
}

pub fn run(config_dir: &Path, cmd: CheckpointCmd) -> anyhow::Result<()> {
    match cmd {
        CheckpointCmd::Set(a) => set(config_dir, &a),
        CheckpointCmd::Wait(a) => wait(config_dir, &a),
    }
}

/// `now` (or nothing), unix seconds, or `YYYY-MM-DD HH:MM:SS` local time.
pub fn parse_time(text: &str, now: u64, clock: &Clock) -> Result<u64, ConfigError> {
    let t = text.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().map_err(|e| invalid(format!("{t:?}: {e}")));
    }
    clock
        .parse(t)
        .ok_or_else(|| invalid(format!("{t:?} is not `now`, unix seconds, or a local time as \"YYYY-MM-DD HH:MM:SS\"")))
}

fn invalid(reason: String) -> ConfigError {
    ConfigError::InvalidValue { name: "checkpoint".into(), reason }
}

fn set(config_dir: &Path, a: &CheckpointSetArgs) -> anyhow::Result<()> {
    // An unknown session is an error here (config set would create it).
    let cfg = Config::load(config_dir, &a.session)?;
    let clock = Clock::local();
    let when = parse_time(&a.time.join(" "), status::unix_now(), &clock)?;
    crate::cmd::config::run(
        config_dir,
        ConfigCmd::Set(ConfigSetArgs {
            session: a.session.clone(),
            name: "checkpoint".into(),
            value: when.to_string(),
        }),
    )?;
    let out = std::io::stdout();
    let mut out = out.lock();
    if when == 0 {
        writeln!(out, "checkpoint of session {} cleared", a.session)
    } else {
        writeln!(out, "checkpoint of session {} set to {} ({when})", a.session, clock.format(when))
    }
    .context("cannot write to stdout")?;
    let pid = crate::config::schema::spec("pid-file").map(|s| cfg.expanded(s, &crate::config::no_extra).to_string());
    if !pid.is_some_and(|p| crate::supervisor::pidfile::is_locked(Path::new(&p))) {
        eprintln!(
            "gsyncd: note: session {} is not running; its workers will use the checkpoint when it starts",
            a.session
        );
    }
    Ok(())
}

/// Where the checkpoint stands on this node's bricks.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every Active brick completed it; the latest completion time.
    Complete { active: usize, last: Option<u64> },
    /// Bricks still waiting, each with why; `ledger` when every one of them
    /// waits only for failure-ledger items.
    Pending { waiting: Vec<String>, ledger: bool },
}

/// The checkpoint `cp` on `bricks` (rows of a running session).
pub fn verdict(bricks: &[BrickRow], cp: u64, clock: &Clock) -> Verdict {
    if bricks.is_empty() {
        return Verdict::Pending { waiting: vec!["no brick has reported a status yet".into()], ledger: false };
    }
    let mut waiting = Vec::new();
    let mut ledger = true;
    let mut active = 0;
    let mut last = None;
    for b in bricks {
        let why = match b.status.as_str() {
            st::PASSIVE => continue,
            st::ACTIVE => {
                active += 1;
                if b.checkpoint_time == Some(cp) && b.checkpoint_completed == Some(true) {
                    last = last.max(b.checkpoint_completion_time);
                    continue;
                }
                let synced = b.last_synced.unwrap_or(0);
                let failures = b.failures.unwrap_or(0);
                if synced >= cp && failures > 0 {
                    format!("synced past it, but {failures} failure-ledger item(s) are left (gsyncd status --detail)")
                } else if synced >= cp {
                    ledger = false;
                    "synced past it; the worker has not reported it complete yet".to_owned()
                } else {
                    ledger = false;
                    match b.last_synced {
                        Some(t) => format!("synced up to {}", clock.format(t)),
                        None => "nothing synced yet".to_owned(),
                    }
                }
            }
            other => {
                ledger = false;
                match &b.last_error {
                    Some(e) if other == st::FAULTY || other == st::RETRYING => format!("{other}: {e}"),
                    _ => other.to_owned(),
                }
            }
        };
        waiting.push(format!("{}: {why}", b.brick));
    }
    if waiting.is_empty() { Verdict::Complete { active, last } } else { Verdict::Pending { waiting, ledger } }
}

fn wait(config_dir: &Path, a: &CheckpointWaitArgs) -> anyhow::Result<()> {
    let clock = Clock::local();
    let start = Instant::now();
    let deadline = a.timeout.map(|t| start + Duration::from_secs(t));
    let mut told_ledger = false;
    loop {
        let s = status::collect(config_dir, &a.session)?;
        let Some(cp) = s.checkpoint else {
            return Err(CheckpointError::NoCheckpoint { session: a.session.clone() }.into());
        };
        if !s.running {
            return Err(CheckpointError::NotRunning { session: a.session.clone() }.into());
        }
        let when = format!("{} ({cp})", clock.format(cp));
        match verdict(&s.bricks, cp, &clock) {
            Verdict::Complete { active, last } => {
                let at = last.map(|t| format!(", last at {}", clock.format(t))).unwrap_or_default();
                writeln!(
                    std::io::stdout(),
                    "checkpoint {when} of session {} completed on {active} Active brick(s) of this node{at}",
                    a.session
                )
                .context("cannot write to stdout")?;
                return Ok(());
            }
            Verdict::Pending { waiting, ledger } => {
                if ledger && !told_ledger {
                    eprintln!(
                        "gsyncd: note: checkpoint {when} waits for failure-ledger items; they are retried with every batch"
                    );
                    told_ledger = true;
                }
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    let list: String = waiting.iter().map(|w| format!("\n  {w}")).collect();
                    let session = a.session.clone();
                    return Err(if ledger {
                        CheckpointError::FailuresPending { session, checkpoint: when, waiting: list }
                    } else {
                        CheckpointError::TimedOut {
                            session,
                            checkpoint: when,
                            secs: a.timeout.unwrap_or(0),
                            waiting: list,
                        }
                    }
                    .into());
                }
                let nap = deadline.map_or(POLL, |d| d.saturating_duration_since(now).min(POLL));
                std::thread::sleep(nap);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::status::row;
    use crate::proto::status::BrickStatus;

    fn utc() -> Clock {
        Clock::utc()
    }

    #[test]
    fn times() {
        let c = utc();
        assert_eq!(parse_time("", 5, &c).unwrap(), 5);
        assert_eq!(parse_time("now", 5, &c).unwrap(), 5);
        assert_eq!(parse_time("NOW", 5, &c).unwrap(), 5);
        assert_eq!(parse_time("1795469966", 5, &c).unwrap(), 1_795_469_966);
        assert_eq!(parse_time("2026-11-23 21:39:26", 5, &c).unwrap(), 1_795_469_966);
        let e = parse_time("yesterday", 5, &c).unwrap_err();
        assert_eq!(e.exit(), Exit::InvalidValue);
        assert!(e.to_string().contains("YYYY-MM-DD HH:MM:SS"), "{e}");
        assert!(parse_time("99999999999999999999999", 5, &c).is_err());
    }

    fn brick(path: &str, worker: &str, synced: u64, cp: u64, done: &str, failures: u64) -> BrickRow {
        let st = BrickStatus {
            worker_status: worker.into(),
            last_synced: synced,
            checkpoint_time: cp,
            checkpoint_completed: done.into(),
            checkpoint_completion_time: if done == "Yes" { synced } else { 0 },
            failures,
            last_error: if worker == "Faulty" { "boom".into() } else { String::new() },
            ..BrickStatus::default()
        };
        row("n", path.as_bytes(), None, st, "Started", 100, 200)
    }

    #[test]
    fn verdicts() {
        let c = utc();
        let done = brick("/a", "Active", 150, 100, "Yes", 0);
        let passive = brick("/p", "Passive", 0, 0, "N/A", 0);
        assert_eq!(
            verdict(&[done.clone(), passive.clone()], 100, &c),
            Verdict::Complete { active: 1, last: Some(150) }
        );
        assert_eq!(verdict(std::slice::from_ref(&passive), 100, &c), Verdict::Complete { active: 0, last: None });
        let behind = brick("/b", "Active", 90, 100, "No", 0);
        let Verdict::Pending { waiting, ledger } = verdict(&[done.clone(), behind], 100, &c) else { panic!() };
        assert!(!ledger);
        assert_eq!(waiting, ["/b: synced up to 1970-01-01 00:01:30"]);
        let held = brick("/h", "Active", 150, 100, "No", 3);
        let Verdict::Pending { waiting, ledger } = verdict(&[done, held.clone()], 100, &c) else { panic!() };
        assert!(ledger, "{waiting:?}");
        assert!(waiting[0].contains("3 failure-ledger item(s)"), "{waiting:?}");
        let faulty = brick("/f", "Faulty", 150, 100, "No", 0);
        let Verdict::Pending { waiting, ledger } = verdict(&[held, faulty], 100, &c) else { panic!() };
        assert!(!ledger);
        assert_eq!(waiting[1], "/f: Faulty: boom");
        // A worker that has not seen the new checkpoint yet.
        let old = brick("/o", "Active", 150, 50, "Yes", 0);
        assert!(matches!(verdict(&[old], 100, &c), Verdict::Pending { ledger: false, .. }));
        assert!(matches!(verdict(&[], 100, &c), Verdict::Pending { ledger: false, .. }));
    }
}
