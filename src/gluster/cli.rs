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
