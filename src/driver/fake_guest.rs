//! Tests against the fake guest (`tests/fake-guest/`): a Python stand-in for
//! QEMU that speaks to the driver's sockets and runs the framed commands
//! with a local `bash`. No VM is involved, so these run in the default suite.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::abort::Abort;
use super::config::{DriverConfig, VmEntry};
use super::events::{RunResult, StepStatus};
use super::interactive::{self, ReplSignals};
use super::log::{Captured, Level, Log};
use super::run::{self, RunOptions, SetupError};
use super::shell::{Protocol, ShellError};
use super::steps::{self, StepCtx, StepError};
use super::testing::{golden, redact, require};
use super::vm::{Machine, VmError, VmSetup};
use crate::plan::{PLAN_VERSION, Plan};
use crate::spec::{Action, Expect, Step};

mod captures;
mod faults;
mod host;
mod survivors;
mod units;

use survivors::Survivors;

fn available() -> bool {
    ["python3", "bash", "base64", "timeout"].iter().all(|t| require(t, "the fake guest"))
}

fn script(env: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-guest/run-fake-vm");
    format!("{env} {}", path.display()).trim().to_owned()
}

fn setup(tmp: &Path, name: &str, env: &str) -> VmSetup {
    VmSetup {
        name: name.to_owned(),
        start_script: script(env),
        tmp_dir: tmp.to_owned(),
        env: Vec::new(),
        keep_state: false,
        grace: Duration::from_secs(2),
    }
}

fn machine(tmp: &Path, env: &str) -> (Machine, Captured) {
    let (log, buf) = Log::capture(Level::Debug);
    (Machine::new(setup(tmp, "machine", env), Arc::new(log)).unwrap(), buf)
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

fn booted(tmp: &Path, env: &str) -> (Machine, Captured) {
    booted_with(tmp, env, Protocol::Fast)
}

/// [`booted`], trying `protocol` (stock: the stock framing only).
fn booted_with(tmp: &Path, env: &str, protocol: Protocol) -> (Machine, Captured) {
    let (mut m, buf) = machine(tmp, env);
    m.prefer_protocol(protocol);
    m.start(far(), &Abort::never()).unwrap();
    m.connect(far(), &Abort::never()).unwrap();
    (m, buf)
}

fn text(buf: &Captured) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

/// A booted fake guest as the only node (`machine`) of a step context, with
/// its own temporary and output directories.
struct Harness {
    tmp: tempfile::TempDir,
    out: tempfile::TempDir,
    machines: BTreeMap<String, Machine>,
    log: Log,
    /// What the steps logged (info and above).
    logged: Captured,
    captures: Vec<String>,
}

/// A booted [`Harness`], unless the fake guest's tools are missing.
fn harness(env: &str) -> Option<Harness> {
    available().then(|| Harness::boot(env))
}

/// [`harness`] with a preferred framing.
fn harness_with(env: &str, protocol: Protocol) -> Option<Harness> {
    available().then(|| Harness::boot_with(env, protocol))
}

impl Harness {
    fn boot(env: &str) -> Harness {
        Harness::boot_with(env, Protocol::Fast)
    }

    fn boot_with(env: &str, protocol: Protocol) -> Harness {
        let tmp = tempfile::tempdir().unwrap();
        let (m, _) = booted_with(tmp.path(), env, protocol);
        let (log, logged) = Log::capture(Level::Info);
        let machines = BTreeMap::from([("machine".to_owned(), m)]);
        Harness { tmp, out: tempfile::tempdir().unwrap(), machines, log, logged, captures: Vec::new() }
    }

    fn machine(&self) -> &Machine {
        &self.machines["machine"]
    }

    /// The fake's unit directory (states for the stub `systemctl`), created.
    fn units(&self) -> PathBuf {
        let units = self.machine().state_dir().join("units");
        std::fs::create_dir_all(&units).unwrap();
        units
    }

    fn run(&mut self, step: &Step) -> Result<(), StepError> {
        let abort = Abort::never();
        let mut ctx = StepCtx {
            machines: &mut self.machines,
            abort: &abort,
            out_dir: self.out.path(),
            log: &self.log,
            captures: &mut self.captures,
        };
        steps::run_step(&mut ctx, step)
    }

    fn ok(&mut self, action: Action) {
        self.run(&step(action.clone(), 10.0)).unwrap_or_else(|e| panic!("{action:?}: {e:?}"));
    }

    fn failure(&mut self, step: &Step) -> Box<super::events::Failure> {
        match self.run(step) {
            Err(StepError::Failed(f)) => f,
            other => panic!("expected a failure, got {other:?}"),
        }
    }
}

#[test]
fn framing_exit_codes_binary_and_multiline_output() {
    if !available() {
        return;
    }
    framing_semantics(Protocol::Fast, "", Protocol::Fast);
    framing_semantics(Protocol::Stock, "", Protocol::Stock);
}

#[test]
fn guests_without_bash_5_keep_the_stock_framing() {
    if !available() {
        return;
    }
    let log = framing_semantics(Protocol::Fast, "FAKE_OLD_BASH=1", Protocol::Stock);
    assert!(log.contains("cannot run the fast protocol"), "{log}");
}

/// The stock semantics of one command when the driver prefers `prefer`
/// and `env` configures the fake; `protocol` is the one to end up with.
/// Returns the log.
fn framing_semantics(prefer: Protocol, env: &str, protocol: Protocol) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let (mut m, log) = booted_with(tmp.path(), env, prefer);
    assert_eq!(m.protocol(), protocol);
    let a = Abort::never();
    // A fresh environment per command.
    m.execute("x=1; cd /", Some(5), far(), &a).unwrap();
    let r = m.execute("echo ${x-unset} $PWD", Some(5), far(), &a).unwrap();
    assert_eq!(r.stdout, format!("unset {}\n", m.state_dir().display()).into_bytes());
    let r = m.execute("echo hello; exit 3", Some(5), far(), &a).unwrap();
    assert_eq!((r.status, r.stdout.as_slice()), (3, &b"hello\n"[..]));
    // `set -euo pipefail` is part of the framing.
    let r = m.execute("false | true; echo unreachable", Some(5), far(), &a).unwrap();
    assert_eq!((r.status, r.stdout.as_slice()), (1, &b""[..]));
    let r = m.execute(r"printf '\xff\xfe\000abc'", Some(5), far(), &a).unwrap();
    assert_eq!(r.stdout, b"\xff\xfe\x00abc");
    assert!(r.text().1, "non-UTF-8 output is flagged as lossy");
    let r = m.execute("for i in 1 2 3\ndo\n  echo \"n=$i\"\ndone", Some(5), far(), &a).unwrap();
    assert_eq!(String::from_utf8(r.stdout).unwrap(), "n=1\nn=2\nn=3\n");
    // The guest-side timeout ends a hanging command with 124.
    let t = Instant::now();
    let r = m.execute("sleep 30", Some(1), far(), &a).unwrap();
    assert_eq!(r.status, 124);
    assert!(t.elapsed() < Duration::from_secs(5));
    // stderr goes to the serial console, like in a real guest.
    m.execute("echo to-the-console >&2", Some(5), far(), &a).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(text(&log).contains("machine # to-the-console"), "{}", text(&log));
    assert!(text(&log).contains("machine: connected to guest root shell"));
    m.release(&Abort::never()).expect("the fake QEMU stops on SIGTERM");
    text(&log)
}

