//! `gsyncd create` and `gsyncd delete`: a session's life on this node.
//!
//! `create` checks, in order, and stops at the first failure with the step's
//! name and its fix (gsyncd-create(8)):
//!
//! 1. the primary volume exists and is started (`gluster --xml volume info`
//!    on this node);
//! 2. the session's ssh key pair exists (made with ssh-keygen if not) at
//!    `<state-dir>/ssh/secret.pem`, where the default `ssh-options` look for
//!    it; the `authorized_keys` line for the ssh gate is printed;
//! 3. with `--push-key`, that line is added to the secondary user's
//!    `authorized_keys` over ssh with the operator's own access;
//! 4. ssh with the session's options and key runs `gsyncd --version` on the
//!    secondary (through the gate, which admits it) and the version matches;
//! 5. the secondary volume exists and is started (`gluster
//!    --remote-host=HOST --xml volume info`: the gate admits no gluster
//!    command, and glusterd answers read-only queries from other hosts);
//! 6. the secondary volume is empty but for `.trashcan` (a read-only mount
//!    of it in a private mount namespace, guarded as the workers' mounts are,
//!    so it is gone even if create is killed);
//!
//! then turns on `changelog.changelog` and `geo-replication.indexing` on the
//! primary, with `--push-key` `features.read-only` on the secondary (our
//! secondary writes through a `client-pid=-1` mount, which the read-only
//! translator lets through, as the reference's), and writes the session file.
//!
//! `delete` holds the session's pid file lock while it removes the session's
//! state, run directory and file, so the session cannot start meanwhile;
//! `--reset-sync-time` first removes the session's stime and entry_stime
//! xattrs from this node's primary brick roots.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

use crate::cli::{CreateArgs, DeleteArgs};
use crate::cmd::preflight::{
    self, Gluster, MountFailure, Problem, SshFailure, bare_host, chain, opt, output_text, ssh_target,
};
use crate::config::schema::{self, OptionSpec};
use crate::config::value::{self, SecondaryUrl, Source, Value};
use crate::config::{self, Config, ConfigError, DirLock, SessionFile};
use crate::exit::{Exit, HasExit};
use crate::gluster::cli as gcli;
use crate::gluster::mount::{self, SweepRoot};
use crate::gluster::uuid::Uuid;
use crate::gluster::xattr::keys;
use crate::supervisor::pidfile::{self, PidFile, PidFileError};

/// Where the printed `authorized_keys` line runs the gate when the session
/// does not set `remote-gsyncd`.
pub const DEFAULT_REMOTE_GSYNCD: &str = "/usr/bin/gsyncd";

/// The session key's file name under `<state-dir>/ssh/` (the default
/// `ssh-options` name it); `tar_ssh.pem` (of `ssh-options-tar`) is a symlink
/// to it, since the gate admits the tar receive to the same key.
pub const KEY_NAME: &str = "secret.pem";
pub const TAR_KEY_NAME: &str = "tar_ssh.pem";

/// What the emptiness check ignores at the secondary's root.
const IGNORED_AT_ROOT: &[&[u8]] = &[b".trashcan"];

/// The checks of `create`, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    PrimaryVolume,
    SessionKey,
    PushKey,
    Ssh,
    SecondaryGsyncd,
    SecondaryVolume,
    SecondaryEmpty,
    VolumeOptions,
}

/// Steps as numbered in the output; the last one writes the session file.
const STEPS: u8 = 8;

impl Step {
    /// Every check, in order.
    pub const ALL: [Step; 8] = [
        Step::PrimaryVolume,
        Step::SessionKey,
        Step::PushKey,
        Step::Ssh,
        Step::SecondaryGsyncd,
        Step::SecondaryVolume,
        Step::SecondaryEmpty,
        Step::VolumeOptions,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::PrimaryVolume => "primary volume",
            Step::SessionKey => "session key",
            Step::PushKey => "push key",
            Step::Ssh => "ssh",
            Step::SecondaryGsyncd => "secondary gsyncd",
            Step::SecondaryVolume => "secondary volume",
            Step::SecondaryEmpty => "secondary empty",
            Step::VolumeOptions => "volume options",
        }
    }

    fn number(self) -> u8 {
        match self {
            Step::PrimaryVolume => 1,
            Step::SessionKey => 2,
            Step::PushKey => 3,
            Step::Ssh | Step::SecondaryGsyncd => 4,
            Step::SecondaryVolume => 5,
            Step::SecondaryEmpty => 6,
            Step::VolumeOptions => 7,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(
        "session {session:?} already exists ({}): add --force to check it again and update it (its other options stay), or remove it first with `gsyncd delete {session}`",
        .path.display()
    )]
    Exists { session: String, path: PathBuf },
    #[error("session {session:?} is running (pid {pid}): stop it first (systemctl stop gsyncd@{session}.service)")]
    Running { session: String, pid: String },
    #[error("check {step} failed: {problem}; to fix: {fix}")]
    Check { step: Step, problem: String, fix: String },
}

