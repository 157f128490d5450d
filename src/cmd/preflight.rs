//! Checks that `gsyncd create` and `gsyncd doctor` share: each one finds a
//! [`Problem`] (what is wrong, and how to fix it); the command decides the
//! step it belongs to and how to report it.
//!
//! Also the extended `gsyncd --version` report ([`version_report`]), which
//! the ssh gate admits: it tells the primary the secondary's gsyncd, rsync,
//! tar and glusterfs versions, its clock, and whether it runs as an ssh
//! forced command, without any new remote command.

use std::fmt;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::value::SecondaryUrl;
use crate::config::{self, Config, schema};
use crate::gluster::auxmount::{self, MountOptions, Mounter};
use crate::gluster::cli::{self as gcli, GlusterCliError};
use crate::gluster::volinfo::{VolInfoError, Volume};

/// What a check found wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub problem: String,
    pub fix: String,
}

impl Problem {
    pub fn new(problem: impl Into<String>, fix: impl Into<String>) -> Problem {
        Problem { problem: problem.into(), fix: fix.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; to fix: {}", self.problem, self.fix)
    }
}

/// An option's effective value, expanded, as text.
pub fn opt(cfg: &Config, name: &str) -> String {
    schema::spec(name).map(|s| cfg.expanded(s, &config::no_extra).to_string()).unwrap_or_default()
}

pub fn opt_int(cfg: &Config, name: &str, default: u64) -> u64 {
    opt(cfg, name).parse().unwrap_or(default)
}

/// An error and its causes on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// A host as ssh and the gluster CLI take it (no IPv6 brackets).
pub fn bare_host(host: &str) -> &str {
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

pub fn ssh_target(url: &SecondaryUrl) -> String {
    match &url.user {
        Some(u) => format!("{u}@{}", bare_host(&url.host)),
        None => bare_host(&url.host).to_owned(),
    }
}

/// A command's stderr and stdout on one line.
pub fn output_text(o: &Output) -> String {
    let mut t = String::from_utf8_lossy(&o.stderr).trim().to_owned();
    let out = String::from_utf8_lossy(&o.stdout);
    if !out.trim().is_empty() {
        if !t.is_empty() {
            t.push_str(" | ");
        }
        t.push_str(out.trim());
    }
    t.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" | ")
}

/// This node's name.
pub fn hostname() -> String {
    nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "localhost".into())
}

/// The gsyncd program named on the secondary (the forced command runs the
/// gate whatever it is).
pub fn remote_gsyncd(cfg: &Config) -> String {
    match opt(cfg, "remote-gsyncd") {
        g if g.is_empty() => "gsyncd".to_owned(),
        g => g,
    }
}

// ------------------------------------------------------------------ gluster

/// The gluster CLI as the session runs it.
#[derive(Debug)]
pub struct Gluster {
    pub bin: PathBuf,
    cli: Vec<String>,
}

impl Gluster {
    /// This node's glusterd, with the session's CLI settings.
    pub fn local(cfg: &Config) -> Gluster {
        let command = opt(cfg, "gluster-command");
        let bin = if command.contains('/') {
            PathBuf::from(&command)
        } else {
            Path::new(&opt(cfg, "gluster-command-dir")).join(&command)
        };
        Gluster { bin, cli: opt(cfg, "gluster-cli-options").split_whitespace().map(str::to_owned).collect() }
    }

    /// The glusterd of another host (read-only queries only: glusterd refuses
    /// changes from other hosts).
    pub fn remote(cfg: &Config, host: &str) -> Gluster {
        Gluster { cli: vec![format!("--remote-host={}", bare_host(host))], ..Gluster::local(cfg) }
    }

    pub fn info(&self, volume: &str) -> Result<Volume, GlusterCliError> {
        let cli: Vec<&str> = self.cli.iter().map(String::as_str).collect();
        gcli::volume_info(&self.bin, &cli, volume)
    }

