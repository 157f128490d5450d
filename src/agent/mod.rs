//! The changelog agent of one primary brick: answers its worker's history
//! questions from the brick's HTIME index, and feeds it the brick's
//! changelogs, parsed with our own reader, oldest first: what the index
//! already lists, then each new one as the translator rolls it over.
//!
//! New changelogs are found by following the HTIME index (see
//! [`HtimeTail`]), which the translator appends to after a changelog is
//! complete and renamed; inotify on the htime directory wakes the agent, a
//! one-second poll covers a missed or unavailable notification. Following
//! the index rather than the date directories means a rollover race (a file
//! seen before it is whole) cannot happen, and a new date directory at
//! midnight UTC, or a new HTIME file when changelog is turned off and on,
//! needs nothing special: the index names each file by its full path.
//!
//! At most [`WINDOW`] changelogs are sent ahead of the worker's
//! acknowledgements.
//!
//! Once every rolled changelog is sent and acknowledged, and the worker
//! asked for it, the agent also follows the changelog the translator is
//! still writing ([`live::LiveTail`]), every [`LIVE_TICK`], and sends its new
//! records one piece at a time.

pub mod live;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use tracing::{debug, error, info, warn};

use crate::cli::BrickArgs;
use crate::gluster::changelog::Reader;
use crate::gluster::htime::{ChangelogDir, History, HtimeEntry, HtimeError, HtimeTail};
use crate::proto::Role;
use crate::proto::changelog::{Changelog, HistoryAnswer, LiveRecords, MAX_FEED_FRAME, ToAgent, ToWorker, WINDOW};
use crate::proto::ctl::{Link, ToSupervisor};
use live::LiveTail;

/// How often the index is read when no notification comes.
pub const POLL: Duration = Duration::from_secs(1);

/// How often the current changelog is read while it is followed.
pub const LIVE_TICK: Duration = Duration::from_millis(500);

/// Rollover period assumed until the index shows the real one.
const DEFAULT_ROLLOVER: u64 = 15;

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A feed in progress.
#[derive(Debug)]
struct Feed {
    /// Rollover time of the last changelog sent (or the feed's start).
    cursor: u64,
    inflight: VecDeque<u64>,
    pending: VecDeque<HtimeEntry>,
    /// The sizes of the pending changelogs (in step with `pending`), and
    /// their sum: the brick's backlog in bytes.
    sizes: VecDeque<u64>,
    pending_bytes: u64,
    /// Changelogs that start a newer index (a journal gap before them).
    gaps: std::collections::BTreeSet<u64>,
    generation: u32,
    /// The changelog being written, when the worker follows it.
    live: Option<LiveTail>,
    /// A piece of it is with the worker.
    live_unacked: bool,
}

/// The agent's state, apart from its channels (so that it can be tested).
#[derive(Debug)]
pub struct Agent {
    dir: ChangelogDir,
    tail: HtimeTail,
    feed: Option<Feed>,
    /// The index could not be read; said once until it can be again.
    index_warned: bool,
    /// The newest rollover the index listed, and the last intervals
    /// between two listed rollovers (their median is the rollover period;
    /// explicit rollovers, at snapshots say, make a few short ones).
    last_index: u64,
    intervals: VecDeque<u64>,
    /// When the changelog directory was last compared with the index.
    last_check: u64,
    /// The oldest changelog on disk the index has not delivered, while the
    /// feed is stalled.
    stalled: Option<u64>,
}

impl Agent {
    pub fn new(dir: ChangelogDir) -> Agent {
        Agent {
            tail: HtimeTail::new(dir.clone()),
            dir,
            feed: None,
            index_warned: false,
            last_index: 0,
            intervals: VecDeque::new(),
            last_check: 0,
            stalled: None,
        }
    }

