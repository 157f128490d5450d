//! The `gluster` room against a real primary volume: every kind of
//! operation on the mount shows up in the brick's changelogs as the parser
//! reads them (ops, GFIDs checked against the brick's `trusted.gfid`,
//! parents, names, modes); the HTIME lookup finds them; `gsyncd changelog
//! show` prints exactly what GlusterFS's own libgfchangelog produces for the
//! same files; and real `gluster --xml volume info` output parses.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gsyncd::gluster::changelog::{Reader, Record};
use gsyncd::gluster::fop::Fop;
use gsyncd::gluster::htime::{ChangelogDir, History};
use gsyncd::gluster::uuid::Uuid;
use gsyncd::gluster::volinfo;
use support::cluster::{Shape, Volume};
use support::{Fixture, trial, wait_for};

fn main() {
    support::run(|fx| {
        vec![
            trial("every_operation_is_recorded_with_brick_gfids", fx, every_operation_is_recorded),
            trial("changelog_show_matches_libgfchangelog", fx, show_matches_libgfchangelog),
            trial("volume_info_of_real_volumes", fx, volume_info_of_real_volumes),
            trial("changelog_show_walks_a_brick", fx, show_walks_a_brick),
        ]
    })
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// GFID of a path on the FUSE mount.
fn mount_gfid(p: &Path) -> Uuid {
    let v = xattr::get(p, "glusterfs.gfid.string").unwrap().unwrap_or_else(|| panic!("no gfid for {}", p.display()));
    Uuid::parse(v.strip_suffix(b"\0").unwrap_or(&v)).unwrap()
}

/// GFID of the same path on the (single) brick.
fn brick_gfid(vol: &Volume, rel: &Path) -> Uuid {
    let v = xattr::get(vol.bricks[0].join(rel), "trusted.gfid").unwrap().expect("trusted.gfid on the brick");
    Uuid::from_bytes(&v).unwrap()
}

/// Waits until the brick has rolled over past `t` and returns every record
/// of the changelogs covering [start, t].
fn records_between(vol: &Volume, start: u64, t: u64) -> Vec<Record> {
    let dir = ChangelogDir::new(&vol.bricks[0]);
    wait_for(Duration::from_secs(30), "a rollover after the operations", || {
        let files = dir.htime_files().ok()?;
        (files.last()?.max_ts() > t).then_some(())
    });
    let changelogs = match dir.history(start, t).unwrap() {
        History::Full { changelogs, .. } | History::Partial { changelogs, .. } => changelogs,
        h => panic!("history of [{start}, {t}] not available: {h:?}"),
    };
    let mut recs = Vec::new();
    for c in &changelogs {
        let p = dir.locate(c).unwrap_or_else(|| panic!("{} is missing", String::from_utf8_lossy(&c.path)));
        recs.extend(Reader::open(&p).unwrap().collect_records().unwrap());
    }
    recs
}

fn every_operation_is_recorded(fx: &Fixture) {
    let (p, _) = fx.pair(Shape::Single);
    let m = &p.mount;
    let start = now();
    let top = format!("ops-{}", std::process::id());
    let d = m.join(&top);
    fs::create_dir(&d).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    let weird: &[u8] = b"a b%\nc\xff";
    fs::write(d.join(OsStr::from_bytes(weird)), b"data").unwrap();
    fs::write(d.join("f"), b"1").unwrap();
    let st = Command::new("mkfifo").arg(d.join("fifo")).status().unwrap();
    assert!(st.success());
    fs::create_dir(d.join("sub")).unwrap();
    fs::create_dir(d.join("sub2")).unwrap();
    fs::create_dir(d.join("empty")).unwrap();
    for n in ["t", "same", "across", "over", "victim", "u"] {
        fs::write(d.join(n), n).unwrap();
    }
    // Remember the GFIDs before names move or go.
    let gfid: HashMap<&str, Uuid> = [
        ("dir", d.clone()),
        ("weird", d.join(OsStr::from_bytes(weird))),
        ("f", d.join("f")),
        ("fifo", d.join("fifo")),
        ("sub", d.join("sub")),
        ("sub2", d.join("sub2")),
        ("empty", d.join("empty")),
        ("t", d.join("t")),
        ("same", d.join("same")),
        ("across", d.join("across")),
        ("over", d.join("over")),
        ("u", d.join("u")),
    ]
    .into_iter()
    .map(|(k, p)| (k, mount_gfid(&p)))
    .collect();
    // The mount and the brick agree on GFIDs.
    assert_eq!(gfid["f"], brick_gfid(&p, &Path::new(&top).join("f")));
    assert_eq!(gfid["dir"], brick_gfid(&p, Path::new(&top)));

    File::options().append(true).open(d.join("f")).unwrap().set_len(0).unwrap();
    File::options().write(true).open(d.join("t")).unwrap().set_len(1).unwrap();
    fs::set_permissions(d.join("f"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(d.join("same"), Some(1000), Some(1000)).unwrap();
    File::options()
        .write(true)
        .open(d.join("across"))
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000))
        .unwrap();
    xattr::set(d.join("u"), "user.k", b"v").unwrap();
    fs::hard_link(d.join("f"), d.join("sub/hard")).unwrap();
    symlink("target with space", d.join("sym")).unwrap();
    fs::rename(d.join("same"), d.join("same2")).unwrap();
    fs::rename(d.join("across"), d.join("sub/across")).unwrap();
    fs::rename(d.join("over"), d.join("victim")).unwrap();
    fs::rename(d.join("sub2"), d.join("sub/sub2moved")).unwrap();
    fs::remove_file(d.join("u")).unwrap();
    fs::remove_dir(d.join("empty")).unwrap();
    let sym_gfid = brick_gfid(&p, &Path::new(&top).join("sym"));
    let end = now();

    let recs = records_between(&p, start, end);
    let find = |pred: &dyn Fn(&Record) -> bool, what: &str| {
        assert!(recs.iter().any(pred), "no record for {what} among {} records:\n{recs:#?}", recs.len());
    };
    let is_entry =
        |e: &gsyncd::gluster::changelog::Entry, parent: Uuid, name: &[u8]| e.parent == parent && e.name == name;
    let dirg = gfid["dir"];
    find(
        &|r| matches!(r, Record::New { gfid: g, fop: Fop::MKDIR, mode, entry, .. } if *g == dirg && *mode == 0o40755 && is_entry(entry, Uuid::ROOT, top.as_bytes())),
        "mkdir",
    );
    find(
        &|r| matches!(r, Record::New { gfid: g, fop: Fop::CREATE, mode, entry, .. } if *g == gfid["weird"] && mode & 0o170000 == 0o100000 && is_entry(entry, dirg, weird)),
        "create of a name with space, %, newline, non-UTF-8",
    );
    find(
        &|r| matches!(r, Record::New { gfid: g, fop: Fop::MKNOD, mode, entry, .. } if *g == gfid["fifo"] && mode & 0o170000 == 0o010000 && is_entry(entry, dirg, b"fifo")),
        "mknod (fifo)",
    );
    find(&|r| matches!(r, Record::Data { gfid: g } if *g == gfid["f"]), "write/truncate of f");
    find(&|r| matches!(r, Record::Data { gfid: g } if *g == gfid["t"]), "truncate of t");
    find(&|r| matches!(r, Record::Meta { gfid: g, fop: Fop::SETATTR } if *g == gfid["f"]), "chmod");
    find(&|r| matches!(r, Record::Meta { gfid: g, fop: Fop::SETATTR } if *g == gfid["same"]), "chown");
    find(&|r| matches!(r, Record::Meta { gfid: g, fop: Fop::SETATTR } if *g == gfid["across"]), "utime");
    find(&|r| matches!(r, Record::Meta { gfid: g, fop: Fop::SETXATTR } if *g == gfid["u"]), "setxattr");
    find(
        &|r| matches!(r, Record::Link { gfid: g, fop: Fop::LINK, entry } if *g == gfid["f"] && is_entry(entry, gfid["sub"], b"hard")),
        "hard link",
    );
    find(
        &|r| matches!(r, Record::Link { gfid: g, fop: Fop::SYMLINK, entry } if *g == sym_gfid && is_entry(entry, dirg, b"sym")),
        "symlink",
    );
    find(
        &|r| matches!(r, Record::Rename { gfid: g, from, to } if *g == gfid["same"] && is_entry(from, dirg, b"same") && is_entry(to, dirg, b"same2")),
        "rename in a dir",
    );
    find(
        &|r| matches!(r, Record::Rename { gfid: g, from, to } if *g == gfid["across"] && is_entry(from, dirg, b"across") && is_entry(to, gfid["sub"], b"across")),
        "rename across dirs",
    );
    find(
        &|r| matches!(r, Record::Rename { gfid: g, from, to } if *g == gfid["over"] && is_entry(from, dirg, b"over") && is_entry(to, dirg, b"victim")),
        "rename over an existing name",
    );
    find(
        &|r| matches!(r, Record::Rename { gfid: g, from, to } if *g == gfid["sub2"] && is_entry(from, dirg, b"sub2") && is_entry(to, gfid["sub"], b"sub2moved")),
        "rename of a directory",
    );
    find(
        &|r| matches!(r, Record::Delete { gfid: g, fop: Fop::UNLINK, entry, .. } if *g == gfid["u"] && is_entry(entry, dirg, b"u")),
        "unlink",
    );
    find(
        &|r| matches!(r, Record::Delete { gfid: g, fop: Fop::RMDIR, entry, .. } if *g == gfid["empty"] && is_entry(entry, dirg, b"empty")),
        "rmdir",
    );
}

/// Runs the libgfchangelog oracle over [start, end] of the brick: the
/// processed text of each changelog, by name; `None` if the library refused.
fn libgfchangelog(vol: &Volume, scratch: &Path, start: u64, end: u64) -> Option<Vec<(String, Vec<u8>)>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/libgfchangelog_dump.py");
    let out = Command::new("python3")
        .arg(script)
        .arg("--brick")
        .arg(&vol.bricks[0])
        .arg("--scratch")
        .arg(scratch)
        .args(["--start", &start.to_string(), "--end", &end.to_string()])
        .output()
        .unwrap();
    if !out.status.success() {
        return None;
    }
    // Split "== CHANGELOG.<ts>" blocks.
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for line in out.stdout.split_inclusive(|&b| b == b'\n') {
        if let Some(name) = line.strip_prefix(b"== ") {
            files.push((String::from_utf8_lossy(name).trim().to_owned(), Vec::new()));
        } else if line.starts_with(b"# ") {
            continue;
        } else if let Some(last) = files.last_mut() {
            last.1.extend_from_slice(line);
        }
    }
    Some(files)
}

