//! The Python `testScript` of a test: the steps written against the stock
//! driver's Machine API (`nixos/lib/test-driver/src/test_driver/machine/`),
//! with the same semantics nixvm-driver gives the plan.
//!
//! Semantics shared with nixvm-driver:
//! - every node is started first (`start_all()`); a `start` step restarts a
//!   node after `shutdown`/`crash`. Nodes that `reboot` are started with
//!   `allow_reboot=True`, otherwise QEMU's `-no-reboot` ends them.
//! - `succeed` checks its `expect` once; `waitUntilSucceeds` retries until
//!   the exit code (default 0) and every `expect` check hold.
//! - `expect.equals` compares both sides stripped of trailing `\n`.
//! - `http` runs [`commands::http_command`] and checks status and body.
//! - `sleep` sleeps on the host (it names no node).
//!
//! The script must pass the driver build's type check and lint (mypy or ty,
//! pyflakes or ruff), hence type annotations on helper functions, unique
//! function names and no f-strings around user text.

use std::borrow::Cow;
use std::collections::BTreeSet;

use super::CodegenError;
use super::escape::{python_string, shell_quote};
use crate::diagnostic::{Sources, Span};
use crate::guest::{captures, commands};
use crate::spec::computed::{Num, is_placeholder};
use crate::spec::names::{SHELL_SAFE_CHARS, UNIT_NAME_CHARS, is_safe_unit_name, is_shell_safe};
use crate::spec::{Action, Expect, Step, TestSpec};

mod checks;
mod helpers;
mod out;

use out::{Comment, Out, PyExpr, PyNum, PyStr, display, float, int, seconds};

/// The node names of the script; lives in spec, which validates them.
pub use crate::spec::names::pythonize;

/// Renders the testScript of a validated test.
pub fn render(spec: &TestSpec, sources: &Sources) -> Result<String, CodegenError> {
    let mut script_gen = ScriptGen::new(spec, sources);
    // The steps first: they decide the imports and helpers above them.
    let mut body = Out::default();
    for step in &spec.steps {
        body.blank();
        script_gen.step(step, &mut body)?;
    }

    let mut out = Out::default();
    out.reserve(body.len() + 256);
    if let Some(description) = &spec.description {
        for line in description.lines() {
            out.line_trimmed(format_args!("# {}", Comment(line)));
        }
    }
    let names = &script_gen.names;
    for (module, alias) in [
        ("json", &names.json),
        ("os", &names.os),
        ("re", &names.re),
        ("shlex", &names.shlex),
        ("time", &names.time),
    ] {
        if script_gen.imports.contains(module) {
            if alias == module {
                out.line(format_args!("import {module}"));
            } else {
                out.line(format_args!("import {module} as {alias}"));
            }
        }
    }
    if !out.is_empty() {
        out.blank();
    }
    if script_gen.json_helpers {
        helpers::json_helpers(&mut out, names);
        out.blank();
    }
    if script_gen.capture_helper {
        helpers::capture_helper(&mut out, names);
        out.blank();
    }
    for node in &script_gen.reboot_nodes {
        out.line(format_args!("{}.start(allow_reboot=True)", py_name(node)));
    }
    out.line(format_args!("start_all()"));
    out.append(&body);
    Ok(out.into_string())
}

/// Every identifier-like word of the `python` steps (an over-approximation
/// of the names they use).
fn python_words(steps: &[crate::spec::Step], out: &mut BTreeSet<String>) {
    for step in steps {
        match &step.action {
            Action::Python { code } => {
                for word in code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if word.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                        out.insert(word.to_string());
                    }
                }
            }
            Action::Subtest { steps, .. } => python_words(steps, out),
            _ => {}
        }
    }
}

/// [`pythonize`], borrowed when the name is already a Python name (as
/// most node names are).
fn py_name(name: &str) -> Cow<'_, str> {
    let is_name = name
        .bytes()
        .enumerate()
        .all(|(i, b)| b.is_ascii_alphabetic() || b == b'_' || (i > 0 && b.is_ascii_digit()));
    if is_name { Cow::Borrowed(name) } else { Cow::Owned(pythonize(name)) }
}

/// The stock driver's own globals, which the script must not assign.
const DRIVER_GLOBALS: &[&str] = &["start_all", "subtest", "retry", "machine", "log", "driver", "t"];

