//! The sync worker of one primary brick.
//!
//! This version replicates one brick in the simplest correct way, as the
//! first step of the replication issue:
//!
//! 1. mounts the primary volume with aux-gfid in a private mount namespace
//!    (guarded: nothing outlives the process) and works inside it;
//! 2. starts `gsyncd secondary` over ssh (control socket under the run
//!    directory), keeps it alive with the native volume mark;
//! 3. without an stime on the brick root, crawls the brick (entries by GFID,
//!    then metadata, then data) and sets stime to the crawl's start;
//! 4. asks its agent for every changelog after the stime and replays each
//!    batch: entry ops, metadata, data (rsync or tar, checked over RPC), then
//!    stime/entry_stime on the brick root exactly as the reference writes
//!    them, then acknowledges the batch to the agent.
//!
//! Active/Passive: per replica set, the first brick (in volume order) that
//! `gluster volume status` shows online syncs; the others are Passive, copy
//! the cluster's stime onto their brick, and take over when the Active
//! brick goes down (checked every `replica-failover-interval`, but not more
//! often than every 10 s: `gluster volume status` takes glusterd's volume
//! lock).
//! The rule is per brick, not per node as the reference's node-uuid rule.
//!
//! Entry failures go through gfid-conflict resolution with the primary as
//! the truth ([`conflicts`]).
//!
//! What still fails (entry ops no fix resolves, data that does not arrive
//! after `max-rsync-retries`) goes into a durable failure ledger under the
//! state directory before stime moves, and is retried with every batch
//! ([`ledger`]).
//!
//! An Active worker gives way again when a brick before it in its set is
//! back online (checked as often).
//!
//! With `use-meta-volume`, the worker holding the set's lock on the shared
//! meta volume syncs it (the reference's lock file), for as long as its own
//! brick is online; it releases the lock when its brick goes offline, and
//! a Passive worker of the set takes it within the check interval.
//!
//! Crawls (first sync, journal gaps, xsync) are in [`crawl`]; status goes
//! to the supervisor over ctl, which relays it to the monitor's status
//! files.

pub mod conflicts;
mod crawl;
pub mod data;
pub mod elide;
pub mod ledger;
pub mod live;
pub mod primary;
pub mod settings;
pub mod transport;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tracing::{debug, error, info, warn};

use crate::cli::WorkerArgs;
use crate::config::Config;
use crate::gluster::auxmount::{self, MountOptions, Mounter};
use crate::gluster::changelog::{Entry, Record};
use crate::gluster::cli as gcli;
use crate::gluster::fop::Fop;
use crate::gluster::uuid::{Gfid, Uuid};
use crate::gluster::xattr::{XTime, keys};
use crate::proto::Role;
use crate::proto::changelog::{Changelog, HistoryAnswer, MAX_FEED_FRAME, ToAgent, ToWorker};
use crate::proto::ctl::{Link, ToSupervisor};
use crate::proto::rpc::{Client, EntryFailure, EntryOp, MetaOp, Op, Stat, Time, Xattrs, replicated_xattr};
use crate::proto::status::{self, BrickStatus};
use settings::Settings;

/// How often a Passive worker asks glusterd whether to take over (at least).
const PASSIVE_CHECK: std::time::Duration = std::time::Duration::from_secs(10);
/// The layout is asked of glusterd this often even when its volume file
/// did not change.
const LAYOUT_ASK_ANYWAY: std::time::Duration = std::time::Duration::from_secs(300);
/// Entry operations of a batch go in calls of at most this many; the data
/// of the files they are done with starts meanwhile.
const ENTRY_CHUNK: usize = 512;
/// A `volume status` answer another worker of this node got is taken
/// while younger than this.
const STATUS_FRESH: std::time::Duration = std::time::Duration::from_secs(5);
/// How often a brick alone in its replica set asks whether it is online.
const ALONE_STATUS_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn gfid_path(g: &Gfid) -> Vec<u8> {
    format!(".gfid/{g}").into_bytes()
}

fn entry_path(e: &Entry) -> Vec<u8> {
    [b".gfid/".as_slice(), &e.parent.canonical(), b"/", &e.name].concat()
}

fn os(p: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(p))
}

fn stat_of(m: &std::fs::Metadata) -> Stat {
    let t = |sec: i64, nsec: i64| Time { sec, nsec: u32::try_from(nsec).unwrap_or(0) };
    Stat {
        uid: m.uid(),
        gid: m.gid(),
        mode: m.mode(),
        atime: t(m.atime(), m.atime_nsec()),
        mtime: t(m.mtime(), m.mtime_nsec()),
    }
}

/// The primary's view of an inode now (through the aux mount, our cwd).
fn primary_stat(g: &Gfid) -> primary::Res<Option<Stat>> {
    Ok(primary::lstat(&gfid_path(g))?.map(|m| stat_of(&m)))
}

/// The primary's xattrs of the replicated namespaces (none for a symlink,
/// which cannot carry them); `None` when the inode is gone. `go` may be a
/// `/proc/self/fd/<n>` name (followed, as every other path here: `m`
/// says it is no symlink).
fn primary_xattrs(go: &[u8], m: &std::fs::Metadata, user: bool, acls: bool) -> primary::Res<Option<Xattrs>> {
    if m.file_type().is_symlink() {
        return Ok(Some(Xattrs { user, acls, values: Vec::new() }));
    }
    let p = os(go);
    let fail = |e: std::io::Error| primary::PrimaryError { path: go.escape_ascii().to_string(), source: e };
    let names = match xattr::list_deref(p) {
        Ok(n) => n,
        Err(e) if primary::gone(&e) => return Ok(None),
        Err(e) => return Err(fail(e)),
    };
    let mut values = Vec::new();
    for n in names.filter(|n| replicated_xattr(n.as_bytes(), user, acls)) {
        match xattr::get_deref(p, &n) {
            Ok(Some(v)) => values.push((n.as_bytes().to_vec(), v)),
            Ok(None) => {}
            Err(e) if primary::gone(&e) => return Ok(None),
            Err(e) => return Err(fail(e)),
        }
    }
    Ok(Some(Xattrs { user, acls, values }))
}

fn primary_link(g: &Gfid) -> primary::Res<Option<Vec<u8>>> {
    primary::readlink(&gfid_path(g))
}

/// What the data engines did with a set of files.
#[derive(Debug, Default)]
struct DataSent {
    /// Sent inline, with their sizes.
    inlined: Vec<(Gfid, u64)>,
    /// Sent by the sync method, with their sizes.
    files: Vec<Gfid>,
    sizes: BTreeMap<Gfid, u64>,
    /// Gone from the primary, or no regular file there.
    gone: Vec<Gfid>,
    /// Sent by the sync method but not arrived.
    unsynced: Vec<Gfid>,
}

