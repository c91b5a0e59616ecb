//! Tests of the spec area (see main.rs): broken descriptions against golden
//! diagnostics, good descriptions against expected models, and string
//! literals against the real Nix evaluator.

use std::path::{Path, PathBuf};

use nixvm_gen::diagnostic::{self, Diagnostic, Sources};
use nixvm_gen::spec::{Action, Backend, Expect, TestSpec, parse, validate};
use proptest::prelude::*;

use crate::util;

/// Module names the bad fixtures are validated against.
const FLAKE_MODULES: &[&str] = &["default", "health"];

/// Codes reported as warnings (the description is still generated).
const WARNING_CODES: &[&str] = &["empty_systems"];

/// Parses and validates description files together, as `project::load` does.
fn load(files: &[PathBuf]) -> (Vec<TestSpec>, Vec<Diagnostic>, Sources) {
    let mut sources = Sources::default();
    let mut tests = Vec::new();
    let mut diags = Vec::new();
    for path in files {
        let rel = path.strip_prefix(util::root()).unwrap_or(path).to_path_buf();
        let text = std::fs::read_to_string(path).unwrap();
        let file = sources.add(rel.clone(), text);
        let (spec, d) = parse::parse(file, &rel, sources.text(file));
        diags.extend(d);
        tests.extend(spec);
    }
    let modules: Vec<String> = FLAKE_MODULES.iter().map(|m| m.to_string()).collect();
    diags.extend(validate::validate(&mut tests, &modules));
    (tests, diags, sources)
}

fn nix_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "nix"))
        .collect();
    files.sort();
    files
}

/// Every `bad/<case>.nix` (or `bad/<case>/` with several files) renders to
/// `bad/<case>.diag`; single-mistake cases yield exactly one diagnostic whose
/// code is the case name.
#[test]
fn bad_descriptions_match_golden_diagnostics() {
    let dir = util::fixture("specs/bad");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "nix"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "expected at least 20 bad cases, found {}", cases.len());
    for case in cases {
        let name = case.file_stem().unwrap().to_string_lossy().into_owned();
        let files = if case.is_dir() { nix_files(&case) } else { vec![case.clone()] };
        let (_, diags, sources) = load(&files);
        let rendered = diagnostic::render(&diags, &sources, false);
        util::golden(&dir.join(format!("{name}.diag")), &rendered);
        // Warning cases are named after a warning code; everything else is an error.
        let warning = WARNING_CODES.iter().any(|code| name.starts_with(code));
        assert!(diags.iter().all(|d| d.is_error() != warning), "{name}: wrong severity:\n{rendered}");
        if name.starts_with("many_") {
            assert!(diags.len() >= 5, "{name}: expected every mistake reported:\n{rendered}");
        } else {
            assert_eq!(diags.len(), 1, "{name}: expected exactly one diagnostic:\n{rendered}");
            assert!(diags[0].span.is_some(), "{name}: diagnostic without location");
            assert!(!diags[0].hints.is_empty(), "{name}: diagnostic without a hint");
            // Case names are the diagnostic codes (with an optional suffix).
            assert!(name.starts_with(diags[0].code), "{name}: got code {}", diags[0].code);
        }
    }
}

fn load_good(name: &str) -> TestSpec {
    let (mut tests, diags, sources) = load(&[util::fixture(&format!("specs/good/{name}.nix"))]);
    assert!(diags.is_empty(), "{}", diagnostic::render(&diags, &sources, false));
    tests.pop().unwrap()
}

#[test]
fn good_health() {
    let t = load_good("health");
    assert_eq!(t.name, "health");
    assert_eq!(t.name_span, None);
    assert_eq!(t.file, Path::new("tests/fixtures/specs/good/health.nix"));
    assert_eq!(t.description.as_deref(), Some("The health page says Healthy"));
    assert_eq!(t.nodes.keys().collect::<Vec<_>>(), ["machine"]);
    assert_eq!(
        (t.modules.clone(), t.systems.clone(), t.backend, t.timeout),
        (None, None, Backend::Rust, None)
    );
    assert_eq!(t.steps.len(), 5);
    assert!(t.steps[..4].iter().all(|s| s.node.as_deref() == Some("machine")));
    assert_eq!(t.steps[1].action, Action::WaitForOpenPort { port: 3000.into(), addr: None });
    assert_eq!(t.steps[1].timeout, Some(60.0.into()));
    assert_eq!(
        t.steps[2].action,
        Action::Succeed {
            command: "curl --fail localhost:3000".into(),
            expect: Expect { contains: vec!["Healthy".into()], ..Expect::default() },
            capture: None,
        }
    );
    assert_eq!(
        t.steps[3].action,
        Action::Http {
            url: "http://localhost:3000".into(),
            status: 200.into(),
            contains: Some("Healthy".into())
        }
    );
    let Action::Subtest { title, steps } = &t.steps[4].action else { panic!("not a subtest") };
    assert_eq!(title, "restarts");
    assert_eq!(t.steps[4].node, None);
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[1].node.as_deref(), Some("machine"));
    assert_eq!(steps[1].timeout, Some(30.5.into()));
}

