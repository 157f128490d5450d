//! `gsyncd secondary` against real secondary volumes: the protocol client
//! the worker uses sends entry, meta and keep-alive calls, and the tests
//! check the namespace through a separate mount and the GFIDs on the
//! bricks; the server's lifecycle (EOF, SIGTERM, inactivity, SIGKILL) leaves
//! no mount behind; bad paths and frames are refused; and the same entry
//! lists through the reference's own secondary give the same trees.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gsyncd::gluster::uuid::{Gfid, Uuid};
use gsyncd::gluster::xattr::{VolumeMark, XTime};
use gsyncd::proto::rpc::{Client, ClientError, EntryFailure, EntryOp, FailureInfo, MetaOp, Op, Stat, Time};
use support::cluster::{Shape, Side, Volume};
use support::{Fixture, trial, wait_for};

fn main() {
    support::run(|fx| {
        vec![
            trial("lifecycle_eof_leaves_no_mount", fx, lifecycle_eof),
            trial("lifecycle_sigterm_sigkill_and_inactivity", fx, lifecycle_signals),
            trial("create_mkdir_mknod_symlink_link_with_gfids_owners_modes", fx, creates),
            trial("unlink_and_rmdir_incl_recursive_and_gfid_checks", fx, removals),
            trial("rename_every_branch", fx, renames),
            trial("conflicts_return_the_reference_failure_records", fx, conflicts),
            trial("meta_ops_and_setattr", fx, meta),
            trial("keep_alive_writes_the_31_byte_foreign_mark", fx, keep_alive),
            trial("odd_names_spaces_newlines_percent_non_utf8", fx, odd_names),
            trial("distributed_volume_entry_ops", fx, distributed),
            trial("path_guard_and_malformed_frames", fx, guard_and_frames),
            trial("ssh_gate_admits_only_the_server_and_its_receives", fx, ssh_gate),
            trial("differential_against_the_reference_secondary", fx, differential),
            trial("rename_on_mkdir_lookup_without_local_bricks_uses_gfid2path", fx, gfid2path_lookup),
            trial("non_root_secondary_mounts_through_the_mountbroker", fx, mountbroker),
            trial("requests_are_served_concurrently_by_sync_jobs", fx, concurrency),
        ]
    })
}

const ROOT: Uuid = Uuid::ROOT;

fn gsyncd() -> &'static str {
    env!("CARGO_BIN_EXE_gsyncd")
}

fn single(fx: &Fixture) -> Volume {
    fx.volume("ours-1", Shape::Single, Side::Secondary)
}

/// A running `gsyncd secondary` and the client connected to it.
struct Server {
    child: Child,
    client: Option<Client>,
    stderr: Arc<Mutex<Vec<u8>>>,
    pid: u32,
}