    /// Handles a request; returns what to send.
    pub fn handle(&mut self, req: ToAgent) -> Vec<ToWorker> {
        match req {
            ToAgent::History { start, end } => {
                let answer = match self.dir.htime_files() {
                    Ok(files) => history(&files, start, end),
                    Err(HtimeError::Io { .. }) => HistoryAnswer::NotAvailable { indexes: Vec::new() },
                    Err(e) => return vec![ToWorker::Broken(e.to_string())],
                };
                info!(start, end, answer = ?answer, "history");
                vec![ToWorker::History(answer)]
            }
            ToAgent::Feed { after, generation, live } => {
                info!(after, live, "feed requested");
                self.tail = HtimeTail::new(self.dir.clone());
                self.feed = Some(Feed {
                    generation,
                    cursor: after,
                    inflight: VecDeque::new(),
                    pending: VecDeque::new(),
                    sizes: VecDeque::new(),
                    pending_bytes: 0,
                    gaps: Default::default(),
                    live: live.then(|| LiveTail::new(&self.dir.root)),
                    live_unacked: false,
                });
                self.pump()
            }
            ToAgent::LiveAck => {
                if let Some(f) = &mut self.feed {
                    f.live_unacked = false;
                }
                self.pump()
            }
            ToAgent::Ack { ts } => {
                if let Some(f) = &mut self.feed {
                    f.inflight.retain(|t| *t > ts);
                }
                self.pump()
            }
        }
    }

    /// Reads what the index added and sends what the window allows.
    pub fn pump(&mut self) -> Vec<ToWorker> {
        self.pump_at(unix_now())
    }

    /// [`pump`](Agent::pump) at a given time (for tests).
    pub fn pump_at(&mut self, now: u64) -> Vec<ToWorker> {
        let Some(f) = &mut self.feed else { return Vec::new() };
        let mut out = Vec::new();
        // The current changelog is opened before the index is read (see
        // `live`): one opened after a rollover is then always preceded by
        // the rolled one.
        let idle = |f: &Feed| f.pending.is_empty() && f.inflight.is_empty() && !f.live_unacked;
        if idle(f)
            && let Some(t) = &mut f.live
        {
            t.open();
        }
        match self.tail.poll() {
            Ok(new) => {
                self.index_warned = false;
                for e in &new {
                    if self.last_index != 0 && e.ts > self.last_index {
                        let d = e.ts - self.last_index;
                        if self.intervals.len() == 15 {
                            self.intervals.pop_front();
                        }
                        self.intervals.push_back(d);
                    }
                    self.last_index = self.last_index.max(e.ts);
                }
                f.gaps.extend(self.tail.take_switches());
                enqueue(&self.dir, f, new);
            }
            Err(HtimeError::Io { path, source }) => {
                if !self.index_warned {
                    warn!(path = %path.display(), "cannot read the changelog index yet ({source}); is changelog.changelog on?");
                    self.index_warned = true;
                }
            }
            Err(e) => {
                error!("{e}");
                self.feed = None;
                return vec![ToWorker::Broken(e.to_string())];
            }
        }
        // The live feed must not stall silently: compare the changelog
        // directory with what the index delivered, once a rollover period.
        let rollover = {
            let mut v: Vec<u64> = self.intervals.iter().copied().collect();
            v.sort_unstable();
            v.get(v.len() / 2).copied().unwrap_or(DEFAULT_ROLLOVER).max(1)
        };
        if now >= self.last_check + rollover || now < self.last_check {
            self.last_check = now;
            let known = f.cursor.max(f.pending.back().map_or(0, |e| e.ts));
            let unlisted = self.dir.rolled_between(known, now.saturating_sub(3 * rollover));
            match (unlisted.first().map(|e| e.ts), self.stalled) {
                (None, Some(since)) => {
                    info!(since, "the changelog feed caught up again");
                    self.stalled = None;
                    out.push(ToWorker::Stalled { since: 0 });
                }
                (None, None) => {}
                (Some(oldest), None) => {
                    warn!(
                        oldest,
                        files = unlisted.len(),
                        "the changelog feed is stalled: the brick holds changelogs older than three rollover periods that the index did not deliver; reading the index again"
                    );
                    self.stalled = Some(oldest);
                    out.push(ToWorker::Stalled { since: oldest });
                    self.tail = HtimeTail::new(self.dir.clone());
                    if let Ok(all) = self.tail.poll() {
                        f.gaps.extend(self.tail.take_switches());
                        enqueue(&self.dir, f, all);
                    }
                }
                (Some(oldest), Some(_)) => {
                    warn!(
                        oldest,
                        files = unlisted.len(),
                        "the index still does not list them; feeding them from the changelog directory"
                    );
                    enqueue(&self.dir, f, unlisted);
                }
            }
        }
        while f.inflight.len() < WINDOW {
            let Some(e) = f.pending.pop_front() else { break };
            f.pending_bytes = f.pending_bytes.saturating_sub(f.sizes.pop_front().unwrap_or(0));
            let msg = match read(&self.dir, &e, f.live.as_mut()) {
                Ok(mut c) => {
                    c.generation = f.generation;
                    c.backlog = u32::try_from(f.pending.len()).unwrap_or(u32::MAX);
                    c.backlog_bytes = f.pending_bytes;
                    if f.gaps.remove(&e.ts) {
                        warn!(ts = e.ts, "a newer changelog index starts here: changelog was off before it");
                        c.gap_before = true;
                    }
                    c
                }
                Err(why) => {
                    error!("{why}");
                    self.feed = None;
                    out.push(ToWorker::Broken(why));
                    return out;
                }
            };
            f.cursor = e.ts;
            f.inflight.push_back(e.ts);
            out.push(ToWorker::Changelog(msg));
        }
        if idle(f)
            && let Some(t) = &mut f.live
        {
            let records = t.read();
            if !records.is_empty() {
                debug!(records = records.len(), "live changelog records");
                f.live_unacked = true;
                out.push(ToWorker::Live(LiveRecords { generation: f.generation, records }));
            }
        }
        out
    }

