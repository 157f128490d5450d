//! Aux-gfid mounts that cannot outlive the process that made them
//! (reference §7.1, ARCHITECTURE principle 3).
//!
//! The process mounts the volume (`glusterfs --aux-gfid-mount ...` as root,
//! or glusterd's mountbroker for a non-root user) and `chdir`s into it. As
//! root it does so in a mount namespace of its own, so nobody else ever sees
//! the mount (the ssh gate joins that namespace to run rsync or tar there).
//!
//! The mount stays attached while the process lives, because rsync >= 3.4
//! needs a working directory that `getcwd()` can name: the reference's
//! "chdir, then lazy umount" leaves a detached cwd, which that rsync refuses
//! (gluster issue 4533). What removes the mount when the process dies,
//! however it dies, is a guard: a small `gsyncd mount-guard` process in the
//! same namespace and in its own session, started before the mount, that
//! reads a pipe from its parent. The parent writes the mount point, then `M`
//! once mounted, and `D` when it has cleaned up itself at a normal exit.
//! When the pipe reaches end-of-file without `D` (the parent died, SIGKILL
//! included), the guard lazily unmounts, which ends the glusterfs client,
//! and removes the mount point.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::mount;

/// Where gsyncd keeps runtime files (mount points, control sockets).
pub const RUN_ROOT: &str = "/run/gsyncd";

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot create mount point {path}: {source}")]
    MountPoint {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the mount guard: {0}")]
    Guard(#[source] io::Error),
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "mounting volume {volume} failed ({status}){stderr}; check that it exists and is started \
         (`gluster volume status {volume}`), and the client log"
    )]
    Failed { volume: String, status: String, stderr: String },
    #[error("mounting volume {volume} did not finish within {secs} s (connection-timeout)")]
    Timeout { volume: String, secs: u64 },
    #[error("mountbroker did not name a mount point for volume {volume}: {stdout:?}")]
    NoBrokerPath { volume: String, stdout: String },
    #[error("cannot enter the mount of volume {volume} at {path}: {source}")]
    Enter {
        volume: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot set up a private mount namespace: {0}")]
    Namespace(#[source] nix::Error),
}

/// How to reach glusterd to mount.
#[derive(Debug, Clone)]
pub enum Mounter {
    /// Root: run `glusterfs` on a mount point under `dir`.
    Direct { dir: PathBuf },
    /// Not root: ask glusterd (`gluster system:: mount <label> ...`).
    Broker { label: String, user: String, cli_options: Vec<String> },
}

/// What to mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Directory of the `glusterfs` and `gluster` programs.
    pub command_dir: PathBuf,
    pub volfile_server: String,
    pub volume: String,
    pub log_file: PathBuf,
    pub log_level: String,
    /// `gluster-params`, e.g. `aux-gfid-mount acl`.
    pub params: Vec<String>,
    /// Bound on mount + chdir (`connection-timeout`).
    pub timeout: Duration,
}

impl MountOptions {
    fn params(&self) -> Vec<String> {
        let mut p = self.params.clone();
        p.push(format!("log-level={}", self.log_level));
        p.push(format!("log-file={}", self.log_file.display()));
        p.push(format!("volfile-server={}", self.volfile_server));
        p.push(format!("volfile-id={}", self.volume));
        p.push("client-pid=-1".into());
        p
    }

    /// `glusterfs --aux-gfid-mount --acl --log-level=... <mntpt>`.
    pub fn direct_argv(&self, mntpt: &Path) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec![self.command_dir.join("glusterfs").into_os_string()];
        v.extend(self.params().into_iter().map(|p| OsString::from(format!("--{p}"))));
        v.push(mntpt.as_os_str().to_owned());
        v
    }

    fn broker_cli(&self, cli_options: &[String]) -> Vec<OsString> {
        let mut v: Vec<OsString> =
            vec![self.command_dir.join("gluster").into_os_string(), "--remote-host=localhost".into()];
        v.extend(cli_options.iter().map(OsString::from));
        v.push("system::".into());
        v
    }

    /// `gluster --remote-host=localhost system:: mount <label> user-map-root=<user> ...`.
    pub fn broker_mount_argv(&self, label: &str, user: &str, cli_options: &[String]) -> Vec<OsString> {
        let mut v = self.broker_cli(cli_options);
        v.push("mount".into());
        v.push(label.into());
        v.push(format!("user-map-root={user}").into());
        v.extend(self.params().into_iter().map(OsString::from));
        v
    }
}

