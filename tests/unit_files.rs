//! The systemd unit in units/: the settings the supervisor's design depends
//! on (and the hardening exceptions FUSE, mount namespaces, ssh and rsync
//! need) are there; `systemd-analyze verify` accepts an instance of it without
//! a warning; and `systemd-analyze security` rates its exposure no worse than
//! measured when the unit was written.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const UNIT: &str = include_str!("../units/gsyncd@.service");

/// `systemd-analyze security --offline=true` rated the unit 3.1 (systemd 252,
/// Debian 12); the margin absorbs rounding and other systemd versions'
/// weights, not a loosened unit.
const MAX_EXPOSURE: f64 = 3.6;

/// section -> key -> every assignment, in file order.
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn parse(text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = String::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        assert!(!line.ends_with('\\'), "line {}: continuation lines are not used here: {raw}", n + 1);
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        assert!(!section.is_empty(), "line {}: setting before any [Section]: {raw}", n + 1);
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("line {}: not key=value: {raw}", n + 1));
        unit.entry(section.clone())
            .or_default()
            .entry(key.trim().to_owned())
            .or_default()
            .push(value.trim().to_owned());
    }
    unit
}

/// The effective value of a single-valued setting (the last assignment wins).
fn get<'a>(unit: &'a Unit, section: &str, key: &str) -> &'a str {
    unit.get(section)
        .and_then(|s| s.get(key))
        .and_then(|v| v.last())
        .unwrap_or_else(|| panic!("[{section}] {key}= is not set"))
}

/// The words of a list-valued setting over all its assignments.
fn words<'a>(unit: &'a Unit, section: &str, key: &str) -> Vec<&'a str> {
    unit.get(section).and_then(|s| s.get(key)).into_iter().flatten().flat_map(|v| v.split_whitespace()).collect()
}

#[test]
fn unit_has_the_settings_the_supervisor_relies_on() {
    let u = parse(UNIT);
    assert!(u.keys().eq(["Install", "Service", "Unit"]), "sections: {:?}", u.keys().collect::<Vec<_>>());

    assert!(get(&u, "Unit", "Description").contains("%i"));
    let docs = words(&u, "Unit", "Documentation");
    assert!(docs.contains(&"man:gsyncd(8)") && docs.contains(&"man:gsyncd.toml(5)"), "{docs:?}");
    assert!(docs.contains(&"man:gsyncd@.service(8)"), "{docs:?}");
    assert_eq!(get(&u, "Unit", "ConditionPathExists"), "/etc/gsyncd/%i.toml");
    for after in ["network-online.target", "glusterd.service"] {
        assert!(words(&u, "Unit", "After").contains(&after), "After= lacks {after}");
    }
    assert!(words(&u, "Unit", "Wants").contains(&"network-online.target"));

    assert_eq!(get(&u, "Service", "Type"), "notify");
    assert_eq!(get(&u, "Service", "NotifyAccess"), "main");
    let exec = get(&u, "Service", "ExecStart");
    assert!(exec.starts_with("/usr/bin/gsyncd ") && exec.ends_with(" supervise %i"), "ExecStart={exec}");
    assert_eq!(get(&u, "Service", "ExecReload"), "/bin/kill -HUP $MAINPID");
    let watchdog: u64 = get(&u, "Service", "WatchdogSec").parse().expect("WatchdogSec in plain seconds");
    assert!((10..=300).contains(&watchdog), "WatchdogSec={watchdog}");
    assert_eq!(get(&u, "Service", "Restart"), "on-failure");
    assert_eq!(get(&u, "Service", "KillMode"), "mixed");
    assert_eq!(get(&u, "Service", "RuntimeDirectory"), "gsyncd/%i");
    assert_eq!(get(&u, "Service", "StateDirectory"), "gsyncd/%i");
    assert_eq!(get(&u, "Service", "LimitNOFILE"), "65536");
    // Configuration errors are not retried; runtime failures (1) are.
    let prevent = words(&u, "Service", "RestartPreventExitStatus");
    for code in ["2", "3", "5", "6"] {
        assert!(prevent.contains(&code), "RestartPreventExitStatus lacks {code}");
    }
    assert!(!prevent.contains(&"1"));
    assert_eq!(get(&u, "Install", "WantedBy"), "multi-user.target");
}