#[test]
fn a_background_process_does_not_hold_the_reply() {
    if !available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (mut m, _) = booted(tmp.path(), "");
    let t = Instant::now();
    let r = m.execute("sleep 30 & echo started", Some(10), far(), &Abort::never()).unwrap();
    assert_eq!((r.status, r.stdout.as_slice()), (0, &b"started\n"[..]));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // A guest that does not answer in time (no guest-side deadline here):
    // the host's deadline holds, the next command finds the shell busy, and
    // once the old command is done the shell is usable again.
    let err = m
        .execute_within("sleep 2", None, Instant::now() + Duration::from_millis(300), &Abort::never())
        .unwrap_err();
    assert!(matches!(err, VmError::Shell { source: ShellError::Timeout { .. }, .. }), "{err:?}");
    let err =
        m.execute("true", Some(1), Instant::now() + Duration::from_millis(300), &Abort::never()).unwrap_err();
    assert!(matches!(err, VmError::Shell { source: ShellError::Busy, .. }), "{err:?}");
    let r = m.execute("echo ok", Some(5), far(), &Abort::never()).unwrap();
    assert_eq!(r.stdout, b"ok\n");
    m.release(&Abort::never()).expect("the fake QEMU stops on SIGTERM");
}

#[test]
fn stock_framing_host_deadline_detects_a_background_process_holding_stdout() {
    if !available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (mut m, _) = booted_with(tmp.path(), "", Protocol::Stock);
    let t = Instant::now();
    let err = m
        .execute("sleep 30 & echo started", Some(1), Instant::now() + Duration::from_secs(2), &Abort::never())
        .unwrap_err();
    let waited = t.elapsed();
    assert!(matches!(err, VmError::Shell { source: ShellError::Timeout { .. }, .. }), "{err:?}");
    assert!(waited < Duration::from_secs(3), "host deadline must hold: {waited:?}");
    // The shell stays out of sync while the background process holds stdout.
    let err =
        m.execute("true", Some(1), Instant::now() + Duration::from_millis(300), &Abort::never()).unwrap_err();
    assert!(matches!(err, VmError::Shell { source: ShellError::Busy, .. }), "{err:?}");
    m.release(&Abort::never()).expect("the fake QEMU stops on SIGTERM");
    // Through a step, the message says what to do.
    let mut h = Harness::boot_with("", Protocol::Stock);
    let f = h.failure(&step(
        Action::Succeed { command: "sleep 30 & true".into(), expect: Expect::default(), capture: None },
        1.0,
    ));
    assert!(f.message.contains("background process keeps the command's stdout open"), "{}", f.message);
    assert!(f.message.contains("cmd >/dev/null 2>&1 &"), "{}", f.message);
}

#[test]
fn eof_mid_command_reports_the_qemu_exit_status() {
    if !available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (mut m, _) = booted(tmp.path(), "FAKE_DIE_ON=sleep");
    let t = Instant::now();
    let err = m.execute("sleep 10", Some(20), far(), &Abort::never()).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5));
    let msg = err.to_string();
    assert!(msg.starts_with("node machine: QEMU exited with status 3"), "{msg}");
    assert!(err.is_vm_failure());
    assert!(!m.is_running());
}

#[test]
fn start_script_that_exits_is_reported_at_once() {
    if !available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (mut m, _) = machine(tmp.path(), "FAKE_EXIT=7");
    let t = Instant::now();
    let err = m.start(far(), &Abort::never()).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(3), "took {:?}", t.elapsed());
    let msg = err.to_string();
    assert!(msg.starts_with("node machine: start script exited with status 7"), "{msg}");
    assert!(msg.contains("fake-qemu: failing on purpose"), "the last console lines are shown: {msg}");
    // QEMU's stderr is shown apart from the console, and is not console output.
    assert!(
        msg.contains("QEMU's stderr:\n    qemu-system-x86_64: fake-qemu: exiting with 7"),
        "QEMU's stderr is shown apart: {msg}"
    );
    assert!(!m.console().tail(50).iter().any(|l| l.contains("exiting with")), "stderr is not console output");
}

#[test]
fn boot_timeout_without_marker() {
    if !available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (mut m, _) = machine(tmp.path(), "FAKE_NO_MARKER=1");
    m.start(far(), &Abort::never()).unwrap();
    let err = m.connect(Instant::now() + Duration::from_millis(500), &Abort::never()).unwrap_err();
    assert!(err.to_string().contains("waiting for the backdoor shell did not finish"), "{err}");
    m.release(&Abort::never()).expect("the fake QEMU stops on SIGTERM");
    assert!(!m.is_running());
}

