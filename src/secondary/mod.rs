//! The secondary side: `gsyncd secondary`, the RPC server a primary worker
//! starts over ssh, and `gsyncd ssh-gate`, the forced command that admits it.
//!
//! The server owns stdin and stdout as its channel: at start it moves them
//! to private descriptors and points fd 0 at /dev/null and fd 1 at stderr,
//! so that nothing else (a library, a child such as glusterfs) can read or
//! write the channel. Then: Hello exchange, mount of the secondary volume
//! (see [`crate::gluster::auxmount`]; nothing outlives the process), and
//! service: a reader thread takes requests off stdin and queues them for
//! `sync-jobs` threads, which answer in any order, one whole frame at a time.
//!
//! The main thread waits for the end: end of stdin (the worker or ssh went
//! away), SIGTERM/SIGINT/SIGHUP, or `secondary-timeout` seconds without a
//! keep-alive. Each is logged with its reason and exits 0; a broken stream
//! (a frame cut short, or larger than the limit) exits 1.

pub mod gate;
pub mod ops;

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use tracing::{debug, error, info, warn};

use crate::cli::{MountGuardArgs, SecondaryArgs, SshGateArgs};
use crate::config::value::SecondaryUrl;
use crate::gluster::auxmount::{self, Entered, MountOptions, Mounter, RUN_ROOT};
use crate::gluster::xattr::keys;
use crate::gluster::{cli as gcli, escape};
use crate::proto::rpc::{self, Answer, Call, Duplex, MAX_RPC_FRAME, RemoteError, Reply, Request};
use crate::proto::{self, PROTOCOL_VERSION, ProtoError, Role};

/// Why the server stops.
#[derive(Debug)]
enum Event {
    KeepAlive,
    Eof,
    Broken(ProtoError),
    Signal(i32),
}

/// Takes the RPC channel off fds 0 and 1 (see the module docs).
fn take_stdio() -> anyhow::Result<(File, File)> {
    use nix::unistd::{dup, dup2_stdin, dup2_stdout};
    let rin: OwnedFd = dup(std::io::stdin()).context("cannot duplicate stdin")?;
    let rout: OwnedFd = dup(std::io::stdout()).context("cannot duplicate stdout")?;
    // dup() does not set close-on-exec; children must not inherit the channel.
    for fd in [&rin, &rout] {
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
            .context("cannot set close-on-exec on the channel")?;
    }
    let null = File::open("/dev/null").context("cannot open /dev/null")?;
    dup2_stdin(&null).context("cannot point stdin at /dev/null")?;
    dup2_stdout(std::io::stderr()).context("cannot point stdout at stderr")?;
    Ok((File::from(rin), File::from(rout)))
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn user_name() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| nix::unistd::geteuid().to_string())
}

/// Default log file of the aux mount, in the directory the reference (and
/// glusterd's mountbroker template) use.
fn mount_log_file(a: &SecondaryArgs, url: &SecondaryUrl) -> PathBuf {
    if let Some(p) = &a.secondary_gluster_log_file {
        return p.clone();
    }
    let brick = a.primary_brick.as_deref().map(|b| escape::escape(std::os::unix::ffi::OsStrExt::as_bytes(b)));
    let brick = brick.map(|b| String::from_utf8_lossy(&b).replace('/', "-")).unwrap_or_default();
    let node = a.primary_node.as_deref().unwrap_or("primary");
    Path::new("/var/log/glusterfs/geo-replication-secondaries")
        .join(format!("{}_{}_{}", a.primary, url.host, url.volume))
        .join(format!("mnt-{node}{brick}.log"))
}

struct Server {
    ctx: ops::Ctx,
    keep_alives: AtomicU64,
    /// Foreign volume-mark namespace: `system.` for a non-root user.
    non_root: bool,
}

