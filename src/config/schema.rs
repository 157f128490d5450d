//! The session option schema: every option of the reference daemon (its
//! `gsyncd.conf` template, 10.3), with type, default, validation, whether it may
//! be changed, and a help line; plus the few options gsyncd adds.
//!
//! Options the reference never reads ("dead") stay in the table so that an
//! imported or hand-written file that carries them is understood and the
//! operator told why they do nothing; `config set` refuses them.

/// The type of an option's value, as stored in the TOML session file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Int,
    Bool,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Str => "string",
            Kind::Int => "integer",
            Kind::Bool => "boolean",
        }
    }
}

/// What a value must satisfy beyond its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    None,
    /// Inclusive integer range.
    MinMax(i64, i64),
    /// One of these spellings, matched without regard to case and stored in the
    /// spelling listed here.
    Choice(&'static [&'static str]),
    /// An executable: an absolute or relative path to an executable file, or a
    /// bare name found in `PATH`.
    ExecPath,
    /// A unix time in seconds after 1971-01-01, or 0 for "none"; `now` is
    /// accepted on the command line.
    UnixTime,
    /// An absolute path (template variables allowed).
    AbsPath,
    /// A GlusterFS volume name, or empty while the session is not set up.
    VolumeName,
    /// `[user@]host::volume`, or empty while the session is not set up.
    SecondaryUrl,
    /// An IP address and port (`127.0.0.1:9469`, `[::1]:9469`), or empty
    /// for "off".
    SocketAddr,
}

/// One option of the session file.
#[derive(Debug)]
pub struct OptionSpec {
    /// Canonical kebab-case name (the reference's, with `secondary`/`primary`).
    pub name: &'static str,
    pub kind: Kind,
    /// The default in its config-file spelling (`true`, `120`, a string).
    pub default: &'static str,
    pub validation: Validation,
    /// Whether `config set` may change it.
    pub configurable: bool,
    /// Whether `${var}` template variables in the value are expanded.
    pub template: bool,
    /// `Some(reason)` for an option that has no effect.
    pub dead: Option<&'static str>,
    /// Older names that map to this option (`slave-*`, `master-*`, `timeout`).
    pub legacy: &'static [&'static str],
    pub help: &'static str,
}

const LOG_LEVELS: &[&str] = &["ERROR", "WARNING", "INFO", "DEBUG", "TRACE"];

/// Builder helpers keep the table below readable.
const fn opt(name: &'static str, kind: Kind, default: &'static str, help: &'static str) -> OptionSpec {
    OptionSpec {
        name,
        kind,
        default,
        validation: Validation::None,
        configurable: true,
        template: false,
        dead: None,
        legacy: &[],
        help,
    }
}

impl OptionSpec {
    const fn v(mut self, validation: Validation) -> Self {
        self.validation = validation;
        self
    }
    const fn fixed(mut self) -> Self {
        self.configurable = false;
        self
    }
    const fn tmpl(mut self) -> Self {
        self.template = true;
        self
    }
    const fn was(mut self, legacy: &'static [&'static str]) -> Self {
        self.legacy = legacy;
        self
    }
    const fn dead(mut self, reason: &'static str) -> Self {
        self.dead = Some(reason);
        self.configurable = false;
        self
    }

    /// Whether the option has an effect.
    pub fn is_live(&self) -> bool {
        self.dead.is_none()
    }
}

use Kind::{Bool, Int, Str};
use Validation as V;

const DEAD_VOLINFO: &str = "read only by the reference's VolinfoFromGconf, which glusterd never enables; \
     gsyncd asks gluster for the topology";
const DEAD_LOGFILE: &str = "gsyncd logs to the journal (journalctl -u gsyncd@SESSION) or to stderr";
const DEAD_LIBGFCHANGELOG: &str = "gsyncd parses changelogs itself and does not use libgfchangelog";
const DEAD_SHIM: &str = "glusterd passes it through a no-op shim of the reference; nothing reads it";

