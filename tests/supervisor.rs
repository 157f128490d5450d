//! The supervisor against a real primary volume, with systemd emulated by
//! a notify socket (SO_PASSCRED, so every datagram's sender is known):
//! readiness, status, watchdog cadence and its withholding while a child is
//! stopped, restarts with backoff when children are killed, orphan-free
//! death of the supervisor, the pid-file lock, and shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::io::IoSliceMut;
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use nix::unistd::Pid;
use support::cluster::Shape;
use support::session::Session;
use support::{Fixture, trial, wait_for};

fn main() {
    support::run(|fx| {
        vec![
            trial("notify_ready_status_watchdog_and_stopping", fx, notify_protocol),
            trial("killed_children_restart_with_their_sibling", fx, children_restart),
            trial("killed_supervisor_leaves_no_child", fx, supervisor_death),
            trial("second_supervisor_for_a_session_is_refused", fx, second_supervisor),
            trial("sighup_restarts_only_children_whose_options_changed", fx, sighup_reload),
            trial("stale_mounts_are_swept_at_start_and_by_cleanup_mounts", fx, stale_mounts),
        ]
    })
}

/// A session on the fixture's primary volume, in a private config dir.
fn session(fx: &Fixture, name: &str) -> Session {
    let (p, s) = fx.pair(Shape::Single);
    let sess = Session::new(fx, name, &p, &s, "connection-timeout = 20\n");
    sess.edit(|t| t.replace("connection-timeout = 30\n", ""));
    sess
}

/// `gsyncd supervise`, logging to a file, with extra environment.
fn start(s: &Session, env: &[(&str, String)]) -> Child {
    let mut c = s.command(&["--log-level", "info"]);
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

/// Children of `parent` by role (from /proc).
fn children(parent: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(ppid) = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok())
        else {
            continue;
        };
        if ppid != parent {
            continue;
        }
        let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmd.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if let Some(role) = args.iter().find(|a| ["monitor", "agent", "worker"].contains(&a.as_str())) {
            out.push((pid, role.clone()));
        }
    }
    out
}

fn pid_of(parent: u32, role: &str) -> Option<u32> {
    children(parent).into_iter().find(|(_, r)| r == role).map(|(p, _)| p)
}

fn alive(pid: u32) -> bool {
    // A zombie is dead for our purposes.
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')))
}

fn stop(mut c: Child) -> std::process::ExitStatus {
    let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
    c.wait().unwrap()
}

/// The emulated `NOTIFY_SOCKET`: each datagram with its sender's pid.
struct Notify {
    sock: UnixDatagram,
    path: PathBuf,
}

impl Notify {
    fn bind(dir: &Path) -> Notify {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        setsockopt(&sock.as_fd(), sockopt::PassCred, &true).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        Notify { sock, path }
    }

    fn recv(&self) -> Option<(u32, String, Instant)> {
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!(nix::libc::ucred);
        let msg =
            recvmsg::<()>(std::os::fd::AsRawFd::as_raw_fd(&self.sock), &mut iov, Some(&mut cmsg), MsgFlags::empty())
                .ok()?;
        let pid = msg
            .cmsgs()
            .ok()?
            .find_map(|c| match c {
                ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid() as u32),
                _ => None,
            })
            .unwrap_or(0);
        let n = msg.bytes;
        Some((pid, String::from_utf8_lossy(&buf[..n]).into_owned(), Instant::now()))
    }

    /// Receives until `pred` holds for a datagram, or panics after `timeout`.
    fn until(&self, timeout: Duration, log: &mut Vec<(u32, String, Instant)>, pred: impl Fn(&str) -> bool) -> Instant {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(d) = self.recv() {
                let hit = pred(&d.1);
                let t = d.2;
                log.push(d);
                if hit {
                    return t;
                }
            }
        }
        panic!("no matching notification within {timeout:?}; got: {:#?}", log.iter().map(|d| &d.1).collect::<Vec<_>>());
    }
}

