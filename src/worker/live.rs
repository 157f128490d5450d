//! Replaying the changelog the translator is still writing, and then not
//! replaying it twice when it rolls over (`live-changelog`).
//!
//! Entry records wait [`ENTRY_SETTLE`] before they are replayed, so that
//! the files an application wrote and renamed over within that time are
//! left out of the replay altogether (see [`super::elide`]); data and
//! metadata records wait [`SETTLE`], as most files are complete by then.
//! Entry records are not replayed again when the rolled
//! changelog repeats them. The translator writes a data or metadata record
//! only for the first change of an inode in a rollover period: a file
//! written again after the worker read it has no second record. So the
//! rolled changelog replays a data or metadata record again unless the
//! inode has not changed since well before it was read: the brick's own
//! inode (through its `.glusterfs` link, which costs the volume nothing)
//! must carry a change time more than [`CTIME_SLACK`] before the read
//! began. The slack covers file systems whose timestamps are coarse (to the
//! second at worst), and the clock tick the kernel stamps them with.

use std::collections::{HashMap, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::gluster::changelog::Record;
use crate::gluster::uuid::Gfid;

/// How long a live data or metadata record waits before it is replayed.
pub const SETTLE: Duration = Duration::from_secs(2);

/// How long a live entry record waits before it is replayed.
pub const ENTRY_SETTLE: Duration = Duration::from_millis(1000);

/// A change time this much before a read is certainly seen by the read.
pub const CTIME_SLACK: Duration = Duration::from_millis(1100);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Data,
    Meta,
}

fn kind(r: &Record) -> Option<(Gfid, Kind)> {
    match r {
        Record::Data { gfid } => Some((*gfid, Kind::Data)),
        Record::Meta { gfid, .. } => Some((*gfid, Kind::Meta)),
        _ => None,
    }
}

/// What is left to replay of a rolled changelog that was followed live.
#[derive(Debug)]
pub struct Rolled {
    pub records: Vec<Record>,
    /// Records left out: replayed live, and unchanged since.
    pub skipped: usize,
    /// Data and metadata records replayed live that are replayed again
    /// (the inode may have changed since).
    pub again: usize,
}

/// The worker's state of the changelog being written.
#[derive(Debug, Default)]
pub struct Live {
    /// Entry records not replayed yet, with when they arrived: the newest
    /// entry records of the changelog being written, in its order.
    entries: VecDeque<(Instant, Record)>,
    /// Data and metadata records not replayed yet, likewise.
    waiting: VecDeque<(Instant, Record)>,
    /// When each inode's data or metadata was last read for a live replay.
    read_at: HashMap<(Gfid, Kind), SystemTime>,
}

fn due(q: &mut VecDeque<(Instant, Record)>, now: Instant, wait: Duration, out: &mut Vec<Record>) {
    while q.front().is_some_and(|(t, _)| now.duration_since(*t) >= wait) {
        if let Some((_, r)) = q.pop_front() {
            out.push(r);
        }
    }
}

impl Live {
    /// Takes new records; entries wait [`ENTRY_SETTLE`], data and
    /// metadata [`SETTLE`].
    pub fn arrive(&mut self, records: Vec<Record>, now: Instant) {
        for r in records {
            if kind(&r).is_some() {
                self.waiting.push_back((now, r));
            } else {
                self.entries.push_back((now, r));
            }
        }
    }

    /// The waiting records that are due by `now`: entries (in the
    /// changelog's order), then data and metadata.
    pub fn settled(&mut self, now: Instant) -> Vec<Record> {
        let mut out = Vec::new();
        due(&mut self.entries, now, ENTRY_SETTLE, &mut out);
        due(&mut self.waiting, now, SETTLE, &mut out);
        out
    }

    /// When the next waiting record is due.
    pub fn next_due(&self) -> Option<Instant> {
        let e = self.entries.front().map(|(t, _)| *t + ENTRY_SETTLE);
        let d = self.waiting.front().map(|(t, _)| *t + SETTLE);
        e.into_iter().chain(d).min()
    }

    /// The inodes of `records` are read from now on (`at`, taken before).
    pub fn reading(&mut self, records: &[Record], at: SystemTime) {
        for k in records.iter().filter_map(kind) {
            self.read_at.insert(k, at);
        }
    }