fn spawn(vol: &Volume, extra: &[&str]) -> (Child, Arc<Mutex<Vec<u8>>>) {
    let mut child = Command::new(gsyncd())
        .args(["secondary", "pvol", &format!("localhost::{}", vol.name), "--primary-node", "localhost"])
        .args(["--secondary-log-level", "DEBUG"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let buf = Arc::new(Mutex::new(Vec::new()));
    let mut err = child.stderr.take().unwrap();
    let b2 = Arc::clone(&buf);
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = err.read(&mut chunk) {
            if n == 0 {
                break;
            }
            b2.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    (child, buf)
}

impl Server {
    fn start(vol: &Volume, extra: &[&str]) -> Server {
        let (mut child, stderr) = spawn(vol, extra);
        let client = Client::connect(child.stdout.take().unwrap(), child.stdin.take().unwrap(), "secondary")
            .unwrap_or_else(|e| panic!("handshake: {e}\n{}", String::from_utf8_lossy(&stderr.lock().unwrap())));
        let pid =
            client.pid().unwrap_or_else(|e| panic!("pid: {e}\n{}", String::from_utf8_lossy(&stderr.lock().unwrap())));
        assert_eq!(pid, child.id());
        Server { child, client: Some(client), stderr, pid }
    }

    fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    fn ops(&self, ops: Vec<EntryOp>) -> Vec<EntryFailure> {
        self.c().entry_ops(ops).unwrap_or_else(|e| panic!("entry_ops: {e}\n{}", self.log()))
    }

    /// Closes stdin; returns the exit status.
    fn close(mut self) -> (std::process::ExitStatus, String) {
        drop(self.client.take());
        let st = wait_exit(&mut self.child, Duration::from_secs(20));
        (st, self.log())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_exit(child: &mut Child, t: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + t;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "server did not exit within {t:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The aux mount of server `pid`, as the mountpoint name shows it.
fn mount_point(vol: &Volume, pid: u32) -> PathBuf {
    Path::new("/run/gsyncd/secondary/mnt").join(format!("{}.{pid}", vol.name))
}

/// glusterfs client processes serving `mp`.
fn clients_of(mp: &Path) -> Vec<u32> {
    let mut v = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(c) = fs::read(e.path().join("cmdline")) else { continue };
        let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        if stat.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')) {
            continue;
        }
        let args: Vec<&[u8]> = c.split(|&b| b == 0).filter(|a| !a.is_empty()).collect();
        if args.first().is_some_and(|a| a.ends_with(b"glusterfs")) && args.last() == Some(&mp.as_os_str().as_bytes()) {
            v.push(pid);
        }
    }
    v
}

fn mounted_anywhere(mp: &Path) -> bool {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&*mp.to_string_lossy()))
}

/// Nothing of server `pid` remains: no mount point, no mount, no client.
fn assert_nothing_left(vol: &Volume, pid: u32) {
    let mp = mount_point(vol, pid);
    wait_for(Duration::from_secs(20), "the aux mount's glusterfs client to exit", || {
        clients_of(&mp).is_empty().then_some(())
    });
    assert!(!mp.exists(), "{} remains", mp.display());
    assert!(!mounted_anywhere(&mp), "{} is still mounted", mp.display());
}

fn gfid() -> Gfid {
    let mut b = [0u8; 16];
    fs::File::open("/dev/urandom").unwrap().read_exact(&mut b).unwrap();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Uuid(b)
}

fn entry(pg: &Gfid, name: &[u8]) -> Vec<u8> {
    [b".gfid/".as_slice(), &pg.canonical(), b"/", name].concat()
}

fn mkdir(g: Gfid, pg: &Gfid, name: &[u8], mode: u32) -> EntryOp {
    let mut e = EntryOp::new(Op::Mkdir, g, entry(pg, name));
    e.mode = 0o040_000 | mode;
    e
}

fn create(g: Gfid, pg: &Gfid, name: &[u8], mode: u32, uid: u32, gid: u32) -> EntryOp {
    let mut e = EntryOp::new(Op::Create, g, entry(pg, name));
    e.mode = 0o100_000 | mode;
    e.uid = uid;
    e.gid = gid;
    e
}

fn stat(mode: u32, uid: u32, gid: u32) -> Stat {
    Stat { uid, gid, mode, atime: Time { sec: 1_700_000_000, nsec: 0 }, mtime: Time { sec: 1_700_000_100, nsec: 0 } }
}

fn op(o: Op, g: Gfid, pg: &Gfid, name: &[u8]) -> EntryOp {
    EntryOp::new(o, g, entry(pg, name))
}

/// A fresh directory under the volume root for one test: (gfid, path on the
/// harness mount).
fn top(s: &Server, vol: &Volume, name: &str) -> (Gfid, PathBuf) {
    let g = gfid();
    let f = s.ops(vec![mkdir(g, &ROOT, name.as_bytes(), 0o755)]);
    assert!(f.is_empty(), "{f:?}");
    let p = vol.mount.join(name);
    wait_for(Duration::from_secs(10), "the new directory on the harness mount", || p.is_dir().then_some(()));
    (g, p)
}

/// `trusted.gfid` of `rel` on every brick that holds it (at least one).
fn brick_gfid(vol: &Volume, rel: &Path) -> Gfid {
    let found: Vec<Gfid> = vol
        .bricks
        .iter()
        .filter_map(|b| xattr::get(b.join(rel), "trusted.gfid").ok().flatten())
        .map(|v| Uuid::from_bytes(&v).unwrap())
        .collect();
    assert!(!found.is_empty(), "{} is on no brick", rel.display());
    assert!(found.windows(2).all(|w| w[0] == w[1]), "bricks disagree on {}: {found:?}", rel.display());
    found[0]
}

/// The harness mount caches attributes for a second: waits until `ok`
/// holds (or returns the last stat after 5 s, for the assertion to show).
fn settled(p: &Path, ok: impl Fn(&fs::Metadata) -> bool) -> fs::Metadata {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = fs::symlink_metadata(p).unwrap();
        if ok(&m) || Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits for a name to be gone from the harness mount (its entry cache).
fn absent(p: &Path) {
    wait_for(Duration::from_secs(5), &format!("{} to be gone", p.display()), || {
        fs::symlink_metadata(p).is_err().then_some(())
    });
}

fn rel(vol: &Volume, p: &Path) -> PathBuf {
    p.strip_prefix(&vol.mount).unwrap().to_path_buf()
}

// ---------------------------------------------------------------- lifecycle

fn lifecycle_eof(fx: &Fixture) {
    let vol = single(fx);
    let s = Server::start(&vol, &["--secondary-timeout", "0"]);
    let (proto, pkg) = s.c().version().unwrap();
    assert_eq!(proto, gsyncd::proto::PROTOCOL_VERSION);
    assert_eq!(pkg, env!("CARGO_PKG_VERSION"));
    let pid = s.pid;
    // The server works inside its mount, which it made in a mount namespace
    // of its own: this (host) namespace sees only the empty mount point.
    let mp = mount_point(&vol, pid);
    assert_eq!(fs::read_link(format!("/proc/{pid}/cwd")).unwrap(), mp);
    assert!(!mounted_anywhere(&mp), "the mount is private to the server");
    assert_eq!(fs::read_dir(&mp).unwrap().count(), 0);
    assert_ne!(
        fs::metadata(format!("/proc/{pid}/ns/mnt")).unwrap().ino(),
        fs::metadata("/proc/self/ns/mnt").unwrap().ino()
    );
    // Through the server's cwd it is the volume (as rsync and tar will use it).
    assert!(fs::read_dir(format!("/proc/{pid}/cwd")).is_ok());
    let (st, log) = s.close();
    assert_eq!(st.code(), Some(0), "{log}");
    assert!(log.contains("terminating on reaching EOF"), "{log}");
    assert_nothing_left(&vol, pid);
}

fn lifecycle_signals(fx: &Fixture) {
    let vol = single(fx);
    // SIGTERM: exit 0, reason logged.
    let s = Server::start(&vol, &[]);
    let pid = s.pid;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut s = s;
    let st = wait_exit(&mut s.child, Duration::from_secs(20));
    assert_eq!(st.code(), Some(0), "{}", s.log());
    assert!(s.log().contains("terminating on SIGTERM"), "{}", s.log());
    drop(s);
    assert_nothing_left(&vol, pid);

    // SIGKILL: nothing left either.
    let mut s = Server::start(&vol, &[]);
    let pid = s.pid;
    assert_eq!(clients_of(&mount_point(&vol, pid)).len(), 1, "one glusterfs client serves the mount");
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    drop(s);
    assert_nothing_left(&vol, pid);

    // No keep-alive within secondary-timeout: exit 0 with the reason. A
    // keep-alive resets the timer.
    let mut s = Server::start(&vol, &["--secondary-timeout", "3"]);
    let pid = s.pid;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(s.c().keep_alive(None).unwrap(), 1);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(s.c().keep_alive(None).unwrap(), 2);
    let st = wait_exit(&mut s.child, Duration::from_secs(20));
    assert!(t0.elapsed() >= Duration::from_secs(6), "exited after {:?}", t0.elapsed());
    assert_eq!(st.code(), Some(0), "{}", s.log());
    assert!(s.log().contains("connection inactive, stopping"), "{}", s.log());
    drop(s);
    assert_nothing_left(&vol, pid);

    // secondary-access-mount keeps the mount visible while the server runs,
    // and it still goes when the server is killed.
    let mut s = Server::start(&vol, &["--secondary-access-mount"]);
    let pid = s.pid;
    let mp = mount_point(&vol, pid);
    assert!(mounted_anywhere(&mp), "kept mount is visible at {}", mp.display());
    assert!(mp.join(".gfid").exists() || fs::read_dir(&mp).is_ok());
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    drop(s);
    wait_for(Duration::from_secs(20), "the guard to remove the kept mount", || {
        (!mounted_anywhere(&mp) && !mp.exists()).then_some(())
    });
    assert_nothing_left(&vol, pid);
}

// ---------------------------------------------------------------- entry ops

fn creates(fx: &Fixture) {
    let vol = single(fx);
    let s = Server::start(&vol, &[]);
    let (t, tp) = top(&s, &vol, "creates");
    let (d, f, n, l, h, ls) = (gfid(), gfid(), gfid(), gfid(), gfid(), gfid());
    let mut mk = op(Op::Mknod, n, &d, b"fifo");
    mk.mode = 0o010_640;
    let mut sym = op(Op::Symlink, l, &d, b"sym");
    sym.stat = Some(stat(0o120_777, 1001, 1002));
    sym.link = Some(b"../target with space".to_vec());
    let mut hard = op(Op::Link, f, &d, b"hard");
    hard.stat = Some(stat(0o100_640, 1000, 1000));
    // LINK of a gfid the secondary lacks: created as a regular file.
    let mut lnew = op(Op::Link, h, &d, b"link-new");
    lnew.stat = Some(stat(0o100_600, 1003, 1004));
    // LINK of a symlink gfid the secondary lacks: created as a symlink.
    let mut lsym = op(Op::Link, ls, &d, b"link-sym");
    lsym.stat = Some(stat(0o120_777, 0, 0));
    lsym.link = Some(b"/abs/target".to_vec());
    let failures = s.ops(vec![
        mkdir(d, &t, b"dir", 0o1750),
        create(f, &d, b"file", 0o640, 1000, 1000),
        mk,
        sym,
        hard,
        lnew,
        lsym,
        // Idempotent: the same CREATE again changes nothing and fails nothing.
        create(f, &d, b"file", 0o640, 1000, 1000),
    ]);
    assert!(failures.is_empty(), "{failures:?}");
    let dp = tp.join("dir");
    let md = fs::symlink_metadata(&dp).unwrap();
    assert!(md.is_dir());
    // mkdir(2) keeps the sticky bit but never sets setgid (a SETATTR does).
    assert_eq!(md.mode() & 0o7777, 0o1750, "mode replays exactly (umask 0)");
    assert_eq!(brick_gfid(&vol, &rel(&vol, &dp)), d);
    let mf = fs::symlink_metadata(dp.join("file")).unwrap();
    assert!(mf.is_file());
    assert_eq!((mf.mode() & 0o7777, mf.uid(), mf.gid()), (0o640, 1000, 1000));
    assert_eq!(brick_gfid(&vol, &rel(&vol, &dp.join("file"))), f);
    let mn = fs::symlink_metadata(dp.join("fifo")).unwrap();
    assert_eq!(mn.mode() & 0o170_000, 0o010_000, "a FIFO");
    assert_eq!(mn.mode() & 0o7777, 0o640);
    assert_eq!(brick_gfid(&vol, &rel(&vol, &dp.join("fifo"))), n);
    let ms = fs::symlink_metadata(dp.join("sym")).unwrap();
    assert!(ms.file_type().is_symlink());
    assert_eq!(fs::read_link(dp.join("sym")).unwrap(), Path::new("../target with space"));
    assert_eq!((ms.uid(), ms.gid()), (1001, 1002), "created 0:0, then lchown");
    assert_eq!(brick_gfid(&vol, &rel(&vol, &dp.join("sym"))), l);
    let mh = fs::symlink_metadata(dp.join("hard")).unwrap();
    assert_eq!(mh.ino(), mf.ino(), "hard link shares the inode");
    assert_eq!(mh.nlink(), 2);
    let mnew = fs::symlink_metadata(dp.join("link-new")).unwrap();
    assert!(mnew.is_file());
    assert_eq!((mnew.mode() & 0o7777, mnew.uid(), mnew.gid()), (0o600, 1003, 1004));
    assert_eq!(brick_gfid(&vol, &rel(&vol, &dp.join("link-new"))), h);
    assert_eq!(fs::read_link(dp.join("link-sym")).unwrap(), Path::new("/abs/target"));
    assert_eq!(brick_gfid(&vol, &rel(&vol, &dp.join("link-sym"))), ls);
    // MKNOD of a gfid that exists is a self-healed hard link.
    let mut mk2 = op(Op::Mknod, f, &d, b"healed");
    mk2.mode = 0o100_640;
    assert!(s.ops(vec![mk2]).is_empty());
    assert_eq!(fs::symlink_metadata(dp.join("healed")).unwrap().ino(), mf.ino());
    // The server's lstat sees what arrived.
    let st = s.c().lstat(vec![entry(&d, b"file"), entry(&d, b"missing")]).unwrap();
    assert_eq!(st[0].as_ref().unwrap().size, 0);
    assert_eq!(st[1], Err(nix::errno::Errno::ENOENT as i32));
    let (code, log) = s.close();
    assert_eq!(code.code(), Some(0), "{log}");
}

fn removals(fx: &Fixture) {
    let vol = single(fx);
    let s = Server::start(&vol, &[]);
    let (t, tp) = top(&s, &vol, "removals");
    let (f, d, sub, deep, x) = (gfid(), gfid(), gfid(), gfid(), gfid());
    assert!(
        s.ops(vec![
            create(f, &t, b"f", 0o644, 0, 0),
            mkdir(d, &t, b"d", 0o755),
            mkdir(sub, &d, b"sub", 0o755),
            create(deep, &sub, b"deep", 0o644, 0, 0),
            create(x, &d, b"x", 0o644, 0, 0),
        ])
        .is_empty()
    );
    // UNLINK of a name that is absent, or whose gfid is absent: nothing.
    assert!(s.ops(vec![op(Op::Unlink, gfid(), &t, b"nothing"), op(Op::Unlink, gfid(), &t, b"f")]).is_empty());
    // UNLINK of a name that carries another (existing) gfid: refused, EEXIST.
    let fl = s.ops(vec![op(Op::Unlink, x, &t, b"f")]);
    assert_eq!(fl.len(), 1, "{fl:?}");
    assert_eq!(fl[0].errno, nix::errno::Errno::EEXIST as i32);
    assert!(fl[0].info.gfid_mismatch && !fl[0].info.secondary_isdir);
    assert_eq!(fl[0].info.secondary_gfid, Some(f));
    assert!(tp.join("f").exists(), "a name with another gfid is not removed");
    // UNLINK with the right gfid removes; RMDIR of a non-empty dir removes
    // the tree recursively.
    assert!(s.ops(vec![op(Op::Unlink, f, &t, b"f"), op(Op::Rmdir, d, &t, b"d")]).is_empty());
    absent(&tp.join("f"));
    absent(&tp.join("d"));
    // Replaying them again is harmless.
    assert!(s.ops(vec![op(Op::Unlink, f, &t, b"f"), op(Op::Rmdir, d, &t, b"d")]).is_empty());
    let _ = s.close();
}

fn renames(fx: &Fixture) {
    let vol = single(fx);
    let s = Server::start(&vol, &[]);
    let (t, tp) = top(&s, &vol, "renames");
    let (a, b, c, d, e, h, sl) = (gfid(), gfid(), gfid(), gfid(), gfid(), gfid(), gfid());
    assert!(
        s.ops(vec![
            create(a, &t, b"a", 0o644, 0, 0),
            create(b, &t, b"b", 0o644, 0, 0),
            create(c, &t, b"c", 0o644, 0, 0),
            mkdir(d, &t, b"d", 0o755),
        ])
        .is_empty()
    );
    let ren = |g: Gfid, from: &[u8], to: &[u8], st: Option<Stat>| {
        let mut r = op(Op::Rename, g, &t, from);
        r.entry1 = Some(entry(&t, to));
        r.stat = st;
        r
    };
    // 1. Source carries the gfid, destination absent: plain rename.
    assert!(s.ops(vec![ren(a, b"a", b"a2", Some(stat(0o100_644, 0, 0)))]).is_empty());
    absent(&tp.join("a"));
    assert!(tp.join("a2").is_file());
    assert_eq!(brick_gfid(&vol, &rel(&vol, &tp.join("a2"))), a);
    // 2. Destination is the same inode (a hard link): the source name goes.
    let mut l = op(Op::Link, b, &t, b"b-link");
    l.stat = Some(stat(0o100_644, 0, 0));
    assert!(s.ops(vec![l]).is_empty());
    assert!(s.ops(vec![ren(b, b"b", b"b-link", Some(stat(0o100_644, 0, 0)))]).is_empty());
    absent(&tp.join("b"));
    assert!(tp.join("b-link").is_file());
    // 3. Destination has another gfid, single-brick primary: rename over it.
    assert!(s.ops(vec![ren(c, b"c", b"a2", Some(stat(0o100_644, 0, 0)))]).is_empty());
    assert_eq!(brick_gfid(&vol, &rel(&vol, &tp.join("a2"))), c);
    // 4. Source absent, regular file, gfid absent: created at destination.
    assert!(s.ops(vec![ren(e, b"gone", b"e-new", Some(stat(0o100_600, 0, 0)))]).is_empty());
    assert_eq!(fs::symlink_metadata(tp.join("e-new")).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(brick_gfid(&vol, &rel(&vol, &tp.join("e-new"))), e);
    // 5. Source absent, gfid present elsewhere: hard-linked at destination.
    assert!(s.ops(vec![ren(e, b"gone", b"e-linked", Some(stat(0o100_600, 0, 0)))]).is_empty());
    assert_eq!(
        fs::symlink_metadata(tp.join("e-linked")).unwrap().ino(),
        fs::symlink_metadata(tp.join("e-new")).unwrap().ino()
    );
    // 6. Source absent, symlink with a target: symlink at destination.
    let mut r = ren(sl, b"gone-link", b"sl-new", Some(stat(0o120_777, 0, 0)));
    r.link = Some(b"somewhere".to_vec());
    assert!(s.ops(vec![r]).is_empty());
    assert_eq!(fs::read_link(tp.join("sl-new")).unwrap(), Path::new("somewhere"));
    // ... and again onto a destination with another gfid: EEXIST, dst.
    let mut r2 = ren(h, b"gone-link2", b"sl-new", Some(stat(0o120_777, 0, 0)));
    r2.link = Some(b"elsewhere".to_vec());
    let f = s.ops(vec![r2]);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].errno, nix::errno::Errno::EEXIST as i32);
    assert!(f[0].info.dst && f[0].info.gfid_mismatch);
    assert_eq!(f[0].info.secondary_gfid, Some(sl));
    // 7. Source absent, directory or unknown stat: nothing.
    assert!(s.ops(vec![ren(gfid(), b"gone-dir", b"nodir", Some(stat(0o040_755, 0, 0)))]).is_empty());
    assert!(s.ops(vec![ren(gfid(), b"gone-x", b"nox", None)]).is_empty());
    assert!(!tp.join("nodir").exists() && !tp.join("nox").exists());
    // 8. Directory rename, and across directories.
    let mut rd = op(Op::Rename, d, &t, b"d");
    rd.entry1 = Some(entry(&d, b"inside-self"));
    rd.entry1 = Some(entry(&ROOT, b"renames-moved-dir"));
    rd.stat = Some(stat(0o040_755, 0, 0));
    assert!(s.ops(vec![rd]).is_empty());
    assert!(vol.mount.join("renames-moved-dir").is_dir());
    assert_eq!(brick_gfid(&vol, Path::new("renames-moved-dir")), d);
    let _ = s.close();
}

fn distributed(fx: &Fixture) {
    let vol = fx.volume("ours-2x2", Shape::DistRep2x2, Side::Secondary);
    let s = Server::start(&vol, &["--primary-dist-count", "2"]);
    let (t, tp) = top(&s, &vol, "dist");
    let mut gs = Vec::new();
    let mut ops = Vec::new();
    for i in 0..20 {
        let g = gfid();
        gs.push(g);
        ops.push(create(g, &t, format!("f{i}").as_bytes(), 0o644, 0, 0));
    }
    assert!(s.ops(ops).is_empty());
    for (i, g) in gs.iter().enumerate() {
        assert_eq!(brick_gfid(&vol, &rel(&vol, &tp.join(format!("f{i}")))), *g);
    }
    // With a distributed primary, RENAME onto a name with another gfid is a
    // conflict for the primary to resolve, not an overwrite.
    let mut r = op(Op::Rename, gs[0], &t, b"f0");
    r.entry1 = Some(entry(&t, b"f1"));
    r.stat = Some(stat(0o100_644, 0, 0));
    let f = s.ops(vec![r]);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].info.dst && f[0].info.gfid_mismatch && !f[0].info.secondary_isdir);
    assert_eq!(f[0].info.secondary_gfid, Some(gs[1]));
    assert!(tp.join("f0").exists());
    let _ = s.close();
}

