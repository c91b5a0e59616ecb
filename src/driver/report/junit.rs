//! JUnit XML through `quick-junit`: one test suite named after the test,
//! one test case per top-level step or subtest (a subtest fails when any of
//! its steps failed), with the failure and its output attached.

use std::path::Path;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::{RunReport, StepReport};
use crate::driver::events::{Failure, Phase, StepStatus};

/// Seconds as a `Duration`; a value no `Duration` holds (negative, NaN,
/// 1e300 from a hand-edited report) is zero rather than a panic.
pub fn duration(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO)
}

fn first_failure(step: &StepReport) -> Option<&StepReport> {
    if step.failure.is_some() {
        return Some(step);
    }
    step.steps.iter().find_map(first_failure)
}

fn case_name(index: usize, step: &StepReport) -> String {
    match &step.node {
        Some(node) => format!("{:02} {node}: {}", index + 1, step.description),
        None => format!("{:02} {}", index + 1, step.description),
    }
}

fn case(index: usize, step: &StepReport) -> TestCase {
    let status = match step.status {
        StepStatus::Passed => TestCaseStatus::success(),
        StepStatus::Skipped => TestCaseStatus::skipped(),
        StepStatus::Failed => {
            let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
            if let Some(failed) = first_failure(step) {
                if let Some(f) = &failed.failure {
                    st.set_message(f.message.clone());
                    st.set_type(failed.action.clone());
                    st.set_description(f.render());
                }
            }
            st
        }
    };
    let mut tc = TestCase::new(case_name(index, step), status);
    tc.set_classname(step.node.clone().unwrap_or_else(|| step.action.clone()));
    tc.set_time(duration(step.duration_secs));
    if let Some(f) = first_failure(step).and_then(|s| s.failure.as_ref()) {
        if let Some(out) = f.output.as_ref().filter(|o| !o.is_empty()) {
            tc.set_system_out(out.clone());
        }
        if !f.console.is_empty() {
            tc.set_system_err(f.console.join("\n"));
        }
    }
    tc
}

pub fn render(report: &RunReport) -> String {
    let mut junit = Report::new("nixvm-driver");
    junit.set_time(duration(report.duration_secs));
    junit.add_test_suite(suite(report, report.name.clone()));
    junit.to_string().unwrap_or_else(|e| format!("<!-- cannot serialize JUnit report: {e} -->\n"))
}

/// The test suite of one run, named `name` (`nixvm-gen report` merges
/// several into one file).
pub fn suite(report: &RunReport, name: String) -> TestSuite {
    let mut suite = TestSuite::new(name);
    suite.set_time(duration(report.duration_secs));
    if let Some(err) = &report.error {
        suite.set_system_err(err.clone());
    }
    let (teardown, start): (Vec<&Failure>, Vec<&Failure>) =
        report.vm_failures.iter().partition(|f| f.phase == Some(Phase::Teardown));
    if report.steps.is_empty() || !start.is_empty() {
        // A run that failed before any step still shows up as a failure.
        let status = if start.is_empty() && report.error.is_none() {
            TestCaseStatus::success()
        } else {
            let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
            let msg = report.error.clone().unwrap_or_else(|| "a VM failed to start".to_owned());
            st.set_message(msg);
            let text: Vec<String> = start.iter().map(|f| f.render()).collect();
            st.set_description(text.join("\n\n"));
            st
        };
        let mut tc = TestCase::new("00 start all VMs", status);
        tc.set_classname("driver");
        suite.add_test_case(tc);
    }
    for (i, step) in report.steps.iter().enumerate() {
        suite.add_test_case(case(i, step));
    }
    if !teardown.is_empty() {
        // A VM or switch that would not stop: an error after the last step.
        let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
        st.set_message(
            teardown.iter().map(|f| f.message.lines().next().unwrap_or("")).collect::<Vec<_>>().join("; "),
        );
        st.set_description(teardown.iter().map(|f| f.render()).collect::<Vec<_>>().join("\n\n"));
        let mut tc = TestCase::new(format!("{:02} stop all VMs", report.steps.len() + 1), st);
        tc.set_classname("driver");
        suite.add_test_case(tc);
    }
    suite
}

/// Writes the JUnit file atomically.
pub fn write(report: &RunReport, path: &Path) -> std::io::Result<()> {
    crate::fsutil::replace_atomic(path, render(report).as_bytes())
}
