//! `gsyncd status [SESSION] [--detail] [--json]`: one row per brick of this
//! node, as the reference's `gluster volume geo-replication status`, plus
//! what operators of the reference had to dig for (lag, the last error and
//! the phase it happened in, restarts, files and bytes synced).
//!
//! While a session runs (its pid file is locked), its monitor answers over
//! the status socket in the run directory; otherwise, or when the monitor
//! does not answer, the status files in the state directory tell, read
//! with the reference's rules (reference §5.6): a session that is not
//! running is Stopped whatever its files say, and the fields of a brick
//! that is not Active are N/A.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::cli::StatusArgs;
use crate::config::{self, Config, ConfigError, Value};
use crate::monitor::statusfile;
use crate::proto::status::{self, BrickStatus, LIVE_STATUS_VERSION, LiveStatus};
use crate::supervisor::pidfile;

/// The version of the `--json` document; raised only when a field changes
/// meaning or goes away (fields may be added in any version).
pub const JSON_VERSION: u32 = 1;

/// How long the monitor may take to answer.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(5);
/// More than any status the monitor could hold.
const MAX_ANSWER: u64 = 64 << 20;

/// Where a session's status came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The running monitor, over its status socket.
    Monitor,
    /// The status files.
    Files,
}

/// One session's status.
#[derive(Debug, Clone, Serialize)]
pub struct SessionStatus {
    pub session: String,
    pub primary: String,
    /// As configured, `[user@]host::volume`.
    pub secondary: String,
    pub secondary_user: Option<String>,
    pub secondary_host: Option<String>,
    pub secondary_volume: Option<String>,
    /// `Started`, `Stopped`, `Created` (never started), or another word
    /// found in monitor.status.
    pub state: String,
    /// Whether the session's pid file is locked.
    pub running: bool,
    pub source: Source,
    /// The configured checkpoint (None: none).
    pub checkpoint: Option<u64>,
    /// Why the status came from the files although the session runs.
    pub note: Option<String>,
    pub bricks: Vec<BrickRow>,
}

/// One brick's status, as shown. `None` is the reference's N/A.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrickRow {
    pub primary_node: String,
    /// The brick path (bytes that are not UTF-8 shown as U+FFFD).
    pub brick: String,
    /// The brick path as the status file names it (Python's quote_plus):
    /// exact for any bytes.
    pub brick_quoted: String,
    #[serde(skip)]
    pub path: Vec<u8>,
    /// Its replica/disperse set, when the monitor told.
    pub subvol: Option<u32>,
    pub secondary_node: Option<String>,
    pub status: String,
    pub crawl_status: Option<String>,
    pub last_synced: Option<u64>,
    pub last_synced_entry: Option<u64>,
    /// Now minus last_synced.
    pub lag_seconds: Option<u64>,
    /// Changelogs rolled over and not yet replayed, and their size.
    pub backlog_changelogs: Option<u64>,
    pub backlog_bytes: Option<u64>,
    /// Files and bytes synced per second over about the last minute.
    pub files_per_sec: Option<u64>,
    pub bytes_per_sec: Option<u64>,
    pub entry: Option<u64>,
    pub data: Option<u64>,
    pub meta: Option<u64>,
    /// Items in the failure ledger (shown in every state: the ledger is
    /// durable).
    pub failures: Option<u64>,
    pub checkpoint_time: Option<u64>,
    pub checkpoint_completed: Option<bool>,
    pub checkpoint_completion_time: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_time: Option<u64>,
    pub failed_phase: Option<String>,
    pub restarts: u64,
    pub files_synced: u64,
    pub bytes_synced: u64,
    pub entry_ops: u64,
    pub meta_ops: u64,
    pub feed_stalled_since: Option<u64>,
    /// When the status was last reported.
    pub updated: Option<u64>,
}

/// The whole `--json` document.
#[derive(Debug, Serialize)]
struct Document<'a> {
    version: u32,
    generated: u64,
    sessions: &'a [SessionStatus],
    errors: &'a [SessionError],
}

