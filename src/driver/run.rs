//! One run of a plan: validate, start the VLANs and all VMs (in parallel),
//! execute the steps, clean up, write the reports.
//!
//! ```text
//! validate ─► VLANs ─► start all VMs ─► step* ─► sync ─► cleanup ─► reports
//!                          │ fail          │ fail/stop       ▲
//!                          └───────────────┴─────────────────┘
//! ```
//!
//! Every path ends in the [`teardown`] (QEMU and switches are stopped by
//! process group, then the processes that left their groups) and in the
//! report files, including the global timeout and SIGINT/SIGTERM; what did
//! not stop cleanly is a failure of phase `teardown`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::abort::{Abort, StopReason};
use super::config::DriverConfig;
use super::events::{DriverEvent, EventSink, Failure, Phase, RunResult, StepPath, StepStatus};
use super::log::Log;
use super::report::terminal::TerminalSink;
use super::report::{self, ReportBuilder, RunReport, count_steps, describe};
use super::steps::{self, StepCtx, StepError};
use super::teardown;
use super::vlan::{self, Vlan};
use super::vm::{self, MAX_SOCKET_PATH, Machine, VmError, VmSetup};
use crate::plan::Plan;
use crate::spec::{Action, Step};

/// Everything a run needs, resolved by the CLI.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub config: DriverConfig,
    pub plan: Plan,
    /// Existing, writable output directory (absolute).
    pub out_dir: PathBuf,
    /// Where state directories, sockets and VLAN control dirs live.
    pub tmp_dir: PathBuf,
    pub keep_state: bool,
    pub keep_going: bool,
    pub junit_xml: Option<PathBuf>,
    pub report_json: PathBuf,
    /// SIGTERM → SIGKILL grace period for QEMU and switches.
    pub grace: Duration,
    /// Bound for starting every VM and reaching its backdoor shell.
    pub boot_timeout: Duration,
}

/// Default of [`RunOptions::boot_timeout`]: the `start` action's default.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(600);
/// Default of [`RunOptions::grace`].
pub const GRACE: Duration = Duration::from_secs(5);

/// Problems found before anything is started (exit code 2, no report).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "the plan names node `{node}`, which the driver configuration does not define (configured: {configured})"
    )]
    UnknownNode { node: String, configured: String },
    #[error(
        "socket path {} is {len} bytes long, but Unix sockets allow at most {MAX_SOCKET_PATH}; \
         use a shorter temporary directory (set XDG_RUNTIME_DIR or TMPDIR) or a shorter node name",
        path.display()
    )]
    SocketPath { path: PathBuf, len: usize },
    #[error(
        "node name {name:?} cannot name a state directory (`vm-state-<node>`): it is empty or contains `/` or NUL"
    )]
    NodeName { name: String },
    #[error("cannot create the temporary directory {}", path.display())]
    TmpDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SetupError {
    /// Usage problems exit with `INVALID_INPUT`, I/O problems with `INTERNAL`.
    pub fn exit_code(&self) -> i32 {
        match self {
            SetupError::UnknownNode { .. } | SetupError::SocketPath { .. } | SetupError::NodeName { .. } => {
                crate::exit_codes::INVALID_INPUT
            }
            SetupError::TmpDir { .. } => crate::exit_codes::INTERNAL,
        }
    }
}

/// The end of a run.
#[derive(Debug)]
pub struct Outcome {
    pub result: RunResult,
    pub report: RunReport,
    /// Report files that could not be written.
    pub write_errors: Vec<String>,
}

impl Outcome {
    /// The process exit code ([`crate::exit_codes`]).
    pub fn exit_code(&self) -> i32 {
        if self.result == RunResult::Passed && !self.write_errors.is_empty() {
            return crate::exit_codes::INTERNAL;
        }
        self.result.exit_code()
    }
}

