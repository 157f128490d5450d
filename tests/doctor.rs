//! `gsyncd doctor` and the metrics endpoint against real sessions (real
//! glusterd, FUSE mounts, sshd through the gate): doctor passes every check
//! on a good session, names the failing check with its fix for a closed
//! ssh port and for a primary without changelog, and passes on a running
//! session, whose monitor serves the brick's gauges as Prometheus text
//! (scraped with a plain TcpStream).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use gsyncd::cmd::doctor::Step;
use support::cluster::{Shape, Side};
use support::session::Session;
use support::{Fixture, Trial, trial};

fn main() {
    support::run(|fx| {
        vec![
            trial("doctor_passes_every_check_on_a_good_session", fx, good),
            trial("doctor_names_ssh_for_a_closed_port", fx, closed_port),
            trial("doctor_names_volume_options_for_a_primary_without_changelog", fx, no_changelog),
            trial("a_running_session_serves_metrics_and_passes_doctor", fx, metrics),
            Trial::test("doctor_of_an_unknown_session_exits_6", || {
                let d = tempfile::tempdir().unwrap();
                assert_eq!(gsyncd(d.path(), &["doctor", "nope"]).status.code(), Some(6));
                Ok(())
            }),
        ]
    })
}

/// `gsyncd doctor SESSION [--all]`.
fn doctor(sess: &Session, all: bool) -> Output {
    let mut args = vec!["doctor", sess.name.as_str()];
    if all {
        args.push("--all");
    }
    sess.gsyncd(&args)
}

/// Nothing of doctor's is left mounted or in the run directory's mnt/.
fn assert_clean(sess: &Session) {
    assert!(support::cluster::mounts_under(sess.dir.path()).is_empty(), "a mount is left");
    let mnt = sess.dir.path().join("run/mnt");
    let left: Vec<_> = fs::read_dir(&mnt).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", mnt.display());
}