/// `gluster --remote-host=localhost system:: umount <path> lazy`.
pub fn broker_umount_argv(command_dir: &Path, cli_options: &[String], path: &Path) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![command_dir.join("gluster").into_os_string(), "--remote-host=localhost".into()];
    v.extend(cli_options.iter().map(OsString::from));
    v.extend(["system::".into(), "umount".into(), path.as_os_str().to_owned(), "lazy".into()]);
    v
}

/// Mount parameters that keep what the mount says about names recent: no
/// client-side metadata cache (md-cache), and the kernel's entry and
/// attribute caches (FUSE) kept 0.2 s instead of 1 s. With the defaults a
/// name the primary renamed something over, or a GFID it deleted, reads as
/// before for about a second (measured); on a volume of several replica
/// sets, whose workers replay their changelogs concurrently, a conflict
/// decided on such an answer put an older file back over a newer one that
/// the other set's worker had already synced. An answer at most 0.2 s old
/// is safe where the worker acts within 0.8 s of its lookup, as conflict
/// resolution does (a lookup, then the fix): the other set's worker
/// replays an entry once it is 1 s old (at the earliest), so whatever
/// changed within the window is replayed after this worker acts, and
/// corrects it. 0.2 s rather than 0 keeps the repeated lookups of a
/// batch's parent directories cached (measured on 2x2: the mixed workload
/// converged in 15 s with 0.2, 39 s with 0, 9 s with the defaults).
pub const FRESH_LOOKUPS: [&str; 4] =
    ["entry-timeout=0.2", "attribute-timeout=0.2", "negative-timeout=0", "xlator-option=*md-cache.md-cache-timeout=0"];

/// `base`, with [`FRESH_LOOKUPS`] when the primary has more than one
/// replica set (`primary_dist_count` > 1). One set replays in changelog
/// order, where a stale answer is corrected by the records that follow.
pub fn params_for(mut base: Vec<String>, primary_dist_count: u32) -> Vec<String> {
    if primary_dist_count > 1 {
        base.extend(FRESH_LOOKUPS.iter().map(|&o| o.to_owned()));
    }
    base
}

/// Moves this process into a mount namespace of its own whose mounts do
/// not propagate back, so that its aux mount is invisible to every other
/// process. Must run before any thread is started.
pub fn private_namespace() -> Result<(), MountError> {
    use nix::mount::{MsFlags, mount};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(MountError::Namespace)?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(MountError::Namespace)
}

/// The parent's end of the guard.
#[derive(Debug)]
struct Guard {
    pipe: Option<File>,
    child: Child,
}

impl Guard {
    fn spawn(exe: &Path, mounter: &Mounter, command_dir: &Path) -> io::Result<Guard> {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        let mut cmd = Command::new(exe);
        cmd.arg("mount-guard").stdin(Stdio::null()).stdout(Stdio::null());
        if let Mounter::Broker { cli_options, .. } = mounter {
            cmd.arg("--broker").arg("--command-dir").arg(command_dir);
            for o in cli_options {
                cmd.arg(format!("--cli-option={o}"));
            }
        }
        let child = crate::sys::spawn_detached_with_fds(&mut cmd, &[(&r, 3)])?;
        drop(r);
        Ok(Guard { pipe: Some(File::from(w)), child })
    }

    fn tell(&mut self, what: &[u8]) -> io::Result<()> {
        match &mut self.pipe {
            Some(p) => p.write_all(what),
            None => Ok(()),
        }
    }

    /// Tells the guard that nothing is left to clean, and reaps it.
    fn finish(mut self) -> io::Result<()> {
        self.tell(b"D")?;
        drop(self.pipe.take());
        let st = self.child.wait()?;
        if st.success() { Ok(()) } else { Err(io::Error::other(format!("mount guard ended with {st}"))) }
    }
}

/// A mount this process is inside of.
#[derive(Debug)]
pub struct Entered {
    /// Where it is mounted (in this process's mount namespace).
    pub mount_point: PathBuf,
    mounter: Mounter,
    command_dir: PathBuf,
    guard: Option<Guard>,
}