#[test]
fn good_cluster() {
    let t = load_good("cluster");
    assert_eq!(t.name, "cluster-2");
    assert!(t.name_span.is_some());
    assert_eq!(t.nodes.keys().collect::<Vec<_>>(), ["client", "extra_node", "server"]);
    let modules: Vec<&str> = t.modules.as_ref().unwrap().iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(modules, ["default", "health"]);
    assert_eq!(t.systems, Some(vec!["x86_64-linux".to_string()]));
    assert_eq!(t.backend, Backend::Python);
    assert_eq!(t.timeout, Some(900));
    let summary: Vec<(&str, Option<&str>)> =
        t.steps.iter().map(|s| (s.action.key(), s.node.as_deref())).collect();
    assert_eq!(
        summary,
        [
            ("start", Some("server")),
            ("waitForUnit", Some("server")),
            ("waitForClosedPort", Some("client")),
            ("block", Some("client")),
            ("fail", Some("client")),
            ("unblock", Some("client")),
            ("succeed", Some("server")),
            ("waitForConsoleText", Some("server")),
            ("sleep", None),
            ("copyFromVm", Some("server")),
            ("screenshot", Some("client")),
            ("crash", Some("server")),
            ("reboot", Some("client")),
            ("shutdown", Some("client")),
        ]
    );
    assert_eq!(
        t.steps[1].action,
        Action::WaitForUnit { unit: "sshd.service".into(), user: Some("alice".into()) }
    );
    assert_eq!(
        t.steps[6].action,
        Action::Succeed {
            command: "exit 3".into(),
            expect: Expect { exit_code: Some(3.into()), matches: Some("^$".into()), ..Expect::default() },
            capture: None,
        }
    );
    assert_eq!(
        t.steps[9].action,
        Action::CopyFromVm { source: "/var/log/syslog".into(), target_dir: Some("logs".into()) }
    );
    assert_eq!(t.steps[13].timeout, Some(5.0.into()));
}

/// The strings of `good/strings.nix` are exactly what Nix itself evaluates.
#[test]
fn good_strings_match_nix() {
    let t = load_good("strings");
    let commands: Vec<String> = t
        .steps
        .iter()
        .map(|s| match &s.action {
            Action::Succeed { command, .. } | Action::WaitUntilFails { command } => command.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        commands,
        [
            "printf '%s\\n' \"a b\" ${HOME} $HOME",
            "set -eu\nfor f in /etc/*; do\n  echo \"${f}\" ''quoted''\ndone\n",
            "no-leading-newline",
        ]
    );
    let Action::Succeed { expect, .. } = &t.steps[1].action else { panic!() };
    assert_eq!(expect.equals.as_deref(), Some("tab\there\r\nunicode ✓"));
    if !util::require("nix-instantiate", "compares string decoding with real Nix") {
        return;
    }
    let path = util::fixture("specs/good/strings.nix");
    let expr = format!("map (s: s.succeed or s.waitUntilFails) (import {}).steps", path.display());
    assert_eq!(nix_eval(&expr), serde_json::json!(commands));
}

// ----- string literals: property tests and the real evaluator -----

/// Writes `s` as a `"…"` literal.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\r' => out.push_str("\\r"),
            '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes `s` as a `''…''` literal. Starting with a non-space (or an
/// escape) keeps the common indentation at zero, so nothing is stripped; a
/// final space is escaped so the last line is not dropped.
fn indented(s: &str) -> String {
    let mut out = String::from("''");
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let first_or_last = i == 0 || i + 1 == chars.len();
        match c {
            '\'' => out.push_str("''\\'"),
            '$' if chars.get(i + 1) == Some(&'{') => out.push_str("''$"),
            '\r' => out.push_str("''\\r"),
            ' ' if first_or_last => out.push_str("''\\ "),
            '\n' if i == 0 => out.push_str("''\\n"),
            c => out.push(c),
        }
    }
    out.push_str("''");
    out
}

/// The decoded `literal`, written as `expect.equals` of the only step of a
/// description (a field that takes any string, even an empty one).
fn roundtrip(literal: &str) -> Result<String, String> {
    let text =
        format!("{{ nodes.m = {{ }}; steps = [ {{ succeed = \"true\"; expect.equals = {literal}; }} ]; }}");
    let (spec, diags) = parse::parse(Default::default(), Path::new("t.nix"), &text);
    if !diags.is_empty() {
        return Err(format!("{diags:?}\n{text}"));
    }
    match spec.map(|s| s.steps.into_iter().next().map(|s| s.action)) {
        Some(Some(Action::Succeed { expect: Expect { equals: Some(equals), .. }, .. })) => Ok(equals),
        other => Err(format!("unexpected {other:?}")),
    }
}

