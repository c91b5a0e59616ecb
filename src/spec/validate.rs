//! Checks that need more than one description or the flake: duplicate test
//! names and module names. Fills in implicit step nodes.
//!
//! Everything that one file can decide (types, keys, node names of steps,
//! empty step lists, values the stock driver cannot take, see
//! [`crate::spec::names`]) is checked while parsing, where the exact spans
//! are known; see [`crate::spec::parse`].

use std::collections::HashMap;

use crate::diagnostic::{Diagnostic, Span};
use crate::spec::parse::code_list;
use crate::spec::{Action, Step, TestSpec};

/// Validates all descriptions against each other and against the names of
/// the flake's `nixosModules`. Resolves `node` of steps in one-node tests.
pub fn validate(tests: &mut [TestSpec], module_names: &[String]) -> Vec<Diagnostic> {
    let heads: Vec<TestHead> = tests.iter().map(TestHead::of).collect();
    let diags = validate_heads(&heads, module_names);
    for test in tests.iter_mut() {
        fill_implicit_nodes(test);
    }
    diags
}

/// What the checks across descriptions read of one test: the incremental
/// path (`crate::incremental`) keeps this for a description it does not
/// parse again, and runs the same checks on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestHead {
    pub name: String,
    pub name_span: Option<Span>,
    pub file: std::path::PathBuf,
    /// Some place in the file, for a test named after its file.
    pub any_span: Option<Span>,
    pub modules: Option<Vec<(String, Span)>>,
    pub systems: Option<Vec<String>>,
}

impl TestHead {
    pub fn of(test: &TestSpec) -> TestHead {
        TestHead {
            name: test.name.clone(),
            name_span: test.name_span,
            file: test.file.clone(),
            any_span: any_span(test),
            modules: test.modules.clone(),
            systems: test.systems.clone(),
        }
    }
}

/// The checks of [`validate`], on the tests' heads (in file order).
pub fn validate_heads(tests: &[TestHead], module_names: &[String]) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let mut seen: HashMap<&str, &TestHead> = HashMap::new();
    for test in tests {
        match seen.get(test.name.as_str()) {
            None => {
                seen.insert(&test.name, test);
            }
            Some(first) => diags.push(duplicate_name(first, test)),
        }
    }
    let modules: Vec<&str> = module_names.iter().map(String::as_str).collect();
    for test in tests {
        for (name, span) in test.modules.iter().flatten() {
            if !modules.contains(&name.as_str()) {
                diags.push(unknown_module(name, *span, &modules));
            }
        }
    }
    diags
}

/// Gives the steps of a one-node test that name no node that node.
pub fn fill_implicit_nodes(test: &mut TestSpec) {
    if test.nodes.len() == 1
        && let Some(only) = test.nodes.keys().next().cloned()
    {
        fill_node(&mut test.steps, &only);
    }
}

fn duplicate_name(first: &TestHead, again: &TestHead) -> Diagnostic {
    let name = &again.name;
    let message = format!(
        "test name `{name}` is used by both `{}` and `{}`",
        first.file.display(),
        again.file.display()
    );
    let mut d = Diagnostic::error("duplicate_test_name", again.name_span.or(again.any_span), message)
        .with_label("second test with this name")
        .with_hint(format!(
            "test names become `checks.<system>.<name>`; set a different `name = \"…\";` in `{}`",
            again.file.display()
        ));
    if let Some(span) = first.name_span.or(first.any_span) {
        d = d.with_secondary(span, "first used here");
    }
    d
}

/// Some location in the test's file, for tests named after their file.
fn any_span(test: &TestSpec) -> Option<Span> {
    let span = test.nodes.values().next().copied().or_else(|| test.steps.first().and_then(|s| s.span))?;
    Some(Span { start: 0, end: 0, ..span })
}

