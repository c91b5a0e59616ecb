//! Waits on a guest condition: units, ports, files, console text.

use super::convert::{Conv, ShellWord, Sibling, key_name};
use crate::spec::value::Entry;
use crate::spec::{Action, names};

/// The action keys of this family.
pub(super) const WAIT_KEYS: &[&str] = &[
    "waitForUnit",
    "waitForOpenPort",
    "waitForClosedPort",
    "waitForFile",
    "waitForOpenUnixSocket",
    "waitForConsoleText",
];

impl Conv<'_> {
    pub(super) fn wait_action<'e>(&mut self, e: &Entry, sibling: Sibling<'_, 'e>) -> Option<Action> {
        let v = &e.value;
        let what = key_name("", &e.key);
        Some(match e.key.as_str() {
            "waitForUnit" => {
                let unit = self.text(v, &what, Some(names::UNIT_NAME_PATTERN));
                if let Some(unit) = &unit {
                    self.unit_name(unit, v.span);
                }
                let user = self.opt_str(sibling, "user");
                if let (Some(user), Some(entry)) = (&user, sibling("user")) {
                    self.shell_word(ShellWord::User, user, entry.value.span);
                }
                Action::WaitForUnit { unit: unit?, user }
            }
            "waitForOpenPort" | "waitForClosedPort" => {
                let port = self.port(v, &what);
                let addr = self.opt_str(sibling, "addr");
                let port = port?;
                if e.key == "waitForOpenPort" {
                    Action::WaitForOpenPort { port, addr }
                } else {
                    Action::WaitForClosedPort { port, addr }
                }
            }
            "waitForFile" => Action::WaitForFile { path: self.text(v, &what, None)? },
            "waitForOpenUnixSocket" => {
                // The stock driver passes the path to `nc` unquoted.
                let path = self.str(v, &what);
                if let Some(path) = &path {
                    self.shell_word(ShellWord::SocketPath, path, v.span);
                }
                let datagram = match sibling("datagram") {
                    Some(d) => match d.value.kind {
                        crate::spec::value::Kind::Bool(b) => Some(b),
                        _ => {
                            self.wrong_type(&d.value, super::convert::Ty::Bool, "`datagram`");
                            None
                        }
                    },
                    None => Some(false),
                };
                Action::WaitForOpenUnixSocket { path: path?, datagram: datagram? }
            }
            "waitForConsoleText" => {
                let regex = self.text(v, &what, None)?;
                self.regex(&regex, v.span);
                Action::WaitForConsoleText { regex }
            }
            _ => return None,
        })
    }
}
