//! The file-system work of the secondary server, on the aux-gfid mount that
//! is the process's working directory: entry replay by GFID (reference
//! §6.8), metadata replay (§6.10), and the small calls. Every path argument
//! passes the guard first; the whole call is refused if one does not.
//!
//! Errors follow the reference's `errno_wrap`: per call, a set of errnos is
//! tolerated (returned as a value, often recorded as a failure for the
//! primary to resolve), a set is retried (10 tries, 250 ms apart), and
//! anything else ends the call with an error reply that names the entry,
//! the system call and the path. Entries before it were applied.
//!
//! Deliberate differences from the reference, each safer:
//! - the newfile blob carries umask 0, so modes replay exactly (the
//!   reference sends the real umask once, then 0: its `umask()` sets it);
//! - `UNLINK` of a name that is a directory is ignored, as the reference's
//!   comment intends (its code raises);
//! - `RENAME` whose source vanished between the checks is a no-op (the
//!   reference crashes on `st.st_ino` of an errno);
//! - `LINK` of a GFID missing on the secondary without the primary's stat is
//!   reported as an ENOENT failure (the reference crashes on `e['stat']`);
//! - SYMLINK of a GFID that exists under another name is a replay (a later
//!   RENAME moved it) and is ignored, and ENODATA from the newfile blob is
//!   recorded as a failure (the reference crashes its worker on both);
//! - symlink times are replayed with `utimensat(AT_SYMLINK_NOFOLLOW)` (the
//!   reference skips them: Python lacks `lutimes`);
//! - the directory-path lookup also tries `glusterfs.gfid2path` when no
//!   local brick knows the GFID (the reference gives up).

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::stat::{FchmodatFlags, Mode, UtimensatFlags, fchmodat, utimensat};
use nix::sys::time::TimeSpec;

use crate::gluster::newfile::{NewFile, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use crate::gluster::uuid::{Gfid, Uuid};
use crate::gluster::xattr::{self as gx, keys};
use crate::proto::rpc::{
    DirEntry, EntryFailure, EntryOp, FailureInfo, FileData, MetaFailure, MetaOp, MetaStep, Op, RemoteError, SetAttrs,
    StatInfo, Time, Xattrs, replicated_xattr,
};

/// Tries of a retried call, and the pause between them (reference
/// `GF_OP_RETRIES`, 250 ms).
const TRIES: u32 = 10;
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Shows a byte path in messages without losing what it is.
pub fn show(p: &[u8]) -> String {
    p.escape_ascii().to_string()
}

fn os(p: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(p))
}

fn errno_of(e: &io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc_eio()))
}

fn libc_eio() -> i32 {
    Errno::EIO as i32
}

/// What a path argument names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `.gfid/<gfid>`
    Gfid(Gfid),
    /// `.gfid/<pgfid>/<name>`
    Entry(Gfid, Vec<u8>),
}

/// The path guard: relative, no `..`, inside `.gfid/`, and nothing but
/// `.gfid/<gfid>` or `.gfid/<pgfid>/<name>`.
pub fn guard(path: &[u8]) -> Result<Target, String> {
    let refuse = |why: &str| Err(format!("unsafe path {:?}: {why}", show(path)));
    if path.is_empty() {
        return refuse("empty");
    }
    if path[0] == b'/' {
        return refuse("absolute");
    }
    if path.contains(&0) {
        return refuse("holds a NUL byte");
    }
    let parts: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
    if parts.iter().any(|p| *p == b"..") {
        return refuse("holds `..`");
    }
    if parts.iter().any(|p| p.is_empty() || *p == b".") {
        return refuse("holds an empty or `.` component");
    }
    if parts[0] != b".gfid" {
        return refuse("outside .gfid/");
    }
    let Some(g) = parts.get(1) else { return refuse("names .gfid itself") };
    let Ok(gfid) = Uuid::parse(g) else { return refuse("the component after .gfid/ is not a GFID") };
    match parts.len() {
        2 => Ok(Target::Gfid(gfid)),
        3 => Ok(Target::Entry(gfid, parts[2].to_vec())),
        _ => refuse("too many components"),
    }
}

fn gfid_path(g: &Gfid) -> Vec<u8> {
    let mut p = b".gfid/".to_vec();
    p.extend_from_slice(&g.canonical());
    p
}

