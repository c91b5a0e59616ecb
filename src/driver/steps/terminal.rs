//! The keyboard and the virtual consoles: `sendKeys`, `sendChars`,
//! `waitUntilTtyMatches`, `dumpTtyContents`, as the stock driver's
//! `send_key`, `send_chars`, `wait_until_tty_matches` and
//! `dump_tty_contents` (NixOS/nixpkgs nixos/lib/test-driver/src/test_driver/
//! machine/__init__.py at 019697db058b6738eda0cb2cdcc9f5c014c914cb).

use std::time::Duration;

use regex::Regex;

use super::{Runner, StepError, StepResult};
use crate::driver::shell::{Protocol, Reply, shell_quote};
use crate::guest::commands::{dump_tty_command, tty_text_command};
use crate::spec::keys;

/// One round of [`Runner::wait_for_tty`]: waits in the guest until
/// `/dev/vcs<tty>` differs from `seen` (at once when `None`) or `budget`
/// passes; on a change prints the raw screen, a NUL, and the output of the
/// stock `probe`. Prints nothing when nothing changed.
fn tty_change_command(tty: u8, seen: Option<&str>, probe: &str, budget: Duration) -> String {
    screen_change_command(&format!("/dev/vcs{tty}"), seen, probe, budget)
}

/// [`tty_change_command`] for the screen memory at `vcs`.
fn screen_change_command(vcs: &str, seen: Option<&str>, probe: &str, budget: Duration) -> String {
    // vcs holds no NUL (blank cells are spaces), so `read -d ''` takes all
    // of it, with builtins only (bash variables cannot hold NUL either).
    let read = format!("__t=; IFS= read -r -d '' __t < {} || :", shell_quote(vcs));
    let report = format!("{read}; printf '%s\\0' \"$__t\"; {probe}");
    let Some(seen) = seen else { return report };
    // The loop's attempt succeeds when the screen differs from `seen`;
    // the loop ends the shell it runs in, hence the subshell.
    let attempt = format!("{read}; [ \"$__t\" != {} ]", shell_quote(seen));
    let wait = super::guest_poll_loop(&attempt, "if [ \"$__s\" -eq 0 ]; then break; fi;", budget);
    format!("if ( {wait} ) >/dev/null; then {report}; fi")
}

/// The largest screen passed back to the guest for comparison: quoting can
/// grow it fivefold (every `'`), and the command must fit in one argument.
const MAX_SEEN_BYTES: usize = 16 << 10;

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
    ///
    /// The text is the stock probe's output (the shell, `stty`, `awk` and
    /// `fold` in the guest), judged on the host. Between two probes the
    /// guest waits, inside one backdoor command and starting no program,
    /// until `/dev/vcs<N>` differs from what the host last judged (bash's
    /// `read` of the screen memory every 50 ms, [`super::guest_poll_loop`]):
    /// the stock driver runs its probe once a second whatever happens; here
    /// a screen that does not change costs no programs, and a change is
    /// seen within about 0.1 s.
    pub(super) fn wait_for_tty(&mut self, tty: u8, pattern: &str) -> StepResult {
        let re = self.compile(pattern)?;
        let probe = tty_text_command(tty);
        // The raw screen the host last judged; `None` at first (probe at once).
        let mut seen: Option<String> = None;
        let mut last: Option<Reply> = None;
        let found = self.poll(|r| {
            // Boot and connect first: the framing decides the deadline's unit.
            let deadline = r.deadline;
            r.m.start(deadline, r.abort).map_err(|e| r.vm_error(e, None))?;
            r.m.connect(deadline, r.abort).map_err(|e| r.vm_error(e, None))?;
            let budget = r.remaining().min(super::SLOW_NOTE);
            let command = tty_change_command(tty, seen.as_deref(), &probe, budget);
            let guest = match r.m.protocol() {
                Protocol::Fast => budget + super::LOOP_SLACK,
                // Whole seconds, rounded up: the loop's last attempt must fit.
                Protocol::Stock => {
                    Duration::from_secs((budget + super::LOOP_SLACK).as_secs_f64().ceil() as u64)
                }
            };
            let reply = r.exec_bounded(&command, guest, &probe)?;
            if reply.status == 124 && r.remaining().is_zero() {
                return Ok(None);
            }
            // No separator: the screen did not change within the budget.
            let Some(split) = reply.stdout.iter().position(|&b| b == 0) else {
                return Ok(None);
            };
            // A screen that is not UTF-8 cannot be passed back as a string:
            // the next round then probes at once (stock-like polling).
            // Nor can a huge one (a framebuffer console of a big display):
            // quoted into the command it must stay well under the guest's
            // 128 KiB argument limit.
            seen = std::str::from_utf8(&reply.stdout[..split])
                .ok()
                .filter(|screen| screen.len() <= MAX_SEEN_BYTES)
                .map(str::to_owned);
            let text = Reply { status: reply.status, stdout: reply.stdout[split + 1..].to_vec() };
            // As the stock `get_tty_text`, the probe's exit status is not
            // checked: a missing console gives empty text, which the
            // pattern must match.
            let hit = crate::spec::pattern::is_match(&re, &text.text().0);
            last = Some(text);
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
        Err(StepError::failed(self.failure(msg, Some(&probe), last.as_ref())))
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

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::Instant;

    use super::*;

    /// Runs `command` in a local `bash` as the backdoor would (`set -euo pipefail`).
    fn run(command: &str) -> (Vec<u8>, Duration) {
        let started = Instant::now();
        let out =
            Command::new("bash").arg("-c").arg(format!("set -euo pipefail; {command}")).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (out.stdout, started.elapsed())
    }

    #[test]
    fn the_guest_waits_for_the_screen_to_change_without_starting_programs() {
        if !crate::driver::testing::require("bash", "runs the guest command locally") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let vcs = dir.path().join("vcs");
        let vcs_arg = vcs.display().to_string();
        std::fs::write(&vcs, "login:  ").unwrap();
        let probe = format!("echo probed; cat {}", shell_quote(&vcs_arg));
        // First round: no screen seen yet, probe at once.
        let (out, _) = run(&screen_change_command(&vcs_arg, None, &probe, Duration::from_secs(5)));
        assert_eq!(out, b"login:  \0probed\nlogin:  ");
        // Unchanged screen: nothing printed once the budget has passed.
        let (out, took) =
            run(&screen_change_command(&vcs_arg, Some("login:  "), &probe, Duration::from_millis(400)));
        assert!(out.is_empty(), "{out:?}");
        assert!(took >= Duration::from_millis(400), "{took:?}");
        // A change ends the wait at once (well before the budget).
        let writer = {
            let vcs = vcs.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                std::fs::write(vcs, "root@m:~# ").unwrap();
            })
        };
        let (out, took) =
            run(&screen_change_command(&vcs_arg, Some("login:  "), &probe, Duration::from_secs(20)));
        writer.join().unwrap();
        assert_eq!(out, b"root@m:~# \0probed\nroot@m:~# ");
        assert!(took < Duration::from_secs(5), "{took:?}");
        // Quotes in the screen reach the comparison intact.
        std::fs::write(&vcs, "it's \"$HOME\" `x`").unwrap();
        let (out, _) = run(&screen_change_command(
            &vcs_arg,
            Some("it's \"$HOME\" `x`"),
            &probe,
            Duration::from_millis(200),
        ));
        assert!(out.is_empty(), "{out:?}");
    }
}
