//! The monitor: reads this node's glusterd UUID and the primary volume's
//! topology, and tells the supervisor which bricks need an agent and a
//! worker here; plans again on request (SIGHUP) and when the bricks change.
//! It also keeps the session's status files ([`statusfile`]): `monitor.status`
//! and one `brick_<quoted path>.status` per brick, from the statuses the
//! workers report (relayed by the supervisor), and serves the same on its
//! status socket ([`socket`]) for `gsyncd status`, and, with
//! `metrics-listen`, as Prometheus metrics ([`metrics`]).

pub mod metrics;
pub mod socket;
pub mod statusfile;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use tracing::{info, warn};

use crate::cli::MonitorArgs;
use crate::config::{self, Config};
use crate::gluster::cli::{self, GlusterCliError};
use crate::gluster::uuid::Uuid;
use crate::gluster::volinfo;
use crate::proto::Role;
use crate::proto::ctl::{Link, Plan, PlannedBrick, ToChild, ToSupervisor};

/// How often the topology is read again without being asked.
pub const REPLAN_EVERY: Duration = Duration::from_secs(30);
/// The topology is asked of glusterd this often even when its volume file
/// did not change.
const ASK_ANYWAY: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("option primary is not set: set it with `gsyncd config set SESSION primary VOLUME`")]
    NoPrimary,
    #[error(transparent)]
    Gluster(#[from] GlusterCliError),
}

fn opt(cfg: &Config, name: &str) -> String {
    config::schema::spec(name).map(|s| cfg.expanded(s, &config::no_extra).to_string()).unwrap_or_default()
}

/// `gluster --xml volume info <primary>` with the session's CLI settings.
fn volume_info(cfg: &Config, primary: &str) -> Result<volinfo::Volume, MonitorError> {
    let command = opt(cfg, "gluster-command");
    let bin = if command.contains('/') {
        PathBuf::from(&command)
    } else {
        Path::new(&opt(cfg, "gluster-command-dir")).join(&command)
    };
    let cli_options = opt(cfg, "gluster-cli-options");
    Ok(cli::volume_info(&bin, &cli_options.split_whitespace().collect::<Vec<_>>(), primary)?)
}

/// The bricks of `vol` served by `node`.
pub fn plan_for(vol: &volinfo::Volume, node: &Uuid) -> Plan {
    let bricks = vol
        .bricks
        .iter()
        .enumerate()
        .filter(|(_, b)| b.host_uuid == *node)
        .map(|(i, b)| PlannedBrick {
            path: b.path.clone(),
            subvol: u32::try_from(vol.subvolume_of(i)).unwrap_or(u32::MAX),
        })
        .collect();
    Plan { bricks }
}

fn make_plan(cfg: &Config) -> Result<Plan, MonitorError> {
    let primary = opt(cfg, "primary");
    if primary.is_empty() {
        return Err(MonitorError::NoPrimary);
    }
    let node = cli::local_node_uuid(Path::new(&opt(cfg, "glusterd-workdir")))?;
    let vol = volume_info(cfg, &primary)?;
    if !vol.is_started() {
        warn!(volume = %primary, status = %vol.status, "primary volume is not started");
    }
    Ok(plan_for(&vol, &node))
}

pub fn run(config_dir: &Path, args: &MonitorArgs) -> anyhow::Result<()> {
    let link = Link::connect(Role::Monitor)?;
    let mut cfg = match Config::load(config_dir, &args.session) {
        Ok(c) => c,
        Err(e) => {
            let _ = link.send(&ToSupervisor::Fatal(e.to_string()));
            return Err(e.into());
        }
    };
    link.send(&ToSupervisor::Phase("reading the primary volume's topology".into()))?;
    let plan = match make_plan(&cfg) {
        Ok(p) => p,
        Err(e) => {
            let _ = link.send(&ToSupervisor::Fatal(e.to_string()));
            return Err(e.into());
        }
    };
    info!(bricks = plan.bricks.len(), "plan");
    link.send(&ToSupervisor::Plan(plan.clone()))?;
    link.send(&ToSupervisor::Ready)?;

    // Supervisor messages arrive on a thread; the main thread replans.
    let (tx, rx) = mpsc::channel();
    // The supervisor sends Shutdown and SIGTERM together: exit cleanly on
    // either.
    crate::sys::forward_termination(tx.clone(), Some(ToChild::Shutdown))?;
    let mut reader = link.try_clone_reader()?;
    std::thread::Builder::new().name("ctl".into()).spawn(move || {
        loop {
            let m = crate::proto::recv::<ToChild>(&mut reader, crate::proto::ctl::MAX_CTL_FRAME, "supervisor");
            let stop = !matches!(
                m,
                Ok(Some(ToChild::Replan)) | Ok(Some(ToChild::Config { .. })) | Ok(Some(ToChild::BrickStatus { .. }))
            );
            if tx.send(m.ok().flatten()).is_err() || stop {
                return;
            }
        }
    })?;
    let live: socket::Shared = std::sync::Arc::default();
    {
        let mut l = live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        l.session.clone_from(&args.session);
        l.plan = plan.clone();
    }
    let mut files = StatusFiles::new(&cfg, std::sync::Arc::clone(&live));
    files.monitor("Started");
    // Without the socket `gsyncd status` still reads the files.
    let sock_path = crate::proto::status::status_socket(Path::new(&opt(&cfg, "run-dir")));
    let _socket = match socket::serve(&sock_path, std::sync::Arc::clone(&live)) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!("no status socket: {e}");
            None
        }
    };
    let mut endpoint = start_metrics(&cfg, config_dir, &live, None);
    let mut current = plan;
    let mut next_plan = std::time::Instant::now() + REPLAN_EVERY;
    let watch_for = |cfg: &Config| {
        let mut w = cli::InfoWatch::new(Path::new(&opt(cfg, "glusterd-workdir")), &opt(cfg, "primary"), ASK_ANYWAY);
        // The plan just made answered it.
        let _ = w.due();
        w.answered();
        w
    };
    let mut watch = watch_for(&cfg);
    loop {
        let mut forced = false;
        match rx.recv_timeout(next_plan.saturating_duration_since(std::time::Instant::now())) {
            Ok(Some(ToChild::Replan)) => {
                if let Ok(c) = Config::load(config_dir, &args.session) {
                    cfg = c;
                    files = StatusFiles::new(&cfg, std::sync::Arc::clone(&live));
                    endpoint = start_metrics(&cfg, config_dir, &live, endpoint);
                    watch = watch_for(&cfg);
                }
                forced = true;
            }
            Ok(Some(ToChild::BrickStatus { brick, status })) => {
                files.brick(&brick, *status);
                continue;
            }
            Ok(Some(ToChild::Config { .. })) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(Some(ToChild::Shutdown)) | Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                files.monitor("Stopped");
                return Ok(());
            }
        }
        next_plan = std::time::Instant::now() + REPLAN_EVERY;
        // Only when glusterd's record of the volume changed (or asked to):
        // each `gluster` call costs a tenth of a CPU second.
        if !watch.due() && !forced {
            continue;
        }
        let plan = make_plan(&cfg);
        if plan.is_ok() {
            watch.answered();
        }
        match plan {
            Ok(p) if p != current => {
                info!(bricks = p.bricks.len(), "topology changed; new plan");
                link.send(&ToSupervisor::Plan(p.clone()))?;
                {
                    let mut l = live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    l.bricks.retain(|b, _| p.bricks.iter().any(|w| &w.path == b));
                    l.plan = p.clone();
                }
                current = p;
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "cannot read the topology; keeping the current plan"),
        }
    }
}

