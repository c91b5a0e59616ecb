//! The keyboard and the virtual consoles: `sendKeys`, `sendChars`,
//! `waitUntilTtyMatches`, `dumpTtyContents`, as the stock driver's
//! `send_key`, `send_chars`, `wait_until_tty_matches` and
//! `dump_tty_contents` (NixOS/nixpkgs nixos/lib/test-driver/src/test_driver/
//! machine/__init__.py at 019697db058b6738eda0cb2cdcc9f5c014c914cb).

use std::time::Duration;

use regex::Regex;

use super::{Runner, StepError, StepResult};
use crate::driver::shell::Reply;
use crate::guest::commands::{dump_tty_command, tty_text_command};
use crate::spec::keys;

/// The stock driver's pause after each key (`send_key(delay=0.01)`): the
/// guest's keyboard handling gets each press in its own moment.
const KEY_DELAY: Duration = Duration::from_millis(10);

impl Runner<'_> {
    /// Presses each key in turn; a key QEMU refuses fails the step (the
    /// stock driver ignores the monitor's answer and carries on).
    pub(super) fn send_keys<'k>(&mut self, keys: impl IntoIterator<Item = &'k str>) -> StepResult {
        for key in keys {
            self.monitor_quiet(&format!("sendkey {}", keys::monitor_key(key)))?;
            self.abort.sleep(KEY_DELAY).map_err(StepError::Stopped)?;
        }
        Ok(())
    }

    /// Types `chars`, one `sendkey` per character.
    pub(super) fn send_chars(&mut self, chars: &str) -> StepResult {
        let mut names = Vec::with_capacity(chars.len());
        for c in chars.chars() {
            match keys::char_key(c) {
                Some(name) => names.push(name),
                None => {
                    // Validation refuses such text; a hand-written plan may not.
                    let msg = format!(
                        "cannot type {c:?}: no key for it (sendChars types printable ASCII and newlines)"
                    );
                    return Err(StepError::failed(self.failure(msg, None, None)));
                }
            }
        }
        self.send_keys(names)
    }

    /// Polls what console `tty` shows until `pattern` is found in it.
    /// Each attempt is one backdoor command (the stock probe: the shell,
    /// `stty`, `awk` and `fold` in the guest); the host judges the text.
    pub(super) fn wait_for_tty(&mut self, tty: u8, pattern: &str) -> StepResult {
        let re = self.compile(pattern)?;
        let command = tty_text_command(tty);
        let mut last: Option<Reply> = None;
        let found = self.poll(|r| {
            let reply = r.exec(&command)?;
            let hit = re.is_match(&reply.text().0);
            last = Some(reply);
            Ok(hit.then_some(()))
        })?;
        if found.is_some() {
            return Ok(());
        }
        let msg = format!(
            "text matching `{pattern}` did not appear on tty {tty} within {:.1} seconds (its last contents are \
             the output below)",
            self.timeout_secs()
        );
        Err(StepError::failed(self.failure(msg, Some(&command), last.as_ref())))
    }

    /// Copies the console's text to the guest's journal; like the stock
    /// driver, whatever the command's exit status (a guest without
    /// `systemd-cat` gets nothing, and the log says so).
    pub(super) fn dump_tty(&mut self, tty: u8) -> StepResult {
        let command = dump_tty_command(tty);
        let reply = self.exec(&command)?;
        if reply.status != 0 {
            let msg = format!("`{command}` exited with {}; nothing was dumped", reply.status);
            self.log.warning(Some(&self.node()), &msg);
        }
        Ok(())
    }

    /// `pattern` compiled; validation has checked it already.
    pub(super) fn compile(&self, pattern: &str) -> Result<Regex, StepError> {
        Regex::new(pattern).map_err(|e| {
            StepError::failed(self.failure(
                format!("invalid regular expression `{pattern}`: {e}"),
                None,
                None,
            ))
        })
    }
}