    /// `gluster volume set`, retried while glusterd is busy with another
    /// transaction.
    pub fn set(&self, volume: &str, key: &str, value: &str) -> Result<(), String> {
        let shown = format!("gluster volume set {volume} {key} {value}");
        let mut last = String::new();
        for _ in 0..20 {
            let out = Command::new(&self.bin)
                .args(&self.cli)
                .args(["--mode=script", "volume", "set", volume, key, value])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
            if out.status.success() {
                return Ok(());
            }
            last = output_text(&out);
            if !["Another transaction", "Locking failed", "is busy"].iter().any(|b| last.contains(b)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Err(format!("{shown}: {last}"))
    }
}

/// Whether the gluster CLI said that the volume does not exist.
pub fn no_such_volume(e: &GlusterCliError) -> bool {
    match e {
        GlusterCliError::VolInfo(VolInfoError::NoSuchVolume(_)) => true,
        GlusterCliError::VolInfo(VolInfoError::Cli { message, .. }) => message.contains("does not exist"),
        _ => false,
    }
}

/// The primary volume exists on this node's glusterd and is Started.
pub fn primary_volume(local: &Gluster, primary: &str) -> Result<Volume, Problem> {
    let vol = match local.info(primary) {
        Ok(v) => v,
        Err(e) if no_such_volume(&e) => {
            return Err(Problem::new(
                format!("volume {primary} does not exist on this node's glusterd"),
                "create the primary volume first, or name the right one (gsyncd create --primary, or option primary; `gluster volume list` shows them)",
            ));
        }
        Err(e) => {
            return Err(Problem::new(
                format!("cannot read volume {primary}: {}", chain(&e)),
                "make sure glusterd runs on this node (systemctl status glusterd) and gluster-command-dir names the gluster CLI",
            ));
        }
    };
    if !vol.is_started() {
        return Err(Problem::new(
            format!("volume {primary} is {}, not Started", vol.status),
            format!("gluster volume start {primary}"),
        ));
    }
    Ok(vol)
}

/// The secondary volume exists and is Started, asked of the secondary
/// host's glusterd (`gluster --remote-host`: the gate admits no gluster
/// command).
pub fn secondary_volume(cfg: &Config, url: &SecondaryUrl) -> Result<Volume, Problem> {
    let vol = match Gluster::remote(cfg, &url.host).info(&url.volume) {
        Ok(v) => v,
        Err(e) if no_such_volume(&e) => {
            return Err(Problem::new(
                format!("volume {} does not exist on {}", url.volume, url.host),
                "create and start it on the secondary cluster, or correct the secondary option",
            ));
        }
        Err(e) => {
            return Err(Problem::new(
                format!("cannot ask glusterd on {} about {}: {}", url.host, url.volume, chain(&e)),
                format!("glusterd on {} must answer this node on TCP port 24007 (gluster --remote-host)", url.host),
            ));
        }
    };
    if !vol.is_started() {
        return Err(Problem::new(
            format!("volume {} on {} is {}, not Started", url.volume, url.host, vol.status),
            format!("gluster volume start {} (on the secondary cluster)", url.volume),
        ));
    }
    Ok(vol)
}

/// The primary volume options geo-replication needs, with the value that
/// turns them on.
pub const VOLUME_OPTIONS: [(&str, &str); 2] = [("changelog.changelog", "on"), ("geo-replication.indexing", "on")];

/// Whether a volume option is on, in any of the spellings glusterd takes.
pub fn option_on(vol: &Volume, key: &str) -> bool {
    vol.option_on(key)
}

// -------------------------------------------------------------------- ssh

/// The session's own ssh (its options and key, nothing of the operator's:
/// batch mode, only the given identities, no control socket) to the
/// secondary, without the remote command.
pub fn session_ssh(cfg: &Config, url: &SecondaryUrl) -> Command {
    let mut c = Command::new(opt(cfg, "ssh-command"));
    c.args(opt(cfg, "ssh-options").split_whitespace())
        .args(["-p", &opt(cfg, "ssh-port")])
        .args(["-oBatchMode=yes", "-oIdentitiesOnly=yes", "-oConnectTimeout=15", "-oControlPath=none"])
        .arg(ssh_target(url))
        .stdin(Stdio::null());
    c
}

/// Which part of the ssh path to the secondary's gsyncd failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshFailure {
    /// ssh itself (exit status 255): not reachable, key not admitted, host
    /// key changed.
    Ssh(Problem),
    /// ssh got through, but no gsyncd answered.
    Gsyncd(Problem),
}

/// What the secondary's `gsyncd --version` said, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteVersion {
    pub report: VersionReport,
    /// Local unix time (seconds) just before ssh started and just after it
    /// ended: the secondary read its clock in between.
    pub sent: f64,
    pub received: f64,
}

