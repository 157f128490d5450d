//! The durable failure ledger of one brick: what could not be synced, kept
//! under the session's state directory until a later batch syncs it
//! (ARCHITECTURE principle 1: nothing is skipped silently). An item is
//! recorded (fsync'ed, atomically replaced file) before stime moves past
//! it, retried with every batch, and removed once it succeeds.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::gluster::uuid::Gfid;
use crate::proto::rpc::EntryOp;

/// What failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// An entry operation, kept whole to be sent again.
    Entry(EntryOp),
    /// A file's data.
    Data,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub gfid: Gfid,
    /// `CREATE`, `RENAME`, ..., or `DATA`.
    pub op: String,
    /// The path as the operation named it, for people (escaped bytes).
    pub path: String,
    pub errno: Option<i32>,
    pub error: String,
    pub first_seen: u64,
    pub last_seen: u64,
    pub attempts: u32,
    /// A time before which the failed change was not made: the brick's
    /// stime when its batch started (0 for a crawl). A checkpoint after it
    /// is not complete while the item is here. Ledgers written before this
    /// field existed read as 0 (older than any checkpoint).
    #[serde(default)]
    pub changed: u64,
    pub kind: Kind,
}

#[derive(Debug, thiserror::Error)]
#[error("failure ledger {}: {source}", .path.display())]
pub struct LedgerError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Items by (gfid, op, path).
#[derive(Debug, Default)]
pub struct Ledger {
    path: PathBuf,
    items: BTreeMap<(Gfid, String, String), Item>,
}

fn key(i: &Item) -> (Gfid, String, String) {
    (i.gfid, i.op.clone(), i.path.clone())
}

impl Ledger {
    /// The ledger of `brick` under `state_dir` (empty if there is none yet).
    pub fn open(state_dir: &Path, brick: &Path) -> Result<Ledger, LedgerError> {
        let name = crate::config::template::escape_path(&brick.to_string_lossy());
        let path = state_dir.join("ledger").join(format!("{name}.json"));
        let err = |source| LedgerError { path: path.clone(), source };
        let items: Vec<Item> = match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| err(std::io::Error::other(e)))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(err(e)),
        };
        Ok(Ledger { items: items.into_iter().map(|i| (key(&i), i)).collect(), path })
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn items(&self) -> impl Iterator<Item = &Item> {
        self.items.values()
    }

    /// Records a failure (or another attempt of a known one).
    pub fn record(&mut self, mut item: Item, now: u64) {
        match self.items.get_mut(&key(&item)) {
            Some(old) => {
                old.last_seen = now;
                old.attempts += 1;
                old.errno = item.errno;
                old.error = item.error;
            }
            None => {
                (item.first_seen, item.last_seen, item.attempts) = (now, now, 1);
                self.items.insert(key(&item), item);
            }
        }
    }

    /// The time of the oldest unsynced change, if any.
    pub fn oldest_change(&self) -> Option<u64> {
        self.items.values().map(|i| i.changed).min()
    }

    /// Forgets an item that has been synced.
    pub fn resolved(&mut self, gfid: &Gfid, op: &str, path: &str) -> bool {
        self.items.remove(&(*gfid, op.to_owned(), path.to_owned())).is_some()
    }

    /// Writes the ledger durably: a temporary file, fsync, rename, fsync of
    /// the directory.
    pub fn save(&self) -> Result<(), LedgerError> {
        let err = |source| LedgerError { path: self.path.clone(), source };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(err)?;
        let items: Vec<&Item> = self.items.values().collect();
        let body = serde_json::to_vec_pretty(&items).map_err(|e| err(std::io::Error::other(e)))?;
        crate::fsutil::write_atomically(&self.path, &body, 0o600).map_err(|e| err(e.source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gluster::uuid::Uuid;
    use crate::proto::rpc::Op;

    fn item(g: u8, op: &str) -> Item {
        Item {
            gfid: Uuid([g; 16]),
            op: op.into(),
            path: format!(".gfid/{}", Uuid([g; 16])),
            errno: Some(5),
            error: "EIO".into(),
            first_seen: 0,
            last_seen: 0,
            attempts: 0,
            changed: 5,
            kind: Kind::Data,
        }
    }

    #[test]
    fn records_persists_and_forgets() {
        let d = tempfile::tempdir().unwrap();
        let brick = Path::new("/bricks/b1");
        let mut l = Ledger::open(d.path(), brick).unwrap();
        assert!(l.is_empty());
        l.record(item(1, "DATA"), 100);
        l.record(item(1, "DATA"), 160);
        let mut e = item(2, "CREATE");
        e.kind = Kind::Entry(EntryOp::new(Op::Create, Uuid([2; 16]), b".gfid/x/\xff".to_vec()));
        l.record(e.clone(), 170);
        l.save().unwrap();
        let l2 = Ledger::open(d.path(), brick).unwrap();
        assert_eq!(l2.len(), 2);
        let first = l2.items().next().unwrap();
        assert_eq!((first.first_seen, first.last_seen, first.attempts), (100, 160, 2));
        assert!(l2.items().any(|i| i.kind == e.kind), "the entry op survives, bytes and all");
        assert_eq!(l2.oldest_change(), Some(5));
        // A ledger from before `changed` existed reads as the oldest.
        let old = r#"[{"gfid":"01010101-0101-0101-0101-010101010101","op":"DATA","path":"p","errno":null,"error":"","first_seen":1,"last_seen":1,"attempts":1,"kind":"Data"}]"#;
        fs::write(d.path().join("ledger/old.json"), old).unwrap();
        assert_eq!(Ledger::open(d.path(), Path::new("/old")).unwrap().oldest_change(), Some(0));
        let mut l3 = l2;
        assert!(l3.resolved(&Uuid([1; 16]), "DATA", &item(1, "DATA").path));
        assert!(!l3.resolved(&Uuid([1; 16]), "DATA", "other"));
        l3.save().unwrap();
        assert_eq!(Ledger::open(d.path(), brick).unwrap().len(), 1);
        assert!(d.path().join("ledger/bricks-b1.json").exists());
    }
}
