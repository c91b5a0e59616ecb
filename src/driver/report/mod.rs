//! Reports built from the event stream: the live progress on stderr
//! ([`terminal`]), `report.json` ([`json`]) and JUnit XML ([`junit`]).
//!
//! Report files are written when the run finishes, whatever the reason
//! (failure, VM death, global timeout, signal).

pub mod json;
pub mod junit;
pub mod terminal;

use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::events::{DriverEvent, EventSink, Failure, RunResult, StepPath, StepStatus};
use crate::plan::Plan;
use crate::spec::{Action, Step};

/// Version of the `report.json` schema (see `docs/driver.md`). 2 added the
/// timeline: `startedAt`, `boots`, and each step's `startSecs`/`endSecs`.
pub const REPORT_SCHEMA_VERSION: u32 = 2;

/// One step (or subtest) in the report. `Deserialize` reads reports back
/// (`nixvm-gen report`); fields added after schema 1 are optional.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    /// Leaf step number (1-based, as in the progress lines); absent for subtests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<usize>,
    /// The action key (`waitForUnit`, `subtest`, …).
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
    pub status: StepStatus,
    pub duration_secs: f64,
    /// Seconds from the start of the run to the start of the step (absent
    /// when it never ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_secs: Option<f64>,
    /// Seconds from the start of the run to the end of the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_secs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// Files the step wrote into the output directory (screenshots),
    /// relative to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepReport>,
}

/// How long one node took from the start of its VM to its backdoor shell,
/// at the beginning of the run (`start`/`reboot` steps are steps).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootReport {
    pub node: String,
    /// Seconds from the start of the run.
    pub start_secs: f64,
    pub end_secs: f64,
    /// Whether the shell came up.
    pub ok: bool,
}

/// Counts of leaf steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// The whole run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub schema_version: u32,
    pub name: String,
    /// Wall-clock start of the run, RFC 3339 in UTC (`2026-12-01T04:14:27.123Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    pub result: RunResult,
    pub exit_code: i32,
    pub duration_secs: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub nodes: Vec<String>,
    /// Boot of each node at the start of the run, in node order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub boots: Vec<BootReport>,
    /// VMs that failed to start (phase `start` or `boot`) and VMs or VLAN
    /// switches that did not stop cleanly (phase `teardown`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vm_failures: Vec<Failure>,
    pub summary: Summary,
    pub steps: Vec<StepReport>,
}

/// Human description of a step, worded like the stock driver's log blocks.
pub fn describe(step: &Step) -> String {
    match &step.action {
        Action::Python { .. } => "python code for the stock driver".to_string(),
        Action::WaitForUnit { unit, user } => match user {
            Some(u) => format!("waiting for unit {unit} with user {u}"),
            None => format!("waiting for unit {unit}"),
        },
        Action::WaitForOpenPort { port, addr } => {
            format!("waiting for TCP port {port} on {}", addr.as_deref().unwrap_or("localhost"))
        }
        Action::WaitForClosedPort { port, addr } => {
            format!("waiting for TCP port {port} on {} to be closed", addr.as_deref().unwrap_or("localhost"))
        }
        Action::WaitForFile { path } => format!("waiting for file '{path}'"),
        // The stock log blocks of wait_for_open_unix_socket and wait_for_shutdown.
        Action::WaitForOpenUnixSocket { path, datagram } => {
            format!("waiting for UNIX-domain {} on '{path}'", if *datagram { "datagram" } else { "stream" })
        }
        Action::WaitForShutdown => "waiting for the VM to power off".to_owned(),
        Action::WaitForConsoleText { regex } => format!("waiting for {regex} to appear on console"),
        Action::Succeed { command, .. } => format!("must succeed: {command}"),
        Action::Fail { command } => format!("must fail: {command}"),
        Action::WaitUntilSucceeds { command, .. } => format!("waiting for success: {command}"),
        Action::Execute { command, .. } => format!("executing: {command}"),
        Action::WaitUntilFails { command } => format!("waiting for failure: {command}"),
        Action::Systemctl { query, user, .. } => match user {
            Some(u) => format!("systemctl --user {query} (as {u})"),
            None => format!("systemctl {query}"),
        },
        // The stock log block of require_unit_state.
        Action::RequireUnitState { unit, state, .. } => {
            format!("checking if unit '{unit}' has reached state '{state}'")
        }
        Action::StartJob { unit, .. } => format!("starting {unit}"),
        Action::StopJob { unit, .. } => format!("stopping {unit}"),
        Action::Sleep { seconds } => format!("sleeping for {seconds} seconds"),
        Action::Http { url, status, .. } => format!("HTTP GET {url} (expecting status {status})"),
        Action::Start => "starting vm".to_owned(),
        Action::Shutdown => "shutting down".to_owned(),
        Action::Crash => "forced crash".to_owned(),
        Action::Reboot => "rebooting".to_owned(),
        Action::Block => "blocking the first VLAN interface".to_owned(),
        Action::Unblock => "unblocking the first VLAN interface".to_owned(),
        Action::CopyFromVm { source, .. } => format!("copying {source} from the VM"),
        Action::CopyFromHost { source, target } => format!("copying {source} to {target} in the VM"),
        Action::ForwardPort { host_port, guest_port } => {
            format!("forwarding host port {host_port} to guest port {guest_port}")
        }
        Action::Screenshot { name } => format!("making screenshot {name}"),
        // The stock log lines of send_key/send_chars, wait_until_tty_matches,
        // wait_for_text, wait_for_x and wait_for_window.
        Action::SendKeys { keys } => match keys.as_slice() {
            [one] => format!("sending key {one:?}"),
            many => format!("sending keys {many:?}"),
        },
        Action::SendChars { chars } => format!("sending keys {chars:?}"),
        Action::WaitUntilTtyMatches { tty, regex } => format!("waiting for {regex} to appear on tty {tty}"),
        Action::DumpTtyContents { tty } => format!("dumping the contents of tty {tty} to the journal"),
        Action::WaitForText { regex } => format!("waiting for {regex} to appear on screen"),
        Action::WaitForX => "waiting for the X11 server".to_owned(),
        Action::WaitForWindow { regex } => format!("waiting for a window matching {regex} to appear"),
        Action::Subtest { title, .. } => format!("subtest: {title}"),
        Action::Snapshot { name } => format!("saving snapshot {name} of every node"),
        Action::Restore { name } => format!("restoring snapshot {name} on every node"),
    }
}