impl HasExit for CreateError {
    fn exit(&self) -> Exit {
        match self {
            CreateError::Running { .. } => Exit::AlreadyRunning,
            CreateError::Exists { .. } | CreateError::Check { .. } => Exit::Failure,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error(
        "session {session:?} is running (pid {pid}): stop it first (systemctl stop gsyncd@{session}.service), then delete it"
    )]
    Running { session: String, pid: String },
    #[error("reset-sync-time: {problem}; to fix: {fix}. Nothing was deleted")]
    Reset { problem: String, fix: String },
    #[error("cannot remove {}: {reason}", .path.display())]
    Remove { path: PathBuf, reason: String },
}

impl HasExit for DeleteError {
    fn exit(&self) -> Exit {
        match self {
            DeleteError::Running { .. } => Exit::AlreadyRunning,
            DeleteError::Reset { .. } | DeleteError::Remove { .. } => Exit::Failure,
        }
    }
}

fn check(step: Step, problem: impl Into<String>, fix: impl Into<String>) -> CreateError {
    CreateError::Check { step, problem: problem.into(), fix: fix.into() }
}

/// A shared check's problem as the failure of `step`.
fn at(step: Step) -> impl Fn(Problem) -> CreateError {
    move |p| CreateError::Check { step, problem: p.problem, fix: p.fix }
}

fn say(text: &str) -> anyhow::Result<()> {
    writeln!(io::stdout().lock(), "{text}").context("cannot write to stdout")
}

fn progress(step: Step, text: &str) -> anyhow::Result<()> {
    say(&format!("[{}/{STEPS}] {step}: {text}", step.number()))
}

/// Quotes a word for a POSIX shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

// ---------------------------------------------------------------- the key

/// The session's key pair.
#[derive(Debug)]
pub struct SessionKey {
    pub private: PathBuf,
    /// `ssh-ed25519 AAAA... comment`.
    pub public: String,
    pub created: bool,
}

fn keygen_error(problem: String) -> CreateError {
    check(
        Step::SessionKey,
        problem,
        "make sure ssh-keygen (openssh-client) is installed and the state directory is writable",
    )
}

/// Makes the key pair under `ssh_dir` if it is not there, and returns it.
/// An existing key is kept (so that lines already installed stay valid);
/// its mode is made 0600.
pub fn ensure_key(ssh_dir: &Path, comment: &str) -> Result<SessionKey, CreateError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(ssh_dir)
        .and_then(|()| fs::set_permissions(ssh_dir, fs::Permissions::from_mode(0o700)))
        .map_err(|e| keygen_error(format!("cannot create {}: {e}", ssh_dir.display())))?;
    let private = ssh_dir.join(KEY_NAME);
    let public_path = ssh_dir.join(format!("{KEY_NAME}.pub"));
    let created = !private.exists();
    if created {
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(&private)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| keygen_error(format!("cannot run ssh-keygen: {e}")))?;
        if !out.status.success() {
            return Err(keygen_error(format!("ssh-keygen failed: {}", output_text(&out))));
        }
    }
    fs::set_permissions(&private, fs::Permissions::from_mode(0o600))
        .map_err(|e| keygen_error(format!("cannot set the mode of {}: {e}", private.display())))?;
    // The public half, from the private key itself: this also proves the
    // key is readable without a passphrase, as the workers need.
    let out = Command::new("ssh-keygen")
        .args(["-y", "-P", "", "-f"])
        .arg(&private)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| keygen_error(format!("cannot run ssh-keygen: {e}")))?;
    if !out.status.success() {
        return Err(keygen_error(format!(
            "{} is not a key ssh can use without a passphrase: {}",
            private.display(),
            output_text(&out)
        )));
    }
    let derived = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    // `-y` drops the comment; keep the one in the .pub file when it is the
    // same key.
    let public = match fs::read_to_string(&public_path) {
        Ok(p) if p.trim().starts_with(&derived) => p.trim().to_owned(),
        _ => {
            let p = format!("{derived} {comment}");
            fs::write(&public_path, format!("{p}\n"))
                .map_err(|e| keygen_error(format!("cannot write {}: {e}", public_path.display())))?;
            p
        }
    };
    for (link, target) in
        [(TAR_KEY_NAME.to_owned(), KEY_NAME.to_owned()), (format!("{TAR_KEY_NAME}.pub"), format!("{KEY_NAME}.pub"))]
    {
        let l = ssh_dir.join(link);
        if fs::symlink_metadata(&l).is_err() {
            std::os::unix::fs::symlink(&target, &l)
                .map_err(|e| keygen_error(format!("cannot link {} to {target}: {e}", l.display())))?;
        }
    }
    Ok(SessionKey { private, public, created })
}

/// The `authorized_keys` line that restricts the key to the ssh gate and the
/// session's secondary volume (gsyncd-secondary(8)).
pub fn authorized_keys_line(remote_gsyncd: &str, volume: &str, public: &str) -> String {
    format!(
        "command=\"{remote_gsyncd} ssh-gate --volume {volume}\",no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-pty {public}"
    )
}

