//! Snapshots of all nodes: the `snapshot` and `restore` steps, `isolate`
//! (on the test or on a subtest), which expands into them, and the checks
//! that need the steps in order (what is restored was saved, and every node
//! runs at that point).

use std::collections::BTreeMap;

use super::convert::{Conv, key_name};
use crate::diagnostic::{Diagnostic, Span};
use crate::spec::value::{Entry, Kind, Value};
use crate::spec::{Action, Backend, Step, TestSpec};

/// The action keys of this family.
pub(super) const SNAPSHOT_KEYS: &[&str] = &["snapshot", "restore"];

/// Name of the snapshot `isolate = true;` on the test takes.
pub const ISOLATE_SNAPSHOT: &str = "isolate";

/// Longest snapshot name.
const MAX_NAME: usize = 64;

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Conv<'_> {
    pub(super) fn snapshot_action(&mut self, e: &Entry) -> Option<Action> {
        let v = &e.value;
        let name = self.str(v, &key_name("", &e.key))?;
        if !valid_name(&name) {
            self.diags.push(
                Diagnostic::error(
                    "invalid_snapshot_name",
                    Some(v.span),
                    format!("invalid snapshot name {name:?}"),
                )
                .with_label("not a snapshot name")
                .with_hint(format!(
                    "use 1 to {MAX_NAME} letters, digits, `-`, `_` or `.`, e.g. `{} = \"clean\";`",
                    e.key
                )),
            );
            return None;
        }
        Some(match e.key.as_str() {
            "snapshot" => {
                self.snapshot_names.push((name.clone(), v.span));
                Action::Snapshot { name }
            }
            _ => Action::Restore { name },
        })
    }

    /// `isolate = true;` / `false`.
    pub(super) fn isolate_flag(&mut self, v: &Value) -> bool {
        match v.kind {
            Kind::Bool(b) => b,
            _ => {
                self.diags.push(
                    Diagnostic::error(
                        "wrong_type",
                        Some(v.span),
                        format!("`isolate` must be a boolean, found {}", v.kind.describe()),
                    )
                    .with_label("expected `true` or `false`")
                    .with_hint("write `isolate = true;`"),
                );
                false
            }
        }
    }
}

/// Expands `isolate`: each subtest of `steps` (their direct subtests, not
/// nested ones) starts from the state the nodes had when the first began.
/// A `snapshot` goes before the first subtest and a `restore` before each
/// later one, so the save and restore times are steps of their own in the
/// reports and the checks below apply to them too.
pub fn isolate(steps: &mut Vec<Step>, name: &str, span: Span) {
    let firsts: Vec<usize> = steps
        .iter()
        .enumerate()
        .filter(|(_, s)| matches!(s.action, Action::Subtest { .. }))
        .map(|(i, _)| i)
        .collect();
    for (k, &i) in firsts.iter().enumerate().rev() {
        let action = if k == 0 {
            Action::Snapshot { name: name.to_owned() }
        } else {
            Action::Restore { name: name.to_owned() }
        };
        steps.insert(i, Step { node: None, timeout: None, action, span: Some(span) });
    }
}

/// Longest title part of an isolated subtest's snapshot name: leaves room
/// for `isolate.` and a `.N` that tells equal titles apart.
const MAX_TITLE_PART: usize = 48;

impl Conv<'_> {
    /// The snapshot name a subtest's `isolate` uses: `isolate.<title>`, the
    /// title reduced to letters, digits and `-` (`isolate.primary-down`), so
    /// it reads well in the reports and stays the same when the file is
    /// edited elsewhere. A title already taken in this file (nested isolated
    /// subtests must not overwrite each other's snapshot) gets `.2`, `.3`, …
    pub(super) fn subtest_snapshot_name(&mut self, title: Option<&str>, isolate: Span) -> String {
        let mut part = String::new();
        for c in title.unwrap_or_default().chars() {
            if c.is_ascii_alphanumeric() || c == '_' {
                part.push(c.to_ascii_lowercase());
            } else if !part.is_empty() && !part.ends_with('-') {
                part.push('-');
            }
        }
        part.truncate(MAX_TITLE_PART);
        let part = part.trim_end_matches('-');
        let base = format!("{ISOLATE_SNAPSHOT}.{}", if part.is_empty() { "subtest" } else { part });
        let name = (1..)
            .map(|n| if n == 1 { base.clone() } else { format!("{base}.{n}") })
            .find(|n| !self.isolate_names.contains_key(n))
            .expect("an unused suffix");
        self.isolate_names.insert(name.clone(), isolate);
        name
    }

    /// Refuses an explicit `snapshot` under a name `isolate` uses: it would
    /// overwrite the state `isolate` restores. (A `restore` of it is fine.)
    pub(super) fn snapshot_names_taken(&mut self) {
        for (name, span) in &self.snapshot_names {
            let Some(&isolate) = self.isolate_names.get(name) else { continue };
            self.diags.push(
                Diagnostic::error(
                    "snapshot_name_taken",
                    Some(*span),
                    format!("snapshot name `{name}` is the one `isolate` uses in this test"),
                )
                .with_label("taken by `isolate`")
                .with_secondary(isolate, "`isolate` saves the state its subtests start from under that name")
                .with_hint(
                    "choose another name, e.g. `snapshot = \"clean\";`: this step would overwrite the state \
                     `isolate` restores",
                ),
            );
        }
    }
}