/// Python names the script assigns, chosen not to clash with node names
/// (nodes are globals of the script too) or the names of `python` steps.
struct Names {
    out: String,
    status: String,
    body: String,
    code: String,
    re: String,
    time: String,
    shlex: String,
    json: String,
    json_contains: String,
    expect_json: String,
    failures: String,
    os: String,
    capture: String,
}

struct ScriptGen<'a> {
    sources: &'a Sources,
    /// The description file, as comments and messages name it.
    file: String,
    taken: BTreeSet<String>,
    /// Shared: every step takes a handle while it borrows the generator
    /// mutably (a clone of the thirteen strings per step was 1 % of a
    /// cold `check`).
    names: std::rc::Rc<Names>,
    /// Modules the script imports (`re`, `time`).
    imports: BTreeSet<&'static str>,
    /// Nodes with a `reboot` step, which must be started with `allow_reboot`.
    reboot_nodes: BTreeSet<String>,
    /// Counter for helper function names.
    helpers: usize,
    /// The script defines the `expect.json` helpers.
    json_helpers: bool,
    /// The list of failed checks has been declared.
    failures_declared: bool,
    /// Names captured by the steps so far, in order (the preamble of every
    /// later command, as nixvm-driver sends it).
    captures: Vec<String>,
    /// The script defines the capture helper.
    capture_helper: bool,
}

/// What every line of one step may refer to.
struct StepCtx<'s> {
    /// The node, as a Python name (empty for steps that name none).
    node: Cow<'s, str>,
    /// `file:line` of the step.
    loc: String,
    timeout: Option<PyNum<f64>>,
    names: std::rc::Rc<Names>,
}

impl StepCtx<'_> {
    /// The step's location as a Python string.
    fn loc_lit(&self) -> PyStr<'_> {
        PyStr(&self.loc)
    }

    /// `, timeout=…` when the step has a timeout.
    fn timeout_arg(&self) -> impl std::fmt::Display + '_ {
        display(move |f| match self.timeout {
            Some(t) => write!(f, ", timeout={t}"),
            None => Ok(()),
        })
    }
}

impl<'a> ScriptGen<'a> {
    fn new(spec: &'a TestSpec, sources: &'a Sources) -> Self {
        let mut taken: BTreeSet<String> = spec.nodes.keys().map(|n| pythonize(n)).collect();
        // The names an author's `python` steps use are theirs: a later step
        // must not overwrite their `out` (or shadow their `re`).
        python_words(&spec.steps, &mut taken);
        // The driver's own globals are taken too. The names chosen here need
        // not be: their bases differ and none ends in `_`, so none can be
        // chosen twice, and helpers (`until_1`) are named apart from them.
        let is_taken = |name: &str| DRIVER_GLOBALS.contains(&name) || taken.contains(name);
        let fresh = |base: &str| {
            let mut name = base.to_string();
            while is_taken(&name) {
                name.push('_');
            }
            name
        };
        let names = Names {
            out: fresh("out"),
            status: fresh("status"),
            body: fresh("body"),
            code: fresh("code"),
            re: fresh("re"),
            time: fresh("time"),
            shlex: fresh("shlex"),
            json: fresh("json"),
            json_contains: fresh("json_contains"),
            expect_json: fresh("expect_json"),
            failures: fresh("failures"),
            os: fresh("os"),
            capture: fresh("capture"),
        };
        let mut reboot_nodes = BTreeSet::new();
        collect_reboots(&spec.steps, &mut reboot_nodes);
        ScriptGen {
            sources,
            file: spec.file.display().to_string(),
            taken,
            names: std::rc::Rc::new(names),
            imports: BTreeSet::new(),
            reboot_nodes,
            helpers: 0,
            json_helpers: false,
            failures_declared: false,
            captures: Vec::new(),
            capture_helper: false,
        }
    }

    /// `file:line` of a step, for comments and assertion messages.
    fn location(&self, span: Option<Span>) -> String {
        match span {
            Some(span) if span.file.0 < self.sources.len() => {
                let (line, _) = self.sources.line_col(span.file, span.start);
                let mut digits = itoa::Buffer::new();
                let line = digits.format(line);
                let mut loc = String::with_capacity(self.file.len() + 1 + line.len());
                loc.push_str(&self.file);
                loc.push(':');
                loc.push_str(line);
                loc
            }
            _ => self.file.clone(),
        }
    }

