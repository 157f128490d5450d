//! `gsyncd cleanup-mounts [SESSION] [--dry-run]`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cli::CleanupMountsArgs;
use crate::config::{self, Config, Value};
use crate::gluster::mount::{self, SweepRoot};

/// Where sessions keep their runtime files by default.
pub const RUN_ROOT: &str = "/run/gsyncd";

pub fn run(config_dir: &Path, a: &CleanupMountsArgs) -> anyhow::Result<()> {
    let roots = match &a.session {
        Some(s) => {
            let cfg = Config::load(config_dir, s)?;
            let run_dir = match config::schema::spec("run-dir").map(|o| cfg.expanded(o, &config::no_extra)) {
                Some(Value::Str(d)) => PathBuf::from(d),
                _ => anyhow::bail!("run-dir option is missing from the schema"),
            };
            vec![SweepRoot::all(run_dir.join("mnt"))]
        }
        None => {
            let mut r: Vec<SweepRoot> = std::fs::read_dir(RUN_ROOT)
                .map(|rd| rd.flatten().map(|e| SweepRoot::all(e.path().join("mnt"))).collect())
                .unwrap_or_default();
            r.push(SweepRoot { dir: PathBuf::from("/tmp"), prefix: "gsyncd-aux-mount-".into() });
            r
        }
    };
    let actions = mount::sweep(&roots, a.dry_run);
    let mut out = std::io::stdout().lock();
    if actions.is_empty() {
        writeln!(out, "nothing to clean up").context("cannot write to stdout")?;
    }
    for act in &actions {
        writeln!(out, "{act}").context("cannot write to stdout")?;
    }
    let failed = actions.iter().filter(|x| x.result.is_err()).count();
    if failed > 0 {
        anyhow::bail!("{failed} of {} leftovers could not be removed", actions.len());
    }
    Ok(())
}