fn opts(tmp: &Path, out: &Path, env: &str, steps: Vec<Step>) -> RunOptions {
    RunOptions {
        config: DriverConfig {
            vms: vec![VmEntry { name: "machine".into(), start_script: script(env) }],
            vlans: Vec::new(),
            global_timeout: None,
            ssh_backdoor: false,
            test_script: None,
        },
        plan: Plan {
            version: PLAN_VERSION,
            name: "fake".into(),
            nodes: vec!["machine".into()],
            global_timeout: None,
            steps,
        },
        out_dir: out.to_owned(),
        tmp_dir: tmp.to_owned(),
        keep_state: false,
        keep_going: false,
        junit_xml: Some(out.join("junit.xml")),
        report_json: out.join("report.json"),
        grace: Duration::from_secs(2),
        boot_timeout: Duration::from_secs(20),
    }
}

/// A whole driver run against the fake guest, in its own directories.
struct FakeRun {
    tmp: tempfile::TempDir,
    out: tempfile::TempDir,
    opts: RunOptions,
}

impl FakeRun {
    /// `None` when the fake guest's tools are missing.
    fn new(env: &str, steps: Vec<Step>) -> Option<FakeRun> {
        if !available() {
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let opts = opts(tmp.path(), out.path(), env, steps);
        Some(FakeRun { tmp, out, opts })
    }

    /// Runs the plan; returns the outcome and the captured log.
    fn run(&self, abort: &Abort) -> (run::Outcome, Captured) {
        let (log, buf) = Log::capture(Level::Info);
        (run::run(&self.opts, abort, Arc::new(log)).unwrap(), buf)
    }

    fn output(&self, name: &str) -> String {
        std::fs::read_to_string(self.out.path().join(name)).unwrap()
    }
}

#[test]
fn socket_path_too_long_is_rejected_up_front() {
    let tmp = PathBuf::from(format!("/tmp/{}", "x".repeat(100)));
    let o = opts(&tmp, Path::new("/tmp"), "", Vec::new());
    let err = run::validate(&o).unwrap_err();
    assert!(matches!(err, SetupError::SocketPath { .. }), "{err:?}");
    assert!(err.to_string().contains("set XDG_RUNTIME_DIR or TMPDIR"), "{err}");
    assert!(!tmp.exists(), "nothing is created");
}

#[test]
fn temporary_directory_with_a_space_reaches_qemu_as_one_argument() {
    if !available() {
        return;
    }
    let parent = tempfile::tempdir().unwrap();
    let tmp = parent.path().join("with space");
    std::fs::create_dir_all(&tmp).unwrap();
    let (mut m, buf) = machine(&tmp, "");
    m.start(far(), &Abort::never()).unwrap_or_else(|e| panic!("{e}\n{}", text(&buf)));
    m.connect(far(), &Abort::never()).unwrap();
    let reply = m.execute("echo ok", Some(5), far(), &Abort::never()).unwrap();
    assert_eq!(reply.stdout, b"ok\n");
    m.release(&Abort::never()).expect("the fake QEMU stops on SIGTERM");
}

#[test]
fn node_names_that_escape_the_state_directory_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = opts(tmp.path(), Path::new("/tmp"), "", Vec::new());
    o.config.vms[0].name = "x/../../victim".into();
    o.plan.nodes.clear();
    let err = run::validate(&o).unwrap_err();
    assert!(matches!(err, SetupError::NodeName { .. }), "{err:?}");
    assert_eq!(err.exit_code(), crate::exit_codes::INVALID_INPUT);
}

fn step(action: Action, timeout: f64) -> Step {
    Step { node: Some("machine".into()), timeout: Some(timeout.into()), action, span: None }
}

fn succeed(cmd: &str) -> Step {
    step(Action::Succeed { command: cmd.into(), expect: Expect::default(), capture: None }, 10.0)
}

fn subtest(title: &str, steps: Vec<Step>) -> Step {
    Step { node: None, timeout: None, action: Action::Subtest { title: title.into(), steps }, span: None }
}

/// Runs `f` after a delay and returns the instant just before it ran: a
/// waiter woken by `f` (a console line) may finish before `f` returns.
fn later(delay: Duration, f: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<Instant> {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let at = Instant::now();
        f();
        at
    })
}

/// Each framed command of the latency tests' fake guest starts only after
/// this delay (the cost of `bash -c … | base64` on a TCG guest, exaggerated):
/// a wait that probes from the host needs over a second per probe and
/// notices a condition that turns true between two probes ~0.5 s late; a
/// loop inside the guest notices it within its 50 ms pause.
const SLOW_COMMANDS: &str = "FAKE_COMMAND_DELAY=1.0";
/// When a latency test makes its condition true, counted from the wait's
/// start: after the wait's first command has started in the guest.
const TRIGGER_AFTER: Duration = Duration::from_millis(1500);
/// Below [`SLOW_COMMANDS`]' 1 s per command, so only a loop inside the guest
/// can pass: a host-side re-probe would notice at least 1 s late. The 0.2 s
/// figure itself is measured by `benches/driver/` (a timed bound here would
/// fail on a loaded machine, not on a slow driver).
const MAX_LATENCY: Duration = Duration::from_millis(900);

