//! The live log of steps on stderr: the stock driver's nested blocks plus a
//! progress line per step, e.g.
//! `[3/7] machine: waiting for unit syshc.service ... ok (1.23 s)`.

use std::sync::Arc;

use crate::driver::events::{DriverEvent, EventSink, RunResult, StepStatus};
use crate::driver::log::Log;

pub struct TerminalSink {
    log: Arc<Log>,
    total: usize,
    passed: usize,
    failed: usize,
}

impl TerminalSink {
    pub fn new(log: Arc<Log>) -> TerminalSink {
        TerminalSink { log, total: 0, passed: 0, failed: 0 }
    }
}

impl EventSink for TerminalSink {
    fn handle(&mut self, event: &DriverEvent) {
        match event {
            DriverEvent::RunStarted { total_steps, .. } => self.total = *total_steps,
            DriverEvent::VmFailed { failure, .. } => self.log.test_error(&failure.render()),
            DriverEvent::NodeBooted { .. } => {}
            DriverEvent::StepStarted { node, description, .. } => {
                self.log.header(node.as_deref(), description)
            }
            DriverEvent::StepFinished { number, node, description, status, duration, failure, .. } => {
                match status {
                    StepStatus::Passed => self.log.finished(node.as_deref(), description, *duration),
                    StepStatus::Failed => {
                        if let Some(f) = failure {
                            self.log.test_error(&f.render());
                        }
                    }
                    StepStatus::Skipped => {}
                }
                if let Some(n) = number {
                    match status {
                        StepStatus::Passed => self.passed += 1,
                        StepStatus::Failed => self.failed += 1,
                        StepStatus::Skipped => {}
                    }
                    let who = node.as_ref().map(|n| format!("{n}: ")).unwrap_or_default();
                    let verdict = match status {
                        StepStatus::Passed => "ok",
                        StepStatus::Failed => "FAILED",
                        StepStatus::Skipped => "skipped",
                    };
                    self.log.info(
                        None,
                        &format!(
                            "[{n}/{}] {who}{description} ... {verdict} ({:.2} s)",
                            self.total,
                            duration.as_secs_f64()
                        ),
                    );
                }
            }
            DriverEvent::RunFinished { result, duration, error } => {
                if let Some(e) = error {
                    self.log.test_error(e);
                }
                let word = match result {
                    RunResult::Passed => "passed",
                    RunResult::Failed => "failed",
                    RunResult::VmFailed => "failed: a VM failed",
                    RunResult::TimedOut => "failed: global timeout",
                    RunResult::Interrupted => "interrupted",
                };
                let skipped = self.total.saturating_sub(self.passed + self.failed);
                self.log.info(
                    None,
                    &format!(
                        "test script finished in {:.2}s ({word}; {} passed, {} failed, {skipped} skipped)",
                        duration.as_secs_f64(),
                        self.passed,
                        self.failed
                    ),
                );
            }
        }
    }
}
