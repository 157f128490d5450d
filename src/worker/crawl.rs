//! The hybrid crawl: a walk of the brick that syncs what changelogs cannot
//! tell (a brick without stime, a history the index does not cover, a
//! changelog that went missing), and `change-detector = xsync`.
//!
//! - **Since a time.** With a `since` (the brick's stime), only
//!   directories whose marker xtime is at or after it are read: the marker
//!   raises a directory's xtime on every change below it, so an unchanged
//!   subtree is skipped whole. Every entry of a changed directory gets its
//!   entry op (a no-op on the secondary when it is there already), which is
//!   how a rename into it is seen; only changed files get metadata and
//!   data. Without xtimes (`geo-replication.indexing` off) everything
//!   counts as changed.
//! - **Regular files go as MKNOD**, which the secondary turns into a hard
//!   link when the GFID already exists under another name (a rename the
//!   crawl cannot see as such), instead of nothing (CREATE).
//! - **Checkpointed.** The crawl's start time and the directories whose
//!   entries and data are synced are kept in
//!   `<state-dir>/crawl/<brick>.json`, written after every 1000 entries; a
//!   restarted crawl keeps the first start (so stime does not pass changes
//!   made during the interrupted one) and does not sync those directories
//!   again (it still reads them, to reach what is below).
//! - **Reconcile.** A crawl sees what exists, not what was deleted or
//!   renamed away. Afterwards (unless `ignore-deletes`), every directory it
//!   read is listed on the secondary, and a name the primary does not have
//!   is removed when that loses nothing: its GFID is gone from the primary,
//!   or another hard link of the file remains on the secondary. Anything
//!   else the primary still has under another name (a directory, a
//!   symlink, a file's last name) is left in place and logged.
//! - **Stopping.** A crawl does not stop halfway for SIGTERM: the
//!   supervisor's grace period ends it with SIGKILL, and the restarted
//!   crawl resumes from its last checkpoint (crash-only).
//! - **Nothing is skipped silently.** A directory that cannot be read
//!   fails the crawl (it resumes from its checkpoint), and the primary
//!   mount must still answer before progress is saved.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::{Replicator, entry_path, gfid_path, os, stat_of};
use crate::gluster::changelog::Entry;
use crate::gluster::uuid::{Gfid, Uuid};
use crate::gluster::xattr::{XTime, keys};
use crate::proto::ctl::ToSupervisor;
use crate::proto::rpc::{EntryOp, Op};
use crate::proto::status;

/// Entries per RPC call during a crawl.
const CRAWL_BATCH: usize = 1000;

const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;

/// A crawl's durable progress.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Progress {
    /// When the crawl first started: stime once it is done.
    started: u64,
    /// The xtime it crawls from (0: everything).
    since: u64,
    /// Directories whose entries, metadata and data are synced.
    done: BTreeSet<Gfid>,
}

/// What one crawl found, for the reconcile pass.
#[derive(Debug, Default)]
struct Seen {
    /// Directories read (changed ones, or all).
    dirs: Vec<Gfid>,
}

fn progress_path(state_dir: &Path, brick: &Path) -> PathBuf {
    let name = crate::config::template::escape_path(&brick.to_string_lossy());
    state_dir.join("crawl").join(format!("{name}.json"))
}

