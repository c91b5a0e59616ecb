//! `nixvm-gen`: scan, generate, check, plan, init, new, wire.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::diagnostic::{self, Diagnostic, Sources};
use crate::eval::shell_word;
use crate::exit_codes;
use crate::flake::FlakeInfo;
use crate::fsutil::normalize;
use crate::project::{self, Project};

/// `eprintln!` that ignores write errors, for every `cli` module:
/// `eprintln!` panics when stderr is a pipe whose reader is gone
/// (`nixvm-gen init 2>&1 | head`), and there is nobody left to tell
/// anyway. The exit code still tells.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($arg)*);
        let _ = writeln!(std::io::stderr().lock(), "{}", $crate::diagnostic::escape_controls(&text));
    }};
}
pub(crate) use say;

/// Like [`say!`] for text that brings its own newlines.
fn say_raw(text: &str) {
    use std::io::Write as _;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Declarative NixOS VM tests for flakes.
///
/// Exit codes: 0 success; 1 `check` found the generated file stale; 2 invalid
/// description, flake or command line; 3 the Nix evaluator failed; 4 I/O or
/// internal error.
#[derive(Debug, Parser)]
#[command(name = "nixvm-gen", version, about, max_term_width = 100)]
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
    /// The generated file also serves `hydraJobs.<test>.<system>` (for
    /// Hydra and buildbot-nix): `generate`, `check` and `wire` need it alike.
    #[arg(long, global = true)]
    pub hydra_jobs: bool,
    /// `generate` and `check`: neither read nor write the cache of parsed
    /// and rendered descriptions (a cold run). The cache is in
    /// $NIXVM_GEN_CACHE_DIR, else $XDG_CACHE_HOME/nixvm-gen, else
    /// ~/.cache/nixvm-gen; deleting that directory clears it.
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// Output format of reports.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Ask the Nix evaluator about what static analysis cannot resolve
    /// (computed module sets, descriptions that are not plain data);
    /// `--eval` alone means `always`.
    // `require_equals`: `--eval generate` must not read `generate` as WHEN.
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "WHEN",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "always",
        default_value_t = EvalMode::Never
    )]
    pub eval: EvalMode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    /// `matrix` only: GitHub's `strategy.matrix` JSON.
    Github,
    /// `matrix` only: a GitLab child pipeline.
    Gitlab,
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
    /// List the CI jobs: one per check and system, with its installable,
    /// nodes, required system features and weight (--format
    /// text|json|github|gitlab).
    Matrix(crate::cli::matrix::MatrixArgs),
    /// Merge the results of check builds (their report.json) into a
    /// summary, one JUnit file and one HTML report; exit 1 when a test failed.
    Report(crate::cli::report::ReportArgs),
    /// Turn hand-written NixOS tests (runNixOSTest, makeTest, nixos/tests
    /// files) into test descriptions; report what could not be converted.
    Import(crate::cli::import::ImportArgs),
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
            // `nixvm-gen scan --json | head`: the reader is gone, nobody
            // is left to tell; this is not a failure of ours.
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            let code = exit_code_of(&err);
            if cli.global.format == Format::Json {
                say!("{}", serde_json::json!({ "error": format!("{err:#}"), "exit_code": code }));
            } else {
                say!("error: {err:#}");
            }
            ExitCode::from(code as u8)
        }
    }
}

/// Whether stdout's reader went away. Only our own stdout counts: a broken
/// pipe to a child process is a real failure.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| e.downcast_ref::<StdoutError>().is_some_and(StdoutError::is_broken_pipe))
}

