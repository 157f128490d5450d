//! The durable failure ledger of one brick: what could not be synced, kept
//! under the session's state directory until a later batch syncs it
//! (ARCHITECTURE principle 1: nothing is skipped silently). An item is
//! recorded (fsync'ed, atomically replaced file) before stime moves past
//! it, retried with the batches (after 5 s, then backing off to a minute
//! between attempts), and removed once it succeeds.
//!
//! Operators act on it with `gsyncd failures` (see [`Request`]): while the
//! session runs, a request file beside the ledger, which the worker applies
//! at its next batch; while it is stopped, the ledger itself.

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
    /// An inode's metadata (owner, mode, times, xattrs).
    Meta,
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
    /// Not tried again before this time (backoff; 0: at the next batch).
    #[serde(default)]
    pub retry_after: u64,
    pub kind: Kind,
}

/// The wait after the `attempts`-th failed attempt: 5 s, doubling, at most
/// a minute.
pub fn backoff(attempts: u32) -> u64 {
    (5u64 << attempts.clamp(1, 5).saturating_sub(1)).min(60)
}

/// What an operator asks of a ledger (`gsyncd failures retry|forget`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Try these items (all with `None`) at the next batch.
    Retry(Option<Gfid>),
    /// Drop these items (all with `None`): the operator takes them as done.
    Forget(Option<Gfid>),
}

/// The ledger file: the brick it belongs to and its items. (The first
/// ledgers were a bare list of items; they still load.)
#[derive(Debug, Serialize, Deserialize)]
struct File {
    brick: String,
    items: Vec<Item>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum AnyFile {
    Current(File),
    Bare(Vec<Item>),
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
    brick: String,
    items: BTreeMap<(Gfid, String, String), Item>,
}

/// The ledger files under a state directory.
pub fn files(state_dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(state_dir.join("ledger")) else { return Vec::new() };
    let mut v: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            n.ends_with(".json") && !n.ends_with(".requests.json") && !n.starts_with('.')
        })
        .collect();
    v.sort();
    v
}

fn requests_path(ledger: &Path) -> PathBuf {
    ledger.with_extension("requests.json")
}

/// Queues a request for the running worker of the ledger at `ledger`.
pub fn request(ledger: &Path, r: Request) -> Result<(), LedgerError> {
    let path = requests_path(ledger);
    let err = |source| LedgerError { path: path.clone(), source };
    let mut all: Vec<Request> = match fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(err(e)),
    };
    all.push(r);
    let body = serde_json::to_vec(&all).map_err(|e| err(std::io::Error::other(e)))?;
    crate::fsutil::write_atomically(&path, &body, 0o600).map_err(|e| err(e.source))
}

fn key(i: &Item) -> (Gfid, String, String) {
    (i.gfid, i.op.clone(), i.path.clone())
}

impl Ledger {
    /// The ledger of `brick` under `state_dir` (empty if there is none yet).
    pub fn open(state_dir: &Path, brick: &Path) -> Result<Ledger, LedgerError> {
        let name = crate::config::template::escape_path(&brick.to_string_lossy());
        let mut l = Ledger::open_file(&state_dir.join("ledger").join(format!("{name}.json")))?;
        l.brick = brick.as_os_str().as_encoded_bytes().escape_ascii().to_string();
        Ok(l)
    }

    /// A ledger by its file (empty if there is none yet).
    pub fn open_file(path: &Path) -> Result<Ledger, LedgerError> {
        let err = |source| LedgerError { path: path.to_owned(), source };
        let (brick, items) = match fs::read(path) {
            Ok(b) => match serde_json::from_slice(&b).map_err(|e| err(std::io::Error::other(e)))? {
                AnyFile::Current(f) => (f.brick, f.items),
                AnyFile::Bare(items) => (String::new(), items),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), Vec::new()),
            Err(e) => return Err(err(e)),
        };
        Ok(Ledger { items: items.into_iter().map(|i| (key(&i), i)).collect(), path: path.to_owned(), brick })
    }

    /// The brick this ledger belongs to (escaped bytes; empty if unknown).
    pub fn brick(&self) -> &str {
        &self.brick
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Items due for another attempt.
    pub fn due(&self, now: u64) -> impl Iterator<Item = &Item> {
        self.items.values().filter(move |i| i.retry_after <= now)
    }

    /// Applies an operator's request; returns how many items it touched.
    pub fn apply(&mut self, r: &Request) -> usize {
        let hit = |g: &Option<Gfid>, i: &Item| g.is_none_or(|g| g == i.gfid);
        match r {
            Request::Retry(g) => {
                let mut n = 0;
                for i in self.items.values_mut().filter(|i| hit(g, i)) {
                    i.retry_after = 0;
                    n += 1;
                }
                n
            }
            Request::Forget(g) => {
                let before = self.items.len();
                self.items.retain(|_, i| !hit(g, i));
                before - self.items.len()
            }
        }
    }

    /// Applies (and removes) the requests queued for this ledger.
    pub fn apply_requests(&mut self) -> Vec<(Request, usize)> {
        let path = requests_path(&self.path);
        let Ok(b) = fs::read(&path) else { return Vec::new() };
        let _ = fs::remove_file(&path);
        let all: Vec<Request> = serde_json::from_slice(&b).unwrap_or_default();
        all.into_iter().map(|r| (r.clone(), self.apply(&r))).collect()
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
                old.retry_after = now + backoff(old.attempts);
            }
            None => {
                (item.first_seen, item.last_seen, item.attempts) = (now, now, 1);
                item.retry_after = now + backoff(1);
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
        let f = File { brick: self.brick.clone(), items: self.items.values().cloned().collect() };
        let body = serde_json::to_vec_pretty(&f).map_err(|e| err(std::io::Error::other(e)))?;
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
            retry_after: 0,
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

    #[test]
    fn backoff_and_operator_requests() {
        assert_eq!((backoff(1), backoff(2), backoff(3), backoff(30)), (5, 10, 20, 60));
        let d = tempfile::tempdir().unwrap();
        let brick = Path::new("/bricks/b1");
        let mut l = Ledger::open(d.path(), brick).unwrap();
        l.record(item(1, "DATA"), 100);
        l.record(item(2, "DATA"), 100);
        l.record(item(2, "DATA"), 105);
        assert_eq!(l.due(104).count(), 0);
        assert_eq!(l.due(105).map(|i| i.gfid).collect::<Vec<_>>(), [Uuid([1; 16])]);
        l.save().unwrap();
        // What `gsyncd failures` finds and asks.
        assert_eq!(files(d.path()), [d.path().join("ledger/bricks-b1.json")]);
        let f = Ledger::open_file(&files(d.path())[0]).unwrap();
        assert_eq!((f.brick(), f.len()), ("/bricks/b1", 2));
        request(l.path(), Request::Retry(Some(Uuid([2; 16])))).unwrap();
        request(l.path(), Request::Forget(Some(Uuid([1; 16])))).unwrap();
        assert_eq!(files(d.path()).len(), 1, "request files are not ledgers");
        let done = l.apply_requests();
        assert_eq!(done, [(Request::Retry(Some(Uuid([2; 16]))), 1), (Request::Forget(Some(Uuid([1; 16]))), 1)]);
        assert_eq!(l.due(106).map(|i| i.gfid).collect::<Vec<_>>(), [Uuid([2; 16])]);
        assert!(l.apply_requests().is_empty(), "applied once");
        assert_eq!(l.apply(&Request::Forget(None)), 1);
        assert!(l.is_empty());
    }
}