fn notify_protocol(fx: &Fixture) {
    let s = session(fx, "notify");
    let n = Notify::bind(s.dir.path());
    let wd = Duration::from_secs(2);
    let child =
        start(&s, &[("NOTIFY_SOCKET", n.path.display().to_string()), ("WATCHDOG_USEC", wd.as_micros().to_string())]);
    let sup = child.id();
    let mut log = Vec::new();
    n.until(Duration::from_secs(60), &mut log, |m| m.lines().any(|l| l == "READY=1"));
    // While bricks start, the start timeout is extended.
    assert!(log.iter().any(|d| d.1.contains("EXTEND_TIMEOUT_USEC=")), "{log:?}");
    // A few watchdog periods of steady state.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        if let Some(d) = n.recv() {
            log.push(d);
        }
    }
    let pings: Vec<Instant> = log.iter().filter(|d| d.1.contains("WATCHDOG=1")).map(|d| d.2).collect();
    assert!(pings.len() >= 4, "only {} watchdog pings in 5 s", pings.len());
    for w in pings.windows(2) {
        let gap = w[1] - w[0];
        assert!(gap <= wd / 2 + Duration::from_millis(150), "watchdog gap {gap:?} exceeds half of {wd:?}");
    }
    let statuses: Vec<&str> = log.iter().filter_map(|d| d.1.lines().find_map(|l| l.strip_prefix("STATUS="))).collect();
    assert!(statuses.len() >= 2, "STATUS did not change: {statuses:?}");
    assert!(statuses.iter().any(|s| s.starts_with("1 worker: 1 running; 0 faulty")), "{statuses:?}");

    // A stopped worker: pings stop within the watchdog interval...
    let worker = pid_of(sup, "worker").expect("a worker");
    kill(Pid::from_raw(worker as i32), Signal::SIGSTOP).unwrap();
    let stopped_at = Instant::now();
    let mut after = Vec::new();
    while stopped_at.elapsed() < wd * 2 {
        if let Some(d) = n.recv() {
            after.push(d);
        }
    }
    let late: Vec<Duration> =
        after.iter().filter(|d| d.1.contains("WATCHDOG=1")).map(|d| d.2 - stopped_at).filter(|t| *t > wd).collect();
    assert!(late.is_empty(), "watchdog pinged {late:?} after the worker stopped");
    // ...and resume once it runs again.
    kill(Pid::from_raw(worker as i32), Signal::SIGCONT).unwrap();
    n.until(wd * 3, &mut log, |m| m.contains("WATCHDOG=1"));

    // Only the supervisor ever spoke.
    for (pid, text, _) in log.iter().chain(after.iter()) {
        assert_eq!(*pid, sup, "datagram {text:?} came from pid {pid}, not the supervisor");
    }
    let _ = kill(Pid::from_raw(sup as i32), Signal::SIGTERM);
    n.until(Duration::from_secs(10), &mut log, |m| m.contains("STOPPING=1"));
    let mut child = child;
    let st = child.wait().unwrap();
    assert!(st.success(), "supervisor exited with {st}: {}", s.log_text());
    assert!(children(sup).is_empty());
    assert!(!alive(worker), "worker {worker} outlived the supervisor");
}

