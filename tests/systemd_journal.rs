//! Logging under a real systemd: records reach the journal with gsyncd's
//! structured fields, and a failure is logged once, as an error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{Fixture, trial};

fn main() {
    support::run(|fx| {
        vec![
            trial(
                "records_carry_session_role_and_event_fields",
                fx,
                records_carry_fields,
            ),
            trial(
                "a_failure_is_one_error_record",
                fx,
                failure_is_one_error_record,
            ),
            trial(
                "stderr_not_connected_to_the_journal_gets_plain_text",
                fx,
                plain_stderr_when_redirected,
            ),
        ]
    })
}

fn run_unit(fx: &Fixture, unit: &str, extra: &[&str], args: &[&str]) -> i32 {
    let mut cmd = vec![
        "systemd-run",
        "--wait",
        "--collect",
        "--quiet",
        "--unit",
        unit,
        "-E",
        "GSYNCD_CONFIG_DIR=/tmp/gsyncd-cfg",
    ];
    cmd.extend_from_slice(extra);
    cmd.push("/opt/gsyncd/gsyncd");
    cmd.extend_from_slice(args);
    let o = fx.systemd().exec(&cmd);
    // systemd-run --wait exits with the service's exit status.
    o.status.code().unwrap_or(-1)
}

fn records_carry_fields(fx: &Fixture) {
    let unit = "gsyncd-journal-fields";
    assert_eq!(
        run_unit(
            fx,
            unit,
            &[],
            &[
                "--log-level",
                "info",
                "config",
                "set",
                "demo",
                "sync-jobs",
                "4"
            ]
        ),
        0
    );
    let recs = fx.systemd().journal(unit, 1);
    let rec = recs
        .iter()
        .find(|r| r["MESSAGE"] == "option set")
        .unwrap_or_else(|| panic!("no 'option set' record in {recs:#?}"));
    assert_eq!(rec["SYSLOG_IDENTIFIER"], "gsyncd");
    assert_eq!(rec["GSYNCD_SESSION"], "demo");
    assert_eq!(rec["GSYNCD_ROLE"], "config");
    assert_eq!(rec["GSYNCD_OPTION"], "sync-jobs");
    // tracing's INFO maps to the journal's "notice".
    assert_eq!(rec["PRIORITY"], "5");
}

fn failure_is_one_error_record(fx: &Fixture) {
    let unit = "gsyncd-journal-error";
    assert_eq!(
        run_unit(fx, unit, &[], &["config", "set", "demo", "sync-jobs", "0"]),
        3
    );
    let recs = fx.systemd().journal(unit, 1);
    let errors: Vec<_> = recs
        .iter()
        .filter(|r| {
            r["MESSAGE"]
                .as_str()
                .is_some_and(|m| m.contains("invalid value for sync-jobs"))
        })
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "the failure must be logged exactly once: {recs:#?}"
    );
    assert_eq!(errors[0]["PRIORITY"], "3");
    assert_eq!(errors[0]["GSYNCD_EXIT"], "3");
    assert_eq!(errors[0]["GSYNCD_SESSION"], "demo");
}

fn plain_stderr_when_redirected(fx: &Fixture) {
    let unit = "gsyncd-journal-file";
    let code = run_unit(
        fx,
        unit,
        &["-p", "StandardError=file:/tmp/gsyncd-err"],
        &["config", "get", "missing"],
    );
    assert_eq!(code, 6);
    let o = fx.systemd().exec(&["cat", "/tmp/gsyncd-err"]);
    let err = String::from_utf8_lossy(&o.stdout);
    assert!(
        err.starts_with("gsyncd: error: no session \"missing\""),
        "{err}"
    );
}
