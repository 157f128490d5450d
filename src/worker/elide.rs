//! Files that are born and displaced within the records of one replay
//! need not be made on the secondary at all.
//!
//! The pattern is the rename storm that leaves the reference hours behind:
//! an application writes `name.tmp` and renames it over `name`, again and
//! again. Within one batch (or one piece of the live changelog), every
//! `name.tmp` but the last is created, renamed over `name`, and displaced
//! by the next one. Replaying that faithfully costs the secondary a create,
//! a rename and their lookups per file, for files that do not exist on the
//! primary any more.
//!
//! A regular file, device or fifo `g` (never a directory, a symlink or a
//! hard link) is left out when its records in the run are exactly:
//!
//! * `CREATE`/`MKNOD` at a name `n0`, then the name `n0` is taken over by a
//!   `RENAME` of another inode onto it, or `g` is unlinked at `n0` (when
//!   deletes are replayed); or
//! * `CREATE`/`MKNOD` at `n0`, one `RENAME` of `g` from `n0` to `n1`, then
//!   `n1` is taken over by a `RENAME` of another inode onto it.
//!
//! Replaying the rest gives the secondary the same names: whatever `g`
//! displaced at `n1` (if anything) is displaced by the rename that displaced
//! `g`, and `n0` was empty before `g` was created. A second rename of `g`
//! disqualifies it (what it displaced at the middle name would stay), and
//! so does an unlink after a rename, a hard link, or any record that does
//! not fit the model of the names (a conservative answer: the records are
//! then replayed as they are).
//!
//! In place of `g`'s records one `UNLINK` of `g` at `n0` is replayed at its
//! creation's place. On a secondary that had none of the run (the normal
//! case) it is a single failed lookup; on one that already had part of it
//! (the run is replayed again after a crash) it removes `g` where a first
//! attempt left it before its rename: `g`'s own rename, which would have
//! moved it on, is not replayed. The data and metadata records of `g` are
//! kept: they find no file on the primary and cost a lookup each.

use std::collections::{HashMap, HashSet};

use crate::gluster::changelog::{Entry, Record};
use crate::gluster::fop::Fop;
use crate::gluster::uuid::Gfid;

#[derive(Debug)]
struct Candidate {
    /// Index of its creation record, and the name it was created at.
    created: usize,
    n0: Entry,
    /// Where it is now.
    at: Entry,
    renamed: bool,
    /// Displaced (or unlinked at its first name).
    dead: bool,
    /// Did something the model does not cover: replayed as recorded.
    bad: bool,
    /// Its own entry records.
    records: Vec<usize>,
}

/// What [`elide`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Elided {
    /// Files left out.
    pub files: usize,
    /// Entry records left out (their cleanup unlinks not counted).
    pub records: usize,
}