/// Every option, in the order the man page lists them: session identity and
/// paths, then the reference template's order.
pub static OPTIONS: &[OptionSpec] = &[
    // --- session identity and gsyncd's own paths (new in gsyncd) ---
    opt("primary", Str, "", "Primary volume name (template variable ${primary}).").v(V::VolumeName),
    opt("secondary", Str, "", "Secondary as [user@]host::volume (variables ${secondaryuser}, ${primary_secondary_host}, ${secondaryvol}).")
        .v(V::SecondaryUrl),
    opt("state-dir", Str, "/var/lib/gsyncd/${session}", "Durable session state: per-brick working dirs, failure ledger, status files.")
        .v(V::AbsPath)
        .tmpl(),
    opt("run-dir", Str, "/run/gsyncd/${session}", "Runtime files: pid file, ssh control sockets, aux mountpoints.")
        .v(V::AbsPath)
        .tmpl(),
    opt(
        "metrics-listen",
        Str,
        "",
        "Address of the monitor's Prometheus endpoint (GET /metrics, plain HTTP), e.g. 127.0.0.1:9469; empty: off.",
    )
    .v(V::SocketAddr),
    // --- reference options ---
    opt("primary-bricks", Str, "", "Unused.").was(&["master-bricks"]).dead(DEAD_VOLINFO),
    opt("secondary-bricks", Str, "", "Unused.").was(&["slave-bricks"]).dead(DEAD_VOLINFO),
    opt("primary-volume-id", Str, "", "Unused.").was(&["master-volume-id"]).dead(DEAD_VOLINFO),
    opt("secondary-volume-id", Str, "", "Unused.").was(&["slave-volume-id"]).dead(DEAD_VOLINFO),
    opt("primary-replica-count", Int, "1", "Unused.").was(&["master-replica-count"]).dead(DEAD_VOLINFO),
    opt("primary-disperse-count", Int, "1", "Unused.").was(&["master-disperse-count"]).dead(DEAD_VOLINFO),
    opt("primary-distribution-count", Int, "1", "Distribute count of the primary volume; computed by the monitor and sent to the secondary (affects RENAME).")
        .v(V::MinMax(1, 100_000))
        .was(&["master-distribution-count"])
        .fixed(),
    opt("glusterd-workdir", Str, "/var/lib/glusterd", "glusterd's working directory (template variable).").v(V::AbsPath),
    opt("gluster-logdir", Str, "/var/log/glusterfs", "GlusterFS log directory (template variable).").v(V::AbsPath),
    opt("gluster-rundir", Str, "/run/gluster", "GlusterFS runtime directory (template variable).").v(V::AbsPath),
    opt("gsyncd-miscdir", Str, "/var/lib/misc/gluster/gsyncd", "The reference's scratch root (template variable only).").v(V::AbsPath),
    opt("stime-xattr-prefix", Str, "", "Prefix of the stime xattrs on primary bricks, trusted.glusterfs.<primary uuid>.<secondary uuid>; set by the monitor."),
    opt("checkpoint", Int, "0", "Checkpoint: sync is complete for this time once everything changed before it is on the secondary.").v(V::UnixTime),
    opt("gluster-cli-options", Str, "", "Extra arguments for the gluster CLI (mountbroker setups)."),
    opt("pid-file", Str, "${run_dir}/monitor.pid", "Supervisor pid and lock file.").v(V::AbsPath).tmpl().fixed(),
    opt("state-file", Str, "${state_dir}/monitor.status", "Session status file (the reference's monitor.status).")
        .v(V::AbsPath)
        .tmpl()
        .fixed(),
    opt("georep-session-working-dir", Str, "${state_dir}/", "Session working directory, removed by delete.")
        .v(V::AbsPath)
        .tmpl()
        .fixed(),
    opt("access-mount", Bool, "false", "Keep the primary aux mount visible (no lazy unmount, no private namespace); for debugging."),
    opt("secondary-access-mount", Bool, "false", "Keep the secondary aux mount visible; for debugging.").was(&["slave-access-mount"]),
    opt("isolated-secondarys", Str, "", "Unused.")
        .was(&["isolated-slaves", "isolated-secondaries"])
        .dead("never read by the reference"),
    opt("changelog-batch-size", Int, "727040", "Maximum bytes of changelogs processed in one batch.").v(V::MinMax(1, i64::MAX)),
    opt("secondary-timeout", Int, "120", "Seconds without traffic after which the secondary gives up; the keep-alive runs at a fraction of it. 0 disables.")
        .v(V::MinMax(0, 86_400))
        .was(&["slave-timeout", "timeout"]),
    opt("connection-timeout", Int, "60", "Seconds allowed for a worker to mount and connect before it counts as failed.").v(V::MinMax(1, 86_400)),
    opt("replica-failover-interval", Int, "1", "Seconds between Active/Passive re-checks.").v(V::MinMax(1, 3600)),
    opt("changelog-archive-format", Str, "%Y%m", "strftime format of the processed-changelog archive names (archive_<format>.tar)."),
    opt("use-meta-volume", Bool, "false", "Elect the Active worker of a replica set by locks on the shared meta volume."),
    opt("meta-volume-mnt", Str, "/run/gluster/shared_storage", "Mount point of the shared meta volume.").v(V::AbsPath),
    opt("allow-network", Str, "", "Unused.").dead("never read by the reference"),
    opt("change-interval", Int, "5", "Seconds between live changelog crawls.").v(V::MinMax(1, 3600)),
    opt("sync-method", Str, "rsync", "Data engine: rsync, or tarssh (tar over ssh, better for many small files).")
        .v(V::Choice(&["rsync", "tarssh"]))
        .was(&["use-tarssh"]),
    opt("remote-gsyncd", Str, "", "gsyncd command on the secondary; empty lets the ssh forced command choose."),
    opt("gluster-command-dir", Str, "/usr/sbin", "Directory of gluster and glusterfs on the primary.").v(V::AbsPath),
    opt("secondary-gluster-command-dir", Str, "/usr/sbin", "Directory of gluster and glusterfs on the secondary.")
        .v(V::AbsPath)
        .was(&["slave-gluster-command-dir"]),
    opt("gluster-params", Str, "aux-gfid-mount acl", "Mount options of the aux-gfid mounts (both sides)."),
    opt("secondary-gluster-params", Str, "aux-gfid-mount acl", "Unused.")
        .was(&["slave-gluster-params"])
        .dead("never read by the reference; both sides mount with gluster-params"),
    opt("ignore-deletes", Bool, "false", "Do not propagate unlink and rmdir to the secondary."),
    opt("special-sync-mode", Str, "", "Empty for normal sync, or partial or recover.").v(V::Choice(&["", "partial", "recover"])),
    opt("gfid-conflict-resolution", Bool, "true", "Fix GFID mismatches between the volumes automatically."),
    opt("working-dir", Str, "${state_dir}/changelogs/", "Per-brick changelog scratch directories.")
        .v(V::AbsPath)
        .tmpl()
        .fixed(),
    opt("change-detector", Str, "changelog", "How changes are found: changelog, or xsync (filesystem crawl).")
        .v(V::Choice(&["changelog", "xsync"])),
    opt("cli-log-file", Str, "", "Unused.").dead(DEAD_LOGFILE),
    opt("cli-log-level", Str, "INFO", "Unused.").dead(DEAD_LOGFILE),
    opt("log-file", Str, "", "Unused.").dead(DEAD_LOGFILE),
    opt("changelog-log-file", Str, "", "Unused.").dead(DEAD_LIBGFCHANGELOG),
    opt(
        "gluster-log-file",
        Str,
        "${gluster_logdir}/geo-replication/${session}/mnt-${local_id}.log",
        "Log of the primary aux mount (glusterfs client).",
    )
    .tmpl()
    .fixed(),
    opt("secondary-log-file", Str, "", "Unused.").was(&["slave-log-file"]).dead(DEAD_LOGFILE),
    opt(
        "secondary-gluster-log-file",
        Str,
        "${gluster_logdir}/geo-replication-secondaries/${session}/mnt-${primary_node}-${primary_brick_id}.log",
        "Log of the secondary aux mount (glusterfs client on the secondary).",
    )
    .was(&["slave-gluster-log-file"])
    .tmpl()
    .fixed(),
    opt("secondary-gluster-log-file-mbr", Str, "", "Unused.")
        .was(&["slave-gluster-log-file-mbr"])
        .dead("never read by the reference"),
    opt("log-level", Str, "INFO", "Log level of the supervisor, monitor, agents and workers.").v(V::Choice(LOG_LEVELS)),
    opt("gluster-log-level", Str, "INFO", "Log level of the primary aux mount.").v(V::Choice(LOG_LEVELS)),
    opt("changelog-log-level", Str, "INFO", "Unused.").dead(DEAD_LIBGFCHANGELOG),
    opt("secondary-log-level", Str, "INFO", "Log level of the secondary server.")
        .v(V::Choice(LOG_LEVELS))
        .was(&["slave-log-level"]),
    opt("secondary-gluster-log-level", Str, "INFO", "Log level of the secondary aux mount.")
        .v(V::Choice(LOG_LEVELS))
        .was(&["slave-gluster-log-level"]),
    opt("ssh-port", Int, "22", "ssh port of the secondary nodes.").v(V::MinMax(1, 65535)),
    opt("ssh-command", Str, "ssh", "ssh client command.").v(V::ExecPath),
    opt("tar-command", Str, "tar", "tar command of sync-method tarssh (the reference ignores it).").v(V::ExecPath),
    opt(
        "ssh-options",
        Str,
        "-oPasswordAuthentication=no -oStrictHostKeyChecking=accept-new -oUserKnownHostsFile=${state_dir}/ssh/known_hosts -i ${state_dir}/ssh/secret.pem",
        "Options of the ssh that carries the RPC and rsync.",
    )
    .tmpl(),
    opt(
        "ssh-options-tar",
        Str,
        "-oPasswordAuthentication=no -oStrictHostKeyChecking=accept-new -oUserKnownHostsFile=${state_dir}/ssh/known_hosts -i ${state_dir}/ssh/tar_ssh.pem",
        "Options of the ssh that carries tar.",
    )
    .tmpl(),
    opt("gluster-command", Str, "gluster", "gluster CLI; a bare name is looked up in gluster-command-dir (the reference ignores it)."),
    opt("sync-jobs", Int, "3", "Parallel data-sync jobs per worker.").v(V::MinMax(1, 100)),
    opt("rsync-command", Str, "rsync", "rsync command.").v(V::ExecPath),
    opt("rsync-options", Str, "", "Extra rsync options, split on whitespace."),
    opt("rsync-ssh-options", Str, "", "Extra ssh options for rsync's -e."),
    opt("rsync-opt-ignore-missing-args", Bool, "true", "Pass --ignore-missing-args to rsync (3.1.0 or later)."),
    opt("rsync-opt-existing", Bool, "true", "Pass --existing to rsync: data sync never creates files."),
    opt("log-rsync-performance", Bool, "false", "Log rsync transfer statistics of each batch; read again while running."),
    opt("use-rsync-xattrs", Bool, "false", "Ask the secondary to accept rsync's xattr marks (refused by a non-root secondary)."),
    opt("sync-xattrs", Bool, "true", "Sync extended attributes (rsync --xattrs)."),
    opt("sync-acls", Bool, "true", "Sync POSIX ACLs (rsync --acls)."),
    opt("inline-max-size", Int, "131072", "Regular files up to this many bytes are sent inside the worker's RPC stream (read whole, written in place with owner, mode, times and xattrs), not by rsync or tar; 0 sends every file by sync-method.").v(V::MinMax(0, 4 << 20)),
    opt("live-changelog", Bool, "true", "Follow each primary brick's changelog while the translator writes it: entries replay once 1 s old (files created and renamed over within that time are not made at all), data and metadata once 2 s old, and the rolled changelog replays only what changed since; false waits for every rollover, as the reference does."),
    opt("max-rsync-retries", Int, "10", "Attempts at a batch's data before its files go to the failure ledger.").v(V::MinMax(1, 1000)),
    opt("state-socket-unencoded", Str, "", "Unused.").dead("glusterd requires the key of the reference; gsyncd is not driven by glusterd"),
    opt("session-owner", Str, "", "Unused.").dead(DEAD_SHIM),
    opt("ssh-command-tar", Str, "", "Unused.").dead(DEAD_SHIM),
    opt("state-detail-file", Str, "", "Unused.").dead(DEAD_SHIM),
    opt("socketdir", Str, "", "Unused.").dead(DEAD_SHIM),
    opt("log-file-mbr", Str, "", "Unused.").dead(DEAD_SHIM),
];