    /// The lines of one step, at the block level of `out`.
    fn step(&mut self, step: &Step, out: &mut Out) -> Result<(), CodegenError> {
        let loc = self.location(step.span);
        out.line(format_args!("# {}: {}", Comment(&loc), step.action.key()));
        let node = match (&step.node, step.action.needs_node()) {
            (Some(node), _) => py_name(node),
            (None, false) => Cow::Borrowed(""),
            (None, true) => {
                return Err(CodegenError::MissingNode { location: loc, action: step.action.key() });
            }
        };
        let timeout = step.effective_timeout().map(|t| PyNum(t, seconds));
        let cx = StepCtx { node, loc, timeout, names: self.names.clone() };
        self.action(step, &cx, out)?;
        if let Some(name) = step.action.capture() {
            self.captures.push(name.to_owned());
        }
        Ok(())
    }

    /// The lines of one step's action.
    fn action(&mut self, step: &Step, cx: &StepCtx<'_>, out: &mut Out) -> Result<(), CodegenError> {
        let (node, loc, loc_lit, n) = (&cx.node, cx.loc.as_str(), cx.loc_lit(), &*cx.names);
        let timeout_arg = cx.timeout_arg();
        match &step.action {
            Action::WaitForUnit { unit, user } => {
                let unit = safe_unit(loc, unit)?;
                let user = self.user_arg(loc, user.as_deref())?;
                out.line(format_args!("{node}.wait_for_unit({}{}{timeout_arg})", PyStr(unit), user.arg));
            }
            Action::WaitForOpenPort { port, addr } | Action::WaitForClosedPort { port, addr } => {
                let method = if matches!(step.action, Action::WaitForOpenPort { .. }) {
                    "wait_for_open_port"
                } else {
                    "wait_for_closed_port"
                };
                let addr_arg = match addr {
                    Some(_) => format!(", addr={}", python_string(&commands::probe_addr(addr.as_deref()))),
                    None => String::new(),
                };
                let port = PyNum(*port, int);
                out.line(format_args!("{node}.{method}({port}{addr_arg}{timeout_arg})"));
            }
            Action::WaitForFile { path } => {
                let quoted = self.shell_quoted(path);
                out.line(format_args!("{node}.wait_for_file({quoted}{timeout_arg})"));
            }
            Action::WaitForOpenUnixSocket { path, datagram } => {
                if !is_shell_safe(path) || path.starts_with('-') {
                    return Err(unsupported(loc, "socket path", path, SHELL_SAFE_CHARS));
                }
                let datagram = if *datagram { ", is_datagram=True" } else { "" };
                out.line(format_args!(
                    "{node}.wait_for_open_unix_socket({}{datagram}{timeout_arg})",
                    PyStr(path)
                ));
            }
            Action::WaitForConsoleText { regex } => {
                out.line(format_args!("{node}.wait_for_console_text({}{timeout_arg})", PyStr(regex)));
            }
            Action::Succeed { command, expect, capture } => {
                let cmd = self.user_command(command);
                match expect.exit_code {
                    Some(code) if code != Num::Lit(0) => {
                        out.line(format_args!(
                            "{}, {} = {node}.execute({cmd}{timeout_arg})",
                            n.status, n.out
                        ));
                        exit_code_assert(out, PyNum(code, int), loc_lit, n);
                    }
                    _ if checks::none(expect) && capture.is_none() => {
                        out.line(format_args!("{node}.succeed({cmd}{timeout_arg})"))
                    }
                    _ => out.line(format_args!("{} = {node}.succeed({cmd}{timeout_arg})", n.out)),
                }
                self.output_asserts(expect, &n.out, "output", loc_lit, out);
                self.store_capture(capture.as_deref(), node, &n.out, out);
            }
            Action::Execute { command, expect, capture } => {
                let cmd = self.user_command(command);
                let call = format_args!("{node}.execute({cmd}{timeout_arg})");
                self.checked_status(call, true, expect, capture.as_deref(), cx, out);
            }
            // The stock `systemctl`, `start_job` and `stop_job` take no
            // timeout and know no captures: with either, the script runs
            // their command itself (`crate::guest::commands`, the same text).
            Action::Systemctl { query, user, expect, capture } => {
                let user = self.user_arg(loc, user.as_deref())?;
                if self.captures.is_empty() && step.timeout.is_none() {
                    let call = format_args!("{node}.systemctl({}{})", PyStr(query), user.arg);
                    self.checked_status(call, false, expect, capture.as_deref(), cx, out);
                } else {
                    let preamble = captures::preamble(&self.captures);
                    let cmd = wrapped(
                        query,
                        |q| format!("{preamble}{}", commands::systemctl_command(q, user.name)),
                        user.name.is_some(),
                    );
                    let call = format_args!("{node}.execute({cmd}{timeout_arg})");
                    self.checked_status(call, false, expect, capture.as_deref(), cx, out);
                }
            }
            Action::StartJob { unit, user } | Action::StopJob { unit, user } => {
                let start = matches!(step.action, Action::StartJob { .. });
                let unit = safe_unit(loc, unit)?;
                let user = self.user_arg(loc, user.as_deref())?;
                if step.timeout.is_none() {
                    let method = if start { "start_job" } else { "stop_job" };
                    out.line(format_args!("{node}.{method}({}{})", PyStr(unit), user.arg));
                } else {
                    let query = |u: &str| {
                        if start { commands::start_job_query(u) } else { commands::stop_job_query(u) }
                    };
                    let cmd = wrapped(unit, |u| commands::systemctl_command(&query(u), user.name), false);
                    out.line(format_args!("{node}.execute({cmd}{timeout_arg})"));
                }
            }
            Action::RequireUnitState { unit, state, user } => {
                let unit = safe_unit(loc, unit)?;
                let (unit, state) = (PyStr(unit), PyStr(state));
                match user {
                    None => out.line(format_args!("{node}.require_unit_state({unit}, {state})")),
                    // The stock method has no `user`: its check, on the user's manager.
                    Some(_) => {
                        let user = self.user_arg(loc, user.as_deref())?;
                        out.line(format_args!(
                            "{} = {node}.get_unit_info({unit}{}).get(\"ActiveState\", \"\")",
                            n.out, user.arg
                        ));
                        out.line(format_args!(
                            "assert {out} == {state}, \"%s: expected unit %r to be in state %r but it is in state %r\" % ({loc_lit}, {unit}, {state}, {out})",
                            out = n.out,
                        ));
                    }
                }
            }
            Action::Fail { command } => {
                out.line(format_args!("{node}.fail({}{timeout_arg})", self.user_command(command)));
            }
            Action::WaitUntilSucceeds { command, expect, capture } if expect.is_empty() => {
                let cmd = self.user_command(command);
                match capture {
                    Some(_) => {
                        out.line(format_args!("{} = {node}.wait_until_succeeds({cmd}{timeout_arg})", n.out))
                    }
                    None => out.line(format_args!("{node}.wait_until_succeeds({cmd}{timeout_arg})")),
                }
                self.store_capture(capture.as_deref(), node, &n.out, out);
            }
            Action::WaitUntilSucceeds { command, expect, capture } => {
                let cmd = self.user_command(command);
                self.helpers += 1;
                let mut helper = format!("until_{}", self.helpers);
                while self.taken.contains(&helper) || DRIVER_GLOBALS.contains(&helper.as_str()) {
                    helper.push('_');
                }
                self.use_checks(expect);
                let code = PyNum(expect.exit_code.unwrap_or(Num::Lit(0)), int);
                let conditions = checks::conditions(code, expect, n, &n.out);
                out.line(format_args!("def {helper}(last_try: bool) -> bool:"));
                out.indented(|out| {
                    out.line(format_args!("{}, {} = {node}.execute({cmd}{timeout_arg})", n.status, n.out));
                    match capture {
                        // The attempt that passes stores its output.
                        Some(_) => {
                            out.line(format_args!("if {conditions}:"));
                            out.indented(|out| {
                                self.store_capture(capture.as_deref(), node, &n.out, out);
                                out.line(format_args!("return True"));
                            });
                            out.line(format_args!("return False"));
                        }
                        None => out.line(format_args!("return {conditions}")),
                    }
                });
                match cx.timeout {
                    Some(t) => out.line(format_args!("retry({helper}, {t})")),
                    None => out.line(format_args!("retry({helper})")),
                }
            }
            Action::WaitUntilFails { command } => {
                out.line(format_args!(
                    "{node}.wait_until_fails({}{timeout_arg})",
                    self.user_command(command)
                ));
            }
            Action::Sleep { seconds } => {
                self.imports.insert("time");
                out.line(format_args!("{}.sleep({})", n.time, PyNum(*seconds, float)));
            }
            Action::Http { url, status, contains } => {
                let cmd = if is_placeholder(url) {
                    PyExpr::Code(format!(
                        "{} + {}",
                        PyStr(&commands::http_command_prefix()),
                        self.shell_quoted(url)
                    ))
                } else {
                    PyExpr::Code(python_string(&commands::http_command(url)))
                };
                out.line(format_args!("{} = {node}.succeed({cmd}{timeout_arg})", n.out));
                out.line(format_args!("{}, _, {} = {}.rpartition(\"\\n\")", n.body, n.code, n.out));
                // curl prints the status as three digits.
                let status = display(|f| match status {
                    Num::Lit(s) => write!(f, "\"{s:03}\""),
                    Num::Computed(_) => write!(f, "str({})", PyNum(*status, int)),
                });
                out.line(format_args!(
                    "assert {code} == {status}, \"%s: expected HTTP status %s from %s, got %s (body: %r)\" % ({loc_lit}, {status}, {url}, {code}, {body})",
                    code = n.code,
                    body = n.body,
                    url = PyStr(url),
                ));
                if let Some(needle) = contains {
                    out.line(format_args!(
                        "assert {needle} in {body}, \"%s: expected the response body to contain %r, got %r\" % ({loc_lit}, {needle}, {body})",
                        needle = PyStr(needle),
                        body = n.body,
                    ));
                }
            }
            Action::Start => {
                let arg = if self.reboot_nodes.contains(step.node.as_deref().unwrap_or_default()) {
                    "allow_reboot=True"
                } else {
                    ""
                };
                out.line(format_args!("{node}.start({arg})"));
            }
            Action::Shutdown => out.line(format_args!("{node}.shutdown()")),
            Action::WaitForShutdown => out.line(format_args!("{node}.wait_for_shutdown()")),
            Action::Crash => out.line(format_args!("{node}.crash()")),
            Action::Reboot => out.line(format_args!("{node}.reboot()")),
            Action::Block => out.line(format_args!("{node}.block()")),
            Action::Unblock => out.line(format_args!("{node}.unblock()")),
            Action::CopyFromVm { source, target_dir } => {
                if !is_shell_safe(source) {
                    return Err(unsupported(loc, "copyFromVm source", source, SHELL_SAFE_CHARS));
                }
                if let Some(Err(e)) = target_dir.as_deref().map(crate::fsutil::check_relative) {
                    return Err(CodegenError::Unsupported {
                        location: loc.to_owned(),
                        message: format!("`targetDir`: {e}"),
                    });
                }
                match target_dir {
                    Some(dir) => {
                        out.line(format_args!("{node}.copy_from_vm({}, {})", PyStr(source), PyStr(dir)))
                    }
                    None => out.line(format_args!("{node}.copy_from_vm({})", PyStr(source))),
                }
            }
            Action::CopyFromHost { source, target } => {
                // Relative sources are computed (`"${self}/tests/vm/…"`) by the parse.
                if !is_placeholder(source) && !source.starts_with(crate::spec::names::STORE_DIR) {
                    return Err(CodegenError::Unsupported {
                        location: loc.to_owned(),
                        message: format!("copyFromHost source {} is not a store path", PyStr(source)),
                    });
                }
                if !is_shell_safe(target) || !target.starts_with('/') {
                    return Err(unsupported(loc, "copyFromHost target", target, SHELL_SAFE_CHARS));
                }
                out.line(format_args!("{node}.copy_from_host({}, {})", PyStr(source), PyStr(target)));
            }
            Action::ForwardPort { host_port, guest_port } => out.line(format_args!(
                "{node}.forward_port({}, {})",
                PyNum(*host_port, int),
                PyNum(*guest_port, int)
            )),
            Action::Screenshot { name } => {
                if !is_shell_safe(name) {
                    return Err(unsupported(loc, "screenshot name", name, SHELL_SAFE_CHARS));
                }
                if let Err(e) = crate::fsutil::check_relative(name) {
                    return Err(CodegenError::Unsupported {
                        location: loc.to_owned(),
                        message: format!("screenshot name: {e}"),
                    });
                }
                out.line(format_args!("{node}.screenshot({})", PyStr(name)));
            }
            // The stock methods run the same guest commands as nixvm-driver
            // (crate::guest::commands) and press the same keys
            // (crate::spec::keys); their `tty` parameter is a `str`.
            Action::SendKeys { keys } => {
                for key in keys {
                    out.line(format_args!("{node}.send_key({})", PyStr(key)));
                }
            }
            Action::SendChars { chars } => out.line(format_args!("{node}.send_chars({})", PyStr(chars))),
            Action::WaitUntilTtyMatches { tty, regex } => out.line(format_args!(
                "{node}.wait_until_tty_matches({}, {}{timeout_arg})",
                python_tty(*tty),
                PyStr(regex)
            )),
            Action::DumpTtyContents { tty } => {
                out.line(format_args!("{node}.dump_tty_contents({})", python_tty(*tty)))
            }
            Action::WaitForText { regex } => {
                out.line(format_args!("{node}.wait_for_text({}{timeout_arg})", PyStr(regex)))
            }
            Action::WaitForX => match cx.timeout {
                Some(t) => out.line(format_args!("{node}.wait_for_x(timeout={t})")),
                None => out.line(format_args!("{node}.wait_for_x()")),
            },
            Action::WaitForWindow { regex } => {
                out.line(format_args!("{node}.wait_for_window({}{timeout_arg})", PyStr(regex)))
            }
            Action::Python { code } => {
                // The escape hatch: the author's own lines, at this block's level.
                for line in code.trim_end_matches('\n').split('\n') {
                    out.line_trimmed(format_args!("{line}"));
                }
            }
            Action::Snapshot { name } | Action::Restore { name } => {
                // Only nixvm-driver runs these (validation refuses them for
                // the Python backend; docs/snapshots.md says why the stock
                // Machine API cannot). The stock driver never runs this
                // script when the Rust backend replaces it, but if it did,
                // it stops here with the reason instead of skipping a step.
                let reason = format!(
                    "`{} = \"{name}\"` needs nixvm-driver (the Rust backend): the stock driver cannot snapshot \
                     NixOS test VMs",
                    step.action.key()
                );
                out.line(format_args!("raise Exception({})", PyStr(&reason)));
            }
            Action::Subtest { title, steps } => {
                out.line(format_args!("with subtest({}):", PyStr(title)));
                out.indented(|out| {
                    if steps.is_empty() {
                        out.line(format_args!("pass"));
                    }
                    // Steps are separated by a blank line; none opens the block.
                    for (i, step) in steps.iter().enumerate() {
                        if i > 0 {
                            out.blank();
                        }
                        self.step(step, out)?;
                    }
                    Ok::<_, CodegenError>(())
                })?;
            }
        }
        Ok(())
    }

