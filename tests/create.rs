//! `gsyncd create` and `gsyncd delete` against real volumes, the harness
//! sshd and the ssh gate: create checks both sides, makes and pushes the
//! session key, turns on the volume options and writes the session file;
//! each failing check is named; the secondary's features.read-only does not
//! stop our own secondary from writing; delete removes the session and, with
//! --reset-sync-time, its stime xattrs on the primary bricks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use gsyncd::config::{Config, Value, schema};
use gsyncd::gluster::uuid::{Gfid, Uuid};
use gsyncd::gluster::xattr::keys;
use gsyncd::proto::rpc::{Client, EntryOp, Op};
use gsyncd::supervisor::pidfile::PidFile;
use support::cluster::{Shape, Side, Volume};
use support::{Fixture, trial, wait_for};

fn main() {
    support::run(|fx| {
        vec![
            trial("usage_errors_have_their_exit_codes", fx, usage),
            trial("create_checks_both_sides_and_delete_removes_the_session", fx, create_and_delete),
            trial("create_fails_named_for_a_missing_primary_volume", fx, missing_primary),
            trial("create_fails_named_for_an_unreachable_secondary", fx, unreachable),
            trial("create_refuses_a_non_empty_secondary_without_force", fx, not_empty),
        ]
    })
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_gsyncd")
}

/// A volume create may turn on, so its changelog starts off (a "secondary"
/// volume of the harness has none).
fn primary(fx: &Fixture) -> Volume {
    fx.volume("create-primary", Shape::Single, Side::Secondary)
}

/// An ssh-agent holding the harness's unrestricted root key: the operator's
/// own access that --push-key uses.
struct Agent {
    child: Child,
    sock: PathBuf,
}