fn entry_path(pg: &Gfid, name: &[u8]) -> Vec<u8> {
    let mut p = gfid_path(pg);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

/// A call the reference would have raised on.
#[derive(Debug)]
pub struct OpError {
    pub errno: Errno,
    pub call: &'static str,
    pub path: Vec<u8>,
}

impl OpError {
    fn remote(self, index: Option<u32>, what: &str) -> RemoteError {
        RemoteError {
            errno: Some(self.errno as i32),
            index,
            message: format!("{what}: {} {}: {}", self.call, show(&self.path), self.errno.desc()),
            path: Some(self.path),
        }
    }
}

/// `errno_wrap`: `Ok(Ok(v))` done, `Ok(Err(e))` a tolerated errno, `Err`
/// anything else (also a retried errno that did not go away).
fn wrap<T>(
    call: &'static str,
    path: &[u8],
    ok: &[Errno],
    retry: &[Errno],
    mut f: impl FnMut() -> Result<T, Errno>,
) -> Result<Result<T, Errno>, OpError> {
    let mut tries = 0;
    loop {
        match f() {
            Ok(v) => return Ok(Ok(v)),
            Err(e) if ok.contains(&e) => return Ok(Err(e)),
            Err(e) if retry.contains(&e) && tries + 1 < TRIES => {
                tries += 1;
                std::thread::sleep(RETRY_PAUSE);
            }
            Err(e) => {
                if retry.contains(&e) {
                    tracing::warn!(errno = e as i32, call, path = %show(path), "reached maximum retries");
                }
                return Err(OpError { errno: e, call, path: path.to_vec() });
            }
        }
    }
}

fn io<T>(r: io::Result<T>) -> Result<T, Errno> {
    r.map_err(|e| errno_of(&e))
}

use Errno::{EBUSY, EEXIST, EINVAL, EISDIR, ENODATA, ENOENT, ENOTEMPTY, EOPNOTSUPP, ESTALE};

fn lstat(p: &[u8]) -> Result<Option<fs::Metadata>, OpError> {
    Ok(wrap("lstat", p, &[ENOENT], &[ESTALE, EBUSY], || io(fs::symlink_metadata(os(p))))?.ok())
}

/// The GFID the mount reports for a path (`glusterfs.gfid.string`).
fn disk_gfid(p: &[u8]) -> Result<Option<Gfid>, OpError> {
    let v = wrap("getxattr", p, &[ENOENT, ENODATA], &[ESTALE], || io(xattr::get(os(p), keys::GFID_STRING)))?;
    Ok(match v {
        Ok(Some(b)) => match gx::decode_uuid_string(&b) {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::warn!(path = %show(p), "unreadable gfid: {e}");
                None
            }
        },
        _ => None,
    })
}

fn matching(g: &Gfid, p: &[u8]) -> Result<bool, OpError> {
    Ok(disk_gfid(p)?.as_ref() == Some(g))
}

fn link(src: &[u8], dst: &[u8]) -> Result<Option<Errno>, OpError> {
    Ok(wrap("link", dst, &[ENOENT, EEXIST], &[ESTALE], || io(fs::hard_link(os(src), os(dst))))?.err())
}

/// Settings of the server that ops need.
pub struct Ctx {
    /// `--primary-dist-count`.
    pub dist_count: u32,
    /// The secondary volume's id and its brick directories on this node,
    /// looked up on first use.
    pub topology: OnceLock<Topology>,
    pub find_topology: Box<dyn Fn() -> Topology + Send + Sync>,
}

/// What glusterd says of the secondary volume.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    pub id: Option<Uuid>,
    /// Brick directories on this node (for the MKDIR directory-path lookup).
    pub bricks: Vec<PathBuf>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("dist_count", &self.dist_count)
            .field("topology", &self.topology)
            .finish_non_exhaustive()
    }
}

impl Ctx {
    pub fn topology(&self) -> &Topology {
        self.topology.get_or_init(|| (self.find_topology)())
    }

    fn bricks(&self) -> &[PathBuf] {
        &self.topology().bricks
    }

    /// The entries of directory `dir`, each with its GFID, type and link
    /// count; the errno if it cannot be read. gfid-access cannot open a
    /// directory by `.gfid/<gfid>` (EOPNOTSUPP), so it is opened by its
    /// parent and name ([`dir_path`](Ctx::dir_path)), and checked to be
    /// the same directory.
    pub fn list_dir(&self, dir: &Gfid) -> Result<Vec<DirEntry>, i32> {
        let d = if *dir == Uuid::ROOT {
            b".".to_vec()
        } else {
            match self.dir_path(dir) {
                Ok(Some(p)) if disk_gfid(&p).ok().flatten() == Some(*dir) => p,
                Ok(_) => return Err(ENOENT as i32),
                Err(e) => return Err(e.errno as i32),
            }
        };
        let rd = fs::read_dir(os(&d)).map_err(|e| errno_of(&e) as i32)?;
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(|e| errno_of(&e) as i32)?;
            let name = e.file_name().as_bytes().to_vec();
            let path = [d.as_slice(), b"/", &name].concat();
            let Ok(m) = fs::symlink_metadata(os(&path)) else { continue };
            let gfid = disk_gfid(&path).ok().flatten();
            out.push(DirEntry { name, gfid, mode: m.mode(), nlink: m.nlink() });
        }
        Ok(out)
    }

    /// Where a directory is on the secondary, as `.gfid/<pgfid>/<name>`
    /// (reference `get_slv_dir_path`): the brick's `.glusterfs` symlink of
    /// the GFID, else the mount's `glusterfs.gfid2path`.
    pub fn dir_path(&self, g: &Gfid) -> Result<Option<Vec<u8>>, OpError> {
        if let Some((pg, name)) = self.bricks().iter().find_map(|b| crate::gluster::backend::dir_entry(b, g)) {
            return Ok(Some(entry_path(&pg, &name)));
        }
        let gp = gfid_path(g);
        let v = wrap("getxattr", &gp, &[ENOENT, ENODATA], &[ESTALE], || io(xattr::get(os(&gp), keys::GFID2PATH)))?;
        let Ok(Some(v)) = v else { return Ok(None) };
        let v = v.strip_suffix(b"\0").unwrap_or(&v);
        let Some(slash) = v.iter().rposition(|&b| b == b'/') else { return Ok(None) };
        let (dir, name) = (&v[..slash], &v[slash + 1..]);
        if name.is_empty() {
            return Ok(None);
        }
        let dir = dir.strip_prefix(b"/").unwrap_or(dir);
        let pg = if dir.is_empty() {
            Uuid::ROOT
        } else {
            match disk_gfid(dir)? {
                Some(g) => g,
                None => return Ok(None),
            }
        };
        Ok(Some(entry_path(&pg, name)))
    }
}

