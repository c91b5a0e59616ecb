//! `capture = "NAME";` on `succeed`, `waitUntilSucceeds` and `execute`:
//! a shell variable name, captured once per test, not one the shell or the
//! driver reserves ([`crate::spec::captures`]).

use super::convert::{Conv, Sibling};
use crate::diagnostic::Diagnostic;
use crate::spec::captures::{MAX_NAME_LEN, reserved, valid_capture_name};

impl Conv<'_> {
    /// The step's capture: `Some(None)` without one, `None` when it is wrong
    /// (reported).
    pub(super) fn capture<'e>(&mut self, sibling: Sibling<'_, 'e>) -> Option<Option<String>> {
        let Some(e) = sibling("capture") else { return Some(None) };
        let name = self.str(&e.value, "`capture`")?;
        let span = e.value.span;
        if !valid_capture_name(&name) {
            let why = if name.len() > MAX_NAME_LEN {
                format!("longer than {MAX_NAME_LEN} characters")
            } else {
                "not a shell variable name".to_string()
            };
            self.diags.push(
                Diagnostic::error(
                    "invalid_capture_name",
                    Some(span),
                    format!("`{}` cannot be a capture name", name.escape_debug()),
                )
                .with_label(why)
                .with_hint(
                    "later commands see the value as `$NAME`: use letters, digits and `_`, not starting with a \
                     digit (e.g. `TOKEN`)",
                ),
            );
            return None;
        }
        if let Some(why) = reserved(&name) {
            self.diags.push(
                Diagnostic::error(
                    "capture_reserved",
                    Some(span),
                    format!("`{name}` cannot be captured: {why}"),
                )
                .with_label("reserved name")
                .with_hint(format!(
                    "every later command would see the value as `${name}`; choose another name (e.g. `{}`)",
                    suggestion(&name)
                )),
            );
            return None;
        }
        if let Some(first) = self.captures.get(&name).copied() {
            self.diags.push(
                Diagnostic::error("capture_reused", Some(span), format!("`{name}` is captured twice"))
                    .with_label("captured again")
                    .with_secondary(first, "first captured here")
                    .with_hint(
                        "a capture holds one value for the rest of the test; give this one another name",
                    ),
            );
            return None;
        }
        self.captures.insert(name.clone(), span);
        Some(Some(name))
    }
}

/// A free name close to a reserved one.
fn suggestion(name: &str) -> String {
    let trimmed = name.trim_start_matches('_');
    let base = if trimmed.is_empty() { "VALUE" } else { trimmed };
    let candidate = format!("{base}_VALUE");
    if reserved(&candidate).is_none() && valid_capture_name(&candidate) {
        candidate
    } else {
        "CAPTURED".to_string()
    }
}
