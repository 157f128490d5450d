//! `gsyncd failures list|retry|forget` against real ledger files, with the
//! session stopped (the ledger is changed) and running (requests are
//! queued for the worker: the pid file is held here as the supervisor
//! would hold it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use gsyncd::gluster::uuid::Uuid;
use gsyncd::proto::rpc::{EntryOp, Op};
use gsyncd::worker::ledger::{Item, Kind, Ledger, Request};

fn gsyncd(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gsyncd")).args(args).env("GSYNCD_CONFIG_DIR", dir).output().unwrap()
}

fn item(g: u8, kind: Kind) -> Item {
    Item {
        gfid: Uuid([g; 16]),
        op: if kind == Kind::Data { "DATA".into() } else { "CREATE".into() },
        path: format!(".gfid/{}/name {g}", Uuid::ROOT),
        errno: Some(13),
        error: "EACCES".into(),
        first_seen: 0,
        last_seen: 0,
        attempts: 0,
        changed: 1_700_000_000,
        retry_after: 0,
        kind,
    }
}

#[test]
fn list_retry_and_forget() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    fs::write(
        d.path().join("s.toml"),
        format!(
            "primary = \"pv\"\nsecondary = \"sv-host::sv\"\nstate-dir = \"{0}\"\nrun-dir = \"{0}/run\"\n",
            state.display()
        ),
    )
    .unwrap();
    let mut l = Ledger::open(&state, Path::new("/bricks/b1")).unwrap();
    l.record(item(1, Kind::Data), 1_795_000_000);
    l.record(item(2, Kind::Entry(EntryOp::new(Op::Create, Uuid([2; 16]), b".gfid/x/y".to_vec()))), 1_795_000_000);
    l.save().unwrap();

    let o = gsyncd(d.path(), &["failures", "list", "s"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{o:?}");
    assert!(out.contains("/bricks/b1") && out.contains(&Uuid([1; 16]).to_string()) && out.contains("CREATE"), "{out}");
    assert!(out.contains("2 item(s)"), "{out}");
    let o = gsyncd(d.path(), &["failures", "list", "s", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    assert_eq!(v["items"][0]["errno"], 13);
    assert_eq!(v["items"][0]["next_attempt"], 1_795_000_005);

    // Usage errors.
    assert_eq!(gsyncd(d.path(), &["failures", "forget", "s", "--all"]).status.code(), Some(64), "needs --yes");
    assert_eq!(gsyncd(d.path(), &["failures", "retry", "s", "not-a-gfid"]).status.code(), Some(64));
    assert_eq!(gsyncd(d.path(), &["failures", "retry", "s"]).status.code(), Some(64), "GFID or --all");
    assert_eq!(gsyncd(d.path(), &["failures", "list", "nosuch"]).status.code(), Some(6));
    let o = gsyncd(d.path(), &["failures", "retry", "s", &Uuid([9; 16]).to_string()]);
    assert_eq!(o.status.code(), Some(1), "no such item: {o:?}");

    // Stopped: the ledger itself changes.
    let o = gsyncd(d.path(), &["failures", "forget", "s", &Uuid([1; 16]).to_string(), "--yes"]);
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 item(s) forgotten"));
    let l = Ledger::open(&state, Path::new("/bricks/b1")).unwrap();
    assert_eq!(l.items().map(|i| i.gfid).collect::<Vec<_>>(), [Uuid([2; 16])]);
    assert!(!state.join("run/monitor.pid").exists(), "the pid file lock was released");

    // Running (the pid file is locked): a request for the worker.
    let _held = gsyncd::supervisor::pidfile::PidFile::acquire(&state.join("run/monitor.pid")).unwrap();
    let o = gsyncd(d.path(), &["failures", "retry", "s", "--all"]);
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("the session is running"));
    let mut l = Ledger::open(&state, Path::new("/bricks/b1")).unwrap();
    assert_eq!(l.apply_requests(), [(Request::Retry(None), 1)]);
}