/// Runs `wait` while `trigger` makes its condition true [`TRIGGER_AFTER`]
/// its start, and asserts that it ended after the trigger, within
/// [`MAX_LATENCY`].
fn assert_wait_latency(h: &mut Harness, wait: Action, trigger: impl FnOnce() + Send + 'static) {
    let what = format!("{wait:?}");
    let became_true = later(TRIGGER_AFTER, trigger);
    h.run(&step(wait, 20.0)).unwrap_or_else(|e| panic!("{what}: {e:?}"));
    let noticed = Instant::now();
    let became_true = became_true.join().unwrap();
    let latency = noticed
        .checked_duration_since(became_true)
        .unwrap_or_else(|| panic!("{what} ended before its condition became true"));
    eprintln!("{what}: ended {latency:?} after its condition became true");
    assert!(latency < MAX_LATENCY, "{what} ended {latency:?} after its condition (bound {MAX_LATENCY:?})");
}

#[test]
fn wait_for_file_latency() {
    let Some(mut h) = harness(SLOW_COMMANDS) else { return };
    let flag = h.tmp.path().join("flag");
    let path = flag.display().to_string();
    assert_wait_latency(&mut h, Action::WaitForFile { path }, move || std::fs::write(flag, "").unwrap());
}

/// A free local TCP port and a slot that keeps its listener open.
fn port_slot() -> (u16, Arc<std::sync::Mutex<Option<std::net::TcpListener>>>) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    (port, Arc::default())
}

#[test]
fn wait_for_open_port_latency() {
    if !require("nc", "the fake guest's port probe") {
        return;
    }
    let Some(mut h) = harness(SLOW_COMMANDS) else { return };
    let (port, slot) = port_slot();
    let wait = Action::WaitForOpenPort { port: port.into(), addr: Some("127.0.0.1".into()) };
    let s2 = slot.clone();
    assert_wait_latency(&mut h, wait, move || {
        *s2.lock().unwrap() = Some(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap());
    });
    assert!(slot.lock().unwrap().is_some());
}

#[test]
fn wait_for_closed_port_latency() {
    if !require("nc", "the fake guest's port probe") {
        return;
    }
    let Some(mut h) = harness(SLOW_COMMANDS) else { return };
    let (port, slot) = port_slot();
    *slot.lock().unwrap() = Some(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap());
    let wait = Action::WaitForClosedPort { port: port.into(), addr: Some("127.0.0.1".into()) };
    assert_wait_latency(&mut h, wait, move || drop(slot.lock().unwrap().take()));
}

#[test]
fn wait_until_succeeds_latency() {
    let Some(mut h) = harness(SLOW_COMMANDS) else { return };
    let flag = h.tmp.path().join("flag");
    let command = format!("test -e {}", flag.display());
    let wait = Action::WaitUntilSucceeds { command, expect: Expect::default(), capture: None };
    assert_wait_latency(&mut h, wait, move || std::fs::write(flag, "").unwrap());
    // With `expect`: the command succeeds all along, its output changes.
    let status = h.tmp.path().join("status");
    std::fs::write(&status, "starting\n").unwrap();
    let command = format!("cat {}", status.display());
    let expect = Expect { contains: vec!["Healthy".into()], ..Expect::default() };
    let wait = Action::WaitUntilSucceeds { command, expect, capture: None };
    assert_wait_latency(&mut h, wait, move || std::fs::write(status, "Healthy\n").unwrap());
}

#[test]
fn wait_until_fails_latency() {
    let Some(mut h) = harness(SLOW_COMMANDS) else { return };
    let flag = h.tmp.path().join("flag");
    let wait = Action::WaitUntilFails { command: format!("test ! -e {}", flag.display()) };
    assert_wait_latency(&mut h, wait, move || std::fs::write(flag, "").unwrap());
}

#[test]
fn wait_for_unit_latency() {
    let Some(mut h) = harness(SLOW_COMMANDS) else { return };
    // "activating" keeps the wait going until the unit is active.
    let unit_file = h.units().join("syshc.service");
    std::fs::write(&unit_file, "activating").unwrap();
    let wait = Action::WaitForUnit { unit: "syshc.service".into(), user: None };
    assert_wait_latency(&mut h, wait, move || std::fs::write(unit_file, "active").unwrap());
}

#[test]
fn wait_for_console_text_latency() {
    let Some(mut h) = harness(SLOW_COMMANDS) else { return };
    let console = h.machine().console().clone();
    let wait = Action::WaitForConsoleText { regex: "Reached target .*Multi-User".into() };
    assert_wait_latency(&mut h, wait, move || {
        console.push("[  OK  ] Reached target Multi-User System.".into())
    });
}

#[test]
fn waits_report_the_last_attempt_on_timeout() {
    let Some(mut h) = harness("") else { return };
    let t = Instant::now();
    let wait = Action::WaitUntilSucceeds {
        command: "echo attempt; exit 3".into(),
        expect: Expect::default(),
        capture: None,
    };
    let f = h.failure(&step(wait, 1.0));
    assert!(t.elapsed() < Duration::from_millis(1800), "took {:?}", t.elapsed());
    assert!(
        f.message.starts_with("command `echo attempt; exit 3` did not succeed within 1.0 seconds"),
        "{}",
        f.message
    );
    // The output and status of one attempt, not of every attempt.
    assert_eq!((f.exit_status, f.output.as_deref()), (Some(3), Some("attempt\n")));
    assert_eq!(f.command.as_deref(), Some("echo attempt; exit 3"));
    let f = h.failure(&step(Action::WaitForOpenPort { port: 1.into(), addr: Some("127.0.0.1".into()) }, 1.0));
    assert!(f.message.starts_with("TCP port 1 did not open within 1.0 seconds"), "{}", f.message);
    assert_eq!(f.command.as_deref(), Some("nc -z 127.0.0.1 1"));
    assert_eq!(f.exit_status, Some(1));
}