/// Checks what can be checked before starting anything.
pub fn validate(opts: &RunOptions) -> Result<(), SetupError> {
    // The name becomes a path component that is deleted recursively
    // (`Machine::new`), so `a/../..` must not get that far.
    if let Some(vm) = opts.config.vms.iter().find(|v| v.name.is_empty() || v.name.contains(['/', '\0'])) {
        return Err(SetupError::NodeName { name: vm.name.clone() });
    }
    for node in &opts.plan.nodes {
        if !opts.config.vms.iter().any(|v| &v.name == node) {
            let configured = opts.config.vms.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", ");
            return Err(SetupError::UnknownNode { node: node.clone(), configured });
        }
    }
    if let Some(node) = first_unknown_node(&opts.plan.steps, opts) {
        let configured = opts.config.vms.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", ");
        return Err(SetupError::UnknownNode { node, configured });
    }
    let mut paths: Vec<PathBuf> =
        opts.config.vms.iter().flat_map(|v| vm::socket_paths(&opts.tmp_dir, &v.name)).collect();
    paths.extend(opts.config.vlans.iter().map(|n| vlan::socket_dir(&opts.tmp_dir, *n).join("ctl")));
    for path in paths {
        let len = path.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(SetupError::SocketPath { path, len });
        }
    }
    Ok(())
}

/// [`validate`], then creates the temporary and shared directories with
/// mode 0700, like the stock driver (`mkdir(mode=0o700, exist_ok=True)`):
/// other users must not reach the guests' sockets or shared files. An
/// existing temporary directory (`/tmp`, `$XDG_RUNTIME_DIR`) keeps its mode;
/// `shared-xchg` is ours and is made 0700 in any case.
pub(super) fn prepare(opts: &RunOptions) -> Result<(), SetupError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    validate(opts)?;
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| SetupError::TmpDir { path, source }
    };
    let mk = |path: &Path| std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path);
    mk(&opts.tmp_dir).map_err(err(&opts.tmp_dir))?;
    let shared = opts.tmp_dir.join("shared-xchg");
    mk(&shared).map_err(err(&shared))?;
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o700)).map_err(err(&shared))
}

fn first_unknown_node(steps: &[Step], opts: &RunOptions) -> Option<String> {
    steps.iter().find_map(|s| match &s.action {
        Action::Subtest { steps, .. } => first_unknown_node(steps, opts),
        a if a.needs_node() => match &s.node {
            Some(n) if opts.config.vms.iter().any(|v| &v.name == n) => None,
            Some(n) => Some(n.clone()),
            None => Some("(none)".to_owned()),
        },
        _ => None,
    })
}

/// The live log and the report, fed the same events.
pub(super) struct Sinks {
    pub(super) terminal: TerminalSink,
    pub(super) report: ReportBuilder,
}

impl Sinks {
    pub(super) fn new(plan: &Plan, log: Arc<Log>) -> Sinks {
        Sinks { terminal: TerminalSink::new(log), report: ReportBuilder::new(plan) }
    }

    /// Hands `event` to both sinks, its failure's texts cut to
    /// [`super::events::MAX_TEXT`] first.
    pub(super) fn emit(&mut self, mut event: DriverEvent) {
        match &mut event {
            DriverEvent::VmFailed { failure, .. }
            | DriverEvent::StepFinished { failure: Some(failure), .. } => {
                *failure = std::mem::take(failure).bounded();
            }
            _ => {}
        }
        self.terminal.handle(&event);
        self.report.handle(&event);
    }
}

/// How a list of steps ended.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    /// A step failed under `--keep-going`: skip the rest of the current
    /// top-level item, then go on.
    EndItem,
    /// Stop running steps.
    Halt,
}

/// Executes steps on a set of machines it borrows (the interactive mode
/// keeps them between commands).
pub(super) struct Runner<'a> {
    machines: &'a mut BTreeMap<String, Machine>,
    abort: &'a Abort,
    opts: &'a RunOptions,
    log: &'a Log,
    pub(super) sinks: Sinks,
    /// Leaf step numbers by path, fixed up front so skipped steps keep theirs.
    numbers: BTreeMap<StepPath, usize>,
    pub(super) failed: bool,
    pub(super) vm_failed: bool,
    pub(super) stop: Option<StopReason>,
    /// Where the run was when it stopped (`during step 2 on node a`).
    pub(super) stop_at: Option<String>,
    /// The run's switches, checked before each step (the interactive mode
    /// does not watch them).
    pub(super) vlans: Option<&'a mut [Vlan]>,
    /// Names captured so far (`capture`), read by later commands.
    captures: Vec<String>,
}

