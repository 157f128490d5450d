//! `gsyncd ssh-gate`: the forced command of the primary's key on a
//! secondary node. It reads what the client asked for
//! (`SSH_ORIGINAL_COMMAND`), splits it with shell word rules (no shell ever
//! runs it), and admits only:
//!
//! - `gsyncd secondary ...` (and `gsyncd --version`), run as this binary;
//! - a receiving `rsync --server ... . TARGET` and a receiving `tar -x ... -C
//!   TARGET`, where TARGET is the working directory of a live `gsyncd
//!   secondary` of the same user: `/proc/<pid>/cwd`, or the path it shows.
//!
//! For a receive, the gate joins the server's mount namespace (a root
//! server mounts in one of its own), enters its working directory, and runs
//! rsync or tar with the target `.`: the transfer lands in the server's aux
//! mount, which nobody outside that namespace sees, and rsync >= 3.4, which
//! no longer follows `/proc/<pid>/cwd` as a destination, works.
//!
//! The reference's C wrapper splits on single spaces, checks only that
//! rsync's options start with `-`, and lets the tar key run any tar
//! arguments; this gate refuses the options that write or read outside the
//! target and admits tar with a fixed set of options only.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use tracing::{info, warn};

use crate::cli::{Cli, Command as CliCommand, SshGateArgs};
use crate::config::value::SecondaryUrl;

/// A live `gsyncd secondary` of our user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub pid: u32,
    /// What `/proc/<pid>/cwd` shows.
    pub cwd: Vec<u8>,
    /// The working directory is on a FUSE file system (the aux mount): a
    /// server that has not entered its mount yet is no target.
    pub mounted: bool,
}

