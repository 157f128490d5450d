//! The data engines: one rsync (or one `tar | ssh tar`, with
//! `sync-method = tarssh`) per batch over the session's ssh control socket,
//! reading `.gfid/<gfid>` paths from the primary mount (the worker's
//! working directory) and writing into the secondary server's mount
//! through `gsyncd receive rsync|tar` (works with rsync >= 3.4, with and
//! without the ssh gate). Afterwards, what was sent is checked over RPC:
//! a file whose size differs on the secondary is sent again, so no silent
//! transfer failure can let a batch pass.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

use tracing::{debug, warn};

use super::settings::Settings;
use crate::gluster::uuid::Gfid;
use crate::proto::rpc::{Client, ClientError};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot run {0}: {1}")]
    Spawn(String, #[source] std::io::Error),
    #[error("the data transfer failed with exit code {code}: {stderr}")]
    Fatal { code: i32, stderr: String },
    #[error(transparent)]
    Rpc(#[from] ClientError),
    #[error(transparent)]
    Primary(#[from] super::primary::PrimaryError),
    #[error("the secondary answered {got} lstat results for {asked} files")]
    ShortReply { asked: usize, got: usize },
}

fn gfid_path(g: &Gfid) -> String {
    format!(".gfid/{g}")
}

/// The rsync argv for a batch.
pub fn rsync_argv(s: &Settings, pid: u32) -> Vec<String> {
    let mut v: Vec<String> = [&s.rsync_command, "-aR0", "--inplace", "--files-from=-", "--super", "--stats"]
        .iter()
        .map(|x| (*x).to_owned())
        .collect();
    v.extend(["--numeric-ids".into(), "--no-implied-dirs".into()]);
    if s.rsync_existing {
        v.push("--existing".into());
    }
    if s.sync_xattrs {
        v.push("--xattrs".into());
    }
    if s.sync_acls {
        v.push("--acls".into());
    }
    v.extend(s.rsync_options.iter().cloned());
    if s.rsync_ignore_missing {
        v.push("--ignore-missing-args".into());
    }
    v.push(format!("--rsync-path={} receive rsync", s.remote_gsyncd()));
    let mut ssh = s.ssh_argv();
    ssh.extend(s.rsync_ssh_options.iter().cloned());
    v.extend(["-e".into(), ssh.join(" "), ".".into(), format!("{}:/proc/{pid}/cwd", s.remote())]);
    v
}

/// Runs rsync once over `gfids`. `Ok(false)`: a partial transfer (codes 23
/// and 24: some files vanished or could not be read), to be checked.
fn run_once(s: &Settings, pid: u32, gfids: &[Gfid]) -> Result<bool, DataError> {
    let argv = rsync_argv(s, pid);
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| DataError::Spawn(argv[0].clone(), e))?;
    let mut list = Vec::with_capacity(gfids.len() * 44);
    for g in gfids {
        list.extend_from_slice(gfid_path(g).as_bytes());
        list.push(0);
    }
    // Feed and drain on threads: rsync may block on either pipe.
    let stdin = child.stdin.take();
    let feeder = std::thread::spawn(move || {
        if let Some(mut i) = stdin {
            let _ = i.write_all(&list);
        }
    });
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let _ = feeder.join();
    let st = child.wait().map_err(|e| DataError::Spawn(argv[0].clone(), e))?;
    debug!(files = gfids.len(), engine = "rsync", "data sent");
    match st.code() {
        Some(0) => Ok(true),
        Some(23 | 24) => {
            debug!(stderr = %err.trim(), "rsync: partial transfer");
            Ok(false)
        }
        code => Err(DataError::Fatal { code: code.unwrap_or(-1), stderr: err.trim().to_owned() }),
    }
}

/// The two sides of the tar engine: `tar -c` here, and ssh running the
/// receiving tar in the server's mount there.
pub fn tar_argv(s: &Settings, pid: u32) -> (Vec<String>, Vec<String>) {
    // No --xattrs/--acls: with them GNU tar creates each file anew
    // (O_EXCL), which a `.gfid/<gfid>` name refuses ("File exists"); the
    // reference's tar engine does not carry them either.
    let tar: Vec<String> =
        [&s.tar_command, "--sparse", "-cf", "-", "--files-from", "-"].iter().map(|x| (*x).to_owned()).collect();
    let mut ssh = s.ssh_argv_with(&s.ssh_options_tar);
    ssh.push(s.remote());
    ssh.push(format!("{} receive tar --overwrite -xf - -C /proc/{pid}/cwd", s.remote_gsyncd()));
    (tar, ssh)
}

/// Sends `gfids` once, split over up to `sync-jobs` transfers that run at
/// the same time (sharing the ssh control connection).
fn send_parallel(s: &Settings, pid: u32, gfids: &[Gfid]) -> Result<(), DataError> {
    let send = |chunk: &[Gfid]| if s.tarssh { tar_once(s, pid, chunk) } else { run_once(s, pid, chunk) };
    // Fewer than 16 files a job is not worth another process.
    let jobs = (s.sync_jobs as usize).min(gfids.len() / 16).max(1);
    if jobs == 1 {
        return send(gfids).map(|_| ());
    }
    let size = gfids.len().div_ceil(jobs);
    std::thread::scope(|sc| {
        let handles: Vec<_> = gfids.chunks(size).map(|c| sc.spawn(move || send(c))).collect();
        let mut first = Ok(());
        for h in handles {
            let r = h.join().unwrap_or_else(|_| {
                Err(DataError::Spawn("a data transfer thread".into(), std::io::Error::other("panicked")))
            });
            if first.is_ok()
                && let Err(e) = r
            {
                first = Err(e);
            }
        }
        first
    })
}

/// Runs `tar -c | ssh tar -x` once over `gfids`. `Ok(false)`: some files
/// could not be read or vanished (to be checked).
fn tar_once(s: &Settings, pid: u32, gfids: &[Gfid]) -> Result<bool, DataError> {
    let (tar, ssh) = tar_argv(s, pid);
    let mut src = Command::new(&tar[0])
        .args(&tar[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| DataError::Spawn(tar[0].clone(), e))?;
    let Some(out) = src.stdout.take() else {
        return Err(DataError::Spawn(tar[0].clone(), std::io::Error::other("no stdout")));
    };
    let mut dst = match Command::new(&ssh[0])
        .args(&ssh[1..])
        .stdin(Stdio::from(out))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            let _ = src.kill();
            let _ = src.wait();
            return Err(DataError::Spawn(ssh[0].clone(), e));
        }
    };
    let mut list = Vec::with_capacity(gfids.len() * 44);
    for g in gfids {
        list.extend_from_slice(gfid_path(g).as_bytes());
        list.push(b'\n');
    }
    let stdin = src.stdin.take();
    let feeder = std::thread::spawn(move || {
        if let Some(mut i) = stdin {
            let _ = i.write_all(&list);
        }
    });
    let drain = |p: Option<std::process::ChildStderr>| {
        std::thread::spawn(move || {
            let mut e = String::new();
            if let Some(mut p) = p {
                let _ = p.read_to_string(&mut e);
            }
            e
        })
    };
    let (e1, e2) = (drain(src.stderr.take()), drain(dst.stderr.take()));
    let _ = feeder.join();
    let st_src = src.wait().map_err(|e| DataError::Spawn(tar[0].clone(), e))?;
    let st_dst = dst.wait().map_err(|e| DataError::Spawn(ssh[0].clone(), e))?;
    let err = format!("{}{}", e1.join().unwrap_or_default(), e2.join().unwrap_or_default());
    debug!(files = gfids.len(), engine = "tar", "data sent");
    match (st_src.code(), st_dst.code()) {
        (Some(0), Some(0)) => Ok(true),
        // tar: 1 some files differ or changed, 2 some could not be read; the
        // remote tar's 2 comes back through ssh (the reference's resilient code).
        (Some(0..=2), Some(0 | 2)) => {
            debug!(stderr = %err.trim(), "tar: partial transfer");
            Ok(false)
        }
        (_, code) => Err(DataError::Fatal { code: code.unwrap_or(-1), stderr: err.trim().to_owned() }),
    }
}

