//! Executing one plan step: the guest commands are the stock `Machine`
//! methods' (reference §4) and every step's timeout bounds its wall time,
//! each command's guest-side `timeout` included.
//!
//! Waits whose condition is a guest command poll *inside the guest*: one
//! backdoor command runs the stock probe in a loop with a 50 ms pause until
//! it holds or the step's time is up ([`poll_command`] with the fast
//! protocol, [`guest_poll_loop`] with the stock framing), so the step ends
//! within about 0.1 s of its condition instead of after a full backdoor round
//! trip (0.2–0.4 s per probe on a systemd guest under TCG). The host judges
//! the last attempt's reply as before and re-enters the loop when time is
//! left (an `expect` on the output, a unit that is `inactive` with jobs).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use regex::Regex;

use super::abort::{Abort, StopReason, deadline_after, secs_f64};
use super::console::ConsoleWait;
use super::events::{Detail, Failure};
use super::log::Log;
use super::shell::{Protocol, Reply, ShellError, shell_quote};
use super::vm::{Machine, VmError};
use crate::guest::backdoor::{Until, poll_command};
use crate::guest::commands::{file_probe_command, http_command, port_probe_command, split_http_output};
use crate::spec::{Action, Expect, Step};

/// Extra time the host waits for a reply after the guest-side `timeout`
/// should have ended the command.
pub const REPLY_MARGIN: Duration = Duration::from_secs(2);
/// Pause between two probes inside the guest (`read -t` / `sleep` argument).
const GUEST_PAUSE: &str = "0.05";
/// Extra time given to the guest-side `timeout` of a polling loop beyond its
/// own budget: the loop stops starting attempts at its budget, this covers
/// the last one.
const LOOP_SLACK: Duration = Duration::from_millis(500);
/// First pause between two host-side re-entries of a wait.
const POLL_START: Duration = Duration::from_millis(50);
/// Longest pause between two probes.
const POLL_MAX: Duration = Duration::from_millis(100);
/// How often a long wait says that it is still waiting.
const SLOW_NOTE: Duration = Duration::from_secs(30);
/// Bound of the diagnostic commands run after a unit wait failed.
const DIAGNOSTIC_TIMEOUT: u64 = 10;

/// Why a step did not pass.
#[derive(Debug)]
pub enum StepError {
    /// The checked condition did not hold (exit code 1).
    Failed(Box<Failure>),
    /// The VM is gone or unusable (exit code 5).
    Vm(Box<Failure>),
    /// The run was stopped (signal or global timeout).
    Stopped(StopReason),
}

impl StepError {
    fn failed(f: Failure) -> StepError {
        StepError::Failed(Box::new(f))
    }
}

/// What a step needs from the run.
pub struct StepCtx<'a> {
    pub machines: &'a mut BTreeMap<String, Machine>,
    pub abort: &'a Abort,
    pub out_dir: &'a Path,
    pub log: &'a Log,
}

type StepResult = Result<(), StepError>;

