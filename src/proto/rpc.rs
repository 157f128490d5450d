//! The secondary RPC: a primary worker talks to `gsyncd secondary` over the
//! ssh child's stdin/stdout. After the [`super::Hello`] exchange (worker ->
//! secondary), every frame from the worker is a [`Request`] with an id, and
//! every frame back is a [`Reply`] carrying the same id. The server answers
//! requests concurrently and out of order; [`Client`] routes replies to the
//! callers waiting for them.
//!
//! The calls mirror the reference's RePCe methods (reference §4.4) with typed
//! arguments: entry dicts become [`EntryOp`], failure tuples become
//! [`EntryFailure`] / [`MetaFailure`] with the same fields. Paths and names
//! are bytes. Times are seconds + nanoseconds, not floats.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ProtoError, Role};
use crate::gluster::uuid::Gfid;
use crate::gluster::xattr::VolumeMark;

/// Frames on this channel may carry large entry batches.
pub const MAX_RPC_FRAME: usize = 64 << 20;

/// One call from the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub call: Call,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Call {
    /// -> [`Answer::Version`].
    Version,
    /// -> [`Answer::Pid`]: the server's pid, whose cwd is the secondary mount.
    Pid,
    /// Resets the inactivity timer; with a mark, also sets the foreign
    /// volume-mark (31 bytes, with its `timeout`) on the secondary root.
    /// -> [`Answer::KeepAlive`] with the number of keep-alives received.
    KeepAlive(Option<VolumeMark>),
    /// -> [`Answer::EntryFailures`].
    EntryOps(Vec<EntryOp>),
    /// -> [`Answer::MetaFailures`].
    MetaOps(Vec<MetaOp>),
    /// -> [`Answer::Done`].
    SetAttr { path: Vec<u8>, attrs: SetAttrs },
    /// `lstat` of each path -> [`Answer::Lstat`], one result per path.
    Lstat(Vec<Vec<u8>>),
    /// The secondary volume's id (half of the stime key) -> [`Answer::VolumeId`].
    VolumeId,
    /// The entries of a directory, by its GFID -> [`Answer::Dir`] (for the
    /// reconcile pass after a crawl).
    ListDir(Gfid),
    /// Whole contents of small regular files, written in place over the
    /// secondary's `.gfid/<gfid>` (the inline data engine) ->
    /// [`Answer::Written`], one result per file.
    WriteFiles(Vec<FileData>),
}

/// One answer to the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub id: u64,
    pub result: Result<Answer, RemoteError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    Version {
        protocol: u32,
        package: String,
    },
    Pid(u32),
    KeepAlive(u64),
    EntryFailures(Vec<EntryFailure>),
    MetaFailures(Vec<MetaFailure>),
    Done,
    Lstat(Vec<Result<StatInfo, i32>>),
    VolumeId(crate::gluster::uuid::Uuid),
    /// The directory's entries, or the errno that kept it from being read.
    Dir(Result<Vec<DirEntry>, i32>),
    /// Per file of [`Call::WriteFiles`]: written, or the errno that kept it
    /// from being written (the file then goes by the sync method).
    Written(Vec<Result<(), i32>>),
}

/// A small regular file of the primary, read whole: its data, and the
/// owner, mode and times to leave on the secondary's copy (as `rsync -a`
/// does), with its xattrs of the replicated namespaces when those are synced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileData {
    pub gfid: Gfid,
    #[serde(with = "bytes")]
    pub data: Vec<u8>,
    pub stat: Stat,
    pub xattrs: Option<Xattrs>,
}

/// One entry of a secondary directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    pub name: Vec<u8>,
    /// `None` when it could not be read (the entry vanished meanwhile).
    pub gfid: Option<Gfid>,
    /// `st_mode` (type bits included) and link count.
    pub mode: u32,
    pub nlink: u64,
}

/// A call that failed as a whole: an error the reference would have raised
/// (and crashed its worker with), a refused path, a malformed request.
/// Entries before `index` were applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    pub errno: Option<i32>,
    /// The entry of the batch that failed, if the call takes a batch.
    pub index: Option<u32>,
    pub path: Option<Vec<u8>>,
    pub message: String,
}

