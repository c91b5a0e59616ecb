//! Actions on a whole machine whose value names the node: power and the
//! network link.

use super::convert::{Conv, NodeRef, Ty, key_name};
use crate::diagnostic::Diagnostic;
use crate::spec::Action;
use crate::spec::value::{Entry, Kind};

/// The action keys of this family.
pub(super) const POWER_KEYS: &[&str] =
    &["start", "shutdown", "waitForShutdown", "crash", "reboot", "block", "unblock"];

impl Conv<'_> {
    pub(super) fn power_action(&mut self, e: &Entry) -> Option<(Action, NodeRef)> {
        let v = &e.value;
        let what = key_name("", &e.key);
        let node = match &v.kind {
            Kind::Str(name) => Some((name.clone(), v.span)),
            Kind::Bool(true) => None,
            _ => {
                let d = match &v.kind {
                    Kind::Opaque { .. } => {
                        self.wrong_type(v, Ty::Str, &what);
                        return None;
                    }
                    other => Diagnostic::error(
                        "wrong_type",
                        Some(v.span),
                        format!("{what} must be a node name or `true`, found {}", other.describe()),
                    ),
                };
                self.diags.push(d.with_label("expected a node name or `true`").with_hint(format!(
                    "write `{} = \"<node>\";`, or `{} = true;` for the step's node",
                    e.key, e.key
                )));
                return None;
            }
        };
        let action = match e.key.as_str() {
            "start" => Action::Start,
            "shutdown" => Action::Shutdown,
            "waitForShutdown" => Action::WaitForShutdown,
            "crash" => Action::Crash,
            "reboot" => Action::Reboot,
            "block" => Action::Block,
            "unblock" => Action::Unblock,
            _ => return None,
        };
        Some((action, node))
    }
}