/// Writing a report to stdout failed.
#[derive(Debug, thiserror::Error)]
#[error("failed to write to stdout")]
pub(crate) struct StdoutError(#[source] std::io::Error);

impl StdoutError {
    fn is_broken_pipe(&self) -> bool {
        self.0.kind() == std::io::ErrorKind::BrokenPipe
    }
}

/// Maps an error to the documented exit code: the user's mistakes are 2,
/// a failing Nix evaluator is 3, everything else (I/O, bugs) is 4.
fn exit_code_of(err: &anyhow::Error) -> i32 {
    use crate::codegen::CodegenError;
    for e in err.chain() {
        // No flake.nix, or one that is not UTF-8 text, not a regular file or
        // too large: the user's to fix, like the same faults in a description.
        let no_flake = |e: &crate::flake::FlakeError| match e {
            crate::flake::FlakeError::NoFlake { .. } => true,
            crate::flake::FlakeError::Read { source, .. } => {
                matches!(source.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput)
            }
        };
        if e.downcast_ref::<crate::flake::FlakeError>().is_some_and(no_flake)
            || e.downcast_ref::<project::ProjectError>()
                .is_some_and(|e| matches!(e, project::ProjectError::Flake(f) if no_flake(f)))
        {
            return exit_codes::INVALID_INPUT;
        }
        // A description that is not UTF-8, or a `--tests-dir` that names a
        // file, is the user's to fix.
        if e.downcast_ref::<project::ProjectError>().is_some_and(|e| match e {
            project::ProjectError::Read { source, .. } => {
                matches!(source.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput)
            }
            project::ProjectError::ReadDir { source, .. } => {
                source.kind() == std::io::ErrorKind::NotADirectory
            }
            project::ProjectError::Flake(_) => false,
        }) {
            return exit_codes::INVALID_INPUT;
        }
        if e.downcast_ref::<crate::eval::EvalError>().is_some() {
            return exit_codes::EXTERNAL_TOOL;
        }
        if e.downcast_ref::<UsageError>().is_some() {
            return exit_codes::INVALID_INPUT;
        }
        // Settings (`--output`, `--input-name`) or values the generated
        // code cannot express: the user can fix them. A template that
        // fails to render is our bug.
        if e.downcast_ref::<CodegenError>().is_some_and(|e| !matches!(e, CodegenError::Template { .. })) {
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
    if matches!(g.format, Format::Github | Format::Gitlab) && !matches!(cli.command, Command::Matrix(_)) {
        return Err(UsageError(format!(
            "--format {} is for `matrix` only; use text or json",
            if g.format == Format::Github { "github" } else { "gitlab" }
        ))
        .into());
    }
    match &cli.command {
        Command::Scan { json } => scan(g, &config, *json || g.format == Format::Json),
        Command::Generate => generate(g, &config),
        Command::Check => check(g, &config),
        Command::Plan { test, system } => crate::cli::plan::run(g, &config, test, system),
        Command::Init(args) => crate::cli::scaffold::init(g, args),
        Command::New(args) => crate::cli::scaffold::new(g, &config, args),
        Command::Wire(args) => crate::cli::scaffold::wire(g, &config, args),
        Command::Matrix(args) => crate::cli::matrix::run(g, &config, args),
        Command::Report(args) => crate::cli::report::run(g, args),
        Command::Import(args) => crate::cli::import::run(g, args),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // clap_complete panics when its writer fails (a closed pipe):
            // render into memory, then write with error handling.
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "nixvm-gen", &mut buf);
            write_stdout(&buf)?;
            Ok(exit_codes::OK)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut buf)?;
            write_stdout(&buf)?;
            Ok(exit_codes::OK)
        }
    }
}

/// Loads the project, asks the evaluator per `--eval`, and prints its
/// diagnostics. Returns `None` (after printing) when there are errors.
pub fn load_reporting(g: &GlobalArgs, config: &Config) -> anyhow::Result<Option<Project>> {
    let project = load_evaluated(g, config)?;
    print_diagnostics(g, &project.diagnostics, &project.sources, &project.flake);
    if project.has_errors() {
        return Ok(None);
    }
    Ok(Some(project))
}

/// [`project::load`] completed by the evaluator fallback (`--eval`), so
/// that `scan`, `generate` and `check` see the same project.
fn load_evaluated(g: &GlobalArgs, config: &Config) -> anyhow::Result<Project> {
    let mut project = project::load(config)
        .with_context(|| format!("failed to load the flake in {}", config.flake_dir.display()))?;
    crate::cli::eval::apply_eval(g, config, &mut project, g.eval)?;
    Ok(project)
}

