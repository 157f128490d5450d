//! Asking glusterd: this node's UUID and a volume's topology through the
//! `gluster` command line.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::uuid::Uuid;
use super::volinfo::{self, BrickStatus, VolInfoError, Volume};

#[derive(Debug, thiserror::Error)]
pub enum GlusterCliError {
    #[error("cannot read this node's glusterd UUID from {}: is glusterd installed and has it run on this node (`systemctl status glusterd`), and is glusterd-workdir right?", .path.display())]
    NodeUuid {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no UUID= line", .0.display())]
    NoUuidLine(PathBuf),
    #[error("cannot run {}", .cmd)]
    Run {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{cmd} failed: {output}")]
    Failed { cmd: String, output: String },
    #[error(transparent)]
    VolInfo(#[from] VolInfoError),
}

/// This node's glusterd UUID (`UUID=` in `<glusterd-workdir>/glusterd.info`).
pub fn local_node_uuid(glusterd_workdir: &Path) -> Result<Uuid, GlusterCliError> {
    let path = glusterd_workdir.join("glusterd.info");
    let text =
        std::fs::read_to_string(&path).map_err(|source| GlusterCliError::NodeUuid { path: path.clone(), source })?;
    text.lines()
        .find_map(|l| l.strip_prefix("UUID="))
        .and_then(|u| Uuid::parse_str(u.trim()).ok())
        .ok_or(GlusterCliError::NoUuidLine(path))
}

/// Tells when `gluster volume info` may answer differently than it last
/// did. glusterd rewrites `<glusterd-workdir>/vols/<volume>/info` on every
/// change of the volume (bricks, options, start and stop), on every node,
/// and a stat of it is cheap, where each `gluster` call costs about a
/// tenth of a CPU second (the CLI runs the reference's `gsyncd --version`
/// at every start) and glusterd's attention. A file that cannot be read,
/// and every `every` regardless, say "ask".
#[derive(Debug)]
pub struct InfoWatch {
    file: PathBuf,
    every: std::time::Duration,
    seen: Option<FileSig>,
    pending: Option<FileSig>,
    asked: Option<std::time::Instant>,
}

type FileSig = (i64, i64, u64, u64);

impl InfoWatch {
    pub fn new(glusterd_workdir: &Path, volume: &str, every: std::time::Duration) -> InfoWatch {
        InfoWatch {
            file: glusterd_workdir.join("vols").join(volume).join("info"),
            every,
            seen: None,
            pending: None,
            asked: None,
        }
    }

    fn sig(&self) -> Option<FileSig> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&self.file).ok().map(|m| (m.mtime(), m.mtime_nsec(), m.size(), m.ino()))
    }

    /// Whether to ask glusterd now. The file's state is taken before the
    /// question, so a change while it is asked is seen next time.
    pub fn due(&mut self) -> bool {
        let sig = self.sig();
        let due = sig.is_none() || sig != self.seen || self.asked.is_none_or(|t| t.elapsed() >= self.every);
        self.pending = sig;
        due
    }

    /// glusterd answered the question [`InfoWatch::due`] allowed.
    pub fn answered(&mut self) {
        self.seen = self.pending;
        self.asked = Some(std::time::Instant::now());
    }
}

/// Runs `<bin> <cli options> --mode=script --xml volume <what> <volume>`
/// and returns its XML (a failure that still printed XML is left to the
/// parser, which reports glusterd's own error).
fn volume_xml(bin: &Path, cli_options: &[&str], what: &str, volume: &str) -> Result<String, GlusterCliError> {
    let mut cmd = Command::new(bin);
    cmd.args(cli_options).args(["--mode=script", "--xml", "volume", what, volume]);
    let shown = format!("{} --xml volume {what} {volume}", bin.display());
    let out = cmd.output().map_err(|source| GlusterCliError::Run { cmd: shown.clone(), source })?;
    let xml = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() && !xml.contains("<cliOutput>") {
        return Err(GlusterCliError::Failed {
            cmd: shown,
            output: format!("{}{}", xml.trim(), String::from_utf8_lossy(&out.stderr).trim()),
        });
    }
    Ok(xml)
}

/// `<bin> <cli options> --mode=script --xml volume info <volume>`.
pub fn volume_info(bin: &Path, cli_options: &[&str], volume: &str) -> Result<Volume, GlusterCliError> {
    Ok(volinfo::parse_one(&volume_xml(bin, cli_options, "info", volume)?, volume)?)
}

/// `<bin> <cli options> --mode=script --xml volume status <volume>`.
pub fn volume_status(bin: &Path, cli_options: &[&str], volume: &str) -> Result<Vec<BrickStatus>, GlusterCliError> {
    Ok(volinfo::parse_status(&volume_xml(bin, cli_options, "status", volume)?)?)
}

/// `volume status`, shared by the workers of a node (see [`shared`]).
pub fn volume_status_shared(
    bin: &Path,
    cli_options: &[&str],
    volume: &str,
    cache: &Path,
    fresh: std::time::Duration,
) -> Result<Vec<BrickStatus>, GlusterCliError> {
    shared(cache, fresh, || volume_xml(bin, cli_options, "status", volume), |x| Ok(volinfo::parse_status(x)?))
}

/// An answer of glusterd kept in `cache` for every process of a node that
/// asks the same: `ask` runs only when the kept answer is older than
/// `fresh`, missing, or does not `parse`. One process asks at a time (a
/// lock on `<cache>.lock`); the others wait and take its answer. Each
/// `gluster` call costs about a tenth of a CPU second (the CLI starts the
/// reference's Python gsyncd), so the workers of a two-brick replica set
/// on a node ask half as often. Trouble with the files only means asking.
pub fn shared<T>(
    cache: &Path,
    fresh: std::time::Duration,
    ask: impl FnOnce() -> Result<String, GlusterCliError>,
    parse: impl Fn(&str) -> Result<T, GlusterCliError>,
) -> Result<T, GlusterCliError> {
    use nix::fcntl::{Flock, FlockArg};
    let lock_path = cache.with_extension("lock");
    let _held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .ok()
        .and_then(|f| Flock::lock(f, FlockArg::LockExclusive).ok());
    let young = std::fs::metadata(cache)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < fresh);
    if young
        && let Ok(text) = std::fs::read_to_string(cache)
        && let Ok(v) = parse(&text)
    {
        return Ok(v);
    }
    let text = ask()?;
    let v = parse(&text)?;
    let tmp = cache.with_extension(format!("tmp.{}", std::process::id()));
    if std::fs::write(&tmp, &text).and_then(|()| std::fs::rename(&tmp, cache)).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_answer_is_asked_once_while_fresh() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("status.xml");
        let asked = std::cell::Cell::new(0);
        let ask = |v: &'static str| {
            asked.set(asked.get() + 1);
            Ok::<_, GlusterCliError>(v.to_owned())
        };
        let parse = |t: &str| {
            if t.starts_with("ok") {
                Ok(t.to_owned())
            } else {
                Err(GlusterCliError::Failed { cmd: "x".into(), output: t.into() })
            }
        };
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(shared(&cache, hour, || ask("ok 1"), parse).unwrap(), "ok 1");
        assert_eq!(shared(&cache, hour, || ask("ok 2"), parse).unwrap(), "ok 1", "kept");
        assert_eq!(asked.get(), 1);
        assert_eq!(shared(&cache, std::time::Duration::ZERO, || ask("ok 3"), parse).unwrap(), "ok 3", "too old");
        // An answer that does not parse is not kept, and is an error.
        assert!(shared(&cache, std::time::Duration::ZERO, || ask("bad"), parse).is_err());
        assert_eq!(shared(&cache, hour, || ask("ok 4"), parse).unwrap(), "ok 3");
        std::fs::write(&cache, "garbage").unwrap();
        assert_eq!(shared(&cache, hour, || ask("ok 5"), parse).unwrap(), "ok 5", "a kept answer that does not parse");
        // No place for the files: asked every time.
        let nowhere = d.path().join("missing/dir/status.xml");
        assert_eq!(shared(&nowhere, hour, || ask("ok 6"), parse).unwrap(), "ok 6");
        assert_eq!(shared(&nowhere, hour, || ask("ok 7"), parse).unwrap(), "ok 7");
    }

    #[test]
    fn info_watch_asks_when_the_volume_file_changes() {
        let d = tempfile::tempdir().unwrap();
        let mut w = InfoWatch::new(d.path(), "v", std::time::Duration::from_secs(3600));
        assert!(w.due(), "no file: ask");
        w.answered();
        assert!(w.due(), "still no file: ask");
        std::fs::create_dir_all(d.path().join("vols/v")).unwrap();
        std::fs::write(d.path().join("vols/v/info"), "type=0\n").unwrap();
        assert!(w.due(), "a new file");
        w.answered();
        assert!(!w.due(), "unchanged since the answer");
        std::fs::write(d.path().join("vols/v/info"), "type=2\ncount=4\n").unwrap();
        assert!(w.due(), "rewritten");
        // Not answered (glusterd failed): still due.
        assert!(w.due());
        w.answered();
        assert!(!w.due());
        let mut every = InfoWatch::new(d.path(), "v", std::time::Duration::ZERO);
        assert!(every.due());
        every.answered();
        assert!(every.due(), "asked anyway once `every` has passed");
    }
}