impl Replicator<'_> {
    /// The names in primary directory `d` (through the aux mount; opened
    /// by parent and name, since gfid-access cannot open `.gfid/<gfid>`).
    fn primary_names(&self, d: &Gfid) -> Option<HashSet<Vec<u8>>> {
        let path = if *d == Uuid::ROOT {
            b".".to_vec()
        } else {
            let (pg, name) = crate::gluster::backend::dir_entry(&self.s.brick, d)?;
            entry_path(&Entry { parent: pg, name })
        };
        let rd = std::fs::read_dir(os(&path)).ok()?;
        let mut names = HashSet::new();
        for e in rd {
            names.insert(e.ok()?.file_name().as_bytes().to_vec());
        }
        Some(names)
    }

    fn xtime(&self, p: &Path) -> Option<u64> {
        let v = xattr::get(p, &self.xtime_key).ok().flatten()?;
        XTime::decode(&v).ok().map(|t| u64::from(t.sec))
    }

    /// Crawls the brick (changed since `since`, or all of it with 0) and
    /// reconciles; returns the time to set stime to.
    pub(super) fn crawl(&self, since: u64) -> anyhow::Result<u64> {
        let kind = if since == 0 { "hybrid crawl" } else { "hybrid crawl since stime" };
        self.link.send(&ToSupervisor::Phase(kind.into()))?;
        self.since.set(since);
        self.set_state(status::ACTIVE, status::HYBRID);
        let path = progress_path(&self.s.state_dir, &self.s.brick);
        let mut p: Progress =
            std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        if p.started != 0 && p.since == since {
            info!(started = p.started, dirs_done = p.done.len(), "resuming an interrupted crawl");
        } else {
            p = Progress { started: super::now().saturating_sub(1), since, done: BTreeSet::new() };
        }
        let save = |p: &Progress| -> anyhow::Result<()> {
            if let Some(d) = path.parent() {
                std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            }
            let body = serde_json::to_vec(p).context("crawl progress")?;
            crate::fsutil::write_atomically(&path, &body, 0o600)?;
            Ok(())
        };
        save(&p)?;
        info!(since, started = p.started, "{kind}");
        let seen = self.walk(since, &mut p, &save)?;
        if self.s.ignore_deletes {
            debug!("ignore-deletes: no reconcile pass");
        } else {
            self.reconcile(&seen)?;
        }
        self.save_ledger()?;
        Ok(p.started)
    }

    /// The crawl is done and stime set: its progress is not needed again.
    pub(super) fn crawl_finished(&self) {
        let _ = std::fs::remove_file(progress_path(&self.s.state_dir, &self.s.brick));
    }

    fn walk(
        &self,
        since: u64,
        p: &mut Progress,
        save: &dyn Fn(&Progress) -> anyhow::Result<()>,
    ) -> anyhow::Result<Seen> {
        let root = self.s.brick.clone();
        let changed = |t: Option<u64>| since == 0 || t.is_none_or(|t| t >= since);
        let mut stack: Vec<(PathBuf, Gfid)> = Vec::new();
        // Nothing changed anywhere below an unchanged root.
        if changed(self.xtime(&root)) {
            stack.push((root.clone(), Uuid::ROOT));
        }
        let mut hard: HashSet<Gfid> = HashSet::new();
        let mut seen = Seen::default();
        let (mut entries, mut files, mut others, mut finished) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut total, mut skipped) = (0usize, 0usize);
        let flush = |entries: &mut Vec<EntryOp>,
                     others: &mut Vec<Gfid>,
                     files: &mut Vec<Gfid>,
                     finished: &mut Vec<Gfid>,
                     p: &mut Progress|
         -> anyhow::Result<()> {
            let n = entries.len();
            self.in_flight(n, others.len() + files.len(), files.len());
            self.entry_phase(std::mem::take(entries))?;
            self.meta_phase(std::mem::take(others))?;
            self.meta_phase(files.clone())?;
            self.data_phase(std::mem::take(files))?;
            super::primary::check()?;
            self.save_ledger()?;
            // Every directory read to its end so far has all its entries
            // in this flush or an earlier one.
            p.done.extend(finished.drain(..));
            save(p)?;
            self.in_flight(0, 0, 0);
            Ok(())
        };
        while let Some((dir, pg)) = stack.pop() {
            seen.dirs.push(pg);
            let redo = !p.done.contains(&pg);
            // A directory that cannot be read fails the crawl (it resumes
            // from its progress): skipping it would set stime over what it
            // holds. One removed meanwhile is not needed.
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => anyhow::bail!("cannot read {} on the brick: {e}", dir.display()),
            };
            for d in rd {
                let d = d.with_context(|| format!("cannot read {} on the brick", dir.display()))?;
                let name = d.file_name();
                if dir == root && crate::gluster::backend::internal_at_root(name.as_bytes()) {
                    continue;
                }
                let path = d.path();
                let Ok(m) = std::fs::symlink_metadata(&path) else { continue };
                let Some(g) = xattr::get(&path, keys::GFID).ok().flatten().and_then(|v| Uuid::from_bytes(&v).ok())
                else {
                    continue;
                };
                let ft = m.file_type();
                // A DHT link file points at the data on another brick.
                if ft.is_file()
                    && m.mode() & 0o7777 == 0o1000
                    && m.size() == 0
                    && xattr::get(&path, keys::DHT_LINKTO).ok().flatten().is_some()
                {
                    continue;
                }
                let fresh = changed(self.xtime(&path));
                if ft.is_dir() && fresh {
                    stack.push((path.clone(), g));
                }
                if !redo {
                    continue;
                }
                let entry = Entry { parent: pg, name: name.as_bytes().to_vec() };
                let mut e;
                if ft.is_dir() {
                    e = EntryOp::new(Op::Mkdir, g, entry_path(&entry));
                    (e.mode, e.uid, e.gid) = (m.mode(), m.uid(), m.gid());
                } else if ft.is_symlink() {
                    e = EntryOp::new(Op::Symlink, g, entry_path(&entry));
                    e.stat = Some(stat_of(&m));
                    e.link = std::fs::read_link(&path).ok().map(|p| p.into_os_string().into_vec());
                    if fresh {
                        others.push(g);
                    }
                } else if m.nlink() > 1 && !hard.insert(g) {
                    e = EntryOp::new(Op::Link, g, entry_path(&entry));
                    e.stat = Some(stat_of(&m));
                } else {
                    e = EntryOp::new(Op::Mknod, g, entry_path(&entry));
                    (e.mode, e.uid, e.gid) = (m.mode(), m.uid(), m.gid());
                    if fresh && ft.is_file() {
                        files.push(g);
                    } else if fresh {
                        others.push(g);
                    }
                }
                if !fresh && !ft.is_dir() {
                    skipped += 1;
                }
                entries.push(e);
                if entries.len() >= CRAWL_BATCH {
                    total += entries.len();
                    flush(&mut entries, &mut others, &mut files, &mut finished, p)?;
                }
            }
            finished.push(pg);
        }
        total += entries.len();
        flush(&mut entries, &mut others, &mut files, &mut finished, p)?;
        // Directory times last, so that creating their entries does not
        // change them again.
        self.meta_phase(seen.dirs.iter().copied().filter(|g| *g != Uuid::ROOT))?;
        info!(entries = total, dirs = seen.dirs.len(), unchanged = skipped, "crawl walked the brick");
        Ok(seen)
    }

    /// Removes from the secondary what the primary no longer has, in the
    /// directories the crawl read (see the module doc for what is kept).
    fn reconcile(&self, seen: &Seen) -> anyhow::Result<()> {
        self.link.send(&ToSupervisor::Phase("reconcile".into()))?;
        let mut ops = Vec::new();
        let mut links_left: BTreeMap<Gfid, u64> = BTreeMap::new();
        let (mut removed, mut kept) = (0usize, 0usize);
        for d in &seen.dirs {
            // The primary's names, read fresh (a lookup by name can answer
            // from the kernel's dentry cache, stale after a rename made
            // through another mount).
            let Some(here) = self.primary_names(d) else {
                debug!(dir = %d, "cannot list on the primary; not reconciled");
                continue;
            };
            let list = match self.client.list_dir(*d).context("ListDir")? {
                Ok(l) => l,
                Err(errno) => {
                    debug!(dir = %d, errno, "cannot list on the secondary");
                    continue;
                }
            };
            for e in list {
                if *d == Uuid::ROOT && crate::gluster::backend::internal_at_root(&e.name) {
                    continue;
                }
                let Some(g) = e.gfid else { continue };
                // A name the primary has (with this inode or another, which
                // the crawl's entry op settled) stays.
                if here.contains(&e.name) {
                    continue;
                }
                let name = entry_path(&Entry { parent: *d, name: e.name.clone() });
                let alive = super::primary::lstat(&gfid_path(&g))?.is_some();
                let links = links_left.entry(g).or_insert(e.nlink);
                let op = match (e.mode & S_IFMT, alive) {
                    (S_IFDIR, false) => Op::Rmdir,
                    (_, false) => Op::Unlink,
                    // Another name of the file stays on the secondary.
                    (S_IFREG, true) if *links > 1 => {
                        *links -= 1;
                        Op::Unlink
                    }
                    _ => {
                        kept += 1;
                        warn!(
                            gfid = %g,
                            entry = %String::from_utf8_lossy(&name),
                            "the secondary has a name the primary does not, for an inode the primary has elsewhere; left in place"
                        );
                        continue;
                    }
                };
                debug!(op = %op, gfid = %g, entry = %String::from_utf8_lossy(&name), "reconcile: not on the primary");
                ops.push(EntryOp::new(op, g, name));
                removed += 1;
                if ops.len() >= CRAWL_BATCH {
                    self.entry_phase(std::mem::take(&mut ops))?;
                }
            }
        }
        self.entry_phase(ops)?;
        info!(dirs = seen.dirs.len(), removed, kept, "reconcile done");
        Ok(())
    }
}
