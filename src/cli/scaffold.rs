//! `nixvm-gen init`, `new` and `wire`.

use std::path::PathBuf;

use clap::Args;

use crate::cli::app::GlobalArgs;
use crate::config::Config;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to create the project in.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// Name of the new test.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct WireArgs {
    /// Print the edit as a diff; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn init(g: &GlobalArgs, args: &InitArgs) -> anyhow::Result<i32> {
    let _ = (g, args);
    anyhow::bail!("`init` is not implemented yet")
}

pub fn new(g: &GlobalArgs, config: &Config, args: &NewArgs) -> anyhow::Result<i32> {
    let _ = (g, config, args);
    anyhow::bail!("`new` is not implemented yet")
}

pub fn wire(g: &GlobalArgs, config: &Config, args: &WireArgs) -> anyhow::Result<i32> {
    let _ = (g, config, args);
    anyhow::bail!("`wire` is not implemented yet")
}