fn unix_secs_f64(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Runs `gsyncd --version` (or `remote-gsyncd`) on the secondary with the
/// session's ssh and key; the gate admits exactly that. `pushed` only
/// changes the advice when ssh fails.
pub fn ask_version(cfg: &Config, url: &SecondaryUrl, pushed: bool) -> Result<RemoteVersion, SshFailure> {
    let port = opt(cfg, "ssh-port");
    let target = ssh_target(url);
    let remote_gsyncd = remote_gsyncd(cfg);
    let mut c = session_ssh(cfg, url);
    c.arg(format!("{remote_gsyncd} --version"));
    let sent = unix_secs_f64(SystemTime::now());
    let out = c.output().map_err(|e| {
        SshFailure::Ssh(Problem::new(
            format!("cannot run {}: {e}", opt(cfg, "ssh-command")),
            "install openssh-client, or set ssh-command",
        ))
    })?;
    let received = unix_secs_f64(SystemTime::now());
    let text = output_text(&out);
    let user = url.user_or_root();
    if out.status.code() == Some(255) {
        let install = if pushed {
            "the key was pushed, so check the sshd of the secondary (its AuthorizedKeysFile, and that it allows the user)"
                .to_owned()
        } else {
            format!(
                "add the session key's authorized_keys line (gsyncd create prints it) to ~{user}/.ssh/authorized_keys on {}, or run gsyncd create again with --push-key",
                url.host
            )
        };
        return Err(SshFailure::Ssh(Problem::new(
            format!("ssh -p {port} {target} with the session key failed: {text}"),
            format!("{install}; check that sshd listens on {} port {port} (option ssh-port)", url.host),
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout.lines().next().unwrap_or_default().trim().to_owned();
    if !out.status.success() || !first.starts_with("gsyncd ") {
        let why = if out.status.code() == Some(127) || text.contains("not found") {
            format!("{remote_gsyncd} is not installed on {} ({text})", url.host)
        } else if text.contains("refused") {
            format!("the ssh gate on {} refused `gsyncd --version`: {text}", url.host)
        } else {
            format!("`{remote_gsyncd} --version` on {} answered {first:?} ({}): {text}", url.host, out.status)
        };
        return Err(SshFailure::Gsyncd(Problem::new(
            why,
            format!(
                "install gsyncd {} on the secondary nodes (the authorized_keys line's command= names it), or set remote-gsyncd",
                env!("CARGO_PKG_VERSION")
            ),
        )));
    }
    Ok(RemoteVersion { report: VersionReport::parse(&stdout), sent, received })
}

/// Compatible gsyncd versions: the same major version, and for 0.x the same
/// minor version too.
pub fn compatible(ours: &str, theirs: &str) -> bool {
    let parse = |v: &str| {
        let mut it = v.split('.').map(|p| p.parse::<u64>().ok());
        (it.next().flatten(), it.next().flatten())
    };
    match (parse(ours), parse(theirs)) {
        ((Some(0), Some(a)), (Some(0), Some(b))) => a == b,
        ((Some(a), _), (Some(b), _)) => a != 0 && a == b,
        _ => false,
    }
}

// ------------------------------------------------------- version report

/// A program's version as `--version` printed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tool {
    /// Its version number (`unknown` when the output holds none) and path.
    Found {
        version: String,
        path: String,
    },
    Missing,
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tool::Found { version, path } => write!(f, "{version} ({path})"),
            Tool::Missing => f.write_str("missing"),
        }
    }
}

/// The first word of the first line that looks like a version number
/// (`rsync  version 3.2.7  protocol version 31`, `tar (GNU tar) 1.34`,
/// `glusterfs 10.3`).
pub fn version_word(text: &str) -> Option<String> {
    text.lines()
        .next()?
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()) && w.contains('.'))
        .map(|w| w.trim_end_matches([',', ';']).to_owned())
}

/// Runs `program --version`.
pub fn tool_version(program: &Path) -> Tool {
    match Command::new(program).arg("--version").stdin(Stdio::null()).stderr(Stdio::null()).output() {
        Ok(o) if o.status.success() => Tool::Found {
            version: version_word(&String::from_utf8_lossy(&o.stdout)).unwrap_or_else(|| "unknown".into()),
            path: program.display().to_string(),
        },
        _ => Tool::Missing,
    }
}

