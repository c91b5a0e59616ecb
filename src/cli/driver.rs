//! `nixvm-driver` (also installed as `nixos-test-driver`): the command line
//! of the stock driver (gen C, reference §2.1) plus `--plan`, `--keep-going`
//! and `--report-json`. The logic lives in [`crate::driver`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;

use crate::driver::abort::Abort;
use crate::driver::config::DriverConfig;
use crate::driver::interactive::{self, ReplSignals};
use crate::driver::log::{Level, Log};
use crate::driver::run::{self, BOOT_TIMEOUT, GRACE, RunOptions};
use crate::exit_codes;
use crate::plan::{Plan, PlanError};

const EXIT_CODES: &str = "\
Exit codes:
  0    every step passed
  1    a step failed
  2    invalid command line, driver configuration or plan (nothing was started)
  4    I/O or internal error (e.g. a passing run's report could not be written)
  5    a VM failed to start or died (QEMU exited, the backdoor shell closed),
       a VLAN switch died, or in the teardown a VM or switch did not stop
       within the grace period after SIGTERM (killed; named in the report)
  6    the global timeout expired, also during the teardown (reports are
       still written)
  130  interrupted by SIGINT/SIGTERM/SIGHUP, also during the start phase and
       the teardown (reports are still written)

With --interactive: 0 after `quit`/Ctrl-D, 130 after SIGTERM/SIGHUP, 5 when a
VLAN switch could not start; the VMs are always stopped before the exit.";

/// Runs a NixOS VM test plan: boots the nodes through their `run-<node>-vm`
/// scripts and executes the plan's steps over the backdoor shell.
#[derive(Debug, Parser)]
#[command(
    name = "nixvm-driver",
    version,
    about,
    after_help = EXIT_CODES,
    args_override_self = true,
    max_term_width = 100
)]
pub struct DriverCli {
    /// Driver configuration (`driverConfiguration.json` from nixpkgs).
    /// Without it, the older `startScripts`/`vlans`/`globalTimeout`
    /// environment variables are read.
    #[arg(short = 'c', long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The JSON plan written by nixvm-gen (default: `$NIXVM_PLAN`).
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Existing, writable directory for reports, screenshots and copied files.
    #[arg(
        short = 'o',
        long = "output-dir",
        alias = "output_directory",
        value_name = "DIR",
        default_value = "."
    )]
    pub output_dir: PathBuf,
    /// Log level on stderr (default: `$logLevel`, else info).
    #[arg(long, value_name = "LEVEL", value_parser = ["debug", "info", "warning", "error"])]
    pub log_level: Option<String>,
    /// Keep existing `vm-state-<node>` directories (disk images) instead of
    /// deleting them.
    #[arg(short = 'K', long = "keep-machine-state", alias = "keep-vm-state")]
    pub keep_machine_state: bool,
    /// Also write a JUnit XML report (relative to the output directory).
    #[arg(long = "junit-xml", alias = "junit", value_name = "PATH")]
    pub junit_xml: Option<PathBuf>,
    /// Where to write the JSON report (relative to the output directory).
    #[arg(long = "report-json", value_name = "PATH", default_value = "report.json")]
    pub report_json: PathBuf,
    /// After a failed step, skip the rest of its top-level step or subtest
    /// and go on with the next one (default: stop at the first failure).
    #[arg(long)]
    pub keep_going: bool,
    /// Start a prompt instead of running the plan: VMs start on demand,
    /// commands run in them (`NODE: COMMAND`), steps run one by one or all
    /// (`step N`, `run`); no global timeout, no reports. `help` lists the
    /// commands; `quit` or Ctrl-D stops the VMs and leaves.
    #[arg(short = 'I', long, overrides_with = "no_interactive")]
    pub interactive: bool,
    #[arg(long, hide = true, overrides_with = "interactive")]
    pub no_interactive: bool,
    /// Accepted for compatibility and ignored (no breakpoint hook).
    #[arg(long = "debug-hook-attach", alias = "debug-hook", value_name = "CMD")]
    pub debug_hook_attach: Option<String>,
    /// Older nixpkgs: VM names, paired with --vm-start-scripts (default:
    /// `$vmNames`).
    #[arg(long = "vm-names", hide = true, num_args = 0.., value_name = "VM-NAME")]
    pub vm_names: Option<Vec<String>>,
    /// Older nixpkgs: VM start scripts (default: `$vmStartScripts`).
    #[arg(long = "vm-start-scripts", hide = true, num_args = 0.., value_name = "VM-START-SCRIPT")]
    pub vm_start_scripts: Option<Vec<String>>,
    /// Older nixpkgs: container names; refused (no container support).
    #[arg(long = "container-names", hide = true, num_args = 0..)]
    pub container_names: Vec<String>,
    /// Older nixpkgs: container start scripts; refused.
    #[arg(long = "container-start-scripts", hide = true, num_args = 0..)]
    pub container_start_scripts: Vec<String>,
    /// Gen A compatibility: start scripts (default: `$startScripts`).
    #[arg(long = "start-scripts", hide = true, num_args = 1..)]
    pub start_scripts: Vec<String>,
    /// Gen A compatibility: VLAN numbers (default: `$vlans`).
    #[arg(long, hide = true, num_args = 0..)]
    pub vlans: Option<Vec<u32>>,
    /// Gen A compatibility: global timeout in seconds (default: `$globalTimeout`).
    #[arg(long = "global-timeout", hide = true)]
    pub global_timeout: Option<u64>,
    /// Gen A compatibility: SSH vsock offset; ignored.
    #[arg(long = "dump-vsocks", hide = true)]
    pub dump_vsocks: Option<u32>,
    /// Gen A compatibility: the Python test script; ignored (the plan runs).
    #[arg(hide = true)]
    pub testscript: Option<PathBuf>,
}

