//! Fault classes against the fake guest (docs/reliability.md): for each,
//! the error names the node and the phase, the reports are written, the exit
//! code is the documented one and no process the run started survives it
//! (checked by pid and process group, see [`Survivors`]).

use super::survivors::Survivors;
use super::*;

fn report_json(fake: &FakeRun) -> serde_json::Value {
    serde_json::from_str(&fake.output("report.json")).unwrap()
}

/// Megabytes of output from a failing command reach neither the log nor the
/// reports whole: they are cut to 64 KiB with a marker, keeping the end.
#[test]
fn megabytes_of_output_are_cut_in_the_reports() {
    let flood = "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo the-end; exit 1";
    let Some(fake) = FakeRun::new("", vec![succeed(flood)]) else { return };
    let survivors = Survivors::watch(fake.tmp.path());
    let (outcome, log) = fake.run(&Abort::never());
    survivors.assert_none_left(2);
    assert_eq!(outcome.exit_code(), crate::exit_codes::STALE_OR_FAILED);
    let json = fake.output("report.json");
    assert!(json.len() < 100_000, "report.json is {} bytes", json.len());
    let report = report_json(&fake);
    let output = report["steps"][0]["failure"]["output"].as_str().unwrap();
    assert!(output.len() <= 64 * 1024 + 200, "{} bytes", output.len());
    assert!(output.contains("cut by nixvm-driver: "), "the cut is marked");
    assert!(output.contains("of 3000009 bytes left out"), "and sized");
    assert!(output.trim_end().ends_with("the-end"), "the end is kept");
    assert!(fake.output("junit.xml").len() < 200_000);
    assert!(text(&log).len() < 200_000, "the log got {} bytes", text(&log).len());
}

