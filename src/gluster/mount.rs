//! Mount table reading and the stale-mount sweep: GlusterFS FUSE mounts
//! (and their mountpoint directories) that a dead process left under
//! gsyncd's run directories, or the reference daemon's
//! `/tmp/gsyncd-aux-mount-*`, are lazily unmounted and removed.
//!
//! A mount is stale when no `glusterfs` client process serves it (the
//! client's last argument is its mount point, as given to `mount`). A served
//! mount is left alone, even if it answers ENOTCONN (its bricks may be down
//! for a moment) or does not answer at all: it belongs to a live process. The
//! check reads only /proc and never `stat`s a mount, since that blocks on a
//! wedged FUSE server.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
}

/// Decodes the kernel's octal escapes (`\040` space, `\011` tab, `\012`
/// newline, `\134` backslash).
fn unescape(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(o) = b.get(i + 1..i + 4)
            && o.iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((o[0] - b'0') << 6 | (o[1] - b'0') << 3 | (o[2] - b'0'));
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Parses /proc/self/mountinfo: mount point is field 5; after the optional
/// fields and a lone `-` come the fs type and the source.
pub fn parse_mountinfo(text: &[u8]) -> Vec<MountEntry> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let f: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
            let mp = f.get(4)?;
            let sep = f.iter().skip(6).position(|x| *x == b"-")? + 6;
            Some(MountEntry {
                mount_point: PathBuf::from(OsString::from_vec(unescape(mp))),
                fs_type: String::from_utf8_lossy(f.get(sep + 1)?).into_owned(),
                source: String::from_utf8_lossy(&unescape(f.get(sep + 2)?)).into_owned(),
            })
        })
        .collect()
}

/// This process's mount table.
pub fn mounts() -> io::Result<Vec<MountEntry>> {
    Ok(parse_mountinfo(&fs::read("/proc/self/mountinfo")?))
}

/// Mount points served by a live `glusterfs` client (its last argument).
fn served_mount_points() -> Vec<Vec<u8>> {
    let Ok(rd) = fs::read_dir("/proc") else { return Vec::new() };
    rd.flatten()
        .filter(|e| e.file_name().as_bytes().iter().all(u8::is_ascii_digit))
        .filter_map(|e| fs::read(e.path().join("cmdline")).ok())
        .filter_map(|c| {
            let args: Vec<&[u8]> = c.split(|&b| b == 0).filter(|a| !a.is_empty()).collect();
            let prog = Path::new(OsStr::from_bytes(args.first()?)).file_name()?.as_bytes().to_vec();
            (prog == b"glusterfs" || prog == b"glusterfsd").then(|| args.last().map(|a| a.to_vec()))?
        })
        .collect()
}

/// The owner pid of a mountpoint directory named `<anything>.<pid>`.
pub fn owner_pid(name: &OsStr) -> Option<i32> {
    let b = name.as_bytes();
    let dot = b.iter().rposition(|&c| c == b'.')?;
    std::str::from_utf8(&b[dot + 1..]).ok()?.parse().ok().filter(|p| *p > 0)
}

/// Whether a process exists and is not a zombie (a killed owner can stay a
/// zombie for a while, and is gone for our purposes).
fn pid_alive(pid: i32) -> bool {
    fs::read(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.iter().rposition(|&b| b == b')').and_then(|i| s.get(i + 2).copied()))
        .is_some_and(|state| state != b'Z' && state != b'X')
}

/// What the sweep found and did about one path.
#[derive(Debug)]
pub struct SweepAction {
    pub path: PathBuf,
    pub what: &'static str,
    pub result: Result<(), String>,
}

impl fmt::Display for SweepAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.what)?;
        if let Err(e) = &self.result {
            write!(f, " (failed: {e})")?;
        }
        Ok(())
    }
}

/// Where to look: a directory, and which of its entries are gsyncd's.
#[derive(Debug, Clone)]
pub struct SweepRoot {
    pub dir: PathBuf,
    /// Only entries whose names start with this (e.g. the reference's
    /// `gsyncd-aux-mount-` in /tmp); all entries when empty.
    pub prefix: String,
}

impl SweepRoot {
    pub fn all(dir: PathBuf) -> SweepRoot {
        SweepRoot { dir, prefix: String::new() }
    }
}

