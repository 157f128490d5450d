//! End to end: `gsyncd supervise` of a session from a primary volume to a
//! secondary volume over the harness's sshd (through the ssh gate), with
//! real glusterd, FUSE mounts, changelogs, rsync: data that existed before
//! the session (crawl), then live changes, until the trees (GFIDs, owners,
//! modes included) are the same.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::cluster::{Shape, Volume};
use support::session::{Running, Session};
use support::tree::{self, Options};
use support::{Fixture, trial};

fn main() {
    support::run(|fx| {
        vec![
            trial("crawl_then_live_sync_through_the_gate", fx, crawl_then_live),
            trial("the_changelog_being_written_is_replayed_before_its_rollover", fx, live_changelog),
            trial("replica_sets_sync_once_each_and_fail_over", fx, replicated),
            trial("xsync_crawl_checkpoint_reconcile_and_history_gap", fx, crawls),
            trial("meta_volume_locks_elect_one_worker_per_set", fx, meta_volume),
            trial("bad_input_is_named_in_status_without_a_crash_loop", fx, bad_input),
        ]
    })
}

/// A session with debug logging; with `tar`, the tar engine (sync-method
/// tarssh) instead of rsync.
fn session(fx: &Fixture, name: &str, p: &Volume, s: &Volume, tar: bool) -> Session {
    let sess = Session::new(fx, name, p, s, "log-level = \"DEBUG\"\n");
    if tar {
        sess.edit(|t| {
            let ssh_options = t.lines().find(|l| l.starts_with("ssh-options = ")).unwrap().to_owned();
            format!("{t}sync-method = \"tarssh\"\n{}\n", ssh_options.replacen("ssh-options", "ssh-options-tar", 1))
        });
    }
    sess
}

/// The pid of a running role process (`worker`, `agent`, ...) of a session.
fn role_pid(sess: &Session, role: &str) -> Option<u32> {
    fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
        (args.contains(&role.as_bytes()) && args.contains(&sess.name.as_bytes())).then_some(pid)
    })
}

