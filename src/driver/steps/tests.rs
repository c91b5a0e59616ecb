//! Unit tests of step execution.

use super::commands::check_expect;
use super::monitor::monitor_output;
use super::units::unit_settled;
use super::*;
use crate::spec::Expect;

fn reply(status: i32, out: &str) -> Reply {
    Reply { status, stdout: out.as_bytes().to_vec() }
}

#[test]
fn expectations() {
    let e = Expect { contains: vec!["Healthy".into()], ..Expect::default() };
    assert!(check_expect("c", &reply(0, "all Healthy\n"), &e).is_ok());
    assert_eq!(
        check_expect("c", &reply(0, "sick"), &e).unwrap_err(),
        "the output of `c` does not contain `Healthy`"
    );
    assert_eq!(
        check_expect("c", &reply(3, ""), &Expect::default()).unwrap_err(),
        "command `c` failed (exit code 3)"
    );
    let e = Expect { exit_code: Some(3.into()), equals: Some("x".into()), ..Expect::default() };
    assert!(check_expect("c", &reply(3, "x\n\n"), &e).is_ok());
    assert!(check_expect("c", &reply(0, "x"), &e).is_err());
    let e = Expect { matches: Some("^v[0-9]+$".into()), ..Expect::default() };
    assert!(check_expect("c", &reply(0, "v12"), &e).is_ok());
    // Python's `$` also matches before a final newline (issue 11: was a
    // failure here and a pass under the stock driver).
    assert!(check_expect("c", &reply(0, "v12\n"), &e).is_ok());
    assert!(check_expect("c", &reply(0, "v12\n\n"), &e).is_err());
}

#[test]
fn monitor_answers() {
    assert_eq!(monitor_output("set_link virtio-net-pci.1 off\r\n(qemu) "), "");
    assert_eq!(
        monitor_output("\x1b[Kset_link x off\r\nDevice 'x' not found\r\n(qemu) "),
        "Device 'x' not found"
    );
}

/// Runs a [`guest_poll_loop`] like the backdoor does (`bash -c` with
/// the framing's options) and returns (status, stdout, seconds taken).
fn run_loop(attempt: &str, done: &str, budget: Duration) -> (i32, String, f64) {
    run_loop_in("/tmp", attempt, done, budget)
}

/// [`run_loop`] with `TMPDIR` set to `tmp`.
fn run_loop_in(tmp: &str, attempt: &str, done: &str, budget: Duration) -> (i32, String, f64) {
    let script = format!("set -euo pipefail; {}", guest_poll_loop(attempt, done, budget));
    let t = Instant::now();
    let out = std::process::Command::new("bash").arg("-c").arg(script).env("TMPDIR", tmp).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        t.elapsed().as_secs_f64(),
    )
}

#[test]
fn poll_loop_returns_the_last_attempt() {
    if !crate::driver::testing::require("bash", "runs the polling loop") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let n = dir.path().join("n");
    // Counts its attempts; succeeds on the third one.
    let attempt = format!(
        "echo $(( $(cat {0} 2>/dev/null || echo 0) + 1 )) > {0}; echo \"try $(cat {0})\"; [ $(cat {0}) -ge 3 ]",
        n.display()
    );
    let (status, out, secs) = run_loop(&attempt, UNTIL_SUCCESS, Duration::from_secs(5));
    assert_eq!((status, out.as_str()), (0, "try 3\n"), "only the last attempt's output");
    assert!(secs < 2.5, "took {secs}");
    // The budget ends the loop with the last attempt's status; no output, no `cat`.
    let (status, out, secs) = run_loop("false", UNTIL_SUCCESS, Duration::from_millis(300));
    assert_eq!((status, out.as_str()), (1, ""));
    assert!((0.3..2.5).contains(&secs), "took {secs}");
    let (status, _, _) = run_loop("exit 4", UNTIL_FAILURE, Duration::from_secs(5));
    assert_eq!(status, 4, "a subshell-free attempt's `exit` ends the loop with its status");
    // Unit states: `activating` keeps waiting, `inactive` without jobs stops.
    let show = "printf 'Id=x\\nActiveState=activating\\n'";
    let (status, out, secs) = run_loop(show, &unit_settled("echo 'No jobs'"), Duration::from_millis(300));
    assert_eq!((status, out.as_str()), (0, "Id=x\nActiveState=activating\n"));
    assert!(secs >= 0.3, "took {secs}");
    let show = "printf 'ActiveState=inactive\\n'";
    let (_, _, secs) = run_loop(show, &unit_settled("echo 'No jobs running.'"), Duration::from_secs(5));
    assert!(secs < 2.5, "took {secs}");
    // No temporary directory: one attempt, its output straight to stdout.
    let (status, out, secs) =
        run_loop_in("/nonexistent", "echo hi; false", UNTIL_SUCCESS, Duration::from_secs(5));
    assert_eq!((status, out.as_str()), (1, "hi\n"));
    assert!(secs < 2.5, "took {secs}");
}

#[test]
fn out_of_range_plan_timeouts_do_not_panic() {
    let (log, _) = Log::capture(crate::driver::log::Level::Error);
    let mut machines = BTreeMap::new();
    let out = tempfile::tempdir().unwrap();
    let mut captures = Vec::new();
    let mut ctx = StepCtx {
        machines: &mut machines,
        abort: &Abort::never(),
        out_dir: out.path(),
        log: &log,
        captures: &mut captures,
    };
    for timeout in [-1.0, 1e300] {
        let step = Step {
            node: Some("ghost".into()),
            timeout: Some(timeout.into()),
            action: Action::Fail { command: "true".into() },
            span: None,
        };
        let err = run_step(&mut ctx, &step).unwrap_err();
        assert!(matches!(&err, StepError::Failed(f) if f.message.contains("not configured")), "{err:?}");
    }
    let nap =
        Step { node: None, timeout: None, action: Action::Sleep { seconds: (-3.0).into() }, span: None };
    assert!(run_step(&mut ctx, &nap).is_ok());
}

#[test]
fn every_failed_expectation_is_reported() {
    let e = Expect {
        contains: vec!["a".into(), "b".into(), "c".into()],
        not_contains: vec!["x".into()],
        equals: Some("nope".into()),
        ..Expect::default()
    };
    let err = check_expect("c", &reply(0, "a x"), &e).unwrap_err();
    assert_eq!(
        err,
        "the output of `c` fails 4 checks:\n  - it does not contain `b`\n  - it does not contain `c`\n  - it contains `x`\n  - it is not `nope`"
    );
    let e =
        Expect { json: Some(serde_json::json!({ "a": { "b": [1, { "c": true }] } })), ..Expect::default() };
    assert!(check_expect("c", &reply(0, r#"{"a":{"b":[1.0,{"c":true,"d":0}],"e":2}}"#), &e).is_ok());
    assert!(check_expect("c", &reply(0, r#"{"a":{"b":[1,{"c":1}]}}"#), &e).is_err(), "true is not 1");
    assert!(check_expect("c", &reply(0, r#"{"a":{"b":[1]}}"#), &e).is_err(), "lists keep their length");
    assert_eq!(
        check_expect("c", &reply(0, "not json"), &e).unwrap_err(),
        "the output of `c` is not JSON (expected ident at line 1 column 2)"
    );
}