#[test]
fn unit_waits_fail_fast_with_diagnostics() {
    let Some(mut h) = harness("") else { return };
    let units = h.units();
    std::fs::write(units.join("broken.service"), "failed").unwrap();
    let t = Instant::now();
    let f = h.failure(&step(Action::WaitForUnit { unit: "broken.service".into(), user: None }, 30.0));
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(f.message, "unit \"broken.service\" reached state \"failed\"");
    assert_eq!(f.details.len(), 2, "{:?}", f.details);
    assert_eq!(f.details[0].title, "systemctl status broken.service");
    assert!(f.details[0].text.contains("Active: failed"), "{:?}", f.details);
    assert!(f.details[1].text.contains("fake journal"), "{:?}", f.details);
    // Inactive with no jobs pending fails at once too.
    let f = h.failure(&step(Action::WaitForUnit { unit: "never.service".into(), user: None }, 30.0));
    assert_eq!(f.message, "unit \"never.service\" is inactive and there are no pending jobs");
    // A step's timeout bounds the wall time.
    std::fs::write(units.join("slow.service"), "activating").unwrap();
    let t = Instant::now();
    assert!(h.run(&step(Action::WaitForUnit { unit: "slow.service".into(), user: None }, 1.0)).is_err());
    assert!(t.elapsed() < Duration::from_millis(1500), "took {:?}", t.elapsed());
    // Diagnostics included (docs/driver.md: within 0.5 s of the timeout).
    let t = Instant::now();
    let f = h.failure(&step(Action::WaitForUnit { unit: "slow.service".into(), user: None }, 3.0));
    let took = t.elapsed();
    assert!(f.message.contains("did not become active within 3.0 seconds"), "{}", f.message);
    assert_eq!(f.details.len(), 2, "diagnostics collected: {:?}", f.details);
    assert!(took < Duration::from_millis(3500), "took {took:?}");
}

#[test]
fn vm_actions_shutdown_start_reboot_crash_copy_screenshot() {
    let Some(mut h) = harness("") else { return };
    h.ok(Action::Succeed {
        command: "mkdir -p /tmp/shared/../d && echo data > $TMPDIR/file".into(),
        expect: Expect::default(),
        capture: None,
    });
    let file = h.machine().state_dir().join("file");
    h.ok(Action::CopyFromVm { source: file.display().to_string(), target_dir: Some("copied".into()) });
    let out = h.out.path().to_owned();
    assert_eq!(std::fs::read_to_string(out.join("copied/file")).unwrap(), "data\n");
    h.ok(Action::Screenshot { name: "shot".into() });
    assert!(out.join("shot.png").exists() || out.join("shot.ppm").exists());
    h.ok(Action::Block);
    h.ok(Action::Unblock);
    h.ok(Action::Shutdown);
    assert!(!h.machine().is_running());
    h.ok(Action::Start);
    h.ok(Action::Reboot);
    h.ok(Action::Succeed { command: "true".into(), expect: Expect::default(), capture: None });
    h.ok(Action::Crash);
    assert!(!h.machine().is_running());
    // A command on a stopped node starts it again, like the stock driver.
    h.ok(Action::Succeed { command: "true".into(), expect: Expect::default(), capture: None });
    assert!(h.machine().is_running());
    // Monitor commands do not.
    h.ok(Action::Crash);
    let r = h.run(&step(Action::Block, 5.0));
    assert!(matches!(r, Err(StepError::Vm(_))), "{r:?}");
}

/// Issue 11: a plan written by hand (or by an old generator) with paths that
/// leave the output directory fails the step; nothing is written outside,
/// and links the guest put into the copied tree are not followed.
#[test]
fn copies_and_screenshots_stay_inside_the_output_directory() {
    let Some(mut h) = harness("") else { return };
    let victim = h.tmp.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("file"), "keep").unwrap();
    h.ok(Action::Succeed {
        command:
            "mkdir -p $TMPDIR/tree && echo data > $TMPDIR/tree/file && ln -s /etc/passwd $TMPDIR/tree/pw"
                .into(),
        expect: Expect::default(),
        capture: None,
    });
    let tree = h.machine().state_dir().join("tree").display().to_string();
    let out = h.out.path().to_owned();
    for target in [victim.display().to_string(), "../victim".into(), format!("../{}", victim.display())] {
        let f = h.failure(&step(Action::CopyFromVm { source: tree.clone(), target_dir: Some(target) }, 10.0));
        assert!(f.message.contains("cannot copy"), "{}", f.message);
    }
    std::os::unix::fs::symlink(&victim, out.join("link")).unwrap();
    let f =
        h.failure(&step(Action::CopyFromVm { source: tree.clone(), target_dir: Some("link".into()) }, 10.0));
    assert!(f.message.contains("symbolic link"), "{}", f.message);
    for name in ["../victim/file", "/tmp/x", "link/file"] {
        let f = h.failure(&step(Action::Screenshot { name: name.into() }, 10.0));
        assert!(f.message.contains("cannot write"), "{name}: {}", f.message);
    }
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 1);
    assert_eq!(std::fs::read_to_string(victim.join("file")).unwrap(), "keep");
    h.ok(Action::CopyFromVm { source: tree, target_dir: Some("inside".into()) });
    assert_eq!(std::fs::read_to_string(out.join("inside/tree/file")).unwrap(), "data\n");
    assert!(std::fs::symlink_metadata(out.join("inside/tree/pw")).is_err(), "a guest link was copied");
}

#[test]
fn failing_step_reports_golden() {
    let steps = vec![
        succeed("echo hello"),
        step(
            Action::Succeed {
                command: "echo Sick".into(),
                expect: Expect { contains: vec!["Healthy".into()], ..Expect::default() },
                capture: None,
            },
            10.0,
        ),
        succeed("echo never"),
    ];
    let Some(fake) = FakeRun::new("", steps) else { return };
    let (outcome, _) = fake.run(&Abort::never());
    assert_eq!(outcome.result, RunResult::Failed);
    assert_eq!(outcome.exit_code(), 1);
    let json = fake.output("report.json");
    let xml = fake.output("junit.xml");
    golden("report/goldens/failing-step.json", &redact(&json));
    golden("report/goldens/failing-step.junit.xml", &redact(&xml));
}