// -------------------------------------------------------------------- ssh

/// `ssh -p PORT [options] TARGET` with the operator's own identity (agent,
/// ~/.ssh, ~/.ssh/config, a password prompt on a terminal), trusting the
/// host key on first use into the session's known_hosts, which the
/// session's own ssh reads later.
fn operator_ssh(cfg: &Config, url: &SecondaryUrl, known_hosts: &Path) -> Command {
    let mut c = Command::new(opt(cfg, "ssh-command"));
    c.args(["-p", &opt(cfg, "ssh-port")])
        .arg("-oStrictHostKeyChecking=accept-new")
        .arg(format!("-oUserKnownHostsFile={}", known_hosts.display()))
        .args(["-oConnectTimeout=15", "-oControlPath=none"])
        .arg(ssh_target(url));
    c
}

/// The shell program that `--push-key` runs on the secondary: reads the
/// line on stdin and adds it to the file (`$1`, or ~/.ssh/authorized_keys)
/// unless it is there, making the directory and file private if new. It
/// holds no single quote, so it can be quoted whole.
const PUSH_SCRIPT: &str = "set -e; umask 077; f=${1:-$HOME/.ssh/authorized_keys}; \
    mkdir -p \"$(dirname \"$f\")\"; IFS= read -r line; touch \"$f\"; \
    if grep -qxF -e \"$line\" \"$f\"; then echo gsyncd-push-key: present; exit 0; fi; \
    if [ -s \"$f\" ] && [ -n \"$(tail -c 1 \"$f\")\" ]; then echo >> \"$f\"; fi; \
    printf \"%s\\n\" \"$line\" >> \"$f\"; echo gsyncd-push-key: added";

/// The remote command of `--push-key`.
pub fn push_command(file: Option<&str>) -> String {
    format!("sh -c {} gsyncd-push-key {}", sh_quote(PUSH_SCRIPT), sh_quote(file.unwrap_or("")))
}

fn push_key(
    cfg: &Config,
    url: &SecondaryUrl,
    known_hosts: &Path,
    line: &str,
    file: Option<&str>,
) -> Result<bool, CreateError> {
    let fix = format!(
        "make sure you can `ssh -p {} {}` yourself (a key in your agent or ~/.ssh, or a password), or add the line above to the secondary user's authorized_keys by hand and run create without --push-key",
        opt(cfg, "ssh-port"),
        ssh_target(url)
    );
    let mut c = operator_ssh(cfg, url, known_hosts);
    c.arg(push_command(file)).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child =
        c.spawn().map_err(|e| check(Step::PushKey, format!("cannot run {}: {e}", opt(cfg, "ssh-command")), &fix))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A remote side that is gone already shows in the exit status.
        let _ = stdin.write_all(format!("{line}\n").as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| check(Step::PushKey, format!("ssh: {e}"), &fix))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && text.contains("gsyncd-push-key: added") {
        return Ok(true);
    }
    if out.status.success() && text.contains("gsyncd-push-key: present") {
        return Ok(false);
    }
    Err(check(
        Step::PushKey,
        format!("installing the key over ssh to {} failed ({}): {}", ssh_target(url), out.status, output_text(&out)),
        fix,
    ))
}

/// Step 4: the session's ssh (its options, its key and nothing else) runs
/// `gsyncd --version` on the secondary. Returns the version it printed, and
/// whether it is compatible with this node's.
fn check_ssh(cfg: &Config, url: &SecondaryUrl, force: bool, pushed: bool) -> Result<(String, bool), CreateError> {
    let reply = preflight::ask_version(cfg, url, pushed).map_err(|f| match f {
        SshFailure::Ssh(p) => at(Step::Ssh)(p),
        SshFailure::Gsyncd(p) => at(Step::SecondaryGsyncd)(p),
    })?;
    let theirs = reply.report.gsyncd;
    let ours = env!("CARGO_PKG_VERSION");
    let ok = preflight::compatible(ours, &theirs);
    if !ok && !force {
        return Err(check(
            Step::SecondaryGsyncd,
            format!("the secondary runs gsyncd {theirs}, this node {ours}"),
            "install the same gsyncd version on both sides, or run again with --force",
        ));
    }
    Ok((theirs, ok))
}

// --------------------------------------------------------- secondary empty

/// Step 6: the names at the secondary volume's root, but `.trashcan`,
/// through a read-only mount in a private namespace under the session's
/// run directory, guarded so that it goes even if create dies.
fn secondary_entries(cfg: &Config, url: &SecondaryUrl) -> Result<Vec<Vec<u8>>, CreateError> {
    let fix_mount = format!(
        "the secondary volume must be mountable from this node (glusterd on {} at TCP port 24007 and its bricks' ports); or skip this check with --force",
        url.host
    );
    let opts = preflight::mount_options(
        cfg,
        bare_host(&url.host),
        &url.volume,
        vec!["read-only".into()],
        "create-secondary-check.log",
    );
    preflight::inside_private_mount(cfg, &opts, || preflight::list_cwd(IGNORED_AT_ROOT)).map_err(|f| match f {
        MountFailure::Namespace(e) => {
            check(Step::SecondaryEmpty, e, "run create as root, or skip this check with --force")
        }
        MountFailure::Mount(e) | MountFailure::Inside(e) => check(Step::SecondaryEmpty, e, &fix_mount),
    })
}