impl Server {
    fn serve(&self, call: Call) -> Result<Answer, RemoteError> {
        match call {
            Call::Version => {
                Ok(Answer::Version { protocol: PROTOCOL_VERSION, package: env!("CARGO_PKG_VERSION").into() })
            }
            Call::Pid => Ok(Answer::Pid(std::process::id())),
            Call::KeepAlive(mark) => {
                if let Some(m) = mark {
                    if m.timeout.is_none() {
                        return Err(RemoteError {
                            errno: Some(nix::errno::Errno::EINVAL as i32),
                            index: None,
                            path: None,
                            message: "keep-alive volume mark without a timeout".into(),
                        });
                    }
                    let key = keys::foreign_volume_mark(&m.uuid, self.non_root);
                    xattr::set(".", &key, &m.encode()).map_err(|e| RemoteError {
                        errno: e.raw_os_error(),
                        index: None,
                        path: Some(b".".to_vec()),
                        message: format!("cannot set {key} on the secondary root: {e}"),
                    })?;
                }
                Ok(Answer::KeepAlive(self.keep_alives.fetch_add(1, Ordering::Relaxed) + 1))
            }
            Call::EntryOps(v) => ops::entry_ops(&self.ctx, &v).map(Answer::EntryFailures),
            Call::MetaOps(v) => ops::meta_ops(&v).map(Answer::MetaFailures),
            Call::SetAttr { path, attrs } => ops::set_attr(&path, &attrs).map(|()| Answer::Done),
            Call::Lstat(v) => ops::lstat_all(&v).map(Answer::Lstat),
            Call::ListDir(g) => Ok(Answer::Dir(self.ctx.list_dir(&g))),
            Call::WriteFiles(v) => Ok(Answer::Written(ops::write_files(&v))),
            Call::VolumeId => self.ctx.topology().id.map(Answer::VolumeId).ok_or_else(|| RemoteError {
                errno: None,
                index: None,
                path: None,
                message: "glusterd on the secondary did not name the volume's id".into(),
            }),
        }
    }
}

fn send_reply(out: &Mutex<File>, reply: &Reply) -> Result<(), ProtoError> {
    // One frame per lock: replies of several threads never interleave.
    let mut w = out.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    proto::send(&mut *w, reply, MAX_RPC_FRAME, "worker")
}

fn job_loop(server: &Server, queue: &Mutex<mpsc::Receiver<Request>>, out: &Mutex<File>, events: &mpsc::Sender<Event>) {
    loop {
        let req = {
            let q = queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match q.recv() {
                Ok(r) => r,
                Err(_) => return,
            }
        };
        let method = rpc::call_name(&req.call);
        let started = Instant::now();
        let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.serve(req.call))) {
            Ok(r) => r,
            Err(_) => Err(RemoteError {
                errno: None,
                index: None,
                path: None,
                message: format!("internal error serving {method}"),
            }),
        };
        match &result {
            Ok(Answer::EntryFailures(f)) if !f.is_empty() => {
                debug!(method, failures = f.len(), "entry ops left failures for the primary")
            }
            Err(e) => warn!(method, errno = e.errno, "call failed: {e}"),
            _ => {}
        }
        debug!(method, id = req.id, elapsed_ms = started.elapsed().as_millis() as u64, "served");
        if let Err(e) = send_reply(out, &Reply { id: req.id, result }) {
            let _ = events.send(Event::Broken(e));
            return;
        }
    }
}

fn reader_loop(mut input: File, jobs: &mpsc::Sender<Request>, out: &Mutex<File>, events: &mpsc::Sender<Event>) {
    loop {
        let frame = match proto::read_frame(&mut input, MAX_RPC_FRAME, "worker") {
            Ok(Some(f)) => f,
            Ok(None) => {
                let _ = events.send(Event::Eof);
                return;
            }
            Err(e) => {
                let _ = events.send(Event::Broken(e));
                return;
            }
        };
        match postcard::from_bytes::<Request>(&frame) {
            Ok(req) => {
                if matches!(req.call, Call::KeepAlive(_)) {
                    // Arrival is what counts, however busy the jobs are.
                    let _ = events.send(Event::KeepAlive);
                }
                if jobs.send(req).is_err() {
                    return;
                }
            }
            Err(e) => {
                // The framing is intact: refuse this request, keep serving.
                let id = rpc::request_id(&frame).unwrap_or(0);
                warn!(id, len = frame.len(), "malformed request: {e}");
                let result = Err(RemoteError {
                    errno: Some(nix::errno::Errno::EINVAL as i32),
                    index: None,
                    path: None,
                    message: format!("malformed request ({} bytes): {e}", frame.len()),
                });
                if let Err(e) = send_reply(out, &Reply { id, result }) {
                    let _ = events.send(Event::Broken(e));
                    return;
                }
            }
        }
    }
}