fn children_restart(fx: &Fixture) {
    let s = session(fx, "faults");
    let child = start(&s, &[]);
    let sup = child.id();
    let ready = |role: &str| wait_for(Duration::from_secs(60), role, || pid_of(sup, role));
    let (m, a, w) = (ready("monitor"), ready("agent"), ready("worker"));
    wait_for(Duration::from_secs(30), "all ready", || s.log_text().contains("all children ready").then_some(()));

    // The worker dies: it and its agent come back, the monitor stays.
    kill(Pid::from_raw(w as i32), Signal::SIGKILL).unwrap();
    let w2 = wait_for(Duration::from_secs(30), "a new worker", || pid_of(sup, "worker").filter(|p| *p != w));
    let a2 = wait_for(Duration::from_secs(30), "a new agent", || pid_of(sup, "agent").filter(|p| *p != a));
    assert!(!alive(a), "the old agent {a} survived its worker");
    assert_eq!(pid_of(sup, "monitor"), Some(m));
    let log = s.log_text();
    assert!(log.contains("child exited; restarting after backoff") && log.contains("restart_in_ms"), "{log}");

    // The agent dies: its worker goes with it.
    kill(Pid::from_raw(a2 as i32), Signal::SIGKILL).unwrap();
    wait_for(Duration::from_secs(30), "a third worker", || pid_of(sup, "worker").filter(|p| *p != w2));
    // The second failure in a row waits longer (backoff grows).
    let delays: Vec<u64> = s
        .log_text()
        .lines()
        .filter_map(|l| l.split("restart_in_ms=").nth(1)?.split_whitespace().next()?.parse().ok())
        .collect();
    // One failure of a pair counts once (the sibling stopped on purpose does
    // not count again), and the second failure waits longer than the first.
    assert_eq!(delays.len(), 2, "{delays:?}\n{}", s.log_text());
    assert!(delays[1] > delays[0], "{delays:?}");
    assert!(s.log_text().contains("sibling exited"), "{}", s.log_text());

    // The monitor dies: only it restarts.
    let (a3, w3) = (pid_of(sup, "agent").unwrap(), pid_of(sup, "worker").unwrap());
    kill(Pid::from_raw(m as i32), Signal::SIGKILL).unwrap();
    wait_for(Duration::from_secs(30), "a new monitor", || pid_of(sup, "monitor").filter(|p| *p != m));
    assert_eq!((pid_of(sup, "agent"), pid_of(sup, "worker")), (Some(a3), Some(w3)));
    assert!(stop(child).success(), "{}", s.log_text());
}

fn supervisor_death(fx: &Fixture) {
    let s = session(fx, "orphans");
    let mut child = start(&s, &[]);
    let sup = child.id();
    for role in ["monitor", "agent", "worker"] {
        wait_for(Duration::from_secs(60), role, || pid_of(sup, role));
    }
    let kids: Vec<u32> = children(sup).into_iter().map(|(p, _)| p).collect();
    kill(Pid::from_raw(sup as i32), Signal::SIGKILL).unwrap();
    let _ = child.wait();
    let t = Instant::now();
    wait_for(Duration::from_secs(2), "every child to die with the supervisor", || {
        kids.iter().all(|p| !alive(*p)).then_some(())
    });
    eprintln!("children gone {:?} after the supervisor was killed", t.elapsed());
}

fn second_supervisor(fx: &Fixture) {
    let s = session(fx, "twice");
    let first = start(&s, &[]);
    let sup = first.id();
    wait_for(Duration::from_secs(60), "the monitor", || pid_of(sup, "monitor"));
    let out = Command::new(env!("CARGO_BIN_EXE_gsyncd"))
        .args(["--config-dir"])
        .arg(s.dir.path())
        .args(["supervise", &s.name])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(8), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("session is already running (pid {sup}")), "{err}");
    let pidfile = s.dir.path().join("run/monitor.pid");
    assert_eq!(fs::read_to_string(&pidfile).unwrap(), format!("{sup}\n"));
    assert!(stop(first).success());
    assert!(!pidfile.exists(), "the pid file outlived the supervisor");
}

fn sighup_reload(fx: &Fixture) {
    let s = session(fx, "reload");
    let child = start(&s, &[]);
    let sup = child.id();
    wait_for(Duration::from_secs(60), "all ready", || s.log_text().contains("all children ready").then_some(()));
    let (m, a, w) = (pid_of(sup, "monitor").unwrap(), pid_of(sup, "agent").unwrap(), pid_of(sup, "worker").unwrap());
    let set = |name: &str, value: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_gsyncd"))
            .arg("--config-dir")
            .arg(s.dir.path())
            .args(["config", "set", &s.name, name, value])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let hup = || kill(Pid::from_raw(sup as i32), Signal::SIGHUP).unwrap();

    // A worker-only option: the worker (and, as a pair, its agent) restart;
    // the monitor does not.
    set("sync-jobs", "5");
    hup();
    let w2 = wait_for(Duration::from_secs(30), "a new worker", || pid_of(sup, "worker").filter(|p| *p != w));
    assert_eq!(pid_of(sup, "monitor"), Some(m), "the monitor restarted for a worker option");
    // The pair restarts together.
    wait_for(Duration::from_secs(30), "a new agent", || pid_of(sup, "agent").filter(|p| *p != a));

    // A checkpoint is read while running: nothing restarts.
    let (a2, w2) = (pid_of(sup, "agent").unwrap(), pid_of(sup, "worker").unwrap_or(w2));
    set("checkpoint", "now");
    hup();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!((pid_of(sup, "monitor"), pid_of(sup, "agent"), pid_of(sup, "worker")), (Some(m), Some(a2), Some(w2)));
    let log = s.log_text();
    assert!(log.contains("options changed; restarting"), "{log}");
    // A restart for new options is not a failure.
    assert!(!log.contains("restarting after backoff"), "{log}");
    assert!(stop(child).success(), "{}", s.log_text());
}

