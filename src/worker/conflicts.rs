//! GFID-conflict resolution with the primary as the truth (reference §6.9,
//! `fix_possible_entry_failures` and its two loops): for each failure the
//! secondary reported, an operation that removes the cause is sent, then
//! the batch is tried again, for a bounded number of rounds that stop as
//! soon as a round changes nothing.
//!
//! - a name on the secondary that carries a GFID the primary does not have:
//!   it goes (UNLINK or RMDIR with that GFID);
//! - a name that the primary also gives the secondary's GFID: the op is
//!   dropped (for a RENAME the source goes);
//! - a directory the secondary has under another name: renamed to the
//!   primary's name (from the brick's `.glusterfs` link);
//! - any other file name in the way (a hard link or a rename missed): it goes;
//! - ENOENT, a missing parent: the parent is made (MKDIR with its GFID,
//!   name from the brick's `.glusterfs` link), or the op dropped if the
//!   parent is gone on the primary too.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use tracing::{debug, info, warn};

use super::primary::{self, PrimaryError};
use crate::gluster::uuid::{Gfid, Uuid};
use crate::proto::rpc::{Client, ClientError, EntryFailure, EntryOp, Op};

#[derive(Debug, thiserror::Error)]
pub enum ConflictError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Primary(#[from] PrimaryError),
}

/// Rounds of fix-then-retry, as the reference's MAX_OE_RETRIES.
const ROUNDS: usize = 10;

fn on_primary(g: &Gfid) -> primary::Res<Option<std::fs::Metadata>> {
    primary::lstat(format!(".gfid/{g}").as_bytes())
}

/// The GFID the primary mount gives a `.gfid/<pgfid>/<name>` path.
pub fn primary_gfid(path: &[u8]) -> primary::Res<Option<Gfid>> {
    primary::gfid_at(path)
}

/// `.gfid/<pgfid>/<name>` of a directory, from the brick's `.glusterfs`
/// symlink (`../../xx/yy/<pgfid>/<name>`).
fn dir_entry(brick: &Path, g: &Gfid) -> Option<Vec<u8>> {
    let (pg, name) = crate::gluster::backend::dir_entry(brick, g)?;
    Some([b".gfid/".as_slice(), pg.to_string().as_bytes(), b"/", &name].concat())
}

/// Whether an entry op still describes the primary: what it creates is
/// still there under that name, what it removes is not. A failed op that
/// no longer does was superseded by later ones and needs no retry (a
/// retry out of order could bring back what the primary deleted since).
pub fn still_relevant(e: &EntryOp) -> primary::Res<bool> {
    Ok(match e.op {
        Op::Create | Op::Mknod | Op::Mkdir | Op::Symlink | Op::Link => primary_gfid(&e.entry)? == Some(e.gfid),
        Op::Rename => match e.entry1.as_deref() {
            Some(d) => primary_gfid(d)? == Some(e.gfid),
            None => false,
        },
        Op::Unlink | Op::Rmdir => primary_gfid(&e.entry)? != Some(e.gfid),
    })
}

/// Ops that put a GFID at a name (for a RENAME, its destination).
fn makes_name(op: Op) -> bool {
    matches!(op, Op::Create | Op::Mknod | Op::Mkdir | Op::Symlink | Op::Link | Op::Rename)
}

/// For a RENAME that is not replayed, of a file the primary no longer has:
/// the UNLINK of its source name on the secondary (which removes it only
/// while that name still holds the GFID). Without it the source name,
/// which the primary renamed away, would stay on the secondary.
fn gone_source(e: &EntryOp) -> primary::Res<Option<EntryOp>> {
    if e.op != Op::Rename || on_primary(&e.gfid)?.is_some() {
        return Ok(None);
    }
    let dir = e.stat.is_some_and(|st| st.mode & 0o170_000 == 0o040_000);
    Ok(Some(EntryOp::new(if dir { Op::Rmdir } else { Op::Unlink }, e.gfid, e.entry.clone())))
}

