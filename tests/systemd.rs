//! gsyncd under a real systemd (booted in systemd-nspawn): records reach the
//! journal with gsyncd's structured fields and a failure is logged once, as
//! an error; the gsyncd@.service unit starts a session against the real
//! local cluster, reports status, is restarted by the watchdog when the
//! supervisor hangs, and stops cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::cluster::Shape;
use support::{Fixture, trial, wait_for};

fn main() {
    support::run(|fx| {
        vec![
            trial("records_carry_session_role_and_event_fields", fx, records_carry_fields),
            trial("a_failure_is_one_error_record", fx, failure_is_one_error_record),
            trial("stderr_not_connected_to_the_journal_gets_plain_text", fx, plain_stderr),
            trial("unit_runs_a_session_restarts_on_watchdog_and_stops", fx, unit_lifecycle),
        ]
    })
}

/// Runs gsyncd as a transient service and returns its exit status.
fn run_unit(fx: &Fixture, unit: &str, extra: &[&str], args: &[&str]) -> i32 {
    let mut cmd = vec!["systemd-run", "--wait", "--collect", "--quiet", "--unit", unit];
    cmd.extend_from_slice(&["-E", "GSYNCD_CONFIG_DIR=/tmp/gsyncd-cfg"]);
    cmd.extend_from_slice(extra);
    cmd.push("/opt/gsyncd/gsyncd");
    cmd.extend_from_slice(args);
    // systemd-run --wait exits with the service's exit status.
    fx.systemd().exec(&cmd).status.code().unwrap_or(-1)
}

fn records_carry_fields(fx: &Fixture) {
    let args = ["--log-level", "info", "config", "set", "fields", "sync-jobs", "4"];
    assert_eq!(run_unit(fx, "gsyncd-journal-fields", &[], &args), 0);
    let recs = fx.systemd().journal(&["GSYNCD_SESSION=fields"], 1);
    let rec = recs
        .iter()
        .find(|r| r["MESSAGE"] == "option set")
        .unwrap_or_else(|| panic!("no 'option set' record in {recs:#?}"));
    assert_eq!(rec["SYSLOG_IDENTIFIER"], "gsyncd");
    assert_eq!(rec["GSYNCD_SESSION"], "fields");
    assert_eq!(rec["GSYNCD_ROLE"], "config");
    assert_eq!(rec["GSYNCD_OPTION"], "sync-jobs");
    // tracing's INFO maps to the journal's "notice".
    assert_eq!(rec["PRIORITY"], "5");
}

fn failure_is_one_error_record(fx: &Fixture) {
    let args = ["config", "set", "failing", "sync-jobs", "0"];
    assert_eq!(run_unit(fx, "gsyncd-journal-error", &[], &args), 3);
    let recs = fx.systemd().journal(&["GSYNCD_SESSION=failing"], 1);
    assert_eq!(recs.len(), 1, "{recs:#?}");
    assert_eq!(recs[0]["PRIORITY"], "3");
    assert_eq!(recs[0]["GSYNCD_EXIT"], "3");
    let msg = recs[0]["MESSAGE"].as_str().unwrap_or_default();
    assert!(msg.contains("invalid value for sync-jobs"), "{msg}");
    // Nothing else in the journal repeats it (no copy through stderr).
    let all = fx.systemd().journal(&[], 1);
    let copies =
        all.iter().filter(|r| r["MESSAGE"].as_str().is_some_and(|m| m.contains("invalid value for sync-jobs"))).count();
    assert_eq!(copies, 1, "the failure must be logged exactly once");
}

fn plain_stderr(fx: &Fixture) {
    let extra = ["-p", "StandardError=file:/tmp/gsyncd-err"];
    assert_eq!(run_unit(fx, "gsyncd-journal-file", &extra, &["config", "get", "missing"]), 6);
    let o = fx.systemd().exec(&["cat", "/tmp/gsyncd-err"]);
    let err = String::from_utf8_lossy(&o.stdout);
    assert!(err.starts_with("gsyncd: error: no session \"missing\""), "{err}");
}