/// Sends the data of `all`: inline what fits, the rest by the sync method.
/// Touches no worker state, so it can run beside the entry phase.
fn send_data(s: &Settings, client: &Client, pid: u32, all: Vec<Gfid>) -> anyhow::Result<DataSent> {
    let (inlined, candidates, mut gone) = if s.inline_max > 0 {
        let r = data::send_inline(s, client, &all).context("data (inline)")?;
        (r.done, r.rest, r.gone)
    } else {
        (Vec::new(), all, Vec::new())
    };
    let mut sizes: BTreeMap<Gfid, u64> = BTreeMap::new();
    let mut files = Vec::new();
    for g in candidates {
        match primary::lstat(&gfid_path(&g))? {
            Some(m) if m.is_file() => {
                sizes.insert(g, m.size());
                files.push(g);
            }
            _ => gone.push(g),
        }
    }
    let unsynced = if files.is_empty() { Vec::new() } else { data::sync(s, client, pid, &files).context("data")? };
    Ok(DataSent { inlined, files, sizes, gone, unsynced })
}

/// What a batch has to do.
#[derive(Debug, Default)]
struct Work {
    entries: Vec<EntryOp>,
    metas: BTreeSet<Gfid>,
    datas: BTreeSet<Gfid>,
}

impl Work {
    /// Adds a changelog's records (the reference's `process_change`).
    fn add(&mut self, records: &[Record], s: &Settings) -> primary::Res<()> {
        for r in records {
            match r {
                Record::New { gfid, fop, mode, uid, gid, entry } => {
                    let op = match *fop {
                        Fop::MKDIR => Op::Mkdir,
                        Fop::MKNOD => Op::Mknod,
                        _ => Op::Create,
                    };
                    let mut e = EntryOp::new(op, *gfid, entry_path(entry));
                    (e.mode, e.uid, e.gid) = (*mode, *uid, *gid);
                    self.entries.push(e);
                }
                Record::Delete { gfid, fop, entry, .. } => {
                    if !s.ignore_deletes {
                        let op = if *fop == Fop::RMDIR { Op::Rmdir } else { Op::Unlink };
                        self.entries.push(EntryOp::new(op, *gfid, entry_path(entry)));
                    }
                }
                Record::Link { gfid, fop, entry } => {
                    let op = if *fop == Fop::SYMLINK { Op::Symlink } else { Op::Link };
                    let path = entry_path(entry);
                    let mut e = EntryOp::new(op, *gfid, path.clone());
                    e.stat = primary_stat(gfid)?;
                    e.link = match e.stat {
                        Some(st) if st.mode & 0o170_000 == 0o120_000 => primary_link(gfid)?,
                        _ => None,
                    };
                    // As the reference: a symlink is created only while its
                    // name still holds it on the primary; if it was renamed or
                    // removed since, its later RENAME or UNLINK carries it.
                    if op == Op::Symlink && (e.stat.is_none() || primary::readlink(&path)?.is_none()) {
                        debug!(gfid = %gfid, "symlink moved or removed since; its later record carries it");
                        continue;
                    }
                    self.entries.push(e);
                }
                Record::Rename { gfid, from, to } => {
                    let mut e = EntryOp::new(Op::Rename, *gfid, entry_path(from));
                    e.entry1 = Some(entry_path(to));
                    e.stat = primary_stat(gfid)?;
                    e.link = match e.stat {
                        Some(st) if st.mode & 0o170_000 == 0o120_000 => primary_link(gfid)?,
                        _ => None,
                    };
                    self.entries.push(e);
                }
                Record::Data { gfid } => {
                    self.datas.insert(*gfid);
                }
                Record::Meta { gfid, fop } => match *fop {
                    Fop::SETATTR | Fop::FSETATTR => {
                        self.metas.insert(*gfid);
                    }
                    // Xattrs (and ACLs) travel with the metadata, for every
                    // kind of inode and both engines.
                    Fop::SETXATTR | Fop::FSETXATTR | Fop::REMOVEXATTR | Fop::FREMOVEXATTR
                        if s.sync_xattrs || s.sync_acls =>
                    {
                        self.metas.insert(*gfid);
                    }
                    Fop::XATTROP | Fop::FXATTROP if s.sync_xattrs => {
                        self.datas.insert(*gfid);
                    }
                    _ => {}
                },
            }
        }
        Ok(())
    }
}

/// A worker's working state.
struct Replicator<'a> {
    s: &'a Settings,
    client: &'a Client,
    pid: u32,
    /// The primary's replica sets (their workers replay concurrently).
    dist: u32,
    prefix: String,
    link: &'a Link,
    ledger: RefCell<ledger::Ledger>,
    /// The stime when the current batch started (0 in a crawl): failures
    /// of the batch were changed after it.
    since: Cell<u64>,
    /// What the monitor was last told, and what is true now.
    sent: RefCell<Option<BrickStatus>>,
    status: RefCell<BrickStatus>,
    checkpoint: RefCell<Checkpoint>,
    /// (when, files synced, bytes synced) over about the last minute, for
    /// the rates in status.
    rates: RefCell<std::collections::VecDeque<(std::time::Instant, u64, u64)>>,
    /// The marker's xtime key of the primary volume (for crawls since a
    /// time).
    xtime_key: String,
    /// The changelog being written (`live-changelog`).
    live: RefCell<live::Live>,
}

/// The `checkpoint` option, read again when the session file changes (no
/// restart needed to set one).
struct Checkpoint {
    file: PathBuf,
    config_dir: PathBuf,
    session: String,
    mtime: Option<SystemTime>,
    value: u64,
}

impl Checkpoint {
    fn current(&mut self) -> u64 {
        let m = std::fs::metadata(&self.file).and_then(|m| m.modified()).ok();
        if m != self.mtime {
            self.mtime = m;
            if let Ok(cfg) = Config::load(&self.config_dir, &self.session)
                && let Some(spec) = crate::config::schema::spec("checkpoint")
            {
                let v = cfg.raw(spec).as_int().and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
                if v != self.value {
                    info!(checkpoint = v, "checkpoint set");
                }
                self.value = v;
            }
        }
        self.value
    }
}

