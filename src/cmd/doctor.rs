//! `gsyncd doctor SESSION [--all]`: a preflight of a session that exists.
//!
//! It checks, in order, everything the session needs on this node and on
//! the secondary it reaches, and stops at the first check that fails with
//! the check's name and its fix (with `--all` it runs every check and lists
//! every failure); see gsyncd-doctor(8). It changes nothing: the only
//! traces it leaves are its mounts' log files, and it mounts only in a
//! private mount namespace, guarded as the workers' mounts are.
//!
//! The checks that `gsyncd create` makes too come from [`preflight`]. What
//! it learns from the secondary comes through the ssh gate, which admits
//! `gsyncd --version` (whose report names the secondary's rsync, tar,
//! glusterfs and clock) and `gsyncd secondary` (which mounts the secondary
//! volume as a worker's does); doctor runs no other remote command.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cli::DoctorArgs;
use crate::cmd::preflight::{
    self, Gluster, MountFailure, Problem, RemoteVersion, SshFailure, Tool, VersionReport, opt, output_text, ssh_target,
};
use crate::config::Config;
use crate::config::value::SecondaryUrl;
use crate::exit::{Exit, HasExit};
use crate::gluster::cli as gcli;
use crate::gluster::mount::{self, SweepRoot};
use crate::gluster::uuid::Uuid;
use crate::gluster::volinfo::Volume;
use crate::supervisor::pidfile;

/// The checks, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Versions,
    Ssh,
    Gate,
    PrimaryVolume,
    SecondaryVolume,
    VolumeOptions,
    SyncTools,
    Fuse,
    PrimaryMount,
    SecondaryMount,
    FreeSpace,
    Clock,
    StaleMounts,
    PidFile,
}

impl Step {
    pub const ALL: [Step; 14] = [
        Step::Versions,
        Step::Ssh,
        Step::Gate,
        Step::PrimaryVolume,
        Step::SecondaryVolume,
        Step::VolumeOptions,
        Step::SyncTools,
        Step::Fuse,
        Step::PrimaryMount,
        Step::SecondaryMount,
        Step::FreeSpace,
        Step::Clock,
        Step::StaleMounts,
        Step::PidFile,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::Versions => "versions",
            Step::Ssh => "ssh",
            Step::Gate => "ssh gate",
            Step::PrimaryVolume => "primary volume",
            Step::SecondaryVolume => "secondary volume",
            Step::VolumeOptions => "volume options",
            Step::SyncTools => "rsync and tar",
            Step::Fuse => "fuse device",
            Step::PrimaryMount => "primary mount",
            Step::SecondaryMount => "secondary mount",
            Step::FreeSpace => "free space",
            Step::Clock => "clock skew",
            Step::StaleMounts => "stale mounts",
            Step::PidFile => "pid file",
        }
    }

    /// Its number in the output (and on the man page), from 1.
    pub fn number(self) -> usize {
        Step::ALL.iter().position(|s| *s == self).map_or(0, |i| i + 1)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    /// The first failed check (with `--all`, the others are named in `more`).
    #[error("check {step} failed: {problem}; to fix: {fix}{more}")]
    Failed { step: Step, problem: String, fix: String, more: String },
}

impl HasExit for DoctorError {
    fn exit(&self) -> Exit {
        Exit::CheckFailed
    }
}

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass(String),
    Fail(Problem),
    /// Not checked, and why (a check it depends on failed, or the other
    /// side cannot tell).
    Skip(String),
}

fn fail(problem: impl Into<String>, fix: impl Into<String>) -> Outcome {
    Outcome::Fail(Problem::new(problem, fix))
}

/// Less than this free (bytes, or this share of the file system, or of its
/// inodes) fails the free-space check.
pub const MIN_FREE_BYTES: u64 = 512 << 20;
pub const MIN_FREE_PERCENT: f64 = 2.0;
/// A larger difference between the clocks (beyond half the ssh round trip)
/// fails the clock check.
pub const MAX_CLOCK_SKEW: f64 = 2.0;