/// An entry op with its paths checked.
struct Checked<'a> {
    e: &'a EntryOp,
    pg: Gfid,
    name: Vec<u8>,
    dst: Option<(Gfid, Vec<u8>)>,
}

fn check(i: usize, e: &EntryOp) -> Result<Checked<'_>, RemoteError> {
    let refuse = |message: String, path: &[u8]| RemoteError {
        errno: Some(Errno::EINVAL as i32),
        index: Some(i as u32),
        path: Some(path.to_vec()),
        message: format!("entry {i} ({}): {message}", e.op),
    };
    let entry = |p: &[u8]| match guard(p) {
        Ok(Target::Entry(pg, name)) => Ok((pg, name)),
        Ok(Target::Gfid(_)) => Err(refuse(format!("{:?} names no entry", show(p)), p)),
        Err(m) => Err(refuse(m, p)),
    };
    let (pg, name) = entry(&e.entry)?;
    let dst = match (&e.op, &e.entry1) {
        (Op::Rename, Some(p)) => Some(entry(p)?),
        (Op::Rename, None) => return Err(refuse("RENAME without a destination".into(), &e.entry)),
        _ => None,
    };
    if e.op == Op::Symlink && e.link.is_none() {
        return Err(refuse("SYMLINK without a target".into(), &e.entry));
    }
    Ok(Checked { e, pg, name, dst })
}

struct Run<'a> {
    ctx: &'a Ctx,
    failures: Vec<EntryFailure>,
}

/// What to create with the newfile blob, and under which parent.
struct Blob {
    parent: Gfid,
    nf: NewFile,
}

fn with_type(mode: u32, kind: u32) -> u32 {
    if mode & S_IFMT == 0 { kind | (mode & 0o7777) } else { mode }
}

fn reg_blob(gfid: Gfid, parent: Gfid, name: &[u8], mode: u32, uid: u32, gid: u32, rdev: u32) -> Blob {
    let st_mode = with_type(mode, S_IFREG);
    Blob { parent, nf: NewFile { uid, gid, gfid, st_mode, name: name.to_vec(), target: None, rdev, umask: 0 } }
}

fn symlink_blob(gfid: Gfid, parent: Gfid, name: &[u8], target: &[u8], mode: u32) -> Blob {
    let st_mode = S_IFLNK | (mode & 0o7777);
    let nf = NewFile {
        uid: 0,
        gid: 0,
        gfid,
        st_mode,
        name: name.to_vec(),
        target: Some(target.to_vec()),
        rdev: 0,
        umask: 0,
    };
    Blob { parent, nf }
}