pub fn run(a: &SecondaryArgs) -> anyhow::Result<()> {
    let url = SecondaryUrl::parse(&a.secondary).map_err(|e| anyhow::anyhow!("invalid secondary: {e}"))?;
    let (input, output) = take_stdio()?;
    let root = is_root();
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    if root && !a.secondary_access_mount {
        // Without a namespace of our own (a container may forbid it) the
        // mount is visible to root processes while we run; the guard still
        // removes it when we end.
        if let Err(e) = auxmount::private_namespace() {
            warn!("{e:#}; mounting in the shared namespace");
        }
    }
    // Process-wide setup is done; threads may start now.
    let signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .context("cannot install signal handlers")?;

    let mut chan = Duplex { r: input, w: output };
    let hello = proto::handshake(&mut chan, Role::Secondary, Role::Worker, "worker")?;
    info!(
        primary = %a.primary, volume = %url.volume, peer_pid = hello.pid,
        primary_node = a.primary_node.as_deref().unwrap_or(""), "secondary starting"
    );
    if a.use_rsync_xattrs && !root {
        anyhow::bail!("use-rsync-xattrs needs root on the secondary (this is user {})", user_name());
    }

    let mount_opts = MountOptions {
        command_dir: a.secondary_gluster_command_dir.clone().unwrap_or_else(|| PathBuf::from("/usr/sbin")),
        volfile_server: "localhost".into(),
        volume: url.volume.clone(),
        log_file: mount_log_file(a, &url),
        log_level: a.secondary_gluster_log_level.clone().unwrap_or_else(|| "INFO".into()),
        // Short caches where several servers change the same names (see
        // auxmount::FRESH_LOOKUPS); glusterd's mountbroker accepts only the
        // geo-replication mount parameters, so a non-root secondary mounts
        // with the caches.
        params: auxmount::params_for(
            vec!["aux-gfid-mount".into(), "acl".into()],
            if root { a.primary_dist_count } else { 1 },
        ),
        timeout: Duration::from_secs(a.connection_timeout.max(1)),
    };
    let mounter = if root {
        Mounter::Direct { dir: Path::new(RUN_ROOT).join("secondary").join("mnt") }
    } else {
        let user = user_name();
        Mounter::Broker { label: user.clone(), user, cli_options: Vec::new() }
    };
    let t0 = Instant::now();
    let entered: Entered = auxmount::mount_and_enter(&mount_opts, &mounter, &exe)?;
    info!(
        volume = %url.volume, duration_ms = t0.elapsed().as_millis() as u64,
        mount_point = %entered.mount_point.display(), "mounted the secondary volume"
    );

    let brick_args =
        SecondaryArgsForBricks { dir: a.secondary_gluster_command_dir.clone(), workdir: a.glusterd_workdir.clone() };
    let volume = url.volume;
    let server = Arc::new(Server {
        ctx: ops::Ctx {
            dist_count: a.primary_dist_count,
            topology: OnceLock::new(),
            find_topology: Box::new(move || brick_args.find(&volume)),
        },
        keep_alives: AtomicU64::new(0),
        non_root: !root,
    });
    let Duplex { r: input, w: output } = chan;
    let out = Arc::new(Mutex::new(output));
    let (ev_tx, ev_rx) = mpsc::channel::<Event>();
    let (job_tx, job_rx) = mpsc::channel::<Request>();
    let queue = Arc::new(Mutex::new(job_rx));
    for n in 0..a.sync_jobs {
        let (s, q, o, e) = (Arc::clone(&server), Arc::clone(&queue), Arc::clone(&out), ev_tx.clone());
        std::thread::Builder::new()
            .name(format!("job-{n}"))
            .spawn(move || job_loop(&s, &q, &o, &e))
            .context("cannot start a job thread")?;
    }
    {
        let (o, e) = (Arc::clone(&out), ev_tx.clone());
        std::thread::Builder::new()
            .name("reader".into())
            .spawn(move || reader_loop(input, &job_tx, &o, &e))
            .context("cannot start the reader thread")?;
    }
    {
        let e = ev_tx.clone();
        let mut signals = signals;
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if let Some(s) = signals.forever().next() {
                    let _ = e.send(Event::Signal(s));
                }
            })
            .context("cannot start the signal thread")?;
    }
    drop(ev_tx);
    info!(sync_jobs = a.sync_jobs, secondary_timeout = a.secondary_timeout, "secondary listening");

    let timeout = (a.secondary_timeout > 0).then(|| Duration::from_secs(a.secondary_timeout));
    let mut last = Instant::now();
    let outcome: anyhow::Result<()> = loop {
        let ev = match timeout {
            None => ev_rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(t) => ev_rx.recv_timeout((last + t).saturating_duration_since(Instant::now())),
        };
        match ev {
            Ok(Event::KeepAlive) => last = Instant::now(),
            Ok(Event::Eof) => {
                info!("terminating on reaching EOF");
                break Ok(());
            }
            Ok(Event::Signal(s)) => {
                let name = nix::sys::signal::Signal::try_from(s).map(|s| s.as_str()).unwrap_or("signal");
                info!(signal = name, "terminating on {name}");
                break Ok(());
            }
            Ok(Event::Broken(e)) => {
                error!("connection to the primary is broken: {e}");
                break Err(anyhow::Error::new(e).context("connection to the primary is broken"));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                info!(
                    timeout = a.secondary_timeout,
                    "connection inactive, stopping: no keep-alive within secondary-timeout"
                );
                break Ok(());
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break Ok(()),
        }
    };
    if let Err(e) = entered.release() {
        warn!("cannot remove the mount: {e}");
    }
    outcome
}