impl Agent {
    fn start(dir: &Path, key: &Path) -> Agent {
        let sock = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let agent = Agent { child, sock };
        wait_for(Duration::from_secs(10), "the ssh-agent socket", || agent.sock.exists().then_some(()));
        let st = Command::new("ssh-add").arg(key).env("SSH_AUTH_SOCK", &agent.sock).stderr(Stdio::null()).status();
        assert!(st.unwrap().success(), "ssh-add failed");
        agent
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `gsyncd --config-dir DIR ARGS...`, with the agent if given (and no
/// other).
fn gsyncd(config: &Path, agent: Option<&Agent>, args: &[&str]) -> Output {
    let mut c = Command::new(bin());
    c.arg("--config-dir").arg(config).args(args).stdin(Stdio::null()).env_remove("SSH_AUTH_SOCK");
    if let Some(a) = agent {
        c.env("SSH_AUTH_SOCK", &a.sock);
    }
    c.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn shown(o: &Output) -> String {
    format!("status {}\nstdout:\n{}\nstderr:\n{}", o.status, stdout(o), stderr(o))
}

/// A session's directories under one temporary directory, and the `create`
/// arguments that put its files there.
struct Dirs {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
}

impl Dirs {
    fn new() -> Dirs {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_owned();
        Dirs { config: root.join("config"), root, _tmp: tmp }
    }

    fn state(&self, session: &str) -> PathBuf {
        self.root.join("state").join(session)
    }

    fn run(&self, session: &str) -> PathBuf {
        self.root.join("run").join(session)
    }

    fn create_args(&self, session: &str, p: &str, s: &str, port: u16) -> Vec<String> {
        [
            "create",
            session,
            "--primary",
            p,
            "--secondary",
            &format!("root@127.0.0.1::{s}"),
            "--ssh-port",
            &port.to_string(),
            "--set",
            &format!("state-dir={}", self.root.join("state").join("${session}").display()),
            "--set",
            &format!("run-dir={}", self.run(session).display()),
            "--set",
            &format!("remote-gsyncd={}", bin()),
            "--set",
            &format!("gluster-logdir={}", self.root.join("log").display()),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The value `gluster volume get` shows.
fn volume_get(fx: &Fixture, vol: &str, key: &str) -> String {
    let out = fx.cluster().gluster(&["volume", "get", vol, key]).unwrap();
    out.lines()
        .find_map(|l| l.strip_prefix(key).map(|r| r.split_whitespace().next().unwrap_or_default().to_owned()))
        .unwrap_or_else(|| panic!("no {key} in {out}"))
}

fn volume_id(name: &str) -> Uuid {
    gsyncd::gluster::cli::volume_info(Path::new("/usr/sbin/gluster"), &[], name).unwrap().id
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn gfid() -> Gfid {
    let mut b = [0u8; 16];
    fs::File::open("/dev/urandom").unwrap().read_exact(&mut b).unwrap();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Uuid(b)
}

fn entry(pg: &Gfid, name: &[u8]) -> Vec<u8> {
    [b".gfid/".as_slice(), &pg.canonical(), b"/", name].concat()
}

fn no_session_file(d: &Dirs, session: &str) {
    let f = d.config.join(format!("{session}.toml"));
    assert!(!f.exists(), "a failed create left {}", f.display());
}

fn usage(_fx: &Fixture) {
    let d = Dirs::new();
    let base = ["create", "u", "--primary", "pv", "--secondary", "root@127.0.0.1::sv"];
    let with = |extra: &[&str]| gsyncd(&d.config, None, &[&base[..], extra].concat());
    let o = with(&["--set", "bogus=1"]);
    assert_eq!(o.status.code(), Some(2), "{}", shown(&o));
    assert!(stderr(&o).contains("unknown option \"bogus\""), "{}", shown(&o));
    let o = with(&["--set", "sync-jobs=0"]);
    assert_eq!(o.status.code(), Some(3), "{}", shown(&o));
    let o = with(&["--set", "pid-file=/x"]);
    assert_eq!(o.status.code(), Some(4), "{}", shown(&o));
    let o = with(&["--authorized-keys", "/x"]);
    assert_eq!(o.status.code(), Some(64), "--authorized-keys needs --push-key: {}", shown(&o));
    let o = with(&["--ssh-port", "0"]);
    assert_eq!(o.status.code(), Some(64), "{}", shown(&o));
    let o = gsyncd(&d.config, None, &["create", "u", "--primary", "pv", "--secondary", "nohost"]);
    assert_eq!(o.status.code(), Some(3), "{}", shown(&o));
    let o = gsyncd(&d.config, None, &["create", "../x", "--primary", "pv", "--secondary", "h::sv"]);
    assert_eq!(o.status.code(), Some(64), "{}", shown(&o));
    let o = gsyncd(&d.config, None, &["delete", "nosuch"]);
    assert_eq!(o.status.code(), Some(6), "{}", shown(&o));
    no_session_file(&d, "u");
}

fn create_and_delete(fx: &Fixture) {
    let p = primary(fx);
    let s = fx.volume("create-secondary", Shape::Single, Side::Secondary);
    let sshd = fx.sshd();
    let d = Dirs::new();
    let agent = Agent::start(&d.root, &sshd.client_key);
    let authorized_keys = sshd.dir.join("authorized_keys");
    assert_eq!(volume_get(fx, &p.name, "changelog.changelog"), "off");
    let mut args = d.create_args("prod", &p.name, &s.name, sshd.port);
    args.extend(["--push-key".into(), "--authorized-keys".into(), authorized_keys.display().to_string()]);
    let o = gsyncd(&d.config, Some(&agent), &strs(&args));
    assert!(o.status.success(), "{}", shown(&o));
    let out = stdout(&o);
    for step in ["primary volume", "session key", "push key", "ssh", "secondary volume", "secondary empty"] {
        assert!(out.lines().any(|l| l.contains(&format!("] {step}: "))), "no {step} line: {}", shown(&o));
    }

    // The key: private, under the state directory, and the printed line
    // restricts it to the gate and the secondary volume.
    let ssh_dir = d.state("prod").join("ssh");
    let key = ssh_dir.join("secret.pem");
    assert_eq!(mode(&ssh_dir), 0o700);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(fs::read_link(ssh_dir.join("tar_ssh.pem")).unwrap(), Path::new("secret.pem"));
    assert!(ssh_dir.join("known_hosts").exists(), "the host key was not recorded");
    let public = fs::read_to_string(ssh_dir.join("secret.pem.pub")).unwrap().trim().to_owned();
    assert!(public.starts_with("ssh-ed25519 ") && public.contains(" gsyncd:prod@"), "{public}");
    let line = format!(
        "command=\"{} ssh-gate --volume {}\",no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-pty {public}",
        bin(),
        s.name
    );
    assert!(out.lines().any(|l| l == line), "the authorized_keys line is not printed as {line:?}: {out}");
    let installed = fs::read_to_string(&authorized_keys).unwrap();
    assert_eq!(installed.lines().filter(|l| *l == line).count(), 1, "{installed}");

    // The session file.
    let cfg = Config::load(&d.config, "prod").unwrap();
    let get = |n: &str| cfg.file.get(schema::spec(n).unwrap()).cloned();
    assert_eq!(get("primary"), Some(Value::Str(p.name.clone())));
    assert_eq!(get("secondary"), Some(Value::Str(format!("root@127.0.0.1::{}", s.name))));
    assert_eq!(get("ssh-port"), Some(Value::Int(i64::from(sshd.port))));
    let prefix = keys::session_prefix(&volume_id(&p.name), &volume_id(&s.name));
    assert_eq!(get("stime-xattr-prefix"), Some(Value::Str(prefix.clone())));
    assert_eq!(get("ssh-options"), None, "the default ssh-options already name the key");

    // The volume options.
    assert_eq!(volume_get(fx, &p.name, "changelog.changelog"), "on");
    assert_eq!(volume_get(fx, &p.name, "geo-replication.indexing"), "on");
    assert_eq!(volume_get(fx, &s.name, "features.read-only"), "on");

    read_only_keeps_out_all_but_our_secondary(&s, sshd, &key);

    // Again: refused without --force; with it, the key is kept and the
    // line not added twice (the secondary now holds files: --force skips
    // that check).
    let o = gsyncd(&d.config, Some(&agent), &strs(&args));
    assert_eq!(o.status.code(), Some(1), "{}", shown(&o));
    assert!(stderr(&o).contains("already exists") && stderr(&o).contains("--force"), "{}", shown(&o));
    args.push("--force".into());
    let o = gsyncd(&d.config, Some(&agent), &strs(&args));
    assert!(o.status.success(), "{}", shown(&o));
    assert!(stdout(&o).contains("kept") && stdout(&o).contains("already there"), "{}", shown(&o));
    assert_eq!(fs::read_to_string(ssh_dir.join("secret.pem.pub")).unwrap().trim(), public);
    let installed = fs::read_to_string(&authorized_keys).unwrap();
    assert_eq!(installed.lines().filter(|l| *l == line).count(), 1, "{installed}");

    // Delete: refused while the session runs (its pid file locked).
    let pid_file = d.run("prod").join("monitor.pid");
    let held = PidFile::acquire(&pid_file).unwrap();
    let o = gsyncd(&d.config, None, &["delete", "prod"]);
    assert_eq!(o.status.code(), Some(8), "{}", shown(&o));
    assert!(stderr(&o).contains("is running"), "{}", shown(&o));
    drop(held);

    // --reset-sync-time removes this session's stime and entry_stime from
    // the brick root, and not another secondary's.
    let brick = &p.bricks[0];
    let other = keys::session_prefix(&volume_id(&p.name), &gfid());
    for k in [keys::stime(&prefix), keys::entry_stime(&prefix), keys::stime(&other)] {
        xattr::set(brick, &k, &[0, 0, 0, 1, 0, 0, 0, 0]).unwrap();
    }
    let o = gsyncd(&d.config, None, &["delete", "prod", "--reset-sync-time"]);
    assert!(o.status.success(), "{}", shown(&o));
    assert!(stdout(&o).contains(&format!("removed {}", keys::stime(&prefix))), "{}", shown(&o));
    assert_eq!(xattr::get(brick, keys::stime(&prefix)).unwrap(), None);
    assert_eq!(xattr::get(brick, keys::entry_stime(&prefix)).unwrap(), None);
    assert!(xattr::get(brick, keys::stime(&other)).unwrap().is_some(), "another session's stime was removed");
    xattr::remove(brick, keys::stime(&other)).unwrap();
    assert!(!d.config.join("prod.toml").exists());
    assert!(!d.state("prod").exists(), "the state directory (and key) is left");
    assert!(!d.run("prod").exists(), "the run directory is left");
    let o = gsyncd(&d.config, None, &["delete", "prod"]);
    assert_eq!(o.status.code(), Some(6), "{}", shown(&o));
}

/// With features.read-only on, a plain client cannot write to the
/// secondary, while `gsyncd secondary` (started through the gate with the
/// session key) still replays entries and receives data by rsync.
fn read_only_keeps_out_all_but_our_secondary(s: &Volume, sshd: &support::sshd::Sshd, key: &Path) {
    wait_for(Duration::from_secs(15), "EROFS on a plain mount of the read-only secondary", || {
        match fs::write(s.mount.join("plain-client"), b"x") {
            Err(e) if e.raw_os_error() == Some(nix::libc::EROFS) => Some(()),
            Ok(()) => {
                let _ = fs::remove_file(s.mount.join("plain-client"));
                None
            }
            Err(_) => None,
        }
    });
    let opts = sshd.ssh_options_with(key);
    let mut child = Command::new("ssh")
        .args(&opts)
        .arg("root@127.0.0.1")
        .arg(format!("gsyncd secondary pvol localhost::{} --primary-node localhost", s.name))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = Client::connect(child.stdout.take().unwrap(), child.stdin.take().unwrap(), "secondary").unwrap();
    let pid = client.pid().unwrap();
    let (dir, file) = (gfid(), gfid());
    let mut mkdir = EntryOp::new(Op::Mkdir, dir, entry(&Uuid::ROOT, b"replicated"));
    mkdir.mode = 0o040_755;
    let mut create = EntryOp::new(Op::Create, file, entry(&dir, b"data"));
    create.mode = 0o100_644;
    let failures = client.entry_ops(vec![mkdir, create]).unwrap();
    assert!(failures.is_empty(), "entry ops on the read-only secondary: {failures:?}");
    let src = tempfile::tempdir().unwrap();
    fs::create_dir(src.path().join(".gfid")).unwrap();
    fs::write(src.path().join(".gfid").join(file.to_string()), b"through read-only\n").unwrap();
    let e = opts.iter().map(|o| o.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ");
    let mut rsync = Command::new("rsync")
        .args(["-aR0", "--inplace", "--files-from=-", "--super", "--numeric-ids", "--no-implied-dirs", "--existing"])
        .arg("--rsync-path=gsyncd receive rsync")
        .arg("-e")
        .arg(format!("ssh {e}"))
        .arg(".")
        .arg(format!("root@127.0.0.1:/proc/{pid}/cwd"))
        .current_dir(src.path())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    rsync.stdin.take().unwrap().write_all(format!(".gfid/{file}\0").as_bytes()).unwrap();
    let out = rsync.wait_with_output().unwrap();
    assert!(out.status.success(), "rsync into the read-only secondary: {}", String::from_utf8_lossy(&out.stderr));
    let got = s.mount.join("replicated").join("data");
    wait_for(Duration::from_secs(10), "the data on the secondary", || {
        (fs::read(&got).ok()? == b"through read-only\n").then_some(())
    });
    drop(client);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the secondary server did not exit");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn missing_primary(fx: &Fixture) {
    fx.cluster();
    let d = Dirs::new();
    let args = d.create_args("m", "gsytnosuchvolume", "gsytnosuchsecondary", 22);
    let o = gsyncd(&d.config, None, &strs(&args));
    assert_eq!(o.status.code(), Some(1), "{}", shown(&o));
    let err = stderr(&o);
    assert!(err.contains("check primary volume failed") && err.contains("does not exist"), "{}", shown(&o));
    assert!(err.contains("to fix:"), "{}", shown(&o));
    no_session_file(&d, "m");
}

fn unreachable(fx: &Fixture) {
    let p = primary(fx);
    let d = Dirs::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let args = d.create_args("u", &p.name, "gsytanysecondary", closed);
    let o = gsyncd(&d.config, None, &strs(&args));
    assert_eq!(o.status.code(), Some(1), "{}", shown(&o));
    let err = stderr(&o);
    assert!(err.contains("check ssh failed") && err.contains("Connection refused"), "{}", shown(&o));
    assert!(err.contains(&format!("port {closed}")) && err.contains("--push-key"), "{}", shown(&o));
    // The key line is printed before the check, for the operator to install.
    assert!(stdout(&o).lines().any(|l| l.starts_with("command=\"") && l.contains("ssh-gate")), "{}", shown(&o));
    no_session_file(&d, "u");
}

fn not_empty(fx: &Fixture) {
    let p = primary(fx);
    let s = fx.volume("create-full", Shape::Single, Side::Secondary);
    fs::write(s.mount.join("already-here"), b"x").unwrap();
    let sshd = fx.sshd();
    let d = Dirs::new();
    let agent = Agent::start(&d.root, &sshd.client_key);
    let mut args = d.create_args("full", &p.name, &s.name, sshd.port);
    args.extend([
        "--push-key".into(),
        "--authorized-keys".into(),
        sshd.dir.join("authorized_keys").display().to_string(),
    ]);
    let o = gsyncd(&d.config, Some(&agent), &strs(&args));
    assert_eq!(o.status.code(), Some(1), "{}", shown(&o));
    let err = stderr(&o);
    assert!(err.contains("check secondary empty failed") && err.contains("already-here"), "{}", shown(&o));
    assert!(err.contains("--force"), "{}", shown(&o));
    no_session_file(&d, "full");
    assert_eq!(volume_get(fx, &s.name, "features.read-only"), "off", "a failed create changed the secondary");
    // The check's mount is gone with its namespace, and so are its
    // directories.
    let mounts = fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(&d.root.display().to_string()), "{mounts}");
    assert!(!d.run("full").exists(), "the check left {}", d.run("full").display());
}
