//! Waits on a probe's exit status and on console text.

use regex::Regex;

use super::{GuestWait, Runner, StepError, StepResult};
use crate::driver::console::ConsoleWait;
use crate::guest::backdoor::Until;

impl Runner<'_> {
    /// Waits until `command` exits 0 (`want_success`) or non-zero.
    pub(super) fn wait_status(&mut self, command: &str, want_success: bool, what: &str) -> StepResult {
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

    pub(super) fn wait_for_console(&mut self, pattern: &str) -> StepResult {
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
}
