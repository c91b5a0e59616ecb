//! `http` inside the node.

use super::{Runner, StepError, StepResult};
use crate::guest::commands::{http_command, split_http_output};

impl Runner<'_> {
    pub(super) fn http(&mut self, url: &str, status: u16, contains: Option<&str>) -> StepResult {
        let cmd = http_command(url);
        let reply = self.exec(&cmd)?;
        let fail = |r: &Self, msg: String| StepError::failed(r.failure(msg, Some(&cmd), Some(&reply)));
        if reply.status != 0 {
            let msg =
                self.timed_out(format!("request to {url} failed (curl exit code {})", reply.status), &reply);
            return Err(fail(self, msg));
        }
        let (text, _) = reply.text();
        let Some((body, code)) = split_http_output(&text) else {
            return Err(fail(self, format!("cannot find the HTTP status in curl's output for {url}")));
        };
        if code.trim() != status.to_string() {
            return Err(fail(
                self,
                format!("{url} answered with HTTP status {}, expected {status}", code.trim()),
            ));
        }
        if let Some(needle) = contains {
            if !body.contains(needle) {
                return Err(fail(self, format!("the response body of {url} does not contain `{needle}`")));
            }
        }
        Ok(())
    }
}