impl Run<'_> {
    /// The reference's `collect_failure`: records `ret` unless it is an
    /// EEXIST/ESTALE whose name does carry our GFID (or is gone).
    fn collect(&mut self, i: usize, c: &Checked<'_>, ret: Option<Errno>, dst: bool) -> Result<bool, OpError> {
        let Some(err) = ret else { return Ok(false) };
        let mut info = FailureInfo { dst, ..FailureInfo::default() };
        if err == EEXIST || err == ESTALE {
            let en: &[u8] = match (dst, &c.e.entry1) {
                (true, Some(p)) => p,
                _ => &c.e.entry,
            };
            match disk_gfid(en)? {
                Some(g) if g != c.e.gfid => {
                    info.gfid_mismatch = true;
                    if lstat(en)?.is_some_and(|m| m.is_dir()) {
                        info.secondary_isdir = true;
                        info.secondary_name = self.ctx.dir_path(&g)?;
                    }
                    info.secondary_gfid = Some(g);
                }
                _ => return Ok(false),
            }
        }
        tracing::debug!(op = %c.e.op, gfid = %c.e.gfid, errno = err as i32, "entry failure");
        self.failures.push(EntryFailure { index: i as u32, entry: c.e.clone(), errno: err as i32, info });
        Ok(true)
    }

    fn push(&mut self, i: usize, c: &Checked<'_>, err: Errno, info: FailureInfo) {
        self.failures.push(EntryFailure { index: i as u32, entry: c.e.clone(), errno: err as i32, info });
    }

    /// UNLINK / RMDIR of a name that still carries the GFID. Returns the
    /// tolerated errno of the removal.
    fn purge(&mut self, i: usize, c: &Checked<'_>) -> Result<Option<Errno>, OpError> {
        let e = c.e;
        if lstat(&e.entry)?.is_none() || lstat(&gfid_path(&e.gfid))?.is_none() {
            return Ok(None);
        }
        if !matching(&e.gfid, &e.entry)? {
            self.collect(i, c, Some(EEXIST), false)?;
            return Ok(None);
        }
        let p = os(&e.entry);
        if e.op == Op::Unlink {
            match wrap("unlink", &e.entry, &[ENOENT, ESTALE, EISDIR], &[EBUSY], || io(fs::remove_file(p)))? {
                Err(EISDIR) => {
                    tracing::debug!(gfid = %e.gfid, "UNLINK of a directory ignored");
                    Ok(None)
                }
                r => Ok(r.err()),
            }
        } else {
            Ok(wrap("rmdir", &e.entry, &[ENOENT, ESTALE, ENOTEMPTY], &[EBUSY], || io(fs::remove_dir(p)))?.err())
        }
    }

    /// Removes a directory tree whose root still carries `gfid`, re-checking
    /// that before every step (another worker may have moved it).
    fn recursive_rmdir(&self, gfid: &Gfid, entry: &[u8], path: &[u8]) -> Result<(), OpError> {
        if !matching(gfid, entry)? {
            return Ok(());
        }
        let names = wrap("listdir", path, &[ENOENT], &[ESTALE, EOPNOTSUPP], || {
            let rd = io(fs::read_dir(os(path)))?;
            rd.map(|d| d.map(|d| d.file_name().as_bytes().to_vec()))
                .collect::<io::Result<Vec<_>>>()
                .map_err(|e| errno_of(&e))
        })?;
        let Ok(names) = names else { return Ok(()) };
        for name in names {
            let mut full = path.to_vec();
            full.push(b'/');
            full.extend_from_slice(&name);
            if !matching(gfid, entry)? {
                return Ok(());
            }
            let r = wrap("unlink", &full, &[ENOENT, ESTALE, EISDIR], &[EBUSY], || io(fs::remove_file(os(&full))))?;
            if r == Err(EISDIR) {
                self.recursive_rmdir(gfid, entry, &full)?;
            }
        }
        if !matching(gfid, entry)? {
            return Ok(());
        }
        let _tolerated = wrap("rmdir", path, &[ENOENT, ESTALE], &[EBUSY], || io(fs::remove_dir(os(path))))?;
        Ok(())
    }

    fn rename_confirmed(&mut self, i: usize, c: &Checked<'_>, dst: &[u8]) -> Result<(), OpError> {
        let e = c.e;
        if !matching(&e.gfid, &e.entry)? {
            tracing::error!(gfid = %e.gfid, source = %show(&e.entry), target = %show(dst),
                "RENAME ignored: source entry does not match with on-disk gfid");
            self.collect(i, c, Some(EEXIST), false)?;
            return Ok(());
        }
        let r =
            wrap("rename", &e.entry, &[ENOENT, EEXIST], &[ESTALE, EBUSY], || io(fs::rename(os(&e.entry), os(dst))))?;
        self.collect(i, c, r.err(), false)?;
        Ok(())
    }

    fn one(&mut self, i: usize, c: &Checked<'_>) -> Result<(), OpError> {
        let e = c.e;
        // Entries with the primary's stat are created as 0:0 and chowned
        // after (the owner may not be allowed to create in the parent).
        let (uid, gid) = e.stat.map(|s| (s.uid, s.gid)).unwrap_or((0, 0));
        let gp = gfid_path(&e.gfid);
        tracing::trace!(op = %e.op, gfid = %e.gfid, entry = %show(&e.entry), "entry op");
        let mut blob: Option<Blob> = None;
        match e.op {
            Op::Unlink | Op::Rmdir => {
                if let Some(er) = self.purge(i, c)? {
                    if er == ENOTEMPTY && e.op == Op::Rmdir {
                        let mut tries = 0;
                        let r = loop {
                            match self.recursive_rmdir(&e.gfid, &e.entry, &e.entry) {
                                Err(x) if [ENOTEMPTY, ESTALE, ENODATA].contains(&x.errno) && tries + 1 < TRIES => {
                                    tries += 1;
                                    std::thread::sleep(RETRY_PAUSE);
                                }
                                r => break r,
                            }
                        };
                        match r {
                            Ok(()) => tracing::debug!(gfid = %e.gfid, "removed recursively"),
                            Err(x) => return Err(x),
                        }
                    } else {
                        tracing::warn!(gfid = %e.gfid, entry = %show(&e.entry), errno = er as i32, "failed to remove");
                    }
                }
            }
            Op::Create | Op::Mknod => {
                if lstat(&gp)?.is_none() {
                    blob = Some(reg_blob(e.gfid, c.pg, &c.name, e.mode, e.uid, e.gid, e.rdev));
                } else if e.op == Op::Mknod {
                    // A self-healed hard link is recorded as MKNOD.
                    let r = link(&gp, &e.entry)?;
                    self.collect(i, c, r, false)?;
                }
            }
            Op::Mkdir => {
                if lstat(&gp)?.is_none() {
                    let st_mode = S_IFDIR | (e.mode & 0o7777);
                    let nf = NewFile {
                        uid: e.uid,
                        gid: e.gid,
                        gfid: e.gfid,
                        st_mode,
                        name: c.name.clone(),
                        target: None,
                        rdev: 0,
                        umask: 0,
                    };
                    blob = Some(Blob { parent: c.pg, nf });
                } else if lstat(&e.entry)?.is_none() || !matching(&e.gfid, &e.entry)? {
                    // The directory exists under another name: renamed on the
                    // primary, recorded as MKDIR by a crawl.
                    tracing::info!(gfid = %e.gfid, entry = %show(&e.entry), "special case: rename on mkdir");
                    match self.ctx.dir_path(&e.gfid)? {
                        None => {
                            self.collect(i, c, Some(ENOENT), false)?;
                        }
                        Some(src) if src != e.entry => {
                            let info = FailureInfo {
                                name_mismatch: true,
                                secondary_isdir: true,
                                secondary_gfid: Some(e.gfid),
                                secondary_entry: Some(src),
                                ..FailureInfo::default()
                            };
                            self.push(i, c, EEXIST, info);
                        }
                        Some(_) => {}
                    }
                }
            }
            Op::Link => {
                if lstat(&gp)?.is_none() {
                    match e.stat {
                        Some(st) if st.mode & S_IFMT == S_IFREG => {
                            blob = Some(reg_blob(e.gfid, c.pg, &c.name, st.mode, 0, 0, 0));
                        }
                        Some(st) if st.mode & S_IFMT == S_IFLNK => match &e.link {
                            Some(t) => blob = Some(symlink_blob(e.gfid, c.pg, &c.name, t, st.mode)),
                            None => self.push(i, c, ENOENT, FailureInfo::default()),
                        },
                        Some(_) => {}
                        None => self.push(i, c, ENOENT, FailureInfo::default()),
                    }
                } else {
                    let r = link(&gp, &e.entry)?;
                    self.collect(i, c, r, false)?;
                }
            }
            Op::Symlink => {
                if lstat(&e.entry)?.is_none() && lstat(&gp)?.is_some() {
                    // The symlink exists under another name: this is a replay
                    // of a changelog whose later RENAME moved it (a second
                    // name of a symlink is recorded as LINK, never SYMLINK).
                    // The reference tries to create it again and fails.
                    tracing::debug!(gfid = %e.gfid, "SYMLINK of an existing symlink ignored");
                } else if lstat(&e.entry)?.is_none() {
                    let mode = e.stat.map(|s| s.mode).unwrap_or(0o777);
                    let t = e.link.as_deref().unwrap_or_default();
                    blob = Some(symlink_blob(e.gfid, c.pg, &c.name, t, mode));
                } else if !matching(&e.gfid, &e.entry)? {
                    self.collect(i, c, Some(EEXIST), false)?;
                }
            }
            Op::Rename => {
                let Some((dpg, dname)) = &c.dst else { return Ok(()) };
                let en = entry_path(dpg, dname);
                if !matching(&e.gfid, &e.entry)? {
                    // The source is not here: create the destination from
                    // what the primary knows, unless it is a directory.
                    match e.stat {
                        Some(st) if st.mode & S_IFMT == S_IFLNK => {
                            if let Some(t) = &e.link {
                                if lstat(&en)?.is_none() {
                                    blob = Some(symlink_blob(e.gfid, *dpg, dname, t, st.mode));
                                } else if !matching(&e.gfid, &en)? {
                                    self.collect(i, c, Some(EEXIST), true)?;
                                }
                            }
                        }
                        Some(st) if st.mode & S_IFMT != S_IFDIR => {
                            if lstat(&gp)?.is_none() {
                                blob = Some(reg_blob(e.gfid, *dpg, dname, st.mode, 0, 0, 0));
                            } else {
                                let r = link(&gp, &en)?;
                                self.collect(i, c, r, false)?;
                            }
                        }
                        _ => {}
                    }
                } else {
                    let st = lstat(&e.entry)?;
                    match (st, lstat(&en)?) {
                        (_, None) => self.rename_confirmed(i, c, &en)?,
                        (None, Some(_)) => {
                            tracing::debug!(gfid = %e.gfid, "RENAME source vanished");
                        }
                        (Some(s), Some(d)) if s.ino() == d.ino() => {
                            // Already renamed (a hard link of it is the
                            // destination): drop the source name.
                            let p = os(&e.entry);
                            let r = wrap("unlink", &e.entry, &[ENOENT, ESTALE, EISDIR], &[EBUSY], || {
                                io(fs::remove_file(p))
                            })?;
                            if r == Err(EISDIR) {
                                let r = wrap("rmdir", &e.entry, &[ENOENT, ESTALE, ENOTEMPTY], &[EBUSY], || {
                                    io(fs::remove_dir(p))
                                })?;
                                if r == Err(ENOTEMPTY) {
                                    tracing::error!(old = %show(&e.entry), new = %show(&en),
                                        "directory rename failed: both old and new directories exist");
                                }
                            }
                        }
                        (Some(_), Some(_)) => {
                            if !matching(&e.gfid, &en)? && self.ctx.dist_count > 1 {
                                self.collect(i, c, Some(EEXIST), true)?;
                            } else {
                                self.rename_confirmed(i, c, &en)?;
                            }
                        }
                    }
                }
            }
        }
        if let Some(b) = blob {
            let parent = gfid_path(&b.parent);
            let bytes = b.nf.encode().map_err(|err| {
                tracing::error!(gfid = %e.gfid, "cannot build newfile blob: {err}");
                OpError { errno: EINVAL, call: "newfile", path: e.entry.clone() }
            })?;
            // ENODATA: gfid-access refuses a GFID that exists under another
            // name; recorded for the primary, not a failed call.
            let ok = [EEXIST, ENOENT, ESTALE, ENODATA];
            let r = wrap("setxattr(glusterfs.gfid.newfile)", &parent, &ok, &[EINVAL, EBUSY], || {
                io(xattr::set(os(&parent), keys::GFID_NEWFILE, &bytes))
            })?;
            self.collect(i, c, r.err(), false)?;
            if uid != 0 || gid != 0 {
                let r = wrap("lchown", &gp, &[ENOENT], &[ESTALE, EINVAL], || {
                    io(std::os::unix::fs::lchown(os(&gp), Some(uid), Some(gid)))
                })?;
                self.collect(i, c, r.err(), false)?;
            }
        }
        Ok(())
    }
}

