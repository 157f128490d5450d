//! A real GlusterFS cluster on this machine: glusterd (started if none runs),
//! volumes on local brick directories, FUSE mounts. Everything it creates is
//! named after the owning process, removed on drop (also while a panic
//! unwinds), and swept by the next run if this process was killed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Root of everything the harness puts on disk.
pub const BASE: &str = "/var/tmp/gsyncd-tests";
/// Prefix of every volume the harness creates: `gsyt<pid>x<n>`.
pub const VOLUME_PREFIX: &str = "gsyt";

/// The brick host. glusterd refuses the literal `localhost`/`127.0.0.1` but
/// takes another loopback address as local.
pub fn brick_host() -> String {
    std::env::var("GSYNCD_TEST_HOST").unwrap_or_else(|_| "127.0.0.2".to_owned())
}

/// Volume layouts the tests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One brick.
    Single,
    /// 2 x 2 distributed-replicate.
    DistRep2x2,
}

impl Shape {
    fn bricks(self) -> usize {
        match self {
            Shape::Single => 1,
            Shape::DistRep2x2 => 4,
        }
    }
}

/// Whether a volume is the primary (changelogs on) or the secondary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Primary,
    Secondary,
}

/// A started, mounted volume.
#[derive(Debug, Clone)]
pub struct Volume {
    pub name: String,
    pub shape: Shape,
    pub bricks: Vec<PathBuf>,
    pub mount: PathBuf,
}

#[derive(Debug)]
pub struct Cluster {
    /// Whether this harness started glusterd (and so stops it).
    started_glusterd: bool,
    pub dir: PathBuf,
    host: String,
    volumes: Mutex<Vec<Volume>>,
    torn_down: bool,
    /// glusterd runs one transaction at a time; serialize our CLI calls.
    cli_lock: Mutex<()>,
    counter: AtomicUsize,
}

fn run(cmd: &mut Command) -> Output {
    match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run {cmd:?}: {e}"),
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Whether a glusterd runs. Zombies do not count: where PID 1 does not
/// reap, a stopped glusterd stays in the process table.
fn glusterd_running() -> bool {
    let Ok(o) = Command::new("pgrep").args(["-x", "glusterd"]).output() else { return false };
    String::from_utf8_lossy(&o.stdout).lines().any(|pid| {
        fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
            .ok()
            .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().chars().next()))
            .is_some_and(|state| state != Some('Z') && state != Some('X'))
    })
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The pid that owns a harness name `gsyt<pid>x<n>`.
fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(VOLUME_PREFIX)?.split('x').next()?.parse().ok()
}

/// Mount points under `root` from /proc/mounts.
pub fn mounts_under(root: &Path) -> Vec<PathBuf> {
    let Ok(m) = fs::read_to_string("/proc/mounts") else {
        return Vec::new();
    };
    m.lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(root))
        .collect()
}