/// What the gate may see of the system.
pub trait GateContext {
    fn live_secondaries(&self) -> Vec<Live>;
    /// Volumes the key may serve; empty: any.
    fn allowed_volumes(&self) -> &[String];
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// This binary with these arguments.
    Gsyncd(Vec<OsString>),
    /// `program args...` inside the working directory of secondary `pid`.
    Receive { program: &'static str, args: Vec<OsString>, pid: u32 },
}

/// Splits a command line with POSIX shell word rules. Unquoted shell
/// syntax (`; & | < > ( ) $ \``, globs, a leading `#` or `~`) refuses the
/// line: it only makes sense to a shell, and none runs here.
pub fn split(cmd: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut words = Vec::new();
    let mut cur = Vec::new();
    let mut in_word = false;
    let mut i = 0;
    while i < cmd.len() {
        let c = cmd[i];
        match c {
            b' ' | b'\t' | b'\n' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            b'\'' => {
                in_word = true;
                let end = cmd[i + 1..].iter().position(|&b| b == b'\'').ok_or("unterminated single quote")?;
                cur.extend_from_slice(&cmd[i + 1..i + 1 + end]);
                i += end + 1;
            }
            b'"' => {
                in_word = true;
                i += 1;
                loop {
                    match cmd.get(i) {
                        None => return Err("unterminated double quote".into()),
                        Some(b'"') => break,
                        Some(b'\\') => match cmd.get(i + 1) {
                            Some(b'\n') => i += 1,
                            Some(&n @ (b'$' | b'`' | b'"' | b'\\')) => {
                                cur.push(n);
                                i += 1;
                            }
                            _ => cur.push(b'\\'),
                        },
                        Some(b'$' | b'`') => return Err("shell expansion inside double quotes".into()),
                        Some(&b) => cur.push(b),
                    }
                    i += 1;
                }
            }
            b'\\' => match cmd.get(i + 1) {
                None => return Err("trailing backslash".into()),
                Some(b'\n') => i += 1,
                Some(&n) => {
                    in_word = true;
                    cur.push(n);
                    i += 1;
                }
            },
            b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')' | b'$' | b'`' | b'*' | b'?' | b'[' => {
                return Err(format!("shell syntax {:?} outside quotes", c as char));
            }
            b'#' | b'~' if !in_word => return Err(format!("shell syntax {:?} outside quotes", c as char)),
            _ => {
                in_word = true;
                cur.push(c);
            }
        }
        i += 1;
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

fn shown(words: &[Vec<u8>]) -> String {
    words.iter().map(|w| w.escape_ascii().to_string()).collect::<Vec<_>>().join(" ")
}

fn basename(w: &[u8]) -> &[u8] {
    w.rsplit(|&b| b == b'/').next().unwrap_or(w)
}

fn strip_slash(p: &[u8]) -> &[u8] {
    if p.len() > 1 { p.strip_suffix(b"/").unwrap_or(p) } else { p }
}

/// The secondary whose working directory `target` names.
fn target_pid(target: &[u8], ctx: &dyn GateContext) -> Result<u32, String> {
    let t = strip_slash(target);
    if t == b"/" || t.is_empty() {
        return Err("the target is the root directory".into());
    }
    let live: Vec<Live> = ctx.live_secondaries().into_iter().filter(|l| l.mounted).collect();
    if let Some(pid) = t.strip_prefix(b"/proc/").and_then(|r| r.strip_suffix(b"/cwd")) {
        let pid: u32 = std::str::from_utf8(pid).ok().and_then(|p| p.parse().ok()).ok_or("bad /proc target")?;
        return live
            .iter()
            .find(|l| l.pid == pid)
            .map(|l| l.pid)
            .ok_or_else(|| format!("process {pid} is not a gsyncd secondary of this user inside its mount"));
    }
    live.iter()
        .find(|l| strip_slash(&l.cwd) == t)
        .map(|l| l.pid)
        .ok_or_else(|| format!("{} is not the working directory of a gsyncd secondary of this user", t.escape_ascii()))
}

/// rsync options that name paths outside the target, run commands, or turn
/// the receive into something else.
const RSYNC_REFUSED: &[&str] = &[
    "--sender",
    "--daemon",
    "--config",
    "--log-file",
    "--log-file-format",
    "--temp-dir",
    "--backup-dir",
    "--partial-dir",
    "--compare-dest",
    "--copy-dest",
    "--link-dest",
    "--write-devices",
    "--remove-source-files",
    "--write-batch",
    "--only-write-batch",
    "--read-batch",
    "--rsync-path",
    "--remote-option",
];

/// Options that read a list from a file: only `=-` (the connection) is fine.
const RSYNC_LISTS: &[&str] = &["--files-from", "--exclude-from", "--include-from", "--filter-from"];

fn rsync(words: &[Vec<u8>], ctx: &dyn GateContext) -> Result<Decision, String> {
    if words.get(1).map(Vec::as_slice) != Some(b"--server") {
        return Err("rsync is allowed only as `rsync --server` (a receive)".into());
    }
    let dot = words.iter().position(|w| w == b".").ok_or("rsync without the `.` argument")?;
    if words.len() != dot + 2 {
        return Err("rsync must name exactly one target after `.`".into());
    }
    for w in &words[2..dot] {
        let s = String::from_utf8_lossy(w);
        if !s.starts_with('-') {
            return Err(format!("rsync argument {s:?} is not an option"));
        }
        let name = s.split('=').next().unwrap_or_default();
        if RSYNC_REFUSED.contains(&name) {
            return Err(format!("rsync option {name} is not allowed"));
        }
        if RSYNC_LISTS.contains(&name) && s != format!("{name}=-") {
            return Err(format!("rsync option {name} may only read the connection (={name}=-)"));
        }
        // A short-option cluster: -T takes the temp dir; after `e` comes the
        // protocol string, which is letters only.
        if !s.starts_with("--") {
            let flags = s[1..].split('e').next().unwrap_or_default();
            if flags.contains('T') || flags.contains('M') {
                return Err(format!("rsync option cluster {s:?} is not allowed"));
            }
        }
    }
    let pid = target_pid(&words[dot + 1], ctx)?;
    let mut args: Vec<OsString> = words[1..=dot].iter().map(|w| OsString::from_vec(w.clone())).collect();
    args.push(".".into());
    Ok(Decision::Receive { program: "rsync", args, pid })
}

fn tar(words: &[Vec<u8>], ctx: &dyn GateContext) -> Result<Decision, String> {
    let mut args: Vec<OsString> = Vec::new();
    let mut dir: Option<Vec<u8>> = None;
    let mut extract = false;
    let mut i = 1;
    let set_dir = |dir: &mut Option<Vec<u8>>, d: Option<&Vec<u8>>| -> Result<(), String> {
        let d = d.ok_or("tar -C without a directory")?;
        if dir.replace(d.clone()).is_some() {
            return Err("tar may change directory once".into());
        }
        Ok(())
    };
    while i < words.len() {
        let w = String::from_utf8_lossy(&words[i]).into_owned();
        match w.as_str() {
            "-x" | "--extract" => {
                extract = true;
                args.push(w.into());
            }
            "--overwrite"
            | "--sparse"
            | "-p"
            | "--preserve-permissions"
            | "--same-owner"
            | "--numeric-owner"
            | "--xattrs"
            | "--xattrs-include=user.*"
            | "--acls"
            | "--warning=no-timestamp"
            | "-v" => args.push(w.into()),
            "--file=-" => args.push(w.into()),
            "-f" | "--file" => {
                if words.get(i + 1).map(Vec::as_slice) != Some(b"-") {
                    return Err("tar may only read its archive from the connection (-f -)".into());
                }
                args.extend([OsString::from(w), "-".into()]);
                i += 1;
            }
            "-C" | "--directory" => {
                set_dir(&mut dir, words.get(i + 1))?;
                args.extend([OsString::from(w), ".".into()]);
                i += 1;
            }
            _ if w.starts_with("--directory=") => {
                set_dir(&mut dir, Some(&words[i]["--directory=".len()..].to_vec()))?;
                args.push("--directory=.".into());
            }
            _ if w.starts_with("-C") && w.len() > 2 => {
                set_dir(&mut dir, Some(&words[i][2..].to_vec()))?;
                args.push("-C.".into());
            }
            _ if w.starts_with("--record-size=") => {
                let v = &w["--record-size=".len()..];
                let digits = v.trim_end_matches(['K', 'k', 'M']);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || v.len() - digits.len() > 1 {
                    return Err(format!("tar option {w:?} is not allowed"));
                }
                args.push(w.into());
            }
            _ if w.starts_with('-')
                && !w.starts_with("--")
                && w.len() > 1
                && w[1..].bytes().all(|b| b"xfpv".contains(&b)) =>
            {
                extract |= w.contains('x');
                if w.contains('f') {
                    if !w.ends_with('f') || words.get(i + 1).map(Vec::as_slice) != Some(b"-") {
                        return Err("tar may only read its archive from the connection (-f -)".into());
                    }
                    args.extend([OsString::from(w), "-".into()]);
                    i += 1;
                } else {
                    args.push(w.into());
                }
            }
            _ => return Err(format!("tar argument {w:?} is not allowed")),
        }
        i += 1;
    }
    if !extract {
        return Err("tar is allowed only to extract (-x)".into());
    }
    let dir = dir.ok_or("tar must extract into a gsyncd secondary's directory (-C)")?;
    let pid = target_pid(&dir, ctx)?;
    Ok(Decision::Receive { program: "tar", args, pid })
}

/// `gsyncd receive rsync|tar ...`: the same receives, named through gsyncd
/// (the worker's `--rsync-path`), so they work with or without the gate.
fn receive(words: &[Vec<u8>], ctx: &dyn GateContext) -> Result<Decision, String> {
    match words.first().map(|w| basename(w)) {
        Some(b"rsync") => rsync(words, ctx),
        Some(b"tar") => tar(words, ctx),
        _ => Err("gsyncd receive runs only rsync or tar".into()),
    }
}

fn gsyncd(words: &[Vec<u8>], ctx: &dyn GateContext) -> Result<Decision, String> {
    if words.get(1).map(Vec::as_slice) == Some(b"receive") {
        return receive(&words[2..], ctx);
    }
    let rest: Vec<OsString> = words[1..].iter().map(|w| OsString::from_vec(w.clone())).collect();
    if rest == [OsString::from("--version")] {
        return Ok(Decision::Gsyncd(rest));
    }
    if rest.first().map(OsString::as_os_str) != Some(OsStr::new("secondary")) {
        return Err("only `gsyncd secondary ...` and `gsyncd --version` are allowed".into());
    }
    let argv = std::iter::once(OsString::from("gsyncd")).chain(rest.iter().cloned());
    let cli = Cli::try_parse_from(argv).map_err(|e| {
        let first = e.to_string().lines().next().unwrap_or_default().to_owned();
        format!("gsyncd secondary arguments do not parse: {first}")
    })?;
    let CliCommand::Secondary(a) = cli.command else {
        return Err("only `gsyncd secondary ...` and `gsyncd --version` are allowed".into());
    };
    let allowed = ctx.allowed_volumes();
    if !allowed.is_empty() {
        let url = SecondaryUrl::parse(&a.secondary)?;
        if !allowed.contains(&url.volume) {
            return Err(format!("volume {} is not one this key may serve", url.volume));
        }
    }
    Ok(Decision::Gsyncd(rest))
}

/// Decides what a split command line may run.
pub fn decide(words: &[Vec<u8>], ctx: &dyn GateContext) -> Result<Decision, String> {
    let Some(first) = words.first() else { return Err("empty command".into()) };
    match basename(first) {
        b"gsyncd" => gsyncd(words, ctx),
        b"rsync" => rsync(words, ctx),
        b"tar" => tar(words, ctx),
        other => Err(format!("{} is not allowed", other.escape_ascii())),
    }
}

/// The running system.
struct Proc {
    volumes: Vec<String>,
}

fn exe_of(pid: &str) -> Option<Vec<u8>> {
    let p = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let b = p.as_os_str().as_bytes();
    Some(b.strip_suffix(b" (deleted)").unwrap_or(b).to_vec())
}

fn real_uid(pid: &str) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()
}

/// `pid` is a live `gsyncd secondary` of our user running this binary.
fn is_secondary(pid: &str, me: &[u8], uid: u32) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    cmdline.split(|&b| b == 0).nth(1) == Some(b"secondary".as_slice())
        && real_uid(pid) == Some(uid)
        && exe_of(pid).as_deref() == Some(me)
}

impl GateContext for Proc {
    fn live_secondaries(&self) -> Vec<Live> {
        let Some(me) = exe_of("self") else { return Vec::new() };
        let uid = nix::unistd::getuid().as_raw();
        let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
        rd.flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let pid: u32 = name.parse().ok()?;
                if !is_secondary(&name, &me, uid) {
                    return None;
                }
                let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
                let mounted = on_fuse(&format!("/proc/{pid}/cwd"));
                Some(Live { pid, cwd: cwd.into_os_string().into_vec(), mounted })
            })
            .collect()
    }

    fn allowed_volumes(&self) -> &[String] {
        &self.volumes
    }
}

