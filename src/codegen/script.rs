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

use std::collections::BTreeSet;

use super::CodegenError;
use super::escape::{comment_text, python_string, shell_quote};
use crate::diagnostic::{Sources, Span};
use crate::guest::{captures, commands};
use crate::spec::computed::{Num, is_placeholder, placeholder};
use crate::spec::names::{SHELL_SAFE_CHARS, UNIT_NAME_CHARS, is_safe_unit_name, is_shell_safe};
use crate::spec::{Action, Expect, Step, TestSpec};

/// The node names of the script; lives in spec, which validates them.
pub use crate::spec::names::pythonize;

/// `s` without trailing newlines, as a Python expression (computed values
/// are stripped when the script runs).
fn stripped(s: &str) -> String {
    if is_placeholder(s) {
        format!("{}.rstrip(\"\\n\")", python_string(s))
    } else {
        python_string(s.trim_end_matches('\n'))
    }
}

/// Indentation of one Python block level.
const PY_INDENT: &str = "    ";

/// Renders the testScript of a validated test.
pub fn render(spec: &TestSpec, sources: &Sources) -> Result<String, CodegenError> {
    let mut script_gen = ScriptGen::new(spec, sources);
    let mut body = Vec::new();
    script_gen.steps(&spec.steps, &mut body)?;

    let mut lines = Vec::new();
    if let Some(description) = &spec.description {
        for line in description.lines() {
            lines.push(format!("# {}", comment_text(line)).trim_end().to_string());
        }
    }
    for (module, alias) in [
        ("json", &script_gen.names.json),
        ("os", &script_gen.names.os),
        ("re", &script_gen.names.re),
        ("shlex", &script_gen.names.shlex),
        ("time", &script_gen.names.time),
    ] {
        if script_gen.imports.contains(module) {
            if alias == module {
                lines.push(format!("import {module}"));
            } else {
                lines.push(format!("import {module} as {alias}"));
            }
        }
    }
    if !lines.is_empty() {
        lines.push(String::new());
    }
    if script_gen.json_helpers {
        lines.extend(json_helpers(&script_gen.names));
        lines.push(String::new());
    }
    if script_gen.capture_helper {
        lines.extend(capture_helper(&script_gen.names));
        lines.push(String::new());
    }
    for node in &script_gen.reboot_nodes {
        lines.push(format!("{}.start(allow_reboot=True)", pythonize(node)));
    }
    lines.push("start_all()".to_string());
    lines.extend(body);
    let mut script = lines.join("\n");
    script.push('\n');
    Ok(script)
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
    spec: &'a TestSpec,
    sources: &'a Sources,
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

impl<'a> ScriptGen<'a> {
    fn new(spec: &'a TestSpec, sources: &'a Sources) -> Self {
        let mut taken: BTreeSet<String> = spec.nodes.keys().map(|n| pythonize(n)).collect();
        // The driver's own globals.
        for global in ["start_all", "subtest", "retry", "machine", "log", "driver", "t"] {
            taken.insert(global.to_string());
        }
        // The names an author's `python` steps use are theirs: a later step
        // must not overwrite their `out` (or shadow their `re`).
        python_words(&spec.steps, &mut taken);
        let mut fresh = |base: &str| {
            let mut name = base.to_string();
            while taken.contains(&name) {
                name.push('_');
            }
            taken.insert(name.clone());
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
            spec,
            sources,
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
        let file = self.spec.file.display().to_string();
        match span {
            Some(span) if span.file.0 < self.sources.len() => {
                let (line, _) = self.sources.line_col(span.file, span.start);
                format!("{file}:{line}")
            }
            _ => file,
        }
    }

    /// The steps, each preceded by a blank line, at block level 0.
    fn steps(&mut self, steps: &[Step], out: &mut Vec<String>) -> Result<(), CodegenError> {
        for step in steps {
            out.push(String::new());
            self.step(step, out)?;
        }
        Ok(())
    }

    /// The lines of one step, relative to its block's indentation.
    fn step(&mut self, step: &Step, out: &mut Vec<String>) -> Result<(), CodegenError> {
        let loc = self.location(step.span);
        out.push(format!("# {}: {}", comment_text(&loc), step.action.key()));
        let loc_lit = python_string(&loc);
        let timeout = step.effective_timeout().map(|t| python_num(t, python_timeout));
        let timeout_arg = timeout.as_ref().map(|t| format!(", timeout={t}")).unwrap_or_default();
        let node = match (&step.node, step.action.needs_node()) {
            (Some(node), _) => pythonize(node),
            (None, false) => String::new(),
            (None, true) => {
                return Err(CodegenError::MissingNode { location: loc, action: step.action.key() });
            }
        };
        let n = self.names.clone();
        self.action(step, &node, &loc, &loc_lit, timeout, &timeout_arg, &n, out)?;
        if let Some(name) = step.action.capture() {
            self.captures.push(name.to_owned());
        }
        Ok(())
    }

    /// The lines of one step's action.
    #[allow(clippy::too_many_arguments)]
    fn action(
        &mut self,
        step: &Step,
        node: &str,
        loc: &str,
        loc_lit: &str,
        timeout: Option<String>,
        timeout_arg: &str,
        n: &Names,
        out: &mut Vec<String>,
    ) -> Result<(), CodegenError> {
        let loc = loc.to_owned();
        match &step.action {
            Action::WaitForUnit { unit, user } => {
                let unit = safe_unit(&loc, unit)?;
                let user = self.user_arg(&loc, user.as_deref())?;
                out.push(format!("{node}.wait_for_unit({}{}{timeout_arg})", python_string(unit), user.arg));
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
                let port = python_num(*port, |p| p.to_string());
                out.push(format!("{node}.{method}({port}{addr_arg}{timeout_arg})"));
            }
            Action::WaitForFile { path } => {
                let quoted = self.shell_quoted(path);
                out.push(format!("{node}.wait_for_file({quoted}{timeout_arg})"));
            }
            Action::WaitForOpenUnixSocket { path, datagram } => {
                if !is_shell_safe(path) || path.starts_with('-') {
                    return Err(unsupported(&loc, "socket path", path, SHELL_SAFE_CHARS));
                }
                let datagram = if *datagram { ", is_datagram=True" } else { "" };
                out.push(format!(
                    "{node}.wait_for_open_unix_socket({}{datagram}{timeout_arg})",
                    python_string(path)
                ));
            }
            Action::WaitForConsoleText { regex } => {
                out.push(format!("{node}.wait_for_console_text({}{timeout_arg})", python_string(regex)));
            }
            Action::Succeed { command, expect, capture } => {
                let cmd = self.user_command(command);
                match expect.exit_code {
                    Some(code) if code != Num::Lit(0) => {
                        let code = python_num(code, |c| c.to_string());
                        out.push(format!("{}, {} = {node}.execute({cmd}{timeout_arg})", n.status, n.out));
                        out.push(format!(
                            "assert {status} == {code}, \"%s: expected exit code %d, got %d (output: %r)\" % ({loc_lit}, {code}, {status}, {out})",
                            status = n.status,
                            out = n.out,
                        ));
                    }
                    _ if output_checks_empty(expect) && capture.is_none() => {
                        out.push(format!("{node}.succeed({cmd}{timeout_arg})"))
                    }
                    _ => out.push(format!("{} = {node}.succeed({cmd}{timeout_arg})", n.out)),
                }
                self.output_asserts(expect, &n.out, "output", loc_lit, out);
                self.store_capture(capture.as_deref(), node, &n.out, out);
            }
            Action::Execute { command, expect, capture } => {
                let call = format!("{node}.execute({}{timeout_arg})", self.user_command(command));
                let result = format!("{}, {} = {call}", n.status, n.out);
                self.checked_status(&result, expect, capture.as_deref(), node, loc_lit, n, out);
            }
            // The stock `systemctl`, `start_job` and `stop_job` take no
            // timeout and know no captures: with either, the script runs
            // their command itself (`crate::guest::commands`, the same text).
            Action::Systemctl { query, user, expect, capture } => {
                let user = self.user_arg(&loc, user.as_deref())?;
                let call = if self.captures.is_empty() && step.timeout.is_none() {
                    format!("{node}.systemctl({}{})", python_string(query), user.arg)
                } else {
                    let preamble = captures::preamble(&self.captures);
                    let cmd = wrapped(
                        query,
                        |q| format!("{preamble}{}", commands::systemctl_command(q, user.name)),
                        user.name.is_some(),
                    );
                    format!("{node}.execute({cmd}{timeout_arg})")
                };
                self.checked_status(&call, expect, capture.as_deref(), node, loc_lit, n, out);
            }
            Action::StartJob { unit, user } | Action::StopJob { unit, user } => {
                let start = matches!(step.action, Action::StartJob { .. });
                let unit = safe_unit(&loc, unit)?;
                let user = self.user_arg(&loc, user.as_deref())?;
                if step.timeout.is_none() {
                    let method = if start { "start_job" } else { "stop_job" };
                    out.push(format!("{node}.{method}({}{})", python_string(unit), user.arg));
                } else {
                    let query = |u: &str| {
                        if start { commands::start_job_query(u) } else { commands::stop_job_query(u) }
                    };
                    let cmd = wrapped(unit, |u| commands::systemctl_command(&query(u), user.name), false);
                    out.push(format!("{node}.execute({cmd}{timeout_arg})"));
                }
            }
            Action::RequireUnitState { unit, state, user } => {
                let unit = safe_unit(&loc, unit)?;
                match user {
                    None => out.push(format!(
                        "{node}.require_unit_state({}, {})",
                        python_string(unit),
                        python_string(state)
                    )),
                    // The stock method has no `user`: its check, on the user's manager.
                    Some(_) => {
                        let user = self.user_arg(&loc, user.as_deref())?;
                        out.push(format!(
                            "{} = {node}.get_unit_info({}{}).get(\"ActiveState\", \"\")",
                            n.out,
                            python_string(unit),
                            user.arg
                        ));
                        out.push(format!(
                            "assert {out} == {state}, \"%s: expected unit %r to be in state %r but it is in state %r\" % ({loc_lit}, {unit}, {state}, {out})",
                            out = n.out,
                            unit = python_string(unit),
                            state = python_string(state),
                        ));
                    }
                }
            }
            Action::Fail { command } => {
                out.push(format!("{node}.fail({}{timeout_arg})", self.user_command(command)));
            }
            Action::WaitUntilSucceeds { command, expect, capture } if expect.is_empty() => {
                let cmd = self.user_command(command);
                match capture {
                    Some(_) => {
                        out.push(format!("{} = {node}.wait_until_succeeds({cmd}{timeout_arg})", n.out))
                    }
                    None => out.push(format!("{node}.wait_until_succeeds({cmd}{timeout_arg})")),
                }
                self.store_capture(capture.as_deref(), node, &n.out, out);
            }
            Action::WaitUntilSucceeds { command, expect, capture } => {
                let cmd = self.user_command(command);
                self.helpers += 1;
                let mut helper = format!("until_{}", self.helpers);
                while self.taken.contains(&helper) {
                    helper.push('_');
                }
                let code = python_num(expect.exit_code.unwrap_or(Num::Lit(0)), |c| c.to_string());
                let mut conditions = vec![format!("{} == {code}", n.status)];
                conditions.extend(self.output_conditions(expect, &n.out));
                out.push(format!("def {helper}(last_try: bool) -> bool:"));
                out.push(format!("{PY_INDENT}{}, {} = {node}.execute({cmd}{timeout_arg})", n.status, n.out));
                match capture {
                    // The attempt that passes stores its output.
                    Some(_) => {
                        out.push(format!("{PY_INDENT}if {}:", conditions.join(" and ")));
                        let mut stored = Vec::new();
                        self.store_capture(capture.as_deref(), node, &n.out, &mut stored);
                        out.extend(stored.into_iter().map(|l| format!("{PY_INDENT}{PY_INDENT}{l}")));
                        out.push(format!("{PY_INDENT}{PY_INDENT}return True"));
                        out.push(format!("{PY_INDENT}return False"));
                    }
                    None => out.push(format!("{PY_INDENT}return {}", conditions.join(" and "))),
                }
                out.push(format!("retry({helper}{})", timeout.map(|t| format!(", {t}")).unwrap_or_default()));
            }
            Action::WaitUntilFails { command } => {
                out.push(format!("{node}.wait_until_fails({}{timeout_arg})", self.user_command(command)));
            }
            Action::Sleep { seconds } => {
                self.imports.insert("time");
                out.push(format!("{}.sleep({})", n.time, python_num(*seconds, python_number)));
            }
            Action::Http { url, status, contains } => {
                let cmd = if is_placeholder(url) {
                    format!(
                        "{} + {}",
                        python_string(&commands::http_command_prefix()),
                        self.shell_quoted(url)
                    )
                } else {
                    python_string(&commands::http_command(url))
                };
                out.push(format!("{} = {node}.succeed({cmd}{timeout_arg})", n.out));
                out.push(format!("{}, _, {} = {}.rpartition(\"\\n\")", n.body, n.code, n.out));
                // curl prints the status as three digits.
                let status = match status {
                    Num::Lit(s) => format!("\"{s:03}\""),
                    Num::Computed(_) => format!("str({})", python_num(*status, |s| s.to_string())),
                };
                out.push(format!(
                    "assert {code} == {status}, \"%s: expected HTTP status %s from %s, got %s (body: %r)\" % ({loc_lit}, {status}, {url}, {code}, {body})",
                    code = n.code,
                    body = n.body,
                    url = python_string(url),
                ));
                if let Some(needle) = contains {
                    out.push(format!(
                        "assert {needle} in {body}, \"%s: expected the response body to contain %r, got %r\" % ({loc_lit}, {needle}, {body})",
                        needle = python_string(needle),
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
                out.push(format!("{node}.start({arg})"));
            }
            Action::Shutdown => out.push(format!("{node}.shutdown()")),
            Action::WaitForShutdown => out.push(format!("{node}.wait_for_shutdown()")),
            Action::Crash => out.push(format!("{node}.crash()")),
            Action::Reboot => out.push(format!("{node}.reboot()")),
            Action::Block => out.push(format!("{node}.block()")),
            Action::Unblock => out.push(format!("{node}.unblock()")),
            Action::CopyFromVm { source, target_dir } => {
                if !is_shell_safe(source) {
                    return Err(unsupported(&loc, "copyFromVm source", source, SHELL_SAFE_CHARS));
                }
                if let Some(Err(e)) = target_dir.as_deref().map(crate::fsutil::check_relative) {
                    return Err(CodegenError::Unsupported {
                        location: loc,
                        message: format!("`targetDir`: {e}"),
                    });
                }
                let target = match target_dir {
                    Some(dir) => format!(", {}", python_string(dir)),
                    None => String::new(),
                };
                out.push(format!("{node}.copy_from_vm({}{target})", python_string(source)));
            }
            Action::CopyFromHost { source, target } => {
                // Relative sources are computed (`"${self}/tests/vm/…"`) by the parse.
                if !is_placeholder(source) && !source.starts_with(crate::spec::names::STORE_DIR) {
                    return Err(CodegenError::Unsupported {
                        location: loc,
                        message: format!("copyFromHost source {} is not a store path", python_string(source)),
                    });
                }
                if !is_shell_safe(target) || !target.starts_with('/') {
                    return Err(unsupported(&loc, "copyFromHost target", target, SHELL_SAFE_CHARS));
                }
                out.push(format!(
                    "{node}.copy_from_host({}, {})",
                    python_string(source),
                    python_string(target)
                ));
            }
            Action::ForwardPort { host_port, guest_port } => out.push(format!(
                "{node}.forward_port({}, {})",
                python_num(*host_port, |p| p.to_string()),
                python_num(*guest_port, |p| p.to_string())
            )),
            Action::Screenshot { name } => {
                if !is_shell_safe(name) {
                    return Err(unsupported(&loc, "screenshot name", name, SHELL_SAFE_CHARS));
                }
                if let Err(e) = crate::fsutil::check_relative(name) {
                    return Err(CodegenError::Unsupported {
                        location: loc,
                        message: format!("screenshot name: {e}"),
                    });
                }
                out.push(format!("{node}.screenshot({})", python_string(name)));
            }
            // The stock methods run the same guest commands as nixvm-driver
            // (crate::guest::commands) and press the same keys
            // (crate::spec::keys); their `tty` parameter is a `str`.
            Action::SendKeys { keys } => {
                for key in keys {
                    out.push(format!("{node}.send_key({})", python_string(key)));
                }
            }
            Action::SendChars { chars } => out.push(format!("{node}.send_chars({})", python_string(chars))),
            Action::WaitUntilTtyMatches { tty, regex } => out.push(format!(
                "{node}.wait_until_tty_matches({}, {}{timeout_arg})",
                python_tty(*tty),
                python_string(regex)
            )),
            Action::DumpTtyContents { tty } => {
                out.push(format!("{node}.dump_tty_contents({})", python_tty(*tty)))
            }
            Action::WaitForText { regex } => {
                out.push(format!("{node}.wait_for_text({}{timeout_arg})", python_string(regex)))
            }
            Action::WaitForX => out.push(format!(
                "{node}.wait_for_x({})",
                timeout.as_deref().map(|t| format!("timeout={t}")).unwrap_or_default()
            )),
            Action::WaitForWindow { regex } => {
                out.push(format!("{node}.wait_for_window({}{timeout_arg})", python_string(regex)))
            }
            Action::Python { code } => {
                // The escape hatch: the author's own lines, at this block's level.
                out.extend(code.trim_end_matches('\n').split('\n').map(|l| l.trim_end().to_string()));
            }
            Action::Snapshot { name } | Action::Restore { name } => {
                // Only nixvm-driver runs these (validation refuses them for
                // the Python backend; docs/snapshots.md says why the stock
                // Machine API cannot). The stock driver never runs this
                // script when the Rust backend replaces it, but if it did,
                // it stops here with the reason instead of skipping a step.
                out.push(format!(
                    "raise Exception({})",
                    python_string(&format!(
                        "`{} = \"{name}\"` needs nixvm-driver (the Rust backend): the stock driver cannot snapshot \
                         NixOS test VMs",
                        step.action.key()
                    ))
                ));
            }
            Action::Subtest { title, steps } => {
                out.push(format!("with subtest({}):", python_string(title)));
                let mut inner = Vec::new();
                self.steps(steps, &mut inner)?;
                // Drop the blank line that separates steps at the start of the block.
                let inner: Vec<String> = inner.into_iter().skip_while(String::is_empty).collect();
                if inner.is_empty() {
                    out.push(format!("{PY_INDENT}pass"));
                }
                out.extend(
                    inner.into_iter().map(|l| if l.is_empty() { l } else { format!("{PY_INDENT}{l}") }),
                );
            }
        }
        Ok(())
    }

    /// The `user=` argument of a stock systemd method, checked.
    fn user_arg<'u>(&self, loc: &str, user: Option<&'u str>) -> Result<UserArg<'u>, CodegenError> {
        match user {
            Some(u) if is_shell_safe(u) && !u.starts_with('-') => {
                Ok(UserArg { name: Some(u), arg: format!(", user={}", python_string(u)) })
            }
            Some(u) => Err(unsupported(loc, "user name", u, SHELL_SAFE_CHARS)),
            None => Ok(UserArg { name: None, arg: String::new() }),
        }
    }

    /// A call returning `(status, output)` (or its assignment to the two
    /// variables already), with the step's checks on both (`expect.exitCode`
    /// only when given: any status passes otherwise) and its capture.
    #[allow(clippy::too_many_arguments)]
    fn checked_status(
        &mut self,
        call: &str,
        expect: &Expect,
        capture: Option<&str>,
        node: &str,
        loc_lit: &str,
        n: &Names,
        out: &mut Vec<String>,
    ) {
        let assigned = format!("{}, {} = ", n.status, n.out);
        if call.starts_with(&assigned) || expect.is_empty() && capture.is_none() {
            out.push(call.to_owned());
        } else {
            out.push(format!("{assigned}{call}"));
        }
        if let Some(code) = expect.exit_code {
            let code = python_num(code, |c| c.to_string());
            out.push(format!(
                "assert {status} == {code}, \"%s: expected exit code %d, got %d (output: %r)\" % ({loc_lit}, {code}, {status}, {out})",
                status = n.status,
                out = n.out,
            ));
        }
        self.output_asserts(expect, &n.out, "output", loc_lit, out);
        self.store_capture(capture, node, &n.out, out);
    }

    /// A Python expression for a user's command as the guest runs it: with
    /// the preamble that reads the captures made so far
    /// ([`crate::guest::captures`]), byte for byte what nixvm-driver sends.
    fn user_command(&self, command: &str) -> String {
        let preamble = captures::preamble(&self.captures);
        if preamble.is_empty() {
            python_string(command)
        } else if is_placeholder(command) {
            format!("{} + {}", python_string(&preamble), python_string(command))
        } else {
            python_string(&format!("{preamble}{command}"))
        }
    }

    /// Stores `var` (a command's output) as capture `name` through the
    /// shared directory of `node` (the stock `Machine.shared_dir`).
    fn store_capture(&mut self, name: Option<&str>, node: &str, var: &str, out: &mut Vec<String>) {
        let Some(name) = name else { return };
        self.capture_helper = true;
        self.imports.insert("os");
        out.push(format!("{}({node}.shared_dir, {}, {var})", self.names.capture, python_string(name)));
    }

    /// A Python expression for `s` quoted for the guest shell: the quoted
    /// literal, or `shlex.quote(…)` of a value Nix computes.
    fn shell_quoted(&mut self, s: &str) -> String {
        if is_placeholder(s) {
            self.imports.insert("shlex");
            format!("{}.quote({})", self.names.shlex, python_string(s))
        } else {
            python_string(&shell_quote(s))
        }
    }

    /// The output checks of `expect`: a Python boolean expression and a
    /// message (a `%`-format with its arguments) for each.
    fn checks(&mut self, expect: &Expect, var: &str, what: &str) -> Vec<(String, String, String)> {
        let mut checks = Vec::new();
        for needle in &expect.contains {
            let needle = python_string(needle);
            checks.push((format!("{needle} in {var}"), format!("expected the {what} to contain %r"), needle));
        }
        for needle in &expect.not_contains {
            let needle = python_string(needle);
            checks.push((
                format!("{needle} not in {var}"),
                format!("expected the {what} not to contain %r"),
                needle,
            ));
        }
        if let Some(equals) = &expect.equals {
            let equals = stripped(equals);
            checks.push((
                format!("{var}.rstrip(\"\\n\") == {equals}"),
                format!("expected the {what} to be %r"),
                equals,
            ));
        }
        if let Some(regex) = &expect.matches {
            self.imports.insert("re");
            let regex = python_string(regex);
            checks.push((
                format!("{}.search({regex}, {var}) is not None", self.names.re),
                format!("expected the {what} to match %r"),
                regex,
            ));
        }
        if let Some(want) = &expect.json {
            self.json_helpers = true;
            self.imports.insert("json");
            let text = python_string(&serde_json::to_string(want).unwrap_or_default());
            let want = format!("{}.loads({text})", self.names.json);
            checks.push((
                format!("{}({want}, {var})", self.names.expect_json),
                format!("expected the {what} as JSON to contain %r"),
                want,
            ));
        }
        checks
    }

    /// Boolean Python expressions for the output checks of `expect`.
    fn output_conditions(&mut self, expect: &Expect, var: &str) -> Vec<String> {
        self.checks(expect, var, "output").into_iter().map(|(cond, _, _)| cond).collect()
    }

    /// The output checks as asserts naming the step. One check is one
    /// `assert`; several are all evaluated and every failure is reported.
    fn output_asserts(&mut self, expect: &Expect, var: &str, what: &str, loc: &str, out: &mut Vec<String>) {
        let checks = self.checks(expect, var, what);
        if let [(cond, message, arg)] = checks.as_slice() {
            out.push(format!("assert {cond}, \"%s: {message}, got %r\" % ({loc}, {arg}, {var})"));
            return;
        }
        if checks.is_empty() {
            return;
        }
        let failures = self.names.failures.clone();
        // Declared with its type once (mypy refuses a second annotation).
        if self.failures_declared {
            out.push(format!("{failures} = []"));
        } else {
            self.failures_declared = true;
            out.push(format!("{failures}: list[str] = []"));
        }
        for (cond, message, arg) in &checks {
            out.push(format!("if not ({cond}):"));
            out.push(format!("{PY_INDENT}{failures}.append(\"{message}\" % ({arg},))"));
        }
        out.push(format!(
            "assert not {failures}, \"%s: %s; got %r\" % ({loc}, \"; \".join({failures}), {var})"
        ));
    }
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
            python_string(value)
        ),
    }
}

/// The Python side of `expect.json`, the same rule as the driver's
/// `json_contains` (booleans are not numbers, `1 == 1.0`).
fn json_helpers(n: &Names) -> Vec<String> {
    let (contains, expect_json, json) = (&n.json_contains, &n.expect_json, &n.json);
    let text = format!(
        "def {contains}(want: object, got: object) -> bool:
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and {contains}(v, got[k]) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(got, list) and len(want) == len(got) and all({contains}(a, b) for a, b in zip(want, got))
    if isinstance(want, bool) or isinstance(got, bool):
        return type(want) is type(got) and want == got
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return want == got
    return type(want) is type(got) and want == got

def {expect_json}(want: object, text: str) -> bool:
    try:
        got = {json}.loads(text)
    except ValueError:
        return False
    return {contains}(want, got)"
    );
    text.lines().map(str::to_string).collect()
}

/// The Python side of a capture: the same value and file as nixvm-driver's
/// `write_capture` (output without trailing newlines, no NUL, written whole
/// then renamed into `<shared_dir>/.nixvm-captures/`).
fn capture_helper(n: &Names) -> Vec<String> {
    let (capture, os) = (&n.capture, &n.os);
    let dir = captures::CAPTURE_DIR;
    let text = format!(
        "def {capture}(shared_dir: object, name: str, output: str) -> None:
    value = output.rstrip(\"\\n\")
    if \"\\0\" in value:
        raise Exception(\"capture %s: the output contains a NUL byte, which an environment variable cannot hold\" % name)
    directory = {os}.path.join(str(shared_dir), \"{dir}\")
    {os}.makedirs(directory, exist_ok=True)
    partial = {os}.path.join(directory, \".\" + name + \".partial\")
    with open(partial, \"wb\") as f:
        f.write(value.encode())
    {os}.replace(partial, {os}.path.join(directory, name))"
    );
    text.lines().map(str::to_string).collect()
}

/// Whether `expect` has no output checks (the exit code aside).
fn output_checks_empty(expect: &Expect) -> bool {
    expect.contains.is_empty()
        && expect.not_contains.is_empty()
        && expect.equals.is_none()
        && expect.matches.is_none()
        && expect.json.is_none()
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

/// Timeouts for the stock driver, whose type stubs declare `int`: rounded up
/// to whole seconds.
fn python_timeout(seconds: f64) -> String {
    let whole = seconds.ceil();
    if whole.is_finite() && whole >= 0.0 { format!("{}", whole as u64) } else { "0".to_string() }
}

/// A number as a Python literal: `literal` of a literal; a computed one
/// as its quoted placeholder, which `codegen::model` replaces by the value
/// Nix computes (`${builtins.toJSON …}`, a valid Python number).
fn python_num<T>(n: Num<T>, literal: impl FnOnce(T) -> String) -> String {
    match n {
        Num::Lit(v) => literal(v),
        Num::Computed(i) => python_string(&placeholder(i)),
    }
}

/// The stock `tty` parameters are strings (`"1"`).
fn python_tty(tty: Num<u8>) -> String {
    match tty {
        Num::Lit(t) => format!("\"{t}\""),
        Num::Computed(_) => format!("str({})", python_num(tty, |t| t.to_string())),
    }
}

/// A number as a Python literal (integral values without a decimal point).
fn python_number(value: f64) -> String {
    if value.is_finite() { format!("{value}") } else { "0".to_string() }
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