fn show_matches_libgfchangelog(fx: &Fixture) {
    let (p, _) = fx.pair(Shape::Single);
    // Some traffic of every kind, so the compared files are not trivial.
    let d = p.mount.join(format!("diff-{}", std::process::id()));
    fs::create_dir(&d).unwrap();
    for i in 0..30 {
        if i == 15 {
            // A second burst in a later rollover period, so that several
            // changelogs are compared.
            std::thread::sleep(Duration::from_secs(4));
        }
        fs::write(d.join(OsStr::from_bytes(&[b'x', 0xff, b'0' + (i % 10) as u8])), b"raw").unwrap();
        let f = d.join(format!("file {i}%"));
        fs::write(&f, format!("{i}")).unwrap();
        if i % 3 == 0 {
            fs::rename(&f, d.join(format!("renamed\n{i}"))).unwrap();
        }
        if i % 5 == 0 {
            fs::remove_file(d.join(format!("file {i}%"))).ok();
        }
    }
    let end = now();
    let dir = ChangelogDir::new(&p.bricks[0]);
    wait_for(Duration::from_secs(30), "a rollover after the writes", || {
        (dir.htime_files().ok()?.last()?.max_ts() > end).then_some(())
    });
    let index = dir.htime_files().unwrap().pop().unwrap();
    let max_ts = index.max_ts();
    // libgfchangelog's binary search fails when start or end equals an
    // index timestamp; try a few starts inside the index.
    let stamps: Vec<u64> = index.entries.iter().map(|e| e.ts).collect();
    let scratch = tempfile::tempdir().unwrap();
    let mut tried = Vec::new();
    let mut result = None;
    for start in (index.created..max_ts).filter(|t| !stamps.contains(t)).take(6) {
        let sdir = scratch.path().join(start.to_string());
        fs::create_dir_all(&sdir).unwrap();
        let e = (max_ts + 1..).find(|t| !stamps.contains(t)).unwrap();
        match libgfchangelog(&p, &sdir, start, e) {
            Some(r) => {
                result = Some(r);
                break;
            }
            None => tried.push(start),
        }
    }
    let files = result.unwrap_or_else(|| panic!("libgfchangelog refused every start tried: {tried:?}"));
    assert!(files.len() >= 2, "the oracle returned {} changelog(s)", files.len());
    let mut compared_records = 0usize;
    for (name, theirs) in &files {
        let entry = index
            .entries
            .iter()
            .find(|e| String::from_utf8_lossy(&e.path).ends_with(name.as_str()))
            .unwrap_or_else(|| panic!("{name} not in HTIME"));
        let path = dir.locate(entry).unwrap();
        let ours = Command::new(env!("CARGO_BIN_EXE_gsyncd")).args(["changelog", "show"]).arg(&path).output().unwrap();
        assert!(ours.status.success(), "{}", String::from_utf8_lossy(&ours.stderr));
        let lines = |b: &[u8]| -> Vec<Vec<u8>> { b.split_inclusive(|&c| c == b'\n').map(<[u8]>::to_vec).collect() };
        let (o, t) = (lines(&ours.stdout), lines(theirs));
        if o != t {
            let show = |v: &[Vec<u8>]| v.iter().map(|l| String::from_utf8_lossy(l).into_owned()).collect::<String>();
            panic!(
                "{name}: gsyncd and libgfchangelog differ\n--- gsyncd\n{}--- libgfchangelog\n{}",
                show(&o),
                show(&t)
            );
        }
        compared_records += t.len();
    }
    assert!(compared_records > 30, "only {compared_records} records compared");
    eprintln!("compared {compared_records} records in {} changelogs with libgfchangelog", files.len());
}