fn conflicts(fx: &Fixture) {
    let vol = single(fx);
    let s = Server::start(&vol, &[]);
    let (t, _tp) = top(&s, &vol, "conflicts");
    let (f, d, other) = (gfid(), gfid(), gfid());
    assert!(s.ops(vec![create(f, &t, b"f", 0o644, 0, 0), mkdir(d, &t, b"d", 0o755)]).is_empty());
    // SYMLINK onto a name with another gfid: EEXIST with the gfid mismatch.
    let mut sym = op(Op::Symlink, other, &t, b"f");
    sym.stat = Some(stat(0o120_777, 0, 0));
    sym.link = Some(b"x".to_vec());
    // UNLINK of a name that carries another gfid (of an existing file).
    let unl = op(Op::Unlink, f, &t, b"d");
    // MKDIR of an existing gfid under a new name: "rename on mkdir".
    let mkd = mkdir(d, &t, b"d-renamed", 0o755);
    // MKDIR of a new gfid onto an existing directory name: the newfile
    // create fails EEXIST, reported with secondary_isdir and its name.
    let mkd2 = mkdir(gfid(), &t, b"d", 0o755);
    // A child of a missing parent: ENOENT.
    let orphan = create(gfid(), &gfid(), b"orphan", 0o644, 0, 0);
    let fails = s.ops(vec![sym.clone(), unl, mkd, mkd2, orphan]);
    let by_index: BTreeMap<u32, &EntryFailure> = fails.iter().map(|f| (f.index, f)).collect();
    assert_eq!(fails.len(), 5, "{fails:#?}");
    let eexist = nix::errno::Errno::EEXIST as i32;
    assert_eq!(by_index[&0].errno, eexist);
    assert_eq!(
        by_index[&0].info,
        FailureInfo { gfid_mismatch: true, secondary_gfid: Some(f), ..FailureInfo::default() }
    );
    assert_eq!(by_index[&0].entry, sym);
    assert_eq!(
        by_index[&1].info,
        FailureInfo {
            gfid_mismatch: true,
            secondary_isdir: true,
            secondary_gfid: Some(d),
            secondary_name: Some(entry(&t, b"d")),
            ..FailureInfo::default()
        }
    );
    assert_eq!(by_index[&2].errno, eexist);
    assert_eq!(
        by_index[&2].info,
        FailureInfo {
            name_mismatch: true,
            secondary_isdir: true,
            secondary_gfid: Some(d),
            secondary_entry: Some(entry(&t, b"d")),
            ..FailureInfo::default()
        }
    );
    assert_eq!(by_index[&3].errno, eexist);
    assert!(by_index[&3].info.gfid_mismatch && by_index[&3].info.secondary_isdir);
    assert_eq!(by_index[&3].info.secondary_name, Some(entry(&t, b"d")));
    assert_eq!(by_index[&4].errno, nix::errno::Errno::ENOENT as i32);
    assert_eq!(by_index[&4].info, FailureInfo::default());
    // A failure record carries the entry as sent (stat owner restored).
    let mut l = op(Op::Symlink, gfid(), &t, b"d");
    l.stat = Some(stat(0o120_777, 1234, 5678));
    l.link = Some(b"y".to_vec());
    let fl = s.ops(vec![l.clone()]);
    assert_eq!(fl[0].entry, l);
    // skip_entry: nothing happens.
    let mut skipped = create(gfid(), &t, b"skipped", 0o644, 0, 0);
    skipped.skip = true;
    assert!(s.ops(vec![skipped]).is_empty());
    assert!(!vol.mount.join("conflicts/skipped").exists());
    let _ = s.close();
}