/// The records of a run with the entry records of files born and displaced
/// within it replaced by one cleanup unlink each (see the module docs).
/// `deletes`: unlinks are replayed (`ignore-deletes` is off); when they
/// are not, nothing is left out, as the cleanup itself is an unlink.
pub fn elide(records: Vec<Record>, deletes: bool) -> (Vec<Record>, Elided) {
    if !deletes {
        return (records, Elided::default());
    }
    let mut cands: HashMap<Gfid, Candidate> = HashMap::new();
    // Names held by live candidates.
    let mut holder: HashMap<Entry, Gfid> = HashMap::new();
    // A record touched a candidate's name in a way the model does not cover.
    let spoil = |cands: &mut HashMap<Gfid, Candidate>, holder: &HashMap<Entry, Gfid>, name: &Entry| {
        if let Some(c) = holder.get(name).and_then(|g| cands.get_mut(g)) {
            c.bad = true;
        }
    };
    for (i, r) in records.iter().enumerate() {
        match r {
            Record::New { gfid, fop, entry, .. } => {
                spoil(&mut cands, &holder, entry);
                if let Some(c) = cands.get_mut(gfid) {
                    c.bad = true;
                } else if *fop != Fop::MKDIR {
                    cands.insert(
                        *gfid,
                        Candidate {
                            created: i,
                            n0: entry.clone(),
                            at: entry.clone(),
                            renamed: false,
                            dead: false,
                            bad: false,
                            records: vec![i],
                        },
                    );
                    holder.insert(entry.clone(), *gfid);
                }
            }
            Record::Link { gfid, entry, .. } => {
                spoil(&mut cands, &holder, entry);
                if let Some(c) = cands.get_mut(gfid) {
                    c.bad = true;
                }
            }
            Record::Rename { gfid, from, to } => {
                if from == to {
                    if let Some(c) = cands.get_mut(gfid) {
                        c.bad = true;
                    }
                    continue;
                }
                // The destination's holder is displaced.
                if let Some(o) = holder.get(to).copied()
                    && o != *gfid
                {
                    holder.remove(to);
                    if let Some(c) = cands.get_mut(&o) {
                        c.dead = true;
                    }
                }
                match cands.get_mut(gfid) {
                    Some(c) if !c.bad && !c.dead && !c.renamed && c.at == *from => {
                        holder.remove(from);
                        holder.insert(to.clone(), *gfid);
                        c.at = to.clone();
                        c.renamed = true;
                        c.records.push(i);
                    }
                    Some(c) => c.bad = true,
                    // Another inode moved off a name a candidate holds.
                    None => spoil(&mut cands, &holder, from),
                }
            }
            Record::Delete { gfid, entry, .. } => match cands.get_mut(gfid) {
                Some(c) if !c.bad && !c.dead && !c.renamed && c.at == *entry => {
                    holder.remove(entry);
                    c.dead = true;
                    c.records.push(i);
                }
                Some(c) => c.bad = true,
                None => spoil(&mut cands, &holder, entry),
            },
            Record::Data { .. } | Record::Meta { .. } => {}
        }
    }
    let mut drop: HashSet<usize> = HashSet::new();
    let mut cleanup: HashMap<usize, (Gfid, Entry)> = HashMap::new();
    let mut out = Elided::default();
    for (g, c) in cands {
        if c.dead && !c.bad {
            out.files += 1;
            out.records += c.records.len();
            drop.extend(c.records);
            cleanup.insert(c.created, (g, c.n0));
        }
    }
    if out.files == 0 {
        return (records, out);
    }
    let mut kept = Vec::with_capacity(records.len() - out.records + out.files);
    for (i, r) in records.into_iter().enumerate() {
        if let Some((gfid, entry)) = cleanup.remove(&i) {
            kept.push(Record::Delete { gfid, fop: Fop::UNLINK, entry, path: Vec::new() });
        } else if !drop.contains(&i) {
            kept.push(r);
        }
    }
    (kept, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn g(n: u8) -> Gfid {
        let mut b = [0u8; 16];
        b[0] = 0xaa;
        b[15] = n;
        Gfid::from_bytes(&b).unwrap()
    }

    const DIR: u8 = 200;

    fn name(n: u8) -> Entry {
        Entry { parent: g(DIR), name: format!("f{n}").into_bytes() }
    }

    fn create(f: u8, n: u8) -> Record {
        Record::New { gfid: g(f), fop: Fop::CREATE, mode: 0o100_644, uid: 0, gid: 0, entry: name(n) }
    }

    fn rename(f: u8, a: u8, b: u8) -> Record {
        Record::Rename { gfid: g(f), from: name(a), to: name(b) }
    }

    fn unlink(f: u8, n: u8) -> Record {
        Record::Delete { gfid: g(f), fop: Fop::UNLINK, entry: name(n), path: Vec::new() }
    }

    fn link(f: u8, n: u8) -> Record {
        Record::Link { gfid: g(f), fop: Fop::LINK, entry: name(n) }
    }

    #[test]
    fn a_rename_storm_keeps_only_its_last_file() {
        // name 0 is the target; 10.. are the temporary names.
        let mut rs = vec![];
        for f in 1..=5 {
            rs.push(create(f, 10 + f));
            rs.push(Record::Data { gfid: g(f) });
            rs.push(rename(f, 10 + f, 0));
        }
        let (kept, e) = elide(rs, true);
        assert_eq!(e, Elided { files: 4, records: 8 });
        let mut want = vec![];
        for f in 1..=4 {
            want.push(unlink(f, 10 + f));
            want.push(Record::Data { gfid: g(f) });
        }
        want.extend([create(5, 15), Record::Data { gfid: g(5) }, rename(5, 15, 0)]);
        assert_eq!(kept, want);
    }

    #[test]
    fn what_the_model_does_not_cover_is_kept() {
        // Two renames: what it displaced at the middle name would stay.
        let two = vec![create(1, 1), rename(1, 1, 2), rename(1, 2, 3), rename(2, 9, 3)];
        assert_eq!(elide(two.clone(), true).0, two);
        // Unlinked after a rename: what it displaced would stay.
        let un = vec![create(1, 1), rename(1, 1, 2), unlink(1, 2)];
        assert_eq!(elide(un.clone(), true).0, un);
        // A hard link gives it another name.
        let hl = vec![create(1, 1), link(1, 5), rename(2, 9, 1)];
        assert_eq!(elide(hl.clone(), true).0, hl);
        // Never displaced.
        let alive = vec![create(1, 1), rename(1, 1, 2)];
        assert_eq!(elide(alive.clone(), true).0, alive);
        // A directory.
        let d = vec![
            Record::New { gfid: g(1), fop: Fop::MKDIR, mode: 0o40_755, uid: 0, gid: 0, entry: name(1) },
            rename(2, 9, 1),
        ];
        assert_eq!(elide(d.clone(), true).0, d);
        // Deletes not replayed: nothing is left out.
        let c = vec![create(1, 1), unlink(1, 1)];
        assert_eq!(elide(c.clone(), false).0, c);
        assert_eq!(elide(c, true).0, vec![unlink(1, 1)]);
    }

    // ------------------------------------------------------------ model check

    /// A namespace: names to inodes.
    type Names = BTreeMap<Entry, Gfid>;

    /// Operations an application does on the primary.
    #[derive(Debug, Clone)]
    enum Act {
        Create(u8),
        Rename(u8, u8),
        Unlink(u8),
        Link(u8, u8),
        Write(u8),
    }

    fn act() -> impl Strategy<Value = Act> {
        let n = 0u8..6;
        prop_oneof![
            3 => n.clone().prop_map(Act::Create),
            4 => (n.clone(), n.clone()).prop_map(|(a, b)| Act::Rename(a, b)),
            1 => n.clone().prop_map(Act::Unlink),
            1 => (n.clone(), n.clone()).prop_map(|(a, b)| Act::Link(a, b)),
            1 => n.prop_map(Act::Write),
        ]
    }

    /// Runs the acts on a primary that starts with `start`, recording what
    /// the changelog would (acts that would fail are not done).
    fn primary(start: &Names, acts: &[Act], next: &mut u8) -> (Names, Vec<Record>) {
        let mut ns = start.clone();
        let mut rs = vec![];
        for a in acts {
            match *a {
                Act::Create(n) if !ns.contains_key(&name(n)) => {
                    *next += 1;
                    ns.insert(name(n), g(*next));
                    rs.push(create(*next, n));
                }
                Act::Rename(a, b) if a != b => {
                    if let Some(f) = ns.get(&name(a)).copied() {
                        // Onto another name of the same inode: nothing
                        // happens (POSIX), and nothing is recorded.
                        if ns.get(&name(b)) != Some(&f) {
                            ns.remove(&name(a));
                            ns.insert(name(b), f);
                            rs.push(rename(f.0[15], a, b));
                        }
                    }
                }
                Act::Unlink(n) => {
                    if let Some(f) = ns.remove(&name(n)) {
                        rs.push(unlink(f.0[15], n));
                    }
                }
                Act::Link(a, b) if !ns.contains_key(&name(b)) => {
                    if let Some(f) = ns.get(&name(a)).copied() {
                        ns.insert(name(b), f);
                        rs.push(link(f.0[15], b));
                    }
                }
                Act::Write(n) => {
                    if let Some(f) = ns.get(&name(n)) {
                        rs.push(Record::Data { gfid: *f });
                    }
                }
                _ => {}
            }
        }
        (ns, rs)
    }

    /// Replays records the way the secondary does, tolerating a state
    /// that already holds part of them: a create whose inode exists links
    /// it; a rename whose source is not there makes the destination hold
    /// the inode if the primary still has it (`alive`); an unlink removes
    /// the name only if it holds the inode.
    fn replay(ns: &mut Names, rs: &[Record], alive: &HashSet<Gfid>) {
        let exists = |ns: &Names, f: &Gfid| ns.values().any(|v| v == f);
        for r in rs {
            match r {
                Record::New { gfid, entry, .. } | Record::Link { gfid, entry, .. } => {
                    if !ns.contains_key(entry) && (exists(ns, gfid) || matches!(r, Record::New { .. })) {
                        ns.insert(entry.clone(), *gfid);
                    }
                }
                Record::Rename { gfid, from, to } => {
                    if ns.get(to) == Some(gfid) {
                        // Already there (a first attempt did it).
                        if ns.get(from) == Some(gfid) {
                            ns.remove(from);
                        }
                    } else if ns.get(from) == Some(gfid) {
                        ns.remove(from);
                        ns.insert(to.clone(), *gfid);
                    } else if alive.contains(gfid) {
                        ns.insert(to.clone(), *gfid);
                    }
                }
                Record::Delete { gfid, entry, .. } => {
                    if ns.get(entry) == Some(gfid) {
                        ns.remove(entry);
                    }
                }
                Record::Data { .. } | Record::Meta { .. } => {}
            }
        }
    }

    proptest! {
        /// The secondary ends with the primary's names whether the run is
        /// replayed as recorded or elided, from a consistent start and
        /// after a crash part-way through a first attempt.
        #[test]
        fn elided_runs_leave_the_same_names(
            before in proptest::collection::vec(act(), 0..8),
            acts in proptest::collection::vec(act(), 0..40),
            crash in 0usize..60,
        ) {
            let mut next = 0;
            let (start, _) = primary(&Names::new(), &before, &mut next);
            let (end, rs) = primary(&start, &acts, &mut next);
            let alive: HashSet<Gfid> = end.values().copied().collect();
            let (el, _) = elide(rs.clone(), true);

            let mut plain = start.clone();
            replay(&mut plain, &rs, &alive);
            prop_assert_eq!(&plain, &end);

            let mut fresh = start.clone();
            replay(&mut fresh, &el, &alive);
            prop_assert_eq!(&fresh, &end);

            // After a crash part-way through a first attempt (which
            // replayed the records as they are, or elided), the replay
            // reaches the primary's names with elision wherever it does
            // without. (Without, it does not always: a create replayed
            // again after its inode was displaced comes back, as on the
            // real secondary.)
            for first in [&rs, &el] {
                let cut = &first[..crash.min(first.len())];
                let mut plain = start.clone();
                replay(&mut plain, cut, &alive);
                let mut elided = plain.clone();
                replay(&mut plain, &rs, &alive);
                replay(&mut elided, &el, &alive);
                if plain == end {
                    prop_assert_eq!(&elided, &end);
                }
            }
        }
    }
}