/// Joins the mount namespace of `pid` if it is not ours (a root server
/// mounts in a namespace of its own).
fn enter_namespace_of(pid: u32) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let ns = |p: &str| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    let theirs = format!("/proc/{pid}/ns/mnt");
    match (ns("/proc/self/ns/mnt"), ns(&theirs)) {
        (Ok(a), Ok(b)) if a == b => Ok(()),
        (_, Err(e)) => Err(format!("cannot see the mount namespace of process {pid}: {e}")),
        _ => {
            let f = std::fs::File::open(&theirs).map_err(|e| format!("cannot open {theirs}: {e}"))?;
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNS)
                .map_err(|e| format!("cannot join the mount namespace of process {pid}: {e}"))
        }
    }
}

/// Whether a path is on a FUSE file system (GlusterFS mounts are).
fn on_fuse(path: &str) -> bool {
    const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type().0 == FUSE_SUPER_MAGIC)
}

fn program(name: &str) -> PathBuf {
    ["/usr/bin", "/bin"].iter().map(|d| Path::new(d).join(name)).find(|p| p.exists()).unwrap_or_else(|| name.into())
}

#[derive(Debug, thiserror::Error)]
#[error("refused {command:?}: {reason}")]
pub struct Refused {
    pub command: String,
    pub reason: String,
}