fn meta(fx: &Fixture) {
    let vol = single(fx);
    let s = Server::start(&vol, &[]);
    let (t, tp) = top(&s, &vol, "meta");
    let (f, l) = (gfid(), gfid());
    let mut sym = op(Op::Symlink, l, &t, b"l");
    sym.stat = Some(stat(0o120_777, 0, 0));
    sym.link = Some(b"f".to_vec());
    assert!(s.ops(vec![create(f, &t, b"f", 0o644, 0, 0), sym]).is_empty());
    let go = |g: &Gfid| [b".gfid/".as_slice(), &g.canonical()].concat();
    let st = Stat {
        uid: 2001,
        gid: 2002,
        mode: 0o100_4711,
        atime: Time { sec: 1_600_000_000, nsec: 5 },
        mtime: Time { sec: 1_600_000_123, nsec: 456_000_000 },
    };
    let lst = Stat { uid: 3001, gid: 3002, mode: 0o120_777, ..st };
    let fails = s
        .c()
        .meta_ops(vec![
            MetaOp { go: go(&f), stat: st, xattrs: None },
            MetaOp { go: go(&l), stat: lst, xattrs: None },
            // A gfid that is gone is skipped, not a failure.
            MetaOp { go: go(&gfid()), stat: st, xattrs: None },
        ])
        .unwrap();
    assert!(fails.is_empty(), "{fails:?}");
    let m = settled(&tp.join("f"), |m| m.uid() == 2001);
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (2001, 2002, 0o4711));
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_600_000_123, 456_000_000));
    assert_eq!(m.atime(), 1_600_000_000);
    let ml = settled(&tp.join("l"), |m| m.uid() == 3001);
    assert_eq!((ml.uid(), ml.gid()), (3001, 3002), "lchown of the symlink itself");
    assert_eq!(ml.mtime(), 1_600_000_123, "symlink times replayed without following it");
    s.c().set_attr(go(&f), gsyncd::proto::rpc::SetAttrs { own: Some((7, 8)), mode: Some(0o600), times: None }).unwrap();
    settled(&tp.join("f"), |m| (m.uid(), m.gid(), m.mode() & 0o7777) == (7, 8, 0o600));
    let _ = s.close();
}

fn keep_alive(fx: &Fixture) {
    let vol = single(fx);
    let s = Server::start(&vol, &[]);
    let pv = gfid();
    let mark = VolumeMark {
        major: 1,
        minor: 0,
        uuid: pv,
        retval: 0,
        time: XTime { sec: 1_700_000_001, usec: 42 },
        timeout: Some(1_700_000_121),
    };
    assert_eq!(s.c().keep_alive(Some(mark)).unwrap(), 1);
    assert_eq!(s.c().keep_alive(None).unwrap(), 2);
    let key = format!("trusted.glusterfs.volume-mark.{pv}");
    let v = xattr::get(&vol.bricks[0], &key).unwrap().expect("mark on the brick root");
    assert_eq!(v.len(), 31);
    let mut want = vec![1u8, 0];
    want.extend_from_slice(pv.as_bytes());
    want.push(0);
    want.extend_from_slice(&1_700_000_001u32.to_be_bytes());
    want.extend_from_slice(&42u32.to_be_bytes());
    want.extend_from_slice(&1_700_000_121u32.to_be_bytes());
    assert_eq!(v, want);
    // A mark without its timeout is refused, and the server keeps serving.
    let e = s.c().keep_alive(Some(VolumeMark { timeout: None, ..mark })).unwrap_err();
    assert!(matches!(e, ClientError::Remote(_)), "{e}");
    assert_eq!(s.c().keep_alive(None).unwrap(), 3, "a refused keep-alive does not count");
    let _ = xattr::remove(&vol.mount, &key);
    let _ = s.close();
}