/// The entry operations of a changelog, as the reference's `edct` builds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    Create,
    Mknod,
    Mkdir,
    Unlink,
    Rmdir,
    Link,
    Symlink,
    Rename,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Create => "CREATE",
            Op::Mknod => "MKNOD",
            Op::Mkdir => "MKDIR",
            Op::Unlink => "UNLINK",
            Op::Rmdir => "RMDIR",
            Op::Link => "LINK",
            Op::Symlink => "SYMLINK",
            Op::Rename => "RENAME",
        }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A point in time with nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Time {
    pub sec: i64,
    pub nsec: u32,
}

/// The primary's `lstat` of an inode, as far as replay needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stat {
    pub uid: u32,
    pub gid: u32,
    /// Full `st_mode`, type bits included.
    pub mode: u32,
    pub atime: Time,
    pub mtime: Time,
}

/// One entry operation. `entry` and `entry1` are `.gfid/<pgfid>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryOp {
    pub op: Op,
    /// Set by the primary's gfid-conflict resolution: do nothing.
    pub skip: bool,
    pub gfid: Gfid,
    pub entry: Vec<u8>,
    /// RENAME's destination.
    pub entry1: Option<Vec<u8>>,
    /// CREATE, MKNOD, MKDIR: mode, owner and group from the changelog.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Device number for MKNOD of a device (the reference always sends 0).
    pub rdev: u32,
    /// LINK, SYMLINK, RENAME: the primary's stat; `None` when it failed.
    pub stat: Option<Stat>,
    /// Symlink target.
    pub link: Option<Vec<u8>>,
}

impl EntryOp {
    /// An operation with everything else empty; fill in what the op needs.
    pub fn new(op: Op, gfid: Gfid, entry: Vec<u8>) -> EntryOp {
        EntryOp { op, skip: false, gfid, entry, entry1: None, mode: 0, uid: 0, gid: 0, rdev: 0, stat: None, link: None }
    }
}

/// What the secondary found when an entry op failed (reference
/// `collect_failure`): the fields of the reference's `slv_entry_info`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FailureInfo {
    pub gfid_mismatch: bool,
    pub name_mismatch: bool,
    /// The failure is about `entry1` (RENAME's destination).
    pub dst: bool,
    pub secondary_isdir: bool,
    /// For a directory in the way: its path as `.gfid/<pgfid>/<name>`.
    pub secondary_name: Option<Vec<u8>>,
    pub secondary_gfid: Option<Gfid>,
    /// MKDIR "rename on mkdir": where the directory is on the secondary.
    pub secondary_entry: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryFailure {
    /// Position of the entry in the batch.
    pub index: u32,
    pub entry: EntryOp,
    pub errno: i32,
    pub info: FailureInfo,
}

/// A metadata replay: owner, mode and times of `.gfid/<gfid>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaOp {
    pub go: Vec<u8>,
    pub stat: Stat,
    /// The primary's extended attributes in the replicated namespaces:
    /// set on the secondary, and those of these namespaces it has beyond
    /// them removed. `None`: leave its xattrs alone.
    pub xattrs: Option<Xattrs>,
}

/// Extended attributes of the namespaces replication copies.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Xattrs {
    /// `user.*` (sync-xattrs).
    pub user: bool,
    /// `system.posix_acl_access` and `system.posix_acl_default` (sync-acls).
    pub acls: bool,
    /// Names and values, of those namespaces only.
    pub values: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A byte buffer as one serde byte string: the same postcard bytes as a