    /// The `user=` argument of a stock systemd method, checked.
    fn user_arg<'u>(&self, loc: &str, user: Option<&'u str>) -> Result<UserArg<'u>, CodegenError> {
        match user {
            Some(u) if is_shell_safe(u) && !u.starts_with('-') => {
                Ok(UserArg { name: Some(u), arg: format!(", user={}", PyStr(u)) })
            }
            Some(u) => Err(unsupported(loc, "user name", u, SHELL_SAFE_CHARS)),
            None => Ok(UserArg { name: None, arg: String::new() }),
        }
    }

    /// A call returning `(status, output)`, assigned to the two variables
    /// (`assign`, or when anything checks or stores them), with the step's
    /// checks on both (`expect.exitCode` only when given: any status passes
    /// otherwise) and its capture.
    fn checked_status(
        &mut self,
        call: std::fmt::Arguments<'_>,
        assign: bool,
        expect: &Expect,
        capture: Option<&str>,
        cx: &StepCtx<'_>,
        out: &mut Out,
    ) {
        let n = &*cx.names;
        if assign || !(expect.is_empty() && capture.is_none()) {
            out.line(format_args!("{}, {} = {call}", n.status, n.out));
        } else {
            out.line(call);
        }
        if let Some(code) = expect.exit_code {
            exit_code_assert(out, PyNum(code, int), cx.loc_lit(), n);
        }
        self.output_asserts(expect, &n.out, "output", cx.loc_lit(), out);
        self.store_capture(capture, &cx.node, &n.out, out);
    }

    /// A Python expression for a user's command as the guest runs it: with
    /// the preamble that reads the captures made so far
    /// ([`crate::guest::captures`]), byte for byte what nixvm-driver sends.
    fn user_command<'c>(&self, command: &'c str) -> PyExpr<'c> {
        if self.captures.is_empty() {
            return PyExpr::Literal(command);
        }
        let preamble = captures::preamble(&self.captures);
        if preamble.is_empty() {
            PyExpr::Literal(command)
        } else if is_placeholder(command) {
            PyExpr::Code(format!("{} + {}", PyStr(&preamble), PyStr(command)))
        } else {
            PyExpr::Code(python_string(&format!("{preamble}{command}")))
        }
    }

    /// Stores `var` (a command's output) as capture `name` through the
    /// shared directory of `node` (the stock `Machine.shared_dir`).
    fn store_capture(&mut self, name: Option<&str>, node: &str, var: &str, out: &mut Out) {
        let Some(name) = name else { return };
        self.capture_helper = true;
        self.imports.insert("os");
        out.line(format_args!("{}({node}.shared_dir, {}, {var})", self.names.capture, PyStr(name)));
    }

    /// A Python expression for `s` quoted for the guest shell: the quoted
    /// literal, or `shlex.quote(…)` of a value Nix computes.
    fn shell_quoted(&mut self, s: &str) -> PyExpr<'static> {
        if is_placeholder(s) {
            self.imports.insert("shlex");
            PyExpr::Code(format!("{}.quote({})", self.names.shlex, PyStr(s)))
        } else {
            PyExpr::Code(python_string(&shell_quote(s)))
        }
    }
}