/// Mounts the primary at `at` and kills its glusterfs client, as a worker
/// killed with SIGKILL would leave it.
fn stale_mount(fx: &Fixture, at: &Path) {
    let (p, _) = fx.pair(Shape::Single);
    fs::create_dir_all(at).unwrap();
    let st = Command::new("mount")
        .args(["-t", "glusterfs"])
        .arg(format!("{}:/{}", support::cluster::brick_host(), p.name))
        .arg(at)
        .status()
        .unwrap();
    assert!(st.success(), "cannot mount at {}", at.display());
    let client = wait_for(Duration::from_secs(10), "the glusterfs client", || {
        let o = Command::new("pgrep").args(["-f", &format!("glusterfs.* {}$", at.display())]).output().ok()?;
        String::from_utf8_lossy(&o.stdout).lines().next()?.trim().parse::<i32>().ok()
    });
    kill(Pid::from_raw(client), Signal::SIGKILL).unwrap();
    wait_for(Duration::from_secs(10), "the mount to go stale", || {
        (fs::metadata(at).err()?.raw_os_error() == Some(nix::libc::ENOTCONN)).then_some(())
    });
}

fn mounted(at: &Path) -> bool {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(at.to_str().unwrap()))
}

fn stale_mounts(fx: &Fixture) {
    let s = session(fx, "sweep");
    let mnt = s.dir.path().join("run/mnt");
    // pid 4194305 is above the kernel's limit: its owner is surely gone.
    let a = mnt.join("bricks-b1.4194305");
    stale_mount(fx, &a);
    let gsyncd = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_gsyncd")).arg("--config-dir").arg(s.dir.path()).args(args).output().unwrap()
    };
    // A dry run reports and leaves it.
    let o = gsyncd(&["cleanup-mounts", "sweep", "--dry-run"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("stale glusterfs mount (dry run)"), "{o:?}");
    assert!(mounted(&a));
    // The supervisor sweeps it when it starts.
    let child = start(&s, &[]);
    wait_for(Duration::from_secs(30), "the start-up sweep", || (!mounted(&a) && !a.exists()).then_some(()));
    assert!(stop(child).success(), "{}", s.log_text());
    assert!(s.log_text().contains("stale glusterfs mount: unmounted and removed"), "{}", s.log_text());
    // And cleanup-mounts does the same on demand, leaving a live mount alone.
    let b = mnt.join("bricks-b2.4194305");
    stale_mount(fx, &b);
    let live = mnt.join(format!("bricks-live.{}", std::process::id()));
    fs::create_dir_all(&live).unwrap();
    let (p, _) = fx.pair(Shape::Single);
    let st = Command::new("mount")
        .args(["-t", "glusterfs"])
        .arg(format!("{}:/{}", support::cluster::brick_host(), p.name))
        .arg(&live)
        .status()
        .unwrap();
    assert!(st.success());
    let o = gsyncd(&["cleanup-mounts", "sweep"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!mounted(&b) && !b.exists());
    assert!(mounted(&live) && fs::read_dir(&live).is_ok(), "the live mount was touched");
    let o = gsyncd(&["cleanup-mounts", "sweep"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "nothing to clean up\n");
    let _ = Command::new("umount").arg(&live).status();
}