/// Template variables that are not options: they come from the session's
/// identity or from the role that expands the value.
pub const EXTRA_VARIABLES: &[(&str, &str)] = &[
    ("session", "session name"),
    ("secondaryvol", "secondary volume name"),
    ("secondaryuser", "ssh user on the secondary (default root)"),
    ("primary_secondary_host", "secondary host without the user"),
    ("local_id", "escaped local brick path (workers and agents)"),
    ("local_path", "local brick path (workers and agents)"),
    ("local_node", "local node name"),
    ("local_node_id", "local node UUID"),
    ("primary_node", "primary node name (secondary side)"),
    ("primary_brick", "primary brick path (secondary side)"),
    ("primary_brick_id", "escaped primary brick path (secondary side)"),
];

/// The result of looking a name up: the option, and whether the name was a
/// legacy spelling whose values need mapping.
#[derive(Debug, Clone, Copy)]
pub struct Lookup {
    pub spec: &'static OptionSpec,
    /// The spelling was `use-tarssh`: a boolean that maps onto `sync-method`.
    pub use_tarssh: bool,
    /// The spelling differed from the canonical name (other than `_` for `-`).
    pub renamed: bool,
}

/// Canonical spelling of a name as typed: `_` becomes `-`.
pub fn normalize(name: &str) -> String {
    name.replace('_', "-")
}