/// `assert` that the step's exit status is `code`.
fn exit_code_assert(out: &mut Out, code: PyNum<i32>, loc_lit: PyStr<'_>, n: &Names) {
    out.line(format_args!(
        "assert {status} == {code}, \"%s: expected exit code %d, got %d (output: %r)\" % ({loc_lit}, {code}, {status}, {out})",
        status = n.status,
        out = n.out,
    ));
}

/// A checked `user` of a systemd step: its name and the `, user=…` argument.
struct UserArg<'u> {
    name: Option<&'u str>,
    arg: String,
}

/// A unit name the stock methods can take (validation refuses others first).
fn safe_unit<'u>(loc: &str, unit: &'u str) -> Result<&'u str, CodegenError> {
    if is_placeholder(unit) || (is_safe_unit_name(unit) && !unit.starts_with('-')) {
        Ok(unit)
    } else {
        Err(unsupported(loc, "unit name", unit, UNIT_NAME_CHARS))
    }
}

/// A Python expression for `build(value)`, also when Nix computes `value`:
/// then the literal text around it is joined to it when the script runs
/// (`in_dollar_quote`: with `'` written `\\'`, as the stock `systemctl`
/// does for a user's query).
fn wrapped(value: &str, build: impl Fn(&str) -> String, in_dollar_quote: bool) -> String {
    if !is_placeholder(value) {
        return python_string(&build(value));
    }
    const MARK: &str = "\u{1}";
    let whole = build(MARK);
    let (before, after) = whole.split_once(MARK).unwrap_or((whole.as_str(), ""));
    let mut inner = python_string(value);
    if in_dollar_quote {
        inner.push_str(".replace(\"'\", \"\\\\'\")");
    }
    let mut parts = Vec::new();
    if !before.is_empty() {
        parts.push(python_string(before));
    }
    parts.push(inner);
    if !after.is_empty() {
        parts.push(python_string(after));
    }
    parts.join(" + ")
}

