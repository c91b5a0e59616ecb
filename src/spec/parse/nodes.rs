//! `nodes`: node names and the node a step runs on.

use std::collections::BTreeMap;

use super::convert::{Conv, Nodes, code_list};
use crate::diagnostic::{Diagnostic, Span};
use crate::spec::names;
use crate::spec::parse::valid_node_name;
use crate::spec::validate::did_you_mean;
use crate::spec::value::{Entry, Value};

impl Conv<'_> {
    // ----- nodes -----

    pub(super) fn nodes(&mut self, v: &Value) -> Option<BTreeMap<String, Span>> {
        let entries = self.attrs(v, "`nodes`")?;
        if entries.is_empty() {
            self.diags.push(
                Diagnostic::error("no_nodes", Some(v.span), "the test defines no nodes")
                    .with_label("empty")
                    .with_hint("add at least one machine: `nodes.machine = { pkgs, ... }: { … };`"),
            );
        }
        let mut out = BTreeMap::new();
        // Pythonized name → the node that has it, for clashes.
        let mut python_names: BTreeMap<String, &Entry> = BTreeMap::new();
        for e in entries {
            if valid_node_name(&e.key) {
                self.python_name(e, &mut python_names);
            } else {
                self.diags.push(
                    Diagnostic::error(
                        "invalid_node_name",
                        Some(e.key_span),
                        format!("`{}` is not a valid node name", e.key),
                    )
                    .with_label("used as host name and as a Python variable")
                    .with_hint("start with a letter or `_`; use only letters, digits, `_` and `-`"),
                );
            }
            out.insert(e.key.clone(), e.key_span);
        }
        Some(out)
    }

    /// Refuses node names that cannot be variables of the stock driver's
    /// testScript: keywords, driver globals, and two nodes that pythonize
    /// to the same name (`web-1`, `web_1`).
    pub(super) fn python_name<'e>(&mut self, e: &'e Entry, seen: &mut BTreeMap<String, &'e Entry>) {
        let py = names::pythonize(&e.key);
        if let Some(why) = names::reserved_python_name(&py) {
            let shown =
                if py == e.key { format!("`{py}`") } else { format!("`{}` (in Python `{py}`)", e.key) };
            self.diags.push(
                Diagnostic::error(
                    "reserved_node_name",
                    Some(e.key_span),
                    format!("node name {shown} cannot be used in the test script"),
                )
                .with_label(why)
                .with_hint(
                    "the stock driver's testScript refers to each node as a Python variable; rename the node \
                     (e.g. `server`, `client`)",
                ),
            );
            return;
        }
        match seen.get(&py) {
            Some(first) => self.diags.push(
                Diagnostic::error(
                    "node_name_clash",
                    Some(e.key_span),
                    format!("nodes `{}` and `{}` are both `{py}` in the test script", first.key, e.key),
                )
                .with_label(format!("also `{py}` in Python"))
                .with_secondary(first.key_span, format!("`{py}` in Python"))
                .with_hint("the stock driver replaces `-` with `_` in node names; rename one of the nodes"),
            ),
            None => {
                seen.insert(py, e);
            }
        }
    }

    pub(super) fn known_nodes(&self) -> Option<&BTreeMap<String, Span>> {
        match &self.nodes {
            Nodes::Known(map) => Some(map),
            Nodes::Unknown => None,
        }
    }

    /// Checks that a named node exists.
    pub(super) fn check_node(&mut self, name: &str, span: Span) {
        let Some(nodes) = self.known_nodes() else { return };
        if nodes.contains_key(name) || nodes.is_empty() {
            return;
        }
        let names: Vec<&str> = nodes.keys().map(String::as_str).collect();
        let label = match did_you_mean(name, names.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => "no such node".into(),
        };
        let d = Diagnostic::error("unknown_node", Some(span), format!("unknown node `{name}`"))
            .with_label(label)
            .with_hint(format!("the test defines {}", code_list(&names)));
        self.diags.push(d);
    }
}