    /// How long the agent may sleep when nothing happens.
    pub fn tick(&self) -> Duration {
        if self.feed.as_ref().is_some_and(|f| f.live.is_some()) { LIVE_TICK } else { POLL }
    }
}

/// Queues entries after the last one queued or sent (the index and the
/// directory may both name a changelog).
fn enqueue(dir: &ChangelogDir, f: &mut Feed, entries: Vec<HtimeEntry>) {
    for e in entries {
        if e.ts > f.cursor.max(f.pending.back().map_or(0, |p| p.ts)) {
            let size =
                if e.empty { 0 } else { dir.locate(&e).and_then(|p| std::fs::metadata(p).ok()).map_or(0, |m| m.len()) };
            f.pending.push_back(e);
            f.sizes.push_back(size);
            f.pending_bytes += size;
        }
    }
}

/// libgfchangelog's answer for [start, end], with what a worker needs
/// beyond it: whether a later index starts after the answer ends (a span
/// without journal: changelog was off), and that a start at or after the
/// newest rollover of the current index is covered (nothing is missing;
/// live changelogs follow).
fn history(files: &[crate::gluster::htime::HtimeFile], start: u64, end: u64) -> HistoryAnswer {
    match crate::gluster::htime::select(files, start, end) {
        // Within the reference's 20 s slack a later index can already
        // exist: that is a gap too.
        History::Full { changelogs, actual_end } if files.iter().any(|f| f.created > actual_end) => {
            HistoryAnswer::Partial { actual_end, changelogs: count(&changelogs), gap: true }
        }
        History::Full { changelogs, actual_end } => HistoryAnswer::Full { actual_end, changelogs: count(&changelogs) },
        History::Partial { changelogs, actual_end } => HistoryAnswer::Partial {
            actual_end,
            changelogs: count(&changelogs),
            gap: files.iter().any(|f| f.created > actual_end),
        },
        History::NotAvailable { indexes, .. } => match files.iter().max_by_key(|f| f.created) {
            Some(newest) if start >= newest.created && start >= newest.max_ts() => {
                HistoryAnswer::Full { actual_end: start, changelogs: 0 }
            }
            _ => HistoryAnswer::NotAvailable { indexes },
        },
    }
}

fn count(v: &[HtimeEntry]) -> u32 {
    u32::try_from(v.len()).unwrap_or(u32::MAX)
}