fn run_with_deadline(mut cmd: Command, deadline: Instant, volume: &str) -> Result<Vec<u8>, MountError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| MountError::Spawn { program, source })?;
    // Drain both pipes on threads so a chatty child cannot block on them.
    let drain = |p: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            if let Some(mut p) = p {
                let _ = p.read_to_end(&mut b);
            }
            b
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                let secs = 0;
                return Err(MountError::Timeout { volume: volume.to_owned(), secs });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(MountError::Spawn { program: "wait".into(), source: e }),
        }
    };
    // glusterfs daemonizes: its daemon may keep the pipes open, so do not
    // wait for end-of-file after the foreground process has exited.
    let stdout = join_soon(out);
    let stderr = join_soon(err);
    if !status.success() {
        let e = String::from_utf8_lossy(&stderr).trim().to_owned();
        return Err(MountError::Failed {
            volume: volume.to_owned(),
            status: status.to_string(),
            stderr: if e.is_empty() { String::new() } else { format!(": {e}") },
        });
    }
    Ok(stdout)
}

fn join_soon(h: std::thread::JoinHandle<Vec<u8>>) -> Vec<u8> {
    let until = Instant::now() + Duration::from_millis(500);
    while !h.is_finished() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    if h.is_finished() { h.join().unwrap_or_default() } else { Vec::new() }
}

fn mkdir_private(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
}

/// Mounts and enters the volume, guarded: see the module docs. `exe` is
/// this binary (for the guard). The caller must already be in a private
/// namespace if it wants one ([`private_namespace`]).
pub fn mount_and_enter(o: &MountOptions, mounter: &Mounter, exe: &Path) -> Result<Entered, MountError> {
    let start = Instant::now();
    let deadline = start + o.timeout;
    let timeout = || MountError::Timeout { volume: o.volume.clone(), secs: o.timeout.as_secs() };
    let mut guard = Guard::spawn(exe, mounter, &o.command_dir).map_err(MountError::Guard)?;
    // glusterfs creates its log file but not the directory (a non-root user
    // may not be allowed to: then the administrator has, with
    // gluster-mountbroker setup).
    if let Some(parent) = o.log_file.parent() {
        let _ = fs::create_dir_all(parent);
    }
    let mount_point = match mounter {
        Mounter::Direct { dir } => {
            let mp = dir.join(format!("{}.{}", o.volume, std::process::id()));
            let mk = |source| MountError::MountPoint { path: mp.clone(), source };
            mkdir_private(dir).map_err(mk)?;
            match fs::create_dir(&mp) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    // A dead process with our pid left it (its guard failed).
                    let _ = nix::mount::umount2(&mp, nix::mount::MntFlags::MNT_DETACH);
                    fs::remove_dir(&mp).and_then(|()| fs::create_dir(&mp)).map_err(mk)?;
                }
                r => r.map_err(mk)?,
            }
            guard.tell(mp.as_os_str().as_bytes()).and_then(|()| guard.tell(b"\0")).map_err(MountError::Guard)?;
            let argv = o.direct_argv(&mp);
            let mut cmd = Command::new(&argv[0]);
            cmd.args(&argv[1..]);
            run_with_deadline(cmd, deadline, &o.volume).map_err(|e| match e {
                MountError::Timeout { .. } => timeout(),
                e => e,
            })?;
            mp
        }
        Mounter::Broker { label, user, cli_options } => {
            let argv = o.broker_mount_argv(label, user, cli_options);
            let mut cmd = Command::new(&argv[0]);
            cmd.args(&argv[1..]);
            let out = run_with_deadline(cmd, deadline, &o.volume).map_err(|e| match e {
                MountError::Timeout { .. } => timeout(),
                e => e,
            })?;
            let first = out.split(|&b| b == b'\n').next().unwrap_or_default();
            if first.first() != Some(&b'/') {
                return Err(MountError::NoBrokerPath {
                    volume: o.volume.clone(),
                    stdout: String::from_utf8_lossy(&out).into_owned(),
                });
            }
            let mp = PathBuf::from(OsString::from_vec(first.to_vec()));
            guard.tell(first).and_then(|()| guard.tell(b"\0")).map_err(MountError::Guard)?;
            mp
        }
    };
    guard.tell(b"M").map_err(MountError::Guard)?;

    // chdir blocks until the FUSE client answers: bound it.
    let (tx, rx) = std::sync::mpsc::channel();
    let mp2 = mount_point.clone();
    std::thread::spawn(move || drop(tx.send(std::env::set_current_dir(&mp2))));
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
    match rx.recv_timeout(left) {
        Ok(Ok(())) => {}
        Ok(Err(source)) => return Err(MountError::Enter { volume: o.volume.clone(), path: mount_point, source }),
        Err(_) => return Err(timeout()),
    }
    wait_ready(Duration::from_millis(2200));

    tracing::debug!(elapsed_ms = start.elapsed().as_millis() as u64, "aux mount ready");
    Ok(Entered { mount_point, mounter: mounter.clone(), command_dir: o.command_dir.clone(), guard: Some(guard) })
}