/// Runs one leaf step (subtests are walked by the runner).
pub fn run_step(ctx: &mut StepCtx<'_>, step: &Step) -> StepResult {
    let timeout = step.effective_timeout().map(secs_f64);
    let deadline = deadline_after(timeout.unwrap_or(Duration::from_secs(3600)));
    if let Action::Sleep { seconds } = &step.action {
        return ctx.abort.sleep(secs_f64(*seconds)).map_err(StepError::Stopped);
    }
    let node = step.node.clone().unwrap_or_default();
    let Some(machine) = ctx.machines.get_mut(&node) else {
        return Err(StepError::failed(Failure::new(format!(
            "the plan names node `{node}`, which is not configured"
        ))));
    };
    let mut run = Runner { m: machine, abort: ctx.abort, deadline, step_timeout: timeout, log: ctx.log };
    match &step.action {
        Action::WaitForUnit { unit, user } => run.wait_for_unit(unit, user.as_deref()),
        Action::WaitForOpenPort { port, addr } => {
            let cmd = port_probe_command(*port, addr.as_deref());
            run.wait_status(&cmd, true, &format!("TCP port {port} did not open"))
        }
        Action::WaitForClosedPort { port, addr } => {
            let cmd = port_probe_command(*port, addr.as_deref());
            run.wait_status(&cmd, false, &format!("TCP port {port} did not close"))
        }
        Action::WaitForFile { path } => {
            run.wait_status(&file_probe_command(path), true, &format!("file '{path}' did not appear"))
        }
        Action::WaitForConsoleText { regex } => run.wait_for_console(regex),
        Action::Succeed { command, expect } => run.succeed(command, expect),
        Action::Fail { command } => run.fail(command),
        Action::WaitUntilSucceeds { command, expect } => run.wait_until(command, Some(expect)),
        Action::WaitUntilFails { command } => run.wait_until(command, None),
        Action::Http { url, status, contains } => run.http(url, *status, contains.as_deref()),
        Action::Start => {
            run.m.start(deadline, run.abort).map_err(|e| run.vm_error(e, None))?;
            run.m.connect(deadline, run.abort).map_err(|e| run.vm_error(e, None))
        }
        Action::Shutdown => run.m.shutdown(deadline, run.abort).map_err(|e| run.vm_error(e, None)),
        Action::Crash => run.m.crash(deadline, run.abort).map_err(|e| run.vm_error(e, None)),
        Action::Reboot => run.m.reboot(deadline, run.abort).map_err(|e| run.vm_error(e, None)),
        Action::Block => run.monitor_quiet("set_link virtio-net-pci.1 off"),
        Action::Unblock => run.monitor_quiet("set_link virtio-net-pci.1 on"),
        Action::CopyFromVm { source, target_dir } => {
            run.copy_from_vm(source, target_dir.as_deref(), ctx.out_dir)
        }
        Action::Screenshot { name } => run.screenshot(name, ctx.out_dir),
        Action::Sleep { .. } | Action::Subtest { .. } => Ok(()),
    }
}

struct Runner<'a> {
    m: &'a mut Machine,
    abort: &'a Abort,
    deadline: Instant,
    step_timeout: Option<Duration>,
    log: &'a Log,
}

/// `done` code of [`guest_poll_loop`]: the attempt exited 0.
#[cfg(test)]
const UNTIL_SUCCESS: &str = "if [ \"$__s\" -eq 0 ]; then break; fi;";
/// `done` code of [`guest_poll_loop`]: the attempt exited non-zero.
const UNTIL_FAILURE: &str = "if [ \"$__s\" -ne 0 ]; then break; fi;";

/// What a wait polls for: `attempt` until `until`. With the stock framing a
/// user's command (`fresh_shell`) gets its own `bash -c` per attempt, as when
/// the host sends it; the fast protocol runs every attempt in a fresh
/// `set -euo pipefail` subshell anyway.
struct GuestWait<'a> {
    attempt: &'a str,
    fresh_shell: bool,
    until: Until,
}

impl GuestWait<'_> {
    /// The backdoor command that polls for `budget`.
    fn command(&self, protocol: Protocol, budget: Duration) -> String {
        match protocol {
            Protocol::Fast => poll_command(self.attempt, &self.until, budget),
            Protocol::Stock => {
                let attempt = if self.fresh_shell {
                    format!("bash -c {}", shell_quote(&format!("set -euo pipefail; {}", self.attempt)))
                } else {
                    self.attempt.to_owned()
                };
                guest_poll_loop(&attempt, &stock_done(&self.until), budget)
            }
        }
    }
}

/// `done` code of [`guest_poll_loop`] for an [`Until`].
fn stock_done(until: &Until) -> String {
    match until {
        Until::Status(code) => format!("if [ \"$__s\" -eq {code} ]; then break; fi;"),
        Until::Failure => UNTIL_FAILURE.to_owned(),
        Until::StatusAndOutput(code, needle) => format!(
            "if [ \"$__s\" -eq {code} ] && grep -qF -e {} \"$__o\"; then break; fi;",
            shell_quote(needle)
        ),
        Until::UnitSettled(list_jobs) => unit_settled(list_jobs),
    }
}