/// Number of leaf steps (subtests count their children).
pub fn count_steps(steps: &[Step]) -> usize {
    steps
        .iter()
        .map(|s| match &s.action {
            Action::Subtest { steps, .. } => count_steps(steps),
            _ => 1,
        })
        .sum()
}

/// Builds the [`RunReport`] from events; every planned step starts as
/// skipped, so steps never reached show up as such.
pub struct ReportBuilder {
    report: RunReport,
    /// Start of the run: step and boot times are offsets from it.
    t0: Instant,
}

fn skeleton(steps: &[Step], next: &mut usize) -> Vec<StepReport> {
    steps
        .iter()
        .map(|s| {
            let (number, children) = match &s.action {
                Action::Subtest { steps, .. } => (None, skeleton(steps, next)),
                _ => {
                    *next += 1;
                    (Some(*next), Vec::new())
                }
            };
            StepReport {
                number,
                action: s.action.key().to_owned(),
                node: if s.action.needs_node() { s.node.clone() } else { None },
                description: describe(s),
                timeout_secs: s.timeout.and_then(crate::spec::Num::literal),
                status: StepStatus::Skipped,
                duration_secs: 0.0,
                start_secs: None,
                end_secs: None,
                failure: None,
                files: match &s.action {
                    // As `steps::screenshot` names it.
                    Action::Screenshot { name } if name.contains('.') => vec![name.clone()],
                    Action::Screenshot { name } => vec![format!("{name}.png")],
                    _ => Vec::new(),
                },
                steps: children,
            }
        })
        .collect()
}

impl ReportBuilder {
    pub fn new(plan: &Plan) -> ReportBuilder {
        let mut next = 0;
        ReportBuilder {
            report: RunReport {
                schema_version: REPORT_SCHEMA_VERSION,
                name: plan.name.clone(),
                started_at: None,
                result: RunResult::Passed,
                exit_code: 0,
                duration_secs: 0.0,
                error: None,
                nodes: plan.nodes.clone(),
                boots: Vec::new(),
                vm_failures: Vec::new(),
                summary: Summary::default(),
                steps: skeleton(&plan.steps, &mut next),
            },
            t0: Instant::now(),
        }
    }

    fn find(&mut self, path: &StepPath) -> Option<&mut StepReport> {
        let (first, rest) = path.split_first()?;
        let mut cur = self.report.steps.get_mut(*first)?;
        for i in rest {
            cur = cur.steps.get_mut(*i)?;
        }
        Some(cur)
    }

    pub fn report(&self) -> &RunReport {
        &self.report
    }
}

fn summarize(steps: &[StepReport], sum: &mut Summary) {
    for s in steps {
        if s.action == "subtest" {
            summarize(&s.steps, sum);
            continue;
        }
        sum.total += 1;
        match s.status {
            StepStatus::Passed => sum.passed += 1,
            StepStatus::Failed => sum.failed += 1,
            StepStatus::Skipped => sum.skipped += 1,
        }
    }
}

impl EventSink for ReportBuilder {
    fn handle(&mut self, event: &DriverEvent) {
        let now = secs(self.t0.elapsed());
        match event {
            DriverEvent::RunStarted { .. } => {
                self.t0 = Instant::now();
                self.report.started_at = Some(rfc3339(SystemTime::now()));
            }
            DriverEvent::VmFailed { failure, .. } => self.report.vm_failures.push(failure.clone()),
            DriverEvent::NodeBooted { node, started, ready, ok } => {
                let offset = |t: &Instant| secs(t.saturating_duration_since(self.t0));
                self.report.boots.push(BootReport {
                    node: node.clone(),
                    start_secs: offset(started),
                    end_secs: offset(ready),
                    ok: *ok,
                });
            }
            DriverEvent::StepStarted { path, .. } => {
                if let Some(step) = self.find(path) {
                    step.start_secs = Some(now);
                }
            }
            DriverEvent::StepFinished { path, status, duration, failure, .. } => {
                if let Some(step) = self.find(path) {
                    step.status = *status;
                    step.duration_secs = secs(*duration);
                    step.start_secs.get_or_insert((now - step.duration_secs).max(0.0));
                    step.end_secs = Some(now);
                    step.failure = failure.clone();
                }
            }
            DriverEvent::RunFinished { result, duration, error } => {
                self.report.result = *result;
                self.report.exit_code = result.exit_code();
                self.report.duration_secs = secs(*duration);
                self.report.error = error.clone();
                let mut sum = Summary::default();
                summarize(&self.report.steps, &mut sum);
                self.report.summary = sum;
            }
        }
    }
}

/// Seconds rounded to milliseconds (stable, readable JSON).
fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// RFC 3339 in UTC with milliseconds, without a date crate: days since
/// the epoch to a civil date (Howard Hinnant's `civil_from_days`).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let (days, rem) = ((d.as_secs() / 86_400) as i64, d.as_secs() % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
pub(crate) mod tests;
