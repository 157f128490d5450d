//! Command-line definitions: the operator commands and the hidden role
//! subcommands that the supervisor (and ssh, on the secondary) start.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// GlusterFS geo-replication daemon.
///
/// Replicates a GlusterFS primary volume to a secondary volume over ssh,
/// driven by the primary bricks' changelogs. Sessions are configured in
/// <config-dir>/<session>.toml (see gsyncd.toml(5)) and run as
/// gsyncd@<session>.service.
#[derive(Debug, Parser)]
#[command(name = "gsyncd", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,

    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Log level; overrides RUST_LOG and the session's log-level option.
    #[arg(long, global = true, value_enum, ignore_case = true, value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,

    /// Where logs go: the journal, stderr, or auto (the journal when stderr
    /// is connected to it, as under systemd).
    #[arg(long, global = true, value_enum, default_value_t = LogTarget::Auto, value_name = "TARGET")]
    pub log_target: LogTarget,

    /// Directory of session files.
    #[arg(long, global = true, env = "GSYNCD_CONFIG_DIR", default_value = crate::config::DEFAULT_CONFIG_DIR, value_name = "DIR")]
    pub config_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    #[value(alias = "warning")]
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogTarget {
    Auto,
    Journald,
    Stderr,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the failure ledger (what could not be synced), and retry or
    /// forget its items.
    #[command(subcommand)]
    Failures(FailuresCmd),

    /// Show and change a session's options.
    #[command(subcommand)]
    Config(ConfigCmd),

    /// Inspect a brick's changelogs.
    #[command(subcommand)]
    Changelog(ChangelogCmd),

    /// Unmount and remove GlusterFS mounts and mountpoints that a dead gsyncd
    /// (or the reference daemon) left behind.
    CleanupMounts(CleanupMountsArgs),

    /// Create a session, after checking both volumes and the ssh path.
    ///
    /// Checks in order, and stops at the first failure with its fix: the
    /// primary volume, the session's ssh key (made if missing; its
    /// authorized_keys line is printed), ssh with that key to the secondary's
    /// gsyncd, the secondary volume, and that it is empty. Then turns on the
    /// primary's changelog and writes the session file. See gsyncd-create(8).
    #[command(after_help = "Example:\n  \
        gsyncd create prod --primary gv0 --secondary geoaccount@dr1::gv0-dr --push-key\n  \
        systemctl enable --now gsyncd@prod.service")]
    Create(CreateArgs),

    /// Delete a session that is not running.
    ///
    /// Removes its state (with the ssh key), run directory and session file;
    /// with --reset-sync-time also its sync progress on this node's primary
    /// bricks. See gsyncd-delete(8).
    Delete(DeleteArgs),

    /// Check everything a session needs, in order, and name the first
    /// check that fails with its fix.
    ///
    /// Versions on both ends, ssh with the session key and the ssh gate,
    /// both volumes, the primary's changelog options, rsync and tar, the
    /// FUSE device, an aux-gfid mount of each volume, free space, clock
    /// skew, stale mounts and the pid file. Changes nothing. See
    /// gsyncd-doctor(8).
    #[command(after_help = "Exit status: 0 every check passed, 12 a check failed (named with its fix \
        on standard error), 5 or 6 the session file is unreadable or missing. See gsyncd-doctor(8).")]
    Doctor(DoctorArgs),

    /// Show sessions' replication status, one row per brick of this node.
    ///
    /// While a session runs, its monitor answers over its status socket;
    /// otherwise the status files tell (and the session shows Stopped). See
    /// gsyncd-status(8).
    #[command(after_help = "Examples:\n  \
        gsyncd status\n  \
        gsyncd status prod --detail\n  \
        gsyncd status prod --json | jq '.sessions[0].bricks[] | {brick, status, lag_seconds}'")]
    Status(StatusArgs),

    /// Set a checkpoint, or wait until it is complete.
    #[command(subcommand)]
    Checkpoint(CheckpointCmd),

    /// Run a session: the main process of gsyncd@<session>.service.
    #[command(hide = true)]
    Supervise(SuperviseArgs),

    /// Session monitor: topology, worker plan, status files.
    #[command(hide = true)]
    Monitor(MonitorArgs),

    /// Changelog agent of one primary brick.
    #[command(hide = true)]
    Agent(BrickArgs),

    /// Sync worker of one primary brick.
    #[command(hide = true)]
    Worker(WorkerArgs),

    /// Secondary-side RPC server, started over ssh by a worker.
    #[command(hide = true)]
    Secondary(SecondaryArgs),

    /// ssh forced command on the secondary: admits only the secondary server
    /// and the matching rsync or tar receive.
    #[command(hide = true)]
    SshGate(SshGateArgs),

    /// Removes an aux mount whose maker died before removing it.
    #[command(hide = true)]
    MountGuard(MountGuardArgs),

    /// On the secondary: a receiving rsync or tar into the mount of a live
    /// `gsyncd secondary` (the worker's --rsync-path), with the ssh gate's
    /// checks.
    #[command(hide = true)]
    Receive(ReceiveArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the options a session sets, one `name:value` per line, or one
    /// option's effective value.
    Get(ConfigGetArgs),
    /// Set an option in the session file (created if missing), keeping its
    /// comments and order.
    Set(ConfigSetArgs),
    /// Remove an option from the session file, so its default applies again;
    /// `all` removes every option except primary and secondary.
    Reset(ConfigResetArgs),
    /// Migrate a reference gsyncd.conf into a session file and report every
    /// key kept, renamed, converted or dropped.
    Import(ConfigImportArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Session name; without it, every session in the config directory.
    pub session: Option<String>,
    /// More columns: in-flight entry/data/meta operations, failures,
    /// checkpoint, lag, restarts, files and bytes synced; and each brick's
    /// last error.
    #[arg(long)]
    pub detail: bool,
    /// Print one JSON object (versioned; see gsyncd-status(8)) with every
    /// field, whatever --detail says.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Session name.
    pub session: String,
    /// Run every check, also after one failed, and list every failure.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum CheckpointCmd {
    /// Set the session's checkpoint (option checkpoint, as `gsyncd config
    /// set` does): replication is complete for it once everything changed
    /// before TIME is on the secondary. The running workers pick it up
    /// without a restart.
    #[command(after_help = "Examples:\n  \
        gsyncd checkpoint set prod\n  \
        gsyncd checkpoint set prod 1795469966\n  \
        gsyncd checkpoint set prod '2026-11-23 10:00:00'")]
    Set(CheckpointSetArgs),
    /// Wait until every Active brick of this node has completed the
    /// session's checkpoint; the exit status tells why it stopped waiting.
    #[command(after_help = "Exit status: 0 completed, 9 timed out, 10 the session is not running, \
        11 held back by failure-ledger items (at the timeout). See gsyncd-checkpoint(8).")]
    Wait(CheckpointWaitArgs),
}

#[derive(Debug, Args)]
pub struct CheckpointSetArgs {
    /// Session name.
    pub session: String,
    /// `now` (the default), unix seconds, or local time as
    /// "YYYY-MM-DD HH:MM:SS" (one argument, or date and time as two).
    #[arg(value_name = "TIME", num_args = 0..=2)]
    pub time: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CheckpointWaitArgs {
    /// Session name.
    pub session: String,
    /// Give up after this many seconds (0: look once); without it, wait as
    /// long as it takes.
    #[arg(long, value_name = "S")]
    pub timeout: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum ChangelogCmd {
    /// Print the records of a changelog file, or of a brick's changelogs
    /// through its HTIME index, one per line in the form libgfchangelog
    /// gives geo-replication (names escaped: %20 space, %0A newline, %25 %).
    #[command(after_help = "Examples:\n  \
        gsyncd changelog show /bricks/b1/.glusterfs/changelogs/2026/11/23/CHANGELOG.1795469966\n  \
        gsyncd changelog show /bricks/b1 --since 1795460000 --until 1795470000\n  \
        gsyncd changelog show /bricks/b1 --json | jq 'select(.op == \"RENAME\")'")]
    Show(ChangelogShowArgs),
}

#[derive(Debug, Args)]
pub struct ChangelogShowArgs {
    /// A changelog file, a brick directory, or a brick's
    /// .glusterfs/changelogs directory.
    pub path: PathBuf,
    /// With a directory: only changelogs that hold changes after this unix
    /// time (rollover time >= TS).
    #[arg(long, value_name = "TS")]
    pub since: Option<u64>,
    /// With a directory: stop at the changelog that covers this unix time.
    #[arg(long, value_name = "TS")]
    pub until: Option<u64>,
    /// One JSON object per record (JSON Lines), with the changelog's time.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CleanupMountsArgs {
    /// Only this session's run directory; without it, every session's under
    /// /run/gsyncd and the reference's /tmp/gsyncd-aux-mount-*.
    pub session: Option<String>,
    /// Report what would be removed, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Session name (the session file is <config-dir>/<session>.toml).
    pub session: String,
    /// Primary volume (on this node's glusterd).
    #[arg(long, value_name = "VOLUME")]
    pub primary: String,
    /// Secondary as [user@]host::volume (user root when none is given).
    #[arg(long, value_name = "URL")]
    pub secondary: String,
    /// ssh port of the secondary nodes (option ssh-port; default 22).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub ssh_port: Option<u16>,
    /// Update an existing session (its other options stay), and skip the
    /// checks that may be overridden: an empty secondary, the same gsyncd
    /// version on both sides.
    #[arg(long)]
    pub force: bool,
    /// Install the session key into the secondary user's authorized_keys,
    /// over ssh with your own access (agent, ~/.ssh keys or a password), and
    /// turn on features.read-only on the secondary volume the same way.
    #[arg(long)]
    pub push_key: bool,
    /// With --push-key: the file on the secondary to add the key to
    /// (default ~USER/.ssh/authorized_keys).
    #[arg(long, value_name = "PATH", requires = "push_key")]
    pub authorized_keys: Option<String>,
    /// Also set this option in the session file, before the checks, which
    /// use it (repeatable; validated as `gsyncd config set`).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum FailuresCmd {
    /// Every item of the session's failure ledgers: brick, GFID, operation,
    /// path, errno, first and last seen, attempts, next attempt.
    List(FailuresListArgs),
    /// Try items again at the next batch instead of after their backoff.
    Retry(FailuresPickArgs),
    /// Drop items from the ledger: they will not be tried again, and no
    /// longer hold a checkpoint back. Needs --yes.
    Forget(FailuresForgetArgs),
}

#[derive(Debug, Args)]
pub struct FailuresListArgs {
    /// Session name.
    pub session: String,
    /// Print JSON (an object with "version": 1 and "items").
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct FailuresPickArgs {
    /// Session name.
    pub session: String,
    /// The item's GFID.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub gfid: Option<String>,
    /// Every item.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct FailuresForgetArgs {
    #[command(flatten)]
    pub pick: FailuresPickArgs,
    /// Confirm: the items are dropped for good (their changes are not
    /// synced unless the primary changes them again).
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Session name.
    pub session: String,
    /// Also remove the session's sync progress (stime and entry_stime
    /// xattrs) from this node's primary brick roots, so that a new session
    /// between the same volumes syncs everything again.
    #[arg(long)]
    pub reset_sync_time: bool,
}

#[derive(Debug, Args)]
pub struct ConfigGetArgs {
    /// Session name.
    pub session: String,
    /// Print only this option's effective value (default if unset).
    pub name: Option<String>,
    /// List every option, with defaults, not only those the file sets.
    #[arg(long)]
    pub show_defaults: bool,
    /// Print JSON: [{name, value, default, configurable, modified}] sorted by name.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ConfigSetArgs {
    /// Session name.
    pub session: String,
    /// Option name (kebab-case; `_` and legacy names such as slave-timeout are accepted).
    pub name: String,
    /// New value; `now` for checkpoint.
    #[arg(allow_hyphen_values = true)]
    pub value: String,
}

#[derive(Debug, Args)]
pub struct ConfigResetArgs {
    /// Session name.
    pub session: String,
    /// Option name, or `all`.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ConfigImportArgs {
    /// Session name to create.
    pub session: String,
    /// The reference session file, e.g.
    /// /var/lib/glusterd/geo-replication/PV_HOST_SV/gsyncd.conf.
    pub file: PathBuf,
    /// Primary volume, when the file and its directory name do not tell.
    #[arg(long, value_name = "VOLUME")]
    pub primary: Option<String>,
    /// Secondary as [user@]host::volume, when the file does not tell.
    #[arg(long, value_name = "URL")]
    pub secondary: Option<String>,
    /// Overwrite an existing session file, and import despite refused keys
    /// (they are left out and listed).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct SuperviseArgs {
    /// Session name.
    pub session: String,
}

#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// Session name.
    pub session: String,
    /// Start with workers paused.
    #[arg(long)]
    pub pause_on_start: bool,
}

#[derive(Debug, Args)]
pub struct BrickArgs {
    /// Session name.
    pub session: String,
    /// Local primary brick path.
    #[arg(long, value_name = "PATH")]
    pub brick: PathBuf,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub brick: BrickArgs,
    /// Replica/disperse subvolume number of the brick (for Active/Passive).
    #[arg(long, value_name = "N")]
    pub subvol_num: Option<u32>,
    /// Secondary node this worker connects to, as [user@]host.
    #[arg(long, value_name = "HOST")]
    pub resource_remote: Option<String>,
    /// UUID of that secondary node.
    #[arg(long, value_name = "UUID")]
    pub resource_remote_id: Option<String>,
    /// This node's name.
    #[arg(long, value_name = "NAME")]
    pub local_node: Option<String>,
    /// This node's glusterd UUID.
    #[arg(long, value_name = "UUID")]
    pub local_node_id: Option<String>,
}

/// The secondary never reads a session file: everything arrives on the
/// command line from the primary's worker (reference §2.6).
#[derive(Debug, Args)]
pub struct SecondaryArgs {
    /// Primary volume name.
    pub primary: String,
    /// Secondary as [user@]host::volume.
    pub secondary: String,
    #[arg(long, value_name = "NAME")]
    pub primary_node: Option<String>,
    #[arg(long, value_name = "UUID")]
    pub primary_node_id: Option<String>,
    #[arg(long, value_name = "PATH")]
    pub primary_brick: Option<OsString>,
    #[arg(long, value_name = "NAME")]
    pub local_node: Option<String>,
    #[arg(long, value_name = "UUID")]
    pub local_node_id: Option<String>,
    /// Seconds of silence after which the server exits; 0 disables.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub secondary_timeout: u64,
    #[arg(long, value_name = "LEVEL")]
    pub secondary_log_level: Option<String>,
    #[arg(long, value_name = "LEVEL")]
    pub secondary_gluster_log_level: Option<String>,
    #[arg(long, value_name = "DIR")]
    pub secondary_gluster_command_dir: Option<PathBuf>,
    /// Keep the aux mount visible (debugging).
    #[arg(long)]
    pub secondary_access_mount: bool,
    #[arg(long)]
    pub use_rsync_xattrs: bool,
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub primary_dist_count: u32,
    /// Requests served at once.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub sync_jobs: u32,
    /// Seconds that mounting the secondary volume and entering it may take.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub connection_timeout: u64,
    /// Log file of the aux mount's glusterfs client (default under
    /// /var/log/glusterfs/geo-replication-secondaries/).
    #[arg(long, value_name = "PATH")]
    pub secondary_gluster_log_file: Option<PathBuf>,
    /// glusterd's working directory, for this node's UUID.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/glusterd")]
    pub glusterd_workdir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// `rsync --server ... . TARGET` or `tar -x ... -C TARGET`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// Cleans up an aux mount if the process that made it dies before it could
/// (see gluster::auxmount). Reads its parent's messages on fd 3.
#[derive(Debug, Args)]
pub struct MountGuardArgs {
    /// The mount was made by glusterd's mountbroker: unmount through it.
    #[arg(long)]
    pub broker: bool,
    /// Directory of the gluster program (with --broker).
    #[arg(long, value_name = "DIR", default_value = "/usr/sbin")]
    pub command_dir: PathBuf,
    /// Extra gluster CLI option (with --broker); repeatable.
    #[arg(long = "cli-option", value_name = "OPT")]
    pub cli_options: Vec<String>,
}

/// The forced command for the primary's key in the secondary user's
/// authorized_keys:
///
/// command="/usr/bin/gsyncd ssh-gate",no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-pty ssh-ed25519 AAAA...
#[derive(Debug, Args)]
pub struct SshGateArgs {
    /// Only serve this secondary volume (repeatable); without it, any.
    #[arg(long, value_name = "NAME")]
    pub volume: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn set_accepts_values_starting_with_a_dash() {
        let cli = Cli::try_parse_from(["gsyncd", "config", "set", "s", "ssh-options", "-oPort=2"]).unwrap();
        let Command::Config(ConfigCmd::Set(a)) = cli.command else { panic!("parsed as {:?}", cli.command) };
        assert_eq!(a.value, "-oPort=2");
    }

    #[test]
    fn roles_are_hidden() {
        let help = Cli::command().render_help().to_string();
        assert!(help.contains("config"));
        for role in ["supervise", "monitor", "agent", "worker", "secondary", "ssh-gate"] {
            assert!(!help.contains(&format!("  {role} ")), "{role} shows in help");
        }
    }
}
