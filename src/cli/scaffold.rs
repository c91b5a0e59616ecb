//! `nixvm-gen init`, `new` and `wire`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::cli::app::{GlobalArgs, say};
use crate::config::Config;
use crate::exit_codes;
use crate::scaffold::{self, ScaffoldError};

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to create the project in [default: the --flake directory, `.`].
    pub dir: Option<PathBuf>,
    /// Project name ([a-z][a-z0-9-]*); default: the directory's name.
    #[arg(long)]
    pub name: Option<String>,
    /// Name of the exported module (`nixosModules.<MODULE>`); default: the service name.
    #[arg(long)]
    pub module: Option<String>,
    /// Name of the example service (`services.<SERVICE>`); default: the project name.
    #[arg(long)]
    pub service: Option<String>,
    /// Port the example service serves its health page on.
    #[arg(long, default_value_t = scaffold::init::DEFAULT_PORT)]
    pub port: u16,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
    /// Also write a CI workflow that runs every check as its own job
    /// (from `nixvm-gen matrix`) and merges their reports.
    #[arg(long, value_enum, value_name = "SERVICE")]
    pub ci: Option<CiService>,
}

/// `init --ci`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CiService {
    /// GitHub Actions: .github/workflows/vm-tests.yml
    Github,
    /// GitLab CI: .gitlab-ci.yml with a generated child pipeline
    Gitlab,
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// Name of the new test ([a-z][a-z0-9-]*); also the file name and check name.
    pub name: String,
    /// Import only this `nixosModules` entry into the nodes (default: all).
    #[arg(long)]
    pub module: Option<String>,
    /// Comma-separated node names.
    #[arg(long, value_delimiter = ',', default_value = scaffold::new::DEFAULT_NODE)]
    pub nodes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct WireArgs {
    /// Print the edit as a unified diff; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Prints a user mistake and returns exit code 2; other errors propagate.
fn usage_or_err(err: ScaffoldError) -> anyhow::Result<i32> {
    if err.is_usage() {
        say!("error: {err}");
        Ok(exit_codes::INVALID_INPUT)
    } else {
        Err(err.into())
    }
}

pub fn init(g: &GlobalArgs, args: &InitArgs) -> anyhow::Result<i32> {
    // `nixvm-gen --flake DIR init` means DIR, like every other command.
    let dir = args.dir.clone().unwrap_or_else(|| g.flake.clone());
    let opts = scaffold::init::InitOptions {
        dir: dir.clone(),
        name: args.name.clone(),
        module: args.module.clone(),
        service: args.service.clone(),
        port: args.port,
        force: args.force,
        tests_dir: g.tests_dir.clone(),
        output: g.output.clone(),
        input_name: g.input_name.clone(),
        ci: args.ci.map(|c| match c {
            CiService::Github => scaffold::init::Ci::Github,
            CiService::Gitlab => scaffold::init::Ci::Gitlab,
        }),
    };
    let report = match scaffold::init::init(&opts) {
        Ok(r) => r,
        Err(e) => return usage_or_err(e),
    };
    if !g.quiet {
        for p in &report.written {
            let verb = if report.overwritten.contains(p) { "overwrote" } else { "wrote" };
            say!("{verb} {}", dir.join(p).display());
        }
        say!(
            "\ncreated project `{}`: nixosModules.{} (services.{}) with one VM test.\nnext: cd {} && git init && git add -A && nix flake check",
            report.name,
            report.module,
            report.service,
            dir.display()
        );
    }
    Ok(exit_codes::OK)
}

pub fn new(g: &GlobalArgs, config: &Config, args: &NewArgs) -> anyhow::Result<i32> {
    let opts = scaffold::new::NewOptions {
        name: args.name.clone(),
        module: args.module.clone(),
        nodes: args.nodes.clone(),
    };
    let rel = match scaffold::new::new(config, &opts) {
        Ok(rel) => rel,
        Err(e) => return usage_or_err(e),
    };
    if !g.quiet {
        say!("wrote {}", config.flake_dir.join(&rel).display());
        say!("next: edit it, then run `nixvm-gen generate`");
    }
    Ok(exit_codes::OK)
}

pub fn wire(g: &GlobalArgs, config: &Config, args: &WireArgs) -> anyhow::Result<i32> {
    let path = config.flake_dir.join(crate::flake::FLAKE_FILE);
    let text = match crate::limits::read_nix_file(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            say!(
                "error: no {} in {}: run nixvm-gen in a flake or pass --flake DIR",
                crate::flake::FLAKE_FILE,
                config.flake_dir.display()
            );
            return Ok(exit_codes::INVALID_INPUT);
        }
        Err(e) => return Err(e).with_context(|| format!("failed to read {}", path.display())),
    };
    let opts = match scaffold::wire::WireOptions::from_config(config) {
        Ok(o) => scaffold::wire::WireOptions { hydra_jobs: g.hydra_jobs, ..o },
        Err(e) => return usage_or_err(e),
    };
    let display = path.display().to_string();
    match scaffold::wire::wire(&text, &opts) {
        Ok(outcome) if outcome.edits.is_empty() => {
            if !g.quiet {
                say!("{display} is already wired; nothing to do");
            }
            Ok(exit_codes::OK)
        }
        Ok(outcome) => {
            if args.dry_run {
                let diff = similar::TextDiff::from_lines(&text, &outcome.text);
                let text =
                    diff.unified_diff().context_radius(3).header("a/flake.nix", "b/flake.nix").to_string();
                crate::cli::app::write_stdout(text.as_bytes())?;
            } else {
                crate::fsutil::write_atomic(&path, outcome.text.as_bytes())
                    .with_context(|| format!("failed to write {display}"))?;
            }
            if !g.quiet {
                let verb = if args.dry_run { "would edit" } else { "edited" };
                say!("{verb} {display}:");
                for e in &outcome.edits {
                    say!("  - {e}");
                }
                for n in &outcome.notes {
                    say!("note: {n}");
                }
                if !config.output_path().exists() {
                    say!(
                        "next: run `nixvm-gen generate` ({} does not exist yet, so the flake does not evaluate)",
                        config.output.display()
                    );
                }
            }
            Ok(exit_codes::OK)
        }
        Err(refusal) => {
            eprint!("{}", refusal.render(&display, &text, crate::cli::stderr_color()));
            Ok(exit_codes::INVALID_INPUT)
        }
    }
}
