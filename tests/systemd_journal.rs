//! Logging under a real systemd: records reach the journal with gsyncd's
//! structured fields, and a failure is logged once, as an error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{Fixture, trial};

fn main() {
    support::run(|fx| {
        vec![
            trial("records_carry_session_role_and_event_fields", fx, records_carry_fields),
            trial("a_failure_is_one_error_record", fx, failure_is_one_error_record),
            trial("stderr_not_connected_to_the_journal_gets_plain_text", fx, plain_stderr),
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