fn statuses(r: &super::report::RunReport) -> Vec<(String, StepStatus)> {
    fn walk(steps: &[super::report::StepReport], out: &mut Vec<(String, StepStatus)>) {
        for s in steps {
            out.push((s.description.clone(), s.status));
            walk(&s.steps, out);
        }
    }
    let mut out = Vec::new();
    walk(&r.steps, &mut out);
    out
}

#[test]
fn keep_going_semantics() {
    use StepStatus::*;
    let plan = || {
        vec![
            subtest("a", vec![succeed("false"), succeed("echo skipped-in-a")]),
            subtest("b", vec![succeed("true")]),
            succeed("exit 4"),
            succeed("true"),
        ]
    };
    let expected_keep_going = vec![
        ("subtest: a".to_owned(), Failed),
        ("must succeed: false".to_owned(), Failed),
        ("must succeed: echo skipped-in-a".to_owned(), Skipped),
        ("subtest: b".to_owned(), Passed),
        ("must succeed: true".to_owned(), Passed),
        ("must succeed: exit 4".to_owned(), Failed),
        ("must succeed: true".to_owned(), Passed),
    ];
    let expected_stop = vec![
        ("subtest: a".to_owned(), Failed),
        ("must succeed: false".to_owned(), Failed),
        ("must succeed: echo skipped-in-a".to_owned(), Skipped),
        ("subtest: b".to_owned(), Skipped),
        ("must succeed: true".to_owned(), Skipped),
        ("must succeed: exit 4".to_owned(), Skipped),
        ("must succeed: true".to_owned(), Skipped),
    ];
    for (keep_going, expected) in [(true, expected_keep_going), (false, expected_stop)] {
        let Some(mut fake) = FakeRun::new("", plan()) else { return };
        fake.opts.keep_going = keep_going;
        let (outcome, _) = fake.run(&Abort::never());
        assert_eq!(outcome.result, RunResult::Failed);
        assert_eq!(statuses(&outcome.report), expected, "keep_going={keep_going}");
    }
}

#[test]
fn global_timeout_writes_the_reports_and_kills_everything() {
    let Some(fake) = FakeRun::new("", vec![succeed("true"), succeed("sleep 30.17"), succeed("true")]) else {
        return;
    };
    let survivors = Survivors::watch(fake.tmp.path());
    let abort = Abort::new(Arc::new(AtomicUsize::new(0)), Some(Duration::from_secs(3)));
    let t = Instant::now();
    let (outcome, buf) = fake.run(&abort);
    assert!(t.elapsed() < Duration::from_secs(8), "took {:?}", t.elapsed());
    assert_eq!(outcome.result, RunResult::TimedOut);
    assert_eq!(outcome.exit_code(), crate::exit_codes::GLOBAL_TIMEOUT);
    let json: serde_json::Value = serde_json::from_str(&fake.output("report.json")).unwrap();
    assert_eq!(json["result"], "timedOut");
    assert_eq!(json["steps"][1]["status"], "failed");
    assert_eq!(
        json["steps"][1]["failure"]["message"],
        "the global timeout expired while this step was running"
    );
    assert_eq!(json["steps"][2]["status"], "skipped");
    assert!(fake.out.path().join("junit.xml").exists());
    assert!(text(&buf).contains("timeout reached; test terminating..."));
    survivors.assert_none_left(2);
}

#[test]
fn interrupt_stops_the_run_and_cleans_up() {
    let Some(fake) = FakeRun::new("", vec![succeed("sleep 30.23")]) else { return };
    let survivors = Survivors::watch(fake.tmp.path());
    let signals = Arc::new(AtomicUsize::new(0));
    let abort = Abort::new(signals.clone(), None);
    let s2 = signals.clone();
    let _ = later(Duration::from_secs(2), move || {
        s2.fetch_add(1, Ordering::Relaxed);
    });
    let (outcome, _) = fake.run(&abort);
    assert_eq!(outcome.result, RunResult::Interrupted);
    assert_eq!(outcome.exit_code(), 130);
    assert!(fake.out.path().join("report.json").exists());
    survivors.assert_none_left(2);
}

#[test]
fn vm_that_fails_to_start_exits_5_with_a_report() {
    let Some(fake) = FakeRun::new("FAKE_EXIT=1", vec![succeed("true")]) else { return };
    let (outcome, _) = fake.run(&Abort::never());
    assert_eq!(outcome.result, RunResult::VmFailed);
    assert_eq!(outcome.exit_code(), crate::exit_codes::VM_FAILED);
    assert_eq!(outcome.report.vm_failures.len(), 1);
    assert!(outcome.report.vm_failures[0].message.contains("start script exited with status 1"));
    let xml = fake.output("junit.xml");
    assert!(xml.contains("start all VMs"), "{xml}");
}

#[test]
fn steps_on_unknown_nodes_are_rejected_up_front() {
    let mut bad = succeed("true");
    bad.node = Some("ghost".into());
    let o = opts(Path::new("/tmp/nixvm-unused"), Path::new("/tmp"), "", vec![subtest("s", vec![bad])]);
    let err = run::validate(&o).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the plan names node `ghost`, which the driver configuration does not define (configured: machine)"
    );
}

/// Runs the interactive prompt against the fake guest with `script` written
/// to its stdin through a pipe (closed afterwards: EOF ends the session);
/// a line `<poweroff>` is not written but makes the writer wait until the
/// fake's `poweroff` stub has run, and one second more (lines are written
/// ahead of the prompt, which may still be booting the node on a loaded
/// machine, so a fixed pause is not enough).
/// Returns the exit code, the prompt's output and the log.
fn repl(fake: &FakeRun, script: &str, signals: &ReplSignals) -> (i32, String, String) {
    let (reader, mut writer) = std::io::pipe().unwrap();
    let script = script.to_owned();
    let marker = fake.tmp.path().join("vm-state-machine").join("poweroff-called");
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        for line in script.split_inclusive('\n') {
            if line.trim() == "<poweroff>" {
                let t = Instant::now();
                while !marker.exists() && t.elapsed() < Duration::from_secs(30) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                std::thread::sleep(Duration::from_secs(1));
            } else {
                // The prompt may have quit already: later lines are not read.
                let _ = writer.write_all(line.as_bytes());
            }
        }
    });
    let (log, buf) = Log::capture(Level::Info);
    let mut out = Vec::new();
    let input = Box::new(std::io::BufReader::new(reader));
    let code = interactive::interactive(&fake.opts, signals, Arc::new(log), input, &mut out).unwrap();
    feeder.join().unwrap();
    (code, String::from_utf8_lossy(&out).into_owned(), text(&buf))
}