/// Writes to stdout, returning errors (a closed pipe) instead of
/// panicking like `print!` does.
pub(crate) fn write_stdout(bytes: &[u8]) -> Result<(), StdoutError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let escaped = std::str::from_utf8(bytes).map(crate::diagnostic::escape_controls);
    let bytes = escaped.as_ref().map_or(bytes, |s| s.as_bytes());
    out.write_all(bytes).and_then(|()| out.flush()).map_err(StdoutError)
}

/// A path as the user would type it: without a leading `./`.
fn shown(path: &Path) -> &Path {
    path.strip_prefix(".").unwrap_or(path)
}

fn print_diagnostics(g: &GlobalArgs, diagnostics: &[Diagnostic], sources: &Sources, flake: &FlakeInfo) {
    if diagnostics.is_empty() {
        return;
    }
    let has_errors = diagnostic::has_errors(diagnostics);
    if g.format == Format::Json {
        let all: Vec<_> = diagnostics.iter().map(|d| d.to_json(sources)).collect();
        say!("{}", serde_json::json!({ "diagnostics": all }));
    } else if !g.quiet || has_errors {
        say_raw(&diagnostic::render(diagnostics, sources, crate::cli::stderr_color()));
        let errors = diagnostics.iter().filter(|d| d.is_error()).count();
        if errors > 0 {
            say!(
                "error: {errors} problem(s) in {}; nothing was written",
                error_places(diagnostics, sources, flake)
            );
        }
    }
}

/// Where the errors are: the flake's own files by name, or test descriptions.
fn error_places(diagnostics: &[Diagnostic], sources: &Sources, flake: &FlakeInfo) -> String {
    let mut flake_files: Vec<String> = Vec::new();
    let mut descriptions = false;
    for d in diagnostics.iter().filter(|d| d.is_error()) {
        let file = d.span.map(|s| sources.path(s.file).to_path_buf());
        match file.filter(|f| flake.files.contains(f)) {
            Some(f) => {
                let f = f.display().to_string();
                if !flake_files.contains(&f) {
                    flake_files.push(f);
                }
            }
            None => descriptions = true,
        }
    }
    match (flake_files.is_empty(), descriptions) {
        (true, _) => "test descriptions".to_string(),
        (false, false) => flake_files.join(", "),
        (false, true) => format!("{} and test descriptions", flake_files.join(", ")),
    }
}

fn scan(g: &GlobalArgs, config: &Config, json: bool) -> anyhow::Result<i32> {
    let project = load_evaluated(g, config)?;
    let mut report = scan_report(&project);
    // A report with errors is not a clean one: say so in it too.
    if project.has_errors() {
        let errors: Vec<_> = project
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.to_json(&project.sources))
            .collect();
        report["failed"] = serde_json::Value::Bool(true);
        report["errors"] = serde_json::Value::Array(errors);
    }
    let flake_failed = project.diagnostics.iter().any(|d| {
        d.is_error()
            && d.span.is_some_and(|s| project.flake.files.iter().any(|f| f == project.sources.path(s.file)))
    });
    let text = if json {
        let mut text = serde_json::to_string_pretty(&report)?;
        text.push('\n');
        text
    } else if flake_failed {
        // The diagnostics say what is wrong; an empty table would look fine.
        String::new()
    } else {
        scan_text(&project)
    };
    write_stdout(text.as_bytes())?;
    print_diagnostics(g, &project.diagnostics, &project.sources, &project.flake);
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

