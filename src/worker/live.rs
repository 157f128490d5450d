//! Replaying the changelog the translator is still writing, and then not
//! replaying it twice when it rolls over (`live-changelog`).
//!
//! Every record waits [`SETTLE`] before it is replayed: most files are
//! complete by then, and the files an application wrote and renamed over
//! within that time are left out of the replay altogether (see
//! [`super::elide`]; a convergence figure is bounded by the data records'
//! wait anyway). Entry records are not replayed again when the rolled
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

/// How long a live record waits before it is replayed.
pub const SETTLE: Duration = Duration::from_secs(2);

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
    /// Records not replayed yet, with when they arrived: the newest
    /// records of the changelog being written, in its order.
    waiting: VecDeque<(Instant, Record)>,
    /// When each inode's data or metadata was last read for a live replay.
    read_at: HashMap<(Gfid, Kind), SystemTime>,
}

impl Live {
    /// Takes new records; they wait [`SETTLE`].
    pub fn arrive(&mut self, records: Vec<Record>, now: Instant) {
        self.waiting.extend(records.into_iter().map(|r| (now, r)));
    }

    /// The waiting records that have settled by `now`.
    pub fn settled(&mut self, now: Instant) -> Vec<Record> {
        let mut out = Vec::new();
        while self.waiting.front().is_some_and(|(t, _)| now.duration_since(*t) >= SETTLE) {
            if let Some((_, r)) = self.waiting.pop_front() {
                out.push(r);
            }
        }
        out
    }

    /// When the oldest waiting record settles.
    pub fn next_due(&self) -> Option<Instant> {
        self.waiting.front().map(|(t, _)| *t + SETTLE)
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
        // What waits is the newest of what came live.
        let replayed = live.saturating_sub(self.waiting.len());
        let mut out = Rolled { records: Vec::with_capacity(records.len().saturating_sub(live)), skipped: 0, again: 0 };
        for (i, r) in records.iter().enumerate() {
            let keep = i >= replayed
                || match kind(r) {
                    None => false,
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
        assert!(l.settled(t + Duration::from_secs(1)).is_empty());
        assert_eq!(l.next_due(), Some(t + SETTLE));
        let ready = l.settled(t + SETTLE);
        assert_eq!(ready, recs, "in the changelog's order");
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