/// The root directory's GFID as the aux-gfid mount names it.
fn root_gfid_path() -> Vec<u8> {
    let mut p = b".gfid/".to_vec();
    p.extend_from_slice(&Uuid::ROOT.canonical());
    p
}

/// What the checks learn and share.
struct Doctor<'a> {
    cfg: &'a Config,
    url: Option<SecondaryUrl>,
    primary: String,
    /// The secondary's `gsyncd --version`, asked once.
    probe: Option<Result<RemoteVersion, SshFailure>>,
    pvol: Option<Volume>,
    svol_ok: bool,
    node: Option<Uuid>,
}

impl Doctor<'_> {
    fn probe(&mut self) -> Option<&Result<RemoteVersion, SshFailure>> {
        if self.probe.is_none() {
            let url = self.url.as_ref()?;
            self.probe = Some(preflight::ask_version(self.cfg, url, false));
        }
        self.probe.as_ref()
    }

    /// The secondary's report, or why there is none.
    fn report(&mut self) -> Result<VersionReport, String> {
        match self.probe() {
            Some(Ok(v)) => Ok(v.report.clone()),
            Some(Err(SshFailure::Ssh(_))) => Err("the secondary cannot be reached (check ssh)".into()),
            Some(Err(SshFailure::Gsyncd(_))) => Err("the secondary's gsyncd does not answer (check versions)".into()),
            None => Err("the session has no secondary (check versions)".into()),
        }
    }

    fn host(&self) -> String {
        self.url.as_ref().map_or_else(|| "the secondary".to_owned(), |u| u.host.clone())
    }

    fn local_bricks(&self) -> Vec<PathBuf> {
        match (&self.pvol, &self.node) {
            (Some(v), Some(n)) => v
                .bricks
                .iter()
                .filter(|b| b.host_uuid == *n)
                .map(|b| PathBuf::from(std::ffi::OsStr::from_bytes(&b.path)))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn run(&mut self, step: Step) -> Outcome {
        match step {
            Step::Versions => self.versions(),
            Step::Ssh => self.ssh(),
            Step::Gate => self.gate(),
            Step::PrimaryVolume => self.primary_volume(),
            Step::SecondaryVolume => self.secondary_volume(),
            Step::VolumeOptions => self.volume_options(),
            Step::SyncTools => self.sync_tools(),
            Step::Fuse => fuse_device(Path::new("/dev/fuse")),
            Step::PrimaryMount => self.primary_mount(),
            Step::SecondaryMount => self.secondary_mount(),
            Step::FreeSpace => self.free_space(),
            Step::Clock => self.clock(),
            Step::StaleMounts => stale_mounts(&PathBuf::from(opt(self.cfg, "run-dir")), &self.cfg.session),
            Step::PidFile => pid_file(&PathBuf::from(opt(self.cfg, "pid-file")), &self.cfg.session),
        }
    }

    fn versions(&mut self) -> Outcome {
        let ours = env!("CARGO_PKG_VERSION");
        let glusterfs = preflight::tool_version(&Path::new(&opt(self.cfg, "gluster-command-dir")).join("glusterfs"));
        if glusterfs == Tool::Missing {
            return fail(
                format!("glusterfs (the FUSE client) is not in {}", opt(self.cfg, "gluster-command-dir")),
                "install the GlusterFS client (glusterfs-client or glusterfs-fuse), or set gluster-command-dir",
            );
        }
        let Some(url) = self.url.clone() else {
            return fail(
                "the session file sets no secondary",
                format!("gsyncd config set {} secondary USER@HOST::VOLUME", self.cfg.session),
            );
        };
        let here = format!("this node: gsyncd {ours}, glusterfs {glusterfs}");
        match self.probe() {
            Some(Ok(v)) => {
                let r = &v.report;
                if !preflight::compatible(ours, &r.gsyncd) {
                    return fail(
                        format!("{} runs gsyncd {}, this node {ours}", url.host, r.gsyncd),
                        "install the same gsyncd version on both sides",
                    );
                }
                let there = r.glusterfs.as_ref().map_or_else(String::new, |g| format!(", glusterfs {g}"));
                Outcome::Pass(format!("{here}; {}: gsyncd {}{there}", url.host, r.gsyncd))
            }
            Some(Err(SshFailure::Gsyncd(p))) => Outcome::Fail(p.clone()),
            Some(Err(SshFailure::Ssh(_))) | None => {
                Outcome::Skip(format!("{here}; the secondary's are not known: it cannot be reached (check ssh)"))
            }
        }
    }

    fn ssh(&mut self) -> Outcome {
        let Some(url) = self.url.clone() else { return Outcome::Skip("the session has no secondary".into()) };
        let port = opt(self.cfg, "ssh-port");
        let reach = format!("{} port {port} admits the session key", ssh_target(&url));
        match self.probe() {
            Some(Ok(v)) => {
                let ms = ((v.received - v.sent) * 1000.0).max(0.0) as u64;
                match v.report.forced_command {
                    Some(true) => Outcome::Pass(format!("{reach}, and runs it through a forced command ({ms} ms)")),
                    Some(false) => fail(
                        format!("the session key runs commands on {} without a forced command", url.host),
                        format!(
                            "restrict the key to the gate: its line in ~{}/.ssh/authorized_keys on {} must start with command=\"/usr/bin/gsyncd ssh-gate --volume {}\",no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-pty (the line gsyncd create prints)",
                            url.user_or_root(),
                            url.host,
                            url.volume
                        ),
                    ),
                    None => Outcome::Pass(format!(
                        "{reach} ({ms} ms); its gsyncd is too old to tell whether a forced command runs it"
                    )),
                }
            }
            Some(Err(SshFailure::Ssh(p))) => Outcome::Fail(p.clone()),
            Some(Err(SshFailure::Gsyncd(_))) => Outcome::Pass(reach),
            None => Outcome::Skip("the session has no secondary".into()),
        }
    }

    /// The gate must refuse what is not gsyncd's: a plain `true`.
    fn gate(&mut self) -> Outcome {
        let Some(url) = self.url.clone() else { return Outcome::Skip("the session has no secondary".into()) };
        if let Some(Err(SshFailure::Ssh(_))) = self.probe() {
            return Outcome::Skip("the secondary cannot be reached (check ssh)".into());
        }
        let line_fix = format!(
            "make the key's line in ~{}/.ssh/authorized_keys on {} start with command=\"/usr/bin/gsyncd ssh-gate --volume {}\",no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-pty (the line gsyncd create prints)",
            url.user_or_root(),
            url.host,
            url.volume
        );
        let out = match preflight::session_ssh(self.cfg, &url).arg("true").output() {
            Ok(o) => o,
            Err(e) => return fail(format!("cannot run {}: {e}", opt(self.cfg, "ssh-command")), "set ssh-command"),
        };
        let text = output_text(&out);
        match out.status.code() {
            Some(0) => fail(
                format!(
                    "`true` ran on {} with the session key: the key is not restricted to gsyncd ssh-gate",
                    url.host
                ),
                line_fix,
            ),
            Some(255) => fail(format!("ssh failed: {text}"), "see check ssh"),
            _ if text.contains("refused") => {
                // The gate's error line, without its log record.
                let said = text.split(" | ").find(|l| l.contains("error: refused")).unwrap_or(&text);
                Outcome::Pass(said.to_owned())
            }
            _ => fail(
                format!("`true` failed on {} without the gate's refusal ({}): {text}", url.host, out.status),
                line_fix,
            ),
        }
    }

    fn primary_volume(&mut self) -> Outcome {
        if self.primary.is_empty() {
            return fail(
                "the session file sets no primary",
                format!("gsyncd config set {} primary VOLUME", self.cfg.session),
            );
        }
        let vol = match preflight::primary_volume(&Gluster::local(self.cfg), &self.primary) {
            Ok(v) => v,
            Err(p) => return Outcome::Fail(p),
        };
        self.node = gcli::local_node_uuid(Path::new(&opt(self.cfg, "glusterd-workdir"))).ok();
        let total = vol.bricks.len();
        self.pvol = Some(vol);
        let here = self.local_bricks().len();
        let mut text = format!("{} is Started (bricks: {total}, {here} on this node)", self.primary);
        if here == 0 {
            text.push_str("; no brick is on this node, so no worker runs here");
        }
        Outcome::Pass(text)
    }

    fn secondary_volume(&mut self) -> Outcome {
        let Some(url) = self.url.clone() else { return Outcome::Skip("the session has no secondary".into()) };
        match preflight::secondary_volume(self.cfg, &url) {
            Ok(v) => {
                self.svol_ok = true;
                Outcome::Pass(format!("{} on {} is Started (bricks: {})", url.volume, url.host, v.bricks.len()))
            }
            Err(p) => Outcome::Fail(p),
        }
    }

    fn volume_options(&mut self) -> Outcome {
        let Some(vol) = &self.pvol else { return Outcome::Skip("check primary volume failed".into()) };
        let xsync = opt(self.cfg, "change-detector") == "xsync";
        let off: Vec<&str> = preflight::VOLUME_OPTIONS
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| !(xsync && *k == "changelog.changelog"))
            .filter(|k| !preflight::option_on(vol, k))
            .collect();
        if off.is_empty() {
            let what: Vec<String> = preflight::VOLUME_OPTIONS.iter().map(|(k, v)| format!("{k} {v}")).collect();
            return Outcome::Pass(what.join(", "));
        }
        let v = &vol.name;
        fail(
            format!("{} {} off on {v}", off.join(" and "), if off.len() == 1 { "is" } else { "are" }),
            off.iter().map(|k| format!("gluster volume set {v} {k} on")).collect::<Vec<_>>().join("; "),
        )
    }

    fn sync_tools(&mut self) -> Outcome {
        let tarssh = opt(self.cfg, "sync-method") == "tarssh";
        let local = |option: &str| {
            let command = opt(self.cfg, option);
            match preflight::find_program(&command) {
                Some(p) => preflight::tool_version(&p),
                None => Tool::Missing,
            }
        };
        let (rsync, tar) = (local("rsync-command"), local("tar-command"));
        let (engine, engine_here, option) =
            if tarssh { ("tar", &tar, "tar-command") } else { ("rsync", &rsync, "rsync-command") };
        if *engine_here == Tool::Missing {
            return fail(
                format!("{engine} (sync-method {}) is not installed on this node", opt(self.cfg, "sync-method")),
                format!("install {engine}, or set {option}"),
            );
        }
        if !tarssh
            && opt(self.cfg, "rsync-opt-ignore-missing-args") == "true"
            && let Tool::Found { version, .. } = &rsync
            && version_less(version, "3.1.0")
        {
            return fail(
                format!("rsync {version} on this node has no --ignore-missing-args (3.1.0 or later)"),
                format!(
                    "install rsync 3.1.0 or later, or `gsyncd config set {} rsync-opt-ignore-missing-args false`",
                    self.cfg.session
                ),
            );
        }
        let here = format!("this node: rsync {rsync}, tar {tar}");
        let host = self.host();
        let there = match self.report() {
            Ok(r) => r,
            Err(why) => return Outcome::Skip(format!("{here}; the secondary's are not known: {why}")),
        };
        let (Some(r_rsync), Some(r_tar)) = (there.rsync, there.tar) else {
            return Outcome::Pass(format!("{here}; {host}: its gsyncd is too old to report rsync and tar"));
        };
        let engine_there = if tarssh { &r_tar } else { &r_rsync };
        if *engine_there == Tool::Missing {
            return fail(
                format!("{engine} (sync-method {}) is not installed on {host}", opt(self.cfg, "sync-method")),
                format!("install {engine} on {host} (the ssh gate runs /usr/bin/{engine} or /bin/{engine})"),
            );
        }
        Outcome::Pass(format!("{here}; {host}: rsync {r_rsync}, tar {r_tar}"))
    }

    fn primary_mount(&mut self) -> Outcome {
        if self.pvol.is_none() {
            return Outcome::Skip("check primary volume failed".into());
        }
        let params = opt(self.cfg, "gluster-params").split_whitespace().map(str::to_owned).collect();
        let opts = preflight::mount_options(self.cfg, "localhost", &self.primary, params, "doctor-primary-mount.log");
        let log = opts.log_file.display().to_string();
        let started = Instant::now();
        let found = preflight::inside_private_mount(self.cfg, &opts, || {
            let root = std::ffi::OsString::from(std::ffi::OsStr::from_bytes(&root_gfid_path()));
            match fs::symlink_metadata(&root) {
                Ok(m) if m.is_dir() => Ok(()),
                Ok(_) => Err(format!("{} is not a directory", root.to_string_lossy())),
                Err(e) => Err(format!("{} cannot be looked up: {e}", root.to_string_lossy())),
            }
        });
        match found {
            Ok(()) => Outcome::Pass(format!(
                "{} mounts with {} in a private namespace, and .gfid/ reaches its root ({} ms)",
                self.primary,
                opt(self.cfg, "gluster-params"),
                started.elapsed().as_millis()
            )),
            Err(MountFailure::Namespace(e)) => fail(e, "run doctor as root, as the workers run"),
            Err(MountFailure::Mount(e)) => fail(
                e,
                format!(
                    "see the client log {log}; the volume's bricks must be online (gluster volume status {})",
                    self.primary
                ),
            ),
            Err(MountFailure::Inside(e)) => fail(
                format!("the aux-gfid mount does not work: {e}"),
                "gluster-params must hold aux-gfid-mount (its default: aux-gfid-mount acl)",
            ),
        }
    }

    /// `gsyncd secondary` through the gate, as a worker starts it: it mounts
    /// the secondary volume with aux-gfid on the secondary node.
    fn secondary_mount(&mut self) -> Outcome {
        let Some(url) = self.url.clone() else { return Outcome::Skip("the session has no secondary".into()) };
        if !matches!(self.probe(), Some(Ok(_))) {
            return Outcome::Skip("the secondary's gsyncd cannot be reached (check ssh)".into());
        }
        if !self.svol_ok {
            return Outcome::Skip("check secondary volume failed".into());
        }
        let brick = self.local_bricks().into_iter().next().unwrap_or_else(|| PathBuf::from("/doctor"));
        let settings = match crate::worker::settings::Settings::load(self.cfg, &self.cfg.session, &brick) {
            Ok(s) => s,
            Err(e) => return fail(e.to_string(), "correct the session file"),
        };
        let dist = self.pvol.as_ref().map_or(1, Volume::distribution_count);
        let started = Instant::now();
        let log_fix = format!(
            "see the secondary's mount log under {}/geo-replication-secondaries/{} on {} (option secondary-gluster-log-file), and that the volume's bricks are reachable from it",
            opt(self.cfg, "gluster-logdir"),
            self.cfg.session,
            url.host
        );
        // The worker's ssh keeps a control socket in <run-dir>/ssh/; a
        // killed master leaves its socket file, which doctor removes, with
        // the directories it made.
        let control = settings.control_path();
        let made: Vec<PathBuf> =
            control.ancestors().skip(1).take(2).filter(|d| !d.exists()).map(Path::to_path_buf).collect();
        let answer = crate::worker::transport::connect(&settings, &preflight::hostname(), dist).map(|sec| {
            let wait = Some(settings.connection_timeout + Duration::from_secs(10));
            let answer = sec.client.call(crate::proto::rpc::Call::Lstat(vec![root_gfid_path()]), wait);
            (sec.pid, answer)
        });
        let _ = fs::remove_file(&control);
        for d in &made {
            let _ = fs::remove_dir(d);
        }
        let (pid, answer) = match answer {
            Ok(a) => a,
            Err(e) => return fail(preflight::chain(&e), log_fix),
        };
        match answer {
            Ok(crate::proto::rpc::Answer::Lstat(v)) => match v.first() {
                Some(Ok(st)) if st.mode & 0o170_000 == 0o040_000 => Outcome::Pass(format!(
                    "gsyncd secondary on {} (pid {pid}) mounted {} with aux-gfid, and .gfid/ reaches its root ({} ms)",
                    url.host,
                    url.volume,
                    started.elapsed().as_millis()
                )),
                Some(Err(errno)) => fail(
                    format!(
                        "the secondary's mount of {} cannot look up .gfid/ of its root: {}",
                        url.volume,
                        nix::errno::Errno::from_raw(*errno).desc()
                    ),
                    log_fix,
                ),
                _ => fail(format!("the secondary's mount of {} answered an odd lstat", url.volume), log_fix),
            },
            Ok(other) => fail(format!("the secondary answered {other:?}"), log_fix),
            Err(e) => fail(format!("the secondary did not mount {}: {}", url.volume, preflight::chain(&e)), log_fix),
        }
    }

    fn free_space(&mut self) -> Outcome {
        let mut places = vec![(PathBuf::from(opt(self.cfg, "state-dir")), "state directory")];
        places.extend(self.local_bricks().into_iter().map(|b| (b, "brick")));
        let mut seen = Vec::new();
        let mut low = Vec::new();
        for (path, what) in places {
            let Some(at) = path.ancestors().find(|p| p.exists()) else { continue };
            let st = match nix::sys::statvfs::statvfs(at) {
                Ok(s) => s,
                Err(e) => return fail(format!("cannot statvfs {}: {e}", at.display()), "check the path"),
            };
            let frsize = st.fragment_size();
            let avail = st.blocks_available().saturating_mul(frsize);
            let total = st.blocks().saturating_mul(frsize);
            let pct = |a: u64, t: u64| if t == 0 { 100.0 } else { a as f64 * 100.0 / t as f64 };
            let free_pct = pct(avail, total);
            let inode_pct = pct(st.files_available(), st.files());
            seen.push(format!("{what} {}: {} free ({free_pct:.0}%)", path.display(), crate::cmd::status::bytes(avail)));
            if avail < MIN_FREE_BYTES || free_pct < MIN_FREE_PERCENT {
                low.push(format!(
                    "{what} {} has {} free ({free_pct:.1}%)",
                    path.display(),
                    crate::cmd::status::bytes(avail)
                ));
            } else if st.files() > 0 && inode_pct < MIN_FREE_PERCENT {
                low.push(format!("{what} {} has {inode_pct:.1}% of its inodes free", path.display()));
            }
        }
        if low.is_empty() {
            Outcome::Pass(seen.join("; "))
        } else {
            fail(
                low.join("; "),
                format!(
                    "free space there (at least {} and {MIN_FREE_PERCENT}% of the file system): changelogs, the failure ledger and status files grow there",
                    crate::cmd::status::bytes(MIN_FREE_BYTES)
                ),
            )
        }
    }

    fn clock(&mut self) -> Outcome {
        let host = self.host();
        let (sent, received) = match self.probe() {
            Some(Ok(v)) => (v.sent, v.received),
            _ => return Outcome::Skip("the secondary's gsyncd cannot be reached (check ssh)".into()),
        };
        let Some(theirs) = self.report().ok().and_then(|r| r.clock) else {
            return Outcome::Skip(format!("the gsyncd on {host} is too old to report its clock"));
        };
        match clock_skew(sent, received, theirs) {
            Ok(text) => Outcome::Pass(format!("{host}: {text}")),
            Err(text) => fail(
                format!("the clock of {host} {text}"),
                "synchronize the clocks of both clusters' nodes with NTP (chronyd or systemd-timesyncd): checkpoints, lag and the status times compare them",
            ),
        }
    }
}

