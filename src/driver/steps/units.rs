//! `waitForUnit` and the systemd queries behind it.

use std::time::{Duration, Instant};

use super::{GuestWait, Runner, StepError, StepResult};
use crate::driver::events::Detail;
use crate::driver::shell::{Reply, shell_quote};
use crate::guest::backdoor::Until;
use crate::guest::commands::systemctl_command;

/// The guest-side bound of the one diagnostic command run after a unit
/// wait failed (`systemctl status` and the journal: ~0.3–0.6 s on a warm TCG
/// guest, but the first `journalctl` after boot took 1.5 s and more, and a
/// failure without its journal is the one a user cannot debug).
const DIAGNOSTIC_TIMEOUT: u64 = 3;
/// Time a unit wait keeps back from its step for the diagnostics (at most a
/// tenth of the step's timeout), so that the step, diagnostics included,
/// ends within [`DIAGNOSTIC_OVERSHOOT`] of its timeout.
const DIAGNOSTIC_RESERVE: Duration = Duration::from_secs(1);
/// How long after the step's deadline the host still waits for the
/// diagnostics; a later reply is dropped (the shell resyncs before the next
/// command) and the failure is reported without them.
pub(super) const DIAGNOSTIC_OVERSHOOT: Duration = Duration::from_secs(3);
/// Separates the two parts of the diagnostic command's output.
const DIAGNOSTIC_SPLIT: &str = "--- nixvm-diagnostics: journal ---";

/// `done` code of [`guest_poll_loop`] for `waitForUnit`, the stock
/// `check_active` minus its errors: stop on `active` or `failed`, and on
/// `inactive` once no jobs are pending (the host then re-checks and fails).
pub(super) fn unit_settled(list_jobs: &str) -> String {
    format!(
        "if [ \"$__s\" -ne 0 ]; then break; fi; \
         case \"$(sed -n 's/^ActiveState=//p' \"$__o\")\" in active|failed) break ;; \
         inactive) __j=$({list_jobs} 2>&1) || true; case \"$__j\" in *'No jobs'*) break ;; esac ;; esac;"
    )
}

