//! Report goldens fed from recorded event sequences (no VM, no fake guest).

use std::time::Duration;

use super::{ReportBuilder, json, junit};
use crate::driver::events::{DriverEvent, EventSink, Failure, Phase, RunResult, StepStatus};
use crate::driver::testing::{golden, redact};
use crate::plan::{PLAN_VERSION, Plan};
use crate::spec::{Action, Expect, Step};

fn leaf(node: &str, action: Action) -> Step {
    Step { node: Some(node.into()), timeout: Some(30.0.into()), action, span: None }
}

fn plan() -> Plan {
    let succeed = |c: &str| Action::Succeed { command: c.into(), expect: Expect::default(), capture: None };
    Plan {
        version: PLAN_VERSION,
        name: "health".into(),
        nodes: vec!["client".into(), "server".into()],
        global_timeout: Some(600),
        steps: vec![
            leaf("server", Action::WaitForUnit { unit: "syshc.service".into(), user: None }),
            Step {
                node: None,
                timeout: None,
                action: Action::Subtest {
                    title: "client reaches server".into(),
                    steps: vec![leaf("client", succeed("curl server")), leaf("client", succeed("true"))],
                },
                span: None,
            },
            leaf("server", Action::Shutdown),
        ],
    }
}

fn finished(
    path: Vec<usize>,
    number: Option<usize>,
    status: StepStatus,
    failure: Option<Failure>,
) -> DriverEvent {
    DriverEvent::StepFinished {
        path,
        number,
        node: None,
        description: String::new(),
        status,
        duration: Duration::from_millis(1500),
        failure,
    }
}

#[test]
fn subtest_failure_under_keep_going() {
    let mut b = ReportBuilder::new(&plan());
    let mut f = Failure::new("command `curl server` failed (exit code 7)");
    f.node = Some("client".into());
    f.command = Some("curl server".into());
    f.exit_status = Some(7);
    f.output = Some(String::new());
    f.console = vec!["client # curl: (7) Failed to connect".into()];
    for e in [
        finished(vec![0], Some(1), StepStatus::Passed, None),
        finished(vec![1, 0], Some(2), StepStatus::Failed, Some(f)),
        finished(vec![1], None, StepStatus::Failed, None),
        finished(vec![2], Some(4), StepStatus::Passed, None),
        DriverEvent::RunFinished {
            result: RunResult::Failed,
            duration: Duration::from_secs(12),
            error: None,
        },
    ] {
        b.handle(&e);
    }
    let r = b.report();
    assert_eq!((r.summary.total, r.summary.passed, r.summary.failed, r.summary.skipped), (4, 2, 1, 1));
    golden("report/goldens/subtest.json", &redact(&json::render(r)));
    golden("report/goldens/subtest.junit.xml", &junit::render(r));
}

#[test]
fn vm_failure_before_any_step() {
    let mut b = ReportBuilder::new(&plan());
    let mut f =
        Failure::new("node server: start script exited with status 1 before QEMU connected to the driver");
    f.node = Some("server".into());
    b.handle(&DriverEvent::VmFailed { node: "server".into(), failure: f });
    b.handle(&DriverEvent::RunFinished {
        result: RunResult::VmFailed,
        duration: Duration::from_secs(1),
        error: None,
    });
    let r = b.report();
    assert_eq!(r.exit_code, crate::exit_codes::VM_FAILED);
    assert_eq!(r.summary.skipped, 4);
    golden("report/goldens/vm-failed.junit.xml", &junit::render(r));
}

/// A passing run whose VM would not stop: the steps keep their status, the
/// teardown is an error case after them, and the run is a VM failure.
#[test]
fn vm_that_would_not_stop_in_the_teardown() {
    let mut b = ReportBuilder::new(&plan());
    for (path, number) in [(vec![0], Some(1)), (vec![1, 0], Some(2)), (vec![1, 1], Some(3))] {
        b.handle(&finished(path, number, StepStatus::Passed, None));
    }
    b.handle(&finished(vec![1], None, StepStatus::Passed, None));
    b.handle(&finished(vec![2], Some(4), StepStatus::Passed, None));
    let mut f = Failure::new(
        "node server: did not stop within the 5.0 s grace period after SIGTERM; killed with SIGKILL:\n    \
         4242 sh -c trap '' TERM; while :; do sleep 1; done",
    );
    f.node = Some("server".into());
    f.phase = Some(Phase::Teardown);
    b.handle(&DriverEvent::VmFailed { node: "server".into(), failure: f });
    b.handle(&DriverEvent::RunFinished {
        result: RunResult::VmFailed,
        duration: Duration::from_secs(9),
        error: Some("node server did not stop cleanly during teardown".into()),
    });
    let r = b.report();
    assert_eq!(r.exit_code, crate::exit_codes::VM_FAILED);
    assert_eq!(r.summary.passed, 4);
    golden("report/goldens/teardown-failed.junit.xml", &junit::render(r));
}