/// Compares the secondary's clock, read while ssh ran from `sent` to
/// `received` (local times), with ours at the midpoint; the round trip
/// bounds the error. Ok or Err with a description.
pub fn clock_skew(sent: f64, received: f64, theirs: f64) -> Result<String, String> {
    let half = ((received - sent) / 2.0).max(0.0);
    let off = theirs - (sent + received) / 2.0;
    let text = format!("{off:+.2} s from this node's (give or take {half:.2} s, half the ssh round trip)");
    if off.abs() - half > MAX_CLOCK_SKEW { Err(text) } else { Ok(text) }
}

/// Whether dotted version `a` is before `b` (numeric parts; a part that is
/// not a number counts as 0).
pub fn version_less(a: &str, b: &str) -> bool {
    let parts = |v: &str| -> Vec<u64> {
        v.split(['.', '-', '+'])
            .map(|p| p.trim_end_matches(|c: char| !c.is_ascii_digit()).parse().unwrap_or(0))
            .collect()
    };
    parts(a) < parts(b)
}

fn fuse_device(dev: &Path) -> Outcome {
    let meta = match fs::metadata(dev) {
        Ok(m) => m,
        Err(e) => {
            return fail(
                format!("{} is missing: {e}", dev.display()),
                "load the fuse module (modprobe fuse; in a container, pass the device in)",
            );
        }
    };
    if !meta.file_type().is_char_device() {
        return fail(format!("{} is not a character device", dev.display()), "remove it and load the fuse module");
    }
    match fs::OpenOptions::new().read(true).write(true).open(dev) {
        Ok(_) => Outcome::Pass(format!("{} opens for reading and writing", dev.display())),
        Err(e) => fail(format!("cannot open {}: {e}", dev.display()), "run doctor as root, as the workers run"),
    }
}