#[test]
fn interactive_prompt_drives_nodes_commands_and_steps() {
    let steps = vec![succeed("echo one"), subtest("two", vec![succeed("touch /tmp/nixvm-step-two")])];
    let Some(fake) = FakeRun::new("", steps) else { return };
    let survivors = Survivors::watch(fake.tmp.path());
    let script = "nodes\nstart\nnodes\nmachine: echo hi\nmachine: exit 3\nexec machine printf 'a b'\n\
                  timeout=1 machine: sleep 5\nsteps\nstep 1\nrun\nnodse\nmachine\nghost: true\n";
    let (code, out, log) = repl(&fake, script, &ReplSignals::default());
    assert_eq!(code, 0, "{out}\n{log}");
    let state = fake.tmp.path().join("vm-state-machine").display().to_string();
    // `nodes` before and after `start`.
    assert!(out.contains(&format!("machine  not started  {state}")), "{out}");
    assert!(out.contains("machine is up"), "{out}");
    assert!(out.contains(&format!("machine  up           {state}")), "{out}");
    // Commands: output, then the exit status.
    assert!(out.contains("nixvm> hi\n(exit status 0)\n"), "{out}");
    assert!(out.contains("nixvm> (exit status 3)\n"), "{out}");
    assert!(out.contains("nixvm> a b\n(exit status 0)\n"), "{out}");
    assert!(out.contains("(exit status 124 (124: the timeout ended it))"), "{out}");
    // The plan: listing, one step, the whole run (with the live log).
    assert!(
        out.contains("  1  machine: must succeed: echo one\n     subtest: two\n  2    machine: must succeed")
    );
    assert!(out.contains("step 1 passed"), "{out}");
    assert!(out.contains("run passed: 2 passed, 0 failed, 0 skipped"), "{out}");
    assert!(log.contains("[1/2] machine: must succeed: echo one ... ok"), "{log}");
    assert!(log.contains("[2/2] machine: must succeed: touch /tmp/nixvm-step-two ... ok"), "{log}");
    // Mistakes get a helpful error and the prompt goes on.
    assert!(out.contains("error: unknown command `nodse`; did you mean `nodes`?"), "{out}");
    assert!(out.contains("to run a command on machine, write `machine: COMMAND`"), "{out}");
    assert!(out.contains("error: unknown node `ghost` (nodes: machine)"), "{out}");
    // EOF: sync, cleanup, nothing left; no reports in interactive mode.
    assert!(log.contains("cleanup"), "{log}");
    assert!(!fake.out.path().join("report.json").exists());
    survivors.assert_none_left(2);
}

#[test]
fn interactive_commands_start_the_node_on_demand_and_quit_cleans_up() {
    let Some(fake) = FakeRun::new("", vec![succeed("false")]) else { return };
    let survivors = Survivors::watch(fake.tmp.path());
    let (code, out, log) = repl(
        &fake,
        "machine: echo up\nstep 1\nshutdown machine\nnodes\nstart machine\n\
         machine: (sleep 0.2; poweroff) >/dev/null 2>&1 &\n<poweroff>\nnodes\nquit\nnodes\n",
        &ReplSignals::default(),
    );
    assert_eq!(code, 0);
    assert!(out.contains("up\n(exit status 0)"), "{out}");
    assert!(out.contains("step 1 failed"), "{out}");
    assert!(log.contains("must succeed: false"), "{log}");
    assert!(out.contains("machine is off"), "{out}");
    assert!(out.contains("machine  not started"), "{out}");
    // A QEMU that exits on its own (the fake's `poweroff` stub kills it).
    assert!(out.contains("machine  exited ("), "{out}");
    // `quit` ends the session: the `nodes` after it is never read.
    assert_eq!(out.matches("machine  not started").count(), 1, "{out}");
    survivors.assert_none_left(2);
}