/// Lazily unmounts stale GlusterFS mounts directly under the roots and
/// removes their mountpoints, and removes empty mountpoint directories whose
/// owner process is gone. With `dry_run`, only reports. Errors are reported
/// per path and never stop the sweep.
pub fn sweep(roots: &[SweepRoot], dry_run: bool) -> Vec<SweepAction> {
    let table = mounts().unwrap_or_default();
    let served = served_mount_points();
    let mut actions = Vec::new();
    for root in roots {
        let Ok(rd) = fs::read_dir(&root.dir) else { continue };
        for e in rd.flatten() {
            let name = e.file_name();
            if !name.as_bytes().starts_with(root.prefix.as_bytes()) {
                continue;
            }
            let path = e.path();
            let mounted: Vec<&MountEntry> = table.iter().filter(|m| m.mount_point == path).collect();
            if let Some(m) = mounted.first() {
                if !m.fs_type.starts_with("fuse.glusterfs") || served.iter().any(|s| s == path.as_os_str().as_bytes()) {
                    continue;
                }
                let result = if dry_run {
                    Ok(())
                } else {
                    // NOFOLLOW: a symlink planted at the mountpoint is not followed.
                    nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH | nix::mount::MntFlags::UMOUNT_NOFOLLOW)
                        .map_err(|e| format!("umount: {e}"))
                        .and_then(|()| fs::remove_dir(&path).map_err(|e| format!("rmdir: {e}")))
                };
                let what = if dry_run {
                    "stale glusterfs mount (dry run)"
                } else {
                    "stale glusterfs mount: unmounted and removed"
                };
                log(&path, what, &result);
                actions.push(SweepAction { path, what, result });
                continue;
            }
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            let dead_owner = owner_pid(&name).is_some_and(|p| !pid_alive(p));
            let reference_leftover = !root.prefix.is_empty();
            if is_dir && (dead_owner || reference_leftover) {
                if fs::read_dir(&path).map(|mut d| d.next().is_some()).unwrap_or(true) {
                    continue;
                }
                let result = if dry_run { Ok(()) } else { fs::remove_dir(&path).map_err(|e| format!("rmdir: {e}")) };
                let what = if dry_run { "leftover mountpoint (dry run)" } else { "leftover mountpoint: removed" };
                log(&path, what, &result);
                actions.push(SweepAction { path, what, result });
            }
        }
    }
    actions
}

fn log(path: &Path, what: &str, result: &Result<(), String>) {
    match result {
        Ok(()) => tracing::info!(path = %path.display(), "{what}"),
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "{what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_lines() {
        let text = b"36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
                     40 36 0:42 / /run/gsyncd/s/mnt/b1.77 rw,relatime shared:5 master:2 - fuse.glusterfs 127.0.0.2:/gv0 rw\n\
                     41 36 0:43 / /raw\\134x\xff rw - tmpfs tmpfs rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].mount_point, PathBuf::from("/mnt/with space"));
        assert_eq!(m[0].fs_type, "ext3");
        assert_eq!(m[1].fs_type, "fuse.glusterfs");
        assert_eq!(m[1].source, "127.0.0.2:/gv0");
        assert_eq!(m[2].mount_point.as_os_str().as_bytes(), b"/raw\\x\xff");
        assert!(parse_mountinfo(b"garbage\n\n").is_empty());
    }

    #[test]
    fn owner_pids() {
        assert_eq!(owner_pid(OsStr::new("bricks-b1.1234")), Some(1234));
        assert_eq!(owner_pid(OsStr::new("bricks-b1")), None);
        assert_eq!(owner_pid(OsStr::new("x.0")), None);
    }

    #[test]
    fn removes_only_empty_dirs_of_dead_owners() {
        let d = tempfile::tempdir().unwrap();
        // pid 2^22+1 is above the kernel's maximum: never alive.
        let dead = d.path().join("b1.4194305");
        let live = d.path().join(format!("b2.{}", std::process::id()));
        let full = d.path().join("b3.4194305");
        let other = d.path().join("notes");
        for p in [&dead, &live, &full, &other] {
            fs::create_dir(p).unwrap();
        }
        fs::write(full.join("keep"), b"x").unwrap();
        let root = [SweepRoot::all(d.path().to_owned())];
        let dry = sweep(&root, true);
        assert_eq!(dry.len(), 1, "{dry:?}");
        assert!(dead.exists(), "dry run removed something");
        let done = sweep(&root, false);
        assert_eq!(done.len(), 1, "{done:?}");
        assert_eq!(done[0].path, dead);
        assert!(done[0].result.is_ok());
        assert!(!dead.exists() && live.exists() && full.exists() && other.exists());
        assert!(done[0].to_string().ends_with("leftover mountpoint: removed"));
    }
}