fn stale_mounts(run_dir: &Path, session: &str) -> Outcome {
    let dir = run_dir.join("mnt");
    let found = mount::sweep(&[SweepRoot::all(dir.clone())], true);
    if found.is_empty() {
        return Outcome::Pass(format!("none under {}", dir.display()));
    }
    let list: Vec<String> = found.iter().map(|a| format!("{} ({})", a.path.display(), a.what)).collect();
    fail(
        format!("{} left by processes that are gone: {}", list.len(), list.join(", ")),
        format!("gsyncd cleanup-mounts {session} (supervise also removes them when the session starts)"),
    )
}

fn pid_file(path: &Path, session: &str) -> Outcome {
    let pid = fs::read_to_string(path).map(|s| s.trim().to_owned());
    if pidfile::is_locked(path) {
        return Outcome::Pass(format!(
            "the session runs (supervisor pid {}, {})",
            pid.unwrap_or_else(|_| "unknown".into()),
            path.display()
        ));
    }
    match fs::symlink_metadata(path) {
        Ok(m) if !m.is_file() => {
            return fail(
                format!("{} is not a regular file", path.display()),
                format!("remove it; supervise creates it (systemctl start gsyncd@{session}.service)"),
            );
        }
        Ok(_) => {
            return Outcome::Pass(format!(
                "the session is stopped; {} is left from a supervisor that did not exit cleanly (pid {}), unlocked: supervise takes it over",
                path.display(),
                pid.unwrap_or_else(|_| "unknown".into())
            ));
        }
        Err(_) => {}
    }
    // Not running: supervise must be able to create it.
    let Some(dir) = path.parent().and_then(|p| p.ancestors().find(|a| a.exists())) else {
        return Outcome::Pass(format!("the session is stopped (no {})", path.display()));
    };
    match nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK) {
        Ok(()) => Outcome::Pass(format!("the session is stopped (no {}; it can be created)", path.display())),
        Err(e) => fail(
            format!("{} cannot be created: {} is not writable ({e})", path.display(), dir.display()),
            "run the session as root (the unit does), or fix the run directory's permissions",
        ),
    }
}