/// One backdoor command that runs `attempt` every [`GUEST_PAUSE`] until
/// `done` ends the loop or `budget` has passed, then prints the last
/// attempt's stdout and exits with its status: the host sees what a single
/// probe would have returned, but only once the condition holds.
///
/// `done` is shell code that may `break`; it sees the attempt's exit status
/// in `$__s` and its stdout in the file `$__o`. Under TCG every program the
/// guest starts costs tens of milliseconds, so the loop starts none of its
/// own per attempt and none after the condition holds (unless there is
/// output to print): the output goes to an unlinked temporary file reopened
/// (and so truncated) through `/proc/self/fd`, the pause is bash's `read -t`
/// on an unlinked FIFO (`sleep` if it cannot be made), and the clock is
/// `EPOCHREALTIME` (bash ≥ 5.0, as in NixOS's backdoor shell and both
/// stand-in guests; `mktemp`, `mkfifo` and `sed` are in NixOS's required
/// packages, `nixos/modules/config/system-path.nix`). The budget is kept to
/// the millisecond where the guest-side `timeout` takes whole seconds only.
/// Without a temporary directory the loop makes one attempt with its output
/// on stdout, and the host polls as it would without the loop.
pub fn guest_poll_loop(attempt: &str, done: &str, budget: Duration) -> String {
    let us = budget.as_micros();
    format!(
        "__w= __f= __o=/dev/stdout; __d=$(mktemp -d 2>/dev/null) || __d=; \
         if [ -n \"$__d\" ]; then \
         if mkfifo \"$__d/p\" 2>/dev/null; then exec {{__w}}<>\"$__d/p\"; fi; \
         exec {{__f}}<>\"$__d/o\"; __o=/proc/self/fd/$__f; rm -rf \"$__d\"; fi; \
         __end=$(( ${{EPOCHREALTIME//[!0-9]/}} + {us} )); \
         while :; do __s=0; {{ {attempt}; }} > \"$__o\" || __s=$?; [ -n \"$__f\" ] || break; {done} \
         [ \"${{EPOCHREALTIME//[!0-9]/}}\" -lt \"$__end\" ] || break; \
         if [ -n \"$__w\" ]; then read -rt {GUEST_PAUSE} -u \"$__w\" || :; else sleep {GUEST_PAUSE}; fi; done; \
         if [ -n \"$__f\" ] && [ -s \"$__o\" ]; then cat <&\"$__f\"; fi; exit \"$__s\""
    )
}

/// When a `waitUntilSucceeds` loop stops in the guest: the awaited exit
/// status and, as a pre-filter, `contains` (never stricter than the host's
/// check, which still judges all of `expect`).
fn until_expected(expect: &Expect) -> Until {
    let code = expect.exit_code.unwrap_or(0);
    // An empty or multi-line needle would make grep stricter (no lines, or
    // one pattern per line): the exit status alone decides then.
    match expect.contains.as_deref().filter(|n| !n.is_empty() && !n.contains('\n')) {
        Some(needle) => Until::StatusAndOutput(code, needle.to_owned()),
        None => Until::Status(code),
    }
}

/// `done` code of [`guest_poll_loop`] for `waitForUnit`, the stock
/// `check_active` minus its errors: stop on `active` or `failed`, and on
/// `inactive` once no jobs are pending (the host then re-checks and fails).
fn unit_settled(list_jobs: &str) -> String {
    format!(
        "if [ \"$__s\" -ne 0 ]; then break; fi; \
         case \"$(sed -n 's/^ActiveState=//p' \"$__o\")\" in active|failed) break ;; \
         inactive) __j=$({list_jobs} 2>&1) || true; case \"$__j\" in *'No jobs'*) break ;; esac ;; esac;"
    )
}