/// A program by name as a shell would find it in `PATH`, or the path given.
pub fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Where the ssh gate finds rsync and tar (it runs them from these
/// directories only), or glusterfs.
fn first_existing(name: &str, dirs: &[&str]) -> Option<PathBuf> {
    dirs.iter().map(|d| Path::new(d).join(name)).find(|p| p.exists())
}

/// What `gsyncd --version` alone prints: its own version on the first line
/// (as `gsyncd -V`), then one `NAME VALUE` line each for the rsync and tar
/// the ssh gate would run, glusterfs, this node's clock, and whether it runs
/// as an ssh forced command (sshd sets SSH_ORIGINAL_COMMAND only then).
pub fn version_report() -> String {
    let tool = |name: &str, dirs: &[&str]| match first_existing(name, dirs) {
        Some(p) => match tool_version(&p) {
            Tool::Found { version, path } => format!("{name} {version} {path}"),
            Tool::Missing => format!("{name} missing"),
        },
        None => format!("{name} missing"),
    };
    let clock = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    [
        format!("gsyncd {}", env!("CARGO_PKG_VERSION")),
        tool("rsync", &["/usr/bin", "/bin"]),
        tool("tar", &["/usr/bin", "/bin"]),
        tool("glusterfs", &["/usr/sbin", "/sbin", "/usr/bin"]),
        format!("clock {}.{:09}", clock.as_secs(), clock.subsec_nanos()),
        format!("forced-command {}", if std::env::var_os("SSH_ORIGINAL_COMMAND").is_some() { "yes" } else { "no" }),
    ]
    .iter()
    .map(|l| format!("{l}\n"))
    .collect()
}

/// [`version_report`] as read back; fields an older gsyncd does not print
/// are None.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionReport {
    pub gsyncd: String,
    pub rsync: Option<Tool>,
    pub tar: Option<Tool>,
    pub glusterfs: Option<Tool>,
    pub clock: Option<f64>,
    pub forced_command: Option<bool>,
}

impl VersionReport {
    pub fn parse(text: &str) -> VersionReport {
        let mut r = VersionReport::default();
        for line in text.lines() {
            let mut w = line.split_whitespace();
            let (Some(name), Some(value)) = (w.next(), w.next()) else { continue };
            let tool = || match value {
                "missing" => Tool::Missing,
                v => Tool::Found { version: v.to_owned(), path: w.clone().next().unwrap_or_default().to_owned() },
            };
            match name {
                "gsyncd" if r.gsyncd.is_empty() => r.gsyncd = value.to_owned(),
                "rsync" => r.rsync = Some(tool()),
                "tar" => r.tar = Some(tool()),
                "glusterfs" => r.glusterfs = Some(tool()),
                "clock" => r.clock = value.parse().ok(),
                "forced-command" => r.forced_command = Some(value == "yes"),
                _ => {}
            }
        }
        r
    }
}

// ----------------------------------------------------------------- mounts

/// The mount options of a session's aux mount of `volume` from
/// `volfile_server`, logging to `<gluster-logdir>/geo-replication/<session>/<log_name>`.
pub fn mount_options(
    cfg: &Config,
    volfile_server: &str,
    volume: &str,
    params: Vec<String>,
    log_name: &str,
) -> MountOptions {
    MountOptions {
        command_dir: PathBuf::from(opt(cfg, "gluster-command-dir")),
        volfile_server: volfile_server.to_owned(),
        volume: volume.to_owned(),
        log_file: Path::new(&opt(cfg, "gluster-logdir")).join("geo-replication").join(&cfg.session).join(log_name),
        log_level: "WARNING".into(),
        params,
        timeout: Duration::from_secs(opt_int(cfg, "connection-timeout", 60)),
    }
}

/// Where a check inside a mount failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountFailure {
    /// No private mount namespace (not root).
    Namespace(String),
    /// The volume did not mount.
    Mount(String),
    /// It mounted, but what ran inside failed.
    Inside(String),
}

/// Mounts `opts` under the session's `<run-dir>/mnt` in a private mount
/// namespace (this process moves into it: call before starting threads
/// that must see the shared one), guarded as the workers' mounts are so
/// that it is gone even if this process is killed, runs `inside` in it (as
/// the working directory), and unmounts. Directories it made are removed.
pub fn inside_private_mount<T>(
    cfg: &Config,
    opts: &MountOptions,
    inside: impl FnOnce() -> Result<T, String>,
) -> Result<T, MountFailure> {
    auxmount::private_namespace().map_err(|e| MountFailure::Namespace(chain(&e)))?;
    let exe =
        std::env::current_exe().map_err(|e| MountFailure::Mount(format!("cannot find this program's path: {e}")))?;
    let run_dir = PathBuf::from(opt(cfg, "run-dir"));
    let mnt = run_dir.join("mnt");
    let made_run_dir = !run_dir.exists();
    let made_mnt = !mnt.exists();
    let started = Instant::now();
    let result = match auxmount::mount_and_enter(opts, &Mounter::Direct { dir: mnt.clone() }, &exe) {
        Ok(entered) => {
            let r = cwd_is_fuse().and_then(|()| inside());
            if let Err(e) = entered.release() {
                tracing::warn!(error = %e, "could not unmount {} cleanly; its guard removes it", opts.volume);
            }
            r.map_err(MountFailure::Inside)
        }
        Err(e) => {
            Err(MountFailure::Mount(format!("cannot mount {}:{}: {}", opts.volfile_server, opts.volume, chain(&e))))
        }
    };
    tracing::debug!(volume = %opts.volume, elapsed_ms = started.elapsed().as_millis() as u64, "mount check done");
    // Leave no trace (after a failed mount the guard may still be removing
    // the mount point: then the next sweep removes what is left).
    if made_mnt {
        let _ = fs::remove_dir(&mnt);
    }
    if made_run_dir {
        let _ = fs::remove_dir(&run_dir);
    }
    result
}