/// Polls `dht.subvol.status` on the current directory until it reads "1"
/// (all subvolumes up) or `max` passes; proceeds either way, as the
/// reference does, but says so.
fn wait_ready(max: Duration) {
    let until = Instant::now() + max;
    loop {
        match xattr::get(".", super::xattr::keys::DHT_SUBVOL_STATUS) {
            Ok(Some(v)) if v.strip_suffix(b"\0").unwrap_or(&v) == b"1" => return,
            _ if Instant::now() >= until => {
                tracing::warn!("not every subvolume of the mounted volume is up yet; going on");
                return;
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn lazy_umount(mounter: &Mounter, command_dir: &Path, mp: &Path) -> io::Result<()> {
    match mounter {
        Mounter::Direct { .. } => {
            match nix::mount::umount2(mp, nix::mount::MntFlags::MNT_DETACH | nix::mount::MntFlags::UMOUNT_NOFOLLOW) {
                Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
            match fs::remove_dir(mp) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }
        Mounter::Broker { cli_options, .. } => {
            let argv = broker_umount_argv(command_dir, cli_options, mp);
            let out = Command::new(&argv[0]).args(&argv[1..]).stdin(Stdio::null()).output()?;
            if out.status.success() {
                Ok(())
            } else {
                Err(io::Error::other(format!(
                    "gluster system:: umount failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )))
            }
        }
    }
}

impl Entered {
    /// At a clean exit: leaves the mount, unmounts it lazily, removes the
    /// mount point, and tells the guard it has nothing to do.
    pub fn release(mut self) -> io::Result<()> {
        let _ = std::env::set_current_dir("/");
        lazy_umount(&self.mounter, &self.command_dir, &self.mount_point)?;
        match self.guard.take() {
            Some(g) => g.finish(),
            None => Ok(()),
        }
    }
}

/// What `gsyncd mount-guard` read from its parent, if `main` read it before
/// anything else ([`guard_wait_early`]).
static EARLY: std::sync::OnceLock<io::Result<Vec<u8>>> = std::sync::OnceLock::new();

/// For `gsyncd mount-guard`, called first thing in `main`: waits for the
/// parent's pipe (fd `fd`) to reach end-of-file before the command line
/// parser, the logger or anything else is loaded. A guard spends its whole
/// life in that wait, so this keeps its resident memory at what a bare
/// process needs (about 2 MiB instead of 5.5 MiB, measured with
/// /proc/<pid>/status) — multiplied by every mount a node holds.
pub fn guard_wait_early(fd: std::os::fd::RawFd) {
    if std::env::args_os().nth(1).as_deref() != Some(OsStr::new("mount-guard")) {
        return;
    }
    let read = crate::sys::take_inherited_fd(fd).and_then(read_all);
    let _ = EARLY.set(read);
}

fn read_all(fd: OwnedFd) -> io::Result<Vec<u8>> {
    let mut msg = Vec::new();
    // End-of-file comes when the parent closes the pipe or dies.
    File::from(fd).read_to_end(&mut msg)?;
    Ok(msg)
}

/// The guard's messages: as read early by [`guard_wait_early`], else read
/// now from `fd` (taken with `take`).
pub fn guard_message(take: impl FnOnce() -> io::Result<OwnedFd>) -> io::Result<Vec<u8>> {
    match EARLY.get() {
        Some(Ok(m)) => Ok(m.clone()),
        Some(Err(e)) => Err(io::Error::new(e.kind(), e.to_string())),
        None => take().and_then(read_all),
    }
}

/// `gsyncd mount-guard`: reads the protocol on `fd` until end-of-file and
/// cleans up if the parent did not say it is done. Returns what it did:
/// the mount point, and whether a mount was there to unmount.
pub fn guard_main(fd: OwnedFd, mounter: &Mounter, command_dir: &Path) -> io::Result<Option<(PathBuf, bool)>> {
    guard_cleanup(&read_all(fd)?, mounter, command_dir)
}

/// The guard's work once its parent is gone, given what the parent said.
pub fn guard_cleanup(msg: &[u8], mounter: &Mounter, command_dir: &Path) -> io::Result<Option<(PathBuf, bool)>> {
    if msg.last() == Some(&b'D') {
        return Ok(None);
    }
    let Some(nul) = msg.iter().position(|&b| b == 0) else { return Ok(None) };
    let mp = PathBuf::from(OsStr::from_bytes(&msg[..nul]));
    if mp.as_os_str().is_empty() || !mp.is_absolute() {
        return Ok(None);
    }
    let mounted = msg[nul + 1..].contains(&b'M')
        || mount::mounts().map(|t| t.iter().any(|m| m.mount_point == mp)).unwrap_or(false);
    if mounted {
        lazy_umount(mounter, command_dir, &mp)?;
    } else if matches!(mounter, Mounter::Direct { .. }) {
        match fs::remove_dir(&mp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(Some((mp, mounted)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> MountOptions {
        MountOptions {
            command_dir: "/usr/sbin".into(),
            volfile_server: "localhost".into(),
            volume: "sv".into(),
            log_file: "/var/log/glusterfs/x.log".into(),
            log_level: "INFO".into(),
            params: vec!["aux-gfid-mount".into(), "acl".into()],
            timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn short_caches_only_with_several_replica_sets() {
        let base = vec!["aux-gfid-mount".to_owned()];
        assert_eq!(params_for(base.clone(), 1), base);
        let p = params_for(base, 2);
        assert_eq!(p[0], "aux-gfid-mount");
        assert_eq!(&p[1..], FRESH_LOOKUPS);
    }

    #[test]
    fn argv_shapes() {
        let v = opts().direct_argv(Path::new("/run/gsyncd/secondary/mnt/sv.7"));
        let s: Vec<String> = v.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            s,
            [
                "/usr/sbin/glusterfs",
                "--aux-gfid-mount",
                "--acl",
                "--log-level=INFO",
                "--log-file=/var/log/glusterfs/x.log",
                "--volfile-server=localhost",
                "--volfile-id=sv",
                "--client-pid=-1",
                "/run/gsyncd/secondary/mnt/sv.7"
            ]
        );
        let v = opts().broker_mount_argv("geoaccount", "geoaccount", &[]);
        let s: Vec<String> = v.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            &s[..6],
            [
                "/usr/sbin/gluster",
                "--remote-host=localhost",
                "system::",
                "mount",
                "geoaccount",
                "user-map-root=geoaccount"
            ]
        );
        assert_eq!(s.last().map(String::as_str), Some("client-pid=-1"));
        let v = broker_umount_argv(Path::new("/usr/sbin"), &[], Path::new("/m"));
        assert_eq!(v.last().map(|a| a.to_string_lossy().into_owned()).as_deref(), Some("lazy"));
    }

    #[test]
    fn guard_does_nothing_after_done_and_removes_an_unmounted_dir() {
        let dir = tempfile::tempdir().unwrap();
        let mp = dir.path().join("v.1");
        fs::create_dir(&mp).unwrap();
        let m = Mounter::Direct { dir: dir.path().into() };
        let run = |bytes: &[u8]| {
            let (r, w) = nix::unistd::pipe().unwrap();
            let mut w = File::from(w);
            w.write_all(bytes).unwrap();
            drop(w);
            guard_main(r, &m, Path::new("/usr/sbin")).unwrap()
        };
        let mut msg = mp.as_os_str().as_bytes().to_vec();
        msg.push(0);
        let mut done = msg.clone();
        done.extend_from_slice(b"D");
        assert_eq!(run(&done), None);
        assert!(mp.exists());
        // The parent died before mounting: the directory goes.
        assert_eq!(run(&msg), Some((mp.clone(), false)));
        assert!(!mp.exists());
        assert_eq!(run(b""), None);
    }
}
