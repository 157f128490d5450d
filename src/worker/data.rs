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
    // User xattrs and ACLs as rsync's -X/-A would carry them (the
    // reference's tar engine drops both); the gluster-internal namespaces
    // are never copied.
    let mut meta = Vec::new();
    if s.sync_xattrs {
        meta.extend(["--xattrs", "--xattrs-include=user.*"]);
    }
    if s.sync_acls {
        meta.push("--acls");
    }
    let mut tar: Vec<String> = vec![s.tar_command.clone(), "--sparse".into()];
    tar.extend(meta.iter().map(|x| (*x).to_owned()));
    tar.extend(["-cf", "-", "--files-from", "-"].iter().map(|x| (*x).to_owned()));
    let mut ssh = s.ssh_argv_with(&s.ssh_options_tar);
    ssh.push(s.remote());
    let extra: String = meta.iter().map(|m| format!(" '{m}'")).collect();
    ssh.push(format!("{} receive tar --overwrite{extra} -xf - -C /proc/{pid}/cwd", s.remote_gsyncd()));
    (tar, ssh)
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
    let mut dst = Command::new(&ssh[0])
        .args(&ssh[1..])
        .stdin(Stdio::from(out))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| DataError::Spawn(ssh[0].clone(), e))?;
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
        if s.tarssh {
            tar_once(s, pid, &todo)?;
        } else {
            run_once(s, pid, &todo)?;
        }
        // Compare with the primary as it is now: a file that vanished or is
        // no longer a regular file is not ours to send; a size that differs
        // is sent again.
        let local: Vec<Option<u64>> = todo
            .iter()
            .map(|g| std::fs::symlink_metadata(gfid_path(g)).ok().filter(|m| m.is_file()).map(|m| m.size()))
            .collect();
        let remote = client.lstat(todo.iter().map(|g| gfid_path(g).into_bytes()).collect())?;
        let differ: Vec<Gfid> = todo
            .iter()
            .zip(local.iter().zip(&remote))
            .filter_map(|(g, (l, r))| match (l, r) {
                (None, _) => None,
                (Some(size), Ok(st)) if st.size == *size => None,
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