/// On a volume of several replica sets, before a batch is replayed: a
/// RENAME of a file the primary no longer has becomes the UNLINK of its
/// source name. Another set's worker replays its own changelog in its own
/// time, so the newer file that displaced this one may already be on the
/// secondary, or the name may already be gone there; replayed as recorded,
/// the older RENAME would put a file the primary deleted back at that name
/// (where nothing later corrects it).
pub fn settle_renames(entries: &mut [EntryOp]) -> primary::Res<()> {
    for e in entries.iter_mut().filter(|e| !e.skip) {
        if let Some(u) = gone_source(e)? {
            debug!(gfid = %e.gfid, "RENAME of a file the primary no longer has: only its source name goes");
            *e = u;
        }
    }
    Ok(())
}

/// The cleanups ([`gone_source`]) of ops dropped as superseded: sent
/// together; what they meet on the secondary is left to later records.
pub fn clean_superseded<'a>(
    client: &Client,
    dropped: impl IntoIterator<Item = &'a EntryOp>,
) -> Result<(), ConflictError> {
    let mut ops = Vec::new();
    for e in dropped {
        ops.extend(gone_source(e)?);
    }
    let n = ops.len();
    if n > 0 {
        let left = client.entry_ops(ops)?;
        debug!(sent = n, failed = left.len(), "source names of superseded renames removed");
    }
    Ok(())
}

fn parent_of(entry: &[u8]) -> Option<Gfid> {
    entry.split(|&b| b == b'/').nth(1).and_then(|g| Uuid::parse(g).ok())
}

/// One round: the operations that remove the causes of `failures`; marks
/// the entries that are to be dropped.
fn fixes(failures: &[EntryFailure], entries: &mut [EntryOp], brick: &Path) -> primary::Res<Vec<EntryOp>> {
    let mut fix = Vec::new();
    let mut drop_gfids: HashSet<Gfid> = HashSet::new();
    for f in failures {
        let e = &f.entry;
        let i = &f.info;
        if i.gfid_mismatch || i.name_mismatch {
            let pbname = match (&i.secondary_entry, i.name_mismatch, i.dst, &e.entry1) {
                (Some(se), true, _, _) => se.clone(),
                (_, _, true, Some(dst)) => dst.clone(),
                _ => e.entry.clone(),
            };
            let Some(sg) = i.secondary_gfid else { continue };
            match on_primary(&sg)? {
                None => {
                    debug!(gfid = %sg, "not on the primary: removing it from the secondary");
                    let op = if i.secondary_isdir { Op::Rmdir } else { Op::Unlink };
                    fix.push(EntryOp::new(op, sg, pbname));
                    drop_gfids.insert(sg);
                    if let Some(c) = gone_source(e)? {
                        drop_gfids.insert(e.gfid);
                        fix.push(c);
                    }
                }
                Some(st) => {
                    let now = primary_gfid(&pbname)?;
                    if now == Some(sg) {
                        // The primary has the same name with the same GFID.
                        drop_gfids.insert(e.gfid);
                        if e.op == Op::Rename {
                            fix.push(EntryOp::new(Op::Unlink, e.gfid, e.entry.clone()));
                        }
                    } else if i.secondary_isdir {
                        match dir_entry(brick, &sg) {
                            Some(dst) if dst == pbname => {
                                if let Some(x) = entries.get_mut(f.index as usize) {
                                    x.skip = true;
                                }
                            }
                            Some(dst) => {
                                let mut r = EntryOp::new(Op::Rename, sg, pbname);
                                r.entry1 = Some(dst);
                                r.stat = Some(crate::proto::rpc::Stat {
                                    uid: st.uid(),
                                    gid: st.gid(),
                                    mode: st.mode(),
                                    ..Default::default()
                                });
                                fix.push(r);
                            }
                            None => warn!(gfid = %sg, "cannot find the directory's name on this brick"),
                        }
                    } else if now == Some(e.gfid) || !makes_name(e.op) {
                        fix.push(EntryOp::new(Op::Unlink, sg, pbname));
                    } else {
                        // The primary's name holds neither: the op is
                        // older than what the primary did to that name
                        // since (another replica set's worker may have
                        // replayed the newer op already). It is not put
                        // over what is there; the newer records say what
                        // becomes of the name.
                        debug!(op = %e.op, gfid = %e.gfid, held_by = %sg,
                            "superseded on the primary: not replayed over another file");
                        if let Some(x) = entries.get_mut(f.index as usize) {
                            x.skip = true;
                        }
                        fix.extend(gone_source(e)?);
                    }
                }
            }
        } else if f.errno == nix::errno::Errno::ENOENT as i32 {
            let pbname = if e.op == Op::Rename { e.entry1.clone().unwrap_or_default() } else { e.entry.clone() };
            let Some(pg) = parent_of(&pbname) else { continue };
            match on_primary(&pg)? {
                None => {
                    if let Some(x) = entries.get_mut(f.index as usize) {
                        x.skip = true;
                    }
                }
                Some(st) => match dir_entry(brick, &pg) {
                    Some(name) => {
                        let mut m = EntryOp::new(Op::Mkdir, pg, name);
                        (m.mode, m.uid, m.gid) = (st.mode(), st.uid(), st.gid());
                        fix.push(m);
                    }
                    None => warn!(gfid = %pg, "cannot find the missing parent's name on this brick"),
                },
            }
        }
    }
    for e in entries.iter_mut() {
        if matches!(e.op, Op::Mkdir | Op::Mknod | Op::Create | Op::Rename) && drop_gfids.contains(&e.gfid) {
            e.skip = true;
        }
    }
    Ok(fix)
}

