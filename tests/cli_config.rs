//! `gsyncd config ...` and the CLI's exit codes, run as an administrator
//! would: the real binary against session files in a temporary config dir.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
    fn session(&self, name: &str) -> PathBuf {
        self.path().join(format!("{name}.toml"))
    }
    /// Runs gsyncd with this config dir (through the environment variable,
    /// as systemd units and tests do).
    fn gsyncd(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_gsyncd"))
            .args(args)
            .env("GSYNCD_CONFIG_DIR", self.path())
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn version_names_gsyncd() {
    let d = Dir::new();
    let o = d.gsyncd(&["--version"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).starts_with("gsyncd "), "{}", stdout(&o));
}

#[test]
fn invalid_value_exits_3_naming_the_range() {
    let d = Dir::new();
    let o = d.gsyncd(&["config", "set", "demo", "sync-jobs", "0"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(stderr(&o).contains("sync-jobs") && stderr(&o).contains("1..100"), "{}", stderr(&o));
    assert!(!d.session("demo").exists(), "a refused value must not create the session");
    let o = d.gsyncd(&["config", "set", "demo", "sync-method", "scp"]);
    assert_eq!(code(&o), 3);
    assert!(stderr(&o).contains("rsync, tarssh"), "{}", stderr(&o));
}

#[test]
fn unknown_option_exits_2_with_suggestion() {
    let d = Dir::new();
    let o = d.gsyncd(&["config", "set", "demo", "bogus", "1"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("bogus"));
    let o = d.gsyncd(&["config", "set", "demo", "sync-job", "1"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("did you mean sync-jobs"), "{}", stderr(&o));
}

#[test]
fn not_configurable_exits_4() {
    let d = Dir::new();
    for (name, value) in [("pid-file", "/x"), ("state-file", "/y"), ("working-dir", "/z")] {
        let o = d.gsyncd(&["config", "set", "demo", name, value]);
        assert_eq!(code(&o), 4, "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains(name), "{}", stderr(&o));
    }
    // A dead option of the reference says why it does nothing.
    let o = d.gsyncd(&["config", "set", "demo", "log-file", "/x.log"]);
    assert_eq!(code(&o), 4);
    assert!(stderr(&o).contains("journal"), "{}", stderr(&o));
    // And a hand-edited file cannot set it either.
    fs::write(d.session("demo"), "pid-file = \"/x\"\n").unwrap();
    let o = d.gsyncd(&["config", "get", "demo"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).contains("demo.toml:1"), "{}", stderr(&o));
}

#[test]
fn legacy_names_set_the_new_option() {
    let d = Dir::new();
    let o = d.gsyncd(&["config", "set", "demo", "slave-timeout", "30"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = fs::read_to_string(d.session("demo")).unwrap();
    assert!(text.contains("secondary-timeout = 30"), "{text}");
    assert!(!text.contains("slave"), "{text}");
    let o = d.gsyncd(&["config", "get", "demo", "secondary-timeout"]);
    assert_eq!(stdout(&o), "30\n");
    let o = d.gsyncd(&["config", "get", "demo", "timeout"]);
    assert_eq!(stdout(&o), "30\n");
    for (name, value, key, stored) in [
        ("master_distribution_count", "2", "", ""),
        ("use-tarssh", "true", "sync-method", "\"tarssh\""),
        ("slave_log_level", "debug", "secondary-log-level", "\"DEBUG\""),
        ("sync_jobs", "5", "sync-jobs", "5"),
    ] {
        let o = d.gsyncd(&["config", "set", "demo", name, value]);
        if key.is_empty() {
            assert_eq!(code(&o), 4, "{name}: {}", stderr(&o));
            continue;
        }
        assert_eq!(code(&o), 0, "{name}: {}", stderr(&o));
        let text = fs::read_to_string(d.session("demo")).unwrap();
        assert!(text.contains(&format!("{key} = {stored}")), "{name}: {text}");
    }
}

#[test]
fn set_keeps_comments_and_order_and_a_hand_edited_legacy_key_is_renamed_in_place() {
    let d = Dir::new();
    let original = "# Production session to DR.\n\n# keep it busy\nsync-jobs = 3 # tuned 2025\n\
                    slave-timeout = 60\n# trailing note\nlog-level = \"INFO\"\n";
    fs::write(d.session("demo"), original).unwrap();
    assert_eq!(code(&d.gsyncd(&["config", "set", "demo", "sync-jobs", "8"])), 0);
    assert_eq!(code(&d.gsyncd(&["config", "set", "demo", "secondary-timeout", "90"])), 0);
    assert_eq!(code(&d.gsyncd(&["config", "set", "demo", "ignore-deletes", "yes"])), 0);
    let text = fs::read_to_string(d.session("demo")).unwrap();
    assert_eq!(
        text,
        "# Production session to DR.\n\n# keep it busy\nsync-jobs = 8 # tuned 2025\n\
         secondary-timeout = 90\n# trailing note\nlog-level = \"INFO\"\nignore-deletes = true\n"
    );
    // Setting the same value again leaves the file untouched.
    let before = fs::metadata(d.session("demo")).unwrap().modified().unwrap();
    assert_eq!(code(&d.gsyncd(&["config", "set", "demo", "sync-jobs", "8"])), 0);
    assert_eq!(fs::metadata(d.session("demo")).unwrap().modified().unwrap(), before);
}

#[test]
fn malformed_file_gives_file_line_and_exit_5() {
    let d = Dir::new();
    fs::write(d.session("demo"), "sync-jobs = 3\nlog-level = DEBUG\n").unwrap();
    for args in [&["config", "get", "demo"][..], &["config", "set", "demo", "sync-jobs", "4"]] {
        let o = d.gsyncd(args);
        assert_eq!(code(&o), 5, "{}", stderr(&o));
        let path = d.session("demo");
        assert!(stderr(&o).contains(&format!("{}:2:", path.display())), "{}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    }
    // The refused edit left the file as it was.
    assert_eq!(fs::read_to_string(d.session("demo")).unwrap(), "sync-jobs = 3\nlog-level = DEBUG\n");

    fs::write(d.session("demo"), "# ok\nsync-jobs = 3\nsync-jbos = 4\n").unwrap();
    let o = d.gsyncd(&["config", "get", "demo"]);
    assert_eq!(code(&o), 5);
    assert!(stderr(&o).contains("demo.toml:3: unknown option \"sync-jbos\"; did you mean sync-jobs"), "{}", stderr(&o));

    fs::write(d.session("demo"), "sync-jobs = \"3\"\n").unwrap();
    let o = d.gsyncd(&["config", "get", "demo"]);
    assert_eq!(code(&o), 5);
    assert!(stderr(&o).contains("expected integer, found string"), "{}", stderr(&o));

    fs::write(d.session("demo"), b"sync-jobs = 3\n\xff\n").unwrap();
    let o = d.gsyncd(&["config", "get", "demo"]);
    assert_eq!(code(&o), 5);
    assert!(stderr(&o).contains("demo.toml:2:1: the file is not valid UTF-8"), "{}", stderr(&o));
}

#[test]
fn get_lists_set_options_defaults_and_json() {
    let d = Dir::new();
    assert_eq!(code(&d.gsyncd(&["config", "set", "demo", "primary", "gv0"])), 0);
    assert_eq!(code(&d.gsyncd(&["config", "set", "demo", "secondary", "geo@dr1::gv1"])), 0);
    assert_eq!(code(&d.gsyncd(&["config", "set", "demo", "sync-jobs", "4"])), 0);
    let o = d.gsyncd(&["config", "get", "demo"]);
    assert_eq!(stdout(&o), "primary:gv0\nsecondary:geo@dr1::gv1\nsync-jobs:4\n");

    let o = d.gsyncd(&["config", "get", "demo", "--show-defaults"]);
    let out = stdout(&o);
    assert!(out.contains("pid-file:/run/gsyncd/demo/monitor.pid\n"), "{out}");
    assert!(out.contains("ssh-options:-oPasswordAuthentication=no"), "{out}");
    assert!(out.contains("secondary-timeout:120\n"), "{out}");
    assert!(!out.contains("\nlog-file:"), "dead options are not listed: {out}");

    let o = d.gsyncd(&["config", "get", "demo", "--show-defaults", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let items = v.as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|i| i["name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "JSON is sorted by name");
    let jobs = items.iter().find(|i| i["name"] == "sync-jobs").unwrap();
    assert_eq!(jobs["value"], 4);
    assert_eq!(jobs["default"], 3, "the default is the default, not the current value");
    assert_eq!(jobs["modified"], true);
    assert_eq!(jobs["configurable"], true);
    let pid = items.iter().find(|i| i["name"] == "pid-file").unwrap();
    assert_eq!(pid["configurable"], false);

    let o = d.gsyncd(&["config", "get", "demo", "pid-file"]);
    assert_eq!(stdout(&o), "/run/gsyncd/demo/monitor.pid\n");
    let o = d.gsyncd(&["config", "get", "demo", "nope"]);
    assert_eq!(code(&o), 2);
    let o = d.gsyncd(&["config", "get", "other"]);
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    assert!(stderr(&o).contains("other.toml does not exist"), "{}", stderr(&o));
}

#[test]
fn state_paths_follow_state_dir_and_run_dir() {
    let d = Dir::new();
    assert_eq!(code(&d.gsyncd(&["config", "set", "demo", "run-dir", "/srv/gs/${session}/run"])), 0);
    let o = d.gsyncd(&["config", "get", "demo", "pid-file"]);
    assert_eq!(stdout(&o), "/srv/gs/demo/run/monitor.pid\n");
    let o = d.gsyncd(&["config", "set", "demo", "run-dir", "relative/x"]);
    assert_eq!(code(&o), 3);
    let o = d.gsyncd(&["config", "set", "demo", "state-dir", "/x/${sesion}"]);
    assert_eq!(code(&o), 3);
    assert!(stderr(&o).contains("unknown template variable ${sesion}"), "{}", stderr(&o));
}

#[test]
fn checkpoint_now_and_bool_spellings() {
    let d = Dir::new();
    assert_eq!(code(&d.gsyncd(&["config", "set", "demo", "checkpoint", "now"])), 0);
    let o = d.gsyncd(&["config", "get", "demo", "checkpoint"]);
    let t: i64 = stdout(&o).trim().parse().unwrap();
    assert!(t > 1_700_000_000);
    let o = d.gsyncd(&["config", "set", "demo", "checkpoint", "5"]);
    assert_eq!(code(&o), 3);
    let o = d.gsyncd(&["config", "set", "demo", "ignore-deletes", "perhaps"]);
    assert_eq!(code(&o), 3);
    let o = d.gsyncd(&["config", "set", "demo", "ssh-options", "-oPort=2222 -i /k"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn reset_one_and_all() {
    let d = Dir::new();
    fs::write(
        d.session("demo"),
        "# header stays\n\nprimary = \"gv0\"\nsecondary = \"h::v\"\n# jobs\nsync-jobs = 4\nlog-level = \"DEBUG\"\nlog-file = \"/old\"\n",
    )
    .unwrap();
    assert_eq!(code(&d.gsyncd(&["config", "reset", "demo", "sync_jobs"])), 0);
    let text = fs::read_to_string(d.session("demo")).unwrap();
    assert!(!text.contains("sync-jobs") && !text.contains("# jobs"), "{text}");
    assert!(text.starts_with("# header stays\n"), "{text}");
    // Resetting what is not set succeeds, as in the reference.
    assert_eq!(code(&d.gsyncd(&["config", "reset", "demo", "sync-jobs"])), 0);
    assert_eq!(code(&d.gsyncd(&["config", "reset", "demo", "pid-file"])), 4);
    assert_eq!(code(&d.gsyncd(&["config", "reset", "demo", "bogus"])), 2);
    assert_eq!(code(&d.gsyncd(&["config", "reset", "nosuch", "sync-jobs"])), 6);
    assert_eq!(code(&d.gsyncd(&["config", "reset", "demo", "all"])), 0);
    let text = fs::read_to_string(d.session("demo")).unwrap();
    assert_eq!(text, "# header stays\n\nprimary = \"gv0\"\nsecondary = \"h::v\"\n");
}

#[test]
fn concurrent_sets_lose_nothing() {
    let d = Dir::new();
    assert_eq!(code(&d.gsyncd(&["config", "set", "demo", "primary", "gv0"])), 0);
    let opts = [
        ("sync-jobs", "9"),
        ("secondary-timeout", "33"),
        ("change-interval", "7"),
        ("ssh-port", "2222"),
        ("ignore-deletes", "true"),
        ("log-level", "DEBUG"),
        ("max-rsync-retries", "4"),
        ("changelog-batch-size", "1000"),
    ];
    let children: Vec<_> = opts
        .iter()
        .map(|(n, v)| {
            Command::new(env!("CARGO_BIN_EXE_gsyncd"))
                .args(["config", "set", "demo", n, v])
                .env("GSYNCD_CONFIG_DIR", d.path())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let o = d.gsyncd(&["config", "get", "demo"]);
    for (n, v) in opts {
        assert!(stdout(&o).contains(&format!("{n}:{v}\n")), "{n} lost:\n{}", stdout(&o));
    }
}

#[test]
fn import_reference_session() {
    let d = Dir::new();
    let refdir = d.path().join("ref/gv0_dr1_gv1");
    fs::create_dir_all(&refdir).unwrap();
    let src = refdir.join("gsyncd.conf");
    fs::write(
        &src,
        "[vars]\nstime-xattr-prefix = trusted.glusterfs.1234.5678\nsync-jobs = 6\nslave-timeout = 45\n\
         use-meta-volume = true\nignore-deletes = 1\nlog-file = /var/log/x.log\npid-file = /run/x.pid\n",
    )
    .unwrap();
    let o = d.gsyncd(&["config", "import", "prod", src.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let report = stdout(&o);
    for line in [
        "kept      stime-xattr-prefix = trusted.glusterfs.1234.5678",
        "renamed   slave-timeout -> secondary-timeout = 45",
        "converted ignore-deletes = 1 -> ignore-deletes = false (the reference read \"1\" as false)",
        "dropped   log-file: no effect",
        "dropped   pid-file: not configurable",
    ] {
        assert!(report.contains(line), "missing {line:?} in:\n{report}");
    }
    let o = d.gsyncd(&["config", "get", "prod"]);
    let out = stdout(&o);
    assert!(out.contains("primary:gv0\n") && out.contains("secondary:dr1::gv1\n"), "{out}");
    assert!(out.contains("secondary-timeout:45\n") && out.contains("use-meta-volume:true\n"), "{out}");

    // An existing session is not replaced without --force.
    let o = d.gsyncd(&["config", "import", "prod", src.to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));

    // Unknown keys and invalid values stop the import, and nothing is written.
    fs::write(&src, "[vars]\nsync-jobs = 500\nmystery = 1\n").unwrap();
    let o = d.gsyncd(&["config", "import", "other", src.to_str().unwrap()]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stdout(&o).contains("REFUSED   sync-jobs (line 2)"), "{}", stdout(&o));
    assert!(stdout(&o).contains("REFUSED   mystery (line 3)"), "{}", stdout(&o));
    assert!(!d.session("other").exists());
    let o = d.gsyncd(&["config", "import", "other", src.to_str().unwrap(), "--force", "--secondary", "geo@h::v"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = d.gsyncd(&["config", "get", "other"]);
    assert_eq!(stdout(&o), "primary:gv0\nsecondary:geo@h::v\n");
}

#[test]
fn usage_errors_and_unimplemented_roles_have_their_codes() {
    let d = Dir::new();
    assert_eq!(code(&d.gsyncd(&[])), 64);
    assert_eq!(code(&d.gsyncd(&["config", "frob"])), 64);
    assert_eq!(code(&d.gsyncd(&["config", "get", "bad/name"])), 64);
    assert_eq!(code(&d.gsyncd(&["--log-level", "loud", "config", "get", "x"])), 64);
    // The gate outside an ssh session refuses, exit 1.
    let o = d.gsyncd(&["ssh-gate"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("interactive logins are not allowed"), "{}", stderr(&o));
    // The secondary needs a worker's Hello on stdin; without one it says so.
    let o = d.gsyncd(&["secondary", "gv0", "h::gv1"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("worker: connection closed"), "{}", stderr(&o));
    let o = d.gsyncd(&["secondary", "gv0", "nohost"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("invalid secondary"), "{}", stderr(&o));
    // Roles the supervisor starts refuse to run by hand.
    for role in [&["monitor", "demo"][..], &["agent", "demo", "--brick", "/b"], &["worker", "demo", "--brick", "/b"]] {
        let o = d.gsyncd(role);
        assert_eq!(code(&o), 64, "{role:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("started by `gsyncd supervise`"), "{}", stderr(&o));
    }
    let o = d.gsyncd(&["supervise", "nosuch"]);
    assert_eq!(code(&o), 6, "{}", stderr(&o));
}

#[test]
fn config_dir_option_overrides_the_environment() {
    let d = Dir::new();
    let other = Dir::new();
    let o = Command::new(env!("CARGO_BIN_EXE_gsyncd"))
        .args(["--config-dir", other.path().to_str().unwrap(), "config", "set", "demo", "sync-jobs", "2"])
        .env("GSYNCD_CONFIG_DIR", d.path())
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(other.session("demo").exists());
    assert!(!d.session("demo").exists());
}

#[test]
fn help_shows_operator_commands_only() {
    let d = Dir::new();
    let o = d.gsyncd(&["--help"]);
    assert_eq!(code(&o), 0);
    let out = stdout(&o);
    assert!(out.contains("config") && out.contains("--config-dir") && out.contains("--log-level"), "{out}");
    assert!(!out.contains("supervise") && !out.contains("ssh-gate"), "{out}");
}