/// The human-readable `scan` report. Columns are as wide as the longest name.
fn scan_text(project: &Project) -> String {
    use std::fmt::Write;
    let width = project
        .flake
        .modules
        .iter()
        .map(|m| m.name.chars().count())
        .chain(project.tests.iter().map(|t| t.name.chars().count()))
        .max()
        .unwrap_or(0)
        .max(20);
    let mut out = String::from("modules:\n");
    for m in &project.flake.modules {
        let kind = m.kind.name();
        let extra = match &m.kind {
            crate::flake::ModuleKind::Alias { target } => format!(" -> {target}"),
            crate::flake::ModuleKind::Path { source }
            | crate::flake::ModuleKind::Import { source }
            | crate::flake::ModuleKind::ImportApply { source } => {
                format!(" ({})", source.display())
            }
            crate::flake::ModuleKind::Computed { reason } => format!(" ({reason})"),
            crate::flake::ModuleKind::ModuleSet { members } => {
                format!(" ({}; not a module, tests do not import it)", members.join(", "))
            }
            _ => String::new(),
        };
        let _ =
            writeln!(out, "  {:<width$} {kind}{extra}  {}:{}:{}", m.name, m.file.display(), m.line, m.column);
    }
    out.push_str("tests:\n");
    for t in &project.tests {
        let _ = writeln!(
            out,
            "  {:<width$} {} node(s), {} step(s)  {}",
            t.name,
            t.nodes.len(),
            count_steps(&t.steps),
            t.file.display()
        );
    }
    if !project.flake.unresolved.is_empty() {
        out.push_str("unresolved (try --eval):\n");
        for u in &project.flake.unresolved {
            let _ = writeln!(out, "  {}  {}:{}:{}: {}", u.what, u.file.display(), u.line, u.column, u.reason);
        }
    }
    out
}

/// `generate`: renders and writes the checks file, but leaves an
/// up-to-date file alone (same bytes, same mtime), so build tools and
/// editors do not see a change that is none.
fn generate(g: &GlobalArgs, config: &Config) -> anyhow::Result<i32> {
    let Some(mut checks) = render_checks(g, config)? else {
        return Ok(exit_codes::INVALID_INPUT);
    };
    let path = config.output_path();
    let up_to_date = |g: &GlobalArgs| {
        if !g.quiet {
            say!("{} is up to date", shown(&path).display());
        }
        Ok(exit_codes::OK)
    };
    let Some(text) = checks.text.take() else {
        checks.save(g);
        return up_to_date(g);
    };
    let tests = checks.tests;
    if let Ok((true, seen)) = crate::incremental::compare_output(&path, text.as_bytes()) {
        checks.record(&text, seen);
        checks.save(g);
        return up_to_date(g);
    }
    checks.save(g);
    let old = std::fs::read(&path).ok();
    if let Some(old) = old.filter(|old| !old.is_empty() && !old.starts_with(GENERATED_MARKER.as_bytes())) {
        let first = String::from_utf8_lossy(&old)
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(60)
            .collect::<String>();
        return Err(UsageError(format!(
            "{} exists and was not written by nixvm-gen (it starts with `{first}`, not `{GENERATED_MARKER}`); \
             refusing to overwrite it: choose another --output, or remove the file first",
            shown(&path).display()
        ))
        .into());
    }
    write_generated(config, &path, text.as_bytes())?;
    // Just written: its stat is not settled yet, only the hash is kept.
    checks.record(&text, None);
    checks.save(g);
    if !g.quiet {
        say!("wrote {} ({tests} test(s))", shown(&path).display());
    }
    Ok(exit_codes::OK)
}

/// What `generate` and `check` compare with the file.
struct Checks {
    /// The rendered file; `None` when the cache showed the file on disk
    /// to be current ([`crate::incremental::Run::known_current`]).
    text: Option<String>,
    tests: usize,
    /// The incremental run, to record the outcome in and save.
    run: Option<crate::incremental::Run>,
}

impl Checks {
    /// The file holds `text` (compared, or just written).
    fn record(&mut self, text: &str, seen: Option<crate::incremental::Observed>) {
        if let Some(run) = &mut self.run {
            run.record_output(text, seen);
        }
    }

    fn save(&mut self, g: &GlobalArgs) {
        if let Some(run) = &mut self.run {
            save_cache(g, run);
        }
    }
}

/// The cache only saves time: failing to write it (no writable home, as
/// in the Nix sandbox) fails nothing, and is said only on request.
fn save_cache(g: &GlobalArgs, run: &mut crate::incremental::Run) {
    if let Err(e) = run.save()
        && g.verbose
    {
        say!("note: the cache was not written: {e}");
    }
}

