//! `gsyncd agent` on a real primary brick: the test plays the supervisor
//! (ctl, fd 3) and the worker (changelog channel, fd 4), changes files on
//! the primary mount, and checks that the agent answers history questions
//! and feeds the brick's changelogs, parsed, oldest first: what was already
//! rolled over, then what rolls over while it runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gsyncd::gluster::changelog::Record;
use gsyncd::gluster::fop::Fop;
use gsyncd::gluster::uuid::Uuid;
use gsyncd::proto::changelog::{HistoryAnswer, MAX_FEED_FRAME, ToAgent, ToWorker};
use gsyncd::proto::ctl::{MAX_CTL_FRAME, ToChild, ToSupervisor};
use gsyncd::proto::{Role, handshake, recv, send};
use support::cluster::Shape;
use support::{Fixture, trial};

fn main() {
    support::run(|fx| vec![trial("feeds_a_real_bricks_changelogs_history_then_live", fx, feed)])
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn gfid_of(p: &std::path::Path) -> Uuid {
    let v = xattr::get(p, "glusterfs.gfid.string").unwrap().unwrap();
    Uuid::parse(v.strip_suffix(b"\0").unwrap_or(&v)).unwrap()
}

/// Reads changelogs (acknowledging each) until `done` says it has seen
/// enough; returns every record in order.
fn collect(s: &mut UnixStream, deadline: Duration, mut done: impl FnMut(&[Record]) -> bool) -> (Vec<Record>, Vec<u64>) {
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let until = Instant::now() + deadline;
    let (mut records, mut stamps) = (Vec::new(), Vec::new());
    while !done(&records) {
        assert!(Instant::now() < until, "the agent did not feed the changes in time; got {records:?}");
        match recv::<ToWorker>(s, MAX_FEED_FRAME, "agent") {
            Ok(Some(ToWorker::Changelog(c))) => {
                assert!(!c.missing, "changelog {} missing", c.ts);
                stamps.push(c.ts);
                records.extend(c.records);
                send(s, &ToAgent::Ack { ts: c.ts }, MAX_FEED_FRAME, "agent").unwrap();
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => {} // read timeout: keep waiting
        }
    }
    (records, stamps)
}

fn feed(fx: &Fixture) {
    let (p, _) = fx.pair(Shape::Single);
    let (ctl, ctl_child) = UnixStream::pair().unwrap();
    let (mut w, w_child) = UnixStream::pair().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gsyncd"));
    cmd.args(["agent", "t"]).arg("--brick").arg(&p.bricks[0]);
    let (ctl_child, w_child) = (OwnedFd::from(ctl_child), OwnedFd::from(w_child));
    let mut child = gsyncd::sys::spawn_with_fds(&mut cmd, &[(&ctl_child, 3), (&w_child, 4)]).unwrap();
    drop((ctl_child, w_child));
    let mut ctl2 = ctl.try_clone().unwrap();
    handshake(&mut ctl2, Role::Supervisor, Role::Agent, "agent").unwrap();
    send(&mut ctl2, &ToChild::Config { heartbeat_ms: 500 }, MAX_CTL_FRAME, "agent").unwrap();
    handshake(&mut w, Role::Worker, Role::Agent, "agent").unwrap();
    loop {
        match recv::<ToSupervisor>(&mut ctl2, MAX_CTL_FRAME, "agent").unwrap() {
            Some(ToSupervisor::Ready) => break,
            Some(_) => {}
            None => panic!("agent closed ctl"),
        }
    }
    // Drain heartbeats.
    let mut ctl3 = ctl2.try_clone().unwrap();
    std::thread::spawn(move || while let Ok(Some(_)) = recv::<ToSupervisor>(&mut ctl3, MAX_CTL_FRAME, "agent") {});

    // Changes before the feed starts: history.
    let start = now();
    let d = p.mount.join("agent-d");
    fs::create_dir(&d).unwrap();
    fs::write(d.join("f"), b"data").unwrap();
    fs::rename(d.join("f"), d.join("g")).unwrap();
    let (dg, fg) = (gfid_of(&d), gfid_of(&d.join("g")));
    // Let it roll over (rollover-time 3) before asking.
    std::thread::sleep(Duration::from_secs(5));
    send(&mut w, &ToAgent::History { start, end: now() }, MAX_FEED_FRAME, "agent").unwrap();
    match recv::<ToWorker>(&mut w, MAX_FEED_FRAME, "agent").unwrap() {
        Some(ToWorker::History(HistoryAnswer::Full { actual_end, changelogs }))
        | Some(ToWorker::History(HistoryAnswer::Partial { actual_end, changelogs, .. })) => {
            assert!(actual_end >= start, "{actual_end} < {start}");
            assert!(changelogs >= 1);
        }
        other => panic!("history: {other:?}"),
    }
    send(&mut w, &ToAgent::Feed { after: start - 1, generation: 1, live: false }, MAX_FEED_FRAME, "agent").unwrap();
    let has = |r: &[Record], want: &dyn Fn(&Record) -> bool| r.iter().any(want);
    let mkdir = |r: &Record| matches!(r, Record::New { gfid, fop, entry, .. } if *gfid == dg && *fop == Fop::MKDIR && entry.parent == Uuid::ROOT && entry.name == b"agent-d");
    let create = |r: &Record| matches!(r, Record::New { gfid, fop, entry, .. } if *gfid == fg && *fop == Fop::CREATE && entry.parent == dg && entry.name == b"f");
    let data = |r: &Record| matches!(r, Record::Data { gfid } if *gfid == fg);
    let rename = |r: &Record| matches!(r, Record::Rename { gfid, from, to } if *gfid == fg && from.name == b"f" && to.name == b"g" && to.parent == dg);
    let (records, mut stamps) = collect(&mut w, Duration::from_secs(30), |r| {
        has(r, &mkdir) && has(r, &create) && has(r, &data) && has(r, &rename)
    });
    let pos = |f: &dyn Fn(&Record) -> bool| records.iter().position(f).unwrap();
    assert!(pos(&mkdir) < pos(&create) && pos(&create) < pos(&rename), "records out of order: {records:?}");

    // Live: a change after the feed started arrives by itself.
    fs::write(d.join("live"), b"x").unwrap();
    let lg = gfid_of(&d.join("live"));
    let live = |r: &Record| matches!(r, Record::New { gfid, .. } if *gfid == lg);
    let (_, more) = collect(&mut w, Duration::from_secs(30), |r| has(r, &live));
    stamps.extend(more);
    assert!(stamps.windows(2).all(|x| x[0] < x[1]), "not oldest first: {stamps:?}");

    fs::remove_dir_all(&d).unwrap();
    send(&mut ctl2, &ToChild::Shutdown, MAX_CTL_FRAME, "agent").unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(0));
}
