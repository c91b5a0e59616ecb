//! Shell commands: `succeed`, `execute`, `fail`, `waitUntilSucceeds`,
//! `waitUntilFails`, the check of their `expect`, and storing captures.

use std::path::Path;
use std::time::Duration;

use regex::Regex;

use super::{GuestWait, Runner, StepError, StepResult, UserCommand};
use crate::driver::shell::Reply;
use crate::guest::backdoor::Until;
use crate::guest::captures::{CAPTURE_DIR, capture_value, valid_capture_name};
use crate::spec::Expect;

/// When a `waitUntilSucceeds` loop stops in the guest: the awaited exit
/// status and, as a pre-filter, `contains` (never stricter than the host's
/// check, which still judges all of `expect`).
pub(super) fn until_expected(expect: &Expect) -> Result<Until, String> {
    let code = exit_code(expect)?.unwrap_or(0);
    // An empty or multi-line needle would make the stock loop's grep
    // stricter (no lines, or one pattern per line): the status decides then.
    Ok(match expect.contains.first().filter(|n| !n.is_empty() && !n.contains('\n')) {
        Some(needle) => Until::StatusAndOutput(code, needle.to_owned()),
        None => Until::Status(code),
    })
}

/// `expect.exitCode`, which Nix evaluated.
fn exit_code(expect: &Expect) -> Result<Option<i32>, String> {
    expect.exit_code.map(|c| c.evaluated().map_err(|e| e.to_string())).transpose()
}

impl Runner<'_> {
    /// `succeed`, and `execute` (`any_status`: any exit status passes unless
    /// `expect.exitCode` names one). Returns the reply for a capture.
    pub(super) fn succeed(
        &mut self,
        cmd: &UserCommand,
        expect: &Expect,
        any_status: bool,
    ) -> Result<Reply, StepError> {
        let reply = self.exec_shown(&cmd.sent, &cmd.shown)?;
        match check_output(&cmd.shown, &reply, expect, any_status) {
            Ok(()) => Ok(reply),
            Err(msg) => Err(StepError::failed(self.failure(
                self.timed_out(msg, &reply),
                Some(&cmd.shown),
                Some(&reply),
            ))),
        }
    }

    /// Adds a note when the guest-side `timeout` ended the command.
    pub(super) fn timed_out(&self, msg: String, reply: &Reply) -> String {
        if reply.status == 124 && self.remaining() <= Duration::from_secs(1) {
            format!(
                "{msg}; the step's timeout of {:.1} seconds ended it (guest-side `timeout`)",
                self.timeout_secs()
            )
        } else {
            msg
        }
    }

    pub(super) fn fail(&mut self, cmd: &UserCommand) -> StepResult {
        let reply = self.exec_shown(&cmd.sent, &cmd.shown)?;
        if reply.status == 0 {
            let msg = format!("command `{}` unexpectedly succeeded", cmd.shown);
            return Err(StepError::failed(self.failure(msg, Some(&cmd.shown), Some(&reply))));
        }
        Ok(())
    }

    /// `waitUntilSucceeds` (with `expect`) / `waitUntilFails` (without).
    /// Returns the reply of the attempt that passed (`None` for
    /// `waitUntilFails`, whose output nothing uses).
    pub(super) fn wait_until(
        &mut self,
        cmd: &UserCommand,
        expect: Option<&Expect>,
    ) -> Result<Option<Reply>, StepError> {
        let command = cmd.shown.as_str();
        let mut last: Option<(Reply, String)> = None;
        // Each attempt is a fresh shell with the framing's options, as when
        // the host sends it; the loop stops on the awaited exit status and
        // the host checks the rest of `expect`, re-entering if it fails.
        let until = match expect {
            Some(e) => until_expected(e).map_err(|why| StepError::failed(super::Failure::new(why)))?,
            None => Until::Failure,
        };
        let wait = GuestWait { attempt: &cmd.sent, fresh_shell: true, until };
        let done = self.poll_in_guest(&wait, |_, reply| {
            let verdict = match expect {
                Some(e) => check_expect(command, &reply, e),
                None if reply.status != 0 => Ok(()),
                None => Err(format!("command `{command}` succeeded")),
            };
            match verdict {
                Ok(()) => Ok(Some(expect.map(|_| reply))),
                Err(why) => {
                    last = Some((reply, why));
                    Ok(None)
                }
            }
        })?;
        if let Some(reply) = done {
            return Ok(reply);
        }
        let goal = if expect.is_some() { "succeed" } else { "fail" };
        let mut msg = format!("command `{command}` did not {goal} within {:.1} seconds", self.timeout_secs());
        if let Some((_, why)) = &last {
            msg.push_str(&format!(" (last attempt: {why})"));
        }
        Err(StepError::failed(self.failure(msg, Some(command), last.as_ref().map(|(r, _)| r))))
    }

    /// Stores a step's output under its capture name in the shared
    /// directory, where later commands on every node read it.
    pub(super) fn store_capture(&mut self, name: Option<&str>, reply: &Reply) -> StepResult {
        let Some(name) = name else { return Ok(()) };
        let (text, _) = reply.text();
        let stored = capture_value(&text).map_err(|e| e.to_string()).and_then(|value| {
            write_capture(&self.m.shared_dir(), name, value).map_err(|e| format!("writing it failed: {e}"))
        });
        stored.map_err(|why| {
            StepError::failed(self.failure(format!("capture `{name}`: {why}"), None, Some(reply)))
        })
    }
}