/// Runs `fake` and calls `act` with the signal counter (as the CLI's
/// signal thread counts them) and the log so far, as soon as the log shows
/// `when`; returns the outcome, the log and how long the run went on after.
fn run_triggered(
    fake: &FakeRun,
    when: &'static str,
    act: impl FnOnce(&AtomicUsize, &str) + Send + 'static,
) -> (run::Outcome, String, Duration) {
    let (log, buf) = Log::capture(Level::Debug);
    let signals = Arc::new(AtomicUsize::new(0));
    let abort = Abort::new(signals.clone(), None);
    let watched = buf.clone();
    let sent = std::thread::spawn(move || {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            let log = String::from_utf8_lossy(&watched.lock().unwrap()).into_owned();
            if log.contains(when) {
                act(&signals, &log);
                return Some(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    });
    let outcome = run::run(&fake.opts, &abort, Arc::new(log)).unwrap();
    let after = sent.join().unwrap().expect("the run never logged the trigger").elapsed();
    (outcome, text(&buf), after)
}

/// [`run_triggered`] sending one signal.
fn run_signalled(fake: &FakeRun, when: &'static str) -> (run::Outcome, String, Duration) {
    run_triggered(fake, when, |signals, _| {
        signals.fetch_add(1, Ordering::Relaxed);
    })
}

/// SIGINT/SIGTERM while a snapshot step waits for QEMU's QMP answer: the
/// step fails naming the nodes and the phase, the run stops with exit 130,
/// reports written, nothing left.
#[test]
fn a_signal_during_a_snapshot_stops_the_run() {
    let snapshot = Step {
        node: None,
        timeout: Some(60.0.into()),
        action: Action::Snapshot { name: "s".into() },
        span: None,
    };
    let steps = vec![succeed("true"), snapshot, succeed("true")];
    let Some(fake) = FakeRun::new("FAKE_QMP_HANG=query-migrate", steps) else { return };
    let survivors = Survivors::watch(fake.tmp.path());
    let (outcome, log, after) = run_signalled(&fake, "not answering query-migrate");
    survivors.assert_none_left(2);
    assert!(after < Duration::from_secs(5), "stopped {after:?} after the signal\n{log}");
    assert_eq!(outcome.result, RunResult::Interrupted, "{log}");
    assert_eq!(outcome.exit_code(), crate::exit_codes::INTERRUPTED);
    let report = report_json(&fake);
    assert_eq!(report["result"], "interrupted");
    let failure = &report["steps"][1]["failure"];
    assert_eq!(failure["phase"], "snapshot", "{report:#}");
    assert_eq!(failure["node"], "machine", "{report:#}");
    assert_eq!(report["steps"][2]["status"], "skipped");
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("interrupted by a signal") && error.contains("snapshot"), "{error}");
    assert!(fake.out.path().join("junit.xml").exists());
}

/// A signal during the teardown of a passing run: the teardown ends at once
/// (no grace period for a QEMU that ignores SIGTERM) and the run exits 130,
/// with the phase in the report.
#[test]
fn a_signal_during_teardown_exits_130_at_once() {
    let Some(mut fake) = FakeRun::new("FAKE_IGNORE_TERM=1", vec![succeed("true")]) else { return };
    fake.opts.grace = Duration::from_secs(20);
    let survivors = Survivors::watch(fake.tmp.path());
    let (outcome, log, after) = run_signalled(&fake, "kill QemuMachine machine");
    survivors.assert_none_left(2);
    assert!(after < Duration::from_secs(5), "teardown went on {after:?} after the signal\n{log}");
    assert_eq!(outcome.result, RunResult::Interrupted, "{log}");
    assert_eq!(outcome.exit_code(), crate::exit_codes::INTERRUPTED);
    let report = report_json(&fake);
    assert_eq!(report["steps"][0]["status"], "passed");
    let error = report["error"].as_str().unwrap();
    assert_eq!(error, "interrupted by a signal during teardown of node(s) machine");
}

/// A VLAN switch killed during a step: the next step fails at once naming
/// the VLAN, its switch and the node, the run exits 5 (a VM or its network
/// died), nothing is left.
#[test]
fn a_dead_vlan_switch_is_detected_and_named() {
    if !crate::driver::testing::require("vde_switch", "VLAN switches") {
        return;
    }
    let Some(mut fake) = FakeRun::new("", vec![succeed("sleep 2"), succeed("true"), succeed("true")]) else {
        return;
    };
    fake.opts.config.vlans = vec![1];
    let survivors = Survivors::watch(fake.tmp.path());
    let (outcome, log, after) = run_triggered(&fake, "must succeed: sleep 2", |_, log| {
        let pid = log.split("running vlan (pid ").nth(1).and_then(|r| r.split(';').next()).unwrap();
        // SAFETY: kill(2) on the switch this run started (its pid from the log).
        unsafe { libc::kill(pid.parse().unwrap(), libc::SIGKILL) };
    });
    survivors.assert_none_left(2);
    assert!(after < Duration::from_secs(10), "took {after:?}");
    assert_eq!(outcome.result, RunResult::VmFailed, "{log}");
    assert_eq!(outcome.exit_code(), crate::exit_codes::VM_FAILED);
    let report = report_json(&fake);
    assert_eq!(report["steps"][0]["status"], "passed", "{report:#}");
    let failure = &report["steps"][1]["failure"];
    let message = failure["message"].as_str().unwrap();
    assert!(message.starts_with("vlan 1: its switch (vde_switch, pid "), "{message}");
    assert!(message.contains("was killed by signal 9 (SIGKILL) during the run"), "{message}");
    assert_eq!(failure["node"], "machine");
    assert_eq!(failure["phase"], "step");
    assert_eq!(report["steps"][2]["status"], "skipped");
}

/// A signal while QEMU's QMP handshake hangs (the start phase) stops the
/// run: exit 130 naming the node and phase, and no VM failure (it was
/// reported as one, "node machine: … interrupted").
#[test]
fn a_signal_during_the_qmp_handshake_is_no_vm_failure() {
    let Some(fake) = FakeRun::new("FAKE_QMP_HANG=qmp_capabilities", vec![succeed("true")]) else { return };
    let survivors = Survivors::watch(fake.tmp.path());
    let (outcome, log, after) = run_signalled(&fake, "not answering qmp_capabilities");
    survivors.assert_none_left(2);
    assert!(after < Duration::from_secs(5), "stopped {after:?} after the signal\n{log}");
    assert_eq!(outcome.result, RunResult::Interrupted, "{log}");
    let report = report_json(&fake);
    assert!(report.get("vmFailures").is_none(), "{report:#}");
    let error = report["error"].as_str().unwrap();
    assert_eq!(error, "interrupted by a signal while starting node(s) machine (start)");
}

/// A QEMU that ignores SIGTERM in the teardown of a passing run: killed
/// after the grace period and reported, naming the node and the phase
/// `teardown`, with exit 5 (it was a warning in the log, exit 0).
#[test]
fn a_vm_that_ignores_sigterm_fails_the_teardown() {
    let Some(mut fake) = FakeRun::new("FAKE_IGNORE_TERM=1", vec![succeed("true")]) else { return };
    fake.opts.grace = Duration::from_secs(1);
    let survivors = Survivors::watch(fake.tmp.path());
    let (outcome, log) = fake.run(&Abort::never());
    survivors.assert_none_left(2);
    let log = text(&log);
    assert_eq!(outcome.result, RunResult::VmFailed, "{log}");
    assert_eq!(outcome.exit_code(), crate::exit_codes::VM_FAILED);
    let report = report_json(&fake);
    assert_eq!(report["steps"][0]["status"], "passed");
    let failure = &report["vmFailures"][0];
    assert_eq!(failure["node"], "machine", "{report:#}");
    assert_eq!(failure["phase"], "teardown", "{report:#}");
    let message = failure["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "node machine: did not stop within the 1.0 s grace period after SIGTERM; killed with SIGKILL:"
        ),
        "{message}"
    );
    assert!(message.contains("fake-qemu"), "the process is named: {message}");
    assert_eq!(report["error"], "node machine did not stop cleanly during teardown");
    assert!(log.contains("node: machine, phase: teardown"), "{log}");
    let junit = fake.output("junit.xml");
    assert!(junit.contains("02 stop all VMs"), "{junit}");
}