/// `entry_ops`: replays a batch in order; returns the failures for the
/// primary to resolve.
pub fn entry_ops(ctx: &Ctx, ops: &[EntryOp]) -> Result<Vec<EntryFailure>, RemoteError> {
    let checked = ops.iter().enumerate().map(|(i, e)| check(i, e)).collect::<Result<Vec<_>, _>>()?;
    let mut run = Run { ctx, failures: Vec::new() };
    for (i, c) in checked.iter().enumerate() {
        if c.e.skip {
            continue;
        }
        run.one(i, c).map_err(|err| {
            let what = format!("entry {i} ({} {})", c.e.op, show(&c.e.entry));
            err.remote(Some(i as u32), &what)
        })?;
    }
    Ok(run.failures)
}

fn timespec(t: Time) -> TimeSpec {
    TimeSpec::new(t.sec, i64::from(t.nsec.min(999_999_999)))
}

/// `meta_ops`: owner, then (unless a symlink) mode and times.
pub fn meta_ops(ops: &[MetaOp]) -> Result<Vec<MetaFailure>, RemoteError> {
    for (i, m) in ops.iter().enumerate() {
        match guard(&m.go) {
            Ok(Target::Gfid(_)) => {}
            Ok(Target::Entry(..)) => {
                return Err(RemoteError {
                    errno: Some(EINVAL as i32),
                    index: Some(i as u32),
                    path: Some(m.go.clone()),
                    message: format!("meta {i}: {:?} is not a .gfid/<gfid> path", show(&m.go)),
                });
            }
            Err(message) => {
                return Err(RemoteError {
                    errno: Some(EINVAL as i32),
                    index: Some(i as u32),
                    path: Some(m.go.clone()),
                    message: format!("meta {i}: {message}"),
                });
            }
        }
    }
    let mut failures = Vec::new();
    for (i, m) in ops.iter().enumerate() {
        let p = os(&m.go);
        let st = &m.stat;
        let what = || format!("meta {i} ({})", show(&m.go));
        // What is already right is left alone: one lstat saves a round trip
        // through the mount for each of owner, mode and times that match.
        let Some(cur) = lstat(&m.go).map_err(|e| e.remote(Some(i as u32), &what()))? else {
            continue;
        };
        let chown = (cur.uid(), cur.gid()) != (st.uid, st.gid);
        if chown {
            let r = wrap("lchown", &m.go, &[ENOENT], &[ESTALE, EINVAL], || {
                io(std::os::unix::fs::lchown(p, Some(st.uid), Some(st.gid)))
            })
            .map_err(|e| e.remote(Some(i as u32), &what()))?;
            if r.is_err() {
                continue;
            }
        }
        let is_link = cur.file_type().is_symlink();
        let ok = [ENOENT, Errno::EACCES, Errno::EPERM];
        // chown may clear set-id bits: the mode is set again after it.
        if !is_link && (chown || cur.mode() & 0o7777 != st.mode & 0o7777) {
            let mode = Mode::from_bits_truncate(st.mode & 0o7777);
            let r = wrap("chmod", &m.go, &ok, &[ESTALE, EINVAL], || {
                fchmodat(nix::fcntl::AT_FDCWD, p, mode, FchmodatFlags::FollowSymlink)
            })
            .map_err(|e| e.remote(Some(i as u32), &what()))?;
            if let Err(errno) = r {
                failures.push(MetaFailure {
                    index: i as u32,
                    op: m.clone(),
                    errno: errno as i32,
                    step: MetaStep::Chmod,
                });
            }
        }
        let flag = if is_link { UtimensatFlags::NoFollowSymlink } else { UtimensatFlags::FollowSymlink };
        let ok_times: &[Errno] = if is_link { &[ENOENT, Errno::EACCES, Errno::EPERM, EOPNOTSUPP] } else { &ok };
        let same = |t: Time, sec: i64, nsec: i64| t.sec == sec && i64::from(t.nsec) == nsec;
        let times_right =
            same(st.atime, cur.atime(), cur.atime_nsec()) && same(st.mtime, cur.mtime(), cur.mtime_nsec());
        let r = if times_right {
            Ok(())
        } else {
            wrap("utime", &m.go, ok_times, &[ESTALE, EINVAL], || {
                utimensat(nix::fcntl::AT_FDCWD, p, &timespec(st.atime), &timespec(st.mtime), flag)
            })
            .map_err(|e| e.remote(Some(i as u32), &what()))?
        };
        match r {
            Err(EOPNOTSUPP) => {}
            Err(errno) => failures.push(MetaFailure {
                index: i as u32,
                op: m.clone(),
                errno: errno as i32,
                step: MetaStep::Utime,
            }),
            Ok(()) => {}
        }
        if let Some(want) = m.xattrs.as_ref().filter(|_| !is_link)
            && let Err(errno) = sync_xattrs(p, want)
        {
            failures.push(MetaFailure { index: i as u32, op: m.clone(), errno: errno as i32, step: MetaStep::Xattr });
        }
    }
    Ok(failures)
}

