//! One step: its action key, modifiers (`node`, `timeout`) and siblings,
//! and the dispatch of the action's value to its family's converter.

use super::commands::COMMAND_KEYS;
use super::convert::{Conv, NodeRef, Sibling, code_list, key_name};
use super::display::DISPLAY_KEYS;
use super::power::POWER_KEYS;
use super::snapshots::{SNAPSHOT_KEYS, isolate};
use super::units::UNIT_KEYS;
use super::waits::WAIT_KEYS;
use crate::diagnostic::{Diagnostic, Span};
use crate::spec::computed::ComputedType;
use crate::spec::parse::{STEP_MODIFIERS, STEP_SIBLINGS};
use crate::spec::value::{Entry, Kind, Value};
use crate::spec::{ACTION_KEYS, Action, Step};

impl Conv<'_> {
    pub(super) fn steps(&mut self, items: &[Value]) -> Vec<Step> {
        items.iter().flat_map(|item| self.step(item).unwrap_or_default()).collect()
    }

    /// One step of the description; several when `succeed` or `fail`
    /// holds a list of commands (one step per command, in order).
    pub(super) fn step(&mut self, v: &Value) -> Option<Vec<Step>> {
        let entries = self.attrs(v, "a step")?;
        // The first action apart: a step has one, and then needs no `Vec`.
        let mut first_action: Option<&Entry> = None;
        let mut more_actions: Vec<&Entry> = Vec::new();
        let mut had_unknown = false;
        for e in entries {
            let k = e.key.as_str();
            if ACTION_KEYS.contains(&k) {
                match first_action {
                    None => first_action = Some(e),
                    Some(_) => more_actions.push(e),
                }
            } else if !STEP_MODIFIERS.contains(&k) && !STEP_SIBLINGS.iter().any(|(s, _)| *s == k) {
                had_unknown = true;
                let known: Vec<&str> = ACTION_KEYS
                    .iter()
                    .chain(STEP_MODIFIERS)
                    .copied()
                    .chain(STEP_SIBLINGS.iter().map(|(s, _)| *s))
                    .collect();
                self.unknown_key(
                    "unknown_step_key",
                    e,
                    &known,
                    "a step has one action key (e.g. `succeed`, `waitForUnit`) plus optional `node` and `timeout`",
                );
            }
        }
        let action_entry = match (first_action, more_actions.as_slice()) {
            (None, _) => {
                if !had_unknown {
                    self.diags.push(
                        Diagnostic::error("missing_action", Some(v.span), "step has no action")
                            .with_label("nothing to do")
                            .with_hint(format!("add exactly one of {}", code_list(ACTION_KEYS))),
                    );
                }
                return None;
            }
            (Some(one), []) => one,
            (Some(first), rest) => {
                for extra in rest {
                    self.diags.push(
                        Diagnostic::error(
                            "multiple_actions",
                            Some(extra.key_span),
                            format!("step has two actions: `{}` and `{}`", first.key, extra.key),
                        )
                        .with_label("second action")
                        .with_secondary(first.key_span, "first action")
                        .with_hint("split them into separate steps: `{ … }` per action"),
                    );
                }
                return None;
            }
        };
        let key = action_entry.key.as_str();
        let sibling = |name: &str| entries.iter().find(|e| e.key == name);

        // Siblings that belong to another action.
        for e in entries {
            if let Some((_, owners)) = STEP_SIBLINGS.iter().find(|(s, _)| *s == e.key)
                && !owners.contains(&key)
            {
                self.diags.push(
                    Diagnostic::error(
                        "misplaced_step_key",
                        Some(e.key_span),
                        format!("`{}` does not apply to `{key}`", e.key),
                    )
                    .with_label(format!("not used by `{key}`"))
                    .with_hint(format!("`{}` belongs to {}", e.key, code_list(owners))),
                );
            }
        }

        let timeout = sibling("timeout").and_then(|t| {
            let what = format!("the `timeout` of `{key}`");
            self.num(&t.value, &what, ComputedType::Timeout, |c, v| {
                let secs = c.number(v, "`timeout`")?;
                if secs > 0.0 && secs.is_finite() {
                    Some(secs)
                } else {
                    c.bad_timeout(v.span, &secs.to_string());
                    None
                }
            })
        });
        let explicit_node =
            sibling("node").and_then(|n| self.str(&n.value, "`node`").map(|s| (s, n.value.span)));

        if let (Kind::List(commands), true) =
            (&action_entry.value.kind, matches!(action_entry.key.as_str(), "succeed" | "fail"))
        {
            return self.command_list(v, action_entry, commands, timeout, explicit_node, &sibling);
        }
        let (action, value_node) = self.action(action_entry, &sibling)?;
        let node = self.resolve_node(&action, action_entry, explicit_node, value_node, sibling("node"));
        Some(vec![Step { node, timeout, action, span: Some(v.span) }])
    }

    /// `succeed = [ … ];` / `fail = [ … ];`: one step per command, as the
    /// stock `succeed(*commands)` runs them one after the other. `expect`
    /// needs one command (whose output would it check?).
    fn command_list<'e>(
        &mut self,
        v: &Value,
        action_entry: &Entry,
        commands: &[Value],
        timeout: Option<crate::spec::Num<f64>>,
        explicit_node: Option<(String, Span)>,
        sibling: Sibling<'_, 'e>,
    ) -> Option<Vec<Step>> {
        if commands.is_empty() {
            self.diags.push(
                Diagnostic::error(
                    "empty_command",
                    Some(action_entry.value.span),
                    format!("`{}` has no commands", action_entry.key),
                )
                .with_label("empty list")
                .with_hint("list at least one shell command, or remove the step"),
            );
            return None;
        }
        for key in ["expect", "capture"] {
            if let Some(x) = sibling(key) {
                self.diags.push(
                    Diagnostic::error(
                        "misplaced_step_key",
                        Some(x.key_span),
                        format!("`{key}` needs a single command"),
                    )
                    .with_label("several commands above")
                    .with_hint(format!(
                        "give the command whose output is {} its own step",
                        match key {
                            "expect" => "checked",
                            _ => "captured",
                        }
                    )),
                );
                return None;
            }
        }
        let mut out = Vec::new();
        for item in commands {
            let entry =
                Entry { key: action_entry.key.clone(), key_span: action_entry.key_span, value: item.clone() };
            let (action, value_node) = self.action(&entry, sibling)?;
            let node = self.resolve_node(&action, &entry, explicit_node.clone(), value_node, sibling("node"));
            out.push(Step { node, timeout, action, span: Some(item.span) });
        }
        let _ = v;
        Some(out)
    }

    /// Decides the node of a step and reports node mistakes.
    pub(super) fn resolve_node(
        &mut self,
        action: &Action,
        action_entry: &Entry,
        explicit: Option<(String, Span)>,
        from_value: Option<(String, Span)>,
        node_entry: Option<&Entry>,
    ) -> Option<String> {
        if !action.needs_node() {
            if let Some(e) = node_entry {
                self.diags.push(
                    Diagnostic::error(
                        "misplaced_step_key",
                        Some(e.key_span),
                        format!("`node` does not apply to `{}`", action.key()),
                    )
                    .with_label(format!("`{}` does not run on a node", action.key()))
                    .with_hint("remove `node` here; set it on the steps that run commands"),
                );
            }
            return None;
        }
        let chosen = match (explicit, from_value) {
            (Some((a, a_span)), Some((b, b_span))) => {
                if a != b {
                    self.diags.push(
                        Diagnostic::error(
                            "conflicting_node",
                            Some(b_span),
                            format!("`{}` names node `{b}` but `node` says `{a}`", action.key()),
                        )
                        .with_label(format!("node `{b}`"))
                        .with_secondary(a_span, format!("node `{a}`"))
                        .with_hint(format!(
                            "write either `{} = \"{a}\";` or `{} = true; node = \"{a}\";`",
                            action.key(),
                            action.key()
                        )),
                    );
                }
                Some((a, a_span))
            }
            (Some(n), None) | (None, Some(n)) => Some(n),
            (None, None) => None,
        };
        if let Some((name, span)) = chosen {
            self.check_node(&name, span);
            return Some(name);
        }
        let nodes = self.known_nodes()?;
        match nodes.len() {
            0 => None,
            1 => nodes.keys().next().cloned(),
            _ => {
                let names: Vec<&str> = nodes.keys().map(String::as_str).collect();
                let first = names.first().copied().unwrap_or("machine");
                let d = Diagnostic::error(
                    "missing_node",
                    Some(action_entry.key_span),
                    format!("step `{}` does not say which node it runs on", action.key()),
                )
                .with_label("which node?")
                .with_hint(format!("add `node = \"{first}\";` (the test defines {})", code_list(&names)));
                self.diags.push(d);
                None
            }
        }
    }

    /// Converts the action key's value, in the module of its family. Also
    /// returns a node named by the value itself (`start = "server";`).
    pub(super) fn action<'e>(&mut self, e: &Entry, sibling: Sibling<'_, 'e>) -> Option<(Action, NodeRef)> {
        let key = e.key.as_str();
        if WAIT_KEYS.contains(&key) {
            return self.wait_action(e, sibling).map(|a| (a, None));
        }
        if COMMAND_KEYS.contains(&key) {
            return self.command_action(e, sibling).map(|a| (a, None));
        }
        if UNIT_KEYS.contains(&key) {
            return self.unit_action(e, sibling).map(|a| (a, None));
        }
        if POWER_KEYS.contains(&key) {
            return self.power_action(e);
        }
        if DISPLAY_KEYS.contains(&key) {
            return self.display_action(e, sibling);
        }
        if SNAPSHOT_KEYS.contains(&key) {
            return self.snapshot_action(e).map(|a| (a, None));
        }
        let action = match key {
            "http" => self.http(&e.value)?,
            "copyFromVm" => self.copy_from_vm(e, sibling)?,
            "copyFromHost" => self.copy_from_host(e, sibling)?,
            "forwardPort" => self.forward_port(e, sibling)?,
            "screenshot" => self.screenshot(e)?,
            "sleep" => self.sleep(e)?,
            "python" => Action::Python { code: self.str(&e.value, "`python`")? },
            "subtest" => self.subtest(e, sibling)?,
            // ACTION_KEYS and the families list the same keys.
            _ => return None,
        };
        Some((action, None))
    }

    fn sleep(&mut self, e: &Entry) -> Option<Action> {
        let what = key_name("", &e.key);
        let seconds = self.num(&e.value, &what, ComputedType::Seconds, |c, v| {
            let seconds = c.number(v, &what)?;
            if !(seconds >= 0.0 && seconds.is_finite()) {
                c.diags.push(
                    Diagnostic::error(
                        "invalid_sleep",
                        Some(v.span),
                        format!("cannot sleep {seconds} seconds"),
                    )
                    .with_label("negative")
                    .with_hint("give a number of seconds, zero or more"),
                );
                return None;
            }
            Some(seconds)
        })?;
        Some(Action::Sleep { seconds })
    }

    fn subtest<'e>(&mut self, e: &Entry, sibling: Sibling<'_, 'e>) -> Option<Action> {
        let v = &e.value;
        let what = key_name("", &e.key);
        let title = self.str(v, &what);
        // Named before the steps are read, so that an outer subtest's name
        // comes before those of isolated subtests inside it.
        let isolated = match sibling("isolate") {
            Some(iso) if self.isolate_flag(&iso.value) => {
                Some((self.subtest_snapshot_name(title.as_deref(), iso.key_span), iso.key_span))
            }
            _ => None,
        };
        let mut steps = match sibling("steps") {
            Some(s) => {
                let items = self.list(&s.value, "`steps`")?;
                if items.is_empty() {
                    self.empty_steps(s.value.span, "the subtest");
                }
                self.steps(items)
            }
            None => {
                self.diags.push(
                    Diagnostic::error("missing_field", Some(e.key_span), "subtest has no `steps`")
                        .with_label("subtest without steps")
                        .with_hint("add `steps = [ … ];` next to `subtest`"),
                );
                return None;
            }
        };
        if let Some((name, span)) = isolated {
            isolate(&mut steps, &name, span);
        }
        Some(Action::Subtest { title: title?, steps })
    }
}
