//! Compares two directory trees (typically the primary and the secondary
//! mount): names as bytes, types, sizes, modes, owners, optionally mtimes,
//! symlink targets, content hashes, user xattrs, hard-link groups and GFIDs.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Where a GFID is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gfids {
    /// Not compared (two unrelated volumes).
    Ignore,
    /// The `glusterfs.gfid.string` virtual xattr of a FUSE mount.
    Mount,
    /// The `trusted.gfid` xattr (16 bytes) of a brick.
    Brick,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub mtimes: bool,
    pub owners: bool,
    pub xattrs: bool,
    pub gfids: Gfids,
    /// Names skipped at the top level.
    pub skip_top: Vec<OsString>,
    /// At most this many differences are collected.
    pub limit: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mtimes: false,
            owners: true,
            xattrs: true,
            gfids: Gfids::Mount,
            skip_top: vec![".glusterfs".into(), ".trashcan".into()],
            limit: 50,
        }
    }
}

/// One difference, at a path relative to the roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub path: Vec<u8>,
    pub what: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", String::from_utf8_lossy(&self.path).escape_debug(), self.what)
    }
}

/// A readable report of differences, one per line.
pub fn report(diffs: &[Difference]) -> String {
    diffs.iter().map(|d| format!("  {d}\n")).collect()
}

#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: &'static str,
    size: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    link: Option<Vec<u8>>,
    hash: Option<String>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    gfid: Option<String>,
    rdev: u64,
}

fn kind(ft: fs::FileType) -> &'static str {
    if ft.is_dir() {
        "directory"
    } else if ft.is_file() {
        "file"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_char_device() {
        "char device"
    } else {
        "unknown"
    }
}

