//! `waitForUnit` and the systemd queries behind it.

use std::time::{Duration, Instant};

use super::{GuestWait, REPLY_MARGIN, Runner, StepError, StepResult};
use crate::driver::events::Detail;
use crate::driver::shell::{Reply, shell_quote};
use crate::guest::backdoor::Until;

/// Bound of the diagnostic commands run after a unit wait failed.
const DIAGNOSTIC_TIMEOUT: u64 = 10;

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
        match user {
            None => format!("systemctl {query}"),
            Some(u) => {
                let q = query.replace('\'', "\\'");
                format!(
                    "su -l {u} --shell /bin/sh -c $'XDG_RUNTIME_DIR=/run/user/`id -u` systemctl --user {q}'"
                )
            }
        }
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
        Err(match err {
            StepError::Failed(mut f) => {
                f.details = self.unit_diagnostics(unit, user);
                StepError::Failed(f)
            }
            other => other,
        })
    }

    /// `systemctl status` and the unit's journal, best effort.
    pub(super) fn unit_diagnostics(&mut self, unit: &str, user: Option<&str>) -> Vec<Detail> {
        let q = shell_quote(unit);
        let cmds = [
            (
                format!("systemctl status {unit}"),
                self.systemctl(&format!("--no-pager status {q}"), user) + " 2>&1",
            ),
            (
                format!("journalctl -u {unit} -n 30"),
                match user {
                    None => format!("journalctl --no-pager -u {q} -n 30 2>&1"),
                    Some(_) => format!("journalctl --no-pager --user-unit {q} -n 30 2>&1"),
                },
            ),
        ];
        let mut out = Vec::new();
        for (title, cmd) in cmds {
            let deadline = Instant::now() + Duration::from_secs(DIAGNOSTIC_TIMEOUT) + REPLY_MARGIN;
            if let Ok(reply) = self.m.execute(&cmd, Some(DIAGNOSTIC_TIMEOUT), deadline, self.abort) {
                out.push(Detail { title, text: reply.text().0 });
            }
        }
        out
    }
}