/// The global timeout expiring during the teardown (a QEMU that ignores
/// SIGTERM, a 30 s grace period): the teardown ends at the deadline and the
/// run exits 6 naming the phase (it waited out the grace and exited 0).
#[test]
fn the_global_timeout_bounds_the_teardown() {
    let Some(mut fake) = FakeRun::new("FAKE_IGNORE_TERM=1", vec![succeed("true")]) else { return };
    fake.opts.grace = Duration::from_secs(30);
    let survivors = Survivors::watch(fake.tmp.path());
    let t = Instant::now();
    let abort = Abort::new(Arc::new(AtomicUsize::new(0)), Some(Duration::from_secs(6)));
    let (outcome, log) = fake.run(&abort);
    let took = t.elapsed();
    survivors.assert_none_left(2);
    let log = text(&log);
    assert!(took < Duration::from_secs(15), "took {took:?}\n{log}");
    assert_eq!(outcome.result, RunResult::TimedOut, "{log}");
    assert_eq!(outcome.exit_code(), crate::exit_codes::GLOBAL_TIMEOUT);
    let report = report_json(&fake);
    assert_eq!(report["steps"][0]["status"], "passed", "the step ended before the deadline: {report:#}");
    assert_eq!(report["error"], "the global timeout expired during teardown of node(s) machine");
    assert!(report.get("vmFailures").is_none(), "a kill the deadline asked for is no failure: {report:#}");
}

/// Guest programs writing to the shell channel themselves (fake reply
/// headers, random bytes; `/proc/$$/fd/1` is the fake guest's `/dev/hvc0`)
/// while their command runs: every later command still gets its own reply.
/// Before the backdoor helpers stopped redirecting their own stdout (the
/// watchdog request was a `printf >&fifo`, which points the shell's fd 1 at
/// the FIFO for a moment), a program opening `/proc/$$/fd/1` in that moment
/// wrote into the watchdog's FIFO: about one run in two lost a reply within
/// 40 rounds ("no reply …", then "still busy" for every command).
#[test]
fn programs_writing_to_the_shell_channel_lose_no_reply() {
    if !available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (mut m, log) = booted(tmp.path(), "");
    let a = Abort::never();
    let mut run = |round: usize, command: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        m.execute(command, Some(15), deadline, &a)
            .unwrap_or_else(|e| panic!("round {round}: {e}\n{}", text(&log)))
    };
    let fakes = "for i in $(seq 0 60); do printf '\\001NIXVM %d 0 4\\nfake' \"$i\" >/proc/$$/fd/1; done; \
                 printf '\\001NIXVM garbage\\n\\001NIXVM ' >/proc/$$/fd/1; echo real";
    let flood = "head -c 2000000 /dev/zero | tr '\\0' x; echo; echo the-end";
    for round in 0..40 {
        let r = run(round, "head -c 200000 /dev/urandom >/proc/$$/fd/1; echo ok");
        assert_eq!((r.status, r.stdout.as_slice()), (0, &b"ok\n"[..]), "round {round}");
        if round % 10 == 0 {
            let r = run(round, fakes);
            assert_eq!((r.status, r.stdout.as_slice()), (0, &b"real\n"[..]), "round {round}");
            let r = run(round, flood);
            assert_eq!(r.stdout.len(), 2_000_009, "round {round}");
            assert!(r.stdout.ends_with(b"x\nthe-end\n"), "round {round}");
        }
    }
    m.release(&a).expect("the fake QEMU stops on SIGTERM");
}