/// Makes `p`'s xattrs of the namespaces `want` covers equal to its values.
/// `p` is no symlink (or a `/proc/self/fd/<n>` name): it is followed.
fn sync_xattrs(p: &Path, want: &Xattrs) -> Result<(), Errno> {
    let errno = |e: io::Error| errno_of(&e);
    for name in xattr::list_deref(p).map_err(errno)? {
        let n = name.as_bytes();
        if replicated_xattr(n, want.user, want.acls) && !want.values.iter().any(|(w, _)| w == n) {
            match xattr::remove_deref(p, &name) {
                Err(e) if errno_of(&e) != ENODATA => return Err(errno_of(&e)),
                _ => {}
            }
        }
    }
    for (n, v) in want.values.iter().filter(|(n, _)| replicated_xattr(n, want.user, want.acls)) {
        let name = std::ffi::OsStr::from_bytes(n);
        if xattr::get_deref(p, name).ok().flatten().as_deref() != Some(v.as_slice()) {
            xattr::set_deref(p, name, v).map_err(errno)?;
        }
    }
    Ok(())
}

/// `write_files` (the inline data engine): each file's data written over
/// its `.gfid/<gfid>` in place, then what `rsync -a --inplace` would leave:
/// the size cut to the data, owner and mode where they differ, the times,
/// and the xattrs when the primary has some. The file must exist as a regular file (its
/// entry op made it); any failure is that file's errno, for the worker to
/// send it by the sync method instead.
pub fn write_files(files: &[FileData]) -> Vec<Result<(), i32>> {
    files.iter().map(|f| write_one(f).map_err(|e| e as i32)).collect()
}