/// Hardening that would silently break replication must not creep in.
#[test]
fn hardening_leaves_fuse_mount_namespaces_and_bricks_working() {
    let u = parse(UNIT);
    // Bricks live anywhere, /var/tmp and /home included, and get xattrs written.
    assert_ne!(get(&u, "Service", "ProtectSystem"), "strict");
    assert_ne!(get(&u, "Service", "PrivateTmp"), "yes");
    assert!(!["yes", "read-only", "tmpfs"].contains(&get(&u, "Service", "ProtectHome")));
    // The glusterfs client needs /dev/fuse.
    let devices = words(&u, "Service", "DeviceAllow");
    assert!(devices.windows(2).any(|w| w == ["/dev/fuse", "rw"]), "DeviceAllow={devices:?}");
    if get(&u, "Service", "PrivateDevices") == "yes" {
        assert!(words(&u, "Service", "BindPaths").contains(&"/dev/fuse"), "a private /dev needs /dev/fuse bound in");
    }
    // Workers unshare(CLONE_NEWNS) and mount.
    let namespaces = words(&u, "Service", "RestrictNamespaces");
    assert!(namespaces.contains(&"mnt") && !namespaces.contains(&"yes"), "RestrictNamespaces={namespaces:?}");
    let calls = words(&u, "Service", "SystemCallFilter");
    assert!(calls.contains(&"@mount") && calls.contains(&"@system-service"), "SystemCallFilter={calls:?}");
    let caps = words(&u, "Service", "CapabilityBoundingSet");
    for cap in ["CAP_SYS_ADMIN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH"] {
        assert!(caps.contains(&cap), "CapabilityBoundingSet lacks {cap}");
    }
    // ssh, glusterd and the bricks are reached over the network.
    assert!(words(&u, "Service", "PrivateNetwork").last().is_none_or(|v| *v == "no"), "PrivateNetwork= set");
    let families = words(&u, "Service", "RestrictAddressFamilies");
    for af in ["AF_UNIX", "AF_INET", "AF_INET6"] {
        assert!(families.contains(&af), "RestrictAddressFamilies lacks {af}");
    }
}

/// `systemd-analyze --version`'s number, or None when it is not installed.
fn systemd_version() -> Option<u32> {
    let out = Command::new("systemd-analyze").arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().nth(1)?.parse().ok()
}

fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
}

/// An instance of the template, gsyncd@demo.service, in `dir`, with the
/// binary under test in place of /usr/bin/gsyncd (verify checks that the
/// ExecStart= program exists and is executable).
fn instance(dir: &Path) -> PathBuf {
    let bin = env!("CARGO_BIN_EXE_gsyncd");
    let bin = if bin.contains(char::is_whitespace) { format!("\"{bin}\"") } else { bin.to_owned() };
    let text = UNIT.replace("ExecStart=/usr/bin/gsyncd ", &format!("ExecStart={bin} "));
    assert_ne!(text, UNIT, "no ExecStart=/usr/bin/gsyncd line to rewrite");
    let path = dir.join("gsyncd@demo.service");
    fs::write(&path, text).unwrap();
    path
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn systemd_analyze_verify_accepts_an_instance() {
    let Some(version) = systemd_version() else {
        panic!("systemd-analyze is not installed (package systemd; scripts/test.sh installs it)");
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = instance(dir.path());
    // verify runs `man` for each Documentation= page: point it at this
    // project's pages, so the references are checked against them.
    let man = dir.path().join("man");
    let manual = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    for (section, page) in [("man8", "gsyncd.8"), ("man8", "gsyncd@.service.8"), ("man5", "gsyncd.toml.5")] {
        fs::create_dir_all(man.join(section)).unwrap();
        std::os::unix::fs::symlink(manual.join(page), man.join(section).join(page)).unwrap();
    }
    let mut cmd = Command::new("systemd-analyze");
    cmd.arg("verify").env("MANPATH", &man).current_dir(dir.path());
    assert!(on_path("man"), "man is not installed (package man-db; scripts/test.sh installs it)");
    let out = cmd.arg(&unit).output().expect("run systemd-analyze verify");
    assert!(out.status.success(), "systemd {version} verify failed: {}", text(&out));
    assert!(
        out.stderr.iter().all(u8::is_ascii_whitespace) && out.stdout.iter().all(u8::is_ascii_whitespace),
        "systemd {version} verify warned: {}",
        text(&out)
    );
}

#[test]
fn systemd_analyze_security_exposure_stays_low() {
    let Some(version) = systemd_version() else {
        panic!("systemd-analyze is not installed (package systemd; scripts/test.sh installs it)");
    };
    if version < 250 {
        eprintln!("skipped: systemd {version} has no `security --offline`");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = instance(dir.path());
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .current_dir(dir.path())
        .output()
        .expect("run systemd-analyze security");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    // "→ Overall exposure level for gsyncd@demo.service: 3.1 OK 🙂"
    let score: f64 = table
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for ")?.1.split_once(": ")?.1.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in: {}", text(&out)));
    // The largest remaining exposures, for whoever reads the test log.
    let mut open: Vec<(f64, &str)> = table
        .lines()
        .filter(|l| l.starts_with('✗'))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let name = w.nth(1)?;
            Some((w.next_back()?.parse().ok()?, name))
        })
        .collect();
    open.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("systemd {version}: overall exposure of gsyncd@.service {score} (limit {MAX_EXPOSURE})");
    for (weight, name) in open.iter().take(8) {
        println!("  {weight:.1} {name}");
    }
    assert!(score < MAX_EXPOSURE, "exposure {score}, not below {MAX_EXPOSURE}:\n{table}");
}