/// Runs the plan. Returns `Err` only for setup problems found before
/// anything was started; everything later is in the [`Outcome`].
pub fn run(opts: &RunOptions, abort: &Abort, log: Arc<Log>) -> Result<Outcome, SetupError> {
    prepare(opts)?;

    let started = Instant::now();
    let mut sinks = Sinks::new(&opts.plan, log.clone());
    sinks.emit(DriverEvent::RunStarted {
        name: opts.plan.name.clone(),
        nodes: opts.plan.nodes.clone(),
        total_steps: count_steps(&opts.plan.steps),
    });
    if !opts.keep_state {
        log.info(None, "Machine state will be reset. To keep it, pass --keep-machine-state");
    }

    let (mut vlans, mut error) = start_vlans(opts, &log);
    let mut machines = BTreeMap::new();
    if error.is_none() {
        match prepare_machines(opts, &vlans, &log) {
            Ok(m) => machines = m,
            Err(e) => error = Some(e),
        }
    }

    let mut runner = Runner::new(&mut machines, abort, opts, &log, sinks);
    runner.vm_failed = error.is_some();
    runner.vlans = Some(&mut vlans);
    if let Some(deadline) = abort.deadline() {
        let secs = deadline.saturating_duration_since(Instant::now()).as_secs_f64().round();
        log.info(None, &format!("Test will time out and terminate in {secs} seconds"));
    }
    if error.is_none() && runner.start_all() {
        log.header(None, "run the VM test script");
        let t = Instant::now();
        runner.run_list(&opts.plan.steps, &[]);
        log.finished(None, "run the VM test script", t.elapsed());
    }
    let at = runner.stop_at.clone().unwrap_or_default();
    if runner.stop == Some(StopReason::GlobalTimeout) {
        log.test_error("timeout reached; test terminating...");
        error.get_or_insert_with(|| format!("the global timeout expired{at}"));
    } else if runner.stop == Some(StopReason::Interrupted) {
        error.get_or_insert_with(|| format!("interrupted by a signal{at}"));
    } else if !runner.failed && !runner.vm_failed && opts.keep_state {
        // Only a later `--keep-machine-state` run reads the guests' disks;
        // otherwise their state directories are deleted, and a `sync` is one
        // more round trip per node in the teardown.
        runner.sync_all();
    }
    let mut result = match runner.stop {
        Some(StopReason::GlobalTimeout) => RunResult::TimedOut,
        Some(StopReason::Interrupted) => RunResult::Interrupted,
        None if runner.vm_failed => RunResult::VmFailed,
        None if runner.failed => RunResult::Failed,
        None => RunResult::Passed,
    };
    let stopped = runner.stop;
    let mut sinks = runner.sinks;
    // The nodes the teardown stops, for a stop that comes during it.
    let running: Vec<&str> = machines.values().filter(|m| m.is_running()).map(Machine::name).collect();
    let of_nodes =
        if running.is_empty() { String::new() } else { format!(" of node(s) {}", running.join(", ")) };
    let teardown = teardown::stop_all(&mut machines, vlans, &abort.for_teardown(), opts, &log);
    let then = |error: Option<String>, what: &str| {
        Some(match error {
            Some(e) => format!("{e}; then {what}"),
            None => what.to_owned(),
        })
    };
    if stopped.is_none() && abort.interrupted() {
        // The signal came after the last step: the documented exit code of
        // an interrupted run all the same.
        result = RunResult::Interrupted;
        error = then(error, &format!("interrupted by a signal during teardown{of_nodes}"));
    } else if stopped.is_none() && abort.deadline_passed() {
        // The global timeout bounds the teardown too (it cut the grace
        // period short).
        log.test_error("timeout reached during teardown; test terminating...");
        result = RunResult::TimedOut;
        error = then(error, &format!("the global timeout expired during teardown{of_nodes}"));
    }
    if !teardown.is_empty() {
        // A VM or switch that would not stop is a VM failure, as one that
        // would not start; a stop or timeout keeps its own exit code.
        let mut who: Vec<&str> = Vec::new();
        for (w, _) in &teardown {
            if !who.contains(&w.as_str()) {
                who.push(w);
            }
        }
        let what = format!("{} did not stop cleanly during teardown", who.join(", "));
        error = then(error, &what);
        if matches!(result, RunResult::Passed | RunResult::Failed) {
            result = RunResult::VmFailed;
        }
        for (_, failure) in teardown {
            let node = failure.node.clone().unwrap_or_default();
            sinks.emit(DriverEvent::VmFailed { node, failure });
        }
    }
    sinks.emit(DriverEvent::RunFinished { result, duration: started.elapsed(), error });

    let report = sinks.report.report().clone();
    let mut write_errors = Vec::new();
    let mut write = |path: &Path, what: &str, res: std::io::Result<()>| {
        if let Err(e) = res {
            let msg = format!("cannot write the {what} {}: {e}", path.display());
            log.test_error(&msg);
            write_errors.push(msg);
        }
    };
    write(&opts.report_json, "JSON report", report::json::write(&report, &opts.report_json));
    if let Some(junit) = &opts.junit_xml {
        write(junit, "JUnit report", report::junit::write(&report, junit));
    }
    Ok(Outcome { result, report, write_errors })
}