fn volume_info_of_real_volumes(fx: &Fixture) {
    let (p, _) = fx.pair(Shape::DistRep2x2);
    let xml = fx.cluster().gluster(&["--xml", "volume", "info", &p.name]).unwrap();
    let v = volinfo::parse_one(&xml, &p.name).unwrap();
    assert_eq!(v.type_name, "Distributed-Replicate");
    assert_eq!((v.brick_count, v.replica_count, v.distribution_count()), (4, 2, 2));
    assert!(v.is_started());
    let paths: Vec<PathBuf> = v.bricks.iter().map(|b| PathBuf::from(OsStr::from_bytes(&b.path))).collect();
    assert_eq!(paths, p.bricks);
    assert_eq!(v.subvolume_of(1), 0);
    assert_eq!(v.subvolume_of(2), 1);
    assert_eq!(v.option("changelog.changelog"), Some("on"));
    // The volume id is the one glusterd keeps on every brick root.
    let id = xattr::get(&p.bricks[0], "trusted.glusterfs.volume-id").unwrap().unwrap();
    assert_eq!(v.id, Uuid::from_bytes(&id).unwrap());
    let all = volinfo::parse(&fx.cluster().gluster(&["--xml", "volume", "info"]).unwrap()).unwrap();
    assert!(all.iter().any(|x| x.name == p.name));
}