fn gsyncd(config_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gsyncd")).arg("--config-dir").arg(config_dir).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}stderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The line of a step in doctor's output.
fn line(o: &Output, step: Step) -> String {
    let head = format!("[{}/{}] {}: ", step.number(), Step::ALL.len(), step.name());
    String::from_utf8_lossy(&o.stdout).lines().find(|l| l.starts_with(&head)).map(str::to_owned).unwrap_or_default()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn good(fx: &Fixture) {
    let (p, s) = fx.pair(Shape::Single);
    let sess = Session::new(fx, "good", &p, &s, "");
    let started = Instant::now();
    let o = doctor(&sess, false);
    eprintln!("doctor took {:?}:\n{}", started.elapsed(), String::from_utf8_lossy(&o.stdout));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for step in Step::ALL {
        assert!(line(&o, step).contains(": ok: "), "{step} did not pass: {}", text(&o));
    }
    assert!(line(&o, Step::Ssh).contains("forced command"), "{}", text(&o));
    assert!(line(&o, Step::Gate).contains("refused"), "{}", text(&o));
    assert!(line(&o, Step::SecondaryMount).contains(&s.name), "{}", text(&o));
    assert!(line(&o, Step::PidFile).contains("stopped"), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("14 checks passed"), "{}", text(&o));
    assert_clean(&sess);
    let run = sess.dir.path().join("run");
    assert!(!run.exists(), "doctor leaves no run directory behind: {:?}", fs::read_dir(&run).map(|d| d.count()));
}

fn closed_port(fx: &Fixture) {
    let (p, s) = fx.pair(Shape::Single);
    let sess = Session::new(fx, "closed", &p, &s, "");
    let port = free_port();
    sess.edit(|t| {
        let old = t.lines().find(|l| l.starts_with("ssh-port = ")).unwrap().to_owned();
        t.replace(&old, &format!("ssh-port = {port}"))
    });
    let o = doctor(&sess, false);
    assert_eq!(o.status.code(), Some(12), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("check ssh failed") && err.contains("Connection refused"), "{}", text(&o));
    assert!(err.contains("to fix:") && err.contains(&format!("port {port}")), "{}", text(&o));
    assert!(line(&o, Step::Versions).contains("skipped"), "{}", text(&o));
    assert!(line(&o, Step::Gate).is_empty(), "it stops at the first failure: {}", text(&o));

    // --all goes on: the local checks pass, the remote ones are skipped.
    let o = doctor(&sess, true);
    assert_eq!(o.status.code(), Some(12), "{}", text(&o));
    assert!(line(&o, Step::Gate).contains("skipped"), "{}", text(&o));
    assert!(line(&o, Step::PrimaryMount).contains(": ok: "), "{}", text(&o));
    assert!(line(&o, Step::PidFile).contains(": ok: "), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("check ssh failed"), "{}", text(&o));
    assert_clean(&sess);
}

fn no_changelog(fx: &Fixture) {
    // A secondary-side volume of the harness has no changelog options.
    let p = fx.volume("doctor-no-changelog", Shape::Single, Side::Secondary);
    let (_, s) = fx.pair(Shape::Single);
    let sess = Session::new(fx, "nochangelog", &p, &s, "");
    let o = doctor(&sess, false);
    assert_eq!(o.status.code(), Some(12), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("check volume options failed"), "{}", text(&o));
    assert!(err.contains("changelog.changelog and geo-replication.indexing are off"), "{}", text(&o));
    assert!(err.contains(&format!("gluster volume set {} changelog.changelog on", p.name)), "{}", text(&o));
    for step in &Step::ALL[..Step::VolumeOptions.number() - 1] {
        assert!(line(&o, *step).contains(": ok: "), "{step} before it passed: {}", text(&o));
    }
}

/// `GET path` over a plain TcpStream: (status line, body).
fn http_get(port: u16, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

/// The value of the sample `name{labels}` (labels given as they print).
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

fn metrics(fx: &Fixture) {
    let p = fx.volume("metrics-primary", Shape::Single, Side::Primary);
    let s = fx.volume("metrics-secondary", Shape::Single, Side::Secondary);
    fs::write(p.mount.join("m"), b"metrics").unwrap();
    let port = free_port();
    let sess = Session::new(fx, "met", &p, &s, &format!("metrics-listen = \"127.0.0.1:{port}\"\n"));
    let _running = sess.start();
    let brick = p.bricks[0].display().to_string();
    let labels = format!("{{session=\"met\",brick=\"{brick}\"}}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let (status, body) = http_get(port, "/metrics");
            assert_eq!(status, "HTTP/1.0 200 OK", "{body}");
            let crawl = format!(
                "gsyncd_brick_crawl_status{{session=\"met\",brick=\"{brick}\",crawl_status=\"Changelog Crawl\"}}"
            );
            if sample(&body, &crawl) == Some(1.0) {
                break body;
            }
        }
        assert!(Instant::now() < deadline, "no live changelog crawl in the metrics\n{}", sess.log_text());
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("metrics:\n{body}");
    let active = format!("gsyncd_brick_status{{session=\"met\",brick=\"{brick}\",status=\"Active\"}}");
    assert_eq!(sample(&body, &active), Some(1.0), "{body}");
    let passive = format!("gsyncd_brick_status{{session=\"met\",brick=\"{brick}\",status=\"Passive\"}}");
    assert_eq!(sample(&body, &passive), Some(0.0), "{body}");
    let synced = sample(&body, &format!("gsyncd_brick_last_synced_timestamp_seconds{labels}")).unwrap();
    assert!(synced > 1.7e9, "{body}");
    let lag = sample(&body, &format!("gsyncd_brick_lag_seconds{labels}")).unwrap();
    assert!((0.0..120.0).contains(&lag), "{body}");
    for name in [
        "gsyncd_brick_backlog_changelogs",
        "gsyncd_brick_entry_in_flight",
        "gsyncd_brick_data_in_flight",
        "gsyncd_brick_meta_in_flight",
        "gsyncd_brick_failures",
        "gsyncd_brick_files_synced_total",
        "gsyncd_brick_bytes_synced_total",
        "gsyncd_brick_entry_ops_total",
        "gsyncd_brick_meta_ops_total",
        "gsyncd_brick_restarts_total",
    ] {
        assert!(sample(&body, &format!("{name}{labels}")).is_some(), "{name} missing:\n{body}");
        assert!(body.contains(&format!("# TYPE {name} ")), "{name} has no TYPE:\n{body}");
    }
    assert!(sample(&body, &format!("gsyncd_brick_files_synced_total{labels}")).unwrap() >= 1.0, "{body}");
    assert_eq!(sample(&body, "gsyncd_up{session=\"met\"}"), Some(1.0), "{body}");
    // No checkpoint: no checkpoint sample.
    assert!(!body.contains("gsyncd_brick_checkpoint_completed{"), "{body}");
    // The same numbers as status --json.
    let o = sess.gsyncd(&["status", "met", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let b = &v["sessions"][0]["bricks"][0];
    assert_eq!(b["last_synced"].as_f64().unwrap(), synced, "{b:#}\n{body}");
    assert_eq!(b["restarts"].as_f64(), sample(&body, &format!("gsyncd_brick_restarts_total{labels}")), "{body}");
    let (status, _) = http_get(port, "/nope");
    assert_eq!(status, "HTTP/1.0 404 Not Found");

    // A checkpoint set meanwhile (the file changes, the monitor is not
    // told) shows, and completes on the idle volume.
    let o = sess.gsyncd(&["checkpoint", "set", "met"]);
    assert!(o.status.success(), "{}", text(&o));
    let done = format!("gsyncd_brick_checkpoint_completed{labels}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let (_, body) = http_get(port, "/metrics");
        if sample(&body, &done) == Some(1.0) {
            break body;
        }
        assert!(Instant::now() < deadline, "the checkpoint never completed:\n{body}\n{}", sess.log_text());
        std::thread::sleep(Duration::from_millis(500));
    };
    let cp = sample(&body, &format!("gsyncd_brick_checkpoint_timestamp_seconds{labels}")).unwrap();
    assert!(sample(&body, &format!("gsyncd_brick_last_synced_timestamp_seconds{labels}")).unwrap() >= cp, "{body}");

    // Doctor on the running session: everything passes, and the pid file
    // names the supervisor.
    let o = doctor(&sess, true);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(line(&o, Step::PidFile).contains("the session runs"), "{}", text(&o));
    assert!(line(&o, Step::StaleMounts).contains(": ok: "), "the worker's mount is not stale: {}", text(&o));
}
