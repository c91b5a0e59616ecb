//! systemd beyond waiting: `systemctl` queries, `requireUnitState`,
//! `startJob` and `stopJob` (the stock methods of the same names).

use super::convert::{Conv, ShellWord, Sibling, code_list, key_name};
use crate::diagnostic::Diagnostic;
use crate::spec::captures::shell_references;
use crate::spec::value::{Entry, Value};
use crate::spec::{Action, Expect, computed, names};

/// The action keys of this family.
pub(super) const UNIT_KEYS: &[&str] = &["systemctl", "requireUnitState", "startJob", "stopJob"];

impl Conv<'_> {
    pub(super) fn unit_action<'e>(&mut self, e: &Entry, sibling: Sibling<'_, 'e>) -> Option<Action> {
        let v = &e.value;
        let what = key_name("", &e.key);
        let user = self.unit_user(sibling);
        Some(match e.key.as_str() {
            "systemctl" => {
                let query = self.query(v, &what, sibling("user").is_some());
                let expect = match sibling("expect") {
                    Some(x) => self.expect(&x.value),
                    None => Some(Expect::default()),
                };
                let capture = self.capture(sibling);
                Action::Systemctl { query: query?, user: user?, expect: expect?, capture: capture? }
            }
            "requireUnitState" => {
                let unit = self.unit(v, &what);
                let state = match sibling("state") {
                    Some(s) => self.active_state(&s.value),
                    None => Some("active".to_string()),
                };
                Action::RequireUnitState { unit: unit?, state: state?, user: user? }
            }
            "startJob" => Action::StartJob { unit: self.unit(v, &what)?, user: user? },
            "stopJob" => Action::StopJob { unit: self.unit(v, &what)?, user: user? },
            _ => return None,
        })
    }

    /// A unit name (may be computed; checked against the same rules then).
    fn unit(&mut self, v: &Value, what: &str) -> Option<String> {
        let unit = self.text(v, what, Some(names::UNIT_NAME_PATTERN))?;
        self.unit_name(&unit, v.span);
        Some(unit)
    }

    /// `user`: `Some(None)` without one, `None` when it is wrong (reported).
    fn unit_user<'e>(&mut self, sibling: Sibling<'_, 'e>) -> Option<Option<String>> {
        let Some(entry) = sibling("user") else { return Some(None) };
        let user = self.str(&entry.value, "`user`")?;
        let before = self.diags.len();
        self.shell_word(ShellWord::User, &user, entry.value.span);
        (self.diags.len() == before).then_some(Some(user))
    }

    /// What follows `systemctl `: shell text, as in the stock method (its
    /// options are the point, so a leading `-` is fine here). A user's
    /// query runs in `su -l`'s clean environment, which captures do not
    /// reach.
    fn query(&mut self, v: &Value, what: &str, as_user: bool) -> Option<String> {
        let query = self.text(v, what, None)?;
        if !computed::is_placeholder(&query) {
            if as_user {
                self.captures_unseen(&query, v);
            } else {
                self.capture_uses(&query, v.span);
            }
        }
        if names::is_blank_command(&query) && !computed::is_placeholder(&query) {
            self.diags.push(
                Diagnostic::error("empty_command", Some(v.span), format!("{what} has no query"))
                    .with_label("nothing after `systemctl`")
                    .with_hint(
                        "write what follows `systemctl`, e.g. `systemctl = \"restart syshc.service\";` or \
                         `systemctl = \"is-active syshc.service\";`",
                    ),
            );
            return None;
        }
        self.command_length(&query, v, what);
        Some(query)
    }

    /// `capture_not_visible`: a user's query names a capture, which `su -l`
    /// does not pass on.
    fn captures_unseen(&mut self, query: &str, v: &Value) {
        let captured: Vec<String> = shell_references(query)
            .into_iter()
            .map(|(name, _)| name.to_string())
            .filter(|name| self.captures.contains_key(name))
            .collect();
        if let Some(name) = captured.first() {
            self.diags.push(
                Diagnostic::error(
                    "capture_not_visible",
                    Some(v.span),
                    format!("`${name}` does not reach a query run as another user"),
                )
                .with_label("captures are not passed to `su -l`")
                .with_hint(
                    "the stock driver runs a user's `systemctl --user` in a login shell (`su -l`), which starts \
                     from a clean environment; pass the value another way, e.g. in a file the user can read",
                ),
            );
        }
    }

    /// One of systemd's `ActiveState` values.
    fn active_state(&mut self, v: &Value) -> Option<String> {
        let state = self.str(v, "`state`")?;
        if names::ACTIVE_STATES.contains(&state.as_str()) {
            return Some(state);
        }
        let mut d = Diagnostic::error(
            "unknown_unit_state",
            Some(v.span),
            format!("`{}` is not a state a unit can be in", state.escape_debug()),
        )
        .with_label("not an `ActiveState` of systemd");
        if let Some(near) = crate::spec::validate::did_you_mean(&state, names::ACTIVE_STATES.iter().copied())
        {
            d = d.with_hint(format!("did you mean `{near}`?"));
        }
        self.diags.push(d.with_hint(format!("use one of {}", code_list(names::ACTIVE_STATES))));
        None
    }
}