// ----------------------------------------------------------------- create

/// The options `create` sets: `--set` pairs first, then the named flags,
/// which win.
fn wanted_values(a: &CreateArgs) -> Result<Vec<(&'static OptionSpec, Value)>, ConfigError> {
    let mut out = Vec::new();
    for pair in &a.set {
        let Some((name, text)) = pair.split_once('=') else {
            return Err(ConfigError::InvalidValue { name: pair.clone(), reason: "--set takes NAME=VALUE".into() });
        };
        out.push(parse_setting(name, text)?);
    }
    out.push(parse_setting("primary", &a.primary)?);
    out.push(parse_setting("secondary", &a.secondary)?);
    if let Some(p) = a.ssh_port {
        out.push(parse_setting("ssh-port", &p.to_string())?);
    }
    Ok(out)
}

/// Checks one option as `gsyncd config set` does.
fn parse_setting(name: &str, text: &str) -> Result<(&'static OptionSpec, Value), ConfigError> {
    let l = schema::lookup(name)
        .ok_or_else(|| ConfigError::UnknownOption { name: name.to_owned(), suggestions: schema::suggestions(name) })?;
    if let Some(reason) = l.spec.dead {
        return Err(ConfigError::NotConfigurable {
            name: name.to_owned(),
            reason: format!("it has no effect: {reason}"),
        });
    }
    if !l.spec.configurable {
        return Err(ConfigError::NotConfigurable {
            name: name.to_owned(),
            reason: format!("gsyncd sets it ({})", l.spec.default),
        });
    }
    let text = if l.use_tarssh {
        match value::parse_bool(text) {
            Some(true) => "tarssh",
            Some(false) => "rsync",
            None => {
                return Err(ConfigError::InvalidValue {
                    name: name.to_owned(),
                    reason: format!("{text:?} is not a boolean; use true or false (or set sync-method)"),
                });
            }
        }
    } else {
        text
    };
    let v = value::parse_text(l.spec, text, Source::CommandLine)
        .map_err(|e| ConfigError::InvalidValue { name: l.spec.name.to_owned(), reason: e.0 })?;
    Ok((l.spec, v))
}