fn write_one(f: &FileData) -> Result<(), Errno> {
    use std::io::Write;
    use std::os::fd::AsFd;
    let errno = |e: io::Error| errno_of(&e);
    let path = gfid_path(&f.gfid);
    let Some((mut file, handle, m)) = crate::fsutil::open_regular(os(&path), true).map_err(errno)? else {
        return Err(Errno::EISDIR);
    };
    file.write_all(&f.data).map_err(errno)?;
    let len = f.data.len() as u64;
    if m.len() > len {
        file.set_len(len).map_err(errno)?;
    }
    let st = &f.stat;
    let chowned = (m.uid(), m.gid()) != (st.uid, st.gid);
    if chowned {
        // Not permitted (an unprivileged secondary): kept as rsync keeps it.
        match std::os::unix::fs::fchown(&file, Some(st.uid), Some(st.gid)) {
            Err(e) if errno_of(&e) != Errno::EPERM => return Err(errno_of(&e)),
            _ => {}
        }
    }
    // chown may clear set-id bits: the mode is set again after it.
    if chowned || m.mode() & 0o7777 != st.mode & 0o7777 {
        nix::sys::stat::fchmod(file.as_fd(), Mode::from_bits_truncate(st.mode & 0o7777))?;
    }
    nix::sys::stat::futimens(file.as_fd(), &timespec(st.atime), &timespec(st.mtime))?;
    // Only to set what the primary has: taking away what it no longer has
    // is the metadata replay's (each removal is a REMOVEXATTR record), so a
    // file without xattrs costs no listing here.
    if let Some(want) = f.xattrs.as_ref().filter(|w| !w.values.is_empty()) {
        sync_xattrs(&crate::fsutil::fd_path(&handle), want)?;
    }
    Ok(())
}

fn checked_path(path: &[u8]) -> Result<(), RemoteError> {
    guard(path).map(|_| ()).map_err(|message| RemoteError {
        errno: Some(EINVAL as i32),
        index: None,
        path: Some(path.to_vec()),
        message,
    })
}

/// `setattr`: owner, permission bits, times, each if given.
pub fn set_attr(path: &[u8], a: &SetAttrs) -> Result<(), RemoteError> {
    checked_path(path)?;
    let p = os(path);
    let fail = |call: &'static str, errno: Errno| OpError { errno, call, path: path.to_vec() }.remote(None, "setattr");
    if let Some((uid, gid)) = a.own {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid)).map_err(|e| fail("lchown", errno_of(&e)))?;
    }
    if let Some(mode) = a.mode {
        fchmodat(nix::fcntl::AT_FDCWD, p, Mode::from_bits_truncate(mode & 0o7777), FchmodatFlags::FollowSymlink)
            .map_err(|e| fail("chmod", e))?;
    }
    if let Some((at, mt)) = a.times {
        utimensat(nix::fcntl::AT_FDCWD, p, &timespec(at), &timespec(mt), UtimensatFlags::FollowSymlink)
            .map_err(|e| fail("utime", e))?;
    }
    Ok(())
}