/// What `generate` writes and `check` compares: the rendered file and its
/// number of tests, or `None` when the project has errors (printed). Takes
/// unchanged descriptions from the cache ([`crate::incremental`]) unless
/// `--no-cache`, or `--eval` (the evaluator's answers are not keyed by
/// file contents, so that path stays cold); with the cache, a file the
/// cache shows to be current is not rendered at all.
fn render_checks(g: &GlobalArgs, config: &Config) -> anyhow::Result<Option<Checks>> {
    if g.eval != EvalMode::Never {
        let Some(project) = load_reporting(g, config)? else {
            return Ok(None);
        };
        guard_output(config, &project.sources)?;
        let text = crate::codegen::render_with(&project, config, g.hydra_jobs)?;
        return Ok(Some(Checks { text: Some(text), tests: project.tests.len(), run: None }));
    }
    let store = if g.no_cache { None } else { crate::cache::Store::from_env() };
    let mut run = crate::incremental::load(config, store)
        .with_context(|| format!("failed to load the flake in {}", config.flake_dir.display()))?;
    print_diagnostics(g, &run.diagnostics, &run.sources, &run.flake);
    let text = if run.has_errors() {
        None
    } else {
        guard_output(config, &run.sources)?;
        let path = config.output_path();
        Some(match run.known_current(config, g.hydra_jobs, &path) {
            Ok(Some(verdict)) => {
                if g.verbose {
                    let how = match verdict {
                        crate::incremental::Verdict::Stamp => "its stat is the one last verified",
                        crate::incremental::Verdict::ContentHash => "its contents hash as last verified",
                    };
                    say!("cache: {} is current ({how})", shown(&path).display());
                }
                Ok(None)
            }
            Ok(None) => run.render(config, g.hydra_jobs).map(Some),
            Err(e) => Err(e),
        })
    };
    if g.verbose {
        let stats = run.stats();
        let why = stats.rejected.map(|r| format!(" ({r})")).unwrap_or_default();
        say!("cache: {} of {} description(s) reused{why}", stats.reused, stats.descriptions);
    }
    let tests = run.tests();
    match text {
        None => {
            save_cache(g, &mut run);
            Ok(None)
        }
        Some(Err(e)) => {
            save_cache(g, &mut run);
            Err(e.into())
        }
        Some(Ok(text)) => Ok(Some(Checks { text, tests, run: Some(run) })),
    }
}

/// Writes the generated file atomically. A path inside the flake must stay
/// there: a symlinked `nix/` directory or checks file that leads out of the
/// flake is refused (an explicit `--output` outside the flake is the user's
/// choice). Temporaries a killed run left next to the file are removed.
fn write_generated(config: &Config, path: &Path, text: &[u8]) -> anyhow::Result<()> {
    let root = normalize(&config.flake_dir);
    if normalize(path).starts_with(&root) {
        crate::fsutil::check_stays_inside(&config.flake_dir, path)
            .map_err(|e| UsageError(format!("cannot write {}: {e}", shown(path).display())))?;
    }
    if let Some(dir) = path.parent() {
        crate::fsutil::remove_stale_temporaries(dir);
    }
    crate::fsutil::write_atomic(path, text)
        .with_context(|| format!("failed to write {}", shown(path).display()))
}

/// First bytes of every generated file (`templates/codegen/checks.nix`):
/// `generate` replaces only files that start with them, so a mistyped
/// `--output` cannot destroy a hand-written file.
const GENERATED_MARKER: &str = "# Generated by nixvm-gen";

