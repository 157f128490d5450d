//! The real-cluster test harness shared by the integration test binaries:
//! glusterd, volumes and FUSE mounts ([`cluster`]), a private sshd on
//! 127.0.0.1 ([`sshd`]), and a tree comparator ([`tree`]).
//!
//! A binary that uses it sets `harness = false` and calls [`run`], which
//! builds one [`Fixture`] lazily (only if a selected test needs it), runs the
//! tests, tears everything down and fails the run if anything is left.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cluster;
pub mod session;
pub mod sshd;
pub mod systemd;
pub mod tree;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant};

use cluster::{Cluster, Shape, Side, Volume};
use sshd::Sshd;
use systemd::Booted;

pub use libtest_mimic::{Arguments, Trial};

/// Shared state of one test binary.
#[derive(Debug, Default)]
pub struct Fixture {
    cluster: OnceLock<Cluster>,
    sshd: OnceLock<Sshd>,
    systemd: OnceLock<Booted>,
    pairs: Mutex<HashMap<&'static str, (Volume, Volume)>>,
    volumes: Mutex<HashMap<&'static str, Volume>>,
    start: Mutex<()>,
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

impl Fixture {
    /// The cluster, started on first use.
    pub fn cluster(&self) -> &Cluster {
        let _g = self.start.lock().unwrap_or_else(|p| p.into_inner());
        self.cluster.get_or_init(|| {
            assert!(is_root(), "the real-cluster tests need root (glusterd, FUSE mounts)");
            Cluster::start()
        })
    }

    /// The private sshd, started on first use.
    pub fn sshd(&self) -> &Sshd {
        let dir = self.cluster().dir.join("sshd");
        let _g = self.start.lock().unwrap_or_else(|p| p.into_inner());
        self.sshd.get_or_init(|| Sshd::start(&dir))
    }

    /// A booted systemd with the gsyncd binary under test at
    /// /opt/gsyncd/gsyncd and the repository's units at /opt/gsyncd-units.
    pub fn systemd(&self) -> &Booted {
        let _g = self.start.lock().unwrap_or_else(|p| p.into_inner());
        self.systemd.get_or_init(|| {
            assert!(is_root(), "booting systemd in a container needs root");
            let units = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("units");
            Booted::boot(&[
                (&systemd::bin_dir(), "/opt/gsyncd"),
                (&units, "/opt/gsyncd-units"),
                // The monitor reads this node's glusterd UUID.
                (std::path::Path::new("/var/lib/glusterd"), "/var/lib/glusterd"),
            ])
        })
    }

    /// A primary and a secondary volume of `shape`, created on first use
    /// and shared by the binary's tests.
    pub fn pair(&self, shape: Shape) -> (Volume, Volume) {
        let key = match shape {
            Shape::Single => "single",
            Shape::DistRep2x2 => "2x2",
        };
        let c = self.cluster();
        let mut pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
        pairs
            .entry(key)
            .or_insert_with(|| (c.create_volume(shape, Side::Primary), c.create_volume(shape, Side::Secondary)))
            .clone()
    }

    /// A volume of `shape` known by `key`, created on first use and shared
    /// by the binary's tests.
    pub fn volume(&self, key: &'static str, shape: Shape, side: Side) -> Volume {
        let c = self.cluster();
        let mut vols = self.volumes.lock().unwrap_or_else(|p| p.into_inner());
        vols.entry(key).or_insert_with(|| c.create_volume(shape, side)).clone()
    }

    /// Stops sshd and tears the cluster down; returns what was left behind.
    pub fn shutdown(mut self) -> Vec<String> {
        drop(self.systemd.take());
        drop(self.sshd.take());
        match self.cluster.take() {
            Some(c) => c.shutdown(),
            None => Vec::new(),
        }
    }
}

/// The lines of a session file that replicate `p` to `s` over the harness
/// sshd (through the ssh gate), with the session's files under `dir`.
pub fn session_config(fx: &Fixture, p: &Volume, s: &Volume, dir: &std::path::Path) -> String {
    let sshd = fx.sshd();
    let key = sshd.add_forced_key("session_key", &format!("{} ssh-gate", env!("CARGO_BIN_EXE_gsyncd")));
    format!(
        "primary = \"{p}\"\nsecondary = \"root@127.0.0.1::{s}\"\nrun-dir = \"{r}/run\"\nstate-dir = \"{r}/state\"\n\
         ssh-port = {port}\nssh-options = \"-i {key} -oBatchMode=yes -oStrictHostKeyChecking=no \
         -oUserKnownHostsFile=/dev/null -oLogLevel=ERROR -oIdentitiesOnly=yes\"\n\
         remote-gsyncd = \"/usr/bin/gsyncd\"\nsecondary-timeout = 30\nconnection-timeout = 30\n\
         gluster-logdir = \"{r}/log\"\n",
        p = p.name,
        s = s.name,
        r = dir.display(),
        port = sshd.port,
        key = key.display(),
    )
}

/// Runs the binary's tests against one shared fixture, then tears it down.
/// A teardown that leaves anything behind fails the run.
pub fn run(make: impl FnOnce(&Arc<Fixture>) -> Vec<Trial>) -> ! {
    let args = Arguments::from_args();
    let fixture = Arc::new(Fixture::default());
    let trials = make(&fixture);
    let conclusion = libtest_mimic::run(&args, trials);
    let Ok(fixture) = Arc::try_unwrap(fixture) else {
        eprintln!("a test still holds the fixture; it is not torn down");
        std::process::exit(101);
    };
    let left = fixture.shutdown();
    if !left.is_empty() {
        eprintln!("teardown left behind:\n  {}", left.join("\n  "));
        std::process::exit(101);
    }
    conclusion.exit()
}

/// A trial that gets the fixture.
pub fn trial(name: &str, fx: &Arc<Fixture>, f: fn(&Fixture)) -> Trial {
    let fx = Arc::clone(fx);
    Trial::test(name, move || {
        f(&fx);
        Ok(())
    })
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        sleep(Duration::from_millis(200));
    }
}
