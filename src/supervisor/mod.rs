//! The supervisor: the main process of gsyncd@<session>.service. It holds
//! the pid file, turns signals into events through signal-hook's self-pipe,
//! forks and execs the monitor and, per local primary brick, a changelog
//! agent and a sync worker wired by socketpairs, restarts them with backoff,
//! and is the only process that talks to systemd.

pub mod backoff;
pub mod pidfile;

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use tracing::{error, info, warn};

use crate::cli::SuperviseArgs;
use crate::config::{self, Config, OptionSpec, Value};
use crate::proto::ctl::{self, Plan, PlannedBrick, ToChild, ToSupervisor};
use crate::proto::status::{self, BrickStatus};
use crate::proto::{self, Role};
use backoff::Backoff;
use pidfile::PidFile;

/// How long children get to exit after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long children restarted for new options get to stop.
pub const RELOAD_GRACE: Duration = Duration::from_secs(2);
/// How long a new child gets to send its hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a write to a child's ctl socket may block.
pub const CTL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error(transparent)]
    PidFile(#[from] pidfile::PidFileError),
    #[error("cannot set up signal handling")]
    Signals(#[source] std::io::Error),
    #[error("cannot start {what}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// What a child process is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Monitor,
    Agent(Vec<u8>),
    Worker(Vec<u8>),
}

impl Kind {
    fn role(&self) -> Role {
        match self {
            Kind::Monitor => Role::Monitor,
            Kind::Agent(_) => Role::Agent,
            Kind::Worker(_) => Role::Worker,
        }
    }
    fn brick(&self) -> Option<&[u8]> {
        match self {
            Kind::Monitor => None,
            Kind::Agent(b) | Kind::Worker(b) => Some(b),
        }
    }
    fn label(&self) -> String {
        match self.brick() {
            None => self.role().to_string(),
            Some(b) => format!("{} {}", self.role(), String::from_utf8_lossy(b)),
        }
    }
}

/// Events for the main loop.
#[derive(Debug)]
enum Event {
    Signal(i32),
    Msg { id: u64, msg: ToSupervisor },
    Closed { id: u64, error: Option<String> },
}

/// A running child process.
#[derive(Debug)]
struct Proc {
    id: u64,
    pid: Pid,
    ctl: UnixStream,
    started: Instant,
    last_heartbeat: Instant,
    ready: bool,
    phase: String,
    /// The error it said it stops with.
    error: Option<String>,
    /// Its ctl channel reached its end: every message it sent was read.
    closed: bool,
    /// It exited (the status) before its channel was read to the end: the
    /// exit is handled when it is, so that the error it sent just before
    /// exiting is not lost to the race between SIGCHLD and its reader.
    exited: Option<(String, Instant)>,
}

/// How long an exit waits for the child's last messages.
const LAST_WORDS: Duration = Duration::from_millis(500);

/// The lifecycle of a supervised unit (the monitor, or a brick's pair).
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Initializing,
    Running,
    /// Waiting to restart.
    Retrying {
        at: Instant,
    },
    /// Restarting at the backoff cap: needs a human.
    Faulty {
        at: Instant,
    },
    Stopping,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Initializing => "initializing",
            State::Running => "running",
            State::Retrying { .. } => "retrying",
            State::Faulty { .. } => "faulty",
            State::Stopping => "stopping",
        }
    }
    fn restart_at(&self) -> Option<Instant> {
        match self {
            State::Retrying { at } | State::Faulty { at } => Some(*at),
            _ => None,
        }
    }
}

/// A supervised unit: the monitor (one process) or a brick (agent + worker,
/// started and restarted together).
#[derive(Debug)]
struct Unit {
    kinds: Vec<Kind>,
    procs: BTreeMap<Kind, Proc>,
    state: State,
    backoff: Backoff,
    started: Instant,
    restarts: u64,
    /// A brick's last status (as its worker reported it, with what the
    /// supervisor knows: restarts, the last failure).
    status: BrickStatus,
}