fn odd_names(fx: &Fixture) {
    let vol = single(fx);
    let s = Server::start(&vol, &[]);
    let (t, tp) = top(&s, &vol, "odd");
    let names: [&[u8]; 6] =
        [b"with space", b"new\nline", b"per%25cent", b"\xff\xfe latin1 \xe9", b"tab\there", b"-dash"];
    let gs: Vec<Gfid> = names.iter().map(|_| gfid()).collect();
    let mut ops: Vec<EntryOp> = names.iter().zip(&gs).map(|(n, g)| create(*g, &t, n, 0o644, 0, 0)).collect();
    let dg = gfid();
    ops.push(mkdir(dg, &t, b"dir \xff\n", 0o755));
    assert!(s.ops(ops).is_empty());
    for (n, g) in names.iter().zip(&gs) {
        let p = tp.join(OsStr::from_bytes(n));
        assert!(p.is_file(), "{}", p.display());
        assert_eq!(brick_gfid(&vol, &rel(&vol, &p)), *g);
    }
    // And renames between such names.
    let mut r = op(Op::Rename, gs[3], &t, names[3]);
    r.entry1 = Some(entry(&dg, b"\x80 moved %0A"));
    r.stat = Some(stat(0o100_644, 0, 0));
    assert!(s.ops(vec![r]).is_empty());
    assert!(tp.join(OsStr::from_bytes(b"dir \xff\n")).join(OsStr::from_bytes(b"\x80 moved %0A")).is_file());
    let _ = s.close();
}

fn guard_and_frames(fx: &Fixture) {
    let vol = single(fx);
    let s = Server::start(&vol, &[]);
    let (t, _tp) = top(&s, &vol, "guard");
    for bad in [b"/etc/passwd".to_vec(), b"../../etc".to_vec(), b".gfid/../x".to_vec(), b"plain/name".to_vec()] {
        let mut e = create(gfid(), &t, b"x", 0o644, 0, 0);
        e.entry = bad.clone();
        let err = s.c().entry_ops(vec![e]).unwrap_err();
        let ClientError::Remote(r) = err else { panic!("{err}") };
        assert!(r.message.contains("unsafe path"), "{}", r.message);
        assert_eq!(r.path.as_deref(), Some(bad.as_slice()));
    }
    assert!(s.c().lstat(vec![b"/etc/shadow".to_vec()]).is_err());
    // Still serving.
    assert!(s.c().pid().is_ok());
    let pid = s.pid;
    let _ = s.close();
    assert_nothing_left(&vol, pid);

    // Raw frames: a frame that is not a request gets an error reply with
    // its id and the server goes on; a cut stream ends it with exit 1.
    let (mut child, log) = spawn(&vol, &[]);
    let mut w = child.stdin.take().unwrap();
    let mut r = child.stdout.take().unwrap();
    let mut chan = gsyncd::proto::rpc::Duplex { r: &mut r, w: &mut w };
    gsyncd::proto::handshake(&mut chan, gsyncd::proto::Role::Worker, gsyncd::proto::Role::Secondary, "s").unwrap();
    let mut junk = postcard::to_stdvec(&9u64).unwrap();
    junk.extend_from_slice(&[0xee, 0xff, 0x01]);
    gsyncd::proto::write_frame(&mut w, &junk, 1 << 20, "s").unwrap();
    let reply: gsyncd::proto::rpc::Reply = gsyncd::proto::recv(&mut r, 1 << 26, "s").unwrap().unwrap();
    assert_eq!(reply.id, 9);
    assert!(reply.result.unwrap_err().message.contains("malformed request"));
    let pid = child.id();
    w.write_all(&[0, 0, 0, 50, 1, 2, 3]).unwrap();
    drop(w);
    let st = wait_exit(&mut child, Duration::from_secs(20));
    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    assert_eq!(st.code(), Some(1), "{text}");
    assert!(text.contains("connection to the primary is broken"), "{text}");
    assert_nothing_left(&vol, pid);
}

// ----------------------------------------------------------------- ssh gate