impl Replicator<'_> {
    /// Tells the supervisor (and so the monitor's status file) when the
    /// status changed.
    fn report(&self) {
        let now = self.status.borrow().clone();
        let mut sent = self.sent.borrow_mut();
        if sent.as_ref() != Some(&now) {
            if let Err(e) = self.link.send(&ToSupervisor::Status(Box::new(now.clone()))) {
                debug!("cannot send the status: {e}");
            }
            *sent = Some(now);
        }
    }

    fn set_state(&self, worker: &str, crawl: &str) {
        {
            let mut st = self.status.borrow_mut();
            worker.clone_into(&mut st.worker_status);
            crawl.clone_into(&mut st.crawl_status);
        }
        self.progress();
    }

    /// Brings last-synced, failures and the checkpoint up to date, and
    /// reports.
    fn progress(&self) {
        let stime = self.stime().unwrap_or(0);
        let entry_stime = xattr::get(&self.s.brick, keys::entry_stime(&self.prefix))
            .ok()
            .flatten()
            .and_then(|v| XTime::decode(&v).ok())
            .map_or(0, |t| u64::from(t.sec));
        let cp = self.checkpoint.borrow_mut().current();
        let (items, oldest) = {
            let l = self.ledger.borrow();
            (l.len() as u64, l.oldest_change())
        };
        {
            let mut st = self.status.borrow_mut();
            let mut r = self.rates.borrow_mut();
            let t = std::time::Instant::now();
            r.push_back((t, st.files_synced, st.bytes_synced));
            while r.len() > 2 && r.get(1).is_some_and(|s| t.duration_since(s.0) >= std::time::Duration::from_secs(60)) {
                r.pop_front();
            }
            if let Some(&(t0, f0, b0)) = r.front() {
                let secs = t.duration_since(t0).as_secs_f64();
                if secs >= 1.0 {
                    st.files_per_sec = (st.files_synced.saturating_sub(f0) as f64 / secs).round() as u64;
                    st.bytes_per_sec = (st.bytes_synced.saturating_sub(b0) as f64 / secs).round() as u64;
                }
            }
            drop(r);
            st.last_synced = stime;
            st.last_synced_entry = entry_stime;
            st.failures = items;
            let state = status::checkpoint_state(cp, stime, oldest);
            if cp != st.checkpoint_time || state != st.checkpoint_completed {
                if state == "Yes" {
                    st.checkpoint_completion_time = now();
                    info!(checkpoint = cp, stime, "checkpoint completed");
                } else {
                    st.checkpoint_completion_time = 0;
                    if cp != 0 && stime >= cp {
                        info!(checkpoint = cp, items, "checkpoint waits for failure ledger items older than it");
                    }
                }
            }
            st.checkpoint_time = cp;
            state.clone_into(&mut st.checkpoint_completed);
        }
        self.report();
    }

    fn in_flight(&self, entry: usize, meta: usize, data: usize) {
        {
            let mut st = self.status.borrow_mut();
            (st.entry, st.meta, st.data) = (entry as u64, meta as u64, data as u64);
        }
        self.report();
    }

    /// Sends entry ops to the secondary and resolves what fails there
    /// with the primary as the truth (marking ops to skip in `entries`);
    /// returns the failures that remain.
    fn replay_entries(&self, entries: &mut [EntryOp]) -> anyhow::Result<Vec<EntryFailure>> {
        let failures = self.client.entry_ops(entries.to_vec()).context("entry_ops")?;
        if failures.is_empty() {
            return Ok(failures);
        }
        info!(failures = failures.len(), "entry ops failed on the secondary; resolving with the primary as the truth");
        conflicts::resolve(self.client, &self.s.brick, entries, failures).context("entry_ops")
    }

    fn entry_phase(&self, mut entries: Vec<EntryOp>) -> anyhow::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let n = entries.len();
        if self.dist > 1 {
            conflicts::settle_renames(&mut entries)?;
        }
        let failures = self.replay_entries(&mut entries)?;
        let mut superseded = Vec::new();
        let mut l = self.ledger.borrow_mut();
        for f in &failures {
            if !conflicts::still_relevant(&f.entry)? {
                debug!(op = %f.entry.op, gfid = %f.entry.gfid, "failed op superseded on the primary since; dropped");
                superseded.push(&f.entry);
                continue;
            }
            warn!(
                op = %f.entry.op, gfid = %f.entry.gfid, errno = f.errno,
                entry = %String::from_utf8_lossy(&f.entry.entry), info = ?f.info,
                "entry failed on the secondary and could not be fixed; recorded in the failure ledger"
            );
            l.record(
                ledger::Item {
                    gfid: f.entry.gfid,
                    op: f.entry.op.name().to_owned(),
                    path: f.entry.entry.escape_ascii().to_string(),
                    errno: Some(f.errno),
                    error: format!("{:?}", f.info),
                    first_seen: 0,
                    last_seen: 0,
                    attempts: 0,
                    changed: self.since.get(),
                    retry_after: 0,
                    kind: ledger::Kind::Entry(f.entry.clone()),
                },
                now(),
            );
        }
        drop(l);
        conflicts::clean_superseded(self.client, superseded).context("entry_ops")?;
        self.status.borrow_mut().entry_ops += n as u64;
        debug!(entries = n, failures = failures.len(), "entry phase");
        Ok(())
    }

    /// Records (or re-records) a failure in the ledger.
    fn fail(&self, gfid: Gfid, op: &str, path: String, errno: Option<i32>, error: String, kind: ledger::Kind) {
        let item = ledger::Item {
            gfid,
            op: op.into(),
            path,
            errno,
            error,
            first_seen: 0,
            last_seen: 0,
            attempts: 0,
            changed: self.since.get(),
            retry_after: 0,
            kind,
        };
        self.ledger.borrow_mut().record(item, now());
    }

    fn meta_phase(&self, gfids: impl IntoIterator<Item = Gfid>) -> anyhow::Result<()> {
        let (user, acls) = (self.s.sync_xattrs, self.s.sync_acls);
        let mut ops = Vec::new();
        for g in gfids {
            let go = gfid_path(&g);
            let Some(m) = primary::lstat(&go)? else {
                // Gone on the primary: nothing to replay, nothing owed.
                self.ledger.borrow_mut().resolved(&g, "META", &format!(".gfid/{g}"));
                continue;
            };
            let xattrs = if user || acls {
                match primary_xattrs(&go, &m, user, acls)? {
                    Some(x) => Some(x),
                    None => continue,
                }
            } else {
                None
            };
            ops.push(MetaOp { go, stat: stat_of(&m), xattrs });
        }
        if ops.is_empty() {
            return Ok(());
        }
        self.status.borrow_mut().meta_ops += ops.len() as u64;
        let gfids: Vec<Gfid> = ops.iter().filter_map(|o| Uuid::parse(&o.go[6..]).ok()).collect();
        let failed = self.client.meta_ops(ops).context("meta_ops")?;
        for f in &failed {
            let Some(g) = gfids.get(f.index as usize) else { continue };
            warn!(gfid = %g, errno = f.errno, step = ?f.step,
                "metadata failed on the secondary; recorded in the failure ledger");
            self.fail(
                *g,
                "META",
                format!(".gfid/{g}"),
                Some(f.errno),
                format!("{:?} failed", f.step),
                ledger::Kind::Meta,
            );
        }
        let mut l = self.ledger.borrow_mut();
        for (n, g) in gfids.iter().enumerate() {
            if !failed.iter().any(|f| f.index as usize == n) && l.resolved(g, "META", &format!(".gfid/{g}")) {
                info!(gfid = %g, "a failure ledger item (metadata) is synced now");
            }
        }
        Ok(())
    }

    fn data_phase(&self, gfids: impl IntoIterator<Item = Gfid>) -> anyhow::Result<()> {
        let all: Vec<Gfid> = gfids.into_iter().collect();
        if all.is_empty() {
            return Ok(());
        }
        let sent = send_data(self.s, self.client, self.pid, all)?;
        self.data_sent(sent);
        Ok(())
    }

    /// Records what the data engines did: counters, and the failure ledger.
    fn data_sent(&self, d: DataSent) {
        // A ledger item for a file the primary no longer has is done with.
        for g in &d.gone {
            self.ledger.borrow_mut().resolved(g, "DATA", &format!(".gfid/{g}"));
        }
        let (n_inline, n_engine) = (d.inlined.len(), d.files.len());
        let sent = d.inlined.into_iter().chain(d.files.iter().map(|g| (*g, d.sizes.get(g).copied().unwrap_or(0))));
        for (g, size) in sent {
            let path = format!(".gfid/{g}");
            if d.unsynced.contains(&g) {
                warn!(gfid = %g, attempts = self.s.max_rsync_retries, "data did not arrive; recorded in the failure ledger");
                let why = "size or mtime differs on the secondary after the last attempt".to_owned();
                self.fail(g, "DATA", path, None, why, ledger::Kind::Data);
            } else {
                let mut st = self.status.borrow_mut();
                st.files_synced += 1;
                st.bytes_synced += size;
                if self.ledger.borrow_mut().resolved(&g, "DATA", &path) {
                    info!(gfid = %g, "a failure ledger item is synced now");
                }
            }
        }
        debug!(inline = n_inline, engine = n_engine, unsynced = d.unsynced.len(), "data phase");
    }

    /// The entry, metadata and data phases of a batch, with the data of
    /// each file sent as soon as the last entry operation of the batch on
    /// it is done, while later entry operations (in chunks of
    /// [`ENTRY_CHUNK`]) and the metadata still run: data goes by GFID, so
    /// nothing later in the batch can send it to the wrong name.
    /// Returns the phases' durations (entries, metadata, data).
    fn pipelined(&self, w: Work) -> anyhow::Result<(u128, u128, u128)> {
        let t = std::time::Instant::now();
        let Work { entries, metas, datas } = w;
        let (n_entries, n_metas, n_datas) = (entries.len(), metas.len(), datas.len());
        // Files in order of the chunk whose end releases them.
        let mut last: BTreeMap<Gfid, usize> = BTreeMap::new();
        for (i, e) in entries.iter().enumerate() {
            last.insert(e.gfid, i / ENTRY_CHUNK + 1);
        }
        let chunks = entries.len().div_ceil(ENTRY_CHUNK);
        let mut release: Vec<Vec<Gfid>> = vec![Vec::new(); chunks + 1];
        for g in datas {
            release[last.get(&g).copied().unwrap_or(0)].push(g);
        }
        // While entry operations run, one of the secondary's sync-jobs
        // threads stays free for them (else each of their calls waits
        // behind a data call).
        let mut narrow = self.s.clone();
        narrow.sync_jobs = narrow.sync_jobs.saturating_sub(1).max(1);
        let (wide, narrow, client, pid) = (self.s, &narrow, self.client, self.pid);
        let (sent, data_ms, entry_ms, meta_ms) = std::thread::scope(|sc| -> anyhow::Result<_> {
            // Files, and whether entry operations still run.
            let (tx, rx) = mpsc::channel::<(Vec<Gfid>, bool)>();
            let data = std::thread::Builder::new()
                .name("data".into())
                .spawn_scoped(sc, move || -> anyhow::Result<(Vec<DataSent>, u128)> {
                    let mut out = Vec::new();
                    let mut busy = 0;
                    while let Ok((mut v, mut entries_run)) = rx.recv() {
                        while let Ok((more, run)) = rx.try_recv() {
                            v.extend(more);
                            entries_run = run;
                        }
                        if !v.is_empty() {
                            let t = std::time::Instant::now();
                            let s = if entries_run { narrow } else { wide };
                            out.push(send_data(s, client, pid, v)?);
                            busy += t.elapsed().as_millis();
                        }
                    }
                    Ok((out, busy))
                })
                .context("cannot start the data thread")?;
            let mut release = release.into_iter();
            let _ = tx.send((release.next().unwrap_or_default(), n_entries > 0));
            let mut entries = entries;
            let mut done = 0;
            while !entries.is_empty() {
                let rest = entries.split_off(ENTRY_CHUNK.min(entries.len()));
                done += entries.len();
                self.in_flight(n_entries - done, n_metas, n_datas);
                self.entry_phase(std::mem::replace(&mut entries, rest))?;
                // A closed channel: the data thread failed; its error is
                // told below.
                let _ = tx.send((release.next().unwrap_or_default(), !entries.is_empty()));
            }
            drop(tx);
            let entry_ms = t.elapsed().as_millis();
            let tm = std::time::Instant::now();
            self.in_flight(0, n_metas, n_datas);
            self.meta_phase(metas)?;
            let meta_ms = tm.elapsed().as_millis();
            self.in_flight(0, 0, n_datas);
            let (sent, data_ms) = data.join().map_err(|_| anyhow::anyhow!("the data thread panicked"))??;
            Ok((sent, data_ms, entry_ms, meta_ms))
        })?;
        for d in sent {
            self.data_sent(d);
        }
        Ok((entry_ms, meta_ms, data_ms))
    }

    fn save_ledger(&self) -> anyhow::Result<()> {
        let l = self.ledger.borrow();
        l.save()?;
        if !l.is_empty() {
            debug!(items = l.len(), "the failure ledger holds items; they are retried with backoff");
        }
        Ok(())
    }

    fn set_stime(&self, sec: u64) -> anyhow::Result<()> {
        // The xattr holds 32-bit seconds: a later time is a corrupt name,
        // and clamping would stall the feed for good.
        let sec = u32::try_from(sec).map_err(|_| anyhow::anyhow!("sync time {sec} is beyond what stime can hold"))?;
        let v = XTime::new(sec, 0).encode();
        for key in [keys::stime(&self.prefix), keys::entry_stime(&self.prefix)] {
            xattr::set(&self.s.brick, &key, &v)
                .with_context(|| format!("cannot set {key} on {}", self.s.brick.display()))?;
        }
        Ok(())
    }

    /// Passive: copies the cluster's stime (the aggregate the mount shows:
    /// DHT's minimum of AFR's maximum) onto this brick when it is ahead of
    /// the brick's own.
    fn follow_cluster_stime(&self) {
        let key = keys::stime(&self.prefix);
        let Some(cluster) = xattr::get(".", &key).ok().flatten().and_then(|v| XTime::decode(&v).ok()) else {
            return;
        };
        // A brick without stime of its own stays without: the cluster's
        // value can come from another replica set (DHT takes the minimum of
        // those that have one) while this set's first crawl is unfinished,
        // and a takeover must then crawl, not resume.
        if self.stime().is_some_and(|mine| u64::from(cluster.sec) > mine) {
            match xattr::set(&self.s.brick, &key, &cluster.encode()) {
                Ok(()) => debug!(stime = cluster.sec, "following the cluster stime"),
                Err(e) => warn!("cannot set {key} on {}: {e}", self.s.brick.display()),
            }
        }
    }

    fn stime(&self) -> Option<u64> {
        let v = xattr::get(&self.s.brick, keys::stime(&self.prefix)).ok().flatten()?;
        XTime::decode(&v).ok().map(|t| u64::from(t.sec))
    }

    /// Takes a piece of the changelog being written: it waits to settle
    /// ([`live::Live`]).
    fn live_records(&self, records: Vec<Record>) {
        self.live.borrow_mut().arrive(records, std::time::Instant::now());
    }

    /// Replays the live records that have settled: entries, then metadata
    /// and data.
    fn live_settle(&self) -> anyhow::Result<()> {
        let records = self.live.borrow_mut().settled(std::time::Instant::now());
        if records.is_empty() {
            return Ok(());
        }
        self.since.set(self.stime().unwrap_or(0));
        let (records, elided) = elide::elide(records, !self.s.ignore_deletes);
        let mut w = Work::default();
        w.add(&records, self.s)?;
        let (entries, metas, datas) = (w.entries.len(), w.metas.len(), w.datas.len());
        let t = std::time::Instant::now();
        self.in_flight(entries, metas, datas);
        self.entry_phase(w.entries)?;
        self.live.borrow_mut().reading(&records, SystemTime::now());
        self.meta_phase(w.metas)?;
        self.data_phase(w.datas)?;
        self.in_flight(0, 0, 0);
        // "Gone" meant gone only while the mount answers.
        primary::check()?;
        debug!(entries, elided = elided.files, metas, datas, ms = t.elapsed().as_millis(), "live records replayed");
        Ok(())
    }

    /// Replays a batch of changelogs, then records progress. Their
    /// records are taken out (a backlog's batch is held once, not twice).
    fn batch(&self, changelogs: &mut [Changelog]) -> anyhow::Result<()> {
        self.since.set(self.stime().unwrap_or(0));
        let mut w = Work::default();
        let mut missing = false;
        let (mut live_skipped, mut live_again) = (0, 0);
        let t = std::time::Instant::now();
        let mut records = Vec::new();
        for c in changelogs.iter_mut() {
            if c.missing {
                error!(ts = c.ts, path = %String::from_utf8_lossy(&c.path),
                    "a listed changelog is missing: its changes are not known; crawling what changed since stime");
                missing = true;
            }
            if c.gap_before {
                warn!(ts = c.ts, "changelog was off before this changelog: crawling what changed since stime");
                missing = true;
            }
            if c.live_records > 0 {
                let brick = &self.s.brick;
                let r =
                    self.live.borrow_mut().rolled(&c.records, c.live_records as usize, |g| live::brick_ctime(brick, g));
                live_skipped += r.skipped;
                live_again += r.again;
                records.extend(r.records);
            } else {
                records.append(&mut c.records);
            }
        }
        let (records, elided) = elide::elide(records, !self.s.ignore_deletes);
        w.add(&records, self.s)?;
        // What waited of the live changelog is in these.
        self.live.borrow_mut().clear();
        let prepare_ms = t.elapsed().as_millis();
        // The ledger's items are tried again first: entry ops that the
        // primary still says, in their order; superseded ones are dropped.
        for (r, n) in self.ledger.borrow_mut().apply_requests() {
            info!(request = ?r, items = n, "failure ledger: operator request applied");
        }
        let now_s = now();
        let due: Vec<ledger::Item> = self.ledger.borrow().due(now_s).cloned().collect();
        let (mut retried, mut ops): (Vec<ledger::Item>, Vec<EntryOp>) = (Vec::new(), Vec::new());
        for i in due {
            match &i.kind {
                ledger::Kind::Entry(op) => {
                    let mut op = op.clone();
                    op.skip = !conflicts::still_relevant(&op)?;
                    ops.push(op);
                    retried.push(i.clone());
                }
                ledger::Kind::Data => {
                    w.datas.insert(i.gfid);
                }
                ledger::Kind::Meta => {
                    w.metas.insert(i.gfid);
                }
            }
        }
        if !ops.is_empty() {
            // A retry can meet what the first attempt met (a name held by
            // a GFID the primary no longer has there, left by another
            // brick's worker): it goes through the same resolution,
            // without which it would fail the same way at every retry.
            let failed = self.replay_entries(&mut ops)?;
            conflicts::clean_superseded(self.client, ops.iter().filter(|o| o.skip)).context("entry_ops")?;
            let mut l = self.ledger.borrow_mut();
            for (n, (i, op)) in retried.iter().zip(&ops).enumerate() {
                if failed.iter().any(|f| f.index as usize == n) && !op.skip {
                    l.record(i.clone(), now());
                } else if l.resolved(&i.gfid, &i.op, &i.path) {
                    let how = if op.skip { "superseded on the primary" } else { "synced now" };
                    info!(gfid = %i.gfid, op = %i.op, "a failure ledger item is {how}");
                }
            }
        }
        let (entries, metas, datas) = (w.entries.len(), w.metas.len(), w.datas.len());
        if let Some(last) = changelogs.last() {
            let mut st = self.status.borrow_mut();
            st.backlog = u64::from(last.backlog);
            st.backlog_bytes = last.backlog_bytes;
        }
        self.in_flight(entries, metas, datas);
        let (entry_ms, meta_ms, data_ms) = self.pipelined(w)?;
        if missing {
            let before = self.status.borrow().crawl_status.clone();
            self.crawl(self.since.get())?;
            self.crawl_finished();
            self.set_state(status::ACTIVE, &before);
        }
        // Whatever the phases took for "gone" was gone: the mount still
        // answers. Then the failures are recorded durably before stime
        // passes them.
        primary::check()?;
        self.save_ledger()?;
        if let Some(last) = changelogs.last() {
            self.set_stime(last.ts.saturating_sub(1))?;
            if entries + metas + datas > 0 {
                info!(
                    changelogs = changelogs.len(),
                    entries,
                    metas,
                    datas,
                    live_skipped,
                    live_again,
                    elided = elided.files,
                    prepare_ms,
                    entry_ms,
                    meta_ms,
                    data_ms,
                    stime = last.ts - 1,
                    "batch synced"
                );
            } else {
                debug!(changelogs = changelogs.len(), live_skipped, stime = last.ts - 1, "nothing left to replay");
            }
        }
        self.in_flight(0, 0, 0);
        self.progress();
        Ok(())
    }
}