/// The session file as create leaves it: the existing one (with --force) or
/// a new one, with `values` set.
fn session_file(
    path: &Path,
    session: &str,
    values: &[(&'static OptionSpec, Value)],
) -> Result<(SessionFile, bool), ConfigError> {
    let existed = path.exists();
    let mut file = if existed { SessionFile::load(path)? } else { SessionFile::new(path.to_owned(), session) };
    for (spec, v) in values {
        file.set(spec, v.clone());
    }
    Ok((file, existed))
}

fn pid_of(path: &Path) -> String {
    fs::read_to_string(path).map(|s| s.trim().to_owned()).unwrap_or_else(|_| "unknown".into())
}

/// `gsyncd create`.
pub fn create(config_dir: &Path, a: &CreateArgs) -> anyhow::Result<()> {
    // The emptiness check changes the working directory: make every path
    // absolute first.
    let config_dir = std::path::absolute(config_dir)
        .map_err(ConfigError::io("cannot make the config directory absolute", config_dir))?;
    let path = config::session_path(&config_dir, &a.session)?;
    let values = wanted_values(a)?;
    if path.exists() && !a.force {
        return Err(CreateError::Exists { session: a.session.clone(), path }.into());
    }
    let (file, existed) = session_file(&path, &a.session, &values)?;
    for n in &file.notices {
        eprintln!("gsyncd: note: {n}");
    }
    let cfg = Config { session: a.session.clone(), file };
    let pid_path = PathBuf::from(opt(&cfg, "pid-file"));
    if existed && pidfile::is_locked(&pid_path) {
        return Err(CreateError::Running { session: a.session.clone(), pid: pid_of(&pid_path) }.into());
    }
    let Some(url) = cfg.secondary_url() else {
        // Validated above; only a broken schema gets here.
        anyhow::bail!("--secondary {:?} is not [user@]host::volume", a.secondary);
    };
    let primary = a.primary.clone();

    // 1. The primary volume.
    let local = Gluster::local(&cfg);
    let pvol = preflight::primary_volume(&local, &primary).map_err(at(Step::PrimaryVolume))?;
    let local_bricks = gcli::local_node_uuid(Path::new(&opt(&cfg, "glusterd-workdir")))
        .map(|node| pvol.bricks.iter().filter(|b| b.host_uuid == node).count())
        .ok();
    progress(
        Step::PrimaryVolume,
        &format!(
            "{primary} is Started (bricks: {}{})",
            pvol.bricks.len(),
            match local_bricks {
                Some(n) => format!(", {n} on this node"),
                None => String::new(),
            }
        ),
    )?;
    if local_bricks == Some(0) {
        say(
            "      note: no brick of the primary volume is on this node; run create on the nodes that hold its bricks",
        )?;
    }

    // 2. The session key.
    let state_dir = PathBuf::from(opt(&cfg, "state-dir"));
    let ssh_dir = state_dir.join("ssh");
    let host = preflight::hostname();
    let key = ensure_key(&ssh_dir, &format!("gsyncd:{}@{host}", a.session))?;
    let remote_gsyncd = match opt(&cfg, "remote-gsyncd") {
        g if g.is_empty() => DEFAULT_REMOTE_GSYNCD.to_owned(),
        g => g,
    };
    if remote_gsyncd.contains(['"', '\\']) || remote_gsyncd.contains(char::is_whitespace) {
        return Err(check(
            Step::SessionKey,
            format!("remote-gsyncd {remote_gsyncd:?} cannot go into an authorized_keys command"),
            "set remote-gsyncd to a plain path",
        )
        .into());
    }
    let line = authorized_keys_line(&remote_gsyncd, &url.volume, &key.public);
    progress(Step::SessionKey, &format!("{} {}", if key.created { "created" } else { "kept" }, key.private.display()))?;
    let user = url.user_or_root();
    say(&format!(
        "      authorized_keys line for {user} on {} ({}):",
        url.host,
        a.authorized_keys.as_deref().map_or_else(|| format!("~{user}/.ssh/authorized_keys"), str::to_owned)
    ))?;
    say(&line)?;

    // 3. Push it.
    let known_hosts = ssh_dir.join("known_hosts");
    if a.push_key {
        let added = push_key(&cfg, &url, &known_hosts, &line, a.authorized_keys.as_deref())?;
        progress(Step::PushKey, &format!("{} on {}", if added { "added" } else { "already there" }, ssh_target(&url)))?;
    } else {
        progress(Step::PushKey, "skipped (no --push-key)")?;
    }

    // 4. ssh with the session key, and the secondary's gsyncd.
    let (theirs, same) = check_ssh(&cfg, &url, a.force, a.push_key)?;
    progress(
        Step::Ssh,
        &format!(
            "{} port {} with the session key runs gsyncd {theirs}{}",
            ssh_target(&url),
            opt(&cfg, "ssh-port"),
            if same { "" } else { " (another version than this node's; going on because of --force)" }
        ),
    )?;

    // 5. The secondary volume.
    let svol = preflight::secondary_volume(&cfg, &url).map_err(at(Step::SecondaryVolume))?;
    progress(
        Step::SecondaryVolume,
        &format!("{} on {} is Started (bricks: {})", url.volume, url.host, svol.bricks.len()),
    )?;

    // 6. Empty.
    if a.force {
        progress(Step::SecondaryEmpty, "skipped (--force)")?;
    } else {
        let names = secondary_entries(&cfg, &url)?;
        if !names.is_empty() {
            let shown: Vec<String> = names.iter().take(5).map(|n| n.escape_ascii().to_string()).collect();
            return Err(check(
                Step::SecondaryEmpty,
                format!(
                    "volume {} is not empty: it holds {}{}",
                    url.volume,
                    shown.join(", "),
                    if names.len() > 5 { format!(" and {} more", names.len() - 5) } else { String::new() }
                ),
                "empty it, use another volume, or run again with --force to sync into it as it is (entries with other GFIDs are then resolved as conflicts)",
            )
            .into());
        }
        progress(Step::SecondaryEmpty, &format!("{} holds nothing", url.volume))?;
    }

    // 7. Volume options.
    let mut done = Vec::new();
    for (k, v) in preflight::VOLUME_OPTIONS {
        if !preflight::option_on(&pvol, k) {
            local.set(&primary, k, v).map_err(|e| {
                check(
                    Step::VolumeOptions,
                    e,
                    format!("run `gluster volume set {primary} {k} {v}` and see glusterd's log"),
                )
            })?;
        }
        done.push(format!("{primary} {k} {v}"));
    }
    let read_only = "features.read-only";
    let gluster_there = format!("{}/gluster", opt(&cfg, "secondary-gluster-command-dir").trim_end_matches('/'));
    let ro_command = format!("{gluster_there} volume set {} {read_only} on", url.volume);
    let mut advice = None;
    if svol.option(read_only) == Some("on") {
        done.push(format!("{} {read_only} on", url.volume));
    } else if a.push_key {
        let mut c = operator_ssh(&cfg, &url, &known_hosts);
        let out = c
            .arg(format!("{gluster_there} --mode=script volume set {} {read_only} on", url.volume))
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => done.push(format!("{} {read_only} on", url.volume)),
            Ok(o) => advice = Some(format!("could not set it over ssh ({})", output_text(&o))),
            Err(e) => advice = Some(format!("could not run ssh: {e}")),
        }
    } else {
        advice = Some("not set without --push-key".to_owned());
    }
    progress(Step::VolumeOptions, &done.join(", "))?;
    if let Some(why) = advice {
        say(&format!(
            "      note: {read_only} of {} is off ({why}); to keep anything but gsyncd from writing there, run as root on {}: {ro_command}",
            url.volume, url.host
        ))?;
    }

    // 8. The session file, under the directory lock; reloaded, so that a
    // change made meanwhile is kept.
    fs::create_dir_all(&config_dir).map_err(ConfigError::io("cannot create config directory", &config_dir))?;
    let _lock = DirLock::acquire(&config_dir)?;
    if path.exists() && !a.force {
        return Err(CreateError::Exists { session: a.session.clone(), path }.into());
    }
    let mut values = values;
    if let Some(spec) = schema::spec("stime-xattr-prefix") {
        values.push((spec, Value::Str(keys::session_prefix(&pvol.id, &svol.id))));
    }
    let (file, existed) = session_file(&path, &a.session, &values)?;
    file.save()?;
    say(&format!("[{STEPS}/{STEPS}] session file: {} {}", if existed { "updated" } else { "wrote" }, path.display()))?;
    say(&format!("Start the session with: systemctl enable --now gsyncd@{}.service", a.session))?;
    tracing::info!(session = %a.session, primary = %primary, secondary = %url, "session created");
    Ok(())
}

// ----------------------------------------------------------------- delete

/// Removes a directory tree without crossing into another file system (a
/// mount left inside is an error, never descended into).
fn remove_tree(path: &Path) -> Result<(), DeleteError> {
    let fail = |p: &Path, reason: String| DeleteError::Remove { path: p.to_owned(), reason };
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fail(path, e.to_string())),
    };
    if !meta.is_dir() {
        return fs::remove_file(path).map_err(|e| fail(path, e.to_string()));
    }
    let prefix = path.as_os_str().as_bytes();
    let inside = mount::mounts()
        .unwrap_or_default()
        .into_iter()
        .find(|m| m.mount_point.as_os_str().as_bytes().starts_with(prefix) && m.mount_point.starts_with(path));
    if let Some(m) = inside {
        return Err(fail(
            path,
            format!("{} is mounted inside it; unmount it first (gsyncd cleanup-mounts)", m.mount_point.display()),
        ));
    }
    fn walk(dir: &Path, dev: u64, fail: &dyn Fn(&Path, String) -> DeleteError) -> Result<(), DeleteError> {
        for e in fs::read_dir(dir).map_err(|e| fail(dir, e.to_string()))? {
            let e = e.map_err(|e| fail(dir, e.to_string()))?;
            let p = e.path();
            let m = fs::symlink_metadata(&p).map_err(|e| fail(&p, e.to_string()))?;
            if m.is_dir() {
                if m.dev() != dev {
                    return Err(fail(&p, "another file system is mounted there; unmount it first".into()));
                }
                walk(&p, dev, fail)?;
            } else {
                fs::remove_file(&p).map_err(|e| fail(&p, e.to_string()))?;
            }
        }
        fs::remove_dir(dir).map_err(|e| fail(dir, e.to_string()))
    }
    walk(path, meta.dev(), &fail)
}

