//! `gsyncd doctor` against real sessions (real glusterd, FUSE mounts, sshd
//! through the gate): it passes every check on a good session, and names
//! the failing check with its fix for a closed ssh port and for a primary
//! without changelog.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use gsyncd::cmd::doctor::Step;
use support::cluster::{Shape, Side, Volume};
use support::{Fixture, Trial, trial};

fn main() {
    support::run(|fx| {
        vec![
            trial("doctor_passes_every_check_on_a_good_session", fx, good),
            trial("doctor_names_ssh_for_a_closed_port", fx, closed_port),
            trial("doctor_names_volume_options_for_a_primary_without_changelog", fx, no_changelog),
            Trial::test("doctor_of_an_unknown_session_exits_6", || {
                let d = tempfile::tempdir().unwrap();
                assert_eq!(gsyncd(d.path(), &["doctor", "nope"]).status.code(), Some(6));
                Ok(())
            }),
        ]
    })
}

struct Session {
    dir: tempfile::TempDir,
    name: String,
}

impl Session {
    fn new(fx: &Fixture, name: &str, p: &Volume, s: &Volume, extra: &str) -> Session {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{}{extra}", support::session_config(fx, p, s, dir.path()));
        fs::write(dir.path().join(format!("{name}.toml")), text).unwrap();
        Session { dir, name: name.to_owned() }
    }

    fn set(&self, line: &str, to: &str) {
        let f = self.dir.path().join(format!("{}.toml", self.name));
        let t = fs::read_to_string(&f).unwrap();
        let old = t.lines().find(|l| l.starts_with(&format!("{line} = "))).unwrap().to_owned();
        fs::write(&f, t.replace(&old, &format!("{line} = {to}"))).unwrap();
    }

    fn doctor(&self, all: bool) -> Output {
        let mut args = vec!["doctor", self.name.as_str()];
        if all {
            args.push("--all");
        }
        gsyncd(self.dir.path(), &args)
    }

    /// Nothing of doctor's is left mounted or in the run directory's mnt/.
    fn assert_clean(&self) {
        assert!(support::cluster::mounts_under(self.dir.path()).is_empty(), "a mount is left");
        let mnt = self.dir.path().join("run/mnt");
        let left: Vec<_> = fs::read_dir(&mnt).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        assert!(left.is_empty(), "left in {}: {left:?}", mnt.display());
    }
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
    let o = sess.doctor(false);
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
    sess.assert_clean();
}

fn closed_port(fx: &Fixture) {
    let (p, s) = fx.pair(Shape::Single);
    let sess = Session::new(fx, "closed", &p, &s, "");
    let port = free_port();
    sess.set("ssh-port", &port.to_string());
    let o = sess.doctor(false);
    assert_eq!(o.status.code(), Some(12), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("check ssh failed") && err.contains("Connection refused"), "{}", text(&o));
    assert!(err.contains("to fix:") && err.contains(&format!("port {port}")), "{}", text(&o));
    assert!(line(&o, Step::Versions).contains("skipped"), "{}", text(&o));
    assert!(line(&o, Step::Gate).is_empty(), "it stops at the first failure: {}", text(&o));

    // --all goes on: the local checks pass, the remote ones are skipped.
    let o = sess.doctor(true);
    assert_eq!(o.status.code(), Some(12), "{}", text(&o));
    assert!(line(&o, Step::Gate).contains("skipped"), "{}", text(&o));
    assert!(line(&o, Step::PrimaryMount).contains(": ok: "), "{}", text(&o));
    assert!(line(&o, Step::PidFile).contains(": ok: "), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("check ssh failed"), "{}", text(&o));
    sess.assert_clean();
}

fn no_changelog(fx: &Fixture) {
    // A secondary-side volume of the harness has no changelog options.
    let p = fx.volume("doctor-no-changelog", Shape::Single, Side::Secondary);
    let (_, s) = fx.pair(Shape::Single);
    let sess = Session::new(fx, "nochangelog", &p, &s, "");
    let o = sess.doctor(false);
    assert_eq!(o.status.code(), Some(12), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("check volume options failed"), "{}", text(&o));
    assert!(err.contains("changelog.changelog and geo-replication.indexing are off"), "{}", text(&o));
    assert!(err.contains(&format!("gluster volume set {} changelog.changelog on", p.name)), "{}", text(&o));
    for step in &Step::ALL[..Step::VolumeOptions.number() - 1] {
        assert!(line(&o, *step).contains(": ok: "), "{step} before it passed: {}", text(&o));
    }
}
