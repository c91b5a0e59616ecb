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

use super::abort::{Abort, StopReason, deadline_after, secs_f64};
use super::events::Failure;
use super::log::Log;
use super::shell::{Protocol, Reply, ShellError, shell_quote};
use super::vm::{Machine, VmError};
use crate::guest::backdoor::{Until, poll_command};
use crate::guest::captures::with_captures;
use crate::guest::commands::{
    file_probe_command, port_probe_command, start_job_query, stop_job_query, systemctl_command,
    unix_socket_probe_command,
};
use crate::spec::{Action, Num, Step};

mod commands;
mod display;
mod files;
mod monitor;
mod network;
mod terminal;
#[cfg(test)]
mod tests;
mod units;
mod waits;
mod x11;

pub use commands::check_expect;

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
    /// Names captured by the steps run so far, in order: every later user
    /// command reads them ([`crate::guest::captures`]).
    pub captures: &'a mut Vec<String>,
}

type StepResult = Result<(), StepError>;

/// Runs one leaf step (subtests are walked by the runner).
pub fn run_step(ctx: &mut StepCtx<'_>, step: &Step) -> StepResult {
    let timeout = step.effective_timeout().map(evaluated).transpose()?.map(secs_f64);
    let deadline = deadline_after(timeout.unwrap_or(Duration::from_secs(3600)));
    match &step.action {
        Action::Sleep { seconds } => {
            return ctx.abort.sleep(secs_f64(evaluated(*seconds)?)).map_err(StepError::Stopped);
        }
        Action::Snapshot { name } => {
            return super::snapshot::save(ctx.machines, name, deadline, ctx.abort, ctx.log);
        }
        Action::Restore { name } => {
            return super::snapshot::restore(ctx.machines, name, deadline, ctx.abort, ctx.log);
        }
        _ => {}
    }
    let node = step.node.clone().unwrap_or_default();
    let Some(machine) = ctx.machines.get_mut(&node) else {
        return Err(StepError::failed(Failure::new(format!(
            "the plan names node `{node}`, which is not configured"
        ))));
    };
    let mut run = Runner { m: machine, abort: ctx.abort, deadline, step_timeout: timeout, log: ctx.log };
    let user =
        |command: &str| UserCommand { shown: command.to_owned(), sent: with_captures(ctx.captures, command) };
    let result = run_on_node(&mut run, step, &user, ctx.out_dir);
    // Later commands read the capture whether or not this step stored it
    // (with `--keep-going`), as the generated script's fixed preambles do.
    if let Some(name) = step.action.capture() {
        ctx.captures.push(name.to_owned());
    }
    result
}

/// A number of the plan, which Nix evaluated.
fn evaluated<T: Copy>(n: Num<T>) -> Result<T, StepError> {
    n.evaluated().map_err(|e| StepError::failed(Failure::new(e.to_string())))
}

/// A user's command: as written (for messages) and as sent (with the
/// captures' preamble).
pub(super) struct UserCommand {
    shown: String,
    sent: String,
}