/// `lstat` of each path: what arrived on the secondary.
pub fn lstat_all(paths: &[Vec<u8>]) -> Result<Vec<Result<StatInfo, i32>>, RemoteError> {
    for p in paths {
        checked_path(p)?;
    }
    Ok(paths
        .iter()
        .map(|p| {
            fs::symlink_metadata(os(p))
                .map(|m| StatInfo {
                    mode: m.mode(),
                    uid: m.uid(),
                    gid: m.gid(),
                    size: m.size(),
                    mtime: Time { sec: m.mtime(), nsec: u32::try_from(m.mtime_nsec()).unwrap_or(0) },
                    ino: m.ino(),
                    nlink: m.nlink(),
                })
                .map_err(|e| errno_of(&e) as i32)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: &str = "0b99ef11-4b79-4cd0-9730-b5a0e8c4a8c0";

    #[test]
    fn the_guard_admits_only_gfid_paths() {
        let g = Uuid::parse_str(G).unwrap();
        assert_eq!(guard(format!(".gfid/{G}").as_bytes()), Ok(Target::Gfid(g)));
        assert_eq!(guard(format!(".gfid/{G}/a b\n%\u{ff}").as_bytes()), Ok(Target::Entry(g, "a b\n%\u{ff}".into())));
        let raw = [b".gfid/".as_slice(), G.as_bytes(), b"/\xff\xfe"].concat();
        assert_eq!(guard(&raw), Ok(Target::Entry(g, vec![0xff, 0xfe])));
        for bad in [
            "".to_owned(),
            format!("/.gfid/{G}/x"),
            format!(".gfid/{G}/.."),
            format!(".gfid/{G}/../x"),
            format!(".gfid/{G}/."),
            format!(".gfid/{G}//x"),
            format!(".gfid/{G}/x/y"),
            format!("gfid/{G}/x"),
            "etc/passwd".to_owned(),
            ".gfid".to_owned(),
            ".gfid/not-a-gfid/x".to_owned(),
            format!(".gfid/{G}/x\0y"),
            "..".to_owned(),
        ] {
            let e = guard(bad.as_bytes()).unwrap_err();
            assert!(e.starts_with("unsafe path"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_batch_with_a_bad_path_is_refused_whole() {
        let ctx = Ctx { dist_count: 1, topology: OnceLock::new(), find_topology: Box::new(Topology::default) };
        let g = Uuid::parse_str(G).unwrap();
        let ok = EntryOp::new(Op::Create, g, format!(".gfid/{G}/x").into_bytes());
        let bad = EntryOp::new(Op::Unlink, g, b"../../etc/passwd".to_vec());
        let e = entry_ops(&ctx, &[ok, bad]).unwrap_err();
        assert_eq!(e.index, Some(1));
        assert_eq!(e.path.as_deref(), Some(b"../../etc/passwd".as_slice()));
        assert!(e.message.contains("unsafe path"), "{}", e.message);
        let mut r = EntryOp::new(Op::Rename, g, format!(".gfid/{G}/x").into_bytes());
        let e = entry_ops(&ctx, &[r.clone()]).unwrap_err();
        assert!(e.message.contains("without a destination"), "{}", e.message);
        r.entry1 = Some(b"/tmp/x".to_vec());
        assert!(entry_ops(&ctx, &[r]).is_err());
        let s = EntryOp::new(Op::Symlink, g, format!(".gfid/{G}/x").into_bytes());
        assert!(entry_ops(&ctx, &[s]).unwrap_err().message.contains("without a target"));
        let m = MetaOp { go: format!(".gfid/{G}/x").into_bytes(), stat: Default::default(), xattrs: None };
        assert!(meta_ops(&[m]).is_err());
        assert!(lstat_all(&[b"/etc".to_vec()]).is_err());
        assert!(set_attr(b"../x", &SetAttrs::default()).is_err());
    }

    #[test]
    fn xattrs_are_synced_through_a_descriptor_name() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        fs::write(&f, b"x").unwrap();
        xattr::set(&f, "user.extra", b"gone").unwrap();
        let (_, handle, _) = crate::fsutil::open_regular(&f, true).unwrap().unwrap();
        let want = Xattrs { user: true, acls: false, values: vec![(b"user.new".to_vec(), b"v".to_vec())] };
        sync_xattrs(&crate::fsutil::fd_path(&handle), &want).unwrap();
        let names: Vec<_> = xattr::list(&f).unwrap().collect();
        assert_eq!(names, vec![std::ffi::OsString::from("user.new")]);
        assert_eq!(xattr::get(&f, "user.new").unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn modes_get_their_type() {
        assert_eq!(with_type(0o644, S_IFREG), 0o100644);
        assert_eq!(with_type(0o020644, S_IFREG), 0o020644);
    }
}