#[derive(Debug, Serialize)]
struct SessionError {
    session: String,
    error: String,
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn opt(cfg: &Config, name: &str) -> String {
    config::schema::spec(name).map(|s| cfg.expanded(s, &config::no_extra).to_string()).unwrap_or_default()
}

fn nonzero(v: u64) -> Option<u64> {
    (v != 0).then_some(v)
}

fn nonempty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// The session's state word from monitor.status and the pid lock.
pub fn session_state(monitor_status: Option<&str>, running: bool) -> String {
    match monitor_status {
        _ if running => "Started".to_owned(),
        None => "Created".to_owned(),
        Some("" | "Started" | "Paused") => "Stopped".to_owned(),
        Some(w) => w.to_owned(),
    }
}

/// A brick's row by the reference's rules: a session that is Created,
/// Paused or Stopped overrides the worker's status; the checkpoint is the
/// configured one (a brick that has not reported it yet has not completed
/// it); a brick that is not Active has no sync fields, and one neither
/// Active nor Passive no secondary node.
pub fn row(
    node: &str,
    path: &[u8],
    subvol: Option<u32>,
    st: BrickStatus,
    state: &str,
    checkpoint: u64,
    now: u64,
) -> BrickRow {
    let worker = match state {
        "Created" | "Paused" | "Stopped" => state.to_owned(),
        _ => st.worker_status.clone(),
    };
    let active = worker == status::ACTIVE;
    let (cp_done, cp_when) = if st.checkpoint_time == checkpoint {
        (st.checkpoint_completed.as_str(), st.checkpoint_completion_time)
    } else {
        (if checkpoint == 0 { status::NA } else { "No" }, 0)
    };
    let sync = |v: u64| active.then_some(v);
    BrickRow {
        primary_node: node.to_owned(),
        brick: String::from_utf8_lossy(path).into_owned(),
        brick_quoted: statusfile::quote_plus(path),
        path: path.to_vec(),
        subvol,
        secondary_node: (active || worker == status::PASSIVE)
            .then_some(st.secondary_node)
            .filter(|n| n != status::NA && !n.is_empty()),
        crawl_status: active.then_some(st.crawl_status).filter(|c| c != status::NA),
        last_synced: sync(st.last_synced).and_then(nonzero),
        last_synced_entry: sync(st.last_synced_entry).and_then(nonzero),
        lag_seconds: sync(st.last_synced).and_then(nonzero).map(|t| now.saturating_sub(t)),
        backlog_changelogs: sync(st.backlog),
        backlog_bytes: sync(st.backlog_bytes),
        files_per_sec: sync(st.files_per_sec),
        bytes_per_sec: sync(st.bytes_per_sec),
        entry: sync(st.entry),
        data: sync(st.data),
        meta: sync(st.meta),
        failures: Some(st.failures),
        checkpoint_time: sync(checkpoint).and_then(nonzero),
        checkpoint_completed: if active && checkpoint != 0 { Some(cp_done == "Yes") } else { None },
        checkpoint_completion_time: if active && cp_done == "Yes" { nonzero(cp_when) } else { None },
        last_error: nonempty(st.last_error),
        last_error_time: nonzero(st.last_error_time),
        failed_phase: nonempty(st.failed_phase),
        restarts: st.restarts,
        files_synced: st.files_synced,
        bytes_synced: st.bytes_synced,
        entry_ops: st.entry_ops,
        meta_ops: st.meta_ops,
        feed_stalled_since: nonzero(st.feed_stalled_since),
        updated: nonzero(st.updated),
        status: worker,
    }
}

/// Asks a running monitor for its status.
fn ask_monitor(path: &Path) -> Result<LiveStatus, String> {
    let s = UnixStream::connect(path).map_err(|e| format!("cannot connect to {}: {e}", path.display()))?;
    s.set_read_timeout(Some(SOCKET_TIMEOUT)).map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    s.take(MAX_ANSWER).read_to_end(&mut body).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let live: LiveStatus =
        serde_json::from_slice(&body).map_err(|e| format!("{} answered something else: {e}", path.display()))?;
    if live.version != LIVE_STATUS_VERSION {
        return Err(format!(
            "{} speaks status version {}, this gsyncd {LIVE_STATUS_VERSION} (restart the session after an upgrade)",
            path.display(),
            live.version
        ));
    }
    Ok(live)
}

/// The bricks of the state directory's status files, sorted by path.
fn brick_files(state_dir: &Path) -> Vec<(Vec<u8>, BrickStatus)> {
    let Ok(rd) = std::fs::read_dir(state_dir) else { return Vec::new() };
    let mut out: Vec<(Vec<u8>, BrickStatus)> = rd
        .flatten()
        .filter_map(|e| {
            let brick = statusfile::brick_of(&e.file_name())?;
            let st = statusfile::read_brick(state_dir, &brick)?;
            Some((brick, st))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// This node's name, as the PRIMARY NODE column shows it.
pub fn node_name() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".to_owned())
}

/// A session's status, from its monitor when it runs, from its files
/// otherwise.
pub fn collect(config_dir: &Path, session: &str) -> Result<SessionStatus, ConfigError> {
    let cfg = Config::load(config_dir, session)?;
    let url = cfg.secondary_url();
    let checkpoint = configured_checkpoint(&cfg);
    let running = pidfile::is_locked(Path::new(&opt(&cfg, "pid-file")));
    let node = node_name();
    let now = unix_now();
    let mut note = None;
    let live = if running {
        match ask_monitor(&status::status_socket(Path::new(&opt(&cfg, "run-dir")))) {
            Ok(l) => Some(l),
            Err(e) => {
                note = Some(format!("the monitor did not answer ({e}); showing the status files"));
                None
            }
        }
    } else {
        None
    };
    let (state, source, bricks) = match live {
        Some(l) => {
            let state = session_state(Some(&l.monitor_status), true);
            let rows = l
                .bricks
                .into_iter()
                .map(|b| row(&node, &b.path, b.subvol, b.status, &state, checkpoint, now))
                .collect();
            (state, Source::Monitor, rows)
        }
        None => {
            let word = statusfile::read_monitor(Path::new(&opt(&cfg, "state-file")));
            let state = session_state(word.as_deref(), running);
            // Running, but the monitor has not started yet: its files are
            // the last run's.
            let starting = running && word.as_deref() != Some("Started");
            let rows = brick_files(Path::new(&opt(&cfg, "state-dir")))
                .into_iter()
                .map(|(path, mut st)| {
                    if starting {
                        st.worker_status = status::INITIALIZING.into();
                    }
                    row(&node, &path, None, st, &state, checkpoint, now)
                })
                .collect();
            (state, Source::Files, rows)
        }
    };
    Ok(SessionStatus {
        session: session.to_owned(),
        primary: opt(&cfg, "primary"),
        secondary: opt(&cfg, "secondary"),
        secondary_user: url.as_ref().map(|u| u.user_or_root().to_owned()),
        secondary_host: url.as_ref().map(|u| u.host.clone()),
        secondary_volume: url.map(|u| u.volume),
        state,
        running,
        source,
        checkpoint: nonzero(checkpoint),
        note,
        bricks,
    })
}

/// The sessions of the config directory, by name.
pub fn sessions(config_dir: &Path) -> Result<Vec<String>, ConfigError> {
    let rd = match std::fs::read_dir(config_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(ConfigError::Io { op: "cannot read the config directory", path: config_dir.into(), source: e });
        }
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let session = name.strip_suffix(".toml")?;
            config::check_session_name(session).ok()?;
            Some(session.to_owned())
        })
        .collect();
    names.sort();
    Ok(names)
}

/// Local time as the reference prints it.
pub struct Clock(jiff::tz::TimeZone);

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

impl Clock {
    pub fn local() -> Clock {
        Clock(jiff::tz::TimeZone::system())
    }

