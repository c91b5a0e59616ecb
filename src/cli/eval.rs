//! The evaluator fallback of `scan --eval`.

use crate::cli::app::{EvalMode, GlobalArgs};
use crate::config::Config;
use crate::project::Project;

/// Completes `project` with what the evaluator says, per `mode`.
pub fn apply_eval(g: &GlobalArgs, config: &Config, project: &mut Project, mode: EvalMode) -> anyhow::Result<()> {
    let _ = (g, config, project);
    if mode == EvalMode::Always {
        anyhow::bail!("--eval is not implemented yet");
    }
    Ok(())
}