/// The first dead switch's story, if one died.
fn dead_vlan(vlans: &mut [Vlan]) -> Option<String> {
    vlans.iter_mut().find_map(Vlan::died)
}

/// Starts one switch per VLAN (header and timing in the log). On a failure
/// the switches started so far are returned with the error.
pub(super) fn start_vlans(opts: &RunOptions, log: &Arc<Log>) -> (Vec<Vlan>, Option<String>) {
    let mut vlans = Vec::new();
    let mut error = None;
    let t = Instant::now();
    log.header(None, "start all VLans");
    for nr in &opts.config.vlans {
        match Vlan::start(*nr, &opts.tmp_dir, log) {
            Ok(v) => vlans.push(v),
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    log.finished(None, "start all VLans", t.elapsed());
    (vlans, error)
}

/// Creates the machine objects (state directories, nothing started).
pub(super) fn prepare_machines(
    opts: &RunOptions,
    vlans: &[Vlan],
    log: &Arc<Log>,
) -> Result<BTreeMap<String, Machine>, String> {
    let env: Vec<(OsString, OsString)> = vlans.iter().map(Vlan::env).collect();
    let mut machines = BTreeMap::new();
    for vm in &opts.config.vms {
        let setup = VmSetup {
            name: vm.name.clone(),
            start_script: vm.start_script.clone(),
            tmp_dir: opts.tmp_dir.clone(),
            env: env.clone(),
            keep_state: opts.keep_state,
            grace: opts.grace,
        };
        let m = Machine::new(setup, log.clone()).map_err(|e| e.to_string())?;
        machines.insert(vm.name.clone(), m);
    }
    Ok(machines)
}

/// Starts every machine and waits for its backdoor shell, all in parallel
/// (one thread each, bounded by `deadline`); results in name order.
pub(super) fn boot_all(
    machines: &mut BTreeMap<String, Machine>,
    deadline: Instant,
    abort: &Abort,
) -> Vec<(String, Result<(), VmError>)> {
    boot_all_timed(machines, deadline, abort).into_iter().map(|(name, r, _, _)| (name, r)).collect()
}

/// [`boot_all`] with the phase a failure happened in and the instant each
/// node's boot ended (for the timeline).
pub(super) fn boot_all_timed(
    machines: &mut BTreeMap<String, Machine>,
    deadline: Instant,
    abort: &Abort,
) -> Vec<(String, Result<(), VmError>, Phase, Instant)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = machines
            .values_mut()
            .map(|m| {
                let name = m.name().to_owned();
                let h = s.spawn(move || {
                    let started = m.start(deadline, abort);
                    let phase = if started.is_ok() { Phase::Boot } else { Phase::Start };
                    let r = started.and_then(|()| m.connect(deadline, abort));
                    (r, phase, Instant::now())
                });
                (name, h)
            })
            .collect();
        handles
            .into_iter()
            .map(|(name, h)| {
                let (r, phase, at) = h.join().unwrap_or_else(|_| {
                    (
                        Err(VmError::NotRunning { node: format!("{name} (the start thread panicked)") }),
                        Phase::Start,
                        Instant::now(),
                    )
                });
                (name, r, phase, at)
            })
            .collect()
    })
}