fn unsupported(location: &str, what: &str, value: &str, allowed: &str) -> CodegenError {
    CodegenError::Unsupported {
        location: location.to_string(),
        message: format!(
            "{what} {} cannot be passed safely to the stock test driver, which hands it to a shell unquoted; use only {allowed}",
            PyStr(value)
        ),
    }
}

fn collect_reboots(steps: &[Step], nodes: &mut BTreeSet<String>) {
    for step in steps {
        match &step.action {
            Action::Reboot => {
                if let Some(node) = &step.node {
                    nodes.insert(node.clone());
                }
            }
            Action::Subtest { steps, .. } => collect_reboots(steps, nodes),
            _ => {}
        }
    }
}

/// The stock `tty` parameters are strings (`"1"`).
fn python_tty(tty: Num<u8>) -> impl std::fmt::Display {
    display(move |f| match tty {
        Num::Lit(t) => write!(f, "\"{t}\""),
        Num::Computed(_) => write!(f, "str({})", PyNum(tty, int)),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn spec(nodes: &[&str], steps: Vec<Step>) -> TestSpec {
        TestSpec {
            name: "t".into(),
            name_span: None,
            file: "tests/vm/t.nix".into(),
            description: None,
            nodes: nodes.iter().map(|n| (n.to_string(), Span::default())).collect::<BTreeMap<_, _>>(),
            modules: None,
            systems: None,
            backend: crate::spec::Backend::Python,
            timeout: None,
            steps,
            function: false,
            computed: Vec::new(),
            test_module: false,
        }
    }

    fn step(node: &str, action: Action) -> Step {
        Step { node: Some(node.into()), timeout: None, action, span: None }
    }

    #[test]
    fn script_variables_avoid_node_names() {
        let expect = Expect { contains: vec!["x".into()], ..Expect::default() };
        let s = spec(
            &["out", "re"],
            vec![
                step(
                    "out",
                    Action::Succeed { command: "true".into(), expect: expect.clone(), capture: None },
                ),
                step(
                    "re",
                    Action::Succeed {
                        command: "true".into(),
                        expect: Expect { matches: Some("y".into()), ..Expect::default() },
                        capture: None,
                    },
                ),
            ],
        );
        let script = render(&s, &Sources::default()).unwrap();
        assert!(script.contains("import re as re_\n"), "{script}");
        assert!(script.contains("out_ = out.succeed(\"true\", timeout=120)"), "{script}");
        assert!(script.contains("re_.search(\"y\", out_)"), "{script}");
    }

    #[test]
    fn timeouts_round_up_to_whole_seconds() {
        let mut s = spec(&["m"], vec![step("m", Action::WaitForFile { path: "/x y".into() })]);
        s.steps[0].timeout = Some(Num::Lit(2.5));
        let script = render(&s, &Sources::default()).unwrap();
        assert!(script.contains("m.wait_for_file(\"'/x y'\", timeout=3)"), "{script}");
    }

    #[test]
    fn equals_ignores_trailing_newlines_on_both_sides() {
        let expect = Expect { equals: Some("done\n".into()), ..Expect::default() };
        let s = spec(
            &["m"],
            vec![step("m", Action::Succeed { command: "echo done".into(), expect, capture: None })],
        );
        let script = render(&s, &Sources::default()).unwrap();
        assert!(script.contains("assert out.rstrip(\"\\n\") == \"done\","), "{script}");
    }

    #[test]
    fn comments_give_a_line_only_when_one_is_known() {
        let mut sources = Sources::default();
        let file = sources.add("tests/vm/t.nix", "{\n  steps = [\n    { crash = true; }\n  ];\n}\n");
        let mut s = spec(&["m"], vec![step("m", Action::Crash), step("m", Action::Crash)]);
        s.steps[0].span = Some(Span { file, start: 20, end: 37 });
        let script = render(&s, &sources).unwrap();
        assert!(script.contains("# tests/vm/t.nix:3: crash\nm.crash()"), "{script}");
        assert!(script.contains("# tests/vm/t.nix: crash\nm.crash()"), "{script}");
    }

    #[test]
    fn a_step_without_node_is_an_error() {
        let mut s = spec(&["m"], vec![step("m", Action::Crash)]);
        s.steps[0].node = None;
        assert!(matches!(render(&s, &Sources::default()), Err(CodegenError::MissingNode { .. })));
    }
}