impl Cluster {
    /// Sweeps what dead earlier runs left, starts glusterd if needed.
    pub fn start() -> Cluster {
        let pid = std::process::id();
        let dir = Path::new(BASE).join(format!("run-{pid}"));
        let mut c = Cluster {
            started_glusterd: false,
            dir,
            host: brick_host(),
            volumes: Mutex::new(Vec::new()),
            torn_down: false,
            cli_lock: Mutex::new(()),
            counter: AtomicUsize::new(0),
        };
        c.started_glusterd = c.ensure_glusterd();
        c.sweep();
        fs::create_dir_all(&c.dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", c.dir.display()));
        c
    }

    /// Makes sure a glusterd answers, starting one if none runs (also when
    /// one was just stopping as we looked). Returns whether we started it.
    fn ensure_glusterd(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(45);
        let mut started = false;
        loop {
            let o = run(Command::new("gluster").args(["--mode=script", "volume", "list"]));
            if o.status.success() {
                return started;
            }
            if !glusterd_running() {
                let s = run(Command::new("glusterd").args(["--log-level", "WARNING"]));
                assert!(s.status.success(), "glusterd did not start: {}", text(&s));
                started = true;
            }
            assert!(Instant::now() < deadline, "glusterd does not answer: {}", text(&o));
            sleep(Duration::from_millis(300));
        }
    }

    /// Runs `gluster --mode=script ARGS`, retrying while glusterd is busy
    /// with another transaction.
    pub fn gluster(&self, args: &[&str]) -> Result<String, String> {
        let _g = self.cli_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut last = String::new();
        for _ in 0..20 {
            let o = run(Command::new("gluster").arg("--mode=script").args(args));
            last = text(&o);
            if o.status.success() {
                return Ok(last);
            }
            if !(last.contains("Another transaction") || last.contains("Locking failed") || last.contains("is busy")) {
                break;
            }
            sleep(Duration::from_millis(500));
        }
        Err(format!("gluster {}: {}", args.join(" "), last.trim()))
    }

    /// Removes volumes, mounts and directories of harness runs whose process
    /// is gone.
    fn sweep(&self) {
        for m in mounts_under(Path::new(BASE)) {
            let owner = m
                .strip_prefix(BASE)
                .ok()
                .and_then(|r| r.iter().next())
                .and_then(|c| c.to_str()?.strip_prefix("run-")?.parse::<u32>().ok());
            if owner.is_some_and(|p| !pid_alive(p)) {
                let _ = Command::new("umount").arg("-l").arg(&m).status();
            }
        }
        if let Ok(list) = self.gluster(&["volume", "list"]) {
            for v in list.lines().map(str::trim).filter(|v| v.starts_with(VOLUME_PREFIX)) {
                if owner_pid(v).is_some_and(|p| !pid_alive(p)) {
                    let _ = self.gluster(&["volume", "stop", v, "force"]);
                    let _ = self.gluster(&["volume", "delete", v]);
                }
            }
        }
        if let Ok(rd) = fs::read_dir(BASE) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let owner = name.strip_prefix("run-").and_then(|p| p.parse::<u32>().ok());
                if owner.is_some_and(|p| !pid_alive(p)) && mounts_under(&e.path()).is_empty() {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
    }

    /// Creates, configures, starts and mounts a volume.
    pub fn create_volume(&self, shape: Shape, side: Side) -> Volume {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let name =
            format!("{VOLUME_PREFIX}{}x{n}{}", std::process::id(), if side == Side::Primary { "p" } else { "s" });
        let vdir = self.dir.join(&name);
        let bricks: Vec<PathBuf> = (0..shape.bricks()).map(|i| vdir.join(format!("brick{i}"))).collect();
        for b in &bricks {
            fs::create_dir_all(b).unwrap_or_else(|e| panic!("cannot create {}: {e}", b.display()));
        }
        let mount = vdir.join("mnt");
        fs::create_dir_all(&mount).unwrap_or_else(|e| panic!("cannot create {}: {e}", mount.display()));
        let vol = Volume { name: name.clone(), shape, bricks: bricks.clone(), mount: mount.clone() };
        // Registered before creation so that drop cleans up a half-made volume.
        self.volumes.lock().unwrap_or_else(|p| p.into_inner()).push(vol.clone());

        let brick_args: Vec<String> = bricks.iter().map(|b| format!("{}:{}", self.host, b.display())).collect();
        let mut args: Vec<&str> = vec!["volume", "create", &name];
        if shape == Shape::DistRep2x2 {
            args.extend(["replica", "2"]);
        }
        args.extend(brick_args.iter().map(String::as_str));
        args.push("force");
        self.gluster(&args).unwrap_or_else(|e| panic!("{e}"));
        if side == Side::Primary {
            for (k, v) in
                [("changelog.changelog", "on"), ("changelog.rollover-time", "3"), ("geo-replication.indexing", "on")]
            {
                self.gluster(&["volume", "set", &name, k, v]).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        self.gluster(&["volume", "start", &name]).unwrap_or_else(|e| panic!("{e}"));
        self.mount(&name, &mount);
        vol
    }

    fn mount(&self, name: &str, at: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let o = run(Command::new("mount").args(["-t", "glusterfs"]).arg(format!("{}:/{name}", self.host)).arg(at));
            if o.status.success() && fs::metadata(at).is_ok() && mounts_under(at).contains(&at.to_path_buf()) {
                return;
            }
            let _ = Command::new("umount").arg("-l").arg(at).status();
            assert!(Instant::now() < deadline, "cannot mount {name} at {}: {}", at.display(), text(&o));
            sleep(Duration::from_millis(500));
        }
    }

    /// Everything this cluster created that still exists.
    fn leftovers(&self) -> Vec<String> {
        let mut left: Vec<String> = mounts_under(&self.dir).iter().map(|m| format!("mount {}", m.display())).collect();
        let me = format!("{VOLUME_PREFIX}{}x", std::process::id());
        if let Ok(list) = self.gluster(&["volume", "list"]) {
            left.extend(list.lines().filter(|v| v.trim().starts_with(&me)).map(|v| format!("volume {}", v.trim())));
        }
        if self.dir.exists() {
            left.push(format!("directory {}", self.dir.display()));
        }
        left
    }

    /// Tears everything down and returns what could not be removed (empty
    /// when the machine is clean again).
    pub fn shutdown(mut self) -> Vec<String> {
        self.teardown()
    }

    fn teardown(&mut self) -> Vec<String> {
        if self.torn_down {
            return Vec::new();
        }
        self.torn_down = true;
        let vols: Vec<Volume> = std::mem::take(&mut *self.volumes.lock().unwrap_or_else(|p| p.into_inner()));
        for v in vols.iter().rev() {
            if mounts_under(&v.mount).contains(&v.mount) {
                let ok = Command::new("umount").arg(&v.mount).status().is_ok_and(|s| s.success());
                if !ok {
                    let _ = Command::new("umount").arg("-l").arg(&v.mount).status();
                }
            }
            let _ = self.gluster(&["volume", "stop", &v.name, "force"]);
            if let Err(e) = self.gluster(&["volume", "delete", &v.name])
                && !e.contains("does not exist")
            {
                eprintln!("teardown: {e}");
            }
        }
        if mounts_under(&self.dir).is_empty()
            && let Err(e) = fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("teardown: cannot remove {}: {e}", self.dir.display());
        }
        let _ = fs::remove_dir(BASE);
        let left = self.leftovers();
        if self.started_glusterd {
            // glusterd, and the brick and self-heal daemons it started; wait
            // until they are gone, so the next test binary does not find a
            // glusterd that is about to exit.
            for p in ["glusterd", "glusterfsd"] {
                let _ = Command::new("pkill").args(["-x", p]).status();
            }
            let _ = Command::new("pkill").args(["-f", "glustershd"]).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while glusterd_running() && Instant::now() < deadline {
                sleep(Duration::from_millis(100));
            }
            if glusterd_running() {
                let _ = Command::new("pkill").args(["-KILL", "-x", "glusterd"]).status();
            }
        }
        left
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for l in self.teardown() {
            eprintln!("teardown left {l}");
        }
    }
}