/// Everything the main loop owns.
struct Supervisor {
    config_dir: PathBuf,
    session: String,
    cfg: Config,
    exe: PathBuf,
    events: Sender<Event>,
    next_id: u64,
    monitor: Unit,
    bricks: BTreeMap<Vec<u8>, Unit>,
    /// Units of bricks that left the plan, until their processes are gone
    /// (SIGKILLed after a grace period): a brick is not started again while
    /// its old processes live.
    draining: Vec<(Vec<u8>, Unit, Instant)>,
    plan: Option<Plan>,
    heartbeat: Duration,
    watchdog: Option<Duration>,
    last_watchdog: Instant,
    ready_sent: bool,
    status: String,
    stopping: bool,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn notify(states: &[sd_notify::NotifyState<'_>]) {
    // Outside systemd (no NOTIFY_SOCKET) this does nothing.
    if let Err(e) = sd_notify::notify(states) {
        warn!(error = %e, "cannot notify systemd");
    }
}

fn config_int(cfg: &Config, name: &str, default: i64) -> i64 {
    config::schema::spec(name).and_then(|s| cfg.raw(s).as_int()).unwrap_or(default)
}

/// The options each role depends on: a change restarts only those children.
fn fingerprint(cfg: &Config, role: Role) -> Vec<(String, Value)> {
    const MONITOR: &[&str] = &[
        "primary",
        "secondary",
        "gluster-command-dir",
        "gluster-command",
        "gluster-cli-options",
        "glusterd-workdir",
        "use-meta-volume",
        "meta-volume-mnt",
        "replica-failover-interval",
        "metrics-listen",
        "state-dir",
        "run-dir",
    ];
    // Only the monitor uses these: a change restarts it, not the workers.
    const MONITOR_ONLY: &[&str] = &["metrics-listen"];
    const AGENT: &[&str] =
        &["primary", "change-interval", "changelog-batch-size", "working-dir", "changelog-archive-format", "state-dir"];
    // Read again while running, so no restart for them.
    const DYNAMIC: &[&str] = &["checkpoint", "log-rsync-performance"];
    let wanted = |o: &OptionSpec| match role {
        Role::Monitor => MONITOR.contains(&o.name),
        Role::Agent => AGENT.contains(&o.name),
        _ => !DYNAMIC.contains(&o.name) && !MONITOR_ONLY.contains(&o.name),
    };
    config::OPTIONS.iter().filter(|o| o.is_live() && wanted(o)).map(|o| (o.name.to_owned(), cfg.raw(o))).collect()
}

impl Unit {
    fn new(kinds: Vec<Kind>, seed: u64) -> Unit {
        Unit {
            kinds,
            procs: BTreeMap::new(),
            state: State::Initializing,
            backoff: Backoff::new(seed),
            started: Instant::now(),
            restarts: 0,
            status: BrickStatus::default(),
        }
    }
    fn label(&self) -> String {
        match self.kinds.first().and_then(Kind::brick) {
            Some(b) => format!("brick {}", String::from_utf8_lossy(b)),
            None => "monitor".to_owned(),
        }
    }
    fn all_ready(&self) -> bool {
        !self.procs.is_empty() && self.procs.len() == self.kinds.len() && self.procs.values().all(|p| p.ready)
    }
}

/// Reads frames from one child's ctl socket and forwards them.
fn reader(id: u64, mut s: UnixStream, tx: &Sender<Event>, peer: &str) {
    loop {
        match proto::recv::<ToSupervisor>(&mut s, ctl::MAX_CTL_FRAME, peer) {
            Ok(Some(msg)) => {
                if tx.send(Event::Msg { id, msg }).is_err() {
                    return;
                }
            }
            Ok(None) => {
                let _ = tx.send(Event::Closed { id, error: None });
                return;
            }
            Err(e) => {
                let _ = tx.send(Event::Closed { id, error: Some(e.to_string()) });
                return;
            }
        }
    }
}

impl Supervisor {
    /// Starts one child process with its ctl socket at fd 3 and, for a
    /// brick pair, the shared changelog socket end at fd 4.
    fn spawn(&mut self, kind: &Kind, changelog: Option<&OwnedFd>) -> Result<Proc, SuperviseError> {
        let label = kind.label();
        let spawn_err = |source| SuperviseError::Spawn { what: label.clone(), source };
        let (ours, theirs) = UnixStream::pair().map_err(spawn_err)?;
        let theirs = OwnedFd::from(theirs);
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--config-dir").arg(&self.config_dir);
        match kind {
            Kind::Monitor => cmd.args(["monitor", &self.session]),
            Kind::Agent(b) => cmd.args(["agent", &self.session, "--brick"]).arg(std::ffi::OsStr::from_bytes(b)),
            Kind::Worker(b) => cmd.args(["worker", &self.session, "--brick"]).arg(std::ffi::OsStr::from_bytes(b)),
        };
        cmd.env(ctl::SUPERVISOR_PID_ENV, std::process::id().to_string())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null());
        let mut fds: Vec<(&OwnedFd, i32)> = vec![(&theirs, ctl::CTL_FD)];
        if let Some(c) = changelog {
            fds.push((c, ctl::CHANGELOG_FD));
        }
        let child = crate::sys::spawn_with_fds(&mut cmd, &fds).map_err(spawn_err)?;
        drop(theirs);
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        // Reaped by waitpid(-1) on SIGCHLD, not through `Child`.
        drop(child);
        let mut s = ours;
        let id = self.next_id;
        self.next_id += 1;
        // Bounded: a child that hangs before its hello must not hang the
        // supervisor; writes too, so a stopped child cannot block shutdown.
        s.set_read_timeout(Some(HELLO_TIMEOUT)).map_err(spawn_err)?;
        s.set_write_timeout(Some(CTL_WRITE_TIMEOUT)).map_err(spawn_err)?;
        let hello = proto::handshake(&mut s, Role::Supervisor, kind.role(), &label).and_then(|_| {
            let ms = u64::try_from(self.heartbeat.as_millis()).unwrap_or(u64::MAX);
            proto::send(&mut s, &ToChild::Config { heartbeat_ms: ms }, ctl::MAX_CTL_FRAME, &label)
        });
        if let Err(e) = hello {
            // Killed, it is reaped on SIGCHLD and the unit restarts with backoff.
            warn!(child = %label, pid = pid.as_raw(), error = %e, "child failed its hello; killing it");
            let _ = kill(pid, Signal::SIGKILL);
        }
        s.set_read_timeout(None).map_err(spawn_err)?;
        let reader_stream = s.try_clone().map_err(spawn_err)?;
        let tx = self.events.clone();
        let peer = label.clone();
        std::thread::Builder::new()
            .name(format!("ctl {label}"))
            .spawn(move || reader(id, reader_stream, &tx, &peer))
            .map_err(spawn_err)?;
        info!(child = %label, pid = pid.as_raw(), "started {label} (pid {pid})");
        let now = Instant::now();
        Ok(Proc {
            id,
            pid,
            ctl: s,
            started: now,
            last_heartbeat: now,
            ready: false,
            phase: "starting".into(),
            error: None,
            closed: false,
            exited: None,
        })
    }

    /// Starts every process of a unit (a brick's agent and worker share a
    /// changelog socketpair).
    fn start_unit(&mut self, key: Option<&[u8]>) {
        let kinds = match key {
            None => self.monitor.kinds.clone(),
            Some(b) => match self.bricks.get(b) {
                Some(u) => u.kinds.clone(),
                None => return,
            },
        };
        let pair = if kinds.len() == 2 {
            UnixStream::pair().ok().map(|(a, b)| (OwnedFd::from(a), OwnedFd::from(b)))
        } else {
            None
        };
        let mut procs = BTreeMap::new();
        let mut failed = None;
        for (i, k) in kinds.iter().enumerate() {
            let cl = pair.as_ref().map(|(a, b)| if i == 0 { a } else { b });
            match self.spawn(k, cl) {
                Ok(p) => {
                    procs.insert(k.clone(), p);
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let unit = match key {
            None => &mut self.monitor,
            Some(b) => match self.bricks.get_mut(b) {
                Some(u) => u,
                None => return,
            },
        };
        unit.procs = procs;
        unit.started = Instant::now();
        unit.state = State::Initializing;
        // The reference's reset_on_worker_start.
        unit.status.worker_status = status::INITIALIZING.into();
        unit.status.crawl_status = status::NA.into();
        unit.status.secondary_node = status::NA.into();
        (unit.status.entry, unit.status.data, unit.status.meta) = (0, 0, 0);
        if let Some(e) = failed {
            error!(unit = %unit.label(), error = %format!("{:#}", anyhow::Error::from(e)), "cannot start");
            for p in unit.procs.values() {
                let _ = kill(p.pid, Signal::SIGKILL);
            }
            if unit.procs.is_empty() {
                // Nothing will exit to be reaped: schedule the retry here.
                let now = Instant::now();
                let delay = unit.backoff.on_failure(now, now);
                unit.restarts += 1;
                let at = now + delay;
                unit.state = if unit.backoff.at_cap() { State::Faulty { at } } else { State::Retrying { at } };
            }
        }
        if let Some(b) = key {
            self.relay_status(b);
        }
        let first_start = key.and_then(|b| self.bricks.get(b)).is_some_and(|u| u.restarts == 0);
        if !self.ready_sent && first_start {
            // Slow first starts (mounts, ssh) may exceed TimeoutStartSec;
            // a brick that keeps failing does not keep extending it.
            let budget = u32::try_from(config_int(&self.cfg, "connection-timeout", 60) + 30).unwrap_or(90);
            notify(&[sd_notify::NotifyState::ExtendTimeoutUsec(budget.saturating_mul(1_000_000))]);
        }
    }

    fn unit_of(&mut self, id: u64) -> Option<(Option<Vec<u8>>, Kind)> {
        if let Some((k, _)) = self.monitor.procs.iter().find(|(_, p)| p.id == id) {
            return Some((None, k.clone()));
        }
        for (b, u) in &self.bricks {
            if let Some((k, _)) = u.procs.iter().find(|(_, p)| p.id == id) {
                return Some((Some(b.clone()), k.clone()));
            }
        }
        None
    }

    fn unit_mut(&mut self, key: Option<&[u8]>) -> Option<&mut Unit> {
        match key {
            None => Some(&mut self.monitor),
            Some(b) => self.bricks.get_mut(b),
        }
    }

    fn on_msg(&mut self, id: u64, msg: ToSupervisor) {
        let Some((key, kind)) = self.unit_of(id) else { return };
        let Some(unit) = self.unit_mut(key.as_deref()) else { return };
        let Some(p) = unit.procs.get_mut(&kind) else { return };
        p.last_heartbeat = Instant::now();
        let monitor_ready = kind == Kind::Monitor && msg == ToSupervisor::Ready;
        match msg {
            ToSupervisor::Heartbeat => {}
            ToSupervisor::Phase(ph) => {
                info!(child = %kind.label(), phase = %ph, "{}: {ph}", kind.label());
                p.phase = ph;
            }
            ToSupervisor::Ready => {
                p.ready = true;
                p.phase = "ready".into();
                info!(child = %kind.label(), "{} ready", kind.label());
                if unit.all_ready() && unit.state == State::Initializing {
                    unit.state = State::Running;
                }
            }
            ToSupervisor::Failed(e) => {
                warn!(child = %kind.label(), phase = %p.phase, error = %e, "{} stops with an error: {e}", kind.label());
                p.error = Some(e);
            }
            ToSupervisor::Fatal(reason) => {
                error!(child = %kind.label(), reason = %reason, "{} stops and needs attention: {reason}", kind.label());
                p.error = Some(reason.clone());
                p.phase = format!("fatal: {reason}");
            }
            ToSupervisor::Plan(plan) => self.apply_plan(plan),
            ToSupervisor::Status(st) => {
                let old = std::mem::replace(&mut unit.status, *st);
                // What the worker cannot know about itself.
                unit.status.restarts = unit.restarts;
                if unit.status.last_error.is_empty() {
                    unit.status.last_error = old.last_error;
                    unit.status.last_error_time = old.last_error_time;
                    unit.status.failed_phase = old.failed_phase;
                }
                if let Some(b) = key {
                    self.relay_status(&b);
                }
            }
        }
        if monitor_ready {
            // A (re)started monitor learns every brick's status.
            let keys: Vec<Vec<u8>> = self.bricks.keys().cloned().collect();
            for b in keys {
                self.relay_status(&b);
            }
        }
        self.update_status();
    }

    /// Starts an agent and a worker for a brick of the plan.
    fn add_brick(&mut self, b: &[u8]) {
        let seed = b.iter().fold(self.next_id ^ 0x9e37, |h, x| h.rotate_left(5) ^ u64::from(*x));
        let unit = Unit::new(vec![Kind::Agent(b.to_vec()), Kind::Worker(b.to_vec())], seed);
        self.bricks.insert(b.to_vec(), unit);
        self.start_unit(Some(b));
    }

    /// Sends a brick's status to the monitor, which writes its file.
    fn relay_status(&mut self, brick: &[u8]) {
        let Some(u) = self.bricks.get_mut(brick) else { return };
        u.status.restarts = u.restarts;
        u.status.updated = unix_now();
        let msg = ToChild::BrickStatus { brick: brick.to_vec(), status: Box::new(u.status.clone()) };
        if let Some(p) = self.monitor.procs.get_mut(&Kind::Monitor)
            && p.ready
        {
            let _ = proto::send(&mut p.ctl, &msg, ctl::MAX_CTL_FRAME, "monitor");
        }
    }

    fn apply_plan(&mut self, plan: Plan) {
        if self.plan.as_ref() == Some(&plan) {
            return;
        }
        info!(bricks = plan.bricks.len(), "worker plan");
        let wanted: Vec<&PlannedBrick> = plan.bricks.iter().collect();
        let gone: Vec<Vec<u8>> =
            self.bricks.keys().filter(|b| !wanted.iter().any(|w| &w.path == *b)).cloned().collect();
        for b in gone {
            if let Some(mut u) = self.bricks.remove(&b) {
                info!(brick = %String::from_utf8_lossy(&b), "brick left the plan; stopping its processes");
                stop_unit(&mut u);
                self.draining.push((b, u, Instant::now() + RELOAD_GRACE * 5));
            }
        }
        for w in wanted {
            if self.draining.iter().any(|(b, _, _)| *b == w.path) {
                info!(brick = %String::from_utf8_lossy(&w.path), "brick is back in the plan; starts once its old processes are gone");
                continue;
            }
            if !self.bricks.contains_key(&w.path) {
                self.add_brick(&w.path);
            }
        }
        self.plan = Some(plan);
    }

    /// A child exited: its unit's other processes are stopped and the unit
    /// restarts after its backoff.
    fn on_exit(&mut self, pid: Pid, status: &str) {
        if let Some(n) = self.draining.iter().position(|(_, u, _)| u.procs.values().any(|p| p.pid == pid)) {
            let (b, u, _) = &mut self.draining[n];
            u.procs.retain(|k, p| {
                if p.pid == pid {
                    info!(child = %k.label(), status = %status, "exited (brick left the plan)");
                }
                p.pid != pid
            });
            if u.procs.is_empty() {
                let b = b.clone();
                self.draining.remove(n);
                let wanted = self.plan.as_ref().is_some_and(|p| p.bricks.iter().any(|w| w.path == b));
                if wanted && !self.stopping {
                    self.add_brick(&b);
                }
            }
            return;
        }
        let stopping = self.stopping;
        let mut found = None;
        for key in self.unit_keys() {
            if let Some(u) = self.unit_mut(key.as_deref())
                && let Some((k, _)) = u.procs.iter().find(|(_, p)| p.pid == pid)
            {
                found = Some((key, k.clone()));
                break;
            }
        }
        let Some((key, kind)) = found else {
            // An orphan reparented to us (we are a subreaper), or a child of
            // a unit already stopped.
            return;
        };
        let Some(unit) = self.unit_mut(key.as_deref()) else { return };
        if !stopping
            && unit.state != State::Stopping
            && unit.state.restart_at().is_none()
            && let Some(p) = unit.procs.get_mut(&kind)
            && !p.closed
        {
            p.exited.get_or_insert_with(|| (status.to_owned(), Instant::now()));
            return;
        }
        self.finish_exit(key, &kind, status);
    }

    /// The keys of every unit: `None` for the monitor, then each brick.
    fn unit_keys(&self) -> Vec<Option<Vec<u8>>> {
        std::iter::once(None).chain(self.bricks.keys().cloned().map(Some)).collect()
    }

    /// A child's channel reached its end: an exit that waited for it is
    /// handled now.
    fn on_closed(&mut self, id: u64) {
        let Some((key, kind)) = self.unit_of(id) else { return };
        let Some(unit) = self.unit_mut(key.as_deref()) else { return };
        let Some(p) = unit.procs.get_mut(&kind) else { return };
        p.closed = true;
        if let Some((status, _)) = p.exited.take() {
            self.finish_exit(key, &kind, &status);
        }
    }

    /// Handles the exits that waited at least `wait` for their channel
    /// (a grandchild may hold it open).
    fn overdue_exits(&mut self, wait: Duration) {
        let now = Instant::now();
        for key in self.unit_keys() {
            let Some(u) = self.unit_mut(key.as_deref()) else { continue };
            let due: Vec<(Kind, String)> = u
                .procs
                .iter_mut()
                .filter(|(_, p)| p.exited.as_ref().is_some_and(|(_, at)| now.duration_since(*at) >= wait))
                .filter_map(|(k, p)| p.exited.take().map(|(st, _)| (k.clone(), st)))
                .collect();
            for (kind, status) in due {
                self.finish_exit(key.clone(), &kind, &status);
            }
        }
    }

    fn finish_exit(&mut self, key: Option<Vec<u8>>, kind: &Kind, status: &str) {
        let stopping = self.stopping;
        let Some(unit) = self.unit_mut(key.as_deref()) else { return };
        let Some(p) = unit.procs.remove(kind) else { return };
        if stopping || unit.state == State::Stopping {
            info!(child = %kind.label(), status = %status, "{} exited: {status}", kind.label());
            return;
        }
        if unit.state.restart_at().is_some() {
            // The sibling of a failed child, stopped on purpose: the unit's
            // failure is already counted and its restart scheduled.
            info!(child = %kind.label(), status = %status, "{} (sibling) exited: {status}", kind.label());
            return;
        }
        let now = Instant::now();
        let delay = unit.backoff.on_failure(p.started, now);
        unit.restarts += 1;
        let at = now + delay;
        unit.state = if unit.backoff.at_cap() { State::Faulty { at } } else { State::Retrying { at } };
        warn!(
            child = %kind.label(),
            status = %status,
            phase = %p.phase,
            restart_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            failures = unit.backoff.failures,
            state = unit.state.name(),
            "{} {status} while {}; restarting in {} ms ({})",
            kind.label(),
            p.phase,
            delay.as_millis(),
            unit.state.name()
        );
        // Its sibling goes too: the pair shares the changelog channel.
        for (k, sib) in &unit.procs {
            info!(child = %k.label(), pid = sib.pid.as_raw(), "stopping sibling");
            let _ = kill(sib.pid, Signal::SIGTERM);
        }
        if key.is_none() {
            unit.status.last_error = match &p.error {
                Some(e) => format!("{} {status}: {e}", kind.label()),
                None => format!("{} {status}", kind.label()),
            };
        }
        if let Some(b) = key {
            let st = &mut unit.status;
            // The reference says Faulty for both; a failure that is still
            // being retried is told apart from one at the backoff cap.
            st.worker_status =
                if matches!(unit.state, State::Faulty { .. }) { status::FAULTY } else { status::RETRYING }.into();
            st.crawl_status = status::NA.into();
            (st.entry, st.data, st.meta) = (0, 0, 0);
            st.last_error = match &p.error {
                Some(e) => format!("{} {status}: {e}", kind.label()),
                None => format!("{} {status}", kind.label()),
            };
            st.last_error_time = unix_now();
            st.failed_phase.clone_from(&p.phase);
            self.relay_status(&b);
        }
        self.update_status();
    }

    /// Starts units whose backoff elapsed, kills children that did not
    /// become ready in time, and pings the watchdog.
    fn tick(&mut self) {
        let now = Instant::now();
        let keys = self.unit_keys();
        let timeout = Duration::from_secs(u64::try_from(config_int(&self.cfg, "connection-timeout", 60)).unwrap_or(60));
        for key in keys {
            let Some(u) = self.unit_mut(key.as_deref()) else { continue };
            if let Some(at) = u.state.restart_at()
                && at <= now
            {
                if u.procs.is_empty() {
                    self.start_unit(key.as_deref());
                } else {
                    // A sibling that ignored SIGTERM until the restart time.
                    for (k, p) in &u.procs {
                        warn!(child = %k.label(), pid = p.pid.as_raw(), "sibling did not stop; killing");
                        let _ = kill(p.pid, Signal::SIGKILL);
                    }
                }
                continue;
            }
            if u.state == State::Initializing {
                for (k, p) in &u.procs {
                    if !p.ready && now.duration_since(p.started) > timeout {
                        warn!(child = %k.label(), phase = %p.phase, timeout_s = timeout.as_secs(), "not ready in time; killing");
                        let _ = kill(p.pid, Signal::SIGKILL);
                    }
                }
            }
        }
        for (_, u, deadline) in &self.draining {
            if now >= *deadline {
                for (k, p) in &u.procs {
                    warn!(child = %k.label(), pid = p.pid.as_raw(), "did not stop after its brick left the plan; killing");
                    let _ = kill(p.pid, Signal::SIGKILL);
                }
            }
        }
        if let Some(wd) = self.watchdog
            && now.duration_since(self.last_watchdog) >= wd / 2
        {
            let fresh_within = self.heartbeat * 3;
            let stale: Vec<String> = std::iter::once(&self.monitor)
                .chain(self.bricks.values())
                .flat_map(|u| u.procs.iter())
                .filter(|(_, p)| now.duration_since(p.last_heartbeat) > fresh_within)
                .map(|(k, _)| k.label())
                .collect();
            if stale.is_empty() {
                notify(&[sd_notify::NotifyState::Watchdog]);
                self.last_watchdog = now;
            } else {
                warn!(stale = %stale.join(", "), "children without heartbeat; withholding the watchdog ping");
                self.last_watchdog = now;
            }
        }
        self.update_status();
    }

    fn next_wakeup(&self) -> Duration {
        let now = Instant::now();
        let mut d = Duration::from_secs(1).min(self.heartbeat);
        for u in std::iter::once(&self.monitor).chain(self.bricks.values()) {
            if let Some(at) = u.state.restart_at() {
                d = d.min(at.saturating_duration_since(now));
            }
            for (_, at) in u.procs.values().filter_map(|p| p.exited.as_ref()) {
                d = d.min((*at + LAST_WORDS).saturating_duration_since(now));
            }
        }
        if let Some(wd) = self.watchdog {
            d = d.min((self.last_watchdog + wd / 2).saturating_duration_since(now));
        }
        d.max(Duration::from_millis(10))
    }

    fn update_status(&mut self) {
        let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
        for u in self.bricks.values() {
            *counts.entry(u.state.name()).or_default() += 1;
        }
        let faulty = counts.get("faulty").copied().unwrap_or(0);
        let parts: Vec<String> =
            counts.iter().filter(|(k, _)| **k != "faulty").map(|(k, v)| format!("{v} {k}")).collect();
        let plan = match &self.plan {
            None => "waiting for the monitor's plan".to_owned(),
            Some(_) => format!(
                "{} worker{}: {}; {faulty} faulty",
                self.bricks.len(),
                if self.bricks.len() == 1 { "" } else { "s" },
                if parts.is_empty() { "none".to_owned() } else { parts.join(", ") }
            ),
        };
        let mut status = format!("{plan}; monitor {}", self.monitor.state.name());
        // What keeps a unit failing, where `systemctl status` shows it.
        let failing = std::iter::once(&self.monitor)
            .chain(self.bricks.values())
            .find(|u| u.state.restart_at().is_some() && !u.status.last_error.is_empty());
        if let Some(u) = failing {
            let e = &u.status.last_error;
            let cut = e.char_indices().nth(200).map_or(e.len(), |(i, _)| i);
            status.push_str(&format!("; last error: {}", &e[..cut]));
        }
        if status != self.status {
            info!(status = %status, "status: {status}");
            notify(&[sd_notify::NotifyState::Status(&status)]);
            self.status = status;
        }
        if !self.ready_sent
            && self.plan.is_some()
            && self.monitor.state == State::Running
            && self.bricks.values().all(|u| u.state == State::Running)
        {
            self.ready_sent = true;
            info!("all children ready");
            notify(&[sd_notify::NotifyState::Ready]);
        }
    }

    /// SIGHUP: reload the session; restart the children whose options changed.
    fn reload(&mut self) {
        // RELOADING=1 ... READY=1 frames a reload for systemd; before the
        // first READY=1 the unit is still starting and there is none.
        if self.ready_sent {
            notify(&[
                sd_notify::NotifyState::Reloading,
                sd_notify::NotifyState::monotonic_usec_now().unwrap_or(sd_notify::NotifyState::Reloading),
            ]);
        }
        match Config::load(&self.config_dir, &self.session) {
            Err(e) => error!(error = %e, "reload failed; keeping the running configuration"),
            Ok(new) => {
                let changed: Vec<Role> = [Role::Monitor, Role::Agent, Role::Worker]
                    .into_iter()
                    .filter(|r| fingerprint(&self.cfg, *r) != fingerprint(&new, *r))
                    .collect();
                // A restart for new options is not a failure: the unit is
                // stopped and scheduled at once, without backoff.
                let at = Instant::now() + RELOAD_GRACE;
                for u in std::iter::once(&mut self.monitor).chain(self.bricks.values_mut()) {
                    if u.kinds.iter().any(|k| changed.contains(&k.role())) && !u.procs.is_empty() {
                        info!(unit = %u.label(), "options changed; restarting");
                        for p in u.procs.values() {
                            let _ = kill(p.pid, Signal::SIGTERM);
                        }
                        u.state = State::Retrying { at };
                    }
                }
                self.cfg = new;
            }
        }
        for p in self.monitor.procs.values_mut() {
            let _ = proto::send(&mut p.ctl, &ToChild::Replan, ctl::MAX_CTL_FRAME, "monitor");
        }
        if self.ready_sent {
            notify(&[sd_notify::NotifyState::Ready]);
        }
    }

    /// Reaps every exited child.
    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => self.on_exit(pid, &format!("exit {code}")),
                Ok(WaitStatus::Signaled(pid, sig, _)) => self.on_exit(pid, &format!("killed by {sig}")),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    fn all_pids(&self) -> Vec<Pid> {
        std::iter::once(&self.monitor)
            .chain(self.bricks.values())
            .chain(self.draining.iter().map(|(_, u, _)| u))
            .flat_map(|u| u.procs.values().map(|p| p.pid))
            .collect()
    }

    /// SIGTERM/SIGINT: tell children to stop, wait, then SIGKILL leftovers.
    fn shutdown(&mut self, rx: &Receiver<Event>) {
        self.stopping = true;
        // Exits that waited for their channel: nothing is restarted now.
        self.overdue_exits(Duration::ZERO);
        notify(&[sd_notify::NotifyState::Stopping, sd_notify::NotifyState::Status("stopping")]);
        info!("stopping children");
        for u in std::iter::once(&mut self.monitor).chain(self.bricks.values_mut()) {
            stop_unit(u);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while !self.all_pids().is_empty() && Instant::now() < deadline {
            self.reap();
            let _ = rx.recv_timeout(Duration::from_millis(50));
        }
        let left = self.all_pids();
        for pid in &left {
            warn!(pid = pid.as_raw(), "did not stop in time; killing");
            let _ = kill(*pid, Signal::SIGKILL);
        }
        kill_process_group_except_self();
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.all_pids().is_empty() && Instant::now() < deadline {
            self.reap();
            std::thread::sleep(Duration::from_millis(20));
        }
        info!("stopped");
    }
}

fn stop_unit(u: &mut Unit) {
    u.state = State::Stopping;
    for (k, p) in &mut u.procs {
        let _ = proto::send(&mut p.ctl, &ToChild::Shutdown, ctl::MAX_CTL_FRAME, &k.label());
        let _ = kill(p.pid, Signal::SIGTERM);
    }
}

/// SIGKILLs every other process of our process group (grandchildren that
/// outlived their parents), when we lead the group.
fn kill_process_group_except_self() {
    let me = nix::unistd::getpid();
    if nix::unistd::getpgrp() != me {
        return;
    }
    let Ok(rd) = std::fs::read_dir("/proc") else { return };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let pid = Pid::from_raw(pid);
        if pid != me && nix::unistd::getpgid(Some(pid)).ok() == Some(me) {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
}

/// Removes mounts and mountpoints under the run dir that a dead process
/// left behind (each one is logged).
fn sweep_stale_mounts(run_dir: &Path) {
    let found = crate::gluster::mount::sweep(&[crate::gluster::mount::SweepRoot::all(run_dir.join("mnt"))], false);
    if !found.is_empty() {
        info!(count = found.len(), "swept stale mounts left by an earlier run");
    }
}

fn heartbeat_for(watchdog: Option<Duration>) -> Duration {
    match watchdog {
        Some(wd) => (wd / 8).clamp(Duration::from_millis(100), Duration::from_secs(5)),
        None => Duration::from_secs(5),
    }
}

/// `gsyncd supervise <session>`.
pub fn run(config_dir: &Path, args: &SuperviseArgs) -> anyhow::Result<()> {
    let cfg = Config::load(config_dir, &args.session)?;
    for n in &cfg.file.notices {
        warn!(note = %n, "session file");
    }
    let pid_path = match config::schema::spec("pid-file").map(|s| cfg.expanded(s, &config::no_extra)) {
        Some(Value::Str(p)) => PathBuf::from(p),
        _ => anyhow::bail!("pid-file option is missing from the schema"),
    };
    let run_dir = pid_path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/run/gsyncd"));
    let _pid = PidFile::acquire(&pid_path)?;
    // Lead a process group so that kill(-pgid) reaches the whole tree (under
    // systemd we already lead a session, and this fails harmlessly).
    let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
    // Orphaned grandchildren come to us, so they are reaped and killed.
    let _ = nix::sys::prctl::set_child_subreaper(true);

    // Signals before any thread: signal-hook writes them to a self-pipe that
    // a thread turns into events.
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGCHLD]).map_err(SuperviseError::Signals)?;
    let (tx, rx) = mpsc::channel();
    let stx = tx.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for s in signals.forever() {
                if stx.send(Event::Signal(s)).is_err() {
                    return;
                }
            }
        })
        .map_err(SuperviseError::Signals)?;

    sweep_stale_mounts(&run_dir);

    let watchdog = sd_notify::watchdog_enabled();
    let exe = std::env::current_exe().map_err(|source| SuperviseError::Spawn { what: "children".into(), source })?;
    let mut sup = Supervisor {
        config_dir: config_dir.to_owned(),
        session: args.session.clone(),
        cfg,
        exe,
        events: tx,
        next_id: 1,
        monitor: Unit::new(vec![Kind::Monitor], u64::from(std::process::id())),
        bricks: BTreeMap::new(),
        draining: Vec::new(),
        plan: None,
        heartbeat: heartbeat_for(watchdog),
        watchdog,
        last_watchdog: Instant::now(),
        ready_sent: false,
        status: String::new(),
        stopping: false,
    };
    info!(pid_file = %pid_path.display(), watchdog_ms = watchdog.map(|w| w.as_millis() as u64), "supervisor starting");
    sup.start_unit(None);
    sup.update_status();
    loop {
        match rx.recv_timeout(sup.next_wakeup()) {
            Ok(Event::Signal(SIGTERM | SIGINT)) => {
                sup.shutdown(&rx);
                return Ok(());
            }
            Ok(Event::Signal(SIGHUP)) => sup.reload(),
            Ok(Event::Signal(SIGCHLD)) => sup.reap(),
            Ok(Event::Signal(_)) => {}
            Ok(Event::Msg { id, msg }) => sup.on_msg(id, msg),
            Ok(Event::Closed { id, error }) => {
                if let Some((_, kind)) = sup.unit_of(id) {
                    match error {
                        Some(e) => warn!(child = %kind.label(), error = %e, "ctl channel broken"),
                        None => info!(child = %kind.label(), "ctl channel closed"),
                    }
                }
                // SIGCHLD tells when it is gone; make sure it is.
                sup.reap();
                sup.on_closed(id);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
        sup.reap();
        sup.overdue_exits(LAST_WORDS);
        sup.tick();
    }
}