/// The metrics endpoint that `metrics-listen` asks for: `running` if it
/// listens there already, a new one otherwise (the old one is closed
/// first), none when the option is empty or the address cannot be bound
/// (a warning says why; replication goes on without it).
fn start_metrics(
    cfg: &Config,
    config_dir: &Path,
    live: &socket::Shared,
    running: Option<metrics::MetricsServer>,
) -> Option<metrics::MetricsServer> {
    let listen = opt(cfg, "metrics-listen");
    if running.as_ref().is_some_and(|r| r.listen == listen) {
        return running;
    }
    drop(running);
    if listen.is_empty() {
        return None;
    }
    let live = std::sync::Arc::clone(live);
    let (config_dir, session) = (config_dir.to_owned(), cfg.session.clone());
    let body = move || {
        let snapshot = live.lock().unwrap_or_else(std::sync::PoisonError::into_inner).snapshot();
        // The checkpoint as configured now (`checkpoint set` changes the
        // file without telling the monitor), as `gsyncd status` reads it.
        let checkpoint = Config::load(&config_dir, &session)
            .ok()
            .and_then(|c| config::schema::spec("checkpoint").and_then(|s| c.raw(s).as_int()))
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        metrics::render(&snapshot, checkpoint, now)
    };
    match metrics::serve(&listen, body) {
        Ok(m) => {
            info!(address = %m.addr, "serving metrics at http://{}/metrics", m.addr);
            Some(m)
        }
        Err(e) => {
            warn!("no metrics endpoint: {e}");
            None
        }
    }
}

/// The session's status files, and the last status of each brick (shared
/// with the status socket).
struct StatusFiles {
    state_dir: PathBuf,
    state_file: PathBuf,
    live: socket::Shared,
}

impl StatusFiles {
    fn new(cfg: &Config, live: socket::Shared) -> StatusFiles {
        StatusFiles {
            state_dir: PathBuf::from(opt(cfg, "state-dir")),
            state_file: PathBuf::from(opt(cfg, "state-file")),
            live,
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, socket::LiveState> {
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn monitor(&self, word: &str) {
        word.clone_into(&mut self.live().monitor_status);
        match statusfile::write_monitor(&self.state_file, word) {
            Ok(()) => info!(status = word, file = %self.state_file.display(), "session status"),
            Err(e) => warn!("cannot write the session status: {e}"),
        }
    }

    fn brick(&mut self, brick: &[u8], mut st: crate::proto::status::BrickStatus) {
        // A checkpoint completed before a worker restart keeps its time.
        let known = self.live().bricks.get(brick).cloned();
        let old = match known {
            Some(o) => Some(o),
            None => statusfile::read_brick(&self.state_dir, brick),
        };
        if let Some(old) = old
            && st.checkpoint_completed == "Yes"
            && old.checkpoint_completed == "Yes"
            && old.checkpoint_time == st.checkpoint_time
            && old.checkpoint_completion_time != 0
        {
            st.checkpoint_completion_time = old.checkpoint_completion_time;
        }
        if let Err(e) = statusfile::write_brick(&self.state_dir, brick, &st) {
            warn!(brick = %String::from_utf8_lossy(brick), "cannot write the brick status: {e}");
        }
        self.live().bricks.insert(brick.to_vec(), st);
    }
}
