//! Writing the description of an imported test: nodes as copied source
//! (comments kept, relative paths re-based, free `pkgs`/`lib` bound), steps
//! from [`super::python`], TODO comments for the rest.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use std::collections::BTreeMap;

use super::nix::{Binding, NodeSource, PLACEHOLDER_PREFIX, TestSource};
use super::python::{self, Item, Leftover, NixValue, Note};
use super::{Imported, Target};
use crate::codegen::escape::{comment_text, nix_attr_name, nix_indented_string, nix_string};
use crate::fsutil::{normalize, relative_to};
use crate::spec::names::valid_test_name;
use crate::spec::parse::{TEST_CLASHES, TEST_OPTIONS};

/// Options of runNixOSTest that change no Machine call and no node: dropped
/// with a note.
const DROPPED_OPTIONS: &[&str] = &[
    "meta",
    "skipLint",
    "skipTypeCheck",
    "interactive",
    "passthru",
    "extraPythonPackages",
    "enableOCR",
    "includeTestScriptReferences",
];

/// The variables a node module may use that the module system passes to
/// every module, so a copied node can take them as arguments.
const MODULE_ARGS: &[&str] = &["pkgs", "lib"];

/// The arguments a description that is a function receives (the test's
/// `pkgs` and `lib`, the evaluated `nodes`), in the order written.
const FUNCTION_ARGS: &[&str] = &["pkgs", "lib", "nodes"];

/// The description's test name: `name`, else the file name (with the
/// attribute when a file holds several tests), made a valid check name.
pub fn test_name(test: &TestSource, stem: &str, several: bool) -> String {
    let raw = match (&test.name, several, &test.attr) {
        (Some(name), _, _) => name.clone(),
        (None, true, Some(attr)) => format!("{stem}-{attr}"),
        (None, _, _) => stem.to_string(),
    };
    let mut name: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-') { c } else { '-' })
        .collect();
    if !valid_test_name(&name) {
        name.insert(0, '_');
    }
    name
}