fn ssh_gate(fx: &Fixture) {
    let vol = single(fx);
    let sshd = fx.sshd();
    let key = sshd.add_forced_key("gate_key", &format!("{} ssh-gate --volume {}", gsyncd(), vol.name));
    let opts = sshd.ssh_options_with(&key);
    let ssh = |cmd: Option<&str>| {
        let mut c = Command::new("ssh");
        c.args(&opts).arg("root@127.0.0.1");
        if let Some(cmd) = cmd {
            c.arg(cmd);
        }
        c.stdin(Stdio::null()).output().unwrap()
    };
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    for cmd in [
        Some("sh -c id"),
        Some("id"),
        Some("cat /etc/shadow"),
        Some("scp -t /tmp"),
        Some("rsync --server --sender -logDtpre.iLsfxC . /etc"),
        Some("rsync --server -logDtpre.iLsfxC . /etc"),
        Some("tar -xf - -C /proc/1/cwd"),
        Some("tar --to-command=sh -xf - -C /tmp"),
        Some("gsyncd secondary pv localhost::othervol"),
        Some("gsyncd secondary pv localhost::vol; id"),
        Some("gsyncd config get x"),
        None,
    ] {
        let o = ssh(cmd);
        assert_eq!(o.status.code(), Some(1), "{cmd:?} was not refused: {}", text(&o));
        assert!(text(&o).contains("refused"), "{cmd:?}: {}", text(&o));
    }
    let o = ssh(Some("gsyncd --version"));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("gsyncd "));

    // The real thing: the server through the gate, then data by rsync and
    // by tar into its (otherwise unreachable) mount.
    let mut child = Command::new("ssh")
        .args(&opts)
        .arg("root@127.0.0.1")
        .arg(format!("/usr/bin/gsyncd secondary pvol localhost::{} --primary-node localhost", vol.name))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = Client::connect(child.stdout.take().unwrap(), child.stdin.take().unwrap(), "secondary").unwrap();
    let pid = client.pid().unwrap();
    let t = gfid();
    let (f1, f2) = (gfid(), gfid());
    let fails = client
        .entry_ops(vec![
            mkdir(t, &ROOT, b"gate", 0o755),
            create(f1, &t, b"by rsync", 0o644, 0, 0),
            create(f2, &t, b"by tar", 0o644, 0, 0),
        ])
        .unwrap();
    assert!(fails.is_empty(), "{fails:?}");
    let src = tempfile::tempdir().unwrap();
    fs::create_dir(src.path().join(".gfid")).unwrap();
    let body1: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(src.path().join(".gfid").join(f1.to_string()), &body1).unwrap();
    fs::write(src.path().join(".gfid").join(f2.to_string()), b"tar body\n").unwrap();
    let e = opts.iter().map(|o| o.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ");
    let mut rsync = Command::new("rsync")
        .args(["-aR0", "--inplace", "--files-from=-", "--super", "--numeric-ids", "--no-implied-dirs", "--existing"])
        .arg("-e")
        .arg(format!("ssh {e}"))
        .arg(".")
        .arg(format!("root@127.0.0.1:/proc/{pid}/cwd"))
        .current_dir(src.path())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    rsync.stdin.take().unwrap().write_all(format!(".gfid/{f1}\0").as_bytes()).unwrap();
    let out = rsync.wait_with_output().unwrap();
    assert!(out.status.success(), "rsync through the gate: {}", String::from_utf8_lossy(&out.stderr));
    let got = vol.mount.join("gate").join("by rsync");
    wait_for(Duration::from_secs(10), "the rsync'd data on the secondary", || {
        (fs::read(&got).ok()? == body1).then_some(())
    });
    // The way the worker sends data: rsync names the receive through gsyncd
    // (--rsync-path), which works through the gate and, with a key without
    // a forced command, by itself.
    let rsync_via = |ssh_opts: &[std::ffi::OsString], rsync_path: &str, body: &[u8]| {
        fs::write(src.path().join(".gfid").join(f1.to_string()), body).unwrap();
        let e = ssh_opts.iter().map(|o| o.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ");
        let mut r = Command::new("rsync")
            .args([
                "-aR0",
                "--inplace",
                "--files-from=-",
                "--super",
                "--numeric-ids",
                "--no-implied-dirs",
                "--existing",
            ])
            .arg(format!("--rsync-path={rsync_path}"))
            .arg("-e")
            .arg(format!("ssh {e}"))
            .arg(".")
            .arg(format!("root@127.0.0.1:/proc/{pid}/cwd"))
            .current_dir(src.path())
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        r.stdin.take().unwrap().write_all(format!(".gfid/{f1}\0").as_bytes()).unwrap();
        let out = r.wait_with_output().unwrap();
        assert!(out.status.success(), "rsync via {rsync_path}: {}", String::from_utf8_lossy(&out.stderr));
        wait_for(Duration::from_secs(10), "the data on the secondary", || (fs::read(&got).ok()? == body).then_some(()));
    };
    rsync_via(&opts, "gsyncd receive rsync", b"through the gate, named by gsyncd");
    rsync_via(&sshd.ssh_options(), &format!("{} receive rsync", gsyncd()), b"no gate: gsyncd receive itself");
    let tar = Command::new("sh")
        .arg("-c")
        .arg(format!("tar -cf - .gfid/{f2} | ssh {e} root@127.0.0.1 tar --overwrite -xf - -C /proc/{pid}/cwd"))
        .current_dir(src.path())
        .output()
        .unwrap();
    assert!(tar.status.success(), "tar through the gate: {}", String::from_utf8_lossy(&tar.stderr));
    let got = vol.mount.join("gate").join("by tar");
    wait_for(Duration::from_secs(10), "the tar'd data on the secondary", || {
        (fs::read(&got).ok()? == b"tar body\n").then_some(())
    });
    assert_eq!(brick_gfid(&vol, Path::new("gate/by tar")), f2, "tar wrote through the gfid, not a new file");
    drop(client);
    let st = wait_exit(&mut child, Duration::from_secs(20));
    assert_eq!(st.code(), Some(0));
    assert_nothing_left(&vol, pid);
}

// ------------------------------------------------------------- differential

/// An entry op as the reference's worker would send it (its `edct` dict).
fn ref_entry(e: &EntryOp) -> serde_json::Value {
    use serde_json::json;
    let s = |b: &[u8]| String::from_utf8(b.to_vec()).expect("differential names are UTF-8");
    let mut m = json!({"op": e.op.name(), "skip_entry": e.skip, "gfid": e.gfid.to_string(), "entry": s(&e.entry)});
    let t = |t: Time| t.sec as f64 + f64::from(t.nsec) / 1e9;
    match e.op {
        Op::Create | Op::Mknod | Op::Mkdir => {
            m["mode"] = json!(e.mode);
            m["uid"] = json!(e.uid);
            m["gid"] = json!(e.gid);
        }
        Op::Link | Op::Symlink | Op::Rename => {
            m["stat"] = match e.stat {
                Some(st) => {
                    json!({"uid": st.uid, "gid": st.gid, "mode": st.mode, "atime": t(st.atime), "mtime": t(st.mtime)})
                }
                None => json!({}),
            };
            m["link"] = json!(e.link.as_deref().map(s));
            if let Some(d) = &e.entry1 {
                m["entry1"] = json!(s(d));
            }
        }
        Op::Unlink | Op::Rmdir => {}
    }
    m
}

/// A failure reduced to what both implementations report.
type Norm = (u32, i32, bool, bool, bool, bool, Option<String>, Option<String>, Option<String>);

fn norm_ours(f: &[EntryFailure]) -> Vec<Norm> {
    let s = |b: &Option<Vec<u8>>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
    let mut v: Vec<Norm> = f
        .iter()
        .map(|f| {
            let i = &f.info;
            let g = i.secondary_gfid.map(|g| g.to_string());
            (
                f.index,
                f.errno,
                i.gfid_mismatch,
                i.name_mismatch,
                i.dst,
                i.secondary_isdir,
                g,
                s(&i.secondary_name),
                s(&i.secondary_entry),
            )
        })
        .collect();
    v.sort();
    v
}

fn norm_ref(v: &serde_json::Value) -> Vec<Norm> {
    let mut out: Vec<Norm> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let i = &f["info"];
            let b = |k: &str| i[k].as_bool().unwrap_or(false);
            let st = |k: &str| i[k].as_str().map(str::to_owned);
            (
                f["index"].as_u64().unwrap() as u32,
                f["errno"].as_i64().unwrap() as i32,
                b("gfid_mismatch"),
                b("name_mismatch"),
                b("dst"),
                b("secondary_isdir"),
                st("secondary_gfid"),
                st("secondary_name"),
                st("secondary_entry"),
            )
        })
        .collect();
    out.sort();
    out
}

