//! What a worker reads from its session file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::value::SecondaryUrl;
use crate::config::{self, Config, Value};

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("option {0} is not set: set it with `gsyncd config set SESSION {0} ...`")]
    Missing(&'static str),
    #[error("option secondary: {0}")]
    Secondary(String),
}

/// The worker's options, expanded.
#[derive(Debug, Clone)]
pub struct Settings {
    pub session: String,
    pub brick: PathBuf,
    pub primary: String,
    pub secondary: SecondaryUrl,
    pub run_dir: PathBuf,
    pub state_dir: PathBuf,
    pub ssh_command: String,
    pub ssh_options: Vec<String>,
    pub ssh_port: u16,
    pub remote_gsyncd: String,
    pub secondary_timeout: u64,
    pub connection_timeout: Duration,
    pub sync_jobs: u32,
    pub rsync_command: String,
    pub rsync_options: Vec<String>,
    pub rsync_ssh_options: Vec<String>,
    pub rsync_existing: bool,
    pub rsync_ignore_missing: bool,
    pub sync_xattrs: bool,
    pub sync_acls: bool,
    pub max_rsync_retries: u32,
    /// `inline-max-size`: regular files up to this size go inside the RPC
    /// stream (0: none do).
    pub inline_max: u64,
    /// `live-changelog`: follow the changelog being written.
    pub live_changelog: bool,
    pub ignore_deletes: bool,
    pub access_mount: bool,
    pub gluster_command_dir: PathBuf,
    pub gluster_cli_options: Vec<String>,
    pub gluster_params: Vec<String>,
    pub gluster_log_file: PathBuf,
    pub gluster_log_level: String,
    pub secondary_log_level: String,
    pub secondary_gluster_log_level: String,
    pub secondary_gluster_command_dir: String,
    pub secondary_access_mount: bool,
    pub glusterd_workdir: PathBuf,
    pub failover_interval: Duration,
    /// `sync-method = tarssh`: tar over ssh instead of rsync.
    pub tarssh: bool,
    pub tar_command: String,
    pub ssh_options_tar: Vec<String>,
    /// `change-detector = xsync`: crawls (by xtime) instead of changelogs.
    pub xsync: bool,
    /// Seconds between xsync crawls.
    pub change_interval: Duration,
    /// `use-meta-volume`, and where the meta volume is mounted.
    pub use_meta_volume: bool,
    /// Bytes of changelogs replayed in one batch (at least one changelog).
    pub changelog_batch_size: u64,
    pub meta_volume_mnt: PathBuf,
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

impl Settings {
    pub fn load(cfg: &Config, session: &str, brick: &Path) -> Result<Settings, SettingsError> {
        let local_id = crate::config::template::escape_path(&brick.to_string_lossy());
        let local_path = brick.display().to_string();
        let extra = move |v: &str| match v {
            "local_id" => Some(local_id.clone()),
            "local_path" => Some(local_path.clone()),
            _ => None,
        };
        let get = |name: &str| -> Value {
            config::schema::spec(name).map(|s| cfg.expanded(s, &extra)).unwrap_or(Value::Str(String::new()))
        };
        let s = |name: &str| get(name).to_string();
        let int = |name: &str| match get(name) {
            Value::Int(i) => i,
            _ => 0,
        };
        let flag = |name: &str| matches!(get(name), Value::Bool(true));
        let primary = s("primary");
        if primary.is_empty() {
            return Err(SettingsError::Missing("primary"));
        }
        let secondary = match s("secondary") {
            u if u.is_empty() => return Err(SettingsError::Missing("secondary")),
            u => SecondaryUrl::parse(&u).map_err(SettingsError::Secondary)?,
        };
        Ok(Settings {
            session: session.to_owned(),
            brick: brick.to_owned(),
            primary,
            secondary,
            run_dir: PathBuf::from(s("run-dir")),
            state_dir: PathBuf::from(s("state-dir")),
            ssh_command: s("ssh-command"),
            ssh_options: words(&s("ssh-options")),
            ssh_port: u16::try_from(int("ssh-port")).unwrap_or(22),
            remote_gsyncd: s("remote-gsyncd"),
            secondary_timeout: u64::try_from(int("secondary-timeout")).unwrap_or(0),
            connection_timeout: Duration::from_secs(u64::try_from(int("connection-timeout")).unwrap_or(60)),
            sync_jobs: u32::try_from(int("sync-jobs")).unwrap_or(3).max(1),
            rsync_command: s("rsync-command"),
            rsync_options: words(&s("rsync-options")),
            rsync_ssh_options: words(&s("rsync-ssh-options")),
            rsync_existing: flag("rsync-opt-existing"),
            rsync_ignore_missing: flag("rsync-opt-ignore-missing-args"),
            sync_xattrs: flag("sync-xattrs"),
            sync_acls: flag("sync-acls"),
            max_rsync_retries: u32::try_from(int("max-rsync-retries")).unwrap_or(10).max(1),
            inline_max: u64::try_from(int("inline-max-size")).unwrap_or(0),
            live_changelog: flag("live-changelog"),
            ignore_deletes: flag("ignore-deletes"),
            access_mount: flag("access-mount"),
            gluster_command_dir: PathBuf::from(s("gluster-command-dir")),
            gluster_cli_options: words(&s("gluster-cli-options")),
            gluster_params: words(&s("gluster-params")),
            gluster_log_file: PathBuf::from(s("gluster-log-file")),
            gluster_log_level: s("gluster-log-level"),
            secondary_log_level: s("secondary-log-level"),
            secondary_gluster_log_level: s("secondary-gluster-log-level"),
            secondary_gluster_command_dir: s("secondary-gluster-command-dir"),
            secondary_access_mount: flag("secondary-access-mount"),
            glusterd_workdir: PathBuf::from(s("glusterd-workdir")),
            failover_interval: Duration::from_secs(u64::try_from(int("replica-failover-interval")).unwrap_or(1).max(1)),
            tarssh: s("sync-method") == "tarssh",
            tar_command: s("tar-command"),
            ssh_options_tar: words(&s("ssh-options-tar")),
            xsync: s("change-detector") == "xsync",
            change_interval: Duration::from_secs(u64::try_from(int("change-interval")).unwrap_or(5).max(1)),
            use_meta_volume: flag("use-meta-volume"),
            changelog_batch_size: u64::try_from(int("changelog-batch-size")).unwrap_or(727_040).max(1),
            meta_volume_mnt: PathBuf::from(s("meta-volume-mnt")),
        })
    }

