//! `nixvm-gen plan`: instantiate a generated check and show what it builds.

use crate::cli::app::GlobalArgs;
use crate::config::Config;

/// Runs `nixvm-gen plan TEST`.
pub fn run(g: &GlobalArgs, config: &Config, test: &str, system: &str) -> anyhow::Result<i32> {
    let _ = (g, config, test, system);
    anyhow::bail!("`plan` is not implemented yet")
}