#[test]
fn interactive_interrupt_returns_to_the_prompt() {
    let Some(fake) = FakeRun::new("", Vec::new()) else { return };
    let survivors = Survivors::watch(fake.tmp.path());
    let signals = ReplSignals::default();
    let s = signals.clone();
    // SIGINT as the CLI's signal thread delivers it: only while busy.
    let _ = later(Duration::from_millis(100), move || {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if s.busy.load(Ordering::Relaxed) && s.interrupts.load(Ordering::Relaxed) == 0 {
                std::thread::sleep(Duration::from_millis(1500));
                s.interrupts.fetch_add(1, Ordering::Relaxed);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let t = Instant::now();
    let (code, out, _) = repl(&fake, "timeout=4 machine: sleep 30.41\nmachine: echo after\n", &signals);
    assert_eq!(code, 0);
    assert!(out.contains("interrupted; machine may still be busy in the guest"), "{out}");
    assert!(out.contains("after\n(exit status 0)"), "{out}");
    assert!(t.elapsed() < Duration::from_secs(15), "took {:?}", t.elapsed());
    survivors.assert_none_left(2);
}

#[test]
fn interactive_terminate_signal_ends_the_session() {
    let Some(fake) = FakeRun::new("", Vec::new()) else { return };
    let signals = ReplSignals::default();
    let s = signals.clone();
    let (reader, writer) = std::io::pipe().unwrap();
    let _ = later(Duration::from_secs(1), move || {
        s.terminate.store(true, Ordering::Relaxed);
        s.interrupts.fetch_add(1, Ordering::Relaxed);
    });
    let (log, _) = Log::capture(Level::Info);
    let mut out = Vec::new();
    let input = Box::new(std::io::BufReader::new(reader));
    let code = interactive::interactive(&fake.opts, &signals, Arc::new(log), input, &mut out).unwrap();
    drop(writer);
    assert_eq!(code, crate::exit_codes::INTERRUPTED);
}

#[test]
fn teardown_syncs_only_when_the_machine_state_is_kept() {
    for keep in [false, true] {
        let Some(mut fake) = FakeRun::new("", vec![succeed("true")]) else { return };
        fake.opts.keep_state = keep;
        let (outcome, buf) = fake.run(&Abort::never());
        assert_eq!(outcome.result, RunResult::Passed);
        assert_eq!(text(&buf).contains("fake guest: sync"), keep, "keep_state {keep}: {}", text(&buf));
    }
}

/// Issue 8: the driver's temporary directories are private (mode 0700), like
/// the stock driver's; a pre-existing temporary directory keeps its mode.
#[test]
fn temporary_directories_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let Some(mut fake) = FakeRun::new("", vec![succeed("true")]) else { return };
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let shared = fake.tmp.path().join("shared-xchg");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(fake.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (outcome, _) = fake.run(&Abort::never());
    assert_eq!(outcome.exit_code(), 0);
    assert_eq!(mode(&shared), 0o700, "shared-xchg");
    assert_eq!(mode(&fake.tmp.path().join("vm-state-machine")), 0o700, "vm-state-machine");
    assert_eq!(mode(fake.tmp.path()), 0o755, "an existing temporary directory keeps its mode");
    // A temporary directory the driver creates is private too.
    let fresh = fake.tmp.path().join("new/tmp");
    fake.opts.tmp_dir = fresh.clone();
    let (outcome, _) = fake.run(&Abort::never());
    assert_eq!(outcome.exit_code(), 0);
    assert_eq!(mode(&fresh), 0o700, "a created temporary directory");
    assert_eq!(mode(&fresh.join("shared-xchg")), 0o700);
}

// --- keys and X11 waits (the fake QEMU logs every monitor command) ----------

/// The monitor commands the fake QEMU received, `sendkey` only.
fn sent_keys(h: &Harness) -> Vec<String> {
    let log = std::fs::read_to_string(h.machine().state_dir().join("monitor.log")).unwrap_or_default();
    log.lines().filter(|l| l.starts_with("sendkey ")).map(str::to_owned).collect()
}

#[test]
fn keys_reach_the_monitor_as_the_stock_driver_sends_them() {
    let Some(mut h) = harness("") else { return };
    h.ok(Action::SendChars { chars: "Hi! a-b\n".into() });
    h.ok(Action::SendKeys { keys: vec!["alt-f2".into(), "?".into(), "0x1c".into()] });
    assert_eq!(
        sent_keys(&h),
        [
            "sendkey shift-h",
            "sendkey i",
            "sendkey shift-0x02",
            "sendkey spc",
            "sendkey a",
            "sendkey 0x0C",
            "sendkey b",
            "sendkey ret",
            "sendkey alt-f2",
            "sendkey shift-0x35",
            "sendkey 0x1c",
        ]
    );
}

#[test]
fn a_key_qemu_refuses_fails_the_step_with_its_answer() {
    let Some(mut h) = harness("") else { return };
    // Validation refuses such keys; a hand-written plan reaches QEMU.
    let f =
        h.failure(&step(Action::SendKeys { keys: vec!["ret".into(), "bogus".into(), "ret".into()] }, 10.0));
    assert!(f.message.contains("invalid parameter: bogus"), "{}", f.message);
    assert_eq!(sent_keys(&h), ["sendkey ret", "sendkey bogus"], "the keys after it are not sent");
    let f = h.failure(&step(Action::SendChars { chars: "a\tb".into() }, 10.0));
    assert!(f.message.contains("cannot type '\\t'"), "{}", f.message);
}

#[test]
fn wait_for_window_fails_at_once_when_xwininfo_fails() {
    let Some(mut h) = harness("") else { return };
    // The fake guest runs commands with the host's bash, where there is no X
    // display: xwininfo fails (or is missing), as the stock `succeed` would.
    if std::env::var_os("DISPLAY").is_some() {
        eprintln!("\n!!! SKIPPED: DISPLAY is set; xwininfo might find a real X server.\n");
        return;
    }
    let started = Instant::now();
    let f = h.failure(&step(Action::WaitForWindow { regex: "xterm".into() }, 30.0));
    assert!(started.elapsed() < Duration::from_secs(10), "failed after {:?}", started.elapsed());
    assert!(f.message.starts_with("command `xwininfo -root -tree | sed"), "{}", f.message);
    assert!(f.message.contains("failed (exit code"), "{}", f.message);
}

#[test]
fn interactive_keys_and_type_reach_the_monitor() {
    let Some(fake) = FakeRun::new("", Vec::new()) else { return };
    let (code, out, log) = repl(
        &fake,
        "keys machine alt-f2 ret\ntype machine Hi\\n\nkeys machine bogus-key\n",
        &ReplSignals::default(),
    );
    assert_eq!(code, 0, "{out}\n{log}");
    assert_eq!(out.matches("sent").count(), 2, "{out}");
    assert!(out.contains("error: `bogus` is not a QEMU key name"), "{out}");
    let monitor = std::fs::read_to_string(fake.tmp.path().join("vm-state-machine/monitor.log")).unwrap();
    let keys: Vec<&str> = monitor.lines().filter(|l| l.starts_with("sendkey")).collect();
    assert_eq!(keys, ["sendkey alt-f2", "sendkey ret", "sendkey shift-h", "sendkey i", "sendkey ret"]);
}