/// Node power and saved snapshots while walking the steps in order.
struct Walk<'a> {
    diags: &'a mut Vec<Diagnostic>,
    /// Nodes that are shut down, with the step that did it.
    down: BTreeMap<String, Option<Span>>,
    /// Snapshot name → the nodes that were down when it was taken.
    saved: BTreeMap<String, BTreeMap<String, Option<Span>>>,
    python: bool,
    python_reported: bool,
}

impl Walk<'_> {
    fn steps(&mut self, steps: &[Step]) {
        for step in steps {
            let node = step.node.clone();
            match &step.action {
                Action::Subtest { steps, .. } => self.steps(steps),
                Action::Start | Action::Reboot => {
                    if let Some(n) = node {
                        self.down.remove(&n);
                    }
                }
                Action::Shutdown | Action::Crash => {
                    if let Some(n) = node {
                        self.down.insert(n, step.span);
                    }
                }
                Action::Snapshot { name } => {
                    self.backend(step);
                    self.all_running(step, "a snapshot");
                    self.saved.insert(name.clone(), self.down.clone());
                }
                Action::Restore { name } => {
                    self.backend(step);
                    if !self.all_running(step, "a restore") {
                        continue;
                    }
                    match self.saved.get(name) {
                        Some(down) => self.down = down.clone(),
                        None => {
                            let known: Vec<&str> = self.saved.keys().map(String::as_str).collect();
                            let hint = if known.is_empty() {
                                format!("take it first: `{{ snapshot = \"{name}\"; }}` before this step")
                            } else {
                                format!(
                                    "snapshots taken before this step: {}",
                                    super::convert::code_list(&known)
                                )
                            };
                            self.diags.push(
                                Diagnostic::error(
                                    "unknown_snapshot",
                                    step.span,
                                    format!("restore of snapshot `{name}`, which no earlier step takes"),
                                )
                                .with_label("nothing to restore")
                                .with_hint(hint),
                            );
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Reports nodes that are shut down at `step`; whether all run.
    fn all_running(&mut self, step: &Step, what: &str) -> bool {
        let Some((node, at)) = self.down.iter().next().map(|(n, s)| (n.clone(), *s)) else {
            return true;
        };
        let mut d = Diagnostic::error(
            "snapshot_node_down",
            step.span,
            format!("{what} needs every node running, but node `{node}` is shut down here"),
        )
        .with_label("node not running")
        .with_hint(format!(
            "add `{{ start = \"{node}\"; }}` before this step (QEMU keeps snapshots in the node's disk, so a \
             restart in between is fine)"
        ));
        if let Some(at) = at {
            d = d.with_secondary(at, format!("`{node}` stops here and is not started again"));
        }
        self.diags.push(d);
        false
    }

    fn backend(&mut self, step: &Step) {
        if self.python && !self.python_reported {
            self.python_reported = true;
            self.diags.push(
                Diagnostic::error(
                    "needs_rust_backend",
                    step.span,
                    format!("`{}` and `isolate` need the Rust backend", step.action.key()),
                )
                .with_label("not possible with the stock Python driver")
                .with_hint(
                    "remove `backend = \"python\";`: the stock driver's monitor can only `savevm`, which QEMU \
                     refuses for NixOS test VMs (a mounted 9p store, or the raw store image); see \
                     docs/snapshots.md",
                ),
            );
        }
    }
}

/// Checks the snapshot steps of a parsed description in execution order.
pub(super) fn check(spec: &TestSpec, diags: &mut Vec<Diagnostic>) {
    let mut walk = Walk {
        diags,
        down: BTreeMap::new(),
        saved: BTreeMap::new(),
        python: spec.backend == Backend::Python,
        python_reported: false,
    };
    walk.steps(&spec.steps);
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::diagnostic::FileId;
    use crate::spec::parse::parse;
    use crate::spec::{Action, TestSpec};

    fn parse_codes(text: &str) -> (Option<TestSpec>, Vec<&'static str>) {
        let (spec, diags) = parse(FileId(0), Path::new("tests/vm/t.nix"), text);
        (spec, diags.iter().map(|d| d.code).collect())
    }

    fn keys(steps: &[crate::spec::Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match &s.action {
                Action::Snapshot { name } => format!("snapshot:{name}"),
                Action::Restore { name } => format!("restore:{name}"),
                Action::Subtest { title, .. } => format!("subtest:{title}"),
                a => a.key().to_owned(),
            })
            .collect()
    }

    #[test]
    fn isolate_on_the_test_saves_before_the_first_subtest_and_restores_before_the_others() {
        let (spec, codes) = parse_codes(
            r#"{ nodes.m = {}; isolate = true; steps = [
                 { waitForUnit = "multi-user.target"; }
                 { subtest = "a"; steps = [ { succeed = "touch /x"; } ]; }
                 { succeed = "true"; }
                 { subtest = "b"; steps = [ { fail = "test -e /x"; } ]; }
                 { subtest = "c"; steps = [ { sleep = 1; } ]; }
               ]; }"#,
        );
        assert!(codes.is_empty(), "{codes:?}");
        let spec = spec.unwrap();
        assert_eq!(
            keys(&spec.steps),
            [
                "waitForUnit",
                "snapshot:isolate",
                "subtest:a",
                "succeed",
                "restore:isolate",
                "subtest:b",
                "restore:isolate",
                "subtest:c"
            ]
        );
        // The inserted steps act on every node and point at `isolate`.
        assert_eq!(spec.steps[1].node, None);
        assert!(spec.steps[1].span.is_some());
    }

    #[test]
    fn isolate_on_a_subtest_applies_to_its_subtests() {
        let (spec, codes) = parse_codes(
            r#"{ nodes.m = {}; steps = [
                 { subtest = "outer"; isolate = true; steps = [
                   { subtest = "a"; steps = [ { sleep = 1; } ]; }
                   { subtest = "b"; steps = [ { sleep = 1; } ]; }
                 ]; }
               ]; }"#,
        );
        assert!(codes.is_empty(), "{codes:?}");
        let Action::Subtest { steps, .. } = &spec.unwrap().steps[0].action else { panic!("subtest") };
        assert_eq!(
            keys(steps),
            ["snapshot:isolate.outer", "subtest:a", "restore:isolate.outer", "subtest:b"]
        );
    }

    #[test]
    fn isolated_subtests_get_names_from_their_titles_unique_in_the_file() {
        let (spec, codes) = parse_codes(
            r#"{ nodes.m = {}; steps = [
                 { subtest = "Fail over: primary down!"; isolate = true; steps = [
                   { subtest = "a"; isolate = true; steps = [
                     { subtest = "x"; steps = [ { sleep = 1; } ]; }
                     { subtest = "y"; steps = [ { sleep = 1; } ]; }
                   ]; }
                   { subtest = "b"; steps = [ { sleep = 1; } ]; }
                 ]; }
                 { subtest = "a"; isolate = true; steps = [
                   { subtest = "a"; isolate = true; steps = [ { subtest = "z"; steps = [ { sleep = 1; } ]; } ]; }
                 ]; }
                 { subtest = "ж"; isolate = true; steps = [ { subtest = "z"; steps = [ { sleep = 1; } ]; } ]; }
               ]; }"#,
        );
        assert!(codes.is_empty(), "{codes:?}");
        let steps = spec.unwrap().steps;
        let inner = |s: &crate::spec::Step| match &s.action {
            Action::Subtest { steps, .. } => keys(steps),
            a => panic!("{a:?}"),
        };
        let outer = inner(&steps[0]);
        assert_eq!(outer[0], "snapshot:isolate.fail-over-primary-down");
        let Action::Subtest { steps: first, .. } = &steps[0].action else { panic!("subtest") };
        assert_eq!(inner(&first[1])[0], "snapshot:isolate.a");
        // Outer before inner: the top-level "a" is `.2`, the "a" inside it `.3`.
        assert_eq!(inner(&steps[1])[0], "snapshot:isolate.a.2");
        let Action::Subtest { steps: second, .. } = &steps[1].action else { panic!("subtest") };
        assert_eq!(inner(&second[1])[0], "snapshot:isolate.a.3");
        assert_eq!(inner(&steps[2])[0], "snapshot:isolate.subtest");
    }

    #[test]
    fn an_explicit_snapshot_may_not_take_a_name_isolate_uses() {
        let bad = |text: &str| parse_codes(text).1;
        assert_eq!(
            bad(r#"{ nodes.m = {}; isolate = true; steps = [
                 { subtest = "a"; steps = [ { snapshot = "isolate"; } ]; }
                 { subtest = "b"; steps = [ { sleep = 1; } ]; } ]; }"#),
            ["snapshot_name_taken"]
        );
        assert_eq!(
            bad(r#"{ nodes.m = {}; steps = [ { snapshot = "isolate.a"; }
                 { subtest = "A"; isolate = true; steps = [ { subtest = "x"; steps = [ { sleep = 1; } ]; } ]; } ]; }"#),
            ["snapshot_name_taken"]
        );
        // Restoring it by hand, or the name in a test without `isolate`: fine.
        assert!(
            bad(r#"{ nodes.m = {}; isolate = true; steps = [
                 { subtest = "a"; steps = [ { sleep = 1; } ]; }
                 { subtest = "b"; steps = [ { restore = "isolate"; } ]; } ]; }"#)
            .is_empty()
        );
        assert!(
            bad(r#"{ nodes.m = {}; steps = [ { snapshot = "isolate"; } { restore = "isolate"; } ]; }"#)
                .is_empty()
        );
    }

    #[test]
    fn long_titles_make_valid_names() {
        let title = "a".repeat(200);
        let text = format!(
            r#"{{ nodes.m = {{}}; steps = [
                 {{ subtest = "{title}"; isolate = true; steps = [ {{ subtest = "x"; steps = [ {{ sleep = 1; }} ]; }} ]; }}
                 {{ subtest = "{title}"; isolate = true; steps = [ {{ subtest = "x"; steps = [ {{ sleep = 1; }} ]; }} ]; }}
               ]; }}"#
        );
        let (spec, codes) = parse_codes(&text);
        assert!(codes.is_empty(), "{codes:?}");
        for (s, suffix) in spec.unwrap().steps.iter().zip(["", ".2"]) {
            let Action::Subtest { steps, .. } = &s.action else { panic!("subtest") };
            let Action::Snapshot { name } = &steps[0].action else { panic!("snapshot") };
            assert!(super::valid_name(name), "{name}");
            assert_eq!(*name, format!("isolate.{}{suffix}", "a".repeat(super::MAX_TITLE_PART)));
        }
    }

    #[test]
    fn explicit_steps_and_their_mistakes() {
        let (spec, codes) =
            parse_codes(r#"{ nodes.m = {}; steps = [ { snapshot = "clean"; } { restore = "clean"; } ]; }"#);
        assert!(codes.is_empty(), "{codes:?}");
        assert_eq!(spec.unwrap().steps[1].action, Action::Restore { name: "clean".into() });
        let bad = |text: &str| parse_codes(text).1;
        assert_eq!(bad(r#"{ nodes.m = {}; steps = [ { restore = "x"; } ]; }"#), ["unknown_snapshot"]);
        assert_eq!(bad(r#"{ nodes.m = {}; steps = [ { snapshot = "a b"; } ]; }"#), ["invalid_snapshot_name"]);
        assert_eq!(bad(r#"{ nodes.m = {}; isolate = "yes"; steps = [ { sleep = 1; } ]; }"#), ["wrong_type"]);
        assert_eq!(
            bad(r#"{ nodes.m = {}; steps = [ { snapshot = "s"; node = "m"; } ]; }"#),
            ["misplaced_step_key"]
        );
        assert_eq!(
            bad(
                r#"{ nodes.m = {}; backend = "python"; steps = [ { snapshot = "s"; } { restore = "s"; } ]; }"#
            ),
            ["needs_rust_backend"]
        );
    }

    #[test]
    fn restore_after_shutdown_needs_a_start() {
        let bad = |text: &str| parse_codes(text).1;
        // Shut down and never started again.
        assert_eq!(
            bad(r#"{ nodes = { a = {}; b = {}; }; steps = [
                 { snapshot = "s"; } { shutdown = "b"; } { restore = "s"; } ]; }"#),
            ["snapshot_node_down"]
        );
        assert_eq!(
            bad(r#"{ nodes.m = {}; steps = [ { crash = true; } { snapshot = "s"; } ]; }"#),
            ["snapshot_node_down"]
        );
        // Started again: fine; and a restore brings back the saved power state.
        assert!(
            bad(r#"{ nodes = { a = {}; b = {}; }; steps = [
                 { snapshot = "s"; } { shutdown = "b"; } { start = "b"; } { restore = "s"; }
                 { shutdown = "a"; } { start = "a"; } { restore = "s"; } ]; }"#)
            .is_empty()
        );
    }
}