fn show_walks_a_brick(fx: &Fixture) {
    let (p, _) = fx.pair(Shape::Single);
    let start = now();
    let name = format!("walk {}", std::process::id());
    let f = p.mount.join(&name);
    fs::write(&f, b"x").unwrap();
    let g = mount_gfid(&f);
    let end = now();
    let dir = ChangelogDir::new(&p.bricks[0]);
    wait_for(Duration::from_secs(30), "a rollover after the write", || {
        (dir.htime_files().ok()?.last()?.max_ts() > end).then_some(())
    });
    let gsyncd = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_gsyncd"))
            .args(["changelog", "show"])
            .arg(&p.bricks[0])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let text = gsyncd(&["--since", &start.to_string()]);
    let want = format!("E {g} CREATE 33188 0 0 {}/walk%20{}\n", Uuid::ROOT, std::process::id());
    assert!(text.contains(&want), "{want:?} not in:\n{text}");
    assert!(text.lines().any(|l| l.starts_with("# ") && l.contains("/.glusterfs/changelogs/")), "{text}");
    // --until before the write excludes it.
    let before = gsyncd(&["--until", &(start - 100).to_string()]);
    assert!(!before.contains(&g.to_string()));
    let json = gsyncd(&["--since", &start.to_string(), "--json"]);
    let rec = json
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["gfid"] == g.to_string() && v["op"] == "CREATE")
        .unwrap_or_else(|| panic!("no CREATE for {g} in {json}"));
    assert_eq!(rec["entry"]["name"], format!("walk%20{}", std::process::id()));
    assert_eq!(rec["entry"]["parent"], Uuid::ROOT.to_string());
    assert_eq!(rec["mode"], 33188);
    assert!(rec["changelog"].as_u64().unwrap() >= start);
}