    /// The records of a rolled changelog still to replay, when its first
    /// `live` records came live: those after them, those still waiting,
    /// and of the ones replayed the data and metadata records whose inode
    /// may have changed since (`ctime`: the change time of a regular
    /// file's inode on the brick, `None` when there is no such file). The
    /// live state is done with.
    pub fn rolled(&mut self, records: &[Record], live: usize, ctime: impl Fn(&Gfid) -> Option<SystemTime>) -> Rolled {
        // The entries that still wait are the newest that came live.
        let live = live.min(records.len());
        let live_entries = records[..live].iter().filter(|r| kind(r).is_none()).count();
        let replayed = live_entries.saturating_sub(self.entries.len());
        let mut entry = 0;
        let mut out = Rolled { records: Vec::with_capacity(records.len().saturating_sub(live)), skipped: 0, again: 0 };
        for (i, r) in records.iter().enumerate() {
            let keep = i >= live
                || match kind(r) {
                    None => {
                        entry += 1;
                        entry > replayed
                    }
                    Some(k) => match self.read_at.get(&k) {
                        Some(read) => {
                            let again = ctime(&k.0).is_none_or(|changed| changed + CTIME_SLACK >= *read);
                            out.again += usize::from(again);
                            again
                        }
                        None => true,
                    },
                };
            if keep {
                out.records.push(r.clone());
            } else {
                out.skipped += 1;
            }
        }
        self.clear();
        out
    }

    /// Forgets everything: a rolled changelog holds it all.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.waiting.clear();
        self.read_at.clear();
    }
}

/// The change time of the regular file `g` on the brick, through its
/// `.glusterfs` link (no volume traffic); `None` for anything else.
pub fn brick_ctime(brick: &Path, g: &Gfid) -> Option<SystemTime> {
    let m = std::fs::symlink_metadata(crate::gluster::backend::gfid_link(brick, g)).ok()?;
    if !m.file_type().is_file() {
        return None;
    }
    let secs = u64::try_from(m.ctime()).ok()?;
    let nanos = u32::try_from(m.ctime_nsec()).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gluster::changelog::Entry;
    use crate::gluster::fop::Fop;
    use crate::gluster::uuid::Uuid;

    fn g(i: u8) -> Gfid {
        Uuid([i; 16])
    }

    fn create(i: u8) -> Record {
        Record::New {
            gfid: g(i),
            fop: Fop::CREATE,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            entry: Entry { parent: Uuid::ROOT, name: vec![b'a' + i] },
        }
    }

    #[test]
    fn records_settle_and_the_rollover_replays_only_what_changed() {
        let mut l = Live::default();
        let t = Instant::now();
        let recs = vec![create(1), Record::Data { gfid: g(1) }, create(2), Record::Data { gfid: g(2) }];
        l.arrive(recs.clone(), t);
        assert!(l.settled(t + ENTRY_SETTLE / 2).is_empty());
        assert_eq!(l.next_due(), Some(t + ENTRY_SETTLE));
        assert_eq!(l.settled(t + ENTRY_SETTLE), [create(1), create(2)], "entries first, in order");
        assert_eq!(l.next_due(), Some(t + SETTLE));
        let ready = l.settled(t + SETTLE);
        assert_eq!(ready, [Record::Data { gfid: g(1) }, Record::Data { gfid: g(2) }]);
        let read = UNIX_EPOCH + Duration::from_secs(1000);
        l.reading(&ready, read);
        // Records that still wait at the rollover.
        l.arrive(vec![Record::Meta { gfid: g(1), fop: Fop::SETATTR }, create(4)], t + SETTLE);
        let mut rolled = recs;
        rolled.push(Record::Meta { gfid: g(1), fop: Fop::SETATTR });
        rolled.push(create(4));
        rolled.push(create(3));
        // g1 last changed well before the read; g2 changed within the
        // slack (it may have been written after the read began).
        let ctime =
            |x: &Gfid| Some(if *x == g(1) { read - Duration::from_secs(5) } else { read - Duration::from_millis(500) });
        let r = l.rolled(&rolled, 6, ctime);
        assert_eq!(
            r.records,
            [Record::Data { gfid: g(2) }, Record::Meta { gfid: g(1), fop: Fop::SETATTR }, create(4), create(3)],
            "entries replayed live are not replayed again, waiting ones are; g1's data is not sent again"
        );
        assert_eq!((r.skipped, r.again), (3, 1));
        assert_eq!(l.next_due(), None, "the rollover holds what still waited");
        // With no live state, nothing is left out but the live entries.
        let r = l.rolled(&rolled, 2, |_| Some(read));
        assert_eq!(r.records.len(), rolled.len() - 1);
        // Not a regular file on the brick (a directory, or gone): replayed.
        l.reading(&[Record::Data { gfid: g(1) }], read);
        let r = l.rolled(&[Record::Data { gfid: g(1) }], 1, |_| None);
        assert_eq!((r.records.len(), r.again), (1, 1));
    }

    #[test]
    fn brick_ctime_is_of_regular_files_only() {
        let b = tempfile::tempdir().unwrap();
        let f = crate::gluster::backend::gfid_link(b.path(), &g(7));
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        assert_eq!(brick_ctime(b.path(), &g(7)), None);
        std::fs::write(&f, b"x").unwrap();
        let c = brick_ctime(b.path(), &g(7)).unwrap();
        assert!(c <= SystemTime::now() && c > SystemTime::now() - Duration::from_secs(60));
        std::fs::remove_file(&f).unwrap();
        std::os::unix::fs::symlink("../../x", &f).unwrap();
        assert_eq!(brick_ctime(b.path(), &g(7)), None);
    }
}