/// Whether `name` is an stime or entry_stime key of primary volume `pv`
/// for any secondary: `trusted.glusterfs.<pv>.<uuid>.stime|entry_stime`.
pub fn is_primary_stime_key(name: &str, pv: &Uuid) -> bool {
    let Some(rest) = name.strip_prefix(&format!("trusted.glusterfs.{pv}.")) else { return false };
    let Some((sv, what)) = rest.split_once('.') else { return false };
    Uuid::parse_str(sv).is_ok() && (what == "stime" || what == "entry_stime")
}

/// The stime prefixes other sessions in the config directory recorded.
fn other_sessions_prefixes(config_dir: &Path, session: &str) -> BTreeSet<String> {
    let Ok(rd) = fs::read_dir(config_dir) else { return BTreeSet::new() };
    rd.flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.strip_suffix(".toml")?.to_owned();
            (name != session).then_some(name)
        })
        .filter_map(|name| Config::load(config_dir, &name).ok())
        .map(|c| opt(&c, "stime-xattr-prefix"))
        .filter(|p| !p.is_empty())
        .collect()
}

/// `--reset-sync-time`: removes the session's stime and entry_stime from
/// this node's primary brick roots.
fn reset_sync_time(cfg: &Config, config_dir: &Path) -> anyhow::Result<()> {
    let fail = |problem: String, fix: &str| DeleteError::Reset { problem, fix: fix.to_owned() };
    let primary = opt(cfg, "primary");
    if primary.is_empty() {
        return Err(
            fail("option primary is not set".into(), "set it with `gsyncd config set SESSION primary VOLUME`").into()
        );
    }
    let pvol = Gluster::local(cfg).info(&primary).map_err(|e| {
        fail(
            format!("cannot read volume {primary}: {}", chain(&e)),
            "make sure glusterd runs here and the volume exists",
        )
    })?;
    let node = gcli::local_node_uuid(Path::new(&opt(cfg, "glusterd-workdir")))
        .map_err(|e| fail(chain(&e), "check option glusterd-workdir"))?;
    let bricks: Vec<PathBuf> =
        pvol.bricks.iter().filter(|b| b.host_uuid == node).map(|b| PathBuf::from(OsStr::from_bytes(&b.path))).collect();
    // This session's prefixes: the secondary volume's id as its glusterd
    // tells now, and the one create recorded (they differ if the secondary
    // volume was made anew since).
    let mut prefixes = BTreeSet::new();
    let ours = format!("trusted.glusterfs.{}.", pvol.id);
    if let Some(url) = cfg.secondary_url() {
        match Gluster::remote(cfg, &url.host).info(&url.volume) {
            Ok(sv) => {
                prefixes.insert(keys::session_prefix(&pvol.id, &sv.id));
            }
            Err(e) => say(&format!("note: cannot learn the id of {url} from its glusterd: {}", chain(&e)))?,
        }
    }
    let stored = opt(cfg, "stime-xattr-prefix");
    if stored.starts_with(&ours) {
        prefixes.insert(stored);
    }
    let others = other_sessions_prefixes(config_dir, &cfg.session);
    if prefixes.is_empty() {
        say(&format!(
            "warning: the secondary volume's id is unknown (its glusterd does not answer, and the session file has no stime-xattr-prefix): removing every stime and entry_stime of primary volume {primary} on this node's bricks except those of the other sessions in {}; another session from this primary without a recorded prefix resyncs in full too",
            config_dir.display()
        ))?;
    }
    if bricks.is_empty() {
        say(&format!("note: no brick of {primary} is on this node; nothing to reset here"))?;
    }
    for brick in &bricks {
        let names = xattr::list(brick).map_err(|e| {
            fail(
                format!("cannot list the xattrs of brick root {}: {e}", brick.display()),
                "run delete as root on a node whose bricks are mounted",
            )
        })?;
        for n in names {
            let Some(name) = n.to_str() else { continue };
            let hit = if prefixes.is_empty() {
                is_primary_stime_key(name, &pvol.id)
                    && !others.iter().any(|p| name == keys::stime(p) || name == keys::entry_stime(p))
            } else {
                prefixes.iter().any(|p| name == keys::stime(p) || name == keys::entry_stime(p))
            };
            if !hit {
                continue;
            }
            match xattr::remove(brick, name) {
                Ok(()) => say(&format!("removed {name} from {}", brick.display()))?,
                Err(e) if e.raw_os_error() == Some(nix::libc::ENODATA) => {}
                Err(e) => {
                    return Err(fail(
                        format!("cannot remove {name} from {}: {e}", brick.display()),
                        "run delete as root; check the brick's file system",
                    )
                    .into());
                }
            }
        }
    }
    Ok(())
}