/// Logs a refusal and makes it the error to exit with.
fn refuse(command: String, reason: String) -> anyhow::Error {
    warn!(command = %command, reason = %reason, "ssh-gate refused a command");
    anyhow::Error::new(Refused { command, reason })
}

/// `gsyncd receive rsync|tar ...` outside the gate: the same checks, then
/// the same entry into the server's mount.
pub fn run_receive(args: &[OsString]) -> anyhow::Result<()> {
    let words: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
    let ctx = Proc { volumes: Vec::new() };
    let decision = receive(&words, &ctx).map_err(|reason| refuse(shown(&words), reason))?;
    execute(decision, &words)
}

pub fn run(a: &SshGateArgs) -> anyhow::Result<()> {
    let Some(cmd) = std::env::var_os("SSH_ORIGINAL_COMMAND") else {
        return Err(refuse(String::new(), "interactive logins are not allowed; this key runs gsyncd only".into()));
    };
    let raw = cmd.as_bytes();
    let words = split(raw).map_err(|r| refuse(raw.escape_ascii().to_string(), r))?;
    let ctx = Proc { volumes: a.volume.clone() };
    let decision = decide(&words, &ctx).map_err(|r| refuse(shown(&words), r))?;
    execute(decision, &words)
}

/// Runs an admitted command; returns only if it cannot be started.
fn execute(decision: Decision, words: &[Vec<u8>]) -> anyhow::Result<()> {
    let err = match decision {
        Decision::Gsyncd(args) => {
            info!(command = %shown(words), "ssh-gate admits");
            let exe = std::env::current_exe().map_err(|e| anyhow::anyhow!("cannot find this program: {e}"))?;
            Command::new(exe).args(args).exec()
        }
        Decision::Receive { program: p, args, pid } => {
            enter_namespace_of(pid).map_err(|e| refuse(shown(words), e))?;
            // The magic link is the server's working directory itself; in its
            // namespace getcwd() can name it, which rsync needs.
            let cwd = format!("/proc/{pid}/cwd");
            std::env::set_current_dir(&cwd).map_err(|e| refuse(shown(words), format!("cannot enter {cwd}: {e}")))?;
            if !on_fuse(".") {
                return Err(refuse(shown(words), format!("{cwd} is not a GlusterFS mount")));
            }
            // The pid could have been reused between the check and the chdir.
            let me = exe_of("self").unwrap_or_default();
            if !is_secondary(&pid.to_string(), &me, nix::unistd::getuid().as_raw()) {
                return Err(refuse(shown(words), format!("process {pid} went away")));
            }
            info!(command = %shown(words), pid, "admitted a receive into a secondary's mount");
            Command::new(program(p)).args(args).exec()
        }
    };
    Err(anyhow::anyhow!("cannot run the admitted command: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        live: Vec<Live>,
        volumes: Vec<String>,
    }

    impl GateContext for Fake {
        fn live_secondaries(&self) -> Vec<Live> {
            self.live.clone()
        }
        fn allowed_volumes(&self) -> &[String] {
            &self.volumes
        }
    }

    fn ctx() -> Fake {
        Fake {
            live: vec![
                Live { pid: 4242, cwd: b"/run/gsyncd/secondary/mnt/sv.4242".to_vec(), mounted: true },
                Live { pid: 77, cwd: b"/".to_vec(), mounted: false },
            ],
            volumes: vec!["sv".into()],
        }
    }

    fn words(s: &str) -> Vec<Vec<u8>> {
        split(s.as_bytes()).unwrap()
    }

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn splitting_follows_the_shell() {
        assert_eq!(words("a  b\tc"), [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(words("'a b' \"c \\\" d\" e\\ f"), [b"a b".to_vec(), b"c \" d".to_vec(), b"e f".to_vec()]);
        assert_eq!(words("''"), [Vec::<u8>::new()]);
        assert_eq!(words("x'y'\"z\""), [b"xyz".to_vec()]);
        assert_eq!(split(b"a \xff\xfe").unwrap()[1], b"\xff\xfe");
        assert_eq!(words("a \"b\\n\""), [b"a".to_vec(), b"b\\n".to_vec()]);
        for bad in [
            "a; b",
            "a && b",
            "a | b",
            "a > f",
            "$(id)",
            "`id`",
            "a 'b",
            "a \"b",
            "a \\",
            "\"$HOME\"",
            "~/x",
            "#c",
            "*",
        ] {
            assert!(split(bad.as_bytes()).is_err(), "{bad}");
        }
        assert_eq!(words("'a;b' \"|\""), [b"a;b".to_vec(), b"|".to_vec()]);
    }

    #[test]
    fn the_secondary_and_version_are_admitted() {
        let c = ctx();
        let d = decide(&words("/usr/libexec/gsyncd secondary pv h::sv --primary-node n --secondary-timeout 120"), &c);
        assert_eq!(
            d,
            Ok(Decision::Gsyncd(os(&[
                "secondary",
                "pv",
                "h::sv",
                "--primary-node",
                "n",
                "--secondary-timeout",
                "120"
            ])))
        );
        assert_eq!(decide(&words("gsyncd --version"), &c), Ok(Decision::Gsyncd(os(&["--version"]))));
        for bad in [
            "gsyncd secondary pv h::other",
            "gsyncd secondary pv",
            "gsyncd secondary pv h::sv --bogus",
            "gsyncd config get x",
            "gsyncd supervise x",
            "gsyncd",
            "gsyncd.py secondary pv h::sv",
        ] {
            assert!(decide(&words(bad), &c).is_err(), "{bad}");
        }
        let any = Fake { volumes: vec![], ..ctx() };
        assert!(decide(&words("gsyncd secondary pv h::other"), &any).is_ok());
    }

    #[test]
    fn rsync_receives_into_a_secondary_only() {
        let c = ctx();
        let want = |args: &[&str]| Ok(Decision::Receive { program: "rsync", args: os(args), pid: 4242 });
        assert_eq!(
            decide(&words("rsync --server -logDtpRe.LsfxCIvu --inplace --existing --super . /proc/4242/cwd"), &c),
            want(&["--server", "-logDtpRe.LsfxCIvu", "--inplace", "--existing", "--super", ".", "."])
        );
        assert_eq!(
            decide(&words("rsync --server -aR --files-from=- --from0 . '/run/gsyncd/secondary/mnt/sv.4242/'"), &c),
            want(&["--server", "-aR", "--files-from=-", "--from0", ".", "."])
        );
        for bad in [
            "rsync --server --sender -logDtpr . /proc/4242/cwd",
            "rsync --server -logDtpr . /etc",
            "rsync --server -logDtpr . /proc/1/cwd",
            "rsync --server -logDtpr . /proc/77/cwd",
            "rsync --server -logDtpr . /",
            "rsync --server --log-file=/etc/cron.d/x . /proc/4242/cwd",
            "rsync --server --temp-dir=/tmp . /proc/4242/cwd",
            "rsync --server -T /tmp . /proc/4242/cwd",
            "rsync --server -logT . /proc/4242/cwd",
            "rsync --server --link-dest=/etc . /proc/4242/cwd",
            "rsync --server --files-from=/etc/shadow . /proc/4242/cwd",
            "rsync --server . /proc/4242/cwd /proc/4242/cwd",
            "rsync --server -a /proc/4242/cwd",
            "rsync -a . /proc/4242/cwd",
            "rsync --server -a extra . /proc/4242/cwd",
            "rsync --daemon",
        ] {
            assert!(decide(&words(bad), &c).is_err(), "{bad}");
        }
        let odd = Fake { live: vec![Live { pid: 5, cwd: b"/m/\xff".to_vec(), mounted: true }], volumes: vec![] };
        assert!(decide(&split(b"rsync --server -a . /m/\xff").unwrap(), &odd).is_ok());
    }

    #[test]
    fn tar_extracts_into_a_secondary_only() {
        let c = ctx();
        let want = |args: &[&str]| Ok(Decision::Receive { program: "tar", args: os(args), pid: 4242 });
        assert_eq!(
            decide(&words("tar --overwrite -xf - -C /proc/4242/cwd"), &c),
            want(&["--overwrite", "-xf", "-", "-C", "."])
        );
        // What the tar engine sends (see worker::data::tar_argv).
        assert_eq!(
            decide(
                &split(b"tar --overwrite '--xattrs' '--xattrs-include=user.*' '--acls' -xf - -C /proc/4242/cwd")
                    .unwrap(),
                &c
            ),
            want(&["--overwrite", "--xattrs", "--xattrs-include=user.*", "--acls", "-xf", "-", "-C", "."])
        );
        assert!(decide(&split(b"tar '--xattrs-include=*' -xf - -C /proc/4242/cwd").unwrap(), &c).is_err());
        assert_eq!(
            decide(&words("tar --record-size=128K -x -f - --directory=/proc/4242/cwd --sparse"), &c),
            want(&["--record-size=128K", "-x", "-f", "-", "--directory=.", "--sparse"])
        );
        for bad in [
            "tar -xf - -C /proc/1/cwd",
            "tar -cf - -C /proc/4242/cwd .",
            "tar --to-command=sh -xf - -C /proc/4242/cwd",
            "tar -xf /etc/x.tar -C /proc/4242/cwd",
            "tar -xf - -C /proc/4242/cwd -C /etc",
            "tar -xf -",
            "tar -xf - -C /proc/4242/cwd --use-compress-program=sh",
            "tar -xf - -C /proc/4242/cwd etc/passwd",
            "tar -I sh -xf - -C /proc/4242/cwd",
            "tar --checkpoint-action=exec=sh -xf - -C /proc/4242/cwd",
            "tar --record-size=1x -xf - -C /proc/4242/cwd",
        ] {
            assert!(decide(&words(bad), &c).is_err(), "{bad}");
        }
    }

    #[test]
    fn receives_named_through_gsyncd() {
        let c = ctx();
        assert_eq!(
            decide(&words("/usr/bin/gsyncd receive rsync --server -a . /proc/4242/cwd"), &c),
            Ok(Decision::Receive { program: "rsync", args: os(&["--server", "-a", ".", "."]), pid: 4242 })
        );
        assert!(decide(&words("gsyncd receive tar -xf - -C /proc/4242/cwd"), &c).is_ok());
        for bad in
            ["gsyncd receive sh -c id", "gsyncd receive rsync --server --sender . /proc/4242/cwd", "gsyncd receive"]
        {
            assert!(decide(&words(bad), &c).is_err(), "{bad}");
        }
    }

    #[test]
    fn everything_else_is_refused() {
        let c = ctx();
        for bad in ["sh -c id", "scp -t /tmp", "bash", "python3 -c 1", "/bin/rsync2 --server . /proc/4242/cwd", ""] {
            assert!(decide(&words(bad), &c).is_err(), "{bad}");
        }
    }
}