impl Runner<'_> {
    pub(super) fn systemctl(&self, query: &str, user: Option<&str>) -> String {
        systemctl_command(query, user)
    }

    pub(super) fn show_command(&self, unit: &str, user: Option<&str>) -> String {
        self.systemctl(&format!("--no-pager show \"{unit}\""), user)
    }

    pub(super) fn active_state(&mut self, unit: &str, user: Option<&str>) -> Result<String, StepError> {
        let cmd = self.show_command(unit, user);
        let reply = self.exec(&cmd)?;
        self.parse_active_state(unit, user, &cmd, &reply)
    }

    /// `ActiveState` from the output of [`Runner::show_command`].
    pub(super) fn parse_active_state(
        &self,
        unit: &str,
        user: Option<&str>,
        cmd: &str,
        reply: &Reply,
    ) -> Result<String, StepError> {
        if reply.status != 0 {
            let who = user.map(|u| format!(" under user \"{u}\"")).unwrap_or_default();
            let msg = format!(
                "retrieving systemctl info for unit \"{unit}\"{who} failed with exit code {}",
                reply.status
            );
            return Err(StepError::failed(self.failure(msg, Some(cmd), Some(reply))));
        }
        let (text, _) = reply.text();
        Ok(text.lines().find_map(|l| l.strip_prefix("ActiveState=")).unwrap_or("").trim().to_owned())
    }

    pub(super) fn wait_for_unit(&mut self, unit: &str, user: Option<&str>) -> StepResult {
        let show = self.show_command(unit, user);
        let until = Until::UnitSettled("systemctl list-jobs --full".into());
        let wait = GuestWait { attempt: &show, fresh_shell: false, until };
        // The wait ends early by the diagnostics' reserve; the step's own
        // deadline is restored for them.
        let deadline = self.deadline;
        let reserve = self.step_timeout.map_or(DIAGNOSTIC_RESERVE, |t| DIAGNOSTIC_RESERVE.min(t / 10));
        self.deadline = deadline.checked_sub(reserve).unwrap_or(deadline);
        let result = self.poll_in_guest(&wait, |r, reply| {
            let state = r.parse_active_state(unit, user, &show, &reply)?;
            match state.as_str() {
                "active" => Ok(Some(())),
                "failed" => Err(StepError::failed(r.failure(
                    format!("unit \"{unit}\" reached state \"failed\""),
                    None,
                    None,
                ))),
                "inactive" => {
                    let jobs = r.exec("systemctl list-jobs --full 2>&1")?;
                    if jobs.text().0.contains("No jobs") && r.active_state(unit, user)? == "inactive" {
                        let msg = format!("unit \"{unit}\" is inactive and there are no pending jobs");
                        return Err(StepError::failed(r.failure(msg, None, None)));
                    }
                    Ok(None)
                }
                _ => Ok(None),
            }
        });
        let err = match result {
            Ok(Some(())) => return Ok(()),
            Ok(None) => StepError::failed(self.failure(
                format!("unit \"{unit}\" did not become active within {:.1} seconds", self.timeout_secs()),
                None,
                None,
            )),
            Err(e) => e,
        };
        self.deadline = deadline;
        Err(match err {
            StepError::Failed(mut f) => {
                f.details = self.unit_diagnostics(unit, user);
                StepError::Failed(f)
            }
            other => other,
        })
    }

    /// `requireUnitState`: one `systemctl show`, as the stock
    /// `require_unit_state` (which has no `user`; with one, the user's
    /// manager is asked as the stock `get_unit_info(unit, user)` does).
    pub(super) fn require_unit_state(&mut self, unit: &str, state: &str, user: Option<&str>) -> StepResult {
        let actual = self.active_state(unit, user)?;
        if actual == state {
            return Ok(());
        }
        let msg = format!("expected unit '{unit}' to be in state '{state}' but it is in state '{actual}'");
        Err(StepError::failed(self.failure(msg, None, None)))
    }

    /// `startJob` / `stopJob`: the stock `start_job`/`stop_job` return
    /// systemctl's status unchecked, so a non-zero one is only logged.
    pub(super) fn job(&mut self, query: &str, user: Option<&str>) -> StepResult {
        let cmd = self.systemctl(query, user);
        let reply = self.exec(&cmd)?;
        if reply.status != 0 {
            let (text, _) = reply.text();
            let msg = format!(
                "`{cmd}` exited with {} (not checked, as by the stock driver){}",
                reply.status,
                if text.trim().is_empty() { String::new() } else { format!(": {}", text.trim_end()) }
            );
            self.log.warning(Some(&self.node()), &msg);
        }
        Ok(())
    }

    /// `systemctl status` and the unit's journal, best effort: one guest
    /// command (one round trip) under a guest-side `timeout` of
    /// [`DIAGNOSTIC_TIMEOUT`], waited for until [`DIAGNOSTIC_OVERSHOOT`]
    /// after the step's deadline.
    pub(super) fn unit_diagnostics(&mut self, unit: &str, user: Option<&str>) -> Vec<Detail> {
        let q = shell_quote(unit);
        let status = self.systemctl(&format!("--no-pager status {q}"), user);
        let journal = match user {
            None => format!("journalctl --no-pager -u {q} -n 30"),
            Some(_) => format!("journalctl --no-pager --user-unit {q} -n 30"),
        };
        // `|| :`: commands run under `set -e`, and `systemctl status` of a
        // failed unit exits 3.
        let cmd =
            format!("{{ {status} || :; echo {}; {journal} || :; }} 2>&1", shell_quote(DIAGNOSTIC_SPLIT));
        let deadline = self.deadline.max(Instant::now()) + DIAGNOSTIC_OVERSHOOT;
        let Ok(reply) = self.m.execute(&cmd, Some(DIAGNOSTIC_TIMEOUT), deadline, self.abort) else {
            return Vec::new();
        };
        let text = reply.text().0;
        let (status_text, journal_text) = match text.split_once(DIAGNOSTIC_SPLIT) {
            Some((s, j)) => (s.trim_end().to_owned(), j.trim_start_matches('\n').to_owned()),
            // Cut short by the guest-side timeout: what there is.
            None => (text, String::new()),
        };
        let mut out = vec![Detail { title: format!("systemctl status {unit}"), text: status_text }];
        if !journal_text.is_empty() {
            out.push(Detail { title: format!("journalctl -u {unit} -n 30"), text: journal_text });
        }
        out
    }
}