/// Whether the working directory is a FUSE mount (a mount that failed
/// leaves a plain directory).
pub fn cwd_is_fuse() -> Result<(), String> {
    const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
    let fs_type = nix::sys::statfs::statfs(".").map_err(|e| format!("cannot statfs the mount: {e}"))?;
    if fs_type.filesystem_type().0 != FUSE_SUPER_MAGIC {
        return Err("the volume did not mount (its mount point is a plain directory)".into());
    }
    Ok(())
}

/// The names in the working directory but `ignored` ones, sorted.
pub fn list_cwd(ignored: &[&[u8]]) -> Result<Vec<Vec<u8>>, String> {
    let rd = fs::read_dir(".").map_err(|e| format!("cannot list the volume: {e}"))?;
    let mut names = Vec::new();
    for e in rd {
        let e = e.map_err(|e| format!("cannot list the volume: {e}"))?;
        let n = e.file_name().as_bytes().to_vec();
        if !ignored.contains(&n.as_slice()) {
            names.push(n);
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(compatible("0.1.0", "0.1.7"));
        assert!(!compatible("0.1.0", "0.2.0"));
        assert!(compatible("1.2.0", "1.9.1"));
        assert!(!compatible("1.2.0", "2.0.0"));
        assert!(!compatible("0.1.0", "x"));
        assert!(!compatible("0.1.0", ""));
    }

    #[test]
    fn hosts_lose_their_brackets() {
        assert_eq!(bare_host("[::1]"), "::1");
        assert_eq!(bare_host("dr1"), "dr1");
        let u = SecondaryUrl::parse("geo@dr1::sv").unwrap();
        assert_eq!(ssh_target(&u), "geo@dr1");
    }

    #[test]
    fn version_words() {
        assert_eq!(version_word("rsync  version 3.2.7  protocol version 31\nCopyright").as_deref(), Some("3.2.7"));
        assert_eq!(version_word("tar (GNU tar) 1.34\n").as_deref(), Some("1.34"));
        assert_eq!(version_word("bsdtar 3.6.2 - libarchive 3.6.2").as_deref(), Some("3.6.2"));
        assert_eq!(version_word("glusterfs 10.3\nRepository revision").as_deref(), Some("10.3"));
        assert_eq!(version_word("no numbers here"), None);
    }

    #[test]
    fn the_report_reads_back_and_keeps_its_first_line() {
        let text = version_report();
        assert_eq!(text.lines().next(), Some(concat!("gsyncd ", env!("CARGO_PKG_VERSION"))));
        let r = VersionReport::parse(&text);
        assert_eq!(r.gsyncd, env!("CARGO_PKG_VERSION"));
        assert!(r.rsync.is_some() && r.tar.is_some() && r.glusterfs.is_some());
        let now = unix_secs_f64(SystemTime::now());
        assert!(r.clock.is_some_and(|c| (now - c).abs() < 60.0), "{text}");
        assert!(r.forced_command.is_some());

        let r = VersionReport::parse(
            "gsyncd 0.1.0\nrsync 3.2.7 /usr/bin/rsync\ntar missing\nclock 1795469966.5\nforced-command yes\n",
        );
        assert_eq!(r.rsync, Some(Tool::Found { version: "3.2.7".into(), path: "/usr/bin/rsync".into() }));
        assert_eq!(r.tar, Some(Tool::Missing));
        assert_eq!(r.glusterfs, None);
        assert_eq!(r.clock, Some(1_795_469_966.5));
        assert_eq!(r.forced_command, Some(true));
        // An older gsyncd prints one line.
        let r = VersionReport::parse("gsyncd 0.1.0\n");
        assert_eq!((r.gsyncd.as_str(), r.rsync, r.clock, r.forced_command), ("0.1.0", None, None, None));
    }
}