fn hash_file(p: &Path) -> Result<String, String> {
    let mut f = File::open(p).map_err(|e| format!("cannot open: {e}"))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| format!("cannot read: {e}"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn format_uuid(b: &[u8]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    if h.len() != 32 {
        return format!("<{} bytes: {h}>", b.len());
    }
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn gfid(p: &Path, how: Gfids) -> Option<String> {
    match how {
        Gfids::Ignore => None,
        Gfids::Mount => Some(match xattr::get(p, "glusterfs.gfid.string") {
            Ok(Some(v)) => String::from_utf8_lossy(&v).trim_end_matches('\0').to_owned(),
            Ok(None) => "<none>".into(),
            Err(e) => format!("<error {e}>"),
        }),
        Gfids::Brick => Some(match xattr::get(p, "trusted.gfid") {
            Ok(Some(v)) => format_uuid(&v),
            Ok(None) => "<none>".into(),
            Err(e) => format!("<error {e}>"),
        }),
    }
}

fn node(p: &Path, md: &fs::Metadata, o: &Options) -> Result<Node, String> {
    let ft = md.file_type();
    let mut xattrs = BTreeMap::new();
    if o.xattrs {
        let names = xattr::list(p).map_err(|e| format!("cannot list xattrs: {e}"))?;
        for n in names.filter(|n| n.as_bytes().starts_with(b"user.")) {
            let v = xattr::get(p, &n).map_err(|e| format!("cannot read xattr {n:?}: {e}"))?;
            xattrs.insert(n.as_bytes().to_vec(), v.unwrap_or_default());
        }
    }
    Ok(Node {
        kind: kind(ft),
        size: if ft.is_file() { md.len() } else { 0 },
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime: (md.mtime(), md.mtime_nsec()),
        link: if ft.is_symlink() {
            Some(fs::read_link(p).map_err(|e| format!("cannot readlink: {e}"))?.into_os_string().into_encoded_bytes())
        } else {
            None
        },
        hash: if ft.is_file() { Some(hash_file(p)?) } else { None },
        xattrs,
        gfid: gfid(p, o.gfids),
        rdev: if ft.is_block_device() || ft.is_char_device() { md.rdev() } else { 0 },
    })
}

/// (dev, ino) -> relative paths of a multiply-linked file.
type LinkGroups = BTreeMap<(u64, u64), BTreeSet<Vec<u8>>>;

struct Walk<'a> {
    o: &'a Options,
    diffs: Vec<Difference>,
    /// (dev, ino) -> paths, per side, for files with more than one link.
    links: [LinkGroups; 2],
}

impl Walk<'_> {
    fn diff(&mut self, rel: &[u8], what: String) {
        if self.diffs.len() < self.o.limit {
            self.diffs.push(Difference { path: if rel.is_empty() { b".".to_vec() } else { rel.to_vec() }, what });
        }
    }

    fn list(&mut self, dir: &Path, rel: &[u8]) -> BTreeSet<OsString> {
        match fs::read_dir(dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.file_name()))
                .filter(|n| !(rel.is_empty() && self.o.skip_top.contains(n)))
                .collect(),
            Err(e) => {
                self.diff(rel, format!("cannot list {}: {e}", dir.display()));
                BTreeSet::new()
            }
        }
    }

    fn compare(&mut self, a: &Path, b: &Path, rel: &[u8]) {
        let (ma, mb) = match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
            (Ok(x), Ok(y)) => (x, y),
            (Err(e), _) => return self.diff(rel, format!("cannot stat on the left: {e}")),
            (_, Err(e)) => return self.diff(rel, format!("cannot stat on the right: {e}")),
        };
        let (na, nb) = match (node(a, &ma, self.o), node(b, &mb, self.o)) {
            (Ok(x), Ok(y)) => (x, y),
            (Err(e), _) | (_, Err(e)) => return self.diff(rel, e),
        };
        for (side, md) in [(0, &ma), (1, &mb)] {
            if md.is_file() && md.nlink() > 1 {
                self.links[side].entry((md.dev(), md.ino())).or_default().insert(rel.to_vec());
            }
        }
        if na.kind != nb.kind {
            return self.diff(rel, format!("type: {} vs {}", na.kind, nb.kind));
        }
        if na.size != nb.size {
            self.diff(rel, format!("size: {} vs {}", na.size, nb.size));
        } else if na.hash != nb.hash {
            self.diff(rel, "content differs (sha256)".to_owned());
        }
        if na.mode != nb.mode {
            self.diff(rel, format!("mode: {:o} vs {:o}", na.mode, nb.mode));
        }
        if self.o.owners && (na.uid, na.gid) != (nb.uid, nb.gid) {
            self.diff(rel, format!("owner: {}:{} vs {}:{}", na.uid, na.gid, nb.uid, nb.gid));
        }
        if self.o.mtimes && na.kind != "directory" && na.mtime != nb.mtime {
            self.diff(rel, format!("mtime: {}.{:09} vs {}.{:09}", na.mtime.0, na.mtime.1, nb.mtime.0, nb.mtime.1));
        }
        if na.link != nb.link {
            let show = |l: &Option<Vec<u8>>| String::from_utf8_lossy(l.as_deref().unwrap_or_default()).into_owned();
            self.diff(rel, format!("symlink target: {:?} vs {:?}", show(&na.link), show(&nb.link)));
        }
        if na.rdev != nb.rdev {
            self.diff(rel, format!("device: {:x} vs {:x}", na.rdev, nb.rdev));
        }
        if na.xattrs != nb.xattrs {
            let keys: BTreeSet<&Vec<u8>> = na.xattrs.keys().chain(nb.xattrs.keys()).collect();
            for k in keys {
                if na.xattrs.get(k) != nb.xattrs.get(k) {
                    let show = |v: Option<&Vec<u8>>| {
                        v.map_or("<absent>".to_owned(), |v| format!("{:?}", String::from_utf8_lossy(v)))
                    };
                    self.diff(
                        rel,
                        format!(
                            "xattr {}: {} vs {}",
                            String::from_utf8_lossy(k),
                            show(na.xattrs.get(k)),
                            show(nb.xattrs.get(k))
                        ),
                    );
                }
            }
        }
        if na.gfid != nb.gfid {
            self.diff(rel, format!("gfid: {} vs {}", na.gfid.unwrap_or_default(), nb.gfid.unwrap_or_default()));
        }
        if na.kind == "directory" {
            let la = self.list(a, rel);
            let lb = self.list(b, rel);
            for name in la.union(&lb) {
                let mut child = rel.to_vec();
                if !child.is_empty() {
                    child.push(b'/');
                }
                child.extend_from_slice(name.as_bytes());
                match (la.contains(name), lb.contains(name)) {
                    (true, true) => self.compare(&a.join(name), &b.join(name), &child),
                    (true, false) => self.diff(&child, "only on the left".to_owned()),
                    _ => self.diff(&child, "only on the right".to_owned()),
                }
            }
        }
    }
}

/// Compares the trees under `left` and `right`; empty when they match.
pub fn compare(left: &Path, right: &Path, o: &Options) -> Vec<Difference> {
    let mut w = Walk { o, diffs: Vec::new(), links: [BTreeMap::new(), BTreeMap::new()] };
    w.compare(left, right, b"");
    let groups =
        |m: &LinkGroups| -> BTreeSet<BTreeSet<Vec<u8>>> { m.values().filter(|g| g.len() > 1).cloned().collect() };
    let (ga, gb) = (groups(&w.links[0]), groups(&w.links[1]));
    let show = |g: &BTreeSet<Vec<u8>>| {
        g.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect::<Vec<_>>().join(" = ")
    };
    for g in ga.difference(&gb) {
        let first = g.iter().next().cloned().unwrap_or_default();
        w.diff(&first, format!("hard links only on the left: {}", show(g)));
    }
    for g in gb.difference(&ga) {
        let first = g.iter().next().cloned().unwrap_or_default();
        w.diff(&first, format!("hard links only on the right: {}", show(g)));
    }
    w.diffs
}

/// Panics with a readable report when the trees differ.
pub fn assert_same(left: &Path, right: &Path, o: &Options) {
    let d = compare(left, right, o);
    assert!(d.is_empty(), "{} and {} differ:\n{}", left.display(), right.display(), report(&d));
}

/// A path under `root` from relative bytes.
pub fn join(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}
