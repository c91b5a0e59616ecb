//! `--interactive`: a small line-oriented prompt instead of running the plan,
//! so `driverInteractive` gives users VMs to poke at (the stock driver embeds
//! a Python REPL, reference §7).
//!
//! Like the stock mode there is no global timeout, the VLANs are started up
//! front and the VMs on demand, and leaving (`quit`, EOF, SIGTERM/SIGHUP)
//! runs the normal cleanup. SIGINT at the prompt only prints a hint; while a
//! command runs it interrupts that command's wait (see [`ReplSignals`]).
//! No reports are written: there is no single run to report on.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::abort::{Abort, SLICE, StopReason};
use super::events::{DriverEvent, RunResult};
use super::log::Log;
use super::report::{count_steps, describe};
use super::run::{self, Flow, RunOptions, Runner, SetupError, Sinks};
use super::steps::REPLY_MARGIN;
use super::teardown;
use super::vm::{Machine, VmError};
use crate::plan::Plan;
use crate::spec::{Action, Step};

/// Default guest-side timeout of `NODE: COMMAND`, in seconds.
pub const EXEC_TIMEOUT: u64 = 300;
/// Bound of `shutdown` and `crash` (the actions' defaults).
const POWER_OFF_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound of the `sync` run in every guest before the cleanup.
const SYNC_TIMEOUT: u64 = 10;
/// Largest accepted `timeout=N`.
const MAX_TIMEOUT: u64 = 7 * 24 * 3600;

const HELP: &str = "\
commands:
  nodes                      state of each node (not started / booting / up / exited)
  start [NODE|all]           start a node (default: all, in parallel) and wait for its shell
  shutdown NODE              power the node off (poweroff in the guest)
  crash NODE                 stop QEMU at once (monitor quit)
  NODE: COMMAND              run a shell command in the node (as root, via the backdoor)
  exec NODE COMMAND          the same
  timeout=N NODE: COMMAND    the same with a timeout of N seconds (default 300)
  keys NODE KEY...           press keys (QEMU names: ctrl-alt-f2, ret, spc, or one character each)
  type NODE TEXT             type TEXT on the keyboard (`\n` is Enter)
  tty NODE N                 show what virtual console N shows
  steps                      list the plan's steps (numbered; subtests indented)
  step N                     run step N of the plan
  run                        run the whole plan, as without --interactive
  help                       this text
  quit, exit, Ctrl-D         shut everything down and leave
Ctrl-C interrupts the running command (the guest may still finish it).";

/// Signal state shared with the CLI's signal thread.
///
/// SIGINT increments `interrupts` only while `busy` (a command runs), which
/// the [`Abort`] of every command checks; at the prompt it just prints a
/// hint. SIGTERM/SIGHUP set `terminate` and increment `interrupts`, so a
/// running command stops and the session ends with the cleanup; a second
/// signal during the cleanup skips the grace period ([`Abort::hurry`]).
#[derive(Clone, Debug, Default)]
pub struct ReplSignals {
    pub interrupts: Arc<AtomicUsize>,
    pub terminate: Arc<AtomicBool>,
    pub busy: Arc<AtomicBool>,
}

/// One parsed prompt line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Empty,
    Help,
    Nodes,
    /// `None`: all nodes.
    Start(Option<String>),
    Shutdown(String),
    Crash(String),
    Exec {
        node: String,
        command: String,
        timeout: u64,
    },
    /// `keys NODE KEY...`: a `sendKeys` step.
    Keys {
        node: String,
        keys: Vec<String>,
    },
    /// `type NODE TEXT`: a `sendChars` step.
    Type {
        node: String,
        text: String,
    },
    Steps,
    Step(usize),
    Run,
    Quit,
}

const KEYWORDS: &[&str] = &[
    "help", "nodes", "start", "shutdown", "crash", "exec", "keys", "type", "tty", "steps", "step", "run",
    "quit", "exit",
];