impl Runner<'_> {
    fn node(&self) -> String {
        self.m.name().to_owned()
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    fn timeout_secs(&self) -> f64 {
        self.step_timeout.map_or(0.0, |t| t.as_secs_f64())
    }

    /// Turns a VM error into a step error, with the console tail attached.
    fn vm_error(&self, err: VmError, command: Option<&str>) -> StepError {
        if let VmError::Stopped(r) = err {
            return StepError::Stopped(r);
        }
        let vm_failure = err.is_vm_failure();
        let message = match &err {
            VmError::Shell { source: ShellError::Timeout { waited }, .. }
                if self.m.protocol() == Protocol::Fast =>
            {
                format!(
                    "node {}: no reply from the guest within {:.1} seconds although the guest-side deadline \
                     should have ended the command: the guest is unresponsive.",
                    self.node(),
                    waited.as_secs_f64()
                )
            }
            VmError::Shell { source: ShellError::Timeout { waited }, .. } => format!(
                "node {}: no reply from the guest within {:.1} seconds although the guest-side `timeout` should \
                 have ended the command: most likely a background process keeps the command's stdout open; \
                 redirect its output (`cmd >/dev/null 2>&1 &`). Otherwise the guest is unresponsive.",
                self.node(),
                waited.as_secs_f64()
            ),
            _ => err.to_string(),
        };
        let mut f = Failure::new(message);
        f.node = Some(self.node());
        f.command = command.map(str::to_owned);
        if !matches!(err, VmError::StartScriptExited { .. } | VmError::Exited { .. }) {
            f.console = self.m.console_tail();
        }
        if vm_failure { StepError::Vm(Box::new(f)) } else { StepError::failed(f) }
    }

    fn failure(&self, message: String, command: Option<&str>, reply: Option<&Reply>) -> Failure {
        let mut f = Failure::new(message);
        f.node = Some(self.node());
        f.command = command.map(str::to_owned);
        if let Some(r) = reply {
            let (text, lossy) = r.text();
            f.exit_status = Some(r.status);
            f.output = Some(text);
            f.output_lossy = lossy;
        }
        f.console = self.m.console_tail();
        f
    }

    /// One command bounded by the step: the guest-side deadline is the time
    /// left, the host waits [`REPLY_MARGIN`] longer.
    fn exec(&mut self, command: &str) -> Result<Reply, StepError> {
        let guest = self.remaining();
        self.exec_bounded(command, guest, command)
    }

    /// `command` under a guest-side deadline of `guest`; errors name `shown`
    /// (the probe rather than the loop around it).
    fn exec_bounded(&mut self, command: &str, guest: Duration, shown: &str) -> Result<Reply, StepError> {
        let host_deadline = self.deadline + REPLY_MARGIN;
        self.m
            .execute_within(command, Some(guest), host_deadline, self.abort)
            .map_err(|e| self.vm_error(e, Some(shown)))
    }

    /// Runs the wait's attempt in a loop inside the guest until its
    /// condition holds there and `judge` accepts the last attempt's reply on
    /// the host, or the step's time is up (`Ok(None)`). One loop lasts at
    /// most [`SLOW_NOTE`], so long waits still log that they are waiting.
    /// The guest-side deadline is the loop's budget plus [`LOOP_SLACK`],
    /// which stays below the host's [`REPLY_MARGIN`].
    fn poll_in_guest<T>(
        &mut self,
        wait: &GuestWait<'_>,
        mut judge: impl FnMut(&mut Self, Reply) -> Result<Option<T>, StepError>,
    ) -> Result<Option<T>, StepError> {
        self.poll(|r| {
            let budget = r.remaining().min(SLOW_NOTE);
            let protocol = r.m.protocol();
            let guest = match protocol {
                Protocol::Fast => budget + LOOP_SLACK,
                // Whole seconds, rounded up: the loop's last attempt must fit.
                Protocol::Stock => Duration::from_secs((budget + LOOP_SLACK).as_secs_f64().ceil() as u64),
            };
            let reply = r.exec_bounded(&wait.command(protocol, budget), guest, wait.attempt)?;
            judge(r, reply)
        })
    }

    /// Probes until `probe` yields a value or the deadline passes.
    fn poll<T>(
        &mut self,
        mut probe: impl FnMut(&mut Self) -> Result<Option<T>, StepError>,
    ) -> Result<Option<T>, StepError> {
        let mut pause = POLL_START;
        let started = Instant::now();
        let mut next_note = started + SLOW_NOTE;
        loop {
            if let Some(v) = probe(self)? {
                return Ok(Some(v));
            }
            let left = self.remaining();
            if left.is_zero() {
                return Ok(None);
            }
            if Instant::now() >= next_note {
                next_note += SLOW_NOTE;
                let msg = format!(
                    "still waiting after {:.0} seconds ({:.0} seconds left)",
                    started.elapsed().as_secs_f64(),
                    left.as_secs_f64()
                );
                self.log.info(Some(&self.node()), &msg);
            }
            self.abort.sleep(pause.min(left)).map_err(StepError::Stopped)?;
            pause = (pause * 3 / 2).min(POLL_MAX);
        }
    }

    fn systemctl(&self, query: &str, user: Option<&str>) -> String {
        match user {
            None => format!("systemctl {query}"),
            Some(u) => {
                let q = query.replace('\'', "\\'");
                format!(
                    "su -l {u} --shell /bin/sh -c $'XDG_RUNTIME_DIR=/run/user/`id -u` systemctl --user {q}'"
                )
            }
        }
    }

    fn show_command(&self, unit: &str, user: Option<&str>) -> String {
        self.systemctl(&format!("--no-pager show \"{unit}\""), user)
    }

    fn active_state(&mut self, unit: &str, user: Option<&str>) -> Result<String, StepError> {
        let cmd = self.show_command(unit, user);
        let reply = self.exec(&cmd)?;
        self.parse_active_state(unit, user, &cmd, &reply)
    }

    /// `ActiveState` from the output of [`Runner::show_command`].
    fn parse_active_state(
        &self,
        unit: &str,
        user: Option<&str>,
        cmd: &str,
        reply: &Reply,
    ) -> Result<String, StepError> {
        if reply.status != 0 {
            let who = user.map(|u| format!(" under user \"{u}\"")).unwrap_or_default();
            let msg = format!(
                "retrieving systemctl info for unit \"{unit}\"{who} failed with exit code {}",
                reply.status
            );
            return Err(StepError::failed(self.failure(msg, Some(cmd), Some(reply))));
        }
        let (text, _) = reply.text();
        Ok(text.lines().find_map(|l| l.strip_prefix("ActiveState=")).unwrap_or("").trim().to_owned())
    }

    fn wait_for_unit(&mut self, unit: &str, user: Option<&str>) -> StepResult {
        let show = self.show_command(unit, user);
        let wait = GuestWait {
            attempt: &show,
            fresh_shell: false,
            until: Until::UnitSettled("systemctl list-jobs --full".into()),
        };
        let result = self.poll_in_guest(&wait, |r, reply| {
            let state = r.parse_active_state(unit, user, &show, &reply)?;
            match state.as_str() {
                "active" => Ok(Some(())),
                "failed" => Err(StepError::failed(r.failure(
                    format!("unit \"{unit}\" reached state \"failed\""),
                    None,
                    None,
                ))),
                "inactive" => {
                    let jobs = r.exec("systemctl list-jobs --full 2>&1")?;
                    if jobs.text().0.contains("No jobs") && r.active_state(unit, user)? == "inactive" {
                        let msg = format!("unit \"{unit}\" is inactive and there are no pending jobs");
                        return Err(StepError::failed(r.failure(msg, None, None)));
                    }
                    Ok(None)
                }
                _ => Ok(None),
            }
        });
        let err = match result {
            Ok(Some(())) => return Ok(()),
            Ok(None) => StepError::failed(self.failure(
                format!("unit \"{unit}\" did not become active within {:.1} seconds", self.timeout_secs()),
                None,
                None,
            )),
            Err(e) => e,
        };
        Err(match err {
            StepError::Failed(mut f) => {
                f.details = self.unit_diagnostics(unit, user);
                StepError::Failed(f)
            }
            other => other,
        })
    }

    /// `systemctl status` and the unit's journal, best effort.
    fn unit_diagnostics(&mut self, unit: &str, user: Option<&str>) -> Vec<Detail> {
        let q = shell_quote(unit);
        let cmds = [
            (
                format!("systemctl status {unit}"),
                self.systemctl(&format!("--no-pager status {q}"), user) + " 2>&1",
            ),
            (
                format!("journalctl -u {unit} -n 30"),
                match user {
                    None => format!("journalctl --no-pager -u {q} -n 30 2>&1"),
                    Some(_) => format!("journalctl --no-pager --user-unit {q} -n 30 2>&1"),
                },
            ),
        ];
        let mut out = Vec::new();
        for (title, cmd) in cmds {
            let deadline = Instant::now() + Duration::from_secs(DIAGNOSTIC_TIMEOUT) + REPLY_MARGIN;
            if let Ok(reply) = self.m.execute(&cmd, Some(DIAGNOSTIC_TIMEOUT), deadline, self.abort) {
                out.push(Detail { title, text: reply.text().0 });
            }
        }
        out
    }

    /// Waits until `command` exits 0 (`want_success`) or non-zero.
    fn wait_status(&mut self, command: &str, want_success: bool, what: &str) -> StepResult {
        let mut last = None;
        let until = if want_success { Until::Status(0) } else { Until::Failure };
        let wait = GuestWait { attempt: command, fresh_shell: false, until };
        let done = self.poll_in_guest(&wait, |_, reply| {
            let ok = (reply.status == 0) == want_success;
            last = Some(reply);
            Ok(ok.then_some(()))
        })?;
        if done.is_some() {
            return Ok(());
        }
        let msg = format!("{what} within {:.1} seconds", self.timeout_secs());
        Err(StepError::failed(self.failure(msg, Some(command), last.as_ref())))
    }

    fn wait_for_console(&mut self, pattern: &str) -> StepResult {
        let re = Regex::new(pattern).map_err(|e| {
            StepError::failed(self.failure(
                format!("invalid regular expression `{pattern}`: {e}"),
                None,
                None,
            ))
        })?;
        match self.m.console().wait_for(&re, self.deadline, self.abort) {
            Ok(ConsoleWait::Found(_)) => Ok(()),
            Ok(ConsoleWait::TimedOut) => Err(StepError::failed(self.failure(
                format!(
                    "console text matching `{pattern}` did not appear within {:.1} seconds",
                    self.timeout_secs()
                ),
                None,
                None,
            ))),
            Err(r) => Err(StepError::Stopped(r)),
        }
    }

    fn succeed(&mut self, command: &str, expect: &Expect) -> StepResult {
        let reply = self.exec(command)?;
        match check_expect(command, &reply, expect) {
            Ok(()) => Ok(()),
            Err(msg) => {
                Err(StepError::failed(self.failure(self.timed_out(msg, &reply), Some(command), Some(&reply))))
            }
        }
    }

    /// Adds a note when the guest-side `timeout` ended the command.
    fn timed_out(&self, msg: String, reply: &Reply) -> String {
        if reply.status == 124 && self.remaining() <= Duration::from_secs(1) {
            format!(
                "{msg}; the step's timeout of {:.1} seconds ended it (guest-side `timeout`)",
                self.timeout_secs()
            )
        } else {
            msg
        }
    }

    fn fail(&mut self, command: &str) -> StepResult {
        let reply = self.exec(command)?;
        if reply.status == 0 {
            let msg = format!("command `{command}` unexpectedly succeeded");
            return Err(StepError::failed(self.failure(msg, Some(command), Some(&reply))));
        }
        Ok(())
    }

    /// `waitUntilSucceeds` (with `expect`) / `waitUntilFails` (without).
    fn wait_until(&mut self, command: &str, expect: Option<&Expect>) -> StepResult {
        let mut last: Option<(Reply, String)> = None;
        // Each attempt is a fresh shell with the framing's options, as
        // when the host sends it; the loop stops on the awaited exit status
        // and the host checks the rest of `expect`, re-entering if it fails.
        let until = match expect {
            Some(e) => until_expected(e),
            None => Until::Failure,
        };
        let wait = GuestWait { attempt: command, fresh_shell: true, until };
        let done = self.poll_in_guest(&wait, |_, reply| {
            let verdict = match expect {
                Some(e) => check_expect(command, &reply, e),
                None if reply.status != 0 => Ok(()),
                None => Err(format!("command `{command}` succeeded")),
            };
            match verdict {
                Ok(()) => Ok(Some(())),
                Err(why) => {
                    last = Some((reply, why));
                    Ok(None)
                }
            }
        })?;
        if done.is_some() {
            return Ok(());
        }
        let goal = if expect.is_some() { "succeed" } else { "fail" };
        let mut msg = format!("command `{command}` did not {goal} within {:.1} seconds", self.timeout_secs());
        if let Some((_, why)) = &last {
            msg.push_str(&format!(" (last attempt: {why})"));
        }
        Err(StepError::failed(self.failure(msg, Some(command), last.as_ref().map(|(r, _)| r))))
    }

    fn http(&mut self, url: &str, status: u16, contains: Option<&str>) -> StepResult {
        let cmd = http_command(url);
        let reply = self.exec(&cmd)?;
        let fail = |r: &Self, msg: String| StepError::failed(r.failure(msg, Some(&cmd), Some(&reply)));
        if reply.status != 0 {
            let msg =
                self.timed_out(format!("request to {url} failed (curl exit code {})", reply.status), &reply);
            return Err(fail(self, msg));
        }
        let (text, _) = reply.text();
        let Some((body, code)) = split_http_output(&text) else {
            return Err(fail(self, format!("cannot find the HTTP status in curl's output for {url}")));
        };
        if code.trim() != status.to_string() {
            return Err(fail(
                self,
                format!("{url} answered with HTTP status {}, expected {status}", code.trim()),
            ));
        }
        if let Some(needle) = contains {
            if !body.contains(needle) {
                return Err(fail(self, format!("the response body of {url} does not contain `{needle}`")));
            }
        }
        Ok(())
    }

    /// Sends an HMP command and returns what QEMU printed for it (`set_link`
    /// and `screendump` print nothing on success, an error message otherwise).
    fn monitor(&mut self, command: &str) -> Result<String, StepError> {
        let reply = self
            .m
            .monitor(command, self.deadline, self.abort)
            .map_err(|e| self.vm_error(e, Some(command)))?;
        Ok(monitor_output(&reply))
    }

    /// A monitor command that must print nothing.
    fn monitor_quiet(&mut self, command: &str) -> StepResult {
        let out = self.monitor(command)?;
        if out.is_empty() {
            return Ok(());
        }
        let msg = format!("QEMU monitor command `{command}` failed: {out}");
        Err(StepError::failed(self.failure(msg, Some(command), None)))
    }

    /// Copies through the shared directory: the guest's `/tmp/shared` is the
    /// host's `<tmp>/shared-xchg` (§4.7).
    fn copy_from_vm(&mut self, source: &str, target_dir: Option<&str>, out_dir: &Path) -> StepResult {
        let shared = self.m.shared_dir();
        let io_fail = |r: &Self, what: String, e: std::io::Error| {
            StepError::failed(r.failure(format!("{what}: {e}"), None, None))
        };
        std::fs::create_dir_all(&shared)
            .map_err(|e| io_fail(self, format!("cannot create {}", shared.display()), e))?;
        let tmp = tempfile::Builder::new()
            .prefix("copy-")
            .tempdir_in(&shared)
            .map_err(|e| io_fail(self, format!("cannot create a directory in {}", shared.display()), e))?;
        let rel = tmp.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let base =
            Path::new(source).file_name().map(|n| n.to_string_lossy().into_owned()).ok_or_else(|| {
                StepError::failed(self.failure(format!("`{source}` names no file"), None, None))
            })?;
        let guest_dir = format!("/tmp/shared/{rel}");
        let cmd = format!(
            "mkdir -p {} && cp -r {} {}",
            shell_quote(&guest_dir),
            shell_quote(source),
            shell_quote(&format!("{guest_dir}/{base}"))
        );
        let reply = self.exec(&cmd)?;
        if reply.status != 0 {
            let msg = format!("copying `{source}` out of the VM failed (exit code {})", reply.status);
            return Err(StepError::failed(self.failure(msg, Some(&cmd), Some(&reply))));
        }
        let target = out_dir.join(target_dir.unwrap_or("")).join(&base);
        copy_tree(&tmp.path().join(&base), &target)
            .map_err(|e| io_fail(self, format!("cannot copy to {}", target.display()), e))?;
        self.log.info(Some(&self.node()), &format!("copied {source} to {}", target.display()));
        Ok(())
    }

    fn screenshot(&mut self, name: &str, out_dir: &Path) -> StepResult {
        let file = if name.contains('.') { name.to_owned() } else { format!("{name}.png") };
        let target = out_dir.join(&file);
        let ppm = self.m.state_dir().join("screenshot.ppm");
        let _ = std::fs::remove_file(&ppm);
        let said = self.monitor(&format!("screendump {}", ppm.display()))?;
        let fail = |r: &Self, msg: String| StepError::failed(r.failure(msg, None, None));
        if !ppm.exists() {
            let why = if said.is_empty() { "no reason given".to_owned() } else { said };
            return Err(fail(self, format!("QEMU did not write a screendump ({why})")));
        }
        // stderr is captured (not inherited): it belongs in the failure, not
        // unannounced in the live log.
        let converted = std::process::Command::new("pnmtopng").arg(&ppm).output();
        match converted {
            Ok(out) if out.status.success() => crate::fsutil::write_atomic(&target, &out.stdout)
                .map_err(|e| fail(self, format!("cannot write {}: {e}", target.display()))),
            Ok(out) => Err(fail(
                self,
                format!(
                    "Cannot convert screenshot (pnmtopng exited with {}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let kept = target.with_extension("ppm");
                std::fs::copy(&ppm, &kept)
                    .map(drop)
                    .map_err(|e| fail(self, format!("cannot write {}: {e}", kept.display())))?;
                self.log.warning(
                    Some(&self.node()),
                    &format!("pnmtopng is missing; kept the raw screendump as {}", kept.display()),
                );
                Ok(())
            }
            Err(e) => Err(fail(self, format!("cannot run pnmtopng: {e}"))),
        }
    }
}

/// Checks a reply against `expect` (exit code default 0).
pub fn check_expect(command: &str, reply: &Reply, expect: &Expect) -> Result<(), String> {
    let want = expect.exit_code.unwrap_or(0);
    if reply.status != want {
        return Err(if expect.exit_code.is_none() {
            format!("command `{command}` failed (exit code {})", reply.status)
        } else {
            format!("command `{command}` exited with {}, expected {want}", reply.status)
        });
    }
    let (out, _) = reply.text();
    if let Some(needle) = &expect.contains {
        if !out.contains(needle.as_str()) {
            return Err(format!("the output of `{command}` does not contain `{needle}`"));
        }
    }
    if let Some(eq) = &expect.equals {
        if out.trim_end_matches('\n') != eq.trim_end_matches('\n') {
            return Err(format!("the output of `{command}` is not `{eq}`"));
        }
    }
    if let Some(pattern) = &expect.matches {
        let re = Regex::new(pattern).map_err(|e| format!("invalid regular expression `{pattern}`: {e}"))?;
        if !re.is_match(&out) {
            return Err(format!("the output of `{command}` does not match `{pattern}`"));
        }
    }
    Ok(())
}

/// The text of an HMP answer without the echoed command line, the final
/// prompt and terminal escape sequences.
fn monitor_output(reply: &str) -> String {
    let body = reply.strip_suffix("(qemu) ").unwrap_or(reply);
    let body = super::vm::strip_ansi(body).replace('\r', "");
    let mut lines = body.lines();
    lines.next();
    lines.collect::<Vec<_>>().join("\n").trim().to_owned()
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if from.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        std::fs::copy(from, to).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: i32, out: &str) -> Reply {
        Reply { status, stdout: out.as_bytes().to_vec() }
    }

    #[test]
    fn expectations() {
        let e = Expect { contains: Some("Healthy".into()), ..Expect::default() };
        assert!(check_expect("c", &reply(0, "all Healthy\n"), &e).is_ok());
        assert_eq!(
            check_expect("c", &reply(0, "sick"), &e).unwrap_err(),
            "the output of `c` does not contain `Healthy`"
        );
        assert_eq!(
            check_expect("c", &reply(3, ""), &Expect::default()).unwrap_err(),
            "command `c` failed (exit code 3)"
        );
        let e = Expect { exit_code: Some(3), equals: Some("x".into()), ..Expect::default() };
        assert!(check_expect("c", &reply(3, "x\n\n"), &e).is_ok());
        assert!(check_expect("c", &reply(0, "x"), &e).is_err());
        let e = Expect { matches: Some("^v[0-9]+$".into()), ..Expect::default() };
        assert!(check_expect("c", &reply(0, "v12"), &e).is_ok());
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
        let out =
            std::process::Command::new("bash").arg("-c").arg(script).env("TMPDIR", tmp).output().unwrap();
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
        let mut ctx =
            StepCtx { machines: &mut machines, abort: &Abort::never(), out_dir: out.path(), log: &log };
        for timeout in [-1.0, 1e300] {
            let step = Step {
                node: Some("ghost".into()),
                timeout: Some(timeout),
                action: Action::Fail { command: "true".into() },
                span: None,
            };
            let err = run_step(&mut ctx, &step).unwrap_err();
            assert!(matches!(&err, StepError::Failed(f) if f.message.contains("not configured")), "{err:?}");
        }
        let nap = Step { node: None, timeout: None, action: Action::Sleep { seconds: -3.0 }, span: None };
        assert!(run_step(&mut ctx, &nap).is_ok());
    }
}
