//! The QEMU monitor (HMP): link state, screendumps.

use super::{Runner, StepError, StepResult};

impl Runner<'_> {
    /// Sends an HMP command and returns what QEMU printed for it (`set_link`
    /// and `screendump` print nothing on success, an error message otherwise).
    pub(super) fn monitor(&mut self, command: &str) -> Result<String, StepError> {
        let reply = self
            .m
            .monitor(command, self.deadline, self.abort)
            .map_err(|e| self.vm_error(e, Some(command)))?;
        Ok(monitor_output(&reply))
    }

    /// A monitor command that must print nothing.
    pub(super) fn monitor_quiet(&mut self, command: &str) -> StepResult {
        let out = self.monitor(command)?;
        if out.is_empty() {
            return Ok(());
        }
        let msg = format!("QEMU monitor command `{command}` failed: {out}");
        Err(StepError::failed(self.failure(msg, Some(command), None)))
    }
}

impl Runner<'_> {
    /// The stock `forward_port`: `hostfwd_add` on the user network. The
    /// stock driver ignores QEMU's answer, so a rule QEMU refuses (the host
    /// port is taken) is logged, not a failure, in both backends.
    pub(super) fn forward_port(&mut self, host: u16, guest: u16) -> StepResult {
        let command = format!("hostfwd_add tcp::{host}-:{guest}");
        let out = self.monitor(&command)?;
        if out.is_empty() {
            self.log.info(Some(&self.node()), &format!("forwarding host port {host} to guest port {guest}"));
        } else {
            self.log.warning(
                Some(&self.node()),
                &format!("`{command}`: {out} (not checked, as by the stock driver)"),
            );
        }
        Ok(())
    }
}

/// The text of an HMP answer without the echoed command line, the final
/// prompt and terminal escape sequences.
pub(super) fn monitor_output(reply: &str) -> String {
    let body = reply.strip_suffix("(qemu) ").unwrap_or(reply);
    let body = crate::driver::vm::strip_ansi(body).replace('\r', "");
    let mut lines = body.lines();
    lines.next();
    lines.collect::<Vec<_>>().join("\n").trim().to_owned()
}