/// Resolves what can be resolved; returns the failures that remain.
pub fn resolve(
    client: &Client,
    brick: &Path,
    entries: &mut [EntryOp],
    mut failures: Vec<EntryFailure>,
) -> Result<Vec<EntryFailure>, ConflictError> {
    let mut last = (usize::MAX, usize::MAX);
    for round in 1..=ROUNDS {
        if failures.is_empty() {
            break;
        }
        let mut batch = entries.to_vec();
        let fix = fixes(&failures, &mut batch, brick)?;
        for (x, y) in entries.iter_mut().zip(&batch) {
            x.skip |= y.skip;
        }
        // Send the fixes, and fix what they run into, a bounded number of times.
        let mut sent = fix;
        for _ in 0..ROUNDS {
            if sent.is_empty() {
                break;
            }
            debug!(ops = sent.len(), round, "fixing gfid conflicts");
            let pending = client.entry_ops(sent.clone())?;
            if pending.is_empty() {
                break;
            }
            sent = fixes(&pending, &mut sent.clone(), brick)?;
        }
        failures = client.entry_ops(entries.to_vec())?;
        if failures.is_empty() {
            info!(round, "gfid conflicts resolved");
            break;
        }
        let now = (failures.len(), entries.iter().filter(|e| e.skip).count());
        if now == last {
            break;
        }
        last = now;
    }
    Ok(failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_and_directory_names() {
        let g = Uuid::parse_str("0b99ef11-4b79-4cd0-9730-b5a0e8c4a8c0").unwrap();
        let e = [b".gfid/".as_slice(), g.to_string().as_bytes(), b"/name"].concat();
        assert_eq!(parent_of(&e), Some(g));
        assert_eq!(parent_of(b"nothing"), None);
        let brick = tempfile::tempdir().unwrap();
        let d = g.to_string();
        let at = brick.path().join(".glusterfs").join(&d[0..2]).join(&d[2..4]);
        std::fs::create_dir_all(&at).unwrap();
        std::os::unix::fs::symlink("../../00/00/00000000-0000-0000-0000-000000000001/top dir", at.join(&d)).unwrap();
        assert_eq!(dir_entry(brick.path(), &g), Some(b".gfid/00000000-0000-0000-0000-000000000001/top dir".to_vec()));
        assert_eq!(dir_entry(brick.path(), &Uuid::ROOT), None);
    }
}