/// `check`: renders like `generate` and compares; a stale (or missing)
/// file is exit code 1 with a unified diff on stdout (with `--format json`:
/// one object `{"file", "stale", "diff"}`, also when up to date).
fn check(g: &GlobalArgs, config: &Config) -> anyhow::Result<i32> {
    let Some(mut checks) = render_checks(g, config)? else {
        return Ok(exit_codes::INVALID_INPUT);
    };
    let path = config.output_path();
    let read_error = |e: std::io::Error| {
        anyhow::Error::new(e).context(format!("failed to read {}", shown(&path).display()))
    };
    let (stale, text) = match checks.text.take() {
        // The cache showed the file to be current.
        None => (false, String::new()),
        Some(text) => match crate::incremental::compare_output(&path, text.as_bytes()) {
            Ok((same, seen)) => {
                if same {
                    checks.record(&text, seen);
                }
                (!same, text)
            }
            Err(e) => {
                checks.save(g);
                return Err(read_error(e));
            }
        },
    };
    checks.save(g);
    // The old text only for the diff (and the header check) of a stale file.
    let old = match stale.then(|| std::fs::read(&path)) {
        None => Vec::new(),
        Some(Ok(old)) => old,
        Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Some(Err(e)) => return Err(read_error(e)),
    };
    let name = shown(&config.output).display().to_string();
    let diff = if stale {
        let old = String::from_utf8_lossy(&old);
        let diff = similar::TextDiff::from_lines(old.as_ref(), &text);
        diff.unified_diff().context_radius(3).header(&format!("a/{name}"), &format!("b/{name}")).to_string()
    } else {
        String::new()
    };
    let report = if g.format == Format::Json {
        let value = serde_json::json!({ "file": name, "stale": stale, "diff": diff });
        format!("{value}\n")
    } else {
        diff
    };
    // A reader that stops early (`check | head`) must not turn "stale"
    // into success: the exit code is 1 either way.
    match write_stdout(report.as_bytes()) {
        Err(e) if !e.is_broken_pipe() => return Err(e.into()),
        _ => {}
    }
    if !stale {
        if g.verbose {
            say!("{} is up to date", shown(&path).display());
        }
        return Ok(exit_codes::OK);
    }
    if !old.is_empty() && !old.starts_with(GENERATED_MARKER.as_bytes()) {
        // `generate` refuses to overwrite a file without the header, so
        // advising it alone would name a command that then fails.
        say!(
            "error: {} is stale and was not written by nixvm-gen (it does not start with `{GENERATED_MARKER}`), \
             so `generate` will not replace it; if it is yours to discard, run `rm -- {} && {}`, \
             or choose another --output",
            shown(&path).display(),
            shell_word(&shown(&path).display().to_string()),
            generate_command(g)
        );
        return Ok(exit_codes::STALE_OR_FAILED);
    }
    say!("error: {} is stale; run `{}` and commit the result", shown(&path).display(), generate_command(g));
    Ok(exit_codes::STALE_OR_FAILED)
}

/// The `generate` command line that repairs what this `check` found: the
/// settings that change the output (`--flake`, `--output`, `--eval` …)
/// must be repeated, or the advice would not work.
fn generate_command(g: &GlobalArgs) -> String {
    let mut cmd = String::from("nixvm-gen");
    let mut flag = |name: &str, value: &Path, default: &str| {
        if value != Path::new(default) {
            cmd.push_str(&format!(" --{name} {}", shell_word(&value.display().to_string())));
        }
    };
    flag("flake", &g.flake, ".");
    flag("tests-dir", &g.tests_dir, crate::spec::DEFAULT_TESTS_DIR);
    flag("output", &g.output, crate::config::DEFAULT_OUTPUT);
    flag("input-name", Path::new(&g.input_name), crate::config::DEFAULT_INPUT_NAME);
    if g.hydra_jobs {
        cmd.push_str(" --hydra-jobs");
    }
    match g.eval {
        EvalMode::Never => {}
        EvalMode::Auto => cmd.push_str(" --eval=auto"),
        EvalMode::Always => cmd.push_str(" --eval"),
    }
    cmd.push_str(" generate");
    cmd
}