fn wait_log(sess: &Session, what: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !sess.log_text().contains(what) {
        assert!(Instant::now() < deadline, "the log never said {what:?}:\n{}", sess.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the secondary's tree equals the primary's.
fn converge(p: &Volume, s: &Volume, sess: &Session, child: &mut Running, timeout: Duration) {
    converge_with(p, s, sess, child, timeout, false);
}

/// [`converge`], with the files' modification times compared too (to the
/// nanosecond, as rsync and the inline engine leave them).
fn converge_with(p: &Volume, s: &Volume, sess: &Session, child: &mut Running, timeout: Duration, mtimes: bool) {
    let o = Options { mtimes, ..Options::default() };
    let deadline = Instant::now() + timeout;
    loop {
        let d = tree::compare(&p.mount, &s.mount, &o);
        if d.is_empty() {
            return;
        }
        let exited = child.try_wait();
        if Instant::now() > deadline || exited.is_some() {
            let log = sess.log_text();
            // The whole log, and the mounts' logs, outlive the session's
            // directory.
            let kept = std::env::temp_dir().join(format!("gsyncd-test-{}-{}", sess.name, std::process::id()));
            let _ = Command::new("cp").arg("-a").arg(sess.dir.path()).arg(&kept).status();
            let tail: Vec<&str> = log.lines().rev().take(400).collect();
            panic!(
                "the secondary did not converge (supervise {exited:?}):\n{}\nlog tail ({} holds it all):\n{}",
                tree::report(&d),
                kept.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn write(p: &Path, data: &[u8]) {
    fs::write(p, data).unwrap();
}

fn crawl_then_live(fx: &Fixture) {
    let (p, s) = fx.pair(Shape::Single);
    let m = &p.mount;
    // Before the session: a tree for the crawl.
    fs::create_dir_all(m.join("pre/a/b/c")).unwrap();
    write(&m.join("pre/a/file"), &vec![7u8; 100_000]);
    write(&m.join("pre/a/b/c/deep"), b"deep\n");
    symlink("a/file", m.join("pre/link")).unwrap();
    fs::hard_link(m.join("pre/a/file"), m.join("pre/hard")).unwrap();
    fs::set_permissions(m.join("pre/a/b"), fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::chown(m.join("pre/a/b/c/deep"), Some(1234), Some(5678)).unwrap();
    xattr::set(m.join("pre/a/b/c/deep"), "user.crawled", b"by the crawl").unwrap();

    let sess = session(fx, "e2e", &p, &s, false);
    // One attempt per batch: data that does not arrive goes to the failure
    // ledger at once (exercised below with a file that keeps growing).
    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new().append(true).open(sess.dir.path().join("e2e.toml")).unwrap();
        f.write_all(b"max-rsync-retries = 1\n").unwrap();
        // Files up to 4 KiB go by the inline engine, larger ones by rsync:
        // this test runs both.
        f.write_all(b"inline-max-size = 4096\n").unwrap();
    }
    let mut child = sess.start();
    converge_with(&p, &s, &sess, &mut child, Duration::from_secs(90), true);
    // The status files: the reference's names and keys.
    let b0 = &p.bricks[0];
    let st = sess.wait_brick_status(b0, "the live changelog crawl", |v| v["crawl_status"] == "Changelog Crawl");
    assert_eq!(st["worker_status"], "Active", "{st}");
    assert_eq!(st["secondary_node"], "127.0.0.1", "{st}");
    assert!(st["last_synced"].as_u64().unwrap() > 1_700_000_000, "{st}");
    assert_eq!(st["failures"], 0, "{st}");
    assert_eq!(st["checkpoint_completed"], "N/A", "{st}");
    assert_eq!(sess.monitor_status(), "Started");
    // A checkpoint on an idle volume completes by itself (no touch needed):
    // empty rollovers move stime.
    sess.config_set("checkpoint", "now");
    let st = sess.wait_brick_status(b0, "the checkpoint completed", |v| v["checkpoint_completed"] == "Yes");
    assert!(st["checkpoint_completion_time"].as_u64().unwrap() >= st["checkpoint_time"].as_u64().unwrap(), "{st}");
    assert!(st["last_synced"].as_u64().unwrap() >= st["checkpoint_time"].as_u64().unwrap(), "{st}");

    // Live: every kind of change.
    fs::create_dir_all(m.join("live/x/y/z")).unwrap();
    write(&m.join("live/f"), b"one");
    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new().append(true).open(m.join("live/f")).unwrap();
        f.write_all(b" two").unwrap();
    }
    write(&m.join("live/trunc"), &vec![1u8; 50_000]);
    fs::OpenOptions::new().write(true).open(m.join("live/trunc")).unwrap().set_len(10).unwrap();
    fs::rename(m.join("pre/a/b/c/deep"), m.join("live/x/moved")).unwrap();
    fs::rename(m.join("pre/a/b"), m.join("live/b-renamed")).unwrap();
    write(&m.join("live/over"), b"old");
    write(&m.join("live/new"), b"new");
    fs::rename(m.join("live/new"), m.join("live/over")).unwrap();
    fs::hard_link(m.join("live/f"), m.join("live/f-hard")).unwrap();
    symlink("../f", m.join("live/x/sym")).unwrap();
    fs::rename(m.join("live/x/sym"), m.join("live/x/sym2")).unwrap();
    fs::remove_file(m.join("pre/hard")).unwrap();
    fs::remove_dir_all(m.join("pre/a")).unwrap();
    fs::set_permissions(m.join("live/f"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(m.join("live/trunc"), Some(42), Some(43)).unwrap();
    xattr::set(m.join("live/trunc"), "user.tag", b"one").unwrap();
    xattr::set(m.join("live/f-hard"), "user.tag", b"two").unwrap();
    xattr::set(m.join("live/f-hard"), "user.tag", b"three").unwrap();
    xattr::set(m.join("live/x"), "user.dir", b"on a directory").unwrap();
    xattr::set(m.join("live/x"), "user.gone", b"removed before it is synced").unwrap();
    xattr::remove(m.join("live/x"), "user.gone").unwrap();
    for name in [&b"with space"[..], b"new\nline", b"per%cent", b"latin1 \xe9"] {
        write(&m.join("live").join(OsStr::from_bytes(name)), name);
    }
    converge(&p, &s, &sess, &mut child, Duration::from_secs(90));

    // Orderly stop: exit 0, no mount left, progress recorded on the brick.
    sess.stop(child);
    assert_eq!(sess.monitor_status(), "Stopped");
    let stimes: Vec<String> = xattr::list(&p.bricks[0])
        .unwrap()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".stime"))
        .collect();
    assert_eq!(stimes.len(), 1, "{stimes:?}");
    let log = sess.log_text();
    assert!(log.contains("crawl walked the brick"), "{log}");
    assert!(log.contains("batch synced"), "{log}");
    assert!(log.contains("engine=\"rsync\""), "{log}");
    assert!(log.contains("engine=\"inline\""), "{log}");

    // Resume: changes while stopped arrive by history, with no crawl.
    fs::create_dir(m.join("while-stopped")).unwrap();
    for i in 0..50 {
        write(&m.join(format!("while-stopped/f{i}")), format!("{i}").as_bytes());
    }
    fs::rename(m.join("live/over"), m.join("while-stopped/over-moved")).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let mut child = sess.start();
    converge(&p, &s, &sess, &mut child, Duration::from_secs(90));
    let log = sess.log_text();
    assert!(log.contains("resuming from the brick's stime"), "{log}");
    assert!(!log.contains("hybrid crawl"), "a restart with stime must not crawl:\n{log}");

    // Crash-only: SIGKILL the worker in the middle of a workload; the
    // supervisor restarts it and it resumes from stime, nothing lost.
    let worker = || role_pid(&sess, "worker");
    fs::create_dir(m.join("crash")).unwrap();
    for i in 0..1500 {
        write(&m.join(format!("crash/f{i}")), format!("{i}").as_bytes());
        if i == 700 {
            let w = worker().expect("a running worker");
            kill(Pid::from_raw(w as i32), Signal::SIGKILL).unwrap();
        }
    }
    converge(&p, &s, &sess, &mut child, Duration::from_secs(120));

    // Crash-only, every process of the data path in turn: the agent, the
    // secondary server, the ssh that carries it, and rsync, each SIGKILLed
    // in the middle of a workload. Nothing is lost, no mount is left.
    let procs = |want: &dyn Fn(&[&[u8]]) -> bool| -> Vec<u32> {
        fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                let cmd = fs::read(e.path().join("cmdline")).ok()?;
                let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
                want(&args).then_some(pid)
            })
            .collect()
    };
    let has = |args: &[&[u8]], w: &str| args.iter().any(|a| a.windows(w.len()).any(|x| x == w.as_bytes()));
    let pname = p.name.clone();
    let sname = format!("::{}", s.name);
    type Want<'a> = Box<dyn Fn(&[&[u8]]) -> bool + 'a>;
    let targets: [(&str, Want<'_>); 4] = [
        ("agent", Box::new(|a: &[&[u8]]| has(a, "agent") && has(a, "e2e") && has(a, "--brick"))),
        (
            "secondary",
            Box::new(|a: &[&[u8]]| {
                a.first().is_some_and(|x| !has(&[x], "ssh")) && has(a, "secondary") && has(a, &sname) && has(a, &pname)
            }),
        ),
        (
            "ssh",
            Box::new(|a: &[&[u8]]| {
                a.first().is_some_and(|x| x.ends_with(b"ssh")) && has(a, "secondary") && has(a, &sname)
            }),
        ),
        ("rsync", Box::new(|a: &[&[u8]]| a.first().is_some_and(|x| x.ends_with(b"rsync")) && has(a, "receive rsync"))),
    ];
    for (what, want) in &targets {
        let dir = m.join(format!("kill-{what}"));
        fs::create_dir(&dir).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut i = 0;
        let killed = loop {
            for _ in 0..50 {
                write(&dir.join(format!("f{i}")), &vec![b'k'; 8192]);
                i += 1;
            }
            let pids = procs(want.as_ref());
            if !pids.is_empty() {
                for pid in &pids {
                    let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
                }
                break pids;
            }
            assert!(Instant::now() < deadline, "no {what} process to kill");
        };
        for _ in 0..200 {
            write(&dir.join(format!("f{i}")), &vec![b'k'; 8192]);
            i += 1;
        }
        eprintln!("killed {what} {killed:?} after {i} files");
        converge(&p, &s, &sess, &mut child, Duration::from_secs(120));
    }
    // The killed servers' mounts went with them (in their private mount
    // namespaces): one glusterfs client of the secondary is left, the live
    // server's.
    let clients = || {
        procs(&|a: &[&[u8]]| {
            a.first().is_some_and(|x| x.ends_with(b"glusterfs")) && has(a, &s.name) && has(a, "aux-gfid")
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while clients().len() > 1 {
        assert!(Instant::now() < deadline, "secondary mounts left behind: {:?}", clients());
        std::thread::sleep(Duration::from_millis(200));
    }

    // Failure ledger: a file that grows while it is sent does not arrive
    // whole; it is recorded before stime moves, retried, and synced once it
    // stops growing.
    let grow = m.join("growing");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let grow = grow.clone();
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
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sess.log_text().contains("data did not arrive; recorded in the failure ledger") {
        assert!(Instant::now() < deadline, "nothing was recorded:\n{}", sess.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    // The ledger shows in status, and holds a checkpoint back although
    // stime passes it.
    let before = sess.brick_status(b0)["checkpoint_time"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    sess.config_set("checkpoint", "now");
    let cp =
        sess.wait_brick_status(b0, "the new checkpoint", |v| v["checkpoint_time"].as_u64() > Some(before))["checkpoint_time"]
            .as_u64()
            .unwrap();
    let st = sess.wait_brick_status(b0, "stime past the checkpoint", |v| v["last_synced"].as_u64() >= Some(cp));
    assert!(st["failures"].as_u64().unwrap() >= 1, "{st}");
    assert_eq!(st["checkpoint_completed"], "No", "an unsynced item older than the checkpoint: {st}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    converge(&p, &s, &sess, &mut child, Duration::from_secs(120));
    let st = sess.wait_brick_status(b0, "the checkpoint completed", |v| v["checkpoint_completed"] == "Yes");
    assert_eq!(st["failures"], 0, "{st}");
    let v = xattr::get(&grow, "glusterfs.gfid.string").unwrap().unwrap();
    let g = String::from_utf8_lossy(v.strip_suffix(b"\0").unwrap_or(&v)).into_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sess.log_text().lines().any(|l| l.contains("a failure ledger item is synced now") && l.contains(&g)) {
        assert!(Instant::now() < deadline, "the ledger item was not retried:\n{}", sess.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    sess.stop(child);
    let ledger = fs::read_dir(sess.dir.path().join("state/ledger")).unwrap().count();
    assert_eq!(ledger, 1, "one ledger file for the brick");
}

/// `live-changelog`: with a rollover far away, changes reach the secondary
/// from the changelog still being written; a file written again after it
/// was sent (no second data record in that changelog) still arrives whole
/// once the changelog rolls over; and what did not change since it was
/// sent is not sent again.
fn live_changelog(fx: &Fixture) {
    use support::cluster::Side;
    let p = fx.volume("live-p", Shape::Single, Side::Primary);
    let s = fx.volume("live-s", Shape::Single, Side::Secondary);
    const ROLLOVER: u64 = 40;
    fx.cluster().gluster(&["volume", "set", &p.name, "changelog.rollover-time", &ROLLOVER.to_string()]).unwrap();
    let m = &p.mount;
    let sess = session(fx, "live", &p, &s, false);
    let mut child = sess.start();
    converge(&p, &s, &sess, &mut child, Duration::from_secs(120));
    wait_log(&sess, "feed requested", Duration::from_secs(60));
    let b0 = &p.bricks[0];
    let last_synced = || sess.brick_status(b0)["last_synced"].as_u64().unwrap_or(0);
    let unix = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    // A rollover between the writes and their arrival proves nothing: try
    // again (at most one in ROLLOVER / 10 tries can meet one).
    let mut proved = false;
    for round in 0..3 {
        let dir = m.join(format!("live{round}"));
        let t = unix();
        fs::create_dir(&dir).unwrap();
        write(&dir.join("small"), b"written once");
        write(&dir.join("again"), b"first part;");
        write(&dir.join("big"), &vec![b'b'; 300_000]);
        fs::rename(dir.join("small"), dir.join("small-renamed")).unwrap();
        let sdir = s.mount.join(format!("live{round}"));
        let deadline = Instant::now() + Duration::from_secs(15);
        let arrived = loop {
            let ok = fs::read(sdir.join("small-renamed")).is_ok_and(|d| d == b"written once")
                && fs::read(sdir.join("again")).is_ok_and(|d| d == b"first part;")
                && fs::metadata(sdir.join("big")).is_ok_and(|m| m.len() == 300_000)
                && !sdir.join("small").exists();
            if ok || Instant::now() > deadline {
                break ok;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let synced = last_synced();
        // Written again in the same changelog: no new data record.
        {
            use std::io::Write;
            let mut f = fs::OpenOptions::new().append(true).open(dir.join("again")).unwrap();
            f.write_all(b" second part").unwrap();
        }
        let still_same = last_synced() == synced;
        eprintln!(
            "round {round}: arrived {arrived}, last synced {synced} (writes at {t}), same changelog {still_same}"
        );
        if arrived && synced < t && still_same {
            proved = true;
            break;
        }
    }
    assert!(proved, "nothing arrived before its changelog rolled over:\n{}", sess.log_text());
    // A rename storm: every file is written as a temporary name and renamed
    // over its final name, again and again. Most of them are displaced
    // within the records replayed together, and never made on the
    // secondary; the secondary still ends with the last of each.
    let storm = m.join("storm");
    fs::create_dir(&storm).unwrap();
    for r in 0..8 {
        for n in 0..10 {
            let tmp = storm.join(format!("f{n}.{r}.tmp"));
            write(&tmp, format!("round {r} of {n}").as_bytes());
            fs::rename(&tmp, storm.join(format!("f{n}"))).unwrap();
        }
    }
    // At the rollover the file written again arrives whole; the others are
    // not sent again.
    converge_with(&p, &s, &sess, &mut child, Duration::from_secs(3 * ROLLOVER), true);
    assert_eq!(fs::read(s.mount.join("storm/f3")).unwrap(), b"round 7 of 3");
    let log = sess.log_text();
    assert!(log.contains("live records replayed"), "{log}");
    let elided: u64 = log
        .lines()
        .filter(|l| l.contains("live records replayed") || l.contains("batch synced"))
        .filter_map(|l| l.split("elided=").nth(1)?.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    assert!(elided >= 30, "few of the storm's files were left out ({elided}):\n{log}");
    assert!(
        log.lines().any(|l| l.contains("batch synced") && !l.contains("live_skipped=0")),
        "the rollover sent again what had not changed:\n{log}"
    );
    sess.stop(child);
}

/// The glusterfsd pid serving `brick` of `vol`.
fn brick_pid(vol: &str, brick: &Path) -> u32 {
    let o = Command::new("gluster").args(["--mode=script", "--xml", "volume", "status", vol]).output().unwrap();
    let xml = String::from_utf8_lossy(&o.stdout).into_owned();
    let at = xml.find(&format!("<path>{}</path>", brick.display())).unwrap_or_else(|| panic!("{xml}"));
    let rest = &xml[at..];
    let pid = &rest[rest.find("<pid>").unwrap() + 5..rest.find("</pid>").unwrap()];
    pid.trim().parse().unwrap()
}

fn replicated(fx: &Fixture) {
    let (p, s) = fx.pair(Shape::DistRep2x2);
    let m = &p.mount;
    fs::create_dir_all(m.join("r/a/b")).unwrap();
    for i in 0..30 {
        write(&m.join(format!("r/a/f{i}")), format!("file {i}").as_bytes());
    }
    symlink("a/f1", m.join("r/l")).unwrap();
    // This shape runs the tar engine (for every file: no inline engine);
    // the one-brick test runs rsync and the inline engine.
    let sess = session(fx, "repl", &p, &s, true);
    sess.edit(|t| format!("{t}inline-max-size = 0\n"));
    let mut child = sess.start();
    converge(&p, &s, &sess, &mut child, Duration::from_secs(90));
    // One worker per replica set syncs; the other two are Passive.
    let passive = sess.log_text().matches("Passive: another brick of this replica set syncs it").count();
    assert_eq!(passive, 2, "{}", sess.log_text());

    // A rename storm over the same names, whose temporary names hash to
    // both replica sets: each set's worker replays its own RENAMEs onto a
    // name, in its own time, so an older RENAME can reach the secondary
    // after a newer one. The primary's latest must win.
    fs::create_dir(m.join("storm")).unwrap();
    for r in 0..40 {
        for n in 0..12 {
            let dst = m.join(format!("storm/file{n:02}"));
            let tmp = m.join(format!("storm/file{n:02}.{r}.tmp"));
            write(&tmp, format!("round {r} of {n}").as_bytes());
            fs::rename(&tmp, &dst).unwrap();
        }
        if r % 10 == 9 {
            std::thread::sleep(Duration::from_millis(1500));
        }
    }
    converge(&p, &s, &sess, &mut child, Duration::from_secs(120));

    for i in 0..30 {
        fs::rename(m.join(format!("r/a/f{i}")), m.join(format!("r/a/b/g{i}"))).unwrap();
    }
    write(&m.join("r/new"), b"live");
    // With the tar engine too, and on a directory: xattrs travel with the
    // metadata.
    xattr::set(m.join("r/new"), "user.engine", b"tar").unwrap();
    xattr::set(m.join("r/a"), "user.dir", b"yes").unwrap();
    fs::create_dir(m.join("r/gone-dir")).unwrap();
    converge(&p, &s, &sess, &mut child, Duration::from_secs(90));

    // Conflicts, resolved with the primary as the truth: a name on the
    // secondary with a GFID the primary does not know, and a parent missing
    // on the secondary.
    write(&s.mount.join("r/clash"), b"made on the secondary");
    fs::remove_dir(s.mount.join("r/gone-dir")).unwrap();
    write(&m.join("r/clash"), b"made on the primary");
    write(&m.join("r/gone-dir/file"), b"in a directory the secondary lost");
    converge(&p, &s, &sess, &mut child, Duration::from_secs(90));
    assert!(sess.log_text().contains("gfid conflicts resolved"), "{}", sess.log_text());
    assert!(sess.log_text().contains("engine=\"tar\""), "the tar engine was not used");
    assert!(!sess.log_text().contains("engine=\"rsync\""));

    // The Active brick of the first set dies: its replica takes over.
    let pid = brick_pid(&p.name, &p.bricks[0]);
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sess.log_text().contains("Active: taking over this replica set") {
        assert!(Instant::now() < deadline, "no takeover:\n{}", sess.log_text());
        std::thread::sleep(Duration::from_millis(500));
    }
    for i in 0..20 {
        write(&m.join(format!("r/after-failover-{i}")), b"still replicated");
    }
    converge(&p, &s, &sess, &mut child, Duration::from_secs(90));

    // The brick comes back: the replica that took over gives way again.
    let _ = Command::new("gluster").args(["--mode=script", "volume", "start", &p.name, "force"]).output();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sess.log_text().contains("giving way") {
        assert!(Instant::now() < deadline, "the replica did not give way:\n{}", sess.log_text());
        std::thread::sleep(Duration::from_millis(500));
    }
    for i in 0..10 {
        write(&m.join(format!("r/after-return-{i}")), b"back");
    }
    converge(&p, &s, &sess, &mut child, Duration::from_secs(90));
    sess.stop(child);
}

/// change-detector = xsync; a crawl interrupted after its first checkpoint
/// resumes; reconcile removes what the primary does not have; a gap in the
/// changelog journal (changelog off and on while stopped) is crawled.
fn crawls(fx: &Fixture) {
    let p = fx.volume("crawl-p", support::cluster::Shape::Single, support::cluster::Side::Primary);
    let s = fx.volume("crawl-s", support::cluster::Shape::Single, support::cluster::Side::Secondary);
    let m = &p.mount;
    // Enough entries for several crawl checkpoints (one per 1000).
    for d in 0..30 {
        fs::create_dir_all(m.join(format!("d{d}"))).unwrap();
        for f in 0..100 {
            write(&m.join(format!("d{d}/f{f}")), format!("{d}/{f}").as_bytes());
        }
    }
    // What the secondary has and the primary does not.
    fs::create_dir_all(s.mount.join("stale-dir/a/b")).unwrap();
    write(&s.mount.join("stale-dir/a/b/x"), b"x");
    write(&s.mount.join("stale-file"), b"stale");
    symlink("stale-file", s.mount.join("stale-link")).unwrap();

    let sess = session(fx, "crawls", &p, &s, false);
    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new().append(true).open(sess.dir.path().join("crawls.toml")).unwrap();
        f.write_all(b"change-detector = \"xsync\"\nchange-interval = 2\n").unwrap();
    }
    let mut child = sess.start();
    // Killed after the first checkpoint, the crawl resumes from it.
    let crawl_dir = sess.dir.path().join("state/crawl");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let done = fs::read_dir(&crawl_dir)
            .ok()
            .and_then(|mut rd| rd.next())
            .and_then(|e| fs::read(e.unwrap().path()).ok())
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["done"].as_array().map(Vec::len))
            .unwrap_or(0);
        if done > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no crawl checkpoint:\n{}", sess.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    let w = role_pid(&sess, "worker").expect("a running worker");
    kill(Pid::from_raw(w as i32), Signal::SIGKILL).unwrap();
    wait_log(&sess, "resuming an interrupted crawl", Duration::from_secs(60));
    converge(&p, &s, &sess, &mut child, Duration::from_secs(120));
    assert!(sess.log_text().contains("reconcile done"), "{}", sess.log_text());

    // xsync keeps crawling: creates, renames and deletes arrive.
    write(&m.join("new-file"), b"new");
    fs::rename(m.join("d1/f1"), m.join("d2/moved")).unwrap();
    fs::remove_file(m.join("d3/f3")).unwrap();
    fs::remove_dir_all(m.join("d4")).unwrap();
    fs::set_permissions(m.join("d5/f5"), fs::Permissions::from_mode(0o600)).unwrap();
    converge(&p, &s, &sess, &mut child, Duration::from_secs(60));
    let st = sess.brick_status(&p.bricks[0]);
    assert_eq!(st["crawl_status"], "Hybrid Crawl", "{st}");
    sess.stop(child);

    // Changelog off and on while the session is stopped: the journal has a
    // gap, which the (changelog-mode) worker crawls instead of skipping.
    sess.config_set("change-detector", "changelog");
    let g = |args: &[&str]| {
        let o = Command::new("gluster").arg("--mode=script").args(args).output().unwrap();
        assert!(o.status.success(), "gluster {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    std::thread::sleep(Duration::from_secs(4));
    g(&["volume", "set", &p.name, "changelog.changelog", "off"]);
    write(&m.join("during-the-gap"), b"not journaled");
    fs::remove_file(m.join("d6/f6")).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    g(&["volume", "set", &p.name, "changelog.changelog", "on"]);
    std::thread::sleep(Duration::from_secs(4));
    let mut child = sess.start();
    converge(&p, &s, &sess, &mut child, Duration::from_secs(90));
    wait_log(&sess, "does not cover everything since stime", Duration::from_secs(5));
    // And then the live changelog again.
    write(&m.join("after-the-gap"), b"journaled");
    converge(&p, &s, &sess, &mut child, Duration::from_secs(60));
    sess.stop(child);
}

/// use-meta-volume: the lock on the shared meta volume elects one worker
/// per replica set; when the Active brick dies its worker releases the lock
/// and the replica's worker takes it.
fn meta_volume(fx: &Fixture) {
    use support::cluster::{Shape, Side};
    let p = fx.volume("meta-p", Shape::DistRep2x2, Side::Primary);
    let s = fx.volume("meta-s", Shape::DistRep2x2, Side::Secondary);
    let meta = fx.volume("meta-shared", Shape::Single, Side::Secondary);
    let m = &p.mount;
    fs::create_dir_all(m.join("m")).unwrap();
    for i in 0..20 {
        write(&m.join(format!("m/f{i}")), format!("{i}").as_bytes());
    }
    let sess = session(fx, "meta", &p, &s, false);
    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new().append(true).open(sess.dir.path().join("meta.toml")).unwrap();
        writeln!(f, "use-meta-volume = true\nmeta-volume-mnt = \"{}\"", meta.mount.display()).unwrap();
    }
    let mut child = sess.start();
    converge(&p, &s, &sess, &mut child, Duration::from_secs(90));
    let passive = sess.log_text().matches("Passive: another brick of this replica set syncs it").count();
    assert_eq!(passive, 2, "{}", sess.log_text());
    assert_eq!(sess.log_text().matches("holding the replica set's meta-volume lock").count(), 2);
    let mut locks: Vec<String> = fs::read_dir(meta.mount.join("geo-rep"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    locks.sort();
    assert_eq!(locks.len(), 2, "{locks:?}");
    assert!(locks[0].ends_with("_subvol_1.lock") && locks[1].ends_with("_subvol_2.lock"), "{locks:?}");

    // The Active brick of a set dies: the lock moves to its replica.
    let holder = if sess.brick_status(&p.bricks[0])["worker_status"] == "Active" { 0 } else { 1 };
    let pid = brick_pid(&p.name, &p.bricks[holder]);
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    wait_log(&sess, "releasing the meta-volume lock", Duration::from_secs(60));
    wait_log(&sess, "Active: taking over this replica set", Duration::from_secs(60));
    for i in 0..10 {
        write(&m.join(format!("m/after-{i}")), b"after");
    }
    converge(&p, &s, &sess, &mut child, Duration::from_secs(90));
    let _ = Command::new("gluster").args(["--mode=script", "volume", "start", &p.name, "force"]).output();
    sess.stop(child);
}

/// An unreachable secondary, a wrong secondary volume, a primary without
/// changelog: each is named (with its fix) in the brick's status and the
/// log, the worker is retried with backoff, and stopping leaves nothing.
fn bad_input(fx: &Fixture) {
    use support::cluster::{Shape, Side};
    let (p, s) = fx.pair(Shape::Single);
    let plain = fx.volume("no-changelog", Shape::Single, Side::Secondary);
    let secondary = s.name.clone();
    type Edit = Box<dyn Fn(String) -> String>;
    let cases: [(&str, &Volume, Edit, &[&str]); 3] = [
        (
            "unreachable",
            &p,
            Box::new(|t: String| {
                let port = t.lines().find(|l| l.starts_with("ssh-port = ")).unwrap().to_owned();
                t.replace(&port, "ssh-port = 1")
            }),
            &["ssh", "Connection refused"],
        ),
        (
            "novol",
            &p,
            Box::new(move |t: String| t.replace(&format!("::{secondary}"), "::no-such-volume")),
            &["no-such-volume"],
        ),
        ("nochangelog", &plain, Box::new(|t: String| t), &["changelog.changelog is off", "gluster volume set"]),
    ];
    for (name, primary, edit, words) in cases {
        let sess = session(fx, name, primary, &s, false);
        let f = sess.dir.path().join(format!("{name}.toml"));
        fs::write(&f, edit(fs::read_to_string(&f).unwrap())).unwrap();
        let child = sess.start();
        let st = sess.wait_brick_status(&primary.bricks[0], "the failure", |v| {
            (v["worker_status"] == "Retrying" || v["worker_status"] == "Faulty")
                && v["last_error"].as_str().is_some_and(|e| words.iter().all(|w| e.contains(w)))
        });
        eprintln!("{name}: {}", st["last_error"]);
        assert!(st["failed_phase"].as_str().is_some_and(|p| !p.is_empty()), "{name}: {st}");
        // Retried with backoff, not in a tight loop.
        std::thread::sleep(Duration::from_secs(3));
        let restarts = sess.brick_status(&primary.bricks[0])["restarts"].as_u64().unwrap();
        assert!(restarts <= 4, "{name}: {restarts} restarts in a few seconds\n{}", sess.log_text());
        sess.stop(child);
    }
}