    /// `user@host`, or `host`.
    pub fn remote(&self) -> String {
        match &self.secondary.user {
            Some(u) => format!("{u}@{}", self.secondary.host),
            None => self.secondary.host.clone(),
        }
    }

    /// The gsyncd program to name on the secondary.
    pub fn remote_gsyncd(&self) -> &str {
        if self.remote_gsyncd.is_empty() { "gsyncd" } else { &self.remote_gsyncd }
    }

    /// The ssh control socket shared by the RPC connection and rsync.
    pub fn control_path(&self) -> PathBuf {
        let name = format!("{}.{}", self.secondary.host, std::process::id());
        self.run_dir.join("ssh").join(name)
    }

    /// `ssh <options> -p PORT -oControlMaster=auto -S SOCKET` (no host).
    pub fn ssh_argv(&self) -> Vec<String> {
        self.ssh_argv_with(&self.ssh_options)
    }

    /// The same with other options (`ssh-options-tar`).
    pub fn ssh_argv_with(&self, options: &[String]) -> Vec<String> {
        let mut v = vec![self.ssh_command.clone()];
        v.extend(options.iter().cloned());
        // A dead connection ends ssh (and the RPC or transfer riding it)
        // within a minute; options given above win (ssh takes the first).
        v.extend(["-oServerAliveInterval=15".into(), "-oServerAliveCountMax=4".into()]);
        v.extend([
            "-p".into(),
            self.ssh_port.to_string(),
            "-oControlMaster=auto".into(),
            "-S".into(),
            self.control_path().display().to_string(),
        ]);
        v
    }
}
