//! A session in a private config directory, run with `gsyncd supervise`
//! as systemd would (logging to a file), and read back through its status
//! files and the operator commands. Shared by the test binaries that run
//! real sessions.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use super::Fixture;
use super::cluster::Volume;

pub struct Session {
    pub dir: tempfile::TempDir,
    pub name: String,
}

/// A running `gsyncd supervise`; stopped (SIGTERM) if a failed assertion
/// leaves it running, so that no session outlives its test.
pub struct Running(Option<Child>);

impl Running {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("a running supervisor")
    }
    pub fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child().try_wait().unwrap()
    }
    /// SIGTERM, then its exit status.
    pub fn terminate(mut self) -> ExitStatus {
        let mut c = self.0.take().expect("a running supervisor");
        kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM).unwrap();
        c.wait().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            let _ = c.wait();
        }
    }
}

impl Session {
    /// `p` to `s` over the harness sshd, with `extra` lines appended.
    pub fn new(fx: &Fixture, name: &str, p: &Volume, s: &Volume, extra: &str) -> Session {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{}{extra}", super::session_config(fx, p, s, dir.path()));
        fs::write(dir.path().join(format!("{name}.toml")), text).unwrap();
        Session { dir, name: name.to_owned() }
    }

    pub fn file(&self) -> PathBuf {
        self.dir.path().join(format!("{}.toml", self.name))
    }

    /// Rewrites the session file.
    pub fn edit(&self, f: impl FnOnce(String) -> String) {
        let t = fs::read_to_string(self.file()).unwrap();
        fs::write(self.file(), f(t)).unwrap();
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("supervise.log")
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// `gsyncd supervise`, logging to a file; `args` go before the command.
    pub fn command(&self, args: &[&str]) -> Command {
        let log = fs::File::create(self.log()).unwrap();
        let mut c = Command::new(env!("CARGO_BIN_EXE_gsyncd"));
        c.args(args)
            .args(["--log-target", "stderr", "--config-dir"])
            .arg(self.dir.path())
            .args(["supervise", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        c
    }

    pub fn start(&self) -> Running {
        Running(Some(self.command(&[]).spawn().unwrap()))
    }

    /// SIGTERM: exit 0 and no mount left under the run directory.
    pub fn stop(&self, running: Running) {
        let st = running.terminate();
        assert!(st.success(), "supervise: {st}\n{}", self.log_text());
        assert!(super::cluster::mounts_under(&self.dir.path().join("run")).is_empty());
    }

    /// `gsyncd --config-dir DIR ARGS...`.
    pub fn gsyncd(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_gsyncd")).arg("--config-dir").arg(self.dir.path()).args(args).output().unwrap()
    }

    pub fn config_set(&self, name: &str, value: &str) {
        let o = self.gsyncd(&["config", "set", &self.name, name, value]);
        assert!(o.status.success(), "config set {name}: {}", String::from_utf8_lossy(&o.stderr));
    }

    /// A brick's status file, as the monitor wrote it (`Null` if none yet).
    pub fn brick_status(&self, brick: &Path) -> Value {
        use std::os::unix::ffi::OsStrExt;
        let f = gsyncd::monitor::statusfile::brick_file(&self.dir.path().join("state"), brick.as_os_str().as_bytes());
        fs::read(&f).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null)
    }

    pub fn monitor_status(&self) -> String {
        fs::read_to_string(self.dir.path().join("state/monitor.status")).unwrap_or_default()
    }

    /// Waits (up to a minute) until the brick's status satisfies `f`.
    pub fn wait_brick_status(&self, brick: &Path, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        wait_value(what, Duration::from_secs(60), || self.brick_status(brick), f, || self.log_text())
    }

    /// `gsyncd status SESSION --json`.
    pub fn json(&self) -> Value {
        let o = self.gsyncd(&["status", &self.name, "--json"]);
        assert!(o.status.success(), "status --json: {}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
    }

    /// Waits until `status --json` satisfies `f`.
    pub fn wait_json(&self, what: &str, timeout: Duration, f: impl Fn(&Value) -> bool) -> Value {
        wait_value(what, timeout, || self.json(), f, || self.log_text())
    }
}

fn wait_value(
    what: &str,
    timeout: Duration,
    read: impl Fn() -> Value,
    f: impl Fn(&Value) -> bool,
    log: impl Fn() -> String,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let v = read();
        if f(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "status never showed {what}: {v:#}\n{}", log());
        std::thread::sleep(Duration::from_millis(300));
    }
}