/// Numbers the leaf steps 1, 2, … in plan order (subtests are not numbered).
pub(super) fn number_steps(steps: &[Step]) -> BTreeMap<StepPath, usize> {
    fn walk(steps: &[Step], prefix: &[usize], map: &mut BTreeMap<StepPath, usize>) {
        for (i, step) in steps.iter().enumerate() {
            let mut path = prefix.to_vec();
            path.push(i);
            match &step.action {
                Action::Subtest { steps, .. } => walk(steps, &path, map),
                _ => {
                    let n = map.len() + 1;
                    map.insert(path, n);
                }
            }
        }
    }
    let mut map = BTreeMap::new();
    walk(steps, &[], &mut map);
    map
}

impl<'a> Runner<'a> {
    pub(super) fn new(
        machines: &'a mut BTreeMap<String, Machine>,
        abort: &'a Abort,
        opts: &'a RunOptions,
        log: &'a Log,
        sinks: Sinks,
    ) -> Runner<'a> {
        Runner {
            machines,
            abort,
            opts,
            log,
            sinks,
            numbers: number_steps(&opts.plan.steps),
            failed: false,
            vm_failed: false,
            stop: None,
            stop_at: None,
            vlans: None,
            captures: Vec::new(),
        }
    }

    /// Starts every VM in parallel and waits for their shells. Returns
    /// whether all came up.
    pub(super) fn start_all(&mut self) -> bool {
        let t = Instant::now();
        self.log.header(None, "start all VMs");
        let deadline = Instant::now() + self.opts.boot_timeout;
        let results = boot_all_timed(self.machines, deadline, self.abort);
        let mut ok = true;
        let mut stopped = Vec::new();
        for (node, r, phase, ready) in results {
            let booted = DriverEvent::NodeBooted { node: node.clone(), started: t, ready, ok: r.is_ok() };
            self.sinks.emit(booted);
            match r {
                Ok(()) => {}
                Err(VmError::Stopped(reason)) => {
                    self.stop.get_or_insert(reason);
                    stopped.push(format!("{node} ({phase})"));
                    ok = false;
                }
                Err(e) => {
                    ok = false;
                    self.vm_failed = true;
                    let mut f = Failure::new(e.to_string());
                    f.node = Some(node.clone());
                    f.phase = Some(phase);
                    self.sinks.emit(DriverEvent::VmFailed { node, failure: f });
                }
            }
        }
        if !stopped.is_empty() {
            self.stop_at = Some(format!(" while starting node(s) {}", stopped.join(", ")));
        }
        self.log.finished(None, "start all VMs", t.elapsed());
        ok
    }

    pub(super) fn run_list(&mut self, steps: &[Step], prefix: &[usize]) -> Flow {
        for (i, step) in steps.iter().enumerate() {
            if let Err(r) = self.abort.check() {
                self.stop.get_or_insert(r);
                return Flow::Halt;
            }
            let mut path: StepPath = prefix.to_vec();
            path.push(i);
            let flow = match &step.action {
                Action::Subtest { steps: inner, .. } => self.run_subtest(step, inner, path),
                _ => self.run_leaf(step, path),
            };
            match flow {
                Flow::Continue => {}
                Flow::EndItem if prefix.is_empty() => {}
                other => return other,
            }
        }
        Flow::Continue
    }

    fn run_subtest(&mut self, step: &Step, inner: &[Step], path: StepPath) -> Flow {
        let description = describe(step);
        self.sinks.emit(DriverEvent::StepStarted {
            path: path.clone(),
            number: None,
            node: None,
            description: description.clone(),
        });
        let t = Instant::now();
        let failed_before = (self.failed, self.vm_failed, self.stop);
        let flow = self.run_list(inner, &path);
        let failed_inside =
            (self.failed, self.vm_failed, self.stop) != failed_before || flow != Flow::Continue;
        let status = if failed_inside { StepStatus::Failed } else { StepStatus::Passed };
        if failed_inside {
            self.log.test_error(&format!("Test \"{}\" failed", description.trim_start_matches("subtest: ")));
        }
        self.sinks.emit(DriverEvent::StepFinished {
            path,
            number: None,
            node: None,
            description,
            status,
            duration: t.elapsed(),
            failure: None,
        });
        flow
    }

    pub(super) fn run_leaf(&mut self, step: &Step, path: StepPath) -> Flow {
        let number = self.numbers.get(&path).copied();
        let node = if step.action.needs_node() { step.node.clone() } else { None };
        let phase = match step.action {
            Action::Snapshot { .. } | Action::Restore { .. } => Phase::Snapshot,
            _ => Phase::Step,
        };
        // The node a failure names: a step on all nodes names them all.
        let failed_on = match (&node, phase) {
            (Some(n), _) => Some(n.clone()),
            (None, Phase::Snapshot) => Some(self.machines.keys().cloned().collect::<Vec<_>>().join(", ")),
            (None, _) => None,
        };
        let description = describe(step);
        self.sinks.emit(DriverEvent::StepStarted {
            path: path.clone(),
            number,
            node: node.clone(),
            description: description.clone(),
        });
        let t = Instant::now();
        let mut ctx = StepCtx {
            machines: self.machines,
            abort: self.abort,
            out_dir: &self.opts.out_dir,
            log: self.log,
            captures: &mut self.captures,
        };
        let dead = self.vlans.as_deref_mut().and_then(dead_vlan);
        let switch_died = dead.is_some();
        let result = match dead {
            // The network is gone: no step can be trusted any more.
            Some(why) => Err(StepError::Vm(Box::new(Failure::new(why)))),
            None => steps::run_step(&mut ctx, step),
        };
        let fail_flow = if self.opts.keep_going { Flow::EndItem } else { Flow::Halt };
        let (status, failure, flow) = match result {
            Ok(()) => (StepStatus::Passed, None, Flow::Continue),
            Err(StepError::Failed(f)) => {
                self.failed = true;
                (StepStatus::Failed, Some(*f), fail_flow)
            }
            Err(StepError::Vm(f)) => {
                self.vm_failed = true;
                (StepStatus::Failed, Some(*f), fail_flow)
            }
            Err(StepError::Stopped(r)) => {
                self.stop.get_or_insert(r);
                let on = failed_on.as_deref().map(|n| format!(" on {n}")).unwrap_or_default();
                let n = number.map(|n| format!(" {n}")).unwrap_or_default();
                let kind = if phase == Phase::Snapshot { "snapshot step" } else { "step" };
                self.stop_at.get_or_insert(format!(" during {kind}{n}{on} ({description})"));
                (
                    StepStatus::Failed,
                    Some(Failure::new(format!("{r} while this step was running"))),
                    Flow::Halt,
                )
            }
        };
        // A step that failed because its switch died says so.
        let failure = failure.map(|mut f| {
            if !switch_died {
                if let Some(why) = self.vlans.as_deref_mut().and_then(dead_vlan) {
                    self.vm_failed = true;
                    f.details.push(super::events::Detail { title: "the network".to_owned(), text: why });
                }
            }
            f.node = f.node.or_else(|| failed_on.clone());
            f.phase = f.phase.or(Some(phase));
            f
        });
        let flow = if switch_died { Flow::Halt } else { flow };
        self.sinks.emit(DriverEvent::StepFinished {
            path,
            number,
            node,
            description,
            status,
            duration: t.elapsed(),
            failure,
        });
        flow
    }

    /// `sync` on every connected machine after a successful run that keeps
    /// the machine state, so guests flush what a later run would read.
    pub(super) fn sync_all(&mut self) {
        for m in self.machines.values_mut() {
            if m.is_connected() {
                let deadline = Instant::now() + Duration::from_secs(30);
                if let Err(e) = m.execute("sync", Some(28), deadline, self.abort) {
                    self.log.warning(Some(m.name()), &format!("sync failed: {e}"));
                }
            }
        }
    }
}
