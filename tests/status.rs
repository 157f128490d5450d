//! `gsyncd status` and `gsyncd checkpoint` against real sessions (real
//! glusterd, FUSE mounts, sshd through the gate): the table and the JSON of
//! a running session come from the monitor's socket; a stopped session is
//! Stopped from its files whatever monitor.status says; a checkpoint set on
//! an idle volume completes by itself and `wait` says so; `wait` exits with
//! its documented codes when it cannot complete.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::cluster::{Shape, Side};
use support::session::Session;
use support::{Fixture, Trial, trial};

fn main() {
    support::run(|fx| {
        vec![
            trial("status_and_checkpoint_of_a_running_then_stopped_session", fx, running_then_stopped),
            trial("a_faulty_brick_shows_its_error_and_wait_times_out", fx, faulty),
            trial("failure_ledger_items_hold_a_checkpoint_back", fx, held_back),
            Trial::test("unknown_sessions_and_bad_times_have_their_exit_codes", || {
                no_cluster();
                Ok(())
            }),
        ]
    })
}

fn gsyncd(config_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gsyncd")).arg("--config-dir").arg(config_dir).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn running_then_stopped(fx: &Fixture) {
    let (p, s) = fx.pair(Shape::Single);
    fs::create_dir_all(p.mount.join("st")).unwrap();
    fs::write(p.mount.join("st/f"), b"status").unwrap();
    let sess = Session::new(fx, "st", &p, &s, "");
    let brick = p.bricks[0].to_string_lossy().into_owned();
    let child = sess.start();

    // Running: the monitor answers, and the brick goes live.
    let v = sess.wait_json("the live changelog crawl", Duration::from_secs(60), |v| {
        v["sessions"][0]["bricks"][0]["crawl_status"] == "Changelog Crawl"
    });
    assert_eq!(v["version"], 1, "{v:#}");
    let se = &v["sessions"][0];
    assert_eq!(se["session"], "st");
    assert_eq!(se["state"], "Started");
    assert_eq!(se["running"], true);
    assert_eq!(se["source"], "monitor", "{se:#}");
    assert_eq!(se["primary"], p.name.as_str());
    assert_eq!(se["secondary_volume"], s.name.as_str());
    assert_eq!(se["secondary_user"], "root");
    let b = &se["bricks"][0];
    assert_eq!(b["brick"], brick.as_str(), "{b:#}");
    assert_eq!(b["status"], "Active", "{b:#}");
    assert_eq!(b["subvol"], 0, "{b:#}");
    assert_eq!(b["secondary_node"], "127.0.0.1", "{b:#}");
    assert_eq!(b["failures"], 0, "{b:#}");
    assert_eq!(b["checkpoint_time"], Value::Null, "no checkpoint yet: {b:#}");
    let synced = b["last_synced"].as_u64().unwrap();
    assert!(synced > 1_700_000_000, "{b:#}");
    assert!(b["lag_seconds"].as_u64().unwrap() <= unix_now() - synced + 1, "{b:#}");
    assert!(sess.dir.path().join("run/status.sock").exists());

    // The table: the reference's columns, one row for the brick.
    let o = sess.gsyncd(&["status", "st"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let lines: Vec<&str> = out.lines().collect();
    let header: Vec<&str> = lines[1].split("    ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(
        header,
        [
            "PRIMARY NODE",
            "PRIMARY VOL",
            "PRIMARY BRICK",
            "SECONDARY USER",
            "SECONDARY",
            "SECONDARY NODE",
            "STATUS",
            "CRAWL STATUS",
            "LAST_SYNCED"
        ],
        "{out}"
    );
    assert_eq!(lines.len(), 4, "one row: {out}");
    for word in [p.name.as_str(), &brick, "root", "Active", "Changelog Crawl"] {
        assert!(lines[3].contains(word), "{word} missing: {out}");
    }
    let o = sess.gsyncd(&["status", "--detail"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success() && out.lines().nth(1).unwrap().starts_with("SESSION "), "{}", text(&o));
    assert!(out.contains("CHECKPOINT COMPLETED") && out.contains("BYTES SYNCED"), "{out}");
    eprintln!("status --detail:{out}");

    // A checkpoint on an idle volume completes by itself, and wait says so.
    let o = sess.gsyncd(&["checkpoint", "set", "st"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("checkpoint of session st set to "), "{}", text(&o));
    let cp = fs::read_to_string(sess.dir.path().join("st.toml")).unwrap();
    let cp: u64 = cp.lines().find_map(|l| l.strip_prefix("checkpoint = ")).unwrap().parse().unwrap();
    assert!(cp.abs_diff(unix_now()) < 5, "{cp}");
    let start = Instant::now();
    let o = sess.gsyncd(&["checkpoint", "wait", "st", "--timeout", "60"]);
    assert_eq!(code(&o), 0, "{}\n{}", text(&o), sess.log_text());
    assert!(String::from_utf8_lossy(&o.stdout).contains("completed on 1 Active brick"), "{}", text(&o));
    eprintln!("checkpoint completed after {:?}", start.elapsed());
    let b = &sess.json()["sessions"][0]["bricks"][0];
    assert_eq!(b["checkpoint_time"], cp, "{b:#}");
    assert_eq!(b["checkpoint_completed"], true, "{b:#}");
    assert!(b["checkpoint_completion_time"].as_u64().unwrap() >= cp, "{b:#}");
    assert!(b["last_synced"].as_u64().unwrap() >= cp, "{b:#}");

    // One that cannot complete (an hour ahead): wait times out with 9.
    let later = (unix_now() + 3600).to_string();
    let o = sess.gsyncd(&["checkpoint", "set", "st", &later]);
    assert!(o.status.success(), "{}", text(&o));
    let b = &sess.json()["sessions"][0]["bricks"][0];
    assert_eq!(b["checkpoint_completed"], false, "a new checkpoint is not complete before the worker says so: {b:#}");
    let o = sess.gsyncd(&["checkpoint", "wait", "st", "--timeout", "2"]);
    assert_eq!(code(&o), 9, "{}", text(&o));
    assert!(text(&o).contains(&format!("{brick}: synced up to")), "{}", text(&o));

    // Stopped: from the files, with the reference's rules.
    sess.stop(child);
    assert!(!sess.dir.path().join("run/status.sock").exists(), "the monitor removes its socket");
    let se = sess.json()["sessions"][0].clone();
    assert_eq!(se["state"], "Stopped", "{se:#}");
    assert_eq!(se["running"], false);
    assert_eq!(se["source"], "files");
    let b = &se["bricks"][0];
    assert_eq!(b["brick"], brick.as_str(), "{b:#}");
    assert_eq!(b["status"], "Stopped", "{b:#}");
    for k in ["last_synced", "crawl_status", "secondary_node", "lag_seconds", "checkpoint_completed"] {
        assert_eq!(b[k], Value::Null, "{k} of a stopped brick: {b:#}");
    }
    let o = sess.gsyncd(&["status", "st"]);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).lines().nth(3).unwrap().contains("Stopped"),
        "{}",
        text(&o)
    );
    // A monitor.status that still says Started (a crash) does not make it
    // running: the pid file is not locked.
    fs::write(sess.dir.path().join("state/monitor.status"), "Started").unwrap();
    assert_eq!(sess.json()["sessions"][0]["bricks"][0]["status"], "Stopped");
    let o = sess.gsyncd(&["checkpoint", "wait", "st", "--timeout", "5"]);
    assert_eq!(code(&o), 10, "{}", text(&o));
    assert!(text(&o).contains("not running"), "{}", text(&o));
}

fn faulty(fx: &Fixture) {
    // Its own primary: this session never gets past ssh.
    let p = fx.volume("faulty-primary", Shape::Single, Side::Primary);
    let (_, s) = fx.pair(Shape::Single);
    let sess = Session::new(fx, "bad", &p, &s, "");
    let f = sess.dir.path().join("bad.toml");
    let t = fs::read_to_string(&f).unwrap();
    let port = t.lines().find(|l| l.starts_with("ssh-port = ")).unwrap().to_owned();
    fs::write(&f, t.replace(&port, "ssh-port = 1")).unwrap();
    let child = sess.start();
    let v = sess.wait_json("the failing brick", Duration::from_secs(60), |v| {
        let st = &v["sessions"][0]["bricks"][0]["status"];
        *st == "Retrying" || *st == "Faulty"
    });
    let b = &v["sessions"][0]["bricks"][0];
    assert!(b["last_error"].as_str().is_some_and(|e| e.contains("Connection refused")), "{b:#}");
    assert!(b["last_error_time"].as_u64().is_some_and(|t| t.abs_diff(unix_now()) < 120), "{b:#}");
    assert!(b["failed_phase"].as_str().is_some_and(|p| !p.is_empty()), "{b:#}");
    assert_eq!(b["last_synced"], Value::Null, "{b:#}");
    // The table names the error under it (a Faulty brick's always, but
    // the brick may be restarting now: --detail shows it in any state).
    let o = sess.gsyncd(&["status", "bad", "--detail"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success() && out.contains("Last errors:"), "{}", text(&o));
    assert!(out.contains("Connection refused"), "{out}");
    // No checkpoint yet: wait refuses (1); with one, it times out (9).
    let o = sess.gsyncd(&["checkpoint", "wait", "bad", "--timeout", "0"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("gsyncd checkpoint set bad"), "{}", text(&o));
    let o = sess.gsyncd(&["checkpoint", "set", "bad", "now"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = sess.gsyncd(&["checkpoint", "wait", "bad", "--timeout", "1"]);
    assert_eq!(code(&o), 9, "{}", text(&o));
    assert!([": Retrying", ": Faulty", ": Initializing..."].iter().any(|w| text(&o).contains(w)), "{}", text(&o));
    sess.stop(child);
}

/// A file that grows while it is sent does not arrive whole: its item in
/// the failure ledger holds the checkpoint back although stime passes it,
/// and `wait` says so (11); once it stops growing the checkpoint completes.
fn held_back(fx: &Fixture) {
    // Volumes of its own: the other trials' sessions run meanwhile.
    let p = fx.volume("ledger-primary", Shape::Single, Side::Primary);
    let s = fx.volume("ledger-secondary", Shape::Single, Side::Secondary);
    let sess = Session::new(fx, "held", &p, &s, "max-rsync-retries = 1\n");
    let child = sess.start();
    let brick = |v: &Value| v["sessions"][0]["bricks"][0].clone();
    sess.wait_json("the live changelog crawl", Duration::from_secs(60), |v| {
        brick(v)["crawl_status"] == "Changelog Crawl"
    });
    let grow = p.mount.join("growing");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = fs::File::create(&grow).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                f.write_all(&[b'x'; 4096]).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    sess.wait_json("a failure-ledger item", Duration::from_secs(60), |v| brick(v)["failures"].as_u64() >= Some(1));
    let o = sess.gsyncd(&["checkpoint", "set", "held"]);
    assert!(o.status.success(), "{}", text(&o));
    let b = brick(&sess.wait_json("stime past the checkpoint", Duration::from_secs(60), |v| {
        let b = brick(v);
        b["last_synced"].as_u64() >= b["checkpoint_time"].as_u64()
    }));
    assert_eq!(b["checkpoint_completed"], false, "{b:#}");
    let o = sess.gsyncd(&["checkpoint", "wait", "held", "--timeout", "3"]);
    assert_eq!(code(&o), 11, "{}\n{b:#}", text(&o));
    assert!(text(&o).contains("failure-ledger item(s) are left"), "{}", text(&o));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    let o = sess.gsyncd(&["checkpoint", "wait", "held", "--timeout", "60"]);
    assert_eq!(code(&o), 0, "{}\n{}", text(&o), sess.log_text());
    assert_eq!(brick(&sess.json())["failures"], 0);
    sess.stop(child);
}

/// Exit codes that need no cluster.
fn no_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = gsyncd(d, &["status"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = gsyncd(d, &["status", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["version"].as_u64(), v["sessions"].as_array().map(Vec::len)), (Some(1), Some(0)), "{v}");
    for args in [&["status", "nope"][..], &["checkpoint", "set", "nope"], &["checkpoint", "wait", "nope"]] {
        assert_eq!(code(&gsyncd(d, args)), 6, "{args:?}");
    }
    assert_eq!(code(&gsyncd(d, &["status", "no/pe"])), 64);
    fs::write(d.join("s.toml"), "primary = \"pv\"\nsecondary = \"geo@h2::sv\"\n").unwrap();
    fs::write(d.join("broken.toml"), "primary = \n").unwrap();
    // A broken file: 5, the other sessions still shown.
    let o = gsyncd(d, &["status", "--json"]);
    assert_eq!(code(&o), 5, "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["sessions"][0]["session"], "s", "{v}");
    assert_eq!(v["sessions"][0]["state"], "Created", "{v}");
    assert_eq!(v["errors"][0]["session"], "broken", "{v}");
    // Times: unix seconds, local "YYYY-MM-DD HH:MM:SS" (one or two
    // arguments), now; anything else is an invalid value (3).
    let cp = |d: &Path| -> String {
        let t = fs::read_to_string(d.join("s.toml")).unwrap();
        t.lines().find_map(|l| l.strip_prefix("checkpoint = ")).unwrap_or_default().to_owned()
    };
    let o = gsyncd(d, &["checkpoint", "set", "s", "1795469966"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(cp(d), "1795469966");
    let tz = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_gsyncd"))
            .env("TZ", "UTC")
            .arg("--config-dir")
            .arg(d)
            .args(args)
            .output()
            .unwrap()
    };
    let o = tz(&["checkpoint", "set", "s", "2026-11-23 21:39:27"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(cp(d), "1795469967");
    assert!(String::from_utf8_lossy(&o.stdout).contains("2026-11-23 21:39:27 (1795469967)"), "{}", text(&o));
    let o = tz(&["checkpoint", "set", "s", "2026-11-23", "21:39:28"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(cp(d), "1795469968");
    for bad in ["yesterday", "1000", "2026-13-01 00:00:00"] {
        let o = gsyncd(d, &["checkpoint", "set", "s", bad]);
        assert_eq!(code(&o), 3, "{bad}: {}", text(&o));
    }
    assert_eq!(cp(d), "1795469968", "unchanged by refused values");
    let o = gsyncd(d, &["checkpoint", "set", "s", "now"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(cp(d).parse::<u64>().unwrap().abs_diff(unix_now()) < 5);
    // Not running: 10 at once, whatever the timeout.
    let o = gsyncd(d, &["checkpoint", "wait", "s"]);
    assert_eq!(code(&o), 10, "{}", text(&o));
}