/// Builds the description of one test.
pub fn build(path: &Path, src_dir: &Path, test: TestSource, name: String, target: &Target) -> Imported {
    let mut leftovers = Vec::new();
    let mut notes = Vec::new();
    for (line, construct, why) in &test.problems {
        leftovers.push(Leftover {
            line: *line,
            construct: construct.clone(),
            why: why.clone(),
            source: String::new(),
            python: false,
        });
    }
    let node_names: Vec<String> = test.nodes.iter().map(|n| n.name.clone()).collect();
    if node_names.is_empty() {
        leftovers.push(Leftover {
            line: test.line,
            construct: "nodes".into(),
            why: "the test defines no nodes the importer can read".into(),
            source: String::new(),
            python: false,
        });
    }

    // Nodes: the flake's own modules become `modules`, the rest is copied.
    let mut own_modules: Option<BTreeSet<String>> = None;
    let mut same_modules = true;
    for node in &test.nodes {
        let names: BTreeSet<String> =
            super::nix::own_module_imports(&node.text).into_iter().map(|(_, n)| n).collect();
        match &own_modules {
            None => own_modules = Some(names),
            Some(prev) if *prev != names => same_modules = false,
            Some(_) => {}
        }
    }
    let rewrite_modules = same_modules;
    let mut nodes_text = String::new();
    let mut lets: Vec<Binding> = Vec::new();
    let mut args: BTreeSet<String> = BTreeSet::new();
    for node in &test.nodes {
        let (text, others, mut node_leftovers, node_notes) =
            copy_node(node, src_dir, &target.out_dir, rewrite_modules);
        leftovers.append(&mut node_leftovers);
        notes.extend(node_notes);
        let missing = bind_from_scope(&others, &test.scope, &mut lets, &mut args);
        if !missing.is_empty() {
            leftovers.push(Leftover {
                line: node.line,
                construct: format!("node `{}`", node.name),
                why: format!(
                    "it uses {} from outside the test; define {} in the description (a top-level `let`) or in the node",
                    missing.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", "),
                    if missing.len() == 1 { "it" } else { "them" }
                ),
                source: String::new(),
                python: false,
            });
        }
        for comment in &node.comments {
            for line in comment.lines() {
                let _ = writeln!(nodes_text, "    {}", line.trim());
            }
        }
        let _ = writeln!(nodes_text, "    {} = {};", nix_attr_name(&node.name), text);
    }
    if !same_modules {
        leftovers.push(Leftover {
            line: test.line,
            construct: "nodes".into(),
            why: "the nodes import different modules of the flake; `modules` applies to every node, so the imports stay in the nodes".into(),
            source: String::new(),
            python: false,
        });
    }
    let modules: Vec<String> =
        if rewrite_modules { own_modules.unwrap_or_default().into_iter().collect() } else { Vec::new() };

    // Options.
    for (line, message) in &test.notes {
        notes.push(Note { line: *line, message: message.clone() });
    }
    let mut timeout = None;
    let mut option_comments = String::new();
    let mut test_module = String::new();
    for opt in &test.options {
        if opt.key == "globalTimeout" && opt.int.is_some_and(|t| t > 0) {
            timeout = opt.int;
            continue;
        }
        let top = opt.key.split('.').next().unwrap_or_default();
        if DROPPED_OPTIONS.contains(&top) {
            notes.push(Note {
                line: opt.line,
                message: format!("dropped `{}`: it changes no Machine call", opt.key),
            });
            continue;
        }
        // Another runNixOSTest option goes into the description's `test`
        // module as it was written (paths re-based): the generated check
        // passes it to runNixOSTest unchanged.
        if TEST_OPTIONS.contains(&top) && !TEST_CLASHES.iter().any(|(k, _)| *k == top) {
            let text = rebase_paths(&opt.text, src_dir, &target.out_dir);
            let free = super::nix::free_vars_of(&format!("{{ {text} }}"));
            let (mut trial_lets, mut trial_args) = (lets.clone(), args.clone());
            if bind_from_scope(&free, &test.scope, &mut trial_lets, &mut trial_args).is_empty() {
                (lets, args) = (trial_lets, trial_args);
                let _ = writeln!(test_module, "    {}", reindent(&text, opt.indent, 4));
                notes.push(Note {
                    line: opt.line,
                    message: format!("`{}` is passed to runNixOSTest through the `test` module", opt.key),
                });
                continue;
            }
        }
        leftovers.push(Leftover {
            line: opt.line,
            construct: format!("option `{}`", opt.key),
            why: "a description has no such key (copied below as a comment)".into(),
            source: opt.text.clone(),
            python: false,
        });
        let _ = writeln!(
            option_comments,
            "  # TODO(nixvm-gen import): `{}` has no description key:",
            comment_text(&opt.key)
        );
        for line in opt.text.lines() {
            let _ = writeln!(option_comments, "  #   {}", comment_text(line));
        }
    }

    // Steps.
    let mut items = Vec::new();
    let original_script = test.script.as_ref().map(|s| s.text.clone());
    match &test.script {
        None => leftovers.push(Leftover {
            line: test.line,
            construct: "testScript".into(),
            why: "the testScript is not a string (or a function returning one)".into(),
            source: String::new(),
            python: false,
        }),
        Some(script) => {
            if script.is_function {
                notes.push(Note {
                    line: script.first_line,
                    message: "the testScript is a function of the nodes; its interpolations are reported where used".into(),
                });
            }
            // Which `${…}` can become Nix values of the description.
            let mut verdicts = BTreeMap::new();
            for (i, src) in script.interpolations.iter().enumerate() {
                if script.resolved.contains(&i) {
                    continue;
                }
                let free = super::nix::free_vars_of(src);
                let (mut trial_lets, mut trial_args) = (lets.clone(), BTreeSet::new());
                let missing = bind_from_scope(&free, &script.scope, &mut trial_lets, &mut trial_args);
                verdicts.insert(
                    i,
                    if missing.is_empty() {
                        Ok(())
                    } else {
                        Err(format!(
                            "uses {}, which a description cannot receive (its function gets pkgs, lib and nodes)",
                            missing.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
                        ))
                    },
                );
            }
            match python::convert(script, &node_names, &verdicts, target.python_steps) {
                Ok(conv) => {
                    items = conv.items;
                    notes.extend(conv.notes);
                    let mut used = BTreeSet::new();
                    used_interpolations(&items, &mut used);
                    for i in used {
                        let free = super::nix::free_vars_of(&script.interpolations[i]);
                        bind_from_scope(&free, &script.scope, &mut lets, &mut args);
                    }
                }
                Err(err) => items.push(Item::Todo(Leftover {
                    line: err.line,
                    construct: "testScript".into(),
                    why: err.message,
                    source: script.text.clone(),
                    python: false,
                })),
            }
        }
    }
    collect_leftovers(&items, &mut leftovers);
    let steps = count_steps(&items);

    let mut d = String::new();
    let _ = writeln!(
        d,
        "# Imported by `nixvm-gen import` from {}:{}.",
        comment_text(&path.display().to_string()),
        test.line
    );
    if !leftovers.is_empty() {
        let _ = writeln!(
            d,
            "# {} thing(s) could not be converted: see the TODO(nixvm-gen import) comments.",
            leftovers.len()
        );
    }
    let kept_python = has_python(&items);
    if kept_python {
        notes.push(Note {
            line: test.line,
            message: "statements kept as python steps: the description has `backend = \"python\"` (the stock driver)"
                .into(),
        });
    }
    if !args.is_empty() {
        let names: Vec<&str> = FUNCTION_ARGS.iter().copied().filter(|a| args.contains(*a)).collect();
        let _ = writeln!(d, "{{ {}, ... }}:", names.join(", "));
    }
    if !lets.is_empty() {
        d.push_str("let\n");
        // Innermost-first order reversed: outer bindings first, as written.
        for b in lets.iter().rev() {
            for line in reindent(&b.text, b.indent, 2).lines() {
                if line.is_empty() {
                    d.push('\n');
                } else {
                    let _ = writeln!(d, "  {line}");
                }
            }
        }
        d.push_str("in\n");
    }
    d.push_str("{\n");
    let _ = writeln!(d, "  name = {};", nix_string(&name));
    let _ = writeln!(
        d,
        "  modules = [{}];",
        modules.iter().map(|m| format!(" {}", nix_string(m))).collect::<String>() + " "
    );
    if kept_python {
        let _ = writeln!(d, "  backend = \"python\";");
    }
    if let Some(t) = timeout {
        let _ = writeln!(d, "  timeout = {t};");
    }
    d.push_str("  nodes = {\n");
    d.push_str(&nodes_text);
    d.push_str("  };\n");
    if !test_module.is_empty() {
        d.push_str("  test = {\n");
        d.push_str(&test_module);
        d.push_str("  };\n");
    }
    d.push_str(&option_comments);
    d.push_str("  steps = [\n");
    let interpolations: Vec<String> =
        test.script.as_ref().map(|s| s.interpolations.clone()).unwrap_or_default();
    let needed = needed_definitions(&items);
    write_items(&mut d, &items, "    ", &interpolations, &needed);
    d.push_str("  ];\n}\n");

    let file_name = format!("{name}.nix");
    let symbolic = |expr: &str| computed_value(expr, &items, &needed);
    let (generated_script, mut description_errors) = super::check_description(&file_name, &d, &symbolic);
    // A variable nothing in the description binds would fail evaluation:
    // say so now (leftovers already name most of them).
    let unbound = super::nix::free_vars_of(&d);
    if !unbound.is_empty() {
        description_errors.push(format!(
            "unbound variable(s) {}: Nix will refuse the description until they are defined",
            unbound.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    Imported {
        source: path.to_path_buf(),
        line: test.line,
        name,
        file_name,
        description: d,
        nodes: node_names,
        steps,
        leftovers,
        notes,
        original_script,
        generated_script,
        description_errors,
    }
}

fn collect_leftovers(items: &[Item], out: &mut Vec<Leftover>) {
    for item in items {
        match item {
            Item::Todo(l) => out.push(l.clone()),
            Item::Python { leftover, .. } => out.push(leftover.clone()),
            Item::Subtest { items, .. } => collect_leftovers(items, out),
            Item::Step { .. } | Item::Comment(_) | Item::Def { .. } => {}
        }
    }
}

fn count_steps(items: &[Item]) -> usize {
    items
        .iter()
        .map(|i| match i {
            Item::Step { .. } | Item::Python { .. } => 1,
            Item::Subtest { items, .. } => 1 + count_steps(items),
            Item::Todo(_) | Item::Comment(_) | Item::Def { .. } => 0,
        })
        .sum()
}

fn value_text(v: &NixValue, indent: &str, interpolations: &[String]) -> String {
    match v {
        NixValue::Str(s) if s.contains(PLACEHOLDER_PREFIX) => nix_string_with(s, interpolations),
        NixValue::Str(s) if s.contains('\n') => nix_indented_string(s, &format!("{indent}  "), indent),
        NixValue::Str(s) => nix_string(s),
        NixValue::Int(i) => i.to_string(),
        NixValue::Float(f) => {
            let s = format!("{f}");
            if s.contains('.') || s.contains('e') { s } else { format!("{s}.0") }
        }
        NixValue::Bool(b) => b.to_string(),
        NixValue::List(items) => {
            let items: Vec<String> = items.iter().map(|v| value_text(v, indent, interpolations)).collect();
            format!("[ {} ]", items.join(" "))
        }
    }
}

/// Whether any statement is kept as a `python` step.
fn has_python(items: &[Item]) -> bool {
    items.iter().any(|i| match i {
        Item::Python { .. } => true,
        Item::Subtest { items, .. } => has_python(items),
        _ => false,
    })
}

/// The names the python steps read, with those the definitions they need
/// read in turn: a [`Item::Def`] binding one of them is written.
fn needed_definitions(items: &[Item]) -> BTreeSet<String> {
    fn walk<'a>(items: &'a [Item], loads: &mut BTreeSet<String>, defs: &mut Vec<&'a Item>) {
        for item in items {
            match item {
                Item::Python { loads: l, .. } => loads.extend(l.iter().cloned()),
                Item::Def { .. } => defs.push(item),
                Item::Subtest { items, .. } => walk(items, loads, defs),
                _ => {}
            }
        }
    }
    let (mut needed, mut defs) = (BTreeSet::new(), Vec::new());
    walk(items, &mut needed, &mut defs);
    loop {
        let before = needed.len();
        for def in &defs {
            if let Item::Def { names, loads, .. } = def
                && !names.is_disjoint(&needed)
            {
                needed.extend(loads.iter().cloned());
            }
        }
        if needed.len() == before {
            return needed;
        }
    }
}

fn write_python_step(d: &mut String, code: &str, indent: &str) {
    let text = nix_indented_string(&format!("{code}\n"), &format!("{indent}    "), &format!("{indent}  "));
    let _ = writeln!(d, "{indent}{{\n{indent}  python = {text};\n{indent}}}");
}

fn write_items(
    d: &mut String,
    items: &[Item],
    indent: &str,
    interpolations: &[String],
    needed: &BTreeSet<String>,
) {
    for item in items {
        match item {
            Item::Step { node, key, value, extra, .. } => {
                let mut parts = vec![format!("{key} = {};", value_text(value, indent, interpolations))];
                if let Some(node) = node {
                    parts.push(format!("node = {};", nix_string(node)));
                }
                for (k, v) in extra {
                    parts.push(format!("{k} = {};", value_text(v, indent, interpolations)));
                }
                let _ = writeln!(d, "{indent}{{ {} }}", parts.join(" "));
            }
            Item::Subtest { title, items, .. } => {
                let _ = writeln!(d, "{indent}{{");
                let _ = writeln!(d, "{indent}  subtest = {};", nix_string(title));
                let _ = writeln!(d, "{indent}  steps = [");
                write_items(d, items, &format!("{indent}    "), interpolations, needed);
                let _ = writeln!(d, "{indent}  ];");
                let _ = writeln!(d, "{indent}}}");
            }
            Item::Comment(c) if c.is_empty() => {
                let _ = writeln!(d, "{indent}#");
            }
            Item::Comment(c) => {
                let _ = writeln!(d, "{indent}# {}", comment_text(c));
            }
            Item::Python { code, leftover: l, .. } => {
                let _ = writeln!(
                    d,
                    "{indent}# TODO(nixvm-gen import): line {}, {}: {} (kept as Python)",
                    l.line,
                    comment_text(&l.construct),
                    comment_text(&l.why)
                );
                write_python_step(d, code, indent);
            }
            Item::Def { names, code, .. } if !names.is_disjoint(needed) => {
                let _ = writeln!(d, "{indent}# nixvm-gen import: a definition the python steps below use");
                write_python_step(d, code, indent);
            }
            Item::Def { .. } => {}
            Item::Todo(l) => {
                let _ = writeln!(
                    d,
                    "{indent}# TODO(nixvm-gen import): line {}, {}: {}",
                    l.line,
                    comment_text(&l.construct),
                    comment_text(&l.why)
                );
                for line in l.source.lines() {
                    let _ = writeln!(d, "{indent}#   {}", comment_text(line).trim_end());
                }
            }
        }
    }
}

/// The node's module as description source: own-module imports removed
/// (they become `modules`), relative paths re-based on the output
/// directory, free `pkgs`/`lib` taken as module arguments, re-indented.
fn copy_node(
    node: &NodeSource,
    src_dir: &Path,
    out_dir: &Path,
    rewrite_modules: bool,
) -> (String, BTreeSet<String>, Vec<Leftover>, Vec<Note>) {
    let mut leftovers = Vec::new();
    let mut notes = Vec::new();
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    if rewrite_modules {
        for (range, name) in super::nix::own_module_imports(&node.text) {
            notes.push(Note {
                line: node.line,
                message: format!(
                    "node `{}`: the import of the flake's module `{name}` became `modules`",
                    node.name
                ),
            });
            edits.push((range, String::new()));
        }
    }
    edits.extend(path_edits(&node.text, src_dir, out_dir));
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut text = node.text.clone();
    for (range, replacement) in edits {
        text.replace_range(range, &replacement);
    }
    // Free variables after the edits (`self`, `inputs` may be gone).
    let free = super::nix::free_vars_of(&text);
    let args: Vec<&str> = MODULE_ARGS.iter().copied().filter(|a| free.contains(*a)).collect();
    let others: BTreeSet<String> =
        free.iter().filter(|v| !MODULE_ARGS.contains(&v.as_str())).cloned().collect();
    let text = reindent(&text, node.indent, 4);
    let text = if args.is_empty() {
        text
    } else if node.is_function {
        match add_formals(&text, &args) {
            Some(t) => {
                notes.push(Note {
                    line: node.line,
                    message: format!(
                        "node `{}`: took {} as module arguments (the node's own)",
                        node.name,
                        args.join(", ")
                    ),
                });
                t
            }
            None => {
                leftovers.push(Leftover {
                    line: node.line,
                    construct: format!("node `{}`", node.name),
                    why: format!(
                        "it uses {} from the test's function; add them to the module's arguments",
                        args.join(", ")
                    ),
                    source: String::new(),
                    python: false,
                });
                text
            }
        }
    } else {
        notes.push(Note {
            line: node.line,
            message: format!(
                "node `{}`: became a function of {{ {}, ... }} (the node's own)",
                node.name,
                args.join(", ")
            ),
        });
        format!("{{ {}, ... }}:\n    {text}", args.join(", "))
    };
    (text, others, leftovers, notes)
}

/// The edits that re-base the relative paths of `text` (written in
/// `src_dir`) on `out_dir`.
fn path_edits(text: &str, src_dir: &Path, out_dir: &Path) -> Vec<(std::ops::Range<usize>, String)> {
    let mut edits = Vec::new();
    for (range, path) in super::nix::relative_paths(text) {
        let abs = normalize(&src_dir.join(&path));
        let rel = relative_to(&abs, &normalize(out_dir));
        let mut shown = rel.display().to_string();
        if !shown.starts_with("../") {
            shown = format!("./{shown}");
        }
        if shown != path {
            edits.push((range, shown));
        }
    }
    edits
}

/// The binding `text` (`key = value;`) with its relative paths re-based
/// from `src_dir` on `out_dir`.
fn rebase_paths(text: &str, src_dir: &Path, out_dir: &Path) -> String {
    // Parsed inside `{ … }`, where a binding is valid Nix.
    let mut wrapped = format!("{{ {text} }}");
    let mut edits = path_edits(&wrapped, src_dir, out_dir);
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    for (range, replacement) in edits {
        wrapped.replace_range(range, &replacement);
    }
    wrapped[2..wrapped.len() - 2].to_string()
}

/// Adds to `lets` the bindings of `scope` that `vars` need, transitively,
/// and to `args` the description-function arguments they use
/// ([`FUNCTION_ARGS`]); returns the variables nothing provides.
fn bind_from_scope(
    vars: &BTreeSet<String>,
    scope: &[Binding],
    lets: &mut Vec<Binding>,
    args: &mut BTreeSet<String>,
) -> BTreeSet<String> {
    let mut missing = BTreeSet::new();
    let mut todo: Vec<String> = vars.iter().cloned().collect();
    let mut guard = 0;
    while let Some(var) = todo.pop() {
        guard += 1;
        if guard > 10_000 {
            break;
        }
        if FUNCTION_ARGS.contains(&var.as_str()) {
            args.insert(var);
            continue;
        }
        if lets.iter().any(|b| b.name == var) {
            continue;
        }
        match scope.iter().find(|b| b.name == var) {
            Some(b) if !b.free.contains(&var) => {
                lets.push(b.clone());
                todo.extend(b.free.iter().cloned());
            }
            _ => {
                missing.insert(var);
            }
        }
    }
    missing
}

/// The string of the step value a computed expression of the generated
/// check names (`(builtins.elemAt (builtins.elemAt description.steps 3).steps
/// 1).expect.contains`), placeholders and all.
fn computed_value(expr: &str, items: &[Item], needed: &BTreeSet<String>) -> Option<String> {
    // The items written as elements of `steps`, in order.
    fn steps_of<'a>(items: &'a [Item], needed: &'a BTreeSet<String>) -> impl Iterator<Item = &'a Item> {
        items.iter().filter(move |i| match i {
            Item::Step { .. } | Item::Subtest { .. } | Item::Python { .. } => true,
            Item::Def { names, .. } => !names.is_disjoint(needed),
            Item::Todo(_) | Item::Comment(_) => false,
        })
    }
    fn item_at<'a, 'e>(
        expr: &'e str,
        top: &'a [Item],
        needed: &'a BTreeSet<String>,
        depth: usize,
    ) -> Option<(&'a Item, &'e str)> {
        let s = expr.strip_prefix("(builtins.elemAt ")?;
        let (list, rest): (&'a [Item], &'e str) = match s.strip_prefix("description.steps ") {
            Some(rest) => (top, rest),
            None if depth < 64 => {
                let (parent, rest) = item_at(s, top, needed, depth + 1)?;
                let Item::Subtest { items, .. } = parent else { return None };
                (items.as_slice(), rest.strip_prefix(".steps ")?)
            }
            None => return None,
        };
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        let index: usize = rest[..digits].parse().ok()?;
        let rest = rest[digits..].strip_prefix(')')?;
        Some((steps_of(list, needed).nth(index)?, rest))
    }
    let (item, field) = item_at(expr, items, needed, 0)?;
    let Item::Step { key, value, extra, .. } = item else { return None };
    let field = field.strip_prefix('.')?;
    let value = if field == *key { value } else { &extra.iter().find(|(k, _)| k == field)?.1 };
    match value {
        NixValue::Str(s) => Some(s.clone()),
        _ => None,
    }
}

/// The interpolations (by index) that converted steps carry.
fn used_interpolations(items: &[Item], out: &mut BTreeSet<usize>) {
    fn scan(v: &NixValue, out: &mut BTreeSet<usize>) {
        match v {
            NixValue::Str(s) => {
                out.extend(split_placeholders(s).into_iter().filter_map(|p| p.1).map(|(i, ())| i))
            }
            NixValue::List(items) => items.iter().for_each(|v| scan(v, out)),
            _ => {}
        }
    }
    for item in items {
        match item {
            Item::Step { value, extra, .. } => {
                scan(value, out);
                extra.iter().for_each(|(_, v)| scan(v, out));
            }
            Item::Subtest { items, .. } => used_interpolations(items, out),
            Item::Todo(_) | Item::Comment(_) | Item::Python { .. } | Item::Def { .. } => {}
        }
    }
}

/// `s` cut into literal text and placeholders: `(text, Some((index, ())))`.
#[allow(clippy::type_complexity)]
fn split_placeholders(s: &str) -> Vec<(String, Option<(usize, ())>)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(at) = rest.find(PLACEHOLDER_PREFIX) {
        let after = &rest[at + PLACEHOLDER_PREFIX.len()..];
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        match (after[digits.len()..].starts_with("__"), digits.parse::<usize>()) {
            (true, Ok(i)) if !digits.is_empty() => {
                out.push((rest[..at].to_string(), Some((i, ()))));
                rest = &after[digits.len() + 2..];
            }
            _ => {
                out.push((rest[..at + PLACEHOLDER_PREFIX.len()].to_string(), None));
                rest = after;
            }
        }
    }
    out.push((rest.to_string(), None));
    out
}