/// Entry point of the `nixvm-driver` binary.
pub fn main() -> ExitCode {
    let cli = match DriverCli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit_codes::INVALID_INPUT as u8 } else { 0 });
        }
    };
    let code = match run_cli(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nixvm-driver: error: {e:#}");
            exit_codes::INVALID_INPUT
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// The environment the driver reads, injectable for tests.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn load_config(cli: &DriverCli) -> anyhow::Result<DriverConfig> {
    if let Some(path) = &cli.config {
        return Ok(DriverConfig::from_file(path)?);
    }
    let scripts = (!cli.start_scripts.is_empty()).then(|| cli.start_scripts.join(" "));
    let vlans = cli.vlans.as_ref().map(|v| v.iter().map(u32::to_string).collect::<Vec<_>>().join(" "));
    let timeout = cli.global_timeout.map(|t| t.to_string());
    // As argparse's EnvDefault: a flag given on the command line (even with
    // no values) wins over its environment variable.
    let joined = |v: &Option<Vec<String>>| v.as_ref().map(|v| v.join(" "));
    let (vm_names, vm_scripts) = (joined(&cli.vm_names), joined(&cli.vm_start_scripts));
    let listed = |v: &[String]| (!v.is_empty()).then(|| v.join(" "));
    let (container_names, container_scripts) =
        (listed(&cli.container_names), listed(&cli.container_start_scripts));
    Ok(DriverConfig::from_env(|name| match name {
        "vmNames" => vm_names.clone().or_else(|| env(name)),
        "vmStartScripts" => vm_scripts.clone().or_else(|| env(name)),
        "containerNames" => container_names.clone().or_else(|| env(name)),
        "containerStartScripts" => container_scripts.clone().or_else(|| env(name)),
        "startScripts" => scripts.clone().or_else(|| env(name)),
        "vlans" => vlans.clone().or_else(|| env(name)),
        "globalTimeout" => timeout.clone().or_else(|| env(name)),
        _ => env(name),
    })?)
}

fn load_plan(cli: &DriverCli) -> anyhow::Result<Plan> {
    let Some(path) = cli.plan.clone().or_else(|| env("NIXVM_PLAN").map(PathBuf::from)) else {
        bail!("no plan: pass --plan plan.json (the Nix glue always does) or set NIXVM_PLAN");
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("cannot read plan {}", path.display()))?;
    Plan::from_json(&text).map_err(|e| match e {
        PlanError::Json(j) => {
            let text = j.to_string();
            let at = format!(" at line {} column {}", j.line(), j.column());
            let msg = text.strip_suffix(&at).unwrap_or(&text);
            anyhow::anyhow!("{}:{}:{}: invalid plan: {msg}", path.display(), j.line(), j.column())
        }
        other => anyhow::anyhow!("{}: {other}", path.display()),
    })
}

/// `-o`: must be an existing, writable directory; made absolute.
fn output_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    let abs =
        std::path::absolute(dir).with_context(|| format!("invalid output directory {}", dir.display()))?;
    if !abs.is_dir() {
        bail!("output directory {} does not exist (or is not a directory)", abs.display());
    }
    tempfile::tempfile_in(&abs)
        .with_context(|| format!("output directory {} is not writable", abs.display()))?;
    Ok(abs)
}