fn run_on_node(
    run: &mut Runner<'_>,
    step: &Step,
    user: &dyn Fn(&str) -> UserCommand,
    out_dir: &Path,
) -> StepResult {
    let deadline = run.deadline;
    match &step.action {
        Action::WaitForUnit { unit, user } => run.wait_for_unit(unit, user.as_deref()),
        Action::WaitForOpenPort { port, addr } => {
            let port = evaluated(*port)?;
            let cmd = port_probe_command(port, addr.as_deref());
            run.wait_status(&cmd, true, &format!("TCP port {port} did not open"))
        }
        Action::WaitForClosedPort { port, addr } => {
            let port = evaluated(*port)?;
            let cmd = port_probe_command(port, addr.as_deref());
            run.wait_status(&cmd, false, &format!("TCP port {port} did not close"))
        }
        Action::WaitForFile { path } => {
            run.wait_status(&file_probe_command(path), true, &format!("file '{path}' did not appear"))
        }
        Action::WaitForConsoleText { regex } => run.wait_for_console(regex),
        Action::WaitForOpenUnixSocket { path, datagram } => {
            let what = if *datagram { "datagram" } else { "stream" };
            let cmd = unix_socket_probe_command(path, *datagram);
            run.wait_status(&cmd, true, &format!("UNIX-domain {what} socket '{path}' did not open"))
        }
        Action::Succeed { command, expect, capture } => {
            let reply = run.succeed(&user(command), expect, false)?;
            run.store_capture(capture.as_deref(), &reply)
        }
        Action::Execute { command, expect, capture } => {
            let reply = run.succeed(&user(command), expect, true)?;
            run.store_capture(capture.as_deref(), &reply)
        }
        Action::Fail { command } => run.fail(&user(command)),
        Action::WaitUntilSucceeds { command, expect, capture } => {
            let reply = run.wait_until(&user(command), Some(expect))?;
            match reply {
                Some(reply) => run.store_capture(capture.as_deref(), &reply),
                None => Ok(()),
            }
        }
        Action::WaitUntilFails { command } => run.wait_until(&user(command), None).map(|_| ()),
        Action::Systemctl { query, user: as_user, expect, capture } => {
            let reply = run.succeed(&user(&systemctl_command(query, as_user.as_deref())), expect, true)?;
            run.store_capture(capture.as_deref(), &reply)
        }
        Action::RequireUnitState { unit, state, user } => {
            run.require_unit_state(unit, state, user.as_deref())
        }
        Action::StartJob { unit, user } => run.job(&start_job_query(unit), user.as_deref()),
        Action::StopJob { unit, user } => run.job(&stop_job_query(unit), user.as_deref()),
        Action::Http { url, status, contains } => run.http(url, evaluated(*status)?, contains.as_deref()),
        Action::Start => {
            run.m.start(deadline, run.abort).map_err(|e| run.vm_error(e, None))?;
            run.m.connect(deadline, run.abort).map_err(|e| run.vm_error(e, None))
        }
        Action::Shutdown => run.m.shutdown(deadline, run.abort).map_err(|e| run.vm_error(e, None)),
        Action::WaitForShutdown => {
            run.m.wait_for_shutdown(deadline, run.abort).map_err(|e| run.vm_error(e, None))
        }
        Action::Crash => run.m.crash(deadline, run.abort).map_err(|e| run.vm_error(e, None)),
        Action::Reboot => run.m.reboot(deadline, run.abort).map_err(|e| run.vm_error(e, None)),
        Action::Block => run.monitor_quiet("set_link virtio-net-pci.1 off").map(|()| run.m.note_link(false)),
        Action::Unblock => run.monitor_quiet("set_link virtio-net-pci.1 on").map(|()| run.m.note_link(true)),
        Action::CopyFromVm { source, target_dir } => run.copy_from_vm(source, target_dir.as_deref(), out_dir),
        Action::CopyFromHost { source, target } => run.copy_from_host(source, target),
        Action::ForwardPort { host_port, guest_port } => {
            let (host, guest) = (evaluated(*host_port)?, evaluated(*guest_port)?);
            run.forward_port(host, guest)
        }
        Action::Screenshot { name } => run.screenshot(name, out_dir),
        Action::SendKeys { keys } => run.send_keys(keys.iter().map(String::as_str)),
        Action::SendChars { chars } => run.send_chars(chars),
        Action::WaitUntilTtyMatches { tty, regex } => run.wait_for_tty(evaluated(*tty)?, regex),
        Action::DumpTtyContents { tty } => run.dump_tty(evaluated(*tty)?),
        Action::WaitForText { regex } => run.wait_for_text(regex),
        Action::WaitForX => run.wait_for_x(),
        Action::WaitForWindow { regex } => run.wait_for_window(regex),
        Action::Sleep { .. } | Action::Subtest { .. } | Action::Snapshot { .. } | Action::Restore { .. } => {
            Ok(())
        }
        // Validation allows these only with the Python backend.
        Action::Python { .. } => Err(StepError::failed(Failure::new(
            "a `python` step needs the stock driver (backend = \"python\"); nixvm-driver cannot run Python"
                .to_string(),
        ))),
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
        Until::UnitSettled(list_jobs) => units::unit_settled(list_jobs),
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
        self.exec_shown(command, command)
    }

    /// [`Runner::exec`] whose errors name `shown` (the user's command
    /// rather than what was sent with the captures' preamble).
    fn exec_shown(&mut self, command: &str, shown: &str) -> Result<Reply, StepError> {
        let guest = self.remaining();
        self.exec_bounded(command, guest, shown)
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
            // The framing decides the loop's code: boot and connect first
            // (a no-op unless the node was shut down).
            let deadline = r.deadline;
            r.m.start(deadline, r.abort).map_err(|e| r.vm_error(e, None))?;
            r.m.connect(deadline, r.abort).map_err(|e| r.vm_error(e, None))?;
            let budget = r.remaining().min(SLOW_NOTE);
            let protocol = r.m.protocol();
            let guest = match protocol {
                Protocol::Fast => budget + LOOP_SLACK,
                // Whole seconds, rounded up: the loop's last attempt must fit.
                Protocol::Stock => Duration::from_secs((budget + LOOP_SLACK).as_secs_f64().ceil() as u64),
            };
            let reply = r.exec_bounded(&wait.command(protocol, budget), guest, wait.attempt)?;
            // The guest-side deadline ended the loop itself (a probe hung,
            // or a loaded TCG guest overran the loop's slack) once the
            // step's time was up: the wait ran out of time; the reply is not
            // a probe's result.
            if reply.status == 124 && r.remaining().is_zero() {
                return Ok(None);
            }
            judge(r, reply)
        })
    }

    /// After an expensive probe that did not match (xwininfo in the guest,
    /// tesseract on the host), pauses as long as it took, at most 1 s and
    /// never past the deadline: a long wait takes at most about half of the
    /// CPU it probes on (the stock driver pauses 1 s after every probe).
    pub(super) fn breathe(&self, took: Duration) -> StepResult {
        let pause = took.min(Duration::from_secs(1)).min(self.remaining());
        self.abort.sleep(pause).map_err(StepError::Stopped)
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
}