/// Parses one line; the error says what to type instead.
pub fn parse(line: &str, nodes: &[String], step_count: usize) -> Result<Command, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(Command::Empty);
    }
    let (timeout, rest) = match line.strip_prefix("timeout=") {
        Some(after) => {
            let (n, rest) = after.split_once(char::is_whitespace).unwrap_or((after, ""));
            let secs = n.parse::<u64>().ok().filter(|s| (1..=MAX_TIMEOUT).contains(s)).ok_or_else(|| {
                format!("invalid timeout `{n}`: expected whole seconds, 1 to {MAX_TIMEOUT}")
            })?;
            (Some(secs), rest.trim_start())
        }
        None => (None, line),
    };
    let node_known = |n: &str| -> Result<String, String> {
        if nodes.iter().any(|x| x == n) {
            Ok(n.to_owned())
        } else {
            Err(format!("unknown node `{n}` (nodes: {})", nodes.join(", ")))
        }
    };
    let exec = |node: &str, command: &str| -> Result<Command, String> {
        let node = node_known(node)?;
        let command = command.trim();
        if command.is_empty() {
            return Err(format!("nothing to run: write `{node}: COMMAND`"));
        }
        Ok(Command::Exec { node, command: command.to_owned(), timeout: timeout.unwrap_or(EXEC_TIMEOUT) })
    };
    let (word, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let args = args.trim();
    // `NODE: COMMAND` (also `NODE:COMMAND`); the node name has no spaces.
    if let Some((node, command)) = rest.split_once(':')
        && !node.is_empty()
        && !node.contains(char::is_whitespace)
    {
        return exec(node, command);
    }
    if word == "exec" {
        let (node, command) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
        if node.is_empty() {
            return Err("usage: exec NODE COMMAND".to_owned());
        }
        return exec(node, command);
    }
    if timeout.is_some() {
        return Err("`timeout=N` goes before a command: `timeout=N NODE: COMMAND`".to_owned());
    }
    let one_node = |usage: &str| -> Result<String, String> {
        match args.split_whitespace().collect::<Vec<_>>().as_slice() {
            [n] => node_known(n),
            _ => Err(format!("usage: {usage} (nodes: {})", nodes.join(", "))),
        }
    };
    let no_args =
        |cmd: Command| if args.is_empty() { Ok(cmd) } else { Err(format!("`{word}` takes no arguments")) };
    match word {
        "help" | "?" => no_args(Command::Help),
        "nodes" => no_args(Command::Nodes),
        "steps" => no_args(Command::Steps),
        "run" => no_args(Command::Run),
        "quit" | "exit" => no_args(Command::Quit),
        "start" if args.is_empty() || args == "all" => Ok(Command::Start(None)),
        "start" => one_node("start [NODE|all]").map(|n| Command::Start(Some(n))),
        "shutdown" => one_node("shutdown NODE").map(Command::Shutdown),
        "crash" => one_node("crash NODE").map(Command::Crash),
        "keys" | "type" | "tty" => {
            let (node, rest) = args.split_once(char::is_whitespace).unwrap_or((args, ""));
            let usage = match word {
                "keys" => "keys NODE KEY...",
                "type" => "type NODE TEXT",
                _ => "tty NODE N",
            };
            if node.is_empty() || rest.trim().is_empty() {
                return Err(format!("usage: {usage} (nodes: {})", nodes.join(", ")));
            }
            let node = node_known(node)?;
            match word {
                "keys" => {
                    let keys: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
                    for key in &keys {
                        crate::spec::keys::check_key(key)?;
                    }
                    Ok(Command::Keys { node, keys })
                }
                "type" => {
                    let text = rest.trim_start().replace("\\n", "\n");
                    if let Some(c) = crate::spec::keys::first_untypable(&text) {
                        return Err(format!("cannot type {c:?}: printable ASCII and `\\n` only"));
                    }
                    Ok(Command::Type { node, text })
                }
                _ => match rest.trim().parse::<u8>() {
                    Ok(tty @ 1..=63) => Ok(Command::Exec {
                        node,
                        command: crate::guest::commands::tty_text_command(tty),
                        timeout: EXEC_TIMEOUT,
                    }),
                    _ => Err("usage: tty NODE N, with N from 1 to 63".to_owned()),
                },
            }
        }
        "step" => match args.parse::<usize>() {
            Ok(n) if (1..=step_count).contains(&n) => Ok(Command::Step(n)),
            _ if step_count == 0 => Err("the plan has no steps".to_owned()),
            _ => Err(format!("usage: step N, with N from 1 to {step_count} (see `steps`)")),
        },
        other => {
            let mut msg = format!("unknown command `{other}`");
            if nodes.iter().any(|n| n == other) {
                msg.push_str(&format!("; to run a command on {other}, write `{other}: COMMAND`"));
            } else if let Some(k) = KEYWORDS.iter().find(|k| strsim::levenshtein(k, other) <= 2) {
                msg.push_str(&format!("; did you mean `{k}`?"));
            }
            msg.push_str("; type `help` for the list of commands");
            Err(msg)
        }
    }
}