    pub fn utc() -> Clock {
        Clock(jiff::tz::TimeZone::UTC)
    }

    /// `YYYY-MM-DD HH:MM:SS` in this clock's zone.
    pub fn format(&self, t: u64) -> String {
        i64::try_from(t)
            .ok()
            .and_then(|s| jiff::Timestamp::from_second(s).ok())
            .map(|ts| ts.to_zoned_datetime(self.0.clone()).strftime("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|| t.to_string())
    }

    /// Unix seconds of a `YYYY-MM-DD HH:MM:SS` in this clock's zone (a time
    /// that a DST change skips or repeats is taken as the reference's
    /// mktime takes it: the earlier offset).
    pub fn parse(&self, s: &str) -> Option<u64> {
        let dt = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", s.trim()).ok()?;
        let z = dt.to_zoned_datetime(self.0.clone()).ok()?;
        u64::try_from(z.timestamp().as_second()).ok()
    }
}

fn or_na<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| status::NA.to_owned(), |v| v.to_string())
}

/// `42s`, `5m 07s`, `3h 05m`, `2d 04h`.
pub fn duration(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// `512 B`, `1.5 KiB`, ...
pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{b} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// The table, as `gluster volume geo-replication status [detail]` prints
/// it: a blank line, the header, a rule, one row per brick.
pub fn table(sessions: &[SessionStatus], detail: bool, with_session: bool, clock: &Clock) -> String {
    let mut header: Vec<&str> = Vec::new();
    if with_session {
        header.push("SESSION");
    }
    header.extend([
        "PRIMARY NODE",
        "PRIMARY VOL",
        "PRIMARY BRICK",
        "SECONDARY USER",
        "SECONDARY",
        "SECONDARY NODE",
        "STATUS",
        "CRAWL STATUS",
        "LAST_SYNCED",
    ]);
    if detail {
        header.extend([
            "ENTRY",
            "DATA",
            "META",
            "FAILURES",
            "CHECKPOINT TIME",
            "CHECKPOINT COMPLETED",
            "CHECKPOINT COMPLETION TIME",
            "LAG",
            "BACKLOG",
            "RATE",
            "RESTARTS",
            "FILES SYNCED",
            "BYTES SYNCED",
        ]);
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    let time = |t: Option<u64>| t.map_or_else(|| status::NA.to_owned(), |t| clock.format(t));
    for s in sessions {
        let lead = |node: &str, brick: &str| {
            let mut r = Vec::new();
            if with_session {
                r.push(s.session.clone());
            }
            r.extend([
                node.to_owned(),
                s.primary.clone(),
                brick.to_owned(),
                or_na(s.secondary_user.as_ref()),
                if s.secondary.is_empty() { status::NA.to_owned() } else { s.secondary.clone() },
            ]);
            r
        };
        if s.bricks.is_empty() {
            let mut r = lead(&node_name(), status::NA);
            r.extend([status::NA.to_owned(), s.state.clone(), status::NA.to_owned(), status::NA.to_owned()]);
            if detail {
                r.extend(std::iter::repeat_n(status::NA.to_owned(), 13));
            }
            rows.push(r);
        }
        for b in &s.bricks {
            let mut r = lead(&b.primary_node, &b.brick);
            r.extend([
                or_na(b.secondary_node.as_ref()),
                b.status.clone(),
                or_na(b.crawl_status.as_ref()),
                time(b.last_synced),
            ]);
            if detail {
                r.extend([
                    or_na(b.entry),
                    or_na(b.data),
                    or_na(b.meta),
                    or_na(b.failures),
                    time(b.checkpoint_time),
                    or_na(b.checkpoint_completed.map(|c| if c { "Yes" } else { "No" })),
                    time(b.checkpoint_completion_time),
                    or_na(b.lag_seconds.map(duration)),
                    match (b.backlog_changelogs, b.backlog_bytes) {
                        (Some(n), Some(by)) => format!("{n} ({})", bytes(by)),
                        _ => status::NA.to_owned(),
                    },
                    match (b.files_per_sec, b.bytes_per_sec) {
                        (Some(f), Some(by)) => format!("{f} files/s, {}/s", bytes(by)),
                        _ => status::NA.to_owned(),
                    },
                    b.restarts.to_string(),
                    b.files_synced.to_string(),
                    bytes(b.bytes_synced),
                ]);
            }
            rows.push(r);
        }
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let mut l = String::new();
        for (i, c) in cells.enumerate() {
            if i > 0 {
                l.push_str("    ");
            }
            l.push_str(c);
            let pad = widths[i].saturating_sub(c.chars().count());
            l.extend(std::iter::repeat_n(' ', pad));
        }
        l.trim_end().to_owned()
    };
    let mut out = String::from("\n");
    let head = line(&mut header.iter().copied());
    out.push_str(&head);
    out.push('\n');
    out.push_str(&"-".repeat(head.chars().count()));
    out.push('\n');
    for r in &rows {
        out.push_str(&line(&mut r.iter().map(String::as_str)));
        out.push('\n');
    }
    out
}

/// The last errors under the table: every brick's with `detail`, a Faulty
/// or Retrying brick's always.
pub fn errors(sessions: &[SessionStatus], detail: bool, clock: &Clock) -> String {
    let mut out = String::new();
    for s in sessions {
        for b in &s.bricks {
            let Some(e) = &b.last_error else { continue };
            if !detail && b.status != status::FAULTY && b.status != status::RETRYING {
                continue;
            }
            if out.is_empty() {
                out.push_str("\nLast errors:\n");
            }
            let when = b.last_error_time.map_or_else(|| "at an unknown time".to_owned(), |t| clock.format(t));
            let phase = b.failed_phase.as_ref().map(|p| format!(", while {p}")).unwrap_or_default();
            out.push_str(&format!("  {}:{} ({when}{phase}): {e}\n", s.session, b.brick));
        }
    }
    out
}

pub fn run(config_dir: &Path, a: &StatusArgs) -> anyhow::Result<()> {
    let (names, all) = match &a.session {
        Some(s) => (vec![s.clone()], false),
        None => (sessions(config_dir)?, true),
    };
    let mut found = Vec::new();
    let mut failed: Vec<(SessionError, ConfigError)> = Vec::new();
    for n in &names {
        match collect(config_dir, n) {
            Ok(s) => found.push(s),
            Err(e) if !all => return Err(e.into()),
            Err(e) => failed.push((SessionError { session: n.clone(), error: e.to_string() }, e)),
        }
    }
    let out = std::io::stdout();
    let mut out = out.lock();
    if a.json {
        let errors: Vec<SessionError> =
            failed.iter().map(|(s, _)| SessionError { session: s.session.clone(), error: s.error.clone() }).collect();
        let doc = Document { version: JSON_VERSION, generated: unix_now(), sessions: &found, errors: &errors };
        let text = serde_json::to_string_pretty(&doc).context("cannot encode JSON")?;
        writeln!(out, "{text}").context("cannot write to stdout")?;
    } else {
        for s in &found {
            if let Some(n) = &s.note {
                eprintln!("gsyncd: note: session {}: {n}", s.session);
            }
        }
        if found.is_empty() && failed.is_empty() {
            eprintln!("gsyncd: no sessions in {}", config_dir.display());
        } else if !found.is_empty() {
            let clock = Clock::local();
            write!(out, "{}{}", table(&found, a.detail, all, &clock), errors(&found, a.detail, &clock))
                .context("cannot write to stdout")?;
        }
    }
    drop(out);
    match failed.into_iter().next() {
        None => Ok(()),
        Some((s, e)) => Err(anyhow::Error::from(e).context(format!("session {} (the others are shown)", s.session))),
    }
}

/// The configured checkpoint of a session (0: none).
pub fn configured_checkpoint(cfg: &Config) -> u64 {
    match config::schema::spec("checkpoint").map(|s| cfg.raw(s)) {
        Some(Value::Int(v)) => u64::try_from(v).unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active() -> BrickStatus {
        BrickStatus {
            worker_status: "Active".into(),
            secondary_node: "h2".into(),
            crawl_status: status::CHANGELOG.into(),
            last_synced: 1_000,
            last_synced_entry: 1_000,
            checkpoint_time: 900,
            checkpoint_completed: "Yes".into(),
            checkpoint_completion_time: 950,
            failures: 2,
            ..BrickStatus::default()
        }
    }

    #[test]
    fn states_follow_the_pid_lock() {
        assert_eq!(session_state(Some("Started"), true), "Started");
        assert_eq!(session_state(Some("Started"), false), "Stopped");
        assert_eq!(session_state(Some("Paused"), false), "Stopped");
        assert_eq!(session_state(Some(""), false), "Stopped");
        assert_eq!(session_state(None, false), "Created");
        assert_eq!(session_state(Some("Config Corrupted"), false), "Config Corrupted");
    }

    #[test]
    fn an_active_brick_shows_everything() {
        let r = row("n1", b"/b 1", Some(0), active(), "Started", 900, 1_030);
        assert_eq!(r.status, "Active");
        assert_eq!(r.brick_quoted, "%2Fb+1");
        assert_eq!(r.secondary_node.as_deref(), Some("h2"));
        assert_eq!(r.crawl_status.as_deref(), Some("Changelog Crawl"));
        assert_eq!((r.last_synced, r.lag_seconds), (Some(1_000), Some(30)));
        assert_eq!(
            (r.checkpoint_time, r.checkpoint_completed, r.checkpoint_completion_time),
            (Some(900), Some(true), Some(950))
        );
        assert_eq!(r.failures, Some(2));
    }

    #[test]
    fn a_new_checkpoint_is_not_complete_until_the_worker_says_so() {
        let r = row("n1", b"/b", None, active(), "Started", 990, 1_030);
        assert_eq!(
            (r.checkpoint_time, r.checkpoint_completed, r.checkpoint_completion_time),
            (Some(990), Some(false), None)
        );
        let r = row("n1", b"/b", None, active(), "Started", 0, 1_030);
        assert_eq!((r.checkpoint_time, r.checkpoint_completed), (None, None));
    }

    #[test]
    fn a_stopped_session_has_no_sync_fields() {
        let r = row("n1", b"/b", None, active(), "Stopped", 900, 1_030);
        assert_eq!(r.status, "Stopped");
        assert_eq!((r.secondary_node, r.crawl_status, r.last_synced, r.lag_seconds), (None, None, None, None));
        assert_eq!((r.entry, r.checkpoint_time, r.checkpoint_completed), (None, None, None));
        assert_eq!(r.failures, Some(2), "the ledger is durable");
        let passive = BrickStatus { worker_status: "Passive".into(), ..active() };
        let r = row("n1", b"/b", None, passive, "Started", 900, 1_030);
        assert_eq!((r.secondary_node.as_deref(), r.last_synced), (Some("h2"), None));
        let faulty = BrickStatus { worker_status: "Faulty".into(), ..active() };
        assert_eq!(row("n1", b"/b", None, faulty, "Started", 900, 1_030).secondary_node, None);
    }

    #[test]
    fn clock_round_trips_local_times() {
        let c = Clock::utc();
        assert_eq!(c.format(1_795_469_966), "2026-11-23 21:39:26");
        assert_eq!(c.parse("2026-11-23 21:39:26"), Some(1_795_469_966));
        assert_eq!(c.parse("2026-11-23"), None);
        assert_eq!(c.parse("23/11/2026 18:59:26"), None);
        let paris = Clock(jiff::tz::TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap());
        assert_eq!(paris.format(1_795_469_966), "2026-11-23 22:39:26");
        assert_eq!(paris.parse("2026-11-23 22:39:26"), Some(1_795_469_966));
    }

    #[test]
    fn human_units() {
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(307), "5m 07s");
        assert_eq!(duration(3 * 3600 + 300), "3h 05m");
        assert_eq!(duration(2 * 86400 + 4 * 3600), "2d 04h");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 30), "5.0 GiB");
    }

    #[test]
    fn table_has_the_reference_columns() {
        let s = SessionStatus {
            session: "s".into(),
            primary: "gv0".into(),
            secondary: "geo@h2::sv".into(),
            secondary_user: Some("geo".into()),
            secondary_host: Some("h2".into()),
            secondary_volume: Some("sv".into()),
            state: "Started".into(),
            running: true,
            source: Source::Monitor,
            checkpoint: Some(900),
            note: None,
            bricks: vec![row("n1", b"/b/1", Some(0), active(), "Started", 900, 1_030)],
        };
        let c = Clock::utc();
        let t = table(std::slice::from_ref(&s), false, false, &c);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "");
        assert!(lines[1].starts_with("PRIMARY NODE    PRIMARY VOL    PRIMARY BRICK    SECONDARY USER"), "{t}");
        assert!(lines[1].ends_with("STATUS    CRAWL STATUS       LAST_SYNCED"), "{t}");
        assert!(lines[2].chars().all(|c| c == '-'));
        let cells: Vec<&str> = lines[3].split("    ").map(str::trim).filter(|c| !c.is_empty()).collect();
        assert_eq!(
            cells,
            ["n1", "gv0", "/b/1", "geo", "geo@h2::sv", "h2", "Active", "Changelog Crawl", "1970-01-01 00:16:40"]
        );
        let d = table(std::slice::from_ref(&s), true, true, &c);
        assert!(d.lines().nth(1).unwrap().starts_with("SESSION    PRIMARY NODE"), "{d}");
        let header: Vec<&str> =
            d.lines().nth(1).unwrap().split("    ").map(str::trim).filter(|c| !c.is_empty()).collect();
        assert!(
            header.ends_with(&[
                "CHECKPOINT COMPLETION TIME",
                "LAG",
                "BACKLOG",
                "RATE",
                "RESTARTS",
                "FILES SYNCED",
                "BYTES SYNCED"
            ]),
            "{d}"
        );
        assert!(d.contains("0 (0 B)") && d.contains("0 files/s, 0 B/s"), "{d}");
        assert!(d.contains("Yes"), "{d}");
        let mut faulty = s.clone();
        faulty.bricks[0].status = "Faulty".into();
        faulty.bricks[0].last_error = Some("worker exited with status 1: boom".into());
        faulty.bricks[0].last_error_time = Some(1_000);
        faulty.bricks[0].failed_phase = Some("mounting the primary".into());
        assert_eq!(
            errors(&[faulty], false, &c),
            "\nLast errors:\n  s:/b/1 (1970-01-01 00:16:40, while mounting the primary): worker exited with status 1: boom\n"
        );
        assert_eq!(errors(&[s], false, &c), "");
    }
}