/// Sends the data of `gfids` and checks that it arrived; retries what did
/// not, up to `max-rsync-retries` attempts. Returns the files that still
/// differ on the secondary after the last attempt (for the failure ledger).
pub fn sync(s: &Settings, client: &Client, pid: u32, gfids: &[Gfid]) -> Result<Vec<Gfid>, DataError> {
    let mut todo: Vec<Gfid> = gfids.to_vec();
    let mut tries = 0;
    while !todo.is_empty() {
        tries += 1;
        send_parallel(s, pid, &todo)?;
        // Compare with the primary as it is now: a file that vanished or is
        // no longer a regular file is not ours to send; one whose size or
        // modification second differs is sent again (both engines set the
        // mtime after the data, so an interrupted or partial transfer, a
        // same-size rewrite included, shows).
        let mut local: Vec<Option<(u64, i64)>> = Vec::with_capacity(todo.len());
        for g in &todo {
            let m = super::primary::lstat(gfid_path(g).as_bytes())?;
            local.push(m.filter(std::fs::Metadata::is_file).map(|m| (m.size(), m.mtime())));
        }
        let remote = client.lstat(todo.iter().map(|g| gfid_path(g).into_bytes()).collect())?;
        if remote.len() != todo.len() {
            return Err(DataError::ShortReply { asked: todo.len(), got: remote.len() });
        }
        let differ: Vec<Gfid> = todo
            .iter()
            .zip(local.iter().zip(&remote))
            .filter_map(|(g, (l, r))| match (l, r) {
                (None, _) => None,
                (Some((size, mtime)), Ok(st)) if st.size == *size && st.mtime.sec == *mtime => None,
                _ => Some(*g),
            })
            .collect();
        if differ.is_empty() || tries >= s.max_rsync_retries {
            return Ok(differ);
        }
        warn!(files = differ.len(), attempt = tries, "data did not arrive on the secondary; sending again");
        todo = differ;
    }
    Ok(Vec::new())
}