fn differential(fx: &Fixture) {
    let ours = fx.volume("diff-ours", Shape::Single, Side::Secondary);
    let theirs = fx.volume("diff-ref", Shape::Single, Side::Secondary);
    let g: Vec<Gfid> = (0..20).map(|_| gfid()).collect();
    let (top, d1, d2, f1, f2, fifo, s1, h, r1, r2, x) =
        (g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10]);
    let sym = |gf: Gfid, pg: &Gfid, name: &[u8], target: &[u8], uid: u32| {
        let mut e = op(Op::Symlink, gf, pg, name);
        e.stat = Some(stat(0o120_777, uid, uid));
        e.link = Some(target.to_vec());
        e
    };
    let lnk = |gf: Gfid, pg: &Gfid, name: &[u8], mode: u32| {
        let mut e = op(Op::Link, gf, pg, name);
        e.stat = Some(stat(mode, 1000, 1000));
        e
    };
    let ren = |gf: Gfid, pg: &Gfid, from: &[u8], dpg: &Gfid, to: &[u8], st: Option<Stat>, link: Option<&[u8]>| {
        let mut e = op(Op::Rename, gf, pg, from);
        e.entry1 = Some(entry(dpg, to));
        e.stat = st;
        e.link = link.map(<[u8]>::to_vec);
        e
    };
    let mut fifo_op = op(Op::Mknod, fifo, &d1, b"fifo");
    fifo_op.mode = 0o010_640;
    let batches: Vec<Vec<EntryOp>> = vec![
        vec![
            // The first blob: the reference sends its process umask here.
            mkdir(top, &ROOT, b"diff", 0o775),
            mkdir(d1, &top, b"d1", 0o750),
            create(f1, &d1, b"f1", 0o644, 1000, 1000),
            create(f2, &d1, b"f2 with space", 0o600, 0, 0),
            fifo_op,
            sym(s1, &d1, b"s1", b"../elsewhere", 1001),
            lnk(f1, &top, b"h1", 0o100_644),
            lnk(h, &top, b"h-new", 0o100_640),
            mkdir(d2, &top, b"d2", 0o755),
            create(x, &d2, b"x", 0o644, 0, 0),
        ],
        vec![
            ren(f2, &d1, b"f2 with space", &top, b"f2r", Some(stat(0o100_600, 0, 0)), None),
            ren(f1, &d1, b"f1", &top, b"h1", Some(stat(0o100_644, 1000, 1000)), None),
            ren(r1, &d1, b"gone", &top, b"r1-new", Some(stat(0o100_644, 0, 0)), None),
            ren(r2, &d1, b"gone-link", &top, b"r2-link", Some(stat(0o120_777, 0, 0)), Some(b"t")),
            ren(d2, &top, b"d2", &ROOT, b"diff-d2r", Some(stat(0o040_755, 0, 0)), None),
        ],
        vec![
            sym(g[11], &top, b"h1", b"clash", 0),
            op(Op::Unlink, h, &top, b"d1"),
            mkdir(d1, &top, b"d1-renamed", 0o750),
            mkdir(g[12], &top, b"d1", 0o755),
            create(g[13], &g[14], b"orphan", 0o644, 0, 0),
        ],
        vec![op(Op::Unlink, h, &top, b"h-new"), op(Op::Rmdir, d1, &top, b"d1")],
    ];
    let go = |gf: &Gfid| [b".gfid/".as_slice(), &gf.canonical()].concat();
    let meta_st = Stat { uid: 7, gid: 8, mode: 0o100_640, ..stat(0, 0, 0) };
    let meta = vec![
        MetaOp { go: go(&f1), stat: meta_st, xattrs: None },
        MetaOp { go: go(&r2), stat: Stat { mode: 0o120_777, ..meta_st }, xattrs: None },
        MetaOp { go: go(&g[15]), stat: meta_st, xattrs: None },
    ];

    // Ours.
    let s = Server::start(&ours, &[]);
    let our_fails: Vec<Vec<Norm>> = batches.iter().map(|b| norm_ours(&s.ops(b.clone()))).collect();
    let our_meta = s.c().meta_ops(meta.clone()).unwrap();
    let _ = s.close();

    // Theirs, through the reference's own secondary.
    let mut calls: Vec<serde_json::Value> = batches
        .iter()
        .map(|b| serde_json::json!({"method": "entry_ops", "args": [b.iter().map(ref_entry).collect::<Vec<_>>()]}))
        .collect();
    let t = |t: Time| t.sec as f64 + f64::from(t.nsec) / 1e9;
    let ref_meta: Vec<serde_json::Value> = meta
        .iter()
        .map(|m| {
            let st = m.stat;
            serde_json::json!({"op": "META", "skip_entry": false, "go": String::from_utf8(m.go.clone()).unwrap(),
                "stat": {"uid": st.uid, "gid": st.gid, "mode": st.mode, "atime": t(st.atime), "mtime": t(st.mtime)}})
        })
        .collect();
    calls.push(serde_json::json!({"method": "meta_ops", "args": [ref_meta]}));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/refsecondary.py");
    let mut py = Command::new("python3")
        .arg(&script)
        .args(["--primary-vol", "pvol", "--secondary-vol", &theirs.name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // Last, a name that is not UTF-8 (é in Latin-1). JSON carries it as the
    // surrogate escape Python decodes it to; serde_json cannot write one.
    let mut text = serde_json::json!({"calls": calls}).to_string();
    text.truncate(text.len() - 2);
    text.push_str(&format!(
        r#",{{"method":"entry_ops","args":[[{{"op":"CREATE","skip_entry":false,"gfid":"{}","entry":".gfid/{}/caf\udce9","mode":33188,"uid":0,"gid":0}}]]}}]}}"#,
        g[16], top
    ));
    py.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(out.status.success(), "the reference driver failed");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tail = report["stderr_tail"].as_str().unwrap_or_default().to_owned();
    assert_eq!(report["exit_status"], 0, "{tail}");
    assert_eq!(report["leftover_mounts"], serde_json::json!([]), "the reference left a mount: {tail}");
    let results = report["results"].as_array().unwrap();
    for (i, ours) in our_fails.iter().enumerate() {
        let r = &results[i];
        assert!(r.get("ok").is_some(), "reference batch {i} failed: {r}\n{tail}");
        assert_eq!(ours, &norm_ref(&r["ok"]), "failure records of batch {i} differ (left ours, right the reference)");
    }
    assert_eq!(results[batches.len()]["ok"], serde_json::json!([]), "{tail}");
    assert!(our_meta.is_empty(), "{our_meta:?}");
    // A finding: the reference cannot create a name that is not UTF-8 (its
    // whole entry_ops call fails, which crashes its worker); ours does (see
    // odd_names).
    let last = &results[batches.len() + 1];
    assert!(last["error"].as_str().is_some_and(|e| e.contains("UnicodeEncodeError")), "{last}");
    // The conflict batch really produced the records both sides agree on.
    assert_eq!(our_fails[2].len(), 5, "{:?}", our_fails[2]);

    // Same trees, same GFIDs, same owners and modes, but one finding: the
    // reference's first newfile blob carries its process umask (022), so the
    // first entry it creates loses group write (0775 -> 0755); gsyncd sends
    // umask 0 and replays the primary's mode exactly.
    let settle = Duration::from_secs(2);
    std::thread::sleep(settle);
    let o = support::tree::Options { mtimes: false, ..support::tree::Options::default() };
    let diffs = support::tree::compare(&ours.mount, &theirs.mount, &o);
    assert_eq!(diffs.len(), 1, "{}", support::tree::report(&diffs));
    assert_eq!(diffs[0].path, b"diff", "{}", support::tree::report(&diffs));
    assert!(diffs[0].what.contains("mode"), "{}", support::tree::report(&diffs));
    assert_eq!(fs::metadata(ours.mount.join("diff")).unwrap().mode() & 0o777, 0o775);
    assert_eq!(fs::metadata(theirs.mount.join("diff")).unwrap().mode() & 0o777, 0o755);
}

/// The "rename on mkdir" lookup reads the brick's `.glusterfs` link when the
/// brick is on this node; on a node without one it asks the mount's
/// `glusterfs.gfid2path` (the reference gives up there).
fn gfid2path_lookup(fx: &Fixture) {
    let vol = single(fx);
    let other_node = tempfile::tempdir().unwrap();
    fs::write(other_node.path().join("glusterd.info"), format!("UUID={}\noperating-version=100000\n", gfid())).unwrap();
    let s = Server::start(&vol, &["--glusterd-workdir", other_node.path().to_str().unwrap()]);
    let (t, _tp) = top(&s, &vol, "g2p");
    let (sub, d) = (gfid(), gfid());
    assert!(s.ops(vec![mkdir(sub, &t, b"sub dir", 0o755), mkdir(d, &sub, b"moved", 0o755)]).is_empty());
    let f = s.ops(vec![mkdir(d, &t, b"new-name", 0o755)]);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].info.name_mismatch && f[0].info.secondary_isdir);
    assert_eq!(f[0].info.secondary_entry, Some(entry(&sub, b"moved")));
    let _ = s.close();
}

// -------------------------------------------------------------- mountbroker

/// A second glusterd, set up for a mountbroker user, in a network namespace
/// of its own (so it has its own port 24007 and `localhost`), with one
/// volume; and that non-root user.
struct Broker {
    ns: String,
    dir: PathBuf,
    user: String,
    uid: u32,
    gid: u32,
    vol: String,
    brick: PathBuf,
    bin: PathBuf,
    log_dir: PathBuf,
}