/// Removes a session's own directory: only when it is named after the
/// session (as the defaults are), so that a shared directory set by hand is
/// never wiped. Returns whether it removed it.
fn remove_session_dir(dir: &Path, session: &str, what: &str) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if dir.file_name() != Some(OsStr::new(session)) {
        return say(&format!(
            "note: left the {what} {} in place: it is not named after the session; remove it by hand",
            dir.display()
        ));
    }
    remove_tree(dir)?;
    say(&format!("removed the {what} {}", dir.display()))
}

/// `gsyncd delete`.
pub fn delete(config_dir: &Path, a: &DeleteArgs) -> anyhow::Result<()> {
    let cfg = Config::load(config_dir, &a.session)?;
    let pid_path = PathBuf::from(opt(&cfg, "pid-file"));
    let pid = match PidFile::acquire(&pid_path) {
        Ok(p) => p,
        Err(PidFileError::Running { pid, .. }) => {
            return Err(DeleteError::Running { session: a.session.clone(), pid }.into());
        }
        Err(e) => return Err(e.into()),
    };
    if a.reset_sync_time {
        reset_sync_time(&cfg, config_dir)?;
    }
    remove_session_dir(&PathBuf::from(opt(&cfg, "state-dir")), &a.session, "state directory")?;

    // The run directory: stale mounts first, then everything but the pid
    // file we hold.
    let run_dir = PathBuf::from(opt(&cfg, "run-dir"));
    let own_run_dir = run_dir.file_name() == Some(OsStr::new(&a.session));
    if own_run_dir {
        for act in mount::sweep(&[SweepRoot::all(run_dir.join("mnt"))], false) {
            say(&act.to_string())?;
        }
        if let Ok(rd) = fs::read_dir(&run_dir) {
            for e in rd.flatten() {
                if e.path() != pid_path {
                    remove_tree(&e.path())?;
                }
            }
        }
    }
    {
        let _lock = DirLock::acquire(config_dir)?;
        let file = &cfg.file.path;
        match fs::remove_file(file) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(DeleteError::Remove { path: file.to_owned(), reason: e.to_string() }.into()),
        }
    }
    say(&format!("removed the session file {}", cfg.file.path.display()))?;
    drop(pid);
    if own_run_dir {
        match fs::remove_dir(&run_dir) {
            Ok(()) => say(&format!("removed the run directory {}", run_dir.display()))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => say(&format!("note: left the run directory {}: {e}", run_dir.display()))?,
        }
    } else {
        say(&format!(
            "note: left the run directory {} in place: it is not named after the session",
            run_dir.display()
        ))?;
    }
    if let Some(url) = cfg.secondary_url() {
        say(&format!(
            "The secondary still admits the session's key: remove the authorized_keys line ending in gsyncd:{}@<this node> for {} on {}.",
            a.session,
            url.user_or_root(),
            url.host
        ))?;
    }
    tracing::info!(session = %a.session, reset_sync_time = a.reset_sync_time, "session deleted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_line() {
        let l = authorized_keys_line("/usr/bin/gsyncd", "gv0-dr", "ssh-ed25519 AAAAC3 gsyncd:prod@n1");
        assert_eq!(
            l,
            "command=\"/usr/bin/gsyncd ssh-gate --volume gv0-dr\",no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-pty ssh-ed25519 AAAAC3 gsyncd:prod@n1"
        );
    }

    #[test]
    fn push_command_quotes_the_file_and_holds_no_stray_quote() {
        assert!(!PUSH_SCRIPT.contains('\''));
        let c = push_command(Some("/home/o'brien/keys"));
        assert!(c.starts_with("sh -c 'set -e;"), "{c}");
        assert!(c.ends_with(" gsyncd-push-key '/home/o'\\''brien/keys'"), "{c}");
        assert!(push_command(None).ends_with(" gsyncd-push-key ''"));
    }

    #[test]
    fn push_script_adds_once_and_keeps_the_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sub/authorized_keys");
        let run = |line: &str| {
            let mut c = Command::new("sh")
                .args(["-c", PUSH_SCRIPT, "gsyncd-push-key"])
                .arg(&f)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            c.stdin.take().unwrap().write_all(format!("{line}\n").as_bytes()).unwrap();
            String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap()
        };
        assert!(run("command=\"x\" ssh-ed25519 AAA k1").contains("added"));
        assert!(run("command=\"x\" ssh-ed25519 AAA k1").contains("present"));
        fs::write(&f, format!("{}no newline", fs::read_to_string(&f).unwrap())).unwrap();
        assert!(run("ssh-ed25519 BBB k2").contains("added"));
        assert_eq!(
            fs::read_to_string(&f).unwrap(),
            "command=\"x\" ssh-ed25519 AAA k1\nno newline\nssh-ed25519 BBB k2\n"
        );
        assert_eq!(fs::metadata(dir.path().join("sub")).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn stime_keys_of_a_primary() {
        let pv = Uuid([0xaa; 16]);
        let sv = Uuid([0xbb; 16]);
        let p = keys::session_prefix(&pv, &sv);
        assert!(is_primary_stime_key(&keys::stime(&p), &pv));
        assert!(is_primary_stime_key(&keys::entry_stime(&p), &pv));
        assert!(!is_primary_stime_key(&keys::session_xtime(&p), &pv));
        assert!(!is_primary_stime_key(&keys::xtime(&pv), &pv));
        assert!(!is_primary_stime_key(&keys::stime(&keys::session_prefix(&sv, &pv)), &pv));
        assert!(!is_primary_stime_key("trusted.glusterfs.aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa.x.stime", &pv));
    }

    #[test]
    fn settings_are_checked_as_config_set() {
        assert!(matches!(parse_setting("sync-jobs", "4"), Ok((s, Value::Int(4))) if s.name == "sync-jobs"));
        assert!(matches!(parse_setting("sync_jobs", "0"), Err(ConfigError::InvalidValue { .. })));
        assert!(matches!(parse_setting("bogus", "1"), Err(ConfigError::UnknownOption { .. })));
        assert!(matches!(parse_setting("pid-file", "/x"), Err(ConfigError::NotConfigurable { .. })));
        assert!(
            matches!(parse_setting("use_tarssh", "yes"), Ok((s, Value::Str(v))) if s.name == "sync-method" && v == "tarssh")
        );
        assert!(matches!(parse_setting("secondary", "nohost"), Err(ConfigError::InvalidValue { .. })));
    }

    #[test]
    fn remove_tree_removes_files_dirs_and_symlinks_without_following() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), "x").unwrap();
        let t = dir.path().join("s");
        fs::create_dir_all(t.join("ssh")).unwrap();
        fs::write(t.join("ssh/secret.pem"), "k").unwrap();
        std::os::unix::fs::symlink(&outside, t.join("link")).unwrap();
        remove_tree(&t).unwrap();
        assert!(!t.exists());
        assert!(outside.join("keep").exists());
        remove_tree(&t).unwrap();
    }
}