fn unit_lifecycle(fx: &Fixture) {
    let (p, sv) = fx.pair(Shape::Single);
    // The session's ssh key lives with the harness sshd, under the base
    // directory the container binds: make both before booting.
    let config = support::session_config(fx, &p, &sv, std::path::Path::new("/var/lib/gsyncd/unitsess"));
    let sd = fx.systemd();
    let unit = "gsyncd@unitsess.service";
    let o = sd.exec(&["cp", "/opt/gsyncd-units/gsyncd@.service", "/etc/systemd/system/"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The binary under test instead of /usr/bin/gsyncd, and short timers.
    sd.write(
        "/etc/systemd/system/gsyncd@.service.d/test.conf",
        "[Service]\nExecStart=\nExecStart=/opt/gsyncd/gsyncd supervise %i\nWatchdogSec=4\nRestartSec=1\nTimeoutStopSec=5\n",
    );
    // The CLI talks to the host's glusterd over TCP: the container has its
    // own /run, without glusterd's socket.
    // A volatile root has no /etc/hosts; every real host names localhost.
    sd.write("/etc/hosts", "127.0.0.1 localhost\n::1 localhost\n");
    sd.write("/etc/gsyncd/unitsess.toml", &format!("{config}gluster-cli-options = \"--remote-host=127.0.0.1\"\n"));
    // The man pages are not installed here (no package yet).
    let verify = sd.exec(&["systemd-analyze", "verify", "--man=no", unit]);
    let complaints = String::from_utf8_lossy(&verify.stderr).into_owned();
    assert!(verify.status.success(), "systemd-analyze verify: {complaints}");
    assert!(sd.exec(&["systemctl", "daemon-reload"]).status.success());
    let start = sd.exec(&["timeout", "120", "systemctl", "start", unit]);
    let journal = || {
        let all = sd.exec(&["journalctl", "-u", unit, "--no-pager", "-n", "60"]);
        let bad = sd.exec(&["journalctl", "-u", unit, "--no-pager", "-p", "warning", "-n", "20", "-o", "cat"]);
        let mnt = sd.exec(&["sh", "-c", "tail -n 15 /var/lib/gsyncd/unitsess/log/geo-replication/*/*.log"]);
        format!(
            "{}\nwarnings and errors:\n{}\nmount log:\n{}",
            String::from_utf8_lossy(&all.stdout),
            String::from_utf8_lossy(&bad.stdout),
            String::from_utf8_lossy(&mnt.stdout)
        )
    };
    assert!(start.status.success(), "start failed: {}\n{}", String::from_utf8_lossy(&start.stderr), journal());
    let props = ["ActiveState", "SubState", "StatusText", "NRestarts", "MainPID", "Result"];
    let s = sd.show(unit, &props);
    assert_eq!(s["ActiveState"], "active", "{s:?}\n{}", journal());
    assert_eq!(s["NRestarts"], "0");
    assert!(s["StatusText"].starts_with("1 worker: 1 running; 0 faulty; monitor running"), "{s:?}");
    let main = s["MainPID"].clone();

    // A hung supervisor: the watchdog fires and systemd restarts the unit.
    assert!(sd.exec(&["kill", "-STOP", &main]).status.success());
    let s = wait_for(Duration::from_secs(60), "a watchdog restart", || {
        let s = sd.show(unit, &props);
        (s["NRestarts"] != "0" && s["ActiveState"] == "active" && s["MainPID"] != main && s["MainPID"] != "0")
            .then_some(s)
    });
    let log = journal();
    assert!(log.contains("Watchdog timeout"), "{log}");
    assert_ne!(s["MainPID"], main);

    // Structured fields reach the journal from the unit's processes.
    let recs = sd.journal(&["GSYNCD_SESSION=unitsess", "GSYNCD_ROLE=worker"], 1);
    assert!(recs.iter().any(|r| r["MESSAGE"] == "worker ready"), "{recs:#?}");

    // A clean stop: inactive, success, nothing left running.
    let stop = sd.exec(&["systemctl", "stop", unit]);
    assert!(stop.status.success(), "{}", String::from_utf8_lossy(&stop.stderr));
    let s = sd.show(unit, &props);
    assert_eq!((s["ActiveState"].as_str(), s["Result"].as_str()), ("inactive", "success"), "{s:?}\n{}", journal());
    let left = sd.exec(&["pgrep", "-f", "/opt/gsyncd/gsyncd"]);
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "processes left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    assert!(journal().contains("stopped"), "{}", journal());
}