/// A Nix string for `s`, its placeholders written back as `${…}`.
fn nix_string_with(s: &str, interpolations: &[String]) -> String {
    let mut out = String::from("\"");
    for (text, ph) in split_placeholders(s) {
        let lit = nix_string(&text);
        out.push_str(&lit[1..lit.len() - 1]);
        if let Some((i, ())) = ph {
            let src = interpolations.get(i).map(String::as_str).unwrap_or("null");
            let _ = write!(out, "${{{src}}}");
        }
    }
    out.push('"');
    out
}

/// Adds formals to a module function `{ a, ... }: …` (not `x: …`).
fn add_formals(text: &str, args: &[&str]) -> Option<String> {
    let trimmed = text.trim_start();
    if !trimmed.starts_with('{') {
        return None;
    }
    let offset = text.len() - trimmed.len() + 1;
    let mut out = text.to_string();
    let inserted: String = args.iter().map(|a| format!(" {a},")).collect();
    out.insert_str(offset, &inserted);
    // `{ }:` with an empty pattern would now be `{ a, }:`, which Nix accepts.
    Some(out)
}

/// Shifts every line after the first from `from` to `to` columns of
/// indentation; unchanged when some line is indented less than `from`
/// (shifting it would change an indented string's stripping).
fn reindent(text: &str, from: usize, to: usize) -> String {
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or_default();
    let rest: Vec<&str> = lines.collect();
    let lacks =
        rest.iter().any(|l| !l.trim().is_empty() && l.chars().take_while(|c| *c == ' ').count() < from);
    if lacks {
        return text.to_string();
    }
    let mut out = first.to_string();
    for line in rest {
        out.push('\n');
        if line.trim().is_empty() {
            out.push_str(line.trim_start_matches(' '));
        } else {
            out.push_str(&" ".repeat(to));
            out.push_str(&line[from..]);
        }
    }
    out
}