fn sh(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

impl Broker {
    fn start() -> Broker {
        let pid = std::process::id();
        let user = "gsyncd-mbtest".to_owned();
        if !Command::new("id").arg(&user).output().unwrap().status.success() {
            sh(Command::new("useradd").args(["-M", "-r", "-s", "/usr/sbin/nologin", &user]));
        }
        let uid: u32 = sh(Command::new("id").args(["-u", &user])).trim().parse().unwrap();
        let gid: u32 = sh(Command::new("id").args(["-g", &user])).trim().parse().unwrap();
        let dir = Path::new(support::cluster::BASE).join(format!("mb-{pid}"));
        let vol = format!("gsytmb{pid}");
        let b = Broker {
            ns: format!("gsytmb{pid}"),
            brick: dir.join("brick"),
            bin: dir.join("gsyncd"),
            log_dir: Path::new("/var/log/glusterfs/geo-replication-secondaries").join(format!("pvol_localhost_{vol}")),
            dir,
            user,
            uid,
            gid,
            vol,
        };
        for d in ["wd", "root", "run", "log", "brick"] {
            fs::create_dir_all(b.dir.join(d)).unwrap();
        }
        for (d, m) in [(Path::new(support::cluster::BASE), 0o755), (&b.dir, 0o755), (&b.dir.join("root"), 0o711)] {
            fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(m)).unwrap();
        }
        fs::copy(gsyncd(), &b.bin).unwrap();
        fs::create_dir_all(&b.log_dir).unwrap();
        std::os::unix::fs::chown(&b.log_dir, Some(0), Some(gid)).unwrap();
        fs::set_permissions(&b.log_dir, std::os::unix::fs::PermissionsExt::from_mode(0o770)).unwrap();
        sh(Command::new("ip").args(["netns", "add", &b.ns]));
        sh(Command::new("ip").args(["netns", "exec", &b.ns, "ip", "link", "set", "lo", "up"]));
        let d = b.dir.display();
        fs::write(
            b.dir.join("glusterd.vol"),
            format!(
                "volume management\n    type mgmt/glusterd\n    option working-directory {d}/wd\n    \
                 option transport-type socket\n    option transport.socket.listen-port 24007\n    \
                 option ping-timeout 0\n    option event-threads 1\n    option mountbroker-root {d}/root\n    \
                 option mountbroker-geo-replication.{u} {v}\n    option geo-replication-log-group {u}\n    \
                 option rpc-auth-allow-insecure on\n    option glusterd-sockfile {d}/run/glusterd.socket\nend-volume\n",
                u = b.user,
                v = b.vol
            ),
        )
        .unwrap();
        sh(Command::new("ip").args(["netns", "exec", &b.ns, "glusterd", "-f"]).arg(b.dir.join("glusterd.vol")).args([
            "-p",
            &format!("{d}/run/glusterd.pid"),
            "-l",
            &format!("{d}/log/glusterd.log"),
        ]));
        wait_for(Duration::from_secs(20), "the mountbroker glusterd", || b.gluster(&["volume", "list"]).ok());
        b.gluster(&["volume", "create", &b.vol, &format!("127.0.0.2:{}", b.brick.display()), "force"]).unwrap();
        b.gluster(&["volume", "start", &b.vol]).unwrap();
        b
    }

    fn gluster(&self, args: &[&str]) -> Result<String, String> {
        let o = Command::new("ip")
            .args(["netns", "exec", &self.ns, "gluster"])
            .arg(format!("--glusterd-sock={}/run/glusterd.socket", self.dir.display()))
            .arg("--mode=script")
            .args(args)
            .output()
            .unwrap();
        if o.status.success() { Ok(String::from_utf8_lossy(&o.stdout).into_owned()) } else { Err(format!("{o:?}")) }
    }

    /// `gsyncd secondary` as the user, in the namespace.
    fn spawn(&self) -> (Child, Arc<Mutex<Vec<u8>>>) {
        // glusterd's mounts are in the mount namespace `ip netns exec` gave
        // it; the user's processes must be there too.
        let gd = fs::read_to_string(self.dir.join("run/glusterd.pid")).unwrap();
        let mut child = Command::new("nsenter")
            .args(["-t", gd.trim(), "-n", "-m", "setpriv"])
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .args(["--clear-groups", "--"])
            .arg(&self.bin)
            .args(["secondary", "pvol", &format!("localhost::{}", self.vol), "--primary-node", "localhost"])
            .args(["--secondary-log-level", "DEBUG"])
            .env("HOME", "/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let buf = Arc::new(Mutex::new(Vec::new()));
        let mut err = child.stderr.take().unwrap();
        let b2 = Arc::clone(&buf);
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = err.read_to_end(&mut v);
            b2.lock().unwrap().extend_from_slice(&v);
        });
        (child, buf)
    }

    /// Mounts the broker made for the user (cookie links and mount points).
    fn leftovers(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for d in [self.dir.join("root/mb_hive"), self.dir.join(format!("root/user{}", self.uid))] {
            if let Ok(rd) = fs::read_dir(&d) {
                v.extend(rd.flatten().map(|e| e.path().display().to_string()));
            }
        }
        v
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.gluster(&["volume", "stop", &self.vol, "force"]);
        let _ = self.gluster(&["volume", "delete", &self.vol]);
        // Everything still running in the namespace (glusterd, bricks, clients).
        if let Ok(o) = Command::new("ip").args(["netns", "pids", &self.ns]).output() {
            for p in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", p]).status();
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        for m in support::cluster::mounts_under(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = Command::new("userdel").arg(&self.user).status();
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_dir_all(&self.log_dir);
    }
}

fn mountbroker(fx: &Fixture) {
    let _ = fx.cluster(); // glusterd binaries and the harness base directory
    let b = Broker::start();
    let (mut child, log) = b.spawn();
    let text = || String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    let client = Client::connect(child.stdout.take().unwrap(), child.stdin.take().unwrap(), "secondary").unwrap();
    let pid = match client.pid() {
        Ok(p) => p,
        Err(e) => {
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(300));
            panic!("{e}\n{}", text())
        }
    };
    let cwd = fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    assert!(cwd.starts_with(b.dir.join(format!("root/user{}", b.uid))), "{}", cwd.display());
    let (d, f) = (gfid(), gfid());
    let fails = client
        .entry_ops(vec![mkdir(d, &ROOT, b"mb", 0o755), create(f, &d, b"f", 0o640, 1234, 4321)])
        .unwrap_or_else(|e| panic!("{e}\n{}", text()));
    assert!(fails.is_empty(), "{fails:?}");
    let on_brick = b.brick.join("mb/f");
    let m = fs::symlink_metadata(&on_brick).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1234, 4321, 0o640), "user-map-root replays owners");
    assert_eq!(Uuid::from_bytes(&xattr::get(&on_brick, "trusted.gfid").unwrap().unwrap()).unwrap(), f);
    // The keep-alive mark of a non-root secondary is in the system. namespace.
    let pv = gfid();
    let mark =
        VolumeMark { major: 1, minor: 0, uuid: pv, retval: 0, time: XTime { sec: 5, usec: 6 }, timeout: Some(7) };
    match client.keep_alive(Some(mark)) {
        Ok(n) => assert_eq!(n, 1),
        Err(e) => panic!("keep-alive with a mark as a non-root user: {e}\n{}", text()),
    }
    // Set as system.glusterfs.volume-mark.<uuid> (a non-root user cannot
    // set trusted.*), GlusterFS stores it as the trusted.* key on the brick:
    // the same 31 bytes a root secondary writes.
    let v = xattr::get(&b.brick, format!("trusted.glusterfs.volume-mark.{pv}")).unwrap().expect("mark on the brick");
    assert_eq!(v, mark.encode());
    assert_eq!(v.len(), 31);
    drop(client);
    let st = wait_exit(&mut child, Duration::from_secs(30));
    assert_eq!(st.code(), Some(0), "{}", text());
    wait_for(Duration::from_secs(20), "the broker mount to be gone", || b.leftovers().is_empty().then_some(()));

    // SIGKILL: the guard has glusterd unmount it.
    let (mut child, log) = b.spawn();
    let client = Client::connect(child.stdout.take().unwrap(), child.stdin.take().unwrap(), "secondary").unwrap();
    client.pid().unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&log.lock().unwrap())));
    assert!(!b.leftovers().is_empty(), "mounted while running");
    child.kill().unwrap();
    child.wait().unwrap();
    drop(client);
    wait_for(Duration::from_secs(30), "the guard to have the broker mount removed", || {
        b.leftovers().is_empty().then_some(())
    });
}

/// A long entry batch does not hold up a keep-alive or a small call: the
/// server answers them while it works, out of order.
fn concurrency(fx: &Fixture) {
    let vol = single(fx);
    let s = Arc::new(Server::start(&vol, &["--sync-jobs", "2"]));
    let (t, _) = top(&s, &vol, "concurrency");
    let ops: Vec<EntryOp> = (0..400).map(|i| create(gfid(), &t, format!("f{i}").as_bytes(), 0o644, 0, 0)).collect();
    let s2 = Arc::clone(&s);
    let big = std::thread::spawn(move || {
        let f = s2.ops(ops);
        (f, Instant::now())
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(s.c().keep_alive(None).unwrap(), 1);
    let small_done = Instant::now();
    let (fails, big_done) = big.join().unwrap();
    assert!(fails.is_empty(), "{fails:?}");
    assert!(small_done < big_done, "the keep-alive waited for the batch");
    let Ok(s) = Arc::try_unwrap(s) else { panic!("server still shared") };
    let _ = s.close();
}
