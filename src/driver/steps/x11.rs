//! Waits on the guest's X server: `waitForX` and `waitForWindow`, as the
//! stock driver's `wait_for_x` and `wait_for_window` (NixOS/nixpkgs
//! nixos/lib/test-driver/src/test_driver/machine/__init__.py at
//! 019697db058b6738eda0cb2cdcc9f5c014c914cb).

use super::{Runner, StepError, StepResult};
use crate::driver::shell::Reply;
use crate::guest::commands::{WINDOW_NAMES_COMMAND, X_SOCKET_COMMAND, X_STARTED_COMMAND};

impl Runner<'_> {
    /// Polls inside the guest until systemd reached the graphical target and
    /// the X socket exists: the stock driver's two probes joined by `&&`
    /// (journalctl and grep per attempt; the socket test is a builtin).
    pub(super) fn wait_for_x(&mut self) -> StepResult {
        let probe = format!("{X_STARTED_COMMAND} && {X_SOCKET_COMMAND}");
        self.wait_status(&probe, true, "the X11 server did not start")
    }

    /// Polls the window names (`xwininfo` and `sed` per attempt) until one
    /// matches `pattern`. As in the stock driver (`get_window_names` uses
    /// `succeed`), a failing `xwininfo` fails the step at once.
    pub(super) fn wait_for_window(&mut self, pattern: &str) -> StepResult {
        let re = self.compile(pattern)?;
        let mut last: Option<Reply> = None;
        let found = self.poll(|r| {
            let started = std::time::Instant::now();
            let reply = r.exec(WINDOW_NAMES_COMMAND)?;
            // The step's deadline (guest-side `timeout`) ended the attempt:
            // the wait ran out of time, xwininfo did not fail.
            if reply.status == 124 && r.remaining().is_zero() {
                return Ok(None);
            }
            if reply.status != 0 {
                let msg = format!("command `{WINDOW_NAMES_COMMAND}` failed (exit code {})", reply.status);
                return Err(StepError::failed(r.failure(msg, Some(WINDOW_NAMES_COMMAND), Some(&reply))));
            }
            let hit = reply.text().0.lines().any(|name| crate::spec::pattern::is_match(&re, name));
            last = Some(reply);
            if !hit {
                r.breathe(started.elapsed())?;
            }
            Ok(hit.then_some(()))
        })?;
        if found.is_some() {
            return Ok(());
        }
        let msg = format!(
            "no window whose name matches `{pattern}` appeared within {:.1} seconds (the last window names are \
             the output below)",
            self.timeout_secs()
        );
        Err(StepError::failed(self.failure(msg, Some(WINDOW_NAMES_COMMAND), last.as_ref())))
    }
}