/// Refuses an output path that would overwrite an input of the project
/// (`--output flake.nix`) or become a description itself on the next run
/// (`--output tests/vm/checks.nix`): either would break the next run.
fn guard_output(config: &Config, sources: &Sources) -> Result<(), UsageError> {
    // `--output /`, `--output ..`: no file name at all (an existing
    // directory of that name is an I/O error when writing, exit code 4).
    if config.output.file_name().is_none() {
        return Err(UsageError(format!(
            "--output {} names no file; name the file to write (the default is {})",
            config.output.display(),
            crate::config::DEFAULT_OUTPUT
        )));
    }
    let output = normalize(&config.output);
    let read = (0..sources.len()).map(|i| sources.path(crate::diagnostic::FileId(i)));
    if let Some(input) = read.into_iter().find(|p| normalize(p) == output) {
        return Err(UsageError(format!(
            "--output {} would overwrite {}, an input of the project; choose another file (the default is {})",
            config.output.display(),
            input.display(),
            crate::config::DEFAULT_OUTPUT
        )));
    }
    let is_nix = output.extension().is_some_and(|e| e == "nix");
    if is_nix && output.parent() == Some(normalize(&config.tests_dir).as_path()) {
        return Err(UsageError(format!(
            "--output {} is in the descriptions directory {}, so it would be read as a description; choose \
             another directory (the default is {})",
            config.output.display(),
            config.tests_dir.display(),
            crate::config::DEFAULT_OUTPUT
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("nixvm-gen").chain(args.iter().copied())).expect("parses")
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn eval_is_global_and_needs_an_equals_sign() {
        assert_eq!(parse(&["generate"]).global.eval, EvalMode::Never);
        assert_eq!(parse(&["--eval", "generate"]).global.eval, EvalMode::Always);
        assert_eq!(parse(&["check", "--eval=auto"]).global.eval, EvalMode::Auto);
        assert_eq!(parse(&["scan", "--json", "--eval"]).global.eval, EvalMode::Always);
        assert!(matches!(parse(&["--eval", "scan"]).command, Command::Scan { json: false }));
        assert!(Cli::try_parse_from(["nixvm-gen", "scan", "--eval", "auto"]).is_err());
    }

    #[test]
    fn exit_codes_of_errors() {
        let code = |e: anyhow::Error| exit_code_of(&e.context("while doing something"));
        assert_eq!(code(UsageError("x".into()).into()), exit_codes::INVALID_INPUT);
        assert_eq!(code(crate::codegen::CodegenError::InputName { name: "self".into() }.into()), 2);
        assert_eq!(code(crate::eval::EvalError::NotInstalled { command: "nix".into() }.into()), 3);
        assert_eq!(code(std::io::Error::other("disk full").into()), exit_codes::INTERNAL);
        let read =
            |kind| project::ProjectError::Read { path: "t.nix".into(), source: std::io::Error::from(kind) };
        assert_eq!(code(read(std::io::ErrorKind::InvalidData).into()), 2);
        assert_eq!(code(read(std::io::ErrorKind::PermissionDenied).into()), 4);
        let flake = |kind| crate::flake::FlakeError::Read {
            path: "flake.nix".into(),
            source: std::io::Error::from(kind),
        };
        assert_eq!(code(flake(std::io::ErrorKind::InvalidData).into()), 2);
        assert_eq!(code(project::ProjectError::Flake(flake(std::io::ErrorKind::InvalidData)).into()), 2);
        assert_eq!(code(flake(std::io::ErrorKind::PermissionDenied).into()), 4);
        let list =
            |kind| project::ProjectError::ReadDir { path: "t".into(), source: std::io::Error::from(kind) };
        assert_eq!(code(list(std::io::ErrorKind::NotADirectory).into()), 2);
        assert_eq!(code(list(std::io::ErrorKind::PermissionDenied).into()), 4);
        let pipe: anyhow::Error = StdoutError(std::io::Error::from(std::io::ErrorKind::BrokenPipe)).into();
        assert!(is_broken_pipe(&pipe.context("writing")));
        // A pipe to a child process is not our stdout.
        let child: anyhow::Error = std::io::Error::from(std::io::ErrorKind::BrokenPipe).into();
        assert!(!is_broken_pipe(&child));
        assert_eq!(exit_code_of(&child), exit_codes::INTERNAL);
    }

    #[test]
    fn the_generate_command_repeats_settings() {
        assert_eq!(generate_command(&parse(&["check"]).global), "nixvm-gen generate");
        let g = parse(&["--flake", "a dir", "--tests-dir", "t", "--eval", "check"]).global;
        assert_eq!(generate_command(&g), "nixvm-gen --flake 'a dir' --tests-dir t --eval generate");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn paths_are_compared_as_spelled() {
        assert_eq!(normalize(Path::new("./a/../b/./c.nix")), PathBuf::from("b/c.nix"));
        assert_eq!(normalize(Path::new("../x")), PathBuf::from("../x"));
        assert_eq!(shown(Path::new("./nix/x.nix")), Path::new("nix/x.nix"));
        assert_eq!(shown(Path::new("/abs/x.nix")), Path::new("/abs/x.nix"));
    }
}