/// What the brick lookup needs, owned by the closure.
struct SecondaryArgsForBricks {
    dir: Option<PathBuf>,
    workdir: PathBuf,
}

impl SecondaryArgsForBricks {
    fn find(&self, volume: &str) -> ops::Topology {
        let bin = self.dir.as_deref().unwrap_or(Path::new("/usr/sbin")).join("gluster");
        topology(&bin, &self.workdir, volume)
    }
}

/// The volume's id and this node's brick directories of it (all bricks if
/// this node's UUID is unknown; a non-local path simply does not resolve).
fn topology(bin: &Path, glusterd_workdir: &Path, volume: &str) -> ops::Topology {
    let vol = match gcli::volume_info(bin, &["--remote-host=localhost"], volume) {
        Ok(v) => v,
        Err(e) => {
            warn!("cannot read the secondary volume's topology (directory lookups use gfid2path only): {e:#}");
            return ops::Topology::default();
        }
    };
    let me = gcli::local_node_uuid(glusterd_workdir).ok();
    let bricks = vol
        .bricks
        .iter()
        .filter(|b| me.is_none_or(|u| u == b.host_uuid))
        .map(|b| PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&b.path)))
        .collect();
    ops::Topology { id: Some(vol.id), bricks }
}

pub fn gate(args: &SshGateArgs) -> anyhow::Result<()> {
    gate::run(args)
}

/// `gsyncd mount-guard`: see [`crate::gluster::auxmount`].
pub fn mount_guard(a: &MountGuardArgs) -> anyhow::Result<()> {
    let msg = auxmount::guard_message(|| crate::sys::take_inherited_fd(proto::ctl::CTL_FD))
        .context("mount-guard needs its pipe on fd 3")?;
    let mounter = if a.broker {
        Mounter::Broker { label: String::new(), user: String::new(), cli_options: a.cli_options.clone() }
    } else {
        Mounter::Direct { dir: PathBuf::new() }
    };
    match auxmount::guard_cleanup(&msg, &mounter, &a.command_dir).context("mount guard")? {
        Some((mp, true)) => {
            warn!(mount_point = %mp.display(), "the process that mounted here died before cleaning up; unmounted it")
        }
        Some((mp, false)) => {
            debug!(mount_point = %mp.display(), "a mount that did not complete; removed its mount point")
        }
        None => {}
    }
    Ok(())
}