/// sequence of `u8` (length, then the bytes), copied whole instead of one
/// element at a time (file data is most of what the inline engine sends).
mod bytes {
    use serde::{Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    struct V;

    impl<'de> de::Visitor<'de> for V {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
            while let Some(b) = seq.next_element()? {
                v.push(b);
            }
            Ok(v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(V)
    }
}

/// Whether an xattr name is in the namespaces that replication copies.
pub fn replicated_xattr(name: &[u8], user: bool, acls: bool) -> bool {
    (user && name.starts_with(b"user."))
        || (acls && (name == b"system.posix_acl_access" || name == b"system.posix_acl_default"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaStep {
    Chmod,
    Utime,
    Xattr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaFailure {
    pub index: u32,
    pub op: MetaOp,
    pub errno: i32,
    pub step: MetaStep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SetAttrs {
    pub own: Option<(u32, u32)>,
    pub mode: Option<u32>,
    pub times: Option<(Time, Time)>,
}

/// What the secondary sees of a path (for checking that data arrived).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatInfo {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: Time,
    pub ino: u64,
    pub nlink: u64,
}

/// A reader and a writer used as one stream (the two ends of an ssh child,
/// or stdin and stdout).
#[derive(Debug)]
pub struct Duplex<R, W> {
    pub r: R,
    pub w: W,
}

impl<R: Read, W> Read for Duplex<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.r.read(buf)
    }
}

impl<R, W: Write> Write for Duplex<R, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.w.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Proto(#[from] ProtoError),
    #[error("secondary: {0}")]
    Remote(#[from] RemoteError),
    #[error("secondary: connection lost: {0}")]
    Closed(String),
    #[error("secondary: no answer to {call} within {secs} s")]
    Timeout { call: &'static str, secs: u64 },
    #[error("secondary: answered {call} with a {found} reply")]
    Unexpected { call: &'static str, found: &'static str },
}

type Waiter = mpsc::Sender<Result<Answer, RemoteError>>;

#[derive(Default)]
struct Pending {
    waiters: HashMap<u64, Waiter>,
    /// Set once the reply stream ended; later calls fail with it.
    closed: Option<String>,
}

/// The worker's end: thread-safe, calls may be issued from many threads at
/// once; a listener thread routes each reply to its caller.
pub struct Client {
    writer: Mutex<Box<dyn Write + Send>>,
    pending: Arc<Mutex<Pending>>,
    next: AtomicU64,
    peer: String,
    /// The server's Hello.
    pub hello: super::Hello,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn answer_name(a: &Answer) -> &'static str {
    match a {
        Answer::Version { .. } => "Version",
        Answer::Pid(_) => "Pid",
        Answer::KeepAlive(_) => "KeepAlive",
        Answer::EntryFailures(_) => "EntryFailures",
        Answer::MetaFailures(_) => "MetaFailures",
        Answer::Done => "Done",
        Answer::Lstat(_) => "Lstat",
        Answer::VolumeId(_) => "VolumeId",
        Answer::Dir(_) => "Dir",
        Answer::Written(_) => "Written",
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("peer", &self.peer).field("hello", &self.hello).finish_non_exhaustive()
    }
}

impl Client {
    /// Exchanges Hellos over `r`/`w` and starts the listener thread.
    pub fn connect(
        r: impl Read + Send + 'static,
        w: impl Write + Send + 'static,
        peer: &str,
    ) -> Result<Client, ClientError> {
        let mut d = Duplex { r, w };
        let hello = super::handshake(&mut d, Role::Worker, Role::Secondary, peer)?;
        let Duplex { mut r, w } = d;
        let pending = Arc::new(Mutex::new(Pending::default()));
        let p2 = Arc::clone(&pending);
        let peer2 = peer.to_owned();
        std::thread::Builder::new()
            .name("rpc-listener".into())
            .spawn(move || {
                let why = loop {
                    match super::recv::<Reply>(&mut r, MAX_RPC_FRAME, &peer2) {
                        Ok(Some(reply)) => {
                            let w = lock(&p2).waiters.remove(&reply.id);
                            match w {
                                // A caller that gave up (timeout) dropped its receiver.
                                Some(tx) => drop(tx.send(reply.result)),
                                None => tracing::warn!(id = reply.id, "reply to no pending call"),
                            }
                        }
                        Ok(None) => break "end of stream".to_owned(),
                        Err(e) => break e.to_string(),
                    }
                };
                let mut p = lock(&p2);
                p.closed = Some(why);
                // Dropping the senders wakes every waiting caller.
                p.waiters.clear();
            })
            .map_err(|source| ProtoError::Io { peer: peer.to_owned(), source })?;
        Ok(Client { writer: Mutex::new(Box::new(w)), pending, next: AtomicU64::new(1), peer: peer.to_owned(), hello })
    }

    /// Sends a call and waits for its answer (`timeout` None: as long as the
    /// connection lives).
    pub fn call(&self, call: Call, timeout: Option<Duration>) -> Result<Answer, ClientError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let what = call_name(&call);
        let (tx, rx) = mpsc::channel();
        {
            let mut p = lock(&self.pending);
            if let Some(why) = &p.closed {
                return Err(ClientError::Closed(why.clone()));
            }
            p.waiters.insert(id, tx);
        }
        let sent = super::send(&mut *lock(&self.writer), &Request { id, call }, MAX_RPC_FRAME, &self.peer);
        if let Err(e) = sent {
            lock(&self.pending).waiters.remove(&id);
            return Err(e.into());
        }
        let got = match timeout {
            None => rx.recv().map_err(|_| ()),
            Some(t) => rx.recv_timeout(t).map_err(|e| match e {
                mpsc::RecvTimeoutError::Timeout => (),
                mpsc::RecvTimeoutError::Disconnected => (),
            }),
        };
        match got {
            Ok(r) => Ok(r?),
            Err(()) => {
                let mut p = lock(&self.pending);
                p.waiters.remove(&id);
                match (&p.closed, timeout) {
                    (Some(why), _) => Err(ClientError::Closed(why.clone())),
                    (None, Some(t)) => Err(ClientError::Timeout { call: what, secs: t.as_secs() }),
                    (None, None) => Err(ClientError::Closed("listener stopped".into())),
                }
            }
        }
    }

    pub fn version(&self) -> Result<(u32, String), ClientError> {
        match self.call(Call::Version, None)? {
            Answer::Version { protocol, package } => Ok((protocol, package)),
            a => Err(ClientError::Unexpected { call: "Version", found: answer_name(&a) }),
        }
    }

    pub fn pid(&self) -> Result<u32, ClientError> {
        match self.call(Call::Pid, None)? {
            Answer::Pid(p) => Ok(p),
            a => Err(ClientError::Unexpected { call: "Pid", found: answer_name(&a) }),
        }
    }

    pub fn keep_alive(&self, mark: Option<VolumeMark>) -> Result<u64, ClientError> {
        self.keep_alive_within(mark, None)
    }

    /// A keep-alive that gives up after `timeout`.
    pub fn keep_alive_within(&self, mark: Option<VolumeMark>, timeout: Option<Duration>) -> Result<u64, ClientError> {
        match self.call(Call::KeepAlive(mark), timeout)? {
            Answer::KeepAlive(n) => Ok(n),
            a => Err(ClientError::Unexpected { call: "KeepAlive", found: answer_name(&a) }),
        }
    }

    pub fn entry_ops(&self, ops: Vec<EntryOp>) -> Result<Vec<EntryFailure>, ClientError> {
        match self.call(Call::EntryOps(ops), None)? {
            Answer::EntryFailures(f) => Ok(f),
            a => Err(ClientError::Unexpected { call: "EntryOps", found: answer_name(&a) }),
        }
    }

    pub fn meta_ops(&self, ops: Vec<MetaOp>) -> Result<Vec<MetaFailure>, ClientError> {
        match self.call(Call::MetaOps(ops), None)? {
            Answer::MetaFailures(f) => Ok(f),
            a => Err(ClientError::Unexpected { call: "MetaOps", found: answer_name(&a) }),
        }
    }

    pub fn set_attr(&self, path: Vec<u8>, attrs: SetAttrs) -> Result<(), ClientError> {
        match self.call(Call::SetAttr { path, attrs }, None)? {
            Answer::Done => Ok(()),
            a => Err(ClientError::Unexpected { call: "SetAttr", found: answer_name(&a) }),
        }
    }

    pub fn volume_id(&self) -> Result<crate::gluster::uuid::Uuid, ClientError> {
        match self.call(Call::VolumeId, None)? {
            Answer::VolumeId(u) => Ok(u),
            a => Err(ClientError::Unexpected { call: "VolumeId", found: answer_name(&a) }),
        }
    }

    pub fn list_dir(&self, dir: Gfid) -> Result<Result<Vec<DirEntry>, i32>, ClientError> {
        match self.call(Call::ListDir(dir), None)? {
            Answer::Dir(v) => Ok(v),
            a => Err(ClientError::Unexpected { call: "ListDir", found: answer_name(&a) }),
        }
    }

    pub fn write_files(&self, files: Vec<FileData>) -> Result<Vec<Result<(), i32>>, ClientError> {
        let n = files.len();
        match self.call(Call::WriteFiles(files), None)? {
            Answer::Written(v) if v.len() == n => Ok(v),
            Answer::Written(_) => Err(ClientError::Unexpected { call: "WriteFiles", found: "a short Written" }),
            a => Err(ClientError::Unexpected { call: "WriteFiles", found: answer_name(&a) }),
        }
    }

    pub fn lstat(&self, paths: Vec<Vec<u8>>) -> Result<Vec<Result<StatInfo, i32>>, ClientError> {
        match self.call(Call::Lstat(paths), None)? {
            Answer::Lstat(v) => Ok(v),
            a => Err(ClientError::Unexpected { call: "Lstat", found: answer_name(&a) }),
        }
    }
}

pub fn call_name(c: &Call) -> &'static str {
    match c {
        Call::Version => "Version",
        Call::Pid => "Pid",
        Call::KeepAlive(_) => "KeepAlive",
        Call::EntryOps(_) => "EntryOps",
        Call::MetaOps(_) => "MetaOps",
        Call::SetAttr { .. } => "SetAttr",
        Call::Lstat(_) => "Lstat",
        Call::VolumeId => "VolumeId",
        Call::ListDir(_) => "ListDir",
        Call::WriteFiles(_) => "WriteFiles",
    }
}

/// The id of a request whose body could not be decoded (the id is its first
/// field), so that the server can still answer it.
pub fn request_id(frame: &[u8]) -> Option<u64> {
    postcard::take_from_bytes::<u64>(frame).ok().map(|(id, _)| id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Hello, MAX_FRAME, handshake, recv, send};
    use std::os::unix::net::UnixStream;

    fn serve(mut s: UnixStream, n: usize) {
        handshake(&mut s, Role::Secondary, Role::Worker, "worker").unwrap();
        let mut reqs = Vec::new();
        for _ in 0..n {
            reqs.push(recv::<Request>(&mut s, MAX_RPC_FRAME, "worker").unwrap().unwrap());
        }
        // Answer out of order.
        for r in reqs.into_iter().rev() {
            let result = match r.call {
                Call::Pid => Ok(Answer::Pid(42)),
                Call::KeepAlive(_) => Ok(Answer::KeepAlive(r.id)),
                _ => Err(RemoteError { errno: Some(5), index: Some(0), path: None, message: "no".into() }),
            };
            send(&mut s, &Reply { id: r.id, result }, MAX_FRAME, "worker").unwrap();
        }
    }

    #[test]
    fn file_data_is_one_byte_string_on_the_wire() {
        let f = FileData { gfid: Gfid::ROOT, data: vec![0, 1, 255, 7], stat: Stat::default(), xattrs: None };
        let wire = postcard::to_allocvec(&f).unwrap();
        // The same bytes as the plain sequence encoding: length, then the data.
        #[derive(Serialize)]
        struct Plain<'a> {
            gfid: Gfid,
            data: &'a Vec<u8>,
            stat: Stat,
            xattrs: Option<Xattrs>,
        }
        let plain = Plain { gfid: f.gfid, data: &f.data, stat: f.stat, xattrs: None };
        assert_eq!(wire, postcard::to_allocvec(&plain).unwrap());
        assert_eq!(postcard::from_bytes::<FileData>(&wire).unwrap(), f);
        // A truncated frame is an error, not a panic.
        assert!(postcard::from_bytes::<FileData>(&wire[..wire.len() - 2]).is_err());
    }

    #[test]
    fn concurrent_calls_get_their_own_replies() {
        let (a, b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || serve(b, 3));
        let c = Arc::new(Client::connect(a.try_clone().unwrap(), a, "secondary").unwrap());
        assert_eq!(c.hello.role, Role::Secondary);
        let c1 = Arc::clone(&c);
        let h1 = std::thread::spawn(move || c1.pid());
        let c2 = Arc::clone(&c);
        let h2 = std::thread::spawn(move || c2.keep_alive(None));
        // Let both be sent before the third.
        std::thread::sleep(Duration::from_millis(100));
        let e = c.entry_ops(vec![]).unwrap_err();
        assert!(matches!(e, ClientError::Remote(RemoteError { errno: Some(5), .. })), "{e}");
        assert_eq!(h1.join().unwrap().unwrap(), 42);
        assert!(h2.join().unwrap().unwrap() >= 1);
        t.join().unwrap();
        // The server hung up: calls fail, they do not hang.
        let e = c.pid().unwrap_err();
        assert!(matches!(e, ClientError::Closed(_) | ClientError::Proto(_)), "{e}");
    }

    #[test]
    fn wrong_peer_is_refused() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            let _ = send(&mut b, &Hello::new(Role::Agent), MAX_FRAME, "x");
            let _ = recv::<Hello>(&mut b, MAX_FRAME, "x");
        });
        let e = Client::connect(a.try_clone().unwrap(), a, "secondary").err().unwrap();
        assert!(e.to_string().contains("expected a secondary"), "{e}");
        t.join().unwrap();
    }

    #[test]
    fn request_id_survives_a_bad_body() {
        let mut b = postcard::to_stdvec(&Request { id: 77, call: Call::Pid }).unwrap();
        b.push(0xff);
        b[1] = 0xee;
        assert_eq!(request_id(&b), Some(77));
        assert_eq!(request_id(&[]), None);
    }
}
