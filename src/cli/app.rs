//! `nixvm-gen`: scan, generate, check, plan, init, new, wire.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::diagnostic;
use crate::exit_codes;
use crate::project::{self, Project};

/// Declarative NixOS VM tests for flakes.
///
/// Exit codes: 0 success; 1 `check` found the generated file stale; 2 invalid
/// description, flake or command line; 3 the Nix evaluator failed; 4 I/O or
/// internal error.
#[derive(Debug, Parser)]
#[command(name = "nixvm-gen", version, about, long_about = None, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The flake's directory.
    #[arg(long, global = true, default_value = ".", value_name = "DIR")]
    pub flake: PathBuf,
    /// Directory of test descriptions, relative to the flake.
    #[arg(long, global = true, default_value = crate::spec::DEFAULT_TESTS_DIR, value_name = "DIR")]
    pub tests_dir: PathBuf,
    /// Generated file, relative to the flake.
    #[arg(long, global = true, default_value = crate::config::DEFAULT_OUTPUT, value_name = "FILE")]
    pub output: PathBuf,
    /// Name of nixvm-gen's flake among the user's flake inputs.
    #[arg(long, global = true, default_value = crate::config::DEFAULT_INPUT_NAME, value_name = "NAME")]
    pub input_name: String,
    /// Print only errors.
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more about what is done.
    #[arg(long, short, global = true)]
    pub verbose: bool,
    /// Output format of reports.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// When to ask the Nix evaluator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum EvalMode {
    /// Never: report what static analysis cannot resolve.
    #[default]
    Never,
    /// Only when static analysis left something unresolved and Nix is installed.
    Auto,
    /// Always (fails when Nix is missing).
    Always,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the modules and tests found in the flake.
    Scan {
        /// Print one JSON object (same as --format json).
        #[arg(long)]
        json: bool,
        /// Ask the Nix evaluator about what static analysis cannot resolve.
        #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "always", default_value_t = EvalMode::Never)]
        eval: EvalMode,
    },
    /// Write the generated checks file.
    Generate,
    /// Write nothing; exit 1 with a diff when the generated file is stale,
    /// 2 when a description is invalid.
    Check,
    /// Instantiate a generated check and show what it builds (reads .drv files).
    Plan {
        /// Test name.
        test: String,
        /// System of the check.
        #[arg(long, default_value = "x86_64-linux")]
        system: String,
    },
    /// Create a new tested NixOS module project.
    Init(crate::cli::scaffold::InitArgs),
    /// Add a test description.
    New(crate::cli::scaffold::NewArgs),
    /// Wire the generated checks into an existing flake.nix.
    Wire(crate::cli::scaffold::WireArgs),
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff).
    Man,
}

impl GlobalArgs {
    pub fn config(&self) -> Config {
        Config {
            flake_dir: self.flake.clone(),
            tests_dir: self.tests_dir.clone(),
            output: self.output.clone(),
            input_name: self.input_name.clone(),
        }
    }
}

/// Entry point of the `nixvm-gen` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => ExitCode::from(code as u8),
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            ExitCode::from(exit_code_of(&err) as u8)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn exit_code_of(err: &anyhow::Error) -> i32 {
    for e in err.chain() {
        let no_flake = |e: &crate::flake::FlakeError| matches!(e, crate::flake::FlakeError::NoFlake { .. });
        if e.downcast_ref::<crate::flake::FlakeError>().is_some_and(no_flake)
            || e.downcast_ref::<project::ProjectError>()
                .is_some_and(|e| matches!(e, project::ProjectError::Flake(f) if no_flake(f)))
        {
            return exit_codes::INVALID_INPUT;
        }
        if e.downcast_ref::<crate::eval::EvalError>().is_some() {
            return exit_codes::EXTERNAL_TOOL;
        }
        if e.downcast_ref::<UsageError>().is_some() {
            return exit_codes::INVALID_INPUT;
        }
    }
    exit_codes::INTERNAL
}

/// A user mistake found after argument parsing (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Runs a parsed command line; returns the exit code.
pub fn run(cli: &Cli) -> anyhow::Result<i32> {
    let g = &cli.global;
    let config = g.config();
    match &cli.command {
        Command::Scan { json, eval } => scan(g, &config, *json || g.format == Format::Json, *eval),
        Command::Generate => generate(g, &config),
        Command::Check => check(g, &config),
        Command::Plan { test, system } => crate::cli::plan::run(g, &config, test, system),
        Command::Init(args) => crate::cli::scaffold::init(g, args),
        Command::New(args) => crate::cli::scaffold::new(g, &config, args),
        Command::Wire(args) => crate::cli::scaffold::wire(g, &config, args),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "nixvm-gen", &mut std::io::stdout());
            Ok(exit_codes::OK)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
            Ok(exit_codes::OK)
        }
    }
}

/// Loads the project and prints its diagnostics. Returns `None` (after
/// printing) when there are errors.
pub fn load_reporting(g: &GlobalArgs, config: &Config) -> anyhow::Result<Option<Project>> {
    let project = project::load(config)
        .with_context(|| format!("failed to load the flake in {}", config.flake_dir.display()))?;
    print_diagnostics(g, &project);
    if project.has_errors() {
        return Ok(None);
    }
    Ok(Some(project))
}