/// One listed changelog, parsed; with how many of its records went out
/// live, when `live` followed it.
fn read(dir: &ChangelogDir, e: &HtimeEntry, mut live: Option<&mut LiveTail>) -> Result<Changelog, String> {
    let mut c = Changelog {
        ts: e.ts,
        path: e.path.clone(),
        records: Vec::new(),
        missing: false,
        size: 0,
        gap_before: false,
        generation: 0,
        backlog: 0,
        backlog_bytes: 0,
        live_records: 0,
    };
    if e.empty {
        if let Some(t) = live.as_mut() {
            t.rolled(None);
        }
        return Ok(c);
    }
    match dir.locate(e) {
        Some(p) => {
            c.records = Reader::open(&p).and_then(Reader::collect_records).map_err(|err| err.to_string())?;
            let m = std::fs::metadata(&p).ok();
            c.size = m.as_ref().map_or(0, std::fs::Metadata::len);
            if let Some(t) = live.as_mut() {
                use std::os::unix::fs::MetadataExt;
                let n = t.rolled(m.map(|m| (m.dev(), m.ino())));
                // Never more than the file holds, whatever happened to it.
                c.live_records = n.min(u32::try_from(c.records.len()).unwrap_or(u32::MAX));
                if n > 0 {
                    debug!(ts = e.ts, live = n, "rolled changelog was followed live");
                }
            }
            debug!(ts = e.ts, records = c.records.len(), "changelog");
        }
        None => {
            warn!(ts = e.ts, path = %String::from_utf8_lossy(&e.path), "listed changelog is missing");
            c.missing = true;
        }
    }
    Ok(c)
}

enum Ev {
    Req(ToAgent),
    WorkerGone(String),
    Stop,
    Index,
}

/// Wakes the agent when the htime directory changes.
fn watch(dir: &Path, tx: &mpsc::Sender<Ev>) {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let Ok(ino) = Inotify::init(InitFlags::IN_CLOEXEC) else {
        warn!("inotify is unavailable; polling the changelog index every second");
        return;
    };
    let flags = AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO;
    loop {
        // The directory appears when changelog is first turned on.
        if ino.add_watch(dir, flags).is_ok() {
            break;
        }
        std::thread::sleep(POLL * 5);
    }
    while ino.read_events().is_ok() {
        if tx.send(Ev::Index).is_err() {
            return;
        }
    }
}

pub fn run(_config_dir: &Path, args: &BrickArgs) -> anyhow::Result<()> {
    let link = Link::connect(Role::Agent)?;
    let r = serve(args, &link);
    link.report(r)
}

