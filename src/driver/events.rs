//! What happens during a run, as a stream of events fanned out to sinks
//! (the live terminal log and the report builder), nextest style.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Position of a step in the plan: indices into `steps`, then into a
/// subtest's `steps`, and so on.
pub type StepPath = Vec<usize>;

/// Extra text attached to a failure (`systemctl status`, journal).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detail {
    pub title: String,
    pub text: String,
}

/// Where in a run something failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// Running the start script until QEMU's monitor and QMP answer.
    Start,
    /// Waiting for the guest's backdoor shell.
    Boot,
    /// A step (also `start`, `shutdown`, `reboot` steps).
    Step,
    /// A `snapshot` or `restore` step.
    Snapshot,
    /// Stopping the VMs and switches at the end.
    Teardown,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Start => "start",
            Phase::Boot => "boot",
            Phase::Step => "step",
            Phase::Snapshot => "snapshot",
            Phase::Teardown => "teardown",
        })
    }
}

/// Everything known about a failed step.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Failure {
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The phase of the run it happened in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The output was not valid UTF-8 and is shown with replacement characters.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub output_lossy: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<Detail>,
    /// The node's last serial console lines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub console: Vec<String>,
}

/// Most bytes of one text (output, a detail, the message, the command) a
/// failure carries into the log and the reports: a command that prints
/// megabytes must not bloat them.
pub const MAX_TEXT: usize = 64 * 1024;

/// Most bytes of one console line in a failure (20 lines are kept).
pub const MAX_CONSOLE_LINE: usize = 4 * 1024;

impl Failure {
    pub fn new(message: impl Into<String>) -> Failure {
        Failure { message: message.into(), ..Failure::default() }
    }

    /// The failure with every text cut to [`MAX_TEXT`] bytes (console lines
    /// to [`MAX_CONSOLE_LINE`]), each cut marked in the text itself.
    pub fn bounded(mut self) -> Failure {
        cut(&mut self.message, MAX_TEXT);
        for text in self.command.iter_mut().chain(self.output.iter_mut()) {
            cut(text, MAX_TEXT);
        }
        for d in &mut self.details {
            cut(&mut d.text, MAX_TEXT);
        }
        for line in &mut self.console {
            cut(line, MAX_CONSOLE_LINE);
        }
        self
    }

    /// Multi-line rendering for logs and JUnit bodies.
    pub fn render(&self) -> String {
        let mut s = self.message.clone();
        match (&self.node, self.phase) {
            (Some(node), Some(phase)) => s.push_str(&format!("\nnode: {node}, phase: {phase}")),
            (Some(node), None) => s.push_str(&format!("\nnode: {node}")),
            (None, Some(phase)) => s.push_str(&format!("\nphase: {phase}")),
            (None, None) => {}
        }
        if let Some(cmd) = &self.command {
            s.push_str(&format!("\ncommand: {cmd}"));
        }
        if let Some(code) = self.exit_status {
            s.push_str(&format!("\nexit status: {code}"));
        }
        if let Some(out) = &self.output {
            let lossy = if self.output_lossy { " (not valid UTF-8, shown lossily)" } else { "" };
            if out.trim().is_empty() {
                s.push_str(&format!("\noutput{lossy}: (empty)"));
            } else {
                s.push_str(&format!("\noutput{lossy}:\n{}", indent(out.trim_end())));
            }
        }
        for d in &self.details {
            s.push_str(&format!("\n{}:\n{}", d.title, indent(d.text.trim_end())));
        }
        if !self.console.is_empty() {
            s.push_str(&format!("\nlast console lines:\n{}", indent(&self.console.join("\n"))));
        }
        s
    }
}

/// Cuts `text` to at most `max` bytes plus a marker: the first and the
/// last `max / 2` bytes (on character boundaries) are kept, as the end of an
/// output often says what went wrong.
pub fn cut(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut head = max / 2;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - max / 2;
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    let marker = format!(
        "\n[… cut by nixvm-driver: {} of {} bytes left out, the first and last {} KiB are kept …]\n",
        tail - head,
        text.len(),
        max / 2 / 1024
    );
    text.replace_range(head..tail, &marker);
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

/// How a step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StepStatus {
    Passed,
    Failed,
    /// Not run: an earlier step failed or the run stopped.
    Skipped,
}

/// How the run ended; decides the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RunResult {
    Passed,
    Failed,
    VmFailed,
    TimedOut,
    Interrupted,
}

impl RunResult {
    pub fn exit_code(self) -> i32 {
        use crate::exit_codes::*;
        match self {
            RunResult::Passed => OK,
            RunResult::Failed => STALE_OR_FAILED,
            RunResult::VmFailed => VM_FAILED,
            RunResult::TimedOut => GLOBAL_TIMEOUT,
            RunResult::Interrupted => INTERRUPTED,
        }
    }
}

/// One event of a run.
#[derive(Clone, Debug, PartialEq)]
pub enum DriverEvent {
    RunStarted {
        name: String,
        nodes: Vec<String>,
        total_steps: usize,
    },
    /// A node's boot at the beginning of the run ended (`ok`: its shell
    /// came up), for the report's timeline.
    NodeBooted {
        node: String,
        started: std::time::Instant,
        ready: std::time::Instant,
        ok: bool,
    },
    /// A VM failed to start at the beginning of the run.
    VmFailed {
        node: String,
        failure: Failure,
    },
    /// A step or subtest begins. `number` counts leaf steps from 1 (`None` for subtests).
    StepStarted {
        path: StepPath,
        number: Option<usize>,
        node: Option<String>,
        description: String,
    },
    StepFinished {
        path: StepPath,
        number: Option<usize>,
        node: Option<String>,
        description: String,
        status: StepStatus,
        duration: Duration,
        failure: Option<Failure>,
    },
    /// The run ends; `error` explains a run-level failure.
    RunFinished {
        result: RunResult,
        duration: Duration,
        error: Option<String>,
    },
}

/// A consumer of events.
pub trait EventSink {
    fn handle(&mut self, event: &DriverEvent);
}
