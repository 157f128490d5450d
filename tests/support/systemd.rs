//! A real systemd, booted in a container over this machine's own root
//! (`systemd-nspawn --volatile=yes`: /usr is shared read-only, everything
//! else is a fresh tmpfs), for tests of units and of the journal.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Booted {
    child: Child,
    /// pid (in our namespace) of the container's systemd.
    pub leader: u32,
    pub machine: String,
}

fn ppid(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields after the last ')'.
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline")).map(|b| String::from_utf8_lossy(&b).replace('\0', " ")).unwrap_or_default()
}

/// The container's init: a descendant of `root` running systemd.
fn find_leader(root: u32) -> Option<u32> {
    let pids: Vec<u32> =
        fs::read_dir("/proc").ok()?.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
    pids.into_iter().find(|&p| {
        let c = cmdline(p);
        (c.starts_with("/usr/lib/systemd/systemd ") || c.starts_with("/lib/systemd/systemd "))
            && std::iter::successors(ppid(p), |&q| ppid(q)).take(4).any(|a| a == root)
    })
}

impl Booted {
    /// Boots systemd; `binds` are (host path, container path) read-only
    /// bind mounts.
    pub fn boot(binds: &[(&Path, &str)]) -> Booted {
        let machine = format!("gsyncd-test-{}", std::process::id());
        let mut cmd = Command::new("systemd-nspawn");
        cmd.args(["-D", "/", "--volatile=yes", "--register=no", "--keep-unit", "--console=passive"])
            .arg(format!("--machine={machine}"));
        for (host, inside) in binds {
            cmd.arg(format!("--bind-ro={}:{inside}", host.display()));
        }
        // The harness's volumes (bricks, on which workers write progress
        // xattrs) and sshd keys, at the same paths.
        let base = Path::new(super::cluster::BASE);
        std::fs::create_dir_all(base).unwrap_or_else(|e| panic!("cannot create {}: {e}", base.display()));
        cmd.arg(format!("--bind={}", base.display()));
        // The unit's BindPaths=/dev/fuse needs the device inside.
        if Path::new("/dev/fuse").exists() {
            cmd.arg("--bind=/dev/fuse");
        }
        cmd.args(["--boot", "systemd.unit=multi-user.target", "systemd.firstboot=off"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child =
            cmd.spawn().unwrap_or_else(|e| panic!("cannot run systemd-nspawn (package systemd-container): {e}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        let leader = loop {
            if let Some(l) = find_leader(child.id()) {
                break l;
            }
            if let Ok(Some(st)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                panic!("systemd-nspawn exited with {st}: {err}");
            }
            assert!(Instant::now() < deadline, "the container's systemd did not start");
            sleep(Duration::from_millis(100));
        };
        let b = Booted { child, leader, machine };
        // "degraded" is fine: some units of the host do not start in a
        // container. Until the manager listens, systemctl answers nothing.
        let mut state = String::new();
        while Instant::now() < deadline {
            let st = b.exec(&["systemctl", "is-system-running", "--wait"]);
            state = String::from_utf8_lossy(&st.stdout).trim().to_owned();
            if state == "running" || state == "degraded" {
                return b;
            }
            sleep(Duration::from_millis(200));
        }
        panic!("container systemd is {state:?} after 60 s");
    }

    /// Runs a command inside the container.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args(["-t", &self.leader.to_string(), "-a"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run nsenter: {e}"))
    }

    /// Writes a file inside the container.
    pub fn write(&self, path: &str, content: &str) {
        let o = self.exec(&[
            "sh",
            "-c",
            &format!("mkdir -p \"$(dirname '{path}')\" && cat > '{path}' <<'GSYNCD_EOF'\n{content}GSYNCD_EOF\n"),
        ]);
        assert!(o.status.success(), "cannot write {path}: {}", String::from_utf8_lossy(&o.stderr));
    }

    /// `systemctl show UNIT -p NAME` values.
    pub fn show(&self, unit: &str, props: &[&str]) -> std::collections::HashMap<String, String> {
        let mut args = vec!["systemctl", "show", unit];
        for p in props {
            args.extend(["-p", p]);
        }
        let o = self.exec(&args);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// Journal records matching `matches` (journalctl's FIELD=VALUE terms),
    /// as JSON objects; waits until at least `min` are there.
    ///
    /// Match on gsyncd's own fields rather than the unit: journald attributes
    /// a record to a unit by reading /proc of the sender, which a short-lived
    /// process may have left already.
    pub fn journal(&self, matches: &[&str], min: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let _ = self.exec(&["journalctl", "--sync"]);
            let mut args = vec!["journalctl", "-o", "json", "--no-pager"];
            args.extend_from_slice(matches);
            let o = self.exec(&args);
            let recs: Vec<serde_json::Value> =
                String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
            if recs.len() >= min || Instant::now() > deadline {
                return recs;
            }
            sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        // SIGTERM asks nspawn to shut the container down cleanly.
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Directory of the gsyncd binary under test.
pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_gsyncd")).parent().map(Path::to_path_buf).unwrap_or_default()
}