/// Issue 11: Nix ends a string at a NUL byte, the Python backend would not;
/// a raw NUL in either string form is refused, never given two meanings.
#[test]
fn nul_is_refused_in_every_string_form() {
    for literal in ["\"echo a\0b\"", "''echo a\0b''", "\"\0\""] {
        let err = roundtrip(literal).expect_err(literal);
        assert!(err.contains("nul_in_string"), "{literal:?}: {err}");
    }
}

/// Strings heavy in Nix and shell syntax.
fn tricky_string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\"".to_string()),
        Just("\\".to_string()),
        Just("${".to_string()),
        Just("$".to_string()),
        Just("''".to_string()),
        Just("'".to_string()),
        Just("\n".to_string()),
        Just("\r\n".to_string()),
        Just(" ".to_string()),
        Just("  ".to_string()),
        Just("\t".to_string()),
        Just("}".to_string()),
        Just("✓ ünï 漢".to_string()),
        Just("; | & > < ` * ? ~ #".to_string()),
        "[a-z0-9]{1,4}",
        any::<char>().prop_map(|c| c.to_string()),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn quoted_literals_roundtrip(s in tricky_string()) {
        // A NUL is refused (Nix would cut the string there): see
        // `nul_is_refused_in_every_string_form`.
        prop_assume!(!s.contains('\0'));
        prop_assert_eq!(roundtrip(&quoted(&s)), Ok(s));
    }

    #[test]
    fn indented_literals_roundtrip(s in tricky_string()) {
        // NUL cannot appear in Nix strings (C strings inside Nix).
        prop_assume!(!s.contains('\0'));
        prop_assert_eq!(roundtrip(&indented(&s)), Ok(s));
    }

    #[test]
    fn garbage_never_panics(text in "(?s).{0,200}") {
        let _ = parse::parse(Default::default(), Path::new("g.nix"), &text);
    }

    #[test]
    fn truncated_and_mutated_descriptions_never_panic(
        cut in 0usize..2000,
        insert_at in 0usize..2000,
        insert in "[{}\\[\\]\";=.$'\\\\a-z ]{0,4}",
    ) {
        let good = std::fs::read_to_string(util::fixture("specs/good/cluster.nix")).unwrap();
        let mut text: String = good.chars().take(cut).collect();
        let at = text.char_indices().nth(insert_at).map_or(text.len(), |(i, _)| i);
        text.insert_str(at, &insert);
        let mut sources = Sources::default();
        let file = sources.add("m.nix", text.clone());
        let (spec, diags) = parse::parse(file, Path::new("m.nix"), &text);
        let mut tests: Vec<TestSpec> = spec.into_iter().collect();
        let _ = validate::validate(&mut tests, &[]);
        // Rendering needs every span inside the file.
        for d in &diags {
            if let Some(s) = d.span {
                prop_assert!(s.start <= s.end && s.end as usize <= text.len(), "{d:?}");
            }
        }
        let _ = diagnostic::render(&diags, &sources, false);
    }
}

/// A deterministic sample of tricky strings.
fn sample(n: usize) -> Vec<String> {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let strategy = tricky_string();
    (0..n).map(|_| strategy.new_tree(&mut runner).unwrap().current()).filter(|s| !s.contains('\0')).collect()
}

