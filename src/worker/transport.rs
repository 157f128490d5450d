//! The worker's connection to its secondary: one ssh process, the master of
//! a control socket under the session's run directory (rsync's ssh rides on
//! it), running `gsyncd secondary` there; the RPC client on its stdin and
//! stdout; its stderr (the secondary's log) relayed into ours; and the
//! keep-alive.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use super::settings::Settings;
use crate::gluster::xattr::{VolumeMark, keys};
use crate::proto::rpc::{Client, ClientError};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot start {cmd}: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach the secondary ({remote}): {source}{hint}")]
    Connect {
        remote: String,
        #[source]
        source: ClientError,
        hint: String,
    },
}

/// A live connection.
#[derive(Debug)]
pub struct Secondary {
    pub client: Arc<Client>,
    /// The server's pid: its working directory is the secondary mount.
    pub pid: u32,
    child: Child,
}

impl Drop for Secondary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The argv of the ssh that starts the secondary server.
pub fn command(s: &Settings, primary_node: &str, dist_count: u32) -> Vec<String> {
    let mut v = s.ssh_argv();
    v.push(s.remote());
    v.extend([
        s.remote_gsyncd().to_owned(),
        "secondary".into(),
        s.primary.clone(),
        format!("{}::{}", s.remote(), s.secondary.volume),
        "--primary-node".into(),
        primary_node.to_owned(),
        "--primary-brick".into(),
        s.brick.display().to_string(),
        "--secondary-timeout".into(),
        s.secondary_timeout.to_string(),
        "--secondary-log-level".into(),
        s.secondary_log_level.clone(),
        "--secondary-gluster-log-level".into(),
        s.secondary_gluster_log_level.clone(),
        "--secondary-gluster-command-dir".into(),
        s.secondary_gluster_command_dir.clone(),
        "--primary-dist-count".into(),
        dist_count.to_string(),
        "--sync-jobs".into(),
        s.sync_jobs.to_string(),
        "--connection-timeout".into(),
        s.connection_timeout.as_secs().to_string(),
    ]);
    if s.secondary_access_mount {
        v.push("--secondary-access-mount".into());
    }
    v
}

pub fn connect(s: &Settings, primary_node: &str, dist_count: u32) -> Result<Secondary, TransportError> {
    if let Some(dir) = s.control_path().parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let argv = command(s, primary_node, dist_count);
    let shown = argv.join(" ");
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| TransportError::Spawn { cmd: shown.clone(), source })?;
    info!(command = %shown, "connecting to the secondary");
    let tail = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    if let Some(err) = child.stderr.take() {
        let tail = Arc::clone(&tail);
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                info!(target: "secondary", "secondary: {line}");
                // Errors name the failure; the secondary's routine log does not.
                let mut w = line.split_whitespace();
                if w.next().is_some_and(|t| t.ends_with('Z') && t.contains('T'))
                    && w.next().is_some_and(|l| ["INFO", "DEBUG", "TRACE"].contains(&l))
                {
                    continue;
                }
                let mut t = tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                t.push(line);
                if t.len() > 5 {
                    t.remove(0);
                }
            }
        });
    }
    let (Some(out), Some(inp)) = (child.stdout.take(), child.stdin.take()) else {
        return Err(TransportError::Spawn { cmd: shown, source: std::io::Error::other("no pipes") });
    };
    let fail = |source: ClientError, child: &mut Child| {
        // Give ssh a moment to say why (its last stderr lines).
        let _ = child.kill();
        let status = child.wait().ok();
        std::thread::sleep(Duration::from_millis(200));
        let lines = tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner).join(" | ");
        let hint = match status.and_then(|st| st.code()) {
            Some(255) => format!("; ssh failed: {lines}"),
            Some(127) => "; the secondary has no such gsyncd (option remote-gsyncd)".to_owned(),
            _ if lines.is_empty() => String::new(),
            _ => format!("; {lines}"),
        };
        TransportError::Connect { remote: s.remote(), source, hint }
    };
    let client = match Client::connect(out, inp, "secondary") {
        Ok(c) => c,
        Err(e) => return Err(fail(e, &mut child)),
    };
    let pid = match client.pid() {
        Ok(p) => p,
        Err(e) => return Err(fail(e, &mut child)),
    };
    info!(pid, "secondary connected");
    Ok(Secondary { client: Arc::new(client), pid, child })
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Sends a keep-alive every `secondary-timeout / 2` seconds (every 10 s at
/// most while no volume mark can be read), carrying the primary's native
/// volume mark with an expiry, read from the primary mount (our cwd).
pub fn keep_alive(client: &Arc<Client>, timeout: u64) {
    if timeout == 0 {
        return;
    }
    let client = Arc::clone(client);
    let every = Duration::from_secs((timeout / 2).max(1));
    let spawned = std::thread::Builder::new().name("keep-alive".into()).spawn(move || {
        loop {
            let mark = xattr::get(".", keys::VOLUME_MARK).ok().flatten().and_then(|v| VolumeMark::decode(&v).ok());
            let gap = if mark.is_some() { every } else { every.min(Duration::from_secs(10)) };
            let mark =
                mark.map(|m| VolumeMark { timeout: Some(u32::try_from(now() + timeout).unwrap_or(u32::MAX)), ..m });
            match client.keep_alive_within(mark, Some(Duration::from_secs(timeout))) {
                Ok(_) => {}
                Err(ClientError::Closed(_)) => return,
                Err(ClientError::Timeout { secs, .. }) => {
                    // The connection is dead or the secondary hangs, and the
                    // worker may be blocked in a call that never returns:
                    // crash-only, the supervisor restarts it (the mount
                    // guard removes its mount).
                    tracing::error!(secs, "the secondary did not answer a keep-alive in secondary-timeout; exiting");
                    std::process::exit(i32::from(crate::exit::Exit::Failure.code()));
                }
                Err(e) => warn!("keep-alive failed: {e}"),
            }
            std::thread::sleep(gap);
        }
    });
    if let Err(e) = spawned {
        warn!("cannot start the keep-alive thread: {e}");
    }
}