/// Active/Passive by a lock on the shared meta volume (`use-meta-volume`):
/// `<meta-volume-mnt>/geo-rep/<primary>_<secondary>_subvol_<N>.lock`, the
/// reference's file, held with a POSIX record lock (the cluster's, on a
/// GlusterFS mount) for as long as this worker syncs the set.
struct MetaLock {
    mnt: PathBuf,
    path: PathBuf,
    held: Option<std::fs::File>,
}

impl MetaLock {
    fn new(mnt: &Path, primary: &Uuid, secondary: &Uuid, subvol: usize) -> MetaLock {
        let path = mnt.join("geo-rep").join(format!("{primary}_{secondary}_subvol_{}.lock", subvol + 1));
        MetaLock { mnt: mnt.to_path_buf(), path, held: None }
    }

    /// Holds the lock, or learns that another worker does.
    fn try_hold(&mut self) -> anyhow::Result<bool> {
        if self.held.is_some() {
            return Ok(true);
        }
        let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
        if dev(&self.mnt).is_none() || dev(&self.mnt) == dev(&self.mnt.join("..")) {
            anyhow::bail!(
                "use-meta-volume is on but no volume is mounted at {}: enable the shared storage                  (gluster volume set all cluster.enable-shared-storage enable) or set meta-volume-mnt,                  or set use-meta-volume false",
                self.mnt.display()
            );
        }
        if let Some(d) = self.path.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)
            .with_context(|| format!("cannot open {}", self.path.display()))?;
        if crate::fsutil::try_lock_exclusive(&f).with_context(|| format!("cannot lock {}", self.path.display()))? {
            info!(lock = %self.path.display(), "holding the replica set's meta-volume lock");
            self.held = Some(f);
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn release(&mut self) -> bool {
        self.held.take().is_some()
    }
}

enum Ev {
    Feed(ToWorker),
    AgentGone(String),
    Stop,
}

/// What the primary volume must be for this worker to sync it; each
/// problem is named with its fix.
fn preflight(vol: &crate::gluster::volinfo::Volume, s: &Settings) -> Result<(), String> {
    let on = |k: &str| vol.option_on(k);
    let v = &vol.name;
    if !vol.is_started() {
        return Err(format!(
            "the primary volume {v} is not started (it is {}): start it with `gluster volume start {v}`",
            vol.status
        ));
    }
    if !s.xsync && !on("changelog.changelog") {
        return Err(format!(
            "changelog.changelog is off on the primary volume {v}, so its changes are not journaled: turn it on \
             with `gluster volume set {v} changelog.changelog on` (or set change-detector xsync)"
        ));
    }
    if !on("geo-replication.indexing") {
        return Err(format!(
            "geo-replication.indexing is off on the primary volume {v} (crawls and sync times need it): turn it \
             on with `gluster volume set {v} geo-replication.indexing on`"
        ));
    }
    Ok(())
}

fn local_node() -> String {
    nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "localhost".into())
}

