//! Smoke test of the real-cluster harness: changelogs appear on a real
//! primary brick, ssh to 127.0.0.1 runs commands, the 2x2 shape places
//! files on replica pairs, and the tree comparator reports what differs.
//! The harness then tears down and fails the run if anything is left.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::cluster::Shape;
use support::tree::{self, Gfids, Options};
use support::{Fixture, trial, wait_for};

fn main() {
    support::run(|fx| {
        vec![
            trial("changelogs_record_writes_on_the_primary_brick", fx, changelogs_record_writes),
            trial("ssh_to_loopback_runs_commands", fx, ssh_runs_commands),
            trial("distributed_replicate_places_files_on_replica_pairs", fx, dist_rep_layout),
            trial("comparator_reports_differences", fx, comparator_reports_differences),
        ]
    })
}

/// Rolled-over changelog files (`CHANGELOG.<ts>`) anywhere under the brick's
/// changelog directory.
fn rolled_changelogs(brick: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if e
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("CHANGELOG."))
                .is_some_and(|ts| !ts.is_empty() && ts.bytes().all(|b| b.is_ascii_digit()))
            {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&brick.join(".glusterfs/changelogs"), &mut out);
    out
}

fn changelogs_record_writes(fx: &Fixture) {
    let (primary, _) = fx.pair(Shape::Single);
    let name = format!("smoke-{}", std::process::id());
    let f = primary.mount.join(&name);
    fs::write(&f, b"hello changelog").unwrap();
    let gfid = xattr::get(&f, "glusterfs.gfid.string").unwrap().expect("a gfid on the mount");
    let gfid = String::from_utf8(gfid).unwrap();
    let gfid = gfid.trim_end_matches('\0');
    let raw: Vec<u8> =
        (0..16).map(|i| u8::from_str_radix(&gfid.replace('-', "")[2 * i..2 * i + 2], 16).unwrap()).collect();
    // The rollover time is 1 s: within a few seconds a rolled changelog
    // names the new file's GFID (ascii or binary encoding).
    let found = wait_for(Duration::from_secs(20), "a CHANGELOG.<ts> naming the new file", || {
        rolled_changelogs(&primary.bricks[0]).into_iter().find(|p| {
            let c = fs::read(p).unwrap_or_default();
            c.windows(gfid.len()).any(|w| w == gfid.as_bytes()) || c.windows(16).any(|w| w == raw.as_slice())
        })
    });
    let content = fs::read(&found).unwrap();
    assert!(content.starts_with(b"GlusterFS Changelog"), "{} has no changelog header", found.display());
}

fn ssh_runs_commands(fx: &Fixture) {
    let out = fx.sshd().ssh("echo hello; id -u").output().unwrap();
    assert!(out.status.success(), "ssh failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n0\n");
    // The remote side sees our exit codes.
    let st = fx.sshd().ssh("exit 7").status().unwrap();
    assert_eq!(st.code(), Some(7));
}

fn dist_rep_layout(fx: &Fixture) {
    let (primary, secondary) = fx.pair(Shape::DistRep2x2);
    assert_eq!(primary.bricks.len(), 4);
    assert_eq!(secondary.bricks.len(), 4);
    let dir = primary.mount.join("spread");
    fs::create_dir(&dir).unwrap();
    for i in 0..20 {
        fs::write(dir.join(format!("f{i}")), format!("{i}")).unwrap();
    }
    let mut per_pair = [0usize; 2];
    for i in 0..20 {
        let on: Vec<usize> =
            (0..4).filter(|b| primary.bricks[*b].join("spread").join(format!("f{i}")).exists()).collect();
        // Replica 2: bricks 0+1 form one pair, 2+3 the other.
        assert!(on == vec![0, 1] || on == vec![2, 3], "f{i} is on bricks {on:?}");
        per_pair[on[0] / 2] += 1;
    }
    assert!(per_pair[0] > 0 && per_pair[1] > 0, "DHT used one subvolume only: {per_pair:?}");
    // Every primary brick keeps changelogs.
    for b in &primary.bricks {
        wait_for(Duration::from_secs(20), "changelogs on every brick", || {
            (!rolled_changelogs(b).is_empty()).then_some(())
        });
    }
}

/// Writes the same small tree under `root`.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("d/e")).unwrap();
    fs::write(root.join("d/a"), b"alpha").unwrap();
    fs::write(root.join("d/e/b"), b"beta").unwrap();
    fs::set_permissions(root.join("d/e/b"), fs::Permissions::from_mode(0o600)).unwrap();
    symlink("a", root.join("d/link")).unwrap();
    fs::hard_link(root.join("d/a"), root.join("d/hard")).unwrap();
    xattr::set(root.join("d/a"), "user.tag", b"v1").unwrap();
    // Names are bytes: one is not UTF-8.
    fs::write(root.join("n\u{e9}"), b"x").unwrap();
    fs::write(root.join(OsStr::from_bytes(b"raw\xff")), b"y").unwrap();
}

fn comparator_reports_differences(fx: &Fixture) {
    let (primary, secondary) = fx.pair(Shape::Single);
    let tag = format!("cmp-{}", std::process::id());
    let (l, r) = (primary.mount.join(&tag), secondary.mount.join(&tag));
    make_tree(&l);
    make_tree(&r);
    let no_gfid = Options { gfids: Gfids::Ignore, ..Options::default() };
    tree::assert_same(&l, &r, &no_gfid);

    // Two independent volumes give the same names different GFIDs.
    let d = tree::compare(&l, &r, &Options::default());
    assert!(d.iter().any(|x| x.what.starts_with("gfid:")), "GFIDs not compared:\n{}", tree::report(&d));

    // Deliberate differences, each reported.
    fs::write(r.join("d/a"), b"alphA").unwrap();
    fs::set_permissions(r.join("d/e/b"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::remove_file(r.join("d/link")).unwrap();
    symlink("elsewhere", r.join("d/link")).unwrap();
    fs::remove_file(r.join("d/hard")).unwrap();
    fs::write(r.join("d/hard"), b"alphA").unwrap();
    xattr::set(r.join("d/e/b"), "user.extra", b"1").unwrap();
    fs::write(r.join("d/e/only-right"), b"").unwrap();
    let d = tree::compare(&l, &r, &no_gfid);
    let rep = tree::report(&d);
    for expect in [
        "d/a: content differs",
        "d/e/b: mode: 600 vs 644",
        "d/link: symlink target: \"a\" vs \"elsewhere\"",
        "hard links only on the left: d/a = d/hard",
        "d/e/b: xattr user.extra: <absent> vs \"1\"",
        "d/e/only-right: only on the right",
    ] {
        assert!(rep.contains(expect), "missing {expect:?} in:\n{rep}");
    }
    assert!(d.iter().all(|x| !x.what.starts_with("gfid")), "{rep}");
}