/// `XDG_RUNTIME_DIR`, else `TMPDIR`, else `/tmp` (as the stock driver).
fn tmp_dir() -> PathBuf {
    env("XDG_RUNTIME_DIR").or_else(|| env("TMPDIR")).map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
}

/// Counts SIGINT/SIGTERM/SIGHUP in a thread: the first stops the run
/// (cleanup, reports), a second one also skips the grace period.
fn count_signals(log: &Arc<Log>) -> anyhow::Result<Arc<AtomicUsize>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("cannot install a signal handler")?;
    let count = Arc::new(AtomicUsize::new(0));
    let (c, log) = (Arc::clone(&count), Arc::clone(log));
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let n = c.fetch_add(1, Ordering::Relaxed) + 1;
                if n == 1 {
                    log.warning(
                        None,
                        &format!("got signal {sig}: stopping (again to skip the grace period)"),
                    );
                } else {
                    log.warning(None, &format!("got signal {sig} again: killing without grace period"));
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(count)
}

/// The interactive mode's signal handling ([`ReplSignals`]): SIGINT
/// interrupts the running command or, at the prompt, prints a hint;
/// SIGTERM/SIGHUP end the session (cleanup), a second one skips the grace
/// period.
fn repl_signals(log: &Arc<Log>) -> anyhow::Result<ReplSignals> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("cannot install a signal handler")?;
    let state = ReplSignals::default();
    let (s, log) = (state.clone(), Arc::clone(log));
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGINT && !s.terminate.load(Ordering::Relaxed) {
                    if s.busy.load(Ordering::Relaxed) {
                        s.interrupts.fetch_add(1, Ordering::Relaxed);
                        log.warning(None, "interrupting (the prompt comes back once the command gave up)");
                    } else {
                        log.warning(None, "(type `quit` or press Ctrl-D to stop the VMs and leave)");
                    }
                    continue;
                }
                s.terminate.store(true, Ordering::Relaxed);
                s.interrupts.fetch_add(1, Ordering::Relaxed);
                log.warning(None, &format!("got signal {sig}: stopping the VMs and leaving"));
            }
        })
        .context("cannot start the signal thread")?;
    Ok(state)
}

