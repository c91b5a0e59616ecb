//! `nixvm-gen plan` and the evaluator fallback of `scan --eval`.

use crate::cli::app::{EvalMode, GlobalArgs};
use crate::config::Config;
use crate::project::Project;

/// Runs `nixvm-gen plan TEST`.
pub fn run(g: &GlobalArgs, config: &Config, test: &str, system: &str) -> anyhow::Result<i32> {
    let _ = (g, config, test, system);
    anyhow::bail!("`plan` is not implemented yet")
}

/// Completes `project` with what the evaluator says, per `mode`.
pub fn apply_eval(
    g: &GlobalArgs,
    config: &Config,
    project: &mut Project,
    mode: EvalMode,
) -> anyhow::Result<()> {
    let _ = (g, config, project);
    if mode == EvalMode::Always {
        anyhow::bail!("--eval is not implemented yet");
    }
    Ok(())
}
