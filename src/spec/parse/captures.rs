//! `capture = "NAME";` on `succeed`, `waitUntilSucceeds` and `execute`:
//! a shell variable name, captured once per test, not one the shell or the
//! driver reserves ([`crate::spec::captures`]).

use super::convert::{Conv, Sibling};
use crate::diagnostic::{Diagnostic, Span};
use crate::spec::captures::{MAX_NAME_LEN, reserved, shell_references, valid_capture_name};

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

impl Conv<'_> {
    /// Notes the `$NAME`s of a literal command (at `span`) that no earlier
    /// step captured. Most are environment or shell variables (`$HOME`,
    /// `$PATH`); [`Conv::captures_used_early`] reports those that a later
    /// step captures.
    pub(super) fn capture_uses(&mut self, command: &str, span: Span) {
        let mut seen: Vec<&str> = Vec::new();
        for (name, _) in shell_references(command) {
            if seen.contains(&name) || self.captures.contains_key(name) {
                continue;
            }
            seen.push(name);
            self.uncaptured_uses.push((name.to_string(), reference_span(self.source, span, name)));
        }
    }

    /// `capture_not_defined`: a command reads `$NAME` before the step that
    /// captures `NAME` ran. Commands see the captures of earlier steps only
    /// (a step's own capture is stored after its command ran), and the
    /// driver runs them with `set -u`, so the command would stop at the
    /// unset variable.
    pub(super) fn captures_used_early(&mut self) {
        for (name, span) in std::mem::take(&mut self.uncaptured_uses) {
            let Some(captured) = self.captures.get(&name).copied() else { continue };
            self.diags.push(
                Diagnostic::error(
                    "capture_not_defined",
                    Some(span),
                    format!("`${name}` is read before it is captured"),
                )
                .with_label("not captured yet")
                .with_secondary(captured, "captured here, after that command runs")
                .with_hint(format!(
                    "a command sees only the captures of the steps before it (a step's own capture is stored \
                     after its command ran); move this step after the one with `capture = \"{name}\";`, or \
                     rename the shell variable if it is not the capture"
                )),
            );
        }
    }
}

/// The span of the first `$NAME` / `${NAME` / `${#NAME` written inside
/// the string at `span` (found as text: in the source, Nix escapes such as
/// `\${` stand before it), or `span` when the source does not show it (a
/// folded string).
fn reference_span(source: Option<&str>, span: Span, name: &str) -> Span {
    let Some(text) = source.and_then(|s| s.get(span.start as usize..span.end as usize)) else {
        return span;
    };
    let found = text.match_indices('$').find_map(|(at, _)| {
        let rest = &text[at + 1..];
        let prefix = ["{#", "{", ""]
            .into_iter()
            .find(|p| rest.starts_with(*p) && rest[p.len()..].starts_with(name))?;
        let end = at + 1 + prefix.len() + name.len();
        let boundary = !text[end..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        boundary.then_some((at, end))
    });
    let Some((at, end)) = found else { return span };
    let offset = |i: usize| span.start + u32::try_from(i).unwrap_or(0);
    Span { start: offset(at), end: offset(end).min(span.end), ..span }
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
