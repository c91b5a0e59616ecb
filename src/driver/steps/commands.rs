//! Shell commands: `succeed`, `fail`, `waitUntilSucceeds`, `waitUntilFails`
//! and the check of their `expect`.

use std::time::Duration;

use regex::Regex;

use super::{GuestWait, Runner, StepError, StepResult};
use crate::driver::shell::Reply;
use crate::guest::backdoor::Until;
use crate::spec::Expect;

/// When a `waitUntilSucceeds` loop stops in the guest: the awaited exit
/// status and, as a pre-filter, `contains` (never stricter than the host's
/// check, which still judges all of `expect`).
pub(super) fn until_expected(expect: &Expect) -> Until {
    let code = expect.exit_code.unwrap_or(0);
    // An empty or multi-line needle would make the stock loop's grep
    // stricter (no lines, or one pattern per line): the status decides then.
    match expect.contains.first().filter(|n| !n.is_empty() && !n.contains('\n')) {
        Some(needle) => Until::StatusAndOutput(code, needle.to_owned()),
        None => Until::Status(code),
    }
}

impl Runner<'_> {
    pub(super) fn succeed(&mut self, command: &str, expect: &Expect) -> StepResult {
        let reply = self.exec(command)?;
        match check_expect(command, &reply, expect) {
            Ok(()) => Ok(()),
            Err(msg) => {
                Err(StepError::failed(self.failure(self.timed_out(msg, &reply), Some(command), Some(&reply))))
            }
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

    pub(super) fn fail(&mut self, command: &str) -> StepResult {
        let reply = self.exec(command)?;
        if reply.status == 0 {
            let msg = format!("command `{command}` unexpectedly succeeded");
            return Err(StepError::failed(self.failure(msg, Some(command), Some(&reply))));
        }
        Ok(())
    }

    /// `waitUntilSucceeds` (with `expect`) / `waitUntilFails` (without).
    pub(super) fn wait_until(&mut self, command: &str, expect: Option<&Expect>) -> StepResult {
        let mut last: Option<(Reply, String)> = None;
        // Each attempt is a fresh shell with the framing's options, as when
        // the host sends it; the loop stops on the awaited exit status and
        // the host checks the rest of `expect`, re-entering if it fails.
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
}

/// Checks a reply against `expect` (exit code default 0). A wrong exit
/// status is reported alone; otherwise every output check that fails is
/// reported, one per line after the first.
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
            Ok(re) if re.is_match(&out) => {}
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