fn unknown_module(name: &str, span: Span, modules: &[&str]) -> Diagnostic {
    let mut d = Diagnostic::error("unknown_module", Some(span), format!("the flake has no module `{name}`"));
    d = match did_you_mean(name, modules.iter().copied()) {
        Some(close) => d.with_label(format!("did you mean `{close}`?")),
        None => d.with_label("not in `nixosModules`"),
    };
    if modules.is_empty() {
        d.with_hint("the flake defines no `nixosModules`; remove `modules` or add the module to the flake")
    } else {
        d.with_hint(format!("the flake's `nixosModules` are {}", code_list(modules)))
    }
}

fn fill_node(steps: &mut [Step], only: &str) {
    for step in steps {
        if let Action::Subtest { steps, .. } = &mut step.action {
            fill_node(steps, only);
        } else if step.node.is_none() && step.action.needs_node() {
            step.node = Some(only.to_string());
        }
    }
}

/// The candidate closest to `word`, if it is close enough to be a typo:
/// equal up to case, `_` and `-` (`wait_for_unit` → `waitForUnit`), or within
/// a third of its length in edit distance.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let norm = |s: &str| -> String {
        s.chars().filter(|c| !matches!(c, '_' | '-')).flat_map(char::to_lowercase).collect()
    };
    let w = norm(word);
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let n = norm(c);
        if n == w {
            return Some(c);
        }
        let d = strsim::levenshtein(&w, &n);
        let limit = (n.chars().count().max(w.chars().count()) / 3).max(1);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::diagnostic::FileId;
    use crate::spec::Backend;

    fn spec(name: &str, file: usize, nodes: &[&str], steps: Vec<Step>) -> TestSpec {
        let span = Span { file: FileId(file), start: 1, end: 3 };
        TestSpec {
            name: name.into(),
            name_span: Some(span),
            file: PathBuf::from(format!("tests/vm/{name}{file}.nix")),
            description: None,
            nodes: nodes.iter().map(|n| (n.to_string(), span)).collect::<BTreeMap<_, _>>(),
            modules: Some(vec![("defualt".into(), span)]),
            systems: None,
            backend: Backend::Rust,
            timeout: None,
            steps,
            function: false,
            computed: Vec::new(),
            test_module: false,
        }
    }

    fn step(action: Action) -> Step {
        Step { node: None, timeout: None, action, span: None }
    }

    #[test]
    fn duplicates_and_modules() {
        let mut tests = vec![spec("a", 0, &["m"], vec![]), spec("a", 1, &["m"], vec![])];
        let diags = validate(&mut tests, &["default".into()]);
        let codes: Vec<_> = diags.iter().map(|d| d.code).collect();
        assert_eq!(codes, ["duplicate_test_name", "unknown_module", "unknown_module"]);
        assert_eq!(diags[0].secondary[0].0.file, FileId(0));
        assert_eq!(diags[1].label.as_deref(), Some("did you mean `default`?"));
    }

    #[test]
    fn fills_the_only_node_recursively() {
        let inner = step(Action::Fail { command: "x".into() });
        let steps = vec![
            step(Action::Start),
            step(Action::Sleep { seconds: 1.0.into() }),
            step(Action::Subtest { title: "t".into(), steps: vec![inner] }),
        ];
        let mut tests = vec![spec("a", 0, &["m"], steps)];
        validate(&mut tests, &["defualt".into()]);
        let s = &tests[0].steps;
        assert_eq!(s[0].node.as_deref(), Some("m"));
        assert_eq!(s[1].node, None);
        let Action::Subtest { steps, .. } = &s[2].action else { panic!() };
        assert_eq!(steps[0].node.as_deref(), Some("m"));
    }

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("wait_for_unit", ["waitForUnit", "succeed"]), Some("waitForUnit"));
        assert_eq!(did_you_mean("succed", ["waitForUnit", "succeed"]), Some("succeed"));
        assert_eq!(did_you_mean("zzz", ["waitForUnit", "succeed"]), None);
    }
}