fn print_diagnostics(g: &GlobalArgs, project: &Project) {
    if project.diagnostics.is_empty() {
        return;
    }
    if g.format == Format::Json {
        let all: Vec<_> = project.diagnostics.iter().map(|d| d.to_json(&project.sources)).collect();
        eprintln!("{}", serde_json::json!({ "diagnostics": all }));
    } else if !(g.quiet && !project.has_errors()) {
        eprint!("{}", diagnostic::render(&project.diagnostics, &project.sources, crate::cli::stderr_color()));
        let errors = project.diagnostics.iter().filter(|d| d.is_error()).count();
        if errors > 0 {
            eprintln!("error: {errors} problem(s) in test descriptions; nothing was written");
        }
    }
}

fn scan(g: &GlobalArgs, config: &Config, json: bool, eval: EvalMode) -> anyhow::Result<i32> {
    let mut project = project::load(config)
        .with_context(|| format!("failed to load the flake in {}", config.flake_dir.display()))?;
    crate::cli::eval::apply_eval(g, config, &mut project, eval)?;
    let report = scan_report(&project);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_scan_text(&project);
    }
    print_diagnostics(g, &project);
    Ok(if project.has_errors() { exit_codes::INVALID_INPUT } else { exit_codes::OK })
}

/// The `scan --json` object.
pub fn scan_report(project: &Project) -> serde_json::Value {
    let tests: Vec<_> = project
        .tests
        .iter()
        .map(|t| {
            serde_json::json!({
                "name": t.name,
                "file": t.file,
                "nodes": t.nodes.keys().collect::<Vec<_>>(),
                "steps": count_steps(&t.steps),
                "backend": t.backend,
                "systems": t.systems.clone().unwrap_or_else(|| crate::spec::DEFAULT_SYSTEMS.iter().map(|s| s.to_string()).collect()),
            })
        })
        .collect();
    serde_json::json!({
        "modules": project.flake.modules,
        "tests": tests,
        "unresolved": project.flake.unresolved,
    })
}

/// Number of steps, counting the steps inside subtests (not the subtests).
fn count_steps(steps: &[crate::spec::Step]) -> usize {
    steps
        .iter()
        .map(|s| match &s.action {
            crate::spec::Action::Subtest { steps, .. } => count_steps(steps),
            _ => 1,
        })
        .sum()
}

fn print_scan_text(project: &Project) {
    println!("modules:");
    for m in &project.flake.modules {
        let kind = serde_json::to_value(&m.kind)
            .ok()
            .and_then(|v| v.get("kind").and_then(|k| k.as_str().map(String::from)))
            .unwrap_or_default();
        let extra = match &m.kind {
            crate::flake::ModuleKind::Alias { target } => format!(" -> {target}"),
            crate::flake::ModuleKind::Path { source }
            | crate::flake::ModuleKind::Import { source }
            | crate::flake::ModuleKind::ImportApply { source } => {
                format!(" ({})", source.display())
            }
            _ => String::new(),
        };
        println!("  {:<20} {kind}{extra}  {}:{}:{}", m.name, m.file.display(), m.line, m.column);
    }
    println!("tests:");
    for t in &project.tests {
        println!(
            "  {:<20} {} node(s), {} step(s)  {}",
            t.name,
            t.nodes.len(),
            count_steps(&t.steps),
            t.file.display()
        );
    }
    if !project.flake.unresolved.is_empty() {
        println!("unresolved (try --eval):");
        for u in &project.flake.unresolved {
            println!("  {}  {}:{}:{}: {}", u.what, u.file.display(), u.line, u.column, u.reason);
        }
    }
}

fn generate(g: &GlobalArgs, config: &Config) -> anyhow::Result<i32> {
    let Some(project) = load_reporting(g, config)? else {
        return Ok(exit_codes::INVALID_INPUT);
    };
    let text = crate::codegen::render(&project, config)?;
    let path = config.output_path();
    let old = std::fs::read_to_string(&path).ok();
    if old.as_deref() == Some(text.as_str()) {
        if !g.quiet {
            eprintln!("{} is up to date", path.display());
        }
        return Ok(exit_codes::OK);
    }
    crate::fsutil::write_atomic(&path, text.as_bytes())
        .with_context(|| format!("failed to write {}", path.display()))?;
    if !g.quiet {
        eprintln!("wrote {} ({} test(s))", path.display(), project.tests.len());
    }
    Ok(exit_codes::OK)
}

fn check(g: &GlobalArgs, config: &Config) -> anyhow::Result<i32> {
    let Some(project) = load_reporting(g, config)? else {
        return Ok(exit_codes::INVALID_INPUT);
    };
    let text = crate::codegen::render(&project, config)?;
    let path = config.output_path();
    let old = match std::fs::read_to_string(&path) {
        Ok(old) => old,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("failed to read {}", path.display())),
    };
    if old == text {
        if g.verbose {
            eprintln!("{} is up to date", path.display());
        }
        return Ok(exit_codes::OK);
    }
    let name = config.output.display().to_string();
    let diff = similar::TextDiff::from_lines(&old, &text);
    print!("{}", diff.unified_diff().context_radius(3).header(&format!("a/{name}"), &format!("b/{name}")));
    eprintln!("error: {} is stale; run `nixvm-gen generate` and commit the result", path.display());
    Ok(exit_codes::STALE_OR_FAILED)
}