/// Finds an option by its canonical name, `_` spelling or a legacy name.
pub fn lookup(name: &str) -> Option<Lookup> {
    let n = normalize(name);
    if let Some(spec) = OPTIONS.iter().find(|o| o.name == n) {
        return Some(Lookup { spec, use_tarssh: false, renamed: false });
    }
    OPTIONS.iter().find(|o| o.legacy.contains(&n.as_str())).map(|spec| Lookup {
        spec,
        use_tarssh: n == "use-tarssh",
        renamed: true,
    })
}

/// Finds an option by canonical name only. The table is static, so callers
/// inside gsyncd use names that exist; `None` means a programming error they
/// report as such.
pub fn spec(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.name == name)
}

/// The nearest live option names to a misspelt one, for "did you mean".
pub fn suggestions(name: &str) -> Vec<&'static str> {
    let n = normalize(name);
    let mut scored: Vec<(usize, &'static str)> = OPTIONS
        .iter()
        .filter(|o| o.is_live())
        .map(|o| (edit_distance(&n, o.name), o.name))
        .filter(|(d, o)| *d <= 3 || o.contains(n.as_str()) && n.len() >= 4)
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, n)| n).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_and_legacy_names_are_unique() {
        let mut seen = HashSet::new();
        for o in OPTIONS {
            assert!(seen.insert(o.name), "duplicate {}", o.name);
            assert_eq!(o.name, normalize(o.name), "{} is not kebab-case", o.name);
            for l in o.legacy {
                assert!(seen.insert(l), "legacy {l} collides");
            }
        }
    }

    #[test]
    fn every_reference_option_is_present() {
        // The 10.3 template's option list (reference §3.3), in reference spelling.
        let reference = [
            "primary-bricks",
            "secondary-bricks",
            "primary-volume-id",
            "secondary-volume-id",
            "primary-replica-count",
            "primary-disperse-count",
            "primary-distribution-count",
            "glusterd-workdir",
            "gluster-logdir",
            "gluster-rundir",
            "gsyncd-miscdir",
            "stime-xattr-prefix",
            "checkpoint",
            "gluster-cli-options",
            "pid-file",
            "state-file",
            "georep-session-working-dir",
            "access-mount",
            "secondary-access-mount",
            "isolated-secondarys",
            "changelog-batch-size",
            "secondary-timeout",
            "connection-timeout",
            "replica-failover-interval",
            "changelog-archive-format",
            "use-meta-volume",
            "meta-volume-mnt",
            "allow-network",
            "change-interval",
            "sync-method",
            "remote-gsyncd",
            "gluster-command-dir",
            "secondary-gluster-command-dir",
            "gluster-params",
            "secondary-gluster-params",
            "ignore-deletes",
            "special-sync-mode",
            "gfid-conflict-resolution",
            "working-dir",
            "change-detector",
            "cli-log-file",
            "cli-log-level",
            "log-file",
            "changelog-log-file",
            "gluster-log-file",
            "secondary-log-file",
            "secondary-gluster-log-file",
            "secondary-gluster-log-file-mbr",
            "log-level",
            "gluster-log-level",
            "changelog-log-level",
            "secondary-log-level",
            "secondary-gluster-log-level",
            "ssh-port",
            "ssh-command",
            "tar-command",
            "ssh-options",
            "ssh-options-tar",
            "gluster-command",
            "sync-jobs",
            "rsync-command",
            "rsync-options",
            "rsync-ssh-options",
            "rsync-opt-ignore-missing-args",
            "rsync-opt-existing",
            "log-rsync-performance",
            "use-rsync-xattrs",
            "sync-xattrs",
            "sync-acls",
            "max-rsync-retries",
            "state_socket_unencoded",
        ];
        for r in reference {
            assert!(lookup(r).is_some(), "reference option {r} missing");
        }
    }

    #[test]
    fn legacy_names_map() {
        assert_eq!(lookup("slave-timeout").map(|l| l.spec.name), Some("secondary-timeout"));
        assert_eq!(lookup("timeout").map(|l| l.spec.name), Some("secondary-timeout"));
        assert_eq!(lookup("master_distribution_count").map(|l| l.spec.name), Some("primary-distribution-count"));
        let t = lookup("use_tarssh");
        assert!(t.is_some_and(|l| l.use_tarssh && l.spec.name == "sync-method"));
        assert!(lookup("sync_jobs").is_some_and(|l| !l.renamed));
        assert!(lookup("bogus").is_none());
    }

    #[test]
    fn suggestions_find_typos() {
        assert_eq!(suggestions("sync-job").first(), Some(&"sync-jobs"));
    }
}