pub fn run(config_dir: &Path, args: &WorkerArgs) -> anyhow::Result<()> {
    let session = &args.brick.session;
    // Everything process-wide happens before the first thread (the ctl
    // link's heartbeat): the private mount namespace above all.
    let settings = Config::load(config_dir, session)
        .map_err(anyhow::Error::from)
        .and_then(|cfg| Ok(Settings::load(&cfg, session, &args.brick.brick)?));
    if let Ok(s) = &settings
        && !s.access_mount
        && let Err(e) = auxmount::private_namespace()
    {
        warn!("{e:#}; mounting in the shared namespace");
    }
    let link = Link::connect(Role::Worker)?;
    let s = match settings {
        Ok(s) => s,
        Err(e) => {
            let _ = link.send(&ToSupervisor::Fatal(format!("{e:#}")));
            return Err(e);
        }
    };
    let r = serve(config_dir, args, &s, &link);
    link.report(r)
}

fn serve(config_dir: &Path, args: &WorkerArgs, s: &Settings, link: &Link) -> anyhow::Result<()> {
    let session = &args.brick.session;
    link.send(&ToSupervisor::Phase("connecting to the agent".into()))?;
    let feed = crate::proto::changelog::connect(Role::Worker)?;

    link.send(&ToSupervisor::Phase("reading the primary volume".into()))?;
    let gluster = s.gluster_command_dir.join("gluster");
    let cli: Vec<&str> = s.gluster_cli_options.iter().map(String::as_str).collect();
    let pvol = gcli::volume_info(&gluster, &cli, &s.primary)?;
    if let Err(why) = preflight(&pvol, s) {
        let _ = link.send(&ToSupervisor::Fatal(why.clone()));
        anyhow::bail!(why);
    }

    link.send(&ToSupervisor::Phase("mounting the primary volume".into()))?;
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let opts = MountOptions {
        command_dir: s.gluster_command_dir.clone(),
        volfile_server: "localhost".into(),
        volume: s.primary.clone(),
        log_file: s.gluster_log_file.clone(),
        log_level: s.gluster_log_level.clone(),
        params: auxmount::params_for(s.gluster_params.clone(), pvol.distribution_count()),
        timeout: s.connection_timeout,
    };
    let mounted = auxmount::mount_and_enter(&opts, &Mounter::Direct { dir: s.run_dir.join("mnt") }, &exe)?;

    link.send(&ToSupervisor::Phase("connecting to the secondary".into()))?;
    let sec = transport::connect(s, &local_node(), pvol.distribution_count())?;
    let sv_id = sec.client.volume_id().context("cannot learn the secondary volume's id")?;
    let prefix = keys::session_prefix(&pvol.id, &sv_id);
    transport::keep_alive(&sec.client, s.secondary_timeout);
    link.send(&ToSupervisor::Ready)?;
    info!(brick = %s.brick.display(), secondary = %s.remote(), volume = %s.secondary.volume, "worker ready");

    let (tx, rx) = mpsc::channel();
    link.spawn_stop_watch(tx.clone(), Ev::Stop)?;
    crate::proto::spawn_reader("agent", feed.try_clone()?, MAX_FEED_FRAME, tx.clone(), Ev::Feed, Ev::AgentGone)?;
    // The supervisor sends Shutdown and SIGTERM together: either ends the
    // worker between batches, cleanly (mount released).
    crate::sys::forward_termination(tx.clone(), Ev::Stop)?;
    drop(tx);

    let ledger = RefCell::new(ledger::Ledger::open(&s.state_dir, &s.brick)?);
    let checkpoint = Checkpoint {
        file: crate::config::session_path(config_dir, session)?,
        config_dir: config_dir.to_path_buf(),
        session: session.clone(),
        mtime: None,
        value: 0,
    };
    let r = Replicator {
        s,
        client: &sec.client,
        pid: sec.pid,
        dist: pvol.distribution_count(),
        prefix,
        link,
        ledger,
        since: Cell::new(0),
        sent: RefCell::new(None),
        status: RefCell::new(BrickStatus { secondary_node: s.secondary.host.clone(), ..BrickStatus::default() }),
        checkpoint: RefCell::new(checkpoint),
        rates: RefCell::new(std::collections::VecDeque::new()),
        xtime_key: keys::xtime(&pvol.id),
        live: RefCell::new(live::Live::default()),
    };
    // Active/Passive: one worker per replica set syncs; the others follow
    // the cluster's stime so that a takeover resumes near where it was.
    let node = gcli::local_node_uuid(&s.glusterd_workdir).ok();
    let brick_bytes = s.brick.as_os_str().as_bytes();
    let index = pvol.bricks.iter().position(|b| Some(b.host_uuid) == node && b.path == brick_bytes);
    let subvol = index.map(|i| pvol.subvolume_of(i));
    let meta = RefCell::new(match (s.use_meta_volume, subvol) {
        (true, Some(n)) => Some(MetaLock::new(&s.meta_volume_mnt, &pvol.id, &sv_id, n)),
        (true, None) => {
            warn!("this brick is not in the primary volume's brick list as this node; not using the meta-volume lock");
            None
        }
        (false, _) => None,
    });
    // Per replica set, the first brick online syncs; with use-meta-volume,
    // the one holding the set's lock, for as long as its brick is online.
    // A failed `volume status` (glusterd busy with another transaction, say)
    // keeps the role the worker had: flapping to Active would let two
    // workers sync one set.
    let last_role: Cell<Option<bool>> = Cell::new(None);
    // `gluster volume info` only when glusterd's record of the volume
    // changed; `volume status` every check for a replica set of several
    // bricks (failover), rarely for a brick alone in its set (no one to
    // fail over to). Each `gluster` call costs a tenth of a CPU second.
    let info_watch = RefCell::new(gcli::InfoWatch::new(&s.glusterd_workdir, &s.primary, LAYOUT_ASK_ANYWAY));
    let alone = meta.borrow().is_none()
        && subvol.is_some_and(|n| (0..pvol.bricks.len()).filter(|&j| pvol.subvolume_of(j) == n).count() == 1);
    let status_asked: Cell<Option<std::time::Instant>> = Cell::new(None);
    let status_cache = s.run_dir.join(format!("volume-status.{}.xml", s.primary));
    let active = || -> anyhow::Result<bool> {
        let Some(i) = index else {
            warn!("this brick is not in the primary volume's brick list as this node; syncing it (Active)");
            return Ok(true);
        };
        let keep = |what: &str, e: &dyn std::fmt::Display| {
            let keep = last_role.get().unwrap_or(true);
            warn!(active = keep, "cannot read the primary volume's {what} ({e}); keeping the current role");
            Ok(keep)
        };
        // A layout changed by add-brick or replace-brick makes the brick
        // list this worker started with wrong: start again with the new one.
        if info_watch.borrow_mut().due() {
            match gcli::volume_info(&gluster, &cli, &s.primary) {
                Ok(v) => {
                    let layout = |v: &crate::gluster::volinfo::Volume| -> Vec<(Uuid, Vec<u8>, usize)> {
                        (0..v.bricks.len())
                            .map(|j| (v.bricks[j].host_uuid, v.bricks[j].path.clone(), v.subvolume_of(j)))
                            .collect()
                    };
                    if layout(&v) != layout(&pvol) {
                        anyhow::bail!("the primary volume's bricks changed; the worker restarts with the new layout");
                    }
                    info_watch.borrow_mut().answered();
                }
                Err(e) => return keep("layout", &e),
            }
        }
        if alone
            && let (Some(t), Some(role)) = (status_asked.get(), last_role.get())
            && t.elapsed() < ALONE_STATUS_EVERY
        {
            return Ok(role);
        }
        let status = match gcli::volume_status_shared(&gluster, &cli, &s.primary, &status_cache, STATUS_FRESH) {
            Ok(st) => st,
            Err(e) => return keep("status", &e),
        };
        status_asked.set(Some(std::time::Instant::now()));
        let mut meta = meta.borrow_mut();
        let role = match meta.as_mut() {
            None => pvol.is_active(i, &status),
            Some(m) if !pvol.is_online(i, &status) => {
                if m.release() {
                    info!("this brick is offline; releasing the meta-volume lock");
                }
                false
            }
            Some(m) => m.try_hold()?,
        };
        last_role.set(Some(role));
        Ok(role)
    };
    let mut out = feed;
    let check_every = s.failover_interval.max(PASSIVE_CHECK);
    // Each feed asked of the agent has its number.
    let mut generation: u32 = 0;
    'roles: loop {
        if !active()? {
            link.send(&ToSupervisor::Phase("Passive".into()))?;
            info!("Passive: another brick of this replica set syncs it");
            loop {
                r.follow_cluster_stime();
                r.set_state(status::PASSIVE, status::NA);
                // `gluster volume status` takes glusterd's volume lock: asking
                // more often than every 10 s would get in administrators' way.
                match rx.recv_timeout(check_every) {
                    Ok(Ev::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break 'roles,
                    Ok(Ev::AgentGone(why)) => anyhow::bail!("the agent {why}"),
                    // Changelogs of an earlier Active spell: not ours now.
                    Ok(Ev::Feed(_)) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                }
                if active()? {
                    info!("Active: taking over this replica set");
                    break;
                }
            }
        }
        link.send(&ToSupervisor::Phase("Active".into()))?;
        if s.xsync {
            // change-detector = xsync: crawls by xtime, one every
            // change-interval, each from the last one's start.
            loop {
                let since = r.stime().unwrap_or(0);
                let t = r.crawl(since)?;
                r.set_stime(t)?;
                r.crawl_finished();
                r.progress();
                let deadline = std::time::Instant::now() + s.change_interval;
                while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
                    match rx.recv_timeout(left) {
                        Ok(Ev::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break 'roles,
                        Ok(Ev::AgentGone(why)) => anyhow::bail!("the agent {why}"),
                        Ok(Ev::Feed(_)) => {}
                        Err(mpsc::RecvTimeoutError::Timeout) => break,
                    }
                }
                if !active()? {
                    info!(
                        "no longer the one to sync this replica set (a brick before it is back, or its own is offline); giving way"
                    );
                    continue 'roles;
                }
            }
        }
        let start = match r.stime() {
            Some(t) => {
                // The index must cover everything since stime; a gap
                // (changelog off for a while, a purged index) is crawled.
                let now_s = now();
                crate::proto::send(&mut out, &ToAgent::History { start: t, end: now_s }, MAX_FEED_FRAME, "agent")?;
                let answer = loop {
                    match rx.recv_timeout(s.connection_timeout) {
                        Ok(Ev::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break 'roles,
                        Ok(Ev::AgentGone(why)) => anyhow::bail!("the agent {why}"),
                        Ok(Ev::Feed(ToWorker::History(a))) => break a,
                        Ok(Ev::Feed(ToWorker::Broken(why))) => anyhow::bail!("the agent cannot read the index: {why}"),
                        // Changelogs of an earlier feed.
                        Ok(Ev::Feed(_)) => {}
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            anyhow::bail!("the agent did not answer a history request")
                        }
                    }
                };
                match answer {
                    HistoryAnswer::Full { .. } | HistoryAnswer::Partial { gap: false, .. } => {
                        info!(stime = t, "resuming from the brick's stime (history crawl)");
                        t
                    }
                    other => {
                        warn!(stime = t, answer = ?other, "the changelog index does not cover everything since stime; crawling what changed since");
                        let c = r.crawl(t)?;
                        r.set_stime(c)?;
                        r.crawl_finished();
                        r.progress();
                        c
                    }
                }
            }
            None => {
                let t = r.crawl(0)?;
                r.set_stime(t)?;
                r.crawl_finished();
                r.progress();
                t
            }
        };
        link.send(&ToSupervisor::Phase("changelog crawl".into()))?;
        generation = generation.wrapping_add(1);
        crate::proto::send(
            &mut out,
            &ToAgent::Feed { after: start, generation, live: s.live_changelog },
            MAX_FEED_FRAME,
            "agent",
        )?;
        r.live.borrow_mut().clear();
        // A live piece that came while a batch was gathered.
        let mut held: Option<ToWorker> = None;
        // History until the feed reaches the time it was asked for.
        let live_from = now().saturating_sub(1);
        let mut live = false;
        r.set_state(status::ACTIVE, status::HISTORY);
        let mut checked = std::time::Instant::now();
        loop {
            // Still the one to sync? A brick before this one in its replica
            // set may be back.
            if checked.elapsed() >= check_every {
                checked = std::time::Instant::now();
                if !active()? {
                    info!(
                        "no longer the one to sync this replica set (a brick before it is back, or its own is offline); giving way"
                    );
                    continue 'roles;
                }
            }
            let wait = r
                .live
                .borrow()
                .next_due()
                .map_or(check_every, |t| t.saturating_duration_since(std::time::Instant::now()).min(check_every));
            let first = match held.take() {
                Some(m) => m,
                None => match rx.recv_timeout(wait) {
                    Ok(Ev::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break 'roles,
                    Ok(Ev::AgentGone(why)) => anyhow::bail!("the agent {why}"),
                    Ok(Ev::Feed(m)) => m,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        r.live_settle()?;
                        continue;
                    }
                },
            };
            if let ToWorker::Live(l) = first {
                if l.generation == generation {
                    r.live_records(l.records);
                    crate::proto::send(&mut out, &ToAgent::LiveAck, MAX_FEED_FRAME, "agent")?;
                }
                r.live_settle()?;
                continue;
            }
            // Whatever else has arrived joins the batch, up to
            // changelog-batch-size bytes of changelogs.
            let (mut batch, mut stop, mut gone, mut bytes) = (Vec::new(), false, None, 0u64);
            let mut next = Some(first);
            while let Some(m) = next.take() {
                match m {
                    // Left over from an earlier feed.
                    ToWorker::Changelog(c) if c.generation != generation || c.ts <= start => {}
                    ToWorker::Changelog(c) => {
                        bytes += c.size;
                        batch.push(c);
                    }
                    ToWorker::Broken(why) => anyhow::bail!("the agent cannot feed changelogs: {why}"),
                    ToWorker::History(_) => {}
                    live @ ToWorker::Live(_) => {
                        held = Some(live);
                        break;
                    }
                    ToWorker::Stalled { since } => {
                        if since != 0 {
                            warn!(since, "the live changelog feed is stalled; the agent is recovering it");
                        }
                        r.status.borrow_mut().feed_stalled_since = since;
                        r.report();
                    }
                }
                if bytes >= s.changelog_batch_size {
                    break;
                }
                match rx.try_recv() {
                    Ok(Ev::Feed(m)) => next = Some(m),
                    Ok(Ev::Stop) => stop = true,
                    Ok(Ev::AgentGone(why)) => gone = Some(why),
                    Err(_) => {}
                }
            }
            r.batch(&mut batch)?;
            if !live && batch.last().is_some_and(|c| c.ts >= live_from) {
                live = true;
                info!("history caught up; following the live changelog");
                r.set_state(status::ACTIVE, status::CHANGELOG);
            }
            if let Some(last) = batch.last() {
                crate::proto::send(&mut out, &ToAgent::Ack { ts: last.ts }, MAX_FEED_FRAME, "agent")?;
            }
            if let Some(why) = gone {
                anyhow::bail!("the agent {why}");
            }
            if stop {
                break 'roles;
            }
        }
    }
    drop(sec);
    if let Err(e) = mounted.release() {
        warn!("cannot remove the primary mount: {e}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xattrs_are_read_through_a_descriptor_name() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        xattr::set(&f, "user.kept", b"v").unwrap();
        let (_, handle, m) = crate::fsutil::open_regular(&f, false).unwrap().unwrap();
        let p = crate::fsutil::fd_path(&handle);
        let x = primary_xattrs(p.as_os_str().as_bytes(), &m, true, false).unwrap().unwrap();
        assert_eq!(x.values, vec![(b"user.kept".to_vec(), b"v".to_vec())]);
    }
}