/// Writes `value` to `<shared>/.nixvm-captures/<name>` (written whole, then
/// renamed, so no guest reads half a value). The name is checked again: a
/// plan is input, and only a plain name stays inside the directory.
pub fn write_capture(shared: &Path, name: &str, value: &str) -> std::io::Result<()> {
    if !valid_capture_name(name) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("`{}` is not a capture name", name.escape_debug()),
        ));
    }
    let dir = shared.join(CAPTURE_DIR);
    std::fs::create_dir_all(&dir)?;
    let partial = dir.join(format!(".{name}.partial"));
    std::fs::write(&partial, value)?;
    std::fs::rename(&partial, dir.join(name))
}

/// Checks a reply against `expect` (exit code default 0). A wrong exit
/// status is reported alone; otherwise every output check that fails is
/// reported, one per line after the first.
pub fn check_expect(command: &str, reply: &Reply, expect: &Expect) -> Result<(), String> {
    check_output(command, reply, expect, false)
}

/// [`check_expect`]; with `any_status` (`execute`) the exit status is
/// checked only when `expect.exitCode` names one.
pub fn check_output(command: &str, reply: &Reply, expect: &Expect, any_status: bool) -> Result<(), String> {
    let code = exit_code(expect)?;
    let want = code.unwrap_or(0);
    if (code.is_some() || !any_status) && reply.status != want {
        return Err(if code.is_none() {
            format!("command `{command}` failed (exit code {})", reply.status)
        } else {
            format!("command `{command}` exited with {}, expected {want}", reply.status)
        });
    }
    let (out, _) = reply.text();
    let mut failed = Vec::new();
    for needle in &expect.contains {
        if !out.contains(needle.as_str()) {
            failed.push(format!("does not contain `{needle}`"));
        }
    }
    for needle in &expect.not_contains {
        if out.contains(needle.as_str()) {
            failed.push(format!("contains `{needle}`"));
        }
    }
    if let Some(eq) = &expect.equals {
        if out.trim_end_matches('\n') != eq.trim_end_matches('\n') {
            failed.push(format!("is not `{eq}`"));
        }
    }
    if let Some(pattern) = &expect.matches {
        match Regex::new(pattern) {
            Ok(re) if crate::spec::pattern::is_match(&re, &out) => {}
            Ok(_) => failed.push(format!("does not match `{pattern}`")),
            Err(e) => failed.push(format!("cannot be matched: invalid regular expression `{pattern}`: {e}")),
        }
    }
    if let Some(want) = &expect.json {
        match serde_json::from_str::<serde_json::Value>(&out) {
            Ok(got) if json_contains(want, &got) => {}
            Ok(_) => failed.push(format!("as JSON does not contain `{want}`")),
            Err(e) => failed.push(format!("is not JSON ({e})")),
        }
    }
    match failed.as_slice() {
        [] => Ok(()),
        [one] => Err(format!("the output of `{command}` {one}")),
        many => Err(format!(
            "the output of `{command}` fails {} checks:\n  - it {}",
            many.len(),
            many.join("\n  - it ")
        )),
    }
}

/// `expect.json`: attribute sets match when every wanted attribute matches
/// (recursively), lists when they have the same length and match item by
/// item, numbers by value (`1` and `1.0`), everything else by equality.
/// The generated Python script implements the same rule (`json_contains`).
pub fn json_contains(want: &serde_json::Value, got: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (want, got) {
        (J::Object(w), J::Object(g)) => w.iter().all(|(k, v)| g.get(k).is_some_and(|x| json_contains(v, x))),
        (J::Array(w), J::Array(g)) => w.len() == g.len() && w.iter().zip(g).all(|(a, b)| json_contains(a, b)),
        (J::Number(a), J::Number(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => a.as_f64() == b.as_f64(),
        },
        (a, b) => a == b,
    }
}