fn serve(args: &BrickArgs, link: &Link) -> anyhow::Result<()> {
    link.send(&ToSupervisor::Phase("connecting to the worker".into()))?;
    let feed = crate::proto::changelog::connect(Role::Agent)?;
    let dir = ChangelogDir::new(&args.brick);
    let (tx, rx) = mpsc::channel();
    link.spawn_stop_watch(tx.clone(), Ev::Stop)?;
    crate::proto::spawn_reader("worker", feed.try_clone()?, MAX_FEED_FRAME, tx.clone(), Ev::Req, Ev::WorkerGone)?;
    // Shutdown and SIGTERM come together from the supervisor.
    crate::sys::forward_termination(tx.clone(), Ev::Stop)?;
    {
        let d = dir.htime_dir();
        let tx = tx.clone();
        std::thread::Builder::new().name("inotify".into()).spawn(move || watch(&d, &tx))?;
    }
    drop(tx);
    link.send(&ToSupervisor::Ready)?;
    info!(brick = %args.brick.display(), changelogs = %dir.root.display(), "agent ready");

    let mut agent = Agent::new(dir);
    let mut out = feed;
    loop {
        let msgs = match rx.recv_timeout(agent.tick()) {
            Ok(Ev::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            Ok(Ev::WorkerGone(why)) => {
                info!("the worker {why}; stopping");
                return Ok(());
            }
            Ok(Ev::Req(r)) => agent.handle(r),
            Ok(Ev::Index) | Err(mpsc::RecvTimeoutError::Timeout) => agent.pump(),
        };
        for m in &msgs {
            crate::proto::send(&mut out, m, MAX_FEED_FRAME, "worker")?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gluster::changelog::{Entry, Header, Record, encode_record};
    use crate::gluster::fop::Fop;
    use crate::gluster::uuid::Uuid;
    use std::fs;
    use std::io::Write;

    struct Brick {
        dir: tempfile::TempDir,
    }

    impl Brick {
        fn new() -> Brick {
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir_all(dir.path().join(".glusterfs/changelogs/htime")).unwrap();
            Brick { dir }
        }
        fn root(&self) -> std::path::PathBuf {
            self.dir.path().join(".glusterfs/changelogs")
        }
        /// Rolls over a changelog with `n` data records at `ts` (listed in
        /// HTIME file `htime`), or an empty one.
        fn roll(&self, htime: u64, ts: u64, n: u8) {
            let path = self.write(ts, n);
            let mut f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.root().join(format!("htime/HTIME.{htime}")))
                .unwrap();
            f.write_all(path.as_os_str().as_encoded_bytes()).unwrap();
            f.write_all(b"\0").unwrap();
        }

        /// A rolled-over changelog file, not (yet) in the index.
        fn write(&self, ts: u64, n: u8) -> std::path::PathBuf {
            let (y, m, d) = crate::gluster::htime::civil_from_days(ts / 86_400);
            let ddir = self.root().join(format!("{y:04}/{m:02}/{d:02}"));
            fs::create_dir_all(&ddir).unwrap();
            let path = if n == 0 {
                ddir.join(format!("changelog.{ts}"))
            } else {
                let p = ddir.join(format!("CHANGELOG.{ts}"));
                let h = Header::V1_2_ASCII;
                let mut b = h.encode();
                for i in 0..n {
                    encode_record(&Record::Data { gfid: Uuid([i; 16]) }.as_ref(), &h, &mut b);
                }
                encode_record(
                    &Record::New {
                        gfid: Uuid([9; 16]),
                        fop: Fop::CREATE,
                        mode: 0o100644,
                        uid: 0,
                        gid: 0,
                        entry: Entry { parent: Uuid::ROOT, name: b"f".to_vec() },
                    }
                    .as_ref(),
                    &h,
                    &mut b,
                );
                fs::write(&p, b).unwrap();
                p
            };
            if n == 0 {
                fs::write(&path, b"").unwrap();
            }
            path
        }
    }

    fn changelogs(v: &[ToWorker]) -> Vec<(u64, usize, bool)> {
        v.iter()
            .map(|m| match m {
                ToWorker::Changelog(c) => (c.ts, c.records.len(), c.missing),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn feeds_history_then_live_in_order_within_the_window() {
        let b = Brick::new();
        for i in 0..20 {
            b.roll(1000, 1015 + i * 15, (i % 3) as u8);
        }
        let mut a = Agent::new(ChangelogDir::new(b.dir.path()));
        // After 1015 + 2*15: the rest, at most WINDOW at once.
        let out = a.handle(ToAgent::Feed { after: 1045, generation: 1, live: false });
        // Each changelog says what is left behind it: 17 changelogs after
        // 1045, a window of 16 sent; the one left holds records.
        let Some(ToWorker::Changelog(last)) = out.last() else { panic!("{out:?}") };
        assert_eq!(last.backlog, 1);
        assert!(last.backlog_bytes > 0);
        let first = changelogs(&out);
        assert_eq!(first.len(), WINDOW);
        assert_eq!(first[0], (1060, 0, false), "an empty changelog is fed, with no records");
        assert_eq!(first[1], (1075, 2, false), "a data record and a create");
        assert!(first.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(a.pump().is_empty(), "window full");
        let last_ts = first[WINDOW - 1].0;
        let rest = changelogs(&a.handle(ToAgent::Ack { ts: last_ts }));
        assert_eq!(rest.first().map(|c| c.0), Some(last_ts + 15));
        assert_eq!(rest.last().map(|c| c.0), Some(1015 + 19 * 15));
        // Live: appended entries, then a new HTIME file.
        b.roll(1000, 1400, 2);
        assert_eq!(changelogs(&a.pump()), [(1400, 3, false)]);
        b.roll(1500, 1515, 1);
        b.roll(1500, 1530, 0);
        let out = a.pump();
        assert_eq!(changelogs(&out), [(1515, 2, false), (1530, 0, false)]);
        // A newer index (changelog off, then on): the worker must crawl the
        // span before its first changelog.
        let gaps: Vec<bool> = out
            .iter()
            .map(|m| match m {
                ToWorker::Changelog(c) => c.gap_before,
                _ => false,
            })
            .collect();
        assert_eq!(gaps, [true, false]);
        assert!(a.pump().is_empty());
    }

    #[test]
    fn follows_the_current_changelog_once_caught_up_and_counts_it_at_the_rollover() {
        let b = Brick::new();
        b.roll(1000, 1015, 1);
        let h = Header::V1_2_ASCII;
        let cur = b.root().join(live::CURRENT);
        let data = |i: u8| {
            let mut v = Vec::new();
            encode_record(&Record::Data { gfid: Uuid([i; 16]) }.as_ref(), &h, &mut v);
            v
        };
        fs::write(&cur, [h.encode(), data(1), data(2)].concat()).unwrap();
        let mut a = Agent::new(ChangelogDir::new(b.dir.path()));
        // The rolled one first; nothing live while it is unacknowledged.
        let out = a.handle(ToAgent::Feed { after: 1000, generation: 3, live: true });
        assert_eq!(changelogs(&out), [(1015, 2, false)]);
        assert!(a.pump().is_empty());
        let out = a.handle(ToAgent::Ack { ts: 1015 });
        let [ToWorker::Live(l)] = &out[..] else { panic!("{out:?}") };
        assert_eq!((l.generation, l.records.len()), (3, 2));
        // One piece at a time.
        fs::OpenOptions::new().append(true).open(&cur).unwrap().write_all(&data(3)).unwrap();
        assert!(a.pump().is_empty());
        let out = a.handle(ToAgent::LiveAck);
        let [ToWorker::Live(l)] = &out[..] else { panic!("{out:?}") };
        assert_eq!(l.records, [Record::Data { gfid: Uuid([3; 16]) }]);
        // The rollover: one more record, renamed, listed; the next file is
        // already there. The rolled one says how much of it went live, and
        // comes before anything of the next.
        fs::OpenOptions::new().append(true).open(&cur).unwrap().write_all(&data(4)).unwrap();
        let (y, m, d) = crate::gluster::htime::civil_from_days(1030 / 86_400);
        let rolled = b.root().join(format!("{y:04}/{m:02}/{d:02}/CHANGELOG.1030"));
        fs::rename(&cur, &rolled).unwrap();
        let mut ht = fs::OpenOptions::new().append(true).open(b.root().join("htime/HTIME.1000")).unwrap();
        ht.write_all(rolled.as_os_str().as_encoded_bytes()).unwrap();
        ht.write_all(b"\0").unwrap();
        fs::write(&cur, [h.encode(), data(5)].concat()).unwrap();
        let out = a.handle(ToAgent::LiveAck);
        let [ToWorker::Changelog(c)] = &out[..] else { panic!("{out:?}") };
        assert_eq!((c.ts, c.records.len(), c.live_records), (1030, 4, 3));
        let out = a.handle(ToAgent::Ack { ts: 1030 });
        let [ToWorker::Live(l)] = &out[..] else { panic!("{out:?}") };
        assert_eq!(l.records, [Record::Data { gfid: Uuid([5; 16]) }]);
        // Without `live`, nothing of it.
        let mut a = Agent::new(ChangelogDir::new(b.dir.path()));
        assert_eq!(changelogs(&a.handle(ToAgent::Feed { after: 1000, generation: 1, live: false })).len(), 2);
        assert!(a.handle(ToAgent::Ack { ts: 1030 }).is_empty());
    }

    #[test]
    fn history_answers_and_missing_files() {
        let b = Brick::new();
        for i in 0..5 {
            b.roll(1000, 1015 + i * 15, 1);
        }
        let mut a = Agent::new(ChangelogDir::new(b.dir.path()));
        assert_eq!(
            a.handle(ToAgent::History { start: 1020, end: 1060 }),
            [ToWorker::History(HistoryAnswer::Full { actual_end: 1060, changelogs: 3 })]
        );
        assert!(matches!(
            a.handle(ToAgent::History { start: 1020, end: 5000 })[0],
            ToWorker::History(HistoryAnswer::Partial { actual_end: 1075, .. })
        ));
        assert!(matches!(
            a.handle(ToAgent::History { start: 10, end: 20 })[0],
            ToWorker::History(HistoryAnswer::NotAvailable { .. })
        ));
        // A listed changelog that was removed is fed as missing.
        let (y, m, d) = crate::gluster::htime::civil_from_days(1030 / 86_400);
        fs::remove_file(b.root().join(format!("{y:04}/{m:02}/{d:02}/CHANGELOG.1030"))).unwrap();
        let c = changelogs(&a.handle(ToAgent::Feed { after: 1015, generation: 1, live: false }));
        assert_eq!(c[0], (1030, 0, true));
        // A corrupt one breaks the feed, with the reason.
        fs::write(b.root().join(format!("{y:04}/{m:02}/{d:02}/CHANGELOG.1045")), b"garbage\n").unwrap();
        let out = a.handle(ToAgent::Feed { after: 1030, generation: 1, live: false });
        assert!(matches!(&out[0], ToWorker::Broken(why) if why.contains("CHANGELOG.1045")), "{out:?}");
    }

    #[test]
    fn a_stalled_index_is_reported_and_recovered_from_the_directory() {
        let b = Brick::new();
        for i in 0..4 {
            b.roll(1000, 1015 + i * 15, 1);
        }
        let mut a = Agent::new(ChangelogDir::new(b.dir.path()));
        let fed = changelogs(&a.handle(ToAgent::Feed { after: 1000, generation: 1, live: false }));
        assert_eq!(fed.len(), 4);
        a.handle(ToAgent::Ack { ts: 1060 });
        // The translator wrote two more changelogs but the index never
        // listed them.
        b.write(1075, 1);
        b.write(1090, 0);
        // Within three rollover periods: not yet a stall.
        assert!(a.pump_at(1100).is_empty());
        // Later: reported, the index read again (still without them) ...
        assert_eq!(a.pump_at(1200), [ToWorker::Stalled { since: 1075 }]);
        // ... then fed from the directory, in order.
        assert_eq!(changelogs(&a.pump_at(1215)), [(1075, 2, false), (1090, 0, false)]);
        // Delivered: the stall is over.
        assert_eq!(a.handle(ToAgent::Ack { ts: 1090 }), [ToWorker::Stalled { since: 0 }]);
        // When the index lists them after all, nothing is fed twice.
        b.roll(1000, 1075, 1);
        b.roll(1000, 1090, 0);
        b.roll(1000, 1105, 1);
        assert_eq!(changelogs(&a.pump_at(1230)), [(1105, 2, false)]);
    }

    #[test]
    fn history_names_gaps_and_an_idle_tail() {
        let b = Brick::new();
        for i in 0..4 {
            b.roll(1000, 1015 + i * 15, 1);
        }
        let mut a = Agent::new(ChangelogDir::new(b.dir.path()));
        // Nothing rolled over after the start yet: covered, nothing missing.
        assert_eq!(
            a.handle(ToAgent::History { start: 1060, end: 1070 }),
            [ToWorker::History(HistoryAnswer::Full { actual_end: 1060, changelogs: 0 })]
        );
        // Changelog off after 1060, on again at 1200: a new index; what
        // happened in between is not journaled.
        b.roll(1200, 1215, 1);
        for end in [1070, 1300] {
            assert!(
                matches!(
                    a.handle(ToAgent::History { start: 1020, end })[0],
                    ToWorker::History(HistoryAnswer::Partial { gap: true, .. })
                ),
                "end {end}"
            );
        }
        assert!(matches!(
            a.handle(ToAgent::History { start: 1205, end: 1215 })[0],
            ToWorker::History(HistoryAnswer::Full { .. })
        ));
    }

    #[test]
    fn no_index_yet_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Agent::new(ChangelogDir::new(dir.path()));
        assert!(a.handle(ToAgent::Feed { after: 0, generation: 1, live: false }).is_empty());
        assert!(a.pump().is_empty());
    }
}
