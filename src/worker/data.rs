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

use super::primary::PrimaryError;
use super::settings::Settings;
use crate::fsutil::{fd_path, open_regular};
use crate::gluster::uuid::Gfid;
use crate::proto::rpc::{Client, ClientError, FileData};

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

/// What the inline engine did with a batch's files.
#[derive(Debug, Default)]
pub struct Inlined {
    /// Written on the secondary, with the sizes sent.
    pub done: Vec<(Gfid, u64)>,
    /// Gone from the primary, or no regular file there: nothing to send.
    pub gone: Vec<Gfid>,
    /// For the sync method: larger than `inline-max-size`, unreadable, or
    /// not written on the secondary.
    pub rest: Vec<Gfid>,
}

/// One call of the inline engine carries at most this much data, or this
/// many files: bounded memory on both sides, and calls small enough that
/// reading the next overlaps writing the last.
const INLINE_CALL_BYTES: usize = 512 << 10;
const INLINE_CALL_FILES: usize = 256;

enum Small {
    Gone,
    /// For the sync method.
    Rest,
    Read(FileData),
}

/// Reads a regular file of at most `max` bytes whole, with the stat and
/// xattrs to replay. The stat is taken before the read: a write during it
/// leaves newer data with an older mtime, and its own changelog record
/// sends the file again.
fn read_small(s: &Settings, g: &Gfid) -> Result<Small, PrimaryError> {
    let path = gfid_path(g);
    let (f, handle, m) = match open_regular(std::path::Path::new(&path), false) {
        Ok(Some(x)) => x,
        Ok(None) => return Ok(Small::Gone),
        Err(e) if super::primary::gone(&e) => return Ok(Small::Gone),
        Err(e) => return Err(PrimaryError { path, source: e }),
    };
    if m.size() > s.inline_max {
        return Ok(Small::Rest);
    }
    let mut data = Vec::with_capacity(usize::try_from(m.size()).unwrap_or(0));
    // A read error is the sync method's to meet and report (and, in the
    // end, the failure ledger's); a file that grew past the limit is its too.
    match f.take(s.inline_max + 1).read_to_end(&mut data) {
        Ok(n) if n as u64 <= s.inline_max => {}
        _ => return Ok(Small::Rest),
    }
    let xattrs = if s.sync_xattrs || s.sync_acls {
        let p = fd_path(&handle);
        match super::primary_xattrs(
            std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()),
            &m,
            s.sync_xattrs,
            s.sync_acls,
        ) {
            Ok(Some(x)) => Some(x),
            Ok(None) => return Ok(Small::Gone),
            Err(_) => return Ok(Small::Rest),
        }
    } else {
        None
    };
    Ok(Small::Read(FileData { gfid: *g, data, stat: super::stat_of(&m), xattrs }))
}

/// The inline engine over one share of a batch: reads files, and writes
/// them on the secondary a call at a time.
fn inline_share(s: &Settings, client: &Client, gfids: &[Gfid]) -> Result<Inlined, DataError> {
    let mut out = Inlined::default();
    let mut call: Vec<FileData> = Vec::new();
    let mut bytes = 0;
    let flush = |call: &mut Vec<FileData>, out: &mut Inlined| -> Result<(), DataError> {
        if call.is_empty() {
            return Ok(());
        }
        let files = std::mem::take(call);
        let sizes: Vec<(Gfid, u64)> = files.iter().map(|f| (f.gfid, f.data.len() as u64)).collect();
        for ((g, size), r) in sizes.into_iter().zip(client.write_files(files)?) {
            match r {
                Ok(()) => out.done.push((g, size)),
                Err(errno) => {
                    debug!(gfid = %g, errno, "not written inline; left to the sync method");
                    out.rest.push(g);
                }
            }
        }
        Ok(())
    };
    for g in gfids {
        match read_small(s, g)? {
            Small::Gone => out.gone.push(*g),
            Small::Rest => out.rest.push(*g),
            Small::Read(f) => {
                bytes += f.data.len();
                call.push(f);
                if bytes >= INLINE_CALL_BYTES || call.len() >= INLINE_CALL_FILES {
                    flush(&mut call, &mut out)?;
                    bytes = 0;
                }
            }
        }
    }
    flush(&mut call, &mut out)?;
    Ok(out)
}

/// The inline engine: regular files up to `inline-max-size` go inside the
/// RPC stream, read whole here and written in place there (no rsync or
/// tar process, and the fewest file operations on both volumes), in up to
/// `sync-jobs` shares at once. What it does not send is returned for the
/// sync method.
pub fn send_inline(s: &Settings, client: &Client, gfids: &[Gfid]) -> Result<Inlined, DataError> {
    let r = inline_parallel(s, client, gfids)?;
    if !r.done.is_empty() {
        let bytes: u64 = r.done.iter().map(|(_, n)| n).sum();
        debug!(files = r.done.len(), bytes, rest = r.rest.len(), engine = "inline", "data sent");
    }
    Ok(r)
}

fn inline_parallel(s: &Settings, client: &Client, gfids: &[Gfid]) -> Result<Inlined, DataError> {
    let mut all = Inlined::default();
    for r in in_shares(s, gfids, 16, |share| inline_share(s, client, share))? {
        all.done.extend(r.done);
        all.gone.extend(r.gone);
        all.rest.extend(r.rest);
    }
    Ok(all)
}

/// Runs `f` over up to `sync-jobs` shares of `gfids` at once, with at
/// least `min_share` files a share; the results in share order, or the
/// first error.
fn in_shares<T: Send>(
    s: &Settings,
    gfids: &[Gfid],
    min_share: usize,
    f: impl Fn(&[Gfid]) -> Result<T, DataError> + Sync,
) -> Result<Vec<T>, DataError> {
    let jobs = (s.sync_jobs as usize).min(gfids.len() / min_share.max(1)).max(1);
    if jobs == 1 {
        return f(gfids).map(|r| vec![r]);
    }
    let size = gfids.len().div_ceil(jobs);
    let f = &f;
    std::thread::scope(|sc| {
        let handles: Vec<_> = gfids.chunks(size).map(|c| sc.spawn(move || f(c))).collect();
        let mut out = Vec::with_capacity(handles.len());
        let mut first = None;
        for h in handles {
            match h.join() {
                Ok(Ok(r)) => out.push(r),
                Ok(Err(e)) => first = first.or(Some(e)),
                Err(_) => {
                    first = first
                        .or_else(|| Some(DataError::Spawn("a data thread".into(), std::io::Error::other("panicked"))))
                }
            }
        }
        first.map_or(Ok(out), Err)
    })
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
    // Fewer than 16 small files a job are not worth another process; with
    // the inline engine on, what is left for rsync or tar is large (or
    // failed inline), and each file is worth a job of its own.
    let min_share = if s.inline_max > 0 { 1 } else { 16 };
    in_shares(s, gfids, min_share, |share| if s.tarssh { tar_once(s, pid, share) } else { run_once(s, pid, share) })
        .map(|_| ())
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