fn nix_eval(expr: &str) -> serde_json::Value {
    let dir = util::tempdir();
    let file = dir.path().join("e.nix");
    std::fs::write(&file, expr).unwrap();
    let out = util::run(
        std::process::Command::new("nix-instantiate").args(["--eval", "--strict", "--json"]).arg(&file),
    );
    assert!(out.status.success(), "nix-instantiate failed on:\n{expr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Our decoding of both literal forms agrees with `nix-instantiate` on a
/// sample of tricky strings.
#[test]
fn literals_agree_with_nix() {
    if !util::require("nix-instantiate", "compares string decoding with real Nix") {
        return;
    }
    let strings = sample(150);
    for (form, write) in [("quoted", quoted as fn(&str) -> String), ("indented", indented)] {
        let literals: Vec<String> = strings.iter().map(|s| write(s)).collect();
        let ours: Vec<String> = literals.iter().map(|l| roundtrip(l).unwrap()).collect();
        let nix = nix_eval(&format!("[\n{}\n]", literals.join("\n")));
        assert_eq!(nix, serde_json::json!(ours), "{form} literals disagree with Nix");
        assert_eq!(ours, strings);
    }
}

/// Raw indented-string bodies (indentation, escapes, `$`, quotes, CR) decode
/// as Nix decodes them.
#[test]
fn indented_bodies_agree_with_nix() {
    if !util::require("nix-instantiate", "compares indentation stripping with real Nix") {
        return;
    }
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let piece = prop_oneof![
        Just("a"),
        Just("x y"),
        Just(" "),
        Just("   "),
        Just("\n"),
        Just("\n  "),
        Just("\n    "),
        Just("\t"),
        Just("''$"),
        Just("'''"),
        Just("''\\n"),
        Just("''\\ "),
        Just("''\\\\"),
        Just("$x"),
        Just("$$"),
        Just("'x"),
        Just("\\"),
        Just("{}"),
        Just("é"),
        Just("\r\n"),
    ];
    let strategy = prop::collection::vec(piece, 0..14).prop_map(|v| v.concat());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[11; 32]);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let bodies: Vec<String> = (0..200).map(|_| strategy.new_tree(&mut runner).unwrap().current()).collect();
    let literals: Vec<String> = bodies.iter().map(|b| format!("''{b}''")).collect();
    let ours: Vec<String> = literals.iter().map(|l| roundtrip(l).unwrap()).collect();
    let nix = nix_eval(&format!("[\n{}\n]", literals.join("\n")));
    assert_eq!(nix, serde_json::json!(ours));
}

#[test]
fn good_let_bound_nodes() {
    let t = load_good("let_bound");
    assert_eq!(t.nodes.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(t.steps[0].node.as_deref(), Some("a"));
}

/// Raw `"…"` bodies (escapes, raw CR and CR LF, `$`) decode as Nix decodes
/// them.
#[test]
fn quoted_bodies_agree_with_nix() {
    if !util::require("nix-instantiate", "compares string escapes with real Nix") {
        return;
    }
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let piece = prop_oneof![
        Just("a"),
        Just(" "),
        Just("\n"),
        Just("\r"),
        Just("\r\n"),
        Just("\\r"),
        Just("\\n"),
        Just("\\t"),
        Just("\\\""),
        Just("\\\\"),
        Just("\\${"),
        Just("\\$"),
        Just("\\q"),
        Just("$x"),
        Just("$$"),
        Just("'"),
        Just("''"),
        Just("{}"),
        Just("漢"),
    ];
    let strategy = prop::collection::vec(piece, 0..14).prop_map(|v| v.concat());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[13; 32]);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let bodies: Vec<String> = (0..200).map(|_| strategy.new_tree(&mut runner).unwrap().current()).collect();
    let literals: Vec<String> = bodies.iter().map(|b| format!("\"{b}\"")).collect();
    let ours: Vec<String> = literals.iter().map(|l| roundtrip(l).unwrap()).collect();
    let nix = nix_eval(&format!("[\n{}\n]", literals.join("\n")));
    assert_eq!(nix, serde_json::json!(ours));
}

/// Drops positions so that models from source and from JSON compare equal.
fn without_spans(mut t: TestSpec) -> TestSpec {
    fn clear(steps: &mut [nixvm_gen::spec::Step]) {
        for s in steps {
            s.span = None;
            if let Action::Subtest { steps, .. } = &mut s.action {
                clear(steps);
            }
        }
    }
    t.name_span = None;
    for span in t.nodes.values_mut() {
        *span = Default::default();
    }
    for (_, span) in t.modules.iter_mut().flatten() {
        *span = Default::default();
    }
    clear(&mut t.steps);
    t
}

/// The evaluator fallback path (`from_json` on what Nix evaluates, nodes
/// replaced by `null`) yields the same model as static parsing.
#[test]
fn evaluated_json_gives_the_same_model() {
    if !util::require("nix-instantiate", "evaluates descriptions to JSON") {
        return;
    }
    for name in ["health", "cluster", "strings", "let_bound"] {
        let path = util::fixture(&format!("specs/good/{name}.nix"));
        let rel = path.strip_prefix(util::root()).unwrap().to_path_buf();
        let json = nix_eval(&format!(
            "let d = import {}; in d // {{ nodes = builtins.mapAttrs (_: _: null) d.nodes; }}",
            path.display()
        ));
        let (from_json, diags) = parse::from_json(Default::default(), &rel, &json);
        assert!(diags.is_empty(), "{name}: {diags:?}");
        let mut from_json: Vec<TestSpec> = from_json.into_iter().collect();
        validate::validate(&mut from_json, &[]);
        let from_source = load_good(name);
        assert_eq!(without_spans(from_json.remove(0)), without_spans(from_source), "{name}");
    }
}

/// Dependencies point one way: codegen uses spec (its name predicates,
/// the model), spec never uses codegen.
#[test]
fn spec_does_not_depend_on_codegen() {
    let dir = util::root().join("src/spec");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(!text.contains("crate::codegen"), "{} uses codegen", path.display());
            assert!(!text.contains("nixvm_gen::codegen"), "{} uses codegen", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 5, "expected the spec sources in {}", dir.display());
}
