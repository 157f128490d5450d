//! A private sshd on 127.0.0.1: its own host key, config and
//! `authorized_keys` for root, on a free port, so tests ssh to this machine
//! without touching the system's ssh configuration.

use std::ffi::OsString;
use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Sshd {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    /// Private key that root's authorized_keys admits.
    pub client_key: PathBuf,
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "gsyncd-test", "-f"])
        .arg(path)
        .status()
        .unwrap_or_else(|e| panic!("cannot run ssh-keygen: {e}"));
    assert!(st.success(), "ssh-keygen failed for {}", path.display());
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("cannot bind: {e}"));
    l.local_addr().unwrap_or_else(|e| panic!("no local addr: {e}")).port()
}

impl Sshd {
    /// Starts sshd with its files under `dir` (created).
    pub fn start(dir: &Path) -> Sshd {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        // sshd's privilege separation directory.
        let _ = fs::create_dir_all("/run/sshd");
        let _ = fs::set_permissions("/run/sshd", fs::Permissions::from_mode(0o755));
        let host_key = dir.join("host_key");
        let client_key = dir.join("client_key");
        keygen(&host_key);
        keygen(&client_key);
        let pubkey = fs::read_to_string(dir.join("client_key.pub")).unwrap_or_else(|e| panic!("no client key: {e}"));
        fs::write(dir.join("authorized_keys"), pubkey).unwrap_or_else(|e| panic!("cannot write authorized_keys: {e}"));

        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            let config = dir.join("sshd_config");
            fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {dir}/sshd.pid\n\
                     AuthorizedKeysFile {dir}/authorized_keys\nPermitRootLogin prohibit-password\n\
                     PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     UsePAM no\nStrictModes no\nLogLevel ERROR\nMaxStartups 100\nMaxSessions 100\n",
                    hk = host_key.display(),
                    dir = dir.display()
                ),
            )
            .unwrap_or_else(|e| panic!("cannot write sshd_config: {e}"));
            let mut child = Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start /usr/sbin/sshd: {e}"));
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Sshd { child, port, dir: dir.to_owned(), client_key };
                }
                if let Ok(Some(status)) = child.try_wait() {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut e, &mut err);
                    }
                    last_err = format!("sshd exited with {status}: {err}");
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_err = "sshd did not listen within 10 s".into();
                    break;
                }
                sleep(Duration::from_millis(50));
            }
        }
        panic!("cannot start sshd: {last_err}");
    }

    /// ssh options that reach this sshd as root without prompts.
    pub fn ssh_options(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = ["-p", &self.port.to_string(), "-i"].iter().map(OsString::from).collect();
        v.push(self.client_key.clone().into_os_string());
        for o in [
            "-oBatchMode=yes",
            "-oStrictHostKeyChecking=no",
            "-oUserKnownHostsFile=/dev/null",
            "-oLogLevel=ERROR",
            "-oIdentitiesOnly=yes",
        ] {
            v.push(o.into());
        }
        v
    }

    /// Admits a new key for root whose sessions run `command` whatever the
    /// client asks (an `authorized_keys` forced command with the usual
    /// restrictions); returns the private key.
    pub fn add_forced_key(&self, name: &str, command: &str) -> PathBuf {
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let key = self.dir.join(name);
        if !key.exists() {
            keygen(&key);
            let pubkey = fs::read_to_string(self.dir.join(format!("{name}.pub")))
                .unwrap_or_else(|e| panic!("no public key {name}: {e}"));
            let line = format!(
                "command=\"{command}\",no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-pty {}",
                pubkey.trim()
            );
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open(self.dir.join("authorized_keys"))
                .unwrap_or_else(|e| panic!("cannot open authorized_keys: {e}"));
            std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes())
                .unwrap_or_else(|e| panic!("cannot write authorized_keys: {e}"));
        }
        key
    }

    /// ssh options that reach this sshd as root with `key`.
    pub fn ssh_options_with(&self, key: &Path) -> Vec<OsString> {
        let mut v = self.ssh_options();
        if let Some(i) = v.iter().position(|o| o == "-i") {
            v[i + 1] = key.as_os_str().to_owned();
        }
        v
    }

    /// `ssh ... root@127.0.0.1 <remote command>`.
    pub fn ssh(&self, remote: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.ssh_options()).arg("root@127.0.0.1").arg(remote);
        c
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