fn say(text: &str) -> anyhow::Result<()> {
    writeln!(io::stdout().lock(), "{text}").context("cannot write to stdout")
}

/// `gsyncd doctor`.
pub fn run(config_dir: &Path, a: &DoctorArgs) -> anyhow::Result<()> {
    let cfg = Config::load(config_dir, &a.session)?;
    for n in &cfg.file.notices {
        eprintln!("gsyncd: note: {n}");
    }
    // The mount checks change the working directory: the config directory
    // was used above; nothing after reads a relative path.
    let mut d = Doctor {
        url: cfg.secondary_url(),
        primary: opt(&cfg, "primary"),
        cfg: &cfg,
        probe: None,
        pvol: None,
        svol_ok: false,
        node: None,
    };
    let total = Step::ALL.len();
    let mut failed: Vec<(Step, Problem)> = Vec::new();
    let (mut passed, mut skipped) = (0, 0);
    for step in Step::ALL {
        let outcome = d.run(step);
        let head = format!("[{}/{total}] {step}:", step.number());
        match outcome {
            Outcome::Pass(t) => {
                passed += 1;
                say(&format!("{head} ok: {t}"))?;
            }
            Outcome::Skip(t) => {
                skipped += 1;
                say(&format!("{head} skipped: {t}"))?;
            }
            Outcome::Fail(p) => {
                say(&format!("{head} FAILED: {}", p.problem))?;
                say(&format!("      fix: {}", p.fix))?;
                failed.push((step, p));
                if !a.all {
                    break;
                }
            }
        }
    }
    let Some((step, first)) = failed.first().cloned() else {
        let skipped = if skipped > 0 { format!(", {skipped} skipped") } else { String::new() };
        return say(&format!("doctor: session {}: {passed} checks passed{skipped}", a.session));
    };
    if !a.all {
        say("doctor: stopped at the first failure (--all runs every check)")?;
    }
    let more = match &failed[1..] {
        [] => String::new(),
        rest => format!(
            " (and {} more failed: {})",
            rest.len(),
            rest.iter().map(|(s, _)| s.name()).collect::<Vec<_>>().join(", ")
        ),
    };
    Err(DoctorError::Failed { step, problem: first.problem, fix: first.fix, more }.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_numbered_in_order() {
        for (i, s) in Step::ALL.iter().enumerate() {
            assert_eq!(s.number(), i + 1);
        }
        let mut names: Vec<&str> = Step::ALL.iter().map(|s| s.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Step::ALL.len());
    }

    #[test]
    fn clock_skew_allows_the_round_trip() {
        assert!(clock_skew(100.0, 100.2, 100.1).is_ok());
        assert!(clock_skew(100.0, 100.2, 101.5).is_ok());
        assert!(clock_skew(100.0, 100.2, 105.0).is_err());
        assert!(clock_skew(100.0, 110.0, 112.0).is_ok(), "a slow round trip widens the bound");
        assert!(clock_skew(100.0, 100.2, 90.0).unwrap_err().starts_with("-10.10 s"));
    }

    #[test]
    fn versions_compare_by_number() {
        assert!(version_less("3.0.9", "3.1.0"));
        assert!(!version_less("3.1.0", "3.1.0"));
        assert!(!version_less("3.10.1", "3.9"));
        assert!(version_less("2.6.9pre1", "3.1.0"));
    }

    #[test]
    fn fuse_device_checks_the_kind() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(fuse_device(&d.path().join("fuse")), Outcome::Fail(p) if p.problem.contains("missing")));
        let f = d.path().join("plain");
        fs::write(&f, b"").unwrap();
        assert!(matches!(fuse_device(&f), Outcome::Fail(p) if p.problem.contains("not a character device")));
    }

    #[test]
    fn pid_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("run/monitor.pid");
        assert!(matches!(pid_file(&p, "s"), Outcome::Pass(t) if t.contains("can be created")));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, "4194305\n").unwrap();
        assert!(
            matches!(pid_file(&p, "s"), Outcome::Pass(t) if t.contains("did not exit cleanly") && t.contains("4194305"))
        );
        // (A lock held by this process does not show to it: the running
        // case is in tests/doctor.rs.)
        fs::remove_file(&p).unwrap();
        fs::create_dir(&p).unwrap();
        assert!(matches!(pid_file(&p, "s"), Outcome::Fail(_)));
    }

    #[test]
    fn stale_mount_points_are_named() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(stale_mounts(d.path(), "s"), Outcome::Pass(_)));
        fs::create_dir_all(d.path().join("mnt/vol.4194305")).unwrap();
        match stale_mounts(d.path(), "s") {
            Outcome::Fail(p) => {
                assert!(p.problem.contains("vol.4194305"), "{p}");
                assert!(p.fix.starts_with("gsyncd cleanup-mounts s"), "{p}");
            }
            o => panic!("{o:?}"),
        }
        assert!(d.path().join("mnt/vol.4194305").exists(), "doctor removes nothing");
    }
}