/// One prompt line from the reader thread; `None` is the end of input.
type Line = Option<String>;

/// Reads `input` in a thread, so the prompt loop can also watch for
/// SIGTERM/SIGHUP while it waits.
fn spawn_reader(input: Box<dyn BufRead + Send>) -> mpsc::Receiver<Line> {
    let (tx, rx) = mpsc::channel();
    // If the thread cannot start, `tx` is dropped: the prompt sees EOF.
    let _ = std::thread::Builder::new().name("prompt".into()).spawn(move || {
        for line in input.lines() {
            match line {
                Ok(l) => {
                    if tx.send(Some(l)).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(None);
    });
    rx
}

/// The state of one session.
struct Session<'a> {
    opts: &'a RunOptions,
    abort: Abort,
    log: Arc<Log>,
    machines: BTreeMap<String, Machine>,
    out: &'a mut dyn Write,
}

/// Runs the prompt until `quit`, EOF or SIGTERM/SIGHUP, then cleans up.
/// Returns the exit code: 0, [`crate::exit_codes::VM_FAILED`] when the VLANs
/// or state directories cannot be set up, or
/// [`crate::exit_codes::INTERRUPTED`] after SIGTERM/SIGHUP.
pub fn interactive(
    opts: &RunOptions,
    signals: &ReplSignals,
    log: Arc<Log>,
    input: Box<dyn BufRead + Send>,
    out: &mut dyn Write,
) -> Result<i32, SetupError> {
    run::prepare(opts)?;
    let abort = Abort::new(signals.interrupts.clone(), None);
    if !opts.keep_state {
        log.info(None, "Machine state will be reset. To keep it, pass --keep-machine-state");
    }
    let (vlans, error) = run::start_vlans(opts, &log);
    let machines = match error {
        None => run::prepare_machines(opts, &vlans, &log),
        Some(e) => Err(e),
    };
    let machines = match machines {
        Ok(m) => m,
        Err(e) => {
            log.test_error(&e);
            for (_, f) in teardown::cleanup(&mut BTreeMap::new(), vlans, &abort, opts, &log) {
                log.test_error(&f.render());
            }
            return Ok(crate::exit_codes::VM_FAILED);
        }
    };
    let mut session = Session { opts, abort: abort.clone(), log: log.clone(), machines, out };
    session.say(&format!(
        "nixvm-driver interactive mode: test `{}`, nodes {}; VMs start on demand.\n\
         Type `help` for the commands, `quit` or Ctrl-D to leave (the VMs are stopped then).",
        opts.plan.name,
        session.machines.keys().cloned().collect::<Vec<_>>().join(", ")
    ));
    let lines = spawn_reader(input);
    'prompt: loop {
        session.prompt();
        let line = loop {
            if signals.terminate.load(Ordering::Relaxed) {
                break 'prompt;
            }
            match lines.recv_timeout(SLICE) {
                Ok(Some(line)) => break line,
                Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    session.say("");
                    break 'prompt;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        };
        let command = match parse(&line, &session.node_names(), count_steps(&opts.plan.steps)) {
            Ok(c) => c,
            Err(e) => {
                session.say(&format!("error: {e}"));
                continue;
            }
        };
        if command == Command::Quit {
            break;
        }
        signals.busy.store(true, Ordering::Relaxed);
        // A Ctrl-C at the prompt was only a hint; it must not stop this command.
        signals.interrupts.store(0, Ordering::Relaxed);
        // Checked after the reset: a SIGTERM that arrived before it would
        // otherwise lose its count and not interrupt the command.
        if signals.terminate.load(Ordering::Relaxed) {
            break;
        }
        session.execute(command);
        signals.busy.store(false, Ordering::Relaxed);
    }
    let terminated = signals.terminate.load(Ordering::Relaxed);
    signals.busy.store(true, Ordering::Relaxed);
    if !terminated {
        signals.interrupts.store(0, Ordering::Relaxed);
        session.sync_all();
    }
    let mut machines = std::mem::take(&mut session.machines);
    // What would not stop is shown; the session's exit code stays its own.
    for (_, f) in teardown::stop_all(&mut machines, vlans, &abort, opts, &log) {
        log.test_error(&f.render());
    }
    Ok(if terminated { crate::exit_codes::INTERRUPTED } else { crate::exit_codes::OK })
}

impl Session<'_> {
    /// Writes a line of the prompt's own output (errors ignored: a closed
    /// stderr must not prevent the cleanup).
    fn say(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }

    fn prompt(&mut self) {
        let _ = write!(self.out, "nixvm> ");
        let _ = self.out.flush();
    }

    fn node_names(&self) -> Vec<String> {
        self.machines.keys().cloned().collect()
    }

    fn execute(&mut self, command: Command) {
        match command {
            Command::Empty | Command::Quit => {}
            Command::Help => self.say(HELP),
            Command::Nodes => self.nodes(),
            Command::Start(node) => self.start(node),
            Command::Shutdown(node) => self.power_off(&node, false),
            Command::Crash(node) => self.power_off(&node, true),
            Command::Exec { node, command, timeout } => self.exec(&node, &command, timeout),
            Command::Keys { node, keys } => self.press(&node, Action::SendKeys { keys }),
            Command::Type { node, text } => self.press(&node, Action::SendChars { chars: text }),
            Command::Steps => {
                let listing = list_steps(&self.opts.plan);
                self.say(listing.trim_end());
            }
            Command::Step(n) => self.step(n),
            Command::Run => self.run(),
        }
    }

    fn nodes(&mut self) {
        let width = self.machines.keys().map(String::len).max().unwrap_or(0);
        let rows: Vec<String> = self
            .machines
            .values_mut()
            .map(|m| {
                let state = match m.poll_exit() {
                    Some(status) => format!("exited ({status})"),
                    None if m.is_connected() => "up".to_owned(),
                    None if m.is_running() => "booting".to_owned(),
                    None => "not started".to_owned(),
                };
                format!("{:width$}  {state:11}  {}", m.name(), m.state_dir().display())
            })
            .collect();
        for row in rows {
            self.say(&row);
        }
    }

    /// Reports a failed VM operation; an interrupt gets its own wording.
    fn report(&mut self, node: &str, err: &VmError) {
        match err {
            VmError::Stopped(StopReason::Interrupted) => self.say(&format!(
                "interrupted; {node} may still be busy in the guest (its next command waits for that, \
                 `crash {node}` stops it at once)"
            )),
            other => self.say(&format!("error: {other}")),
        }
    }

    /// Starts and connects one node, bounded by the boot timeout.
    fn boot(&mut self, node: &str) -> Result<(), VmError> {
        let deadline = Instant::now() + self.opts.boot_timeout;
        let Some(m) = self.machines.get_mut(node) else { return Ok(()) };
        m.start(deadline, &self.abort)?;
        m.connect(deadline, &self.abort)
    }

    fn start(&mut self, node: Option<String>) {
        match node {
            Some(node) => match self.boot(&node) {
                Ok(()) => self.say(&format!("{node} is up")),
                Err(e) => self.report(&node, &e),
            },
            None => {
                let deadline = Instant::now() + self.opts.boot_timeout;
                let results = run::boot_all(&mut self.machines, deadline, &self.abort);
                for (node, r) in results {
                    match r {
                        Ok(()) => self.say(&format!("{node} is up")),
                        Err(e) => self.report(&node, &e),
                    }
                }
            }
        }
    }

    fn power_off(&mut self, node: &str, crash: bool) {
        let deadline = Instant::now() + POWER_OFF_TIMEOUT;
        let Some(m) = self.machines.get_mut(node) else { return };
        if !m.is_running() {
            self.say(&format!("{node} is not running"));
            return;
        }
        let res = if crash { m.crash(deadline, &self.abort) } else { m.shutdown(deadline, &self.abort) };
        match res {
            Ok(()) => self.say(&format!("{node} is off")),
            Err(e) => self.report(node, &e),
        }
    }

    /// `NODE: COMMAND`: the step framing (guest-side `timeout`, host
    /// deadline [`REPLY_MARGIN`] later); the node is booted first if needed.
    fn exec(&mut self, node: &str, command: &str, timeout: u64) {
        if let Err(e) = self.boot(node) {
            self.report(node, &e);
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(timeout) + REPLY_MARGIN;
        let Some(m) = self.machines.get_mut(node) else { return };
        match m.execute(command, Some(timeout), deadline, &self.abort) {
            Ok(reply) => {
                let (text, lossy) = reply.text();
                let _ = write!(self.out, "{text}");
                if !text.is_empty() && !text.ends_with('\n') {
                    let _ = writeln!(self.out);
                }
                let note = if lossy { ", output was not valid UTF-8" } else { "" };
                let timed_out = if reply.status == 124 { " (124: the timeout ended it)" } else { "" };
                self.say(&format!("(exit status {}{timed_out}{note})", reply.status));
            }
            Err(e) => self.report(node, &e),
        }
    }

    /// `keys` / `type`: the step on a node that is up (keys need no shell,
    /// but a node must be running to have a keyboard).
    fn press(&mut self, node: &str, action: Action) {
        if let Err(e) = self.boot(node) {
            self.report(node, &e);
            return;
        }
        let step = Step { node: Some(node.to_owned()), timeout: None, action, span: None };
        let mut ctx = super::steps::StepCtx {
            machines: &mut self.machines,
            abort: &self.abort,
            out_dir: &self.opts.out_dir,
            log: &self.log,
            // Keys and characters are no shell commands: no captures to read.
            captures: &mut Vec::new(),
        };
        match super::steps::run_step(&mut ctx, &step) {
            Ok(()) => self.say("sent"),
            Err(super::steps::StepError::Failed(f) | super::steps::StepError::Vm(f)) => {
                self.say(&format!("error: {}", f.message))
            }
            Err(super::steps::StepError::Stopped(_)) => self.say("interrupted"),
        }
    }

    fn runner(&mut self) -> Runner<'_> {
        let mut sinks = Sinks::new(&self.opts.plan, self.log.clone());
        sinks.emit(DriverEvent::RunStarted {
            name: self.opts.plan.name.clone(),
            nodes: self.opts.plan.nodes.clone(),
            total_steps: count_steps(&self.opts.plan.steps),
        });
        Runner::new(&mut self.machines, &self.abort, self.opts, &self.log, sinks)
    }

    fn step(&mut self, n: usize) {
        let Some((path, step)) = leaf(&self.opts.plan.steps, n) else {
            self.say(&format!("error: there is no step {n}"));
            return;
        };
        let mut runner = self.runner();
        let flow = runner.run_leaf(step, path);
        let verdict = match (runner.stop, flow) {
            (Some(_), _) => "interrupted",
            (None, Flow::Continue) => "passed",
            (None, _) => "failed",
        };
        self.say(&format!("step {n} {verdict}"));
    }

    fn run(&mut self) {
        let started = Instant::now();
        let steps = &self.opts.plan.steps;
        let mut runner = self.runner();
        if runner.start_all() {
            runner.run_list(steps, &[]);
        }
        let result = match runner.stop {
            Some(StopReason::GlobalTimeout) => RunResult::TimedOut,
            Some(StopReason::Interrupted) => RunResult::Interrupted,
            None if runner.vm_failed => RunResult::VmFailed,
            None if runner.failed => RunResult::Failed,
            None => RunResult::Passed,
        };
        runner.sinks.emit(DriverEvent::RunFinished { result, duration: started.elapsed(), error: None });
        let sum = runner.sinks.report.report().summary;
        let word = match result {
            RunResult::Passed => "passed",
            RunResult::Failed => "failed",
            RunResult::VmFailed => "failed (a VM failed)",
            RunResult::TimedOut => "timed out",
            RunResult::Interrupted => "interrupted",
        };
        self.say(&format!(
            "run {word}: {} passed, {} failed, {} skipped",
            sum.passed, sum.failed, sum.skipped
        ));
    }

    /// `sync` in every guest that is up, so a later `-K` session reads what
    /// this one wrote.
    fn sync_all(&mut self) {
        for m in self.machines.values_mut() {
            if m.is_connected() {
                let deadline = Instant::now() + Duration::from_secs(SYNC_TIMEOUT) + REPLY_MARGIN;
                if let Err(e) = m.execute("sync", Some(SYNC_TIMEOUT), deadline, &self.abort) {
                    self.log.warning(Some(m.name()), &format!("sync failed: {e}"));
                }
            }
        }
    }
}

/// The path and step of leaf step `n` (numbered as in the progress lines).
fn leaf(steps: &[Step], n: usize) -> Option<(Vec<usize>, &Step)> {
    let numbers = run::number_steps(steps);
    let path = numbers.iter().find(|(_, k)| **k == n).map(|(p, _)| p.clone())?;
    let mut cur = steps.get(*path.first()?)?;
    for i in &path[1..] {
        match &cur.action {
            Action::Subtest { steps, .. } => cur = steps.get(*i)?,
            _ => return None,
        }
    }
    Some((path, cur))
}

/// `steps`: leaf steps numbered, subtests as indented headings.
pub fn list_steps(plan: &Plan) -> String {
    fn walk(steps: &[Step], depth: usize, next: &mut usize, out: &mut String) {
        let indent = "  ".repeat(depth);
        for s in steps {
            match &s.action {
                Action::Subtest { steps, .. } => {
                    out.push_str(&format!("     {indent}{}\n", describe(s)));
                    walk(steps, depth + 1, next, out);
                }
                a => {
                    *next += 1;
                    let node = match (&s.node, a.needs_node()) {
                        (Some(n), true) => format!("{n}: "),
                        _ => String::new(),
                    };
                    out.push_str(&format!("{:>3}  {indent}{node}{}\n", *next, describe(s)));
                }
            }
        }
    }
    let mut out = String::new();
    walk(&plan.steps, 0, &mut 0, &mut out);
    if out.is_empty() {
        out.push_str("the plan has no steps\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PLAN_VERSION;
    use crate::spec::Expect;

    fn nodes() -> Vec<String> {
        vec!["machine".to_owned(), "client".to_owned()]
    }

    fn p(line: &str) -> Result<Command, String> {
        parse(line, &nodes(), 3)
    }

    fn exec(node: &str, command: &str, timeout: u64) -> Command {
        Command::Exec { node: node.into(), command: command.into(), timeout }
    }

    #[test]
    fn parses_commands() {
        assert_eq!(p("  "), Ok(Command::Empty));
        assert_eq!(p("# comment"), Ok(Command::Empty));
        assert_eq!(p("nodes"), Ok(Command::Nodes));
        assert_eq!(p("start"), Ok(Command::Start(None)));
        assert_eq!(p("start all"), Ok(Command::Start(None)));
        assert_eq!(p("start client"), Ok(Command::Start(Some("client".into()))));
        assert_eq!(p("shutdown machine"), Ok(Command::Shutdown("machine".into())));
        assert_eq!(p("crash machine"), Ok(Command::Crash("machine".into())));
        assert_eq!(p("machine: echo hi"), Ok(exec("machine", "echo hi", EXEC_TIMEOUT)));
        assert_eq!(
            p("machine:systemctl status a:b"),
            Ok(exec("machine", "systemctl status a:b", EXEC_TIMEOUT))
        );
        assert_eq!(p("exec client curl http://x:80/"), Ok(exec("client", "curl http://x:80/", EXEC_TIMEOUT)));
        assert_eq!(p("timeout=5 machine: sleep 9"), Ok(exec("machine", "sleep 9", 5)));
        assert_eq!(p("timeout=5 exec machine true"), Ok(exec("machine", "true", 5)));
        assert_eq!(p("step 3"), Ok(Command::Step(3)));
        assert_eq!(p("run"), Ok(Command::Run));
        assert_eq!(p("steps"), Ok(Command::Steps));
        assert_eq!(
            p("keys machine ctrl-alt-f2 ret"),
            Ok(Command::Keys { node: "machine".into(), keys: vec!["ctrl-alt-f2".into(), "ret".into()] })
        );
        assert_eq!(
            p("type client root\\n"),
            Ok(Command::Type { node: "client".into(), text: "root\n".into() })
        );
        assert_eq!(
            p("tty machine 2"),
            Ok(exec("machine", &crate::guest::commands::tty_text_command(2), EXEC_TIMEOUT))
        );
        assert!(p("keys machine enter").unwrap_err().contains("`enter` is not a QEMU key name"));
        assert!(p("type machine a\tb").unwrap_err().contains("cannot type"));
        assert!(p("tty machine 64").unwrap_err().contains("1 to 63"));
        assert!(p("keys nobody ret").unwrap_err().contains("unknown node"));
        assert!(p("keys machine").unwrap_err().starts_with("usage: keys NODE KEY..."));
        assert_eq!(p("exit"), Ok(Command::Quit));
        assert_eq!(p("help"), Ok(Command::Help));
    }

    #[test]
    fn mistakes_say_what_to_type() {
        let err = |l: &str| p(l).unwrap_err();
        assert_eq!(
            err("strat"),
            "unknown command `strat`; did you mean `start`?; type `help` for the list of commands"
        );
        assert!(err("machine").contains("write `machine: COMMAND`"));
        assert!(err("frobnicate").ends_with("type `help` for the list of commands"));
        assert_eq!(err("ghost: true"), "unknown node `ghost` (nodes: machine, client)");
        assert_eq!(err("machine:   "), "nothing to run: write `machine: COMMAND`");
        assert!(err("step 4").contains("N from 1 to 3"));
        assert!(err("step x").contains("usage: step N"));
        assert!(err("timeout=0 machine: true").contains("invalid timeout `0`"));
        assert!(err("timeout=5 nodes").contains("`timeout=N NODE: COMMAND`"));
        assert!(err("shutdown").starts_with("usage: shutdown NODE"));
        assert_eq!(err("nodes now"), "`nodes` takes no arguments");
        assert_eq!(err("exec"), "usage: exec NODE COMMAND");
        assert_eq!(parse("step 1", &nodes(), 0).unwrap_err(), "the plan has no steps");
    }

    fn succeed(cmd: &str) -> Step {
        Step {
            node: Some("machine".into()),
            timeout: Some(10.0.into()),
            action: Action::Succeed { command: cmd.into(), expect: Expect::default(), capture: None },
            span: None,
        }
    }

    #[test]
    fn lists_and_finds_steps() {
        let sub = Step {
            node: None,
            timeout: None,
            action: Action::Subtest { title: "inner".into(), steps: vec![succeed("b"), succeed("c")] },
            span: None,
        };
        let sleep =
            Step { node: None, timeout: None, action: Action::Sleep { seconds: 1.0.into() }, span: None };
        let plan = Plan {
            version: PLAN_VERSION,
            name: "t".into(),
            nodes: vec!["machine".into()],
            global_timeout: None,
            steps: vec![succeed("a"), sub, sleep],
        };
        assert_eq!(
            list_steps(&plan),
            "  1  machine: must succeed: a\n     subtest: inner\n  2    machine: must succeed: b\n\
             \x20 3    machine: must succeed: c\n  4  sleeping for 1 seconds\n"
        );
        let (path, step) = leaf(&plan.steps, 3).unwrap();
        assert_eq!((path, describe(step)), (vec![1, 1], "must succeed: c".to_owned()));
        assert!(leaf(&plan.steps, 5).is_none());
        let empty = Plan { steps: Vec::new(), ..plan };
        assert_eq!(list_steps(&empty), "the plan has no steps\n");
    }
}