#[test]
fn live_log_lines() {
    use crate::driver::log::{Level, Log};
    use std::sync::Arc;
    let (log, buf) = Log::capture(Level::Info);
    let mut t = super::terminal::TerminalSink::new(Arc::new(log));
    let started = |path: Vec<usize>, number, node: &str, d: &str| DriverEvent::StepStarted {
        path,
        number,
        node: Some(node.into()),
        description: d.into(),
    };
    let done = |path, number, node: &str, d: &str, status, failure| DriverEvent::StepFinished {
        path,
        number,
        node: Some(node.into()),
        description: d.into(),
        status,
        duration: Duration::from_millis(1234),
        failure,
    };
    let events = [
        DriverEvent::RunStarted { name: "health".into(), nodes: vec!["machine".into()], total_steps: 3 },
        started(vec![0], Some(1), "machine", "waiting for unit syshc.service"),
        done(vec![0], Some(1), "machine", "waiting for unit syshc.service", StepStatus::Passed, None),
        started(vec![1], Some(2), "machine", "must succeed: false"),
        done(
            vec![1],
            Some(2),
            "machine",
            "must succeed: false",
            StepStatus::Failed,
            Some(Failure::new("command `false` failed (exit code 1)")),
        ),
        DriverEvent::RunFinished { result: RunResult::Failed, duration: Duration::from_secs(3), error: None },
    ];
    for e in &events {
        t.handle(e);
    }
    let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    pretty_assertions::assert_eq!(
        text,
        "machine: waiting for unit syshc.service\n\
         machine: (finished: waiting for unit syshc.service, in 1.23 seconds)\n\
         [1/3] machine: waiting for unit syshc.service ... ok (1.23 s)\n\
         machine: must succeed: false\n\
         !!! command `false` failed (exit code 1)\n\
         [2/3] machine: must succeed: false ... FAILED (1.23 s)\n\
         test script finished in 3.00s (failed; 1 passed, 1 failed, 1 skipped)\n"
    );
}

#[test]
fn timestamps_are_rfc3339_utc() {
    use std::time::{Duration, SystemTime};
    let at = |secs: u64, ms: u64| {
        super::rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms))
    };
    assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
    assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
    assert_eq!(at(1_796_185_267, 123), "2026-12-02T04:21:07.123Z");
}

#[test]
fn steps_and_boots_get_times_from_the_start_of_the_run() {
    use std::time::Instant;
    let mut b = ReportBuilder::new(&plan());
    b.handle(&DriverEvent::RunStarted { name: "health".into(), nodes: vec![], total_steps: 4 });
    let t = Instant::now();
    b.handle(&DriverEvent::NodeBooted { node: "server".into(), started: t, ready: t, ok: true });
    b.handle(&DriverEvent::StepStarted {
        path: vec![0],
        number: Some(1),
        node: None,
        description: String::new(),
    });
    b.handle(&finished(vec![0], Some(1), StepStatus::Passed, None));
    let r = b.report();
    assert!(r.started_at.as_deref().is_some_and(|s| s.ends_with('Z')), "{:?}", r.started_at);
    assert_eq!(r.boots.len(), 1);
    assert!(r.boots[0].ok && r.boots[0].start_secs <= r.boots[0].end_secs);
    let s = &r.steps[0];
    assert!(s.start_secs.unwrap() <= s.end_secs.unwrap(), "{s:?}");
    // Never-run steps have no times.
    assert_eq!((r.steps[2].start_secs, r.steps[2].end_secs), (None, None));
    // The report reads back (`nixvm-gen report`).
    let back: super::RunReport = serde_json::from_str(&json::render(r)).unwrap();
    assert_eq!(&back, r);
}