fn run_cli(cli: DriverCli) -> anyhow::Result<i32> {
    let level = match cli.log_level.clone().or_else(|| env("logLevel")) {
        Some(l) => l.parse::<Level>().map_err(anyhow::Error::msg)?,
        None => Level::Info,
    };
    let log = Arc::new(Log::stderr(level, super::stderr_color()));
    let config = load_config(&cli)?;
    let plan = load_plan(&cli)?;
    let out_dir = output_dir(&cli.output_dir)?;
    for (flag, path) in [("--report-json", Some(&cli.report_json)), ("--junit-xml", cli.junit_xml.as_ref())] {
        if let Some(Err(e)) = path.map(|p| crate::fsutil::check_relative(&p.to_string_lossy())) {
            bail!("{flag}: {e} (reports are written inside the output directory -o)");
        }
    }
    if config.ssh_backdoor {
        log.warning(
            None,
            "warning: enable_ssh_backdoor is set, but nixvm-driver has no SSH backdoor; ignoring it",
        );
    }
    if cli.debug_hook_attach.is_some() {
        log.info(
            None,
            "note: --debug-hook-attach is accepted and ignored (nixvm-driver has no breakpoint hook)",
        );
    }
    let global_timeout = match (config.global_timeout, plan.global_timeout) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let opts = RunOptions {
        config,
        plan,
        junit_xml: cli.junit_xml.as_ref().map(|p| out_dir.join(p)),
        report_json: out_dir.join(&cli.report_json),
        out_dir,
        tmp_dir: tmp_dir(),
        keep_state: cli.keep_machine_state,
        keep_going: cli.keep_going,
        grace: GRACE,
        boot_timeout: BOOT_TIMEOUT,
    };
    // Processes of the run that leave their process group become ours, so
    // that the teardown finds them (`driver::orphans`).
    if let Err(e) = crate::driver::orphans::become_subreaper() {
        log.warning(
            None,
            &format!("cannot become a child subreaper ({e}): processes that leave their group are not swept"),
        );
    }
    if cli.interactive {
        if global_timeout.is_some() {
            log.info(None, "note: interactive mode: the global timeout does not apply");
        }
        if opts.junit_xml.is_some() || cli.report_json != Path::new("report.json") {
            log.info(None, "note: interactive mode writes no reports");
        }
        let signals = repl_signals(&log)?;
        let input = Box::new(std::io::BufReader::new(std::io::stdin()));
        return match interactive::interactive(&opts, &signals, log, input, &mut std::io::stderr()) {
            Ok(code) => Ok(code),
            Err(e) => {
                let code = e.exit_code();
                eprintln!("nixvm-driver: error: {:#}", anyhow::Error::new(e));
                Ok(code)
            }
        };
    }
    let abort = Abort::new(count_signals(&log)?, global_timeout.map(Duration::from_secs));
    match run::run(&opts, &abort, log) {
        Ok(outcome) => Ok(outcome.exit_code()),
        Err(e) => {
            let code = e.exit_code();
            eprintln!("nixvm-driver: error: {:#}", anyhow::Error::new(e));
            Ok(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn output_dir_must_exist() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(output_dir(tmp.path()).unwrap(), tmp.path());
        let err = output_dir(&tmp.path().join("missing")).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn plan_errors_name_file_line_and_column() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("plan.json");
        std::fs::write(&path, "{\n  \"version\": 1,\n  \"name\": 3 }").unwrap();
        let cli = DriverCli::try_parse_from(["d", "--plan", path.to_str().unwrap()]).unwrap();
        let err = load_plan(&cli).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{}:3:11: invalid plan: invalid type: integer `3`, expected a string",
                path.display()
            )),
            "{err}"
        );
        std::fs::write(&path, r#"{"version": 9, "name": "x", "nodes": [], "steps": []}"#).unwrap();
        let err = load_plan(&cli).unwrap_err().to_string();
        assert!(err.contains("plan version 9 is not supported"), "{err}");
    }

    #[test]
    fn cli_is_consistent() {
        DriverCli::command().debug_assert();
    }

    #[test]
    fn accepts_the_stock_flags() {
        let cli = DriverCli::try_parse_from([
            "nixos-test-driver",
            "--config",
            "c.json",
            "--plan",
            "p.json",
            "--log-level",
            "debug",
            "-o",
            "/out",
            "--keep-vm-state",
            "--junit=junit.xml",
            "--debug-hook=/attach",
            "--keep-going",
            "--keep-going",
        ])
        .unwrap();
        assert!(cli.keep_machine_state && cli.keep_going);
        assert_eq!(cli.junit_xml, Some(PathBuf::from("junit.xml")));
        assert_eq!(cli.debug_hook_attach.as_deref(), Some("/attach"));
        assert!(DriverCli::try_parse_from(["d", "--output_directory", "/o"]).is_ok());
        assert!(DriverCli::try_parse_from(["d", "--log-level", "loud"]).is_err());
    }

    #[test]
    fn accepts_the_older_command_line() {
        // The form of nixpkgs whose driver takes names and start scripts on
        // the command line (or from vmNames/vmStartScripts), with the test
        // script as a positional argument.
        let cli = DriverCli::try_parse_from([
            "nixos-test-driver",
            "--vm-names",
            "server",
            "client",
            "--vm-start-scripts",
            "/n/a/bin/run-server-vm",
            "/n/b/bin/run-client-vm",
            "--container-names",
            "--container-start-scripts",
            "--vlans",
            "1",
            "2",
            "--global-timeout",
            "60",
            "/n/t/test-script",
        ])
        .unwrap();
        let config = load_config(&cli).unwrap();
        assert_eq!(config.vms.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["client", "server"]);
        assert_eq!(config.vms[1].start_script, "/n/a/bin/run-server-vm");
        assert_eq!((config.vlans, config.global_timeout), (vec![1, 2], Some(60)));
        assert_eq!(cli.testscript.as_deref(), Some(Path::new("/n/t/test-script")));
        let uneven =
            DriverCli::try_parse_from(["d", "--vm-names", "a", "b", "--vm-start-scripts", "/x"]).unwrap();
        assert!(load_config(&uneven).unwrap_err().to_string().contains("2 VM names but 1 VM start scripts"));
        let containers = DriverCli::try_parse_from([
            "d",
            "--vm-start-scripts",
            "/x/bin/run-a-vm",
            "--container-names",
            "c",
            "--container-start-scripts",
            "/x/bin/run-c-container",
        ])
        .unwrap();
        assert!(
            load_config(&containers).unwrap_err().to_string().contains("containers (c) are not supported")
        );
    }

    #[test]
    fn interactive_flag_and_its_negation() {
        assert!(DriverCli::try_parse_from(["d", "-I"]).unwrap().interactive);
        // extraDriverArgs come first; a later --no-interactive wins, and vice versa.
        assert!(!DriverCli::try_parse_from(["d", "--interactive", "--no-interactive"]).unwrap().interactive);
        assert!(DriverCli::try_parse_from(["d", "--no-interactive", "-I"]).unwrap().interactive);
    }
}
