//! Tests of the codegen area (see main.rs): goldens of the generated file for
//! every fixture project in `tests/fixtures/codegen/<case>/` (run through the
//! real binary), `check` staleness, the bundled example, escaping proven
//! against the real `nix-instantiate`, `python3` and `sh`, and evaluation
//! against the stand-in nixpkgs of `tests/stand-in/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use nixvm_gen::codegen::escape;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config as ProptestConfig, TestRunner};

use crate::util;

mod captures;

/// Every fixture project; each has a golden `tests/goldens/<case>.nix`.
const CASES: &[&str] = &[
    "single-node-rust",
    "store-paths",
    "battery",
    "token",
    "multi-node-python",
    "aliases",
    "every-step",
    "weird-strings",
    "modules-list",
    "custom-systems",
    "isolated",
    "display",
    "console-login",
    "join-token",
    "machine-api",
];

const OUTPUT: &str = "nix/checks.generated.nix";

fn golden_path(case: &str) -> PathBuf {
    util::root().join("tests/goldens").join(format!("{case}.nix"))
}

/// Copies a fixture project into a fresh temporary directory.
fn copy_case(case: &str) -> tempfile::TempDir {
    let dir = util::tempdir();
    util::copy_dir(&util::fixture(&format!("codegen/{case}")), dir.path());
    dir
}

fn nixvm_gen(flake: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = util::nixvm_gen();
    cmd.args(args).arg("--flake").arg(flake);
    util::run(&mut cmd)
}

/// Runs `generate` in `flake` and returns the generated file.
pub(crate) fn generate(flake: &Path) -> String {
    let out = nixvm_gen(flake, &["generate"]);
    util::assert_code(&out, 0);
    std::fs::read_to_string(flake.join(OUTPUT)).expect("generate wrote the file")
}

/// The generated header names the generator's version; goldens hold a
/// placeholder so a version bump does not touch them.
fn without_version(text: &str) -> String {
    text.replacen(concat!("nixvm-gen ", env!("CARGO_PKG_VERSION"), " "), "nixvm-gen @VERSION@ ", 1)
}

#[test]
fn goldens_check_and_idempotence() {
    for case in CASES {
        let dir = copy_case(case);
        let text = generate(dir.path());
        util::golden(&golden_path(case), &without_version(&text));

        // Fresh output is not stale; generating again changes nothing.
        util::assert_code(&nixvm_gen(dir.path(), &["check"]), 0);
        assert_eq!(generate(dir.path()), text, "{case}: second generate differs");
    }
}

/// The plan the generator embeds (borrowed from the description, see
/// `SpecPlan`) is the JSON of the plan the driver reads (`Plan::from_spec`),
/// for every test of every fixture, and renders as that JSON does.
#[test]
fn embedded_plans_are_the_driver_plans() {
    let mut seen = 0;
    for case in CASES {
        let root = util::fixture(&format!("codegen/{case}"));
        let project = nixvm_gen::project::load(&nixvm_gen::config::Config::new(root)).expect("fixture loads");
        for test in &project.tests {
            let owned = nixvm_gen::plan::Plan::from_spec(test).to_json();
            let borrowed = nixvm_gen::plan::SpecPlan(test);
            assert_eq!(serde_json::to_value(&borrowed).unwrap(), owned, "{case}/{}", test.name);
            let mut text = String::new();
            nixvm_gen::codegen::nix_value::render_into(&mut text, &borrowed, 14, 21).unwrap();
            assert_eq!(text, nixvm_gen::codegen::nix_value::render(&owned, 14, 21), "{case}/{}", test.name);
            seen += usize::from(
                test.steps.iter().any(|s| matches!(s.action, nixvm_gen::spec::Action::Subtest { .. })),
            );
        }
    }
    assert!(seen > 0, "some fixture has subtests");
}

#[test]
fn goldens_parse_with_nix() {
    if !util::require("nix-instantiate", "the generated Nix must parse with the real parser") {
        return;
    }
    for case in CASES {
        let out = util::run(Command::new("nix-instantiate").arg("--parse").arg(golden_path(case)));
        assert!(out.status.success(), "{case}: golden does not parse");
    }
}

#[test]
fn check_reports_a_stale_file_with_a_diff() {
    let dir = copy_case("single-node-rust");
    let before = generate(dir.path());
    let description = dir.path().join("tests/vm/health.nix");
    let text = std::fs::read_to_string(&description).unwrap();
    std::fs::write(&description, text.replace("syshc.service", "other.service")).unwrap();

    let out = nixvm_gen(dir.path(), &["check"]);
    util::assert_code(&out, 1);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("--- a/{OUTPUT}")), "no unified diff header:\n{stdout}");
    assert!(stdout.contains("+++ b/"), "{stdout}");
    assert!(stdout.contains("-            machine.wait_for_unit(\"syshc.service\""), "{stdout}");
    assert!(stdout.contains("+            machine.wait_for_unit(\"other.service\""), "{stdout}");
    assert_eq!(std::fs::read_to_string(dir.path().join(OUTPUT)).unwrap(), before, "check wrote the file");
}

#[test]
fn invalid_description_writes_nothing() {
    let dir = copy_case("single-node-rust");
    let before = generate(dir.path());
    std::fs::write(
        dir.path().join("tests/vm/broken.nix"),
        "{ nodes.machine = { }; steps = [ { waitForUnit = 3; } ]; }",
    )
    .unwrap();
    for command in ["generate", "check"] {
        let out = nixvm_gen(dir.path(), &[command]);
        util::assert_code(&out, 2);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(OUTPUT)).unwrap(),
            before,
            "{command} touched the file"
        );
    }
}

#[test]
fn output_elsewhere_imports_relative_to_it() {
    let dir = copy_case("single-node-rust");
    let out = nixvm_gen(dir.path(), &["generate", "--output", "checks.nix"]);
    util::assert_code(&out, 0);
    let text = std::fs::read_to_string(dir.path().join("checks.nix")).unwrap();
    assert!(text.contains("(import ./tests/vm/health.nix).nodes.machine"), "{text}");
    let out = nixvm_gen(dir.path(), &["generate", "--output", "ci/nix/checks.nix", "--input-name", "vmgen"]);
    util::assert_code(&out, 0);
    let text = std::fs::read_to_string(dir.path().join("ci/nix/checks.nix")).unwrap();
    assert!(text.contains("(import ../../tests/vm/health.nix).nodes.machine"), "{text}");
    assert!(
        text.contains("{ self, nixpkgs, vmgen ? null }:") && text.contains("vmgen.lib.mkDriver"),
        "{text}"
    );
}

fn example_dir() -> PathBuf {
    util::root().join("examples/health")
}

#[test]
fn example_is_up_to_date() {
    // Read-only on the repository: `check` compares without writing.
    util::assert_code(&nixvm_gen(&example_dir(), &["check"]), 0);
    let dir = util::tempdir();
    util::copy_dir(&example_dir(), dir.path());
    std::fs::remove_file(dir.path().join(OUTPUT)).unwrap();
    let committed = std::fs::read_to_string(example_dir().join(OUTPUT)).unwrap();
    assert_eq!(generate(dir.path()), committed, "generate does not reproduce the committed example");
}

// ---------------------------------------------------------------------------
// Evaluation against the stand-in nixpkgs (tests/stand-in/nixpkgs).

fn nix_flakes() -> Command {
    let mut cmd = Command::new("nix");
    cmd.args(["--extra-experimental-features", "nix-command flakes"]);
    cmd
}

/// A copy of nixvm-gen's own flake small enough for a `path:` input (the
/// repository itself holds `target/`): flake.nix, nix/, and what
/// nix/package.nix reads (mkDriver falls back to the flake's own package,
/// as real nixpkgs has no `nixvm-driver`).
pub(crate) fn nixvm_gen_flake_copy(into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    for file in ["flake.nix", "Cargo.toml", "Cargo.lock"] {
        std::fs::copy(util::root().join(file), into.join(file)).unwrap();
    }
    for dir in ["nix", "src", "templates"] {
        util::copy_dir(&util::root().join(dir), &into.join(dir));
    }
}

/// `nix eval --json path:<flake>#<attr>` with the stand-in nixpkgs and a copy
/// of nixvm-gen as inputs, offline.
fn eval_flake(flake: &Path, gen_copy: &Path, attr: &str) -> serde_json::Value {
    eval_flake_with(flake, gen_copy, attr, &[])
}

fn eval_flake_with(flake: &Path, gen_copy: &Path, attr: &str, extra: &[&str]) -> serde_json::Value {
    let out = util::run(flake_command("eval", flake, gen_copy, attr).arg("--json").args(extra));
    assert!(out.status.success(), "nix eval {attr} failed");
    serde_json::from_slice(&out.stdout).expect("nix eval printed JSON")
}

/// `nix <sub> path:<flake>#<attr>` with the stand-in nixpkgs and a copy of
/// nixvm-gen as inputs, offline.
pub(crate) fn flake_command(sub: &str, flake: &Path, gen_copy: &Path, attr: &str) -> Command {
    let stand_in = util::root().join("tests/stand-in/nixpkgs");
    let mut cmd = nix_flakes();
    cmd.arg(sub)
        .arg(format!("path:{}#{attr}", flake.display()))
        .arg("--override-input")
        .arg("nixpkgs")
        .arg(format!("path:{}", stand_in.display()))
        .arg("--override-input")
        .arg("nixvm-gen")
        .arg(format!("path:{}", gen_copy.display()))
        // For flakes whose nixvm-gen input does not follow their nixpkgs.
        .arg("--override-input")
        .arg("nixvm-gen/nixpkgs")
        .arg(format!("path:{}", stand_in.display()))
        .args(["--no-write-lock-file", "--option", "flake-registry", "/dev/null"]);
    cmd
}

#[test]
fn example_checks_evaluate_against_the_stand_in() {
    if !util::require("nix", "evaluates the generated checks against the stand-in nixpkgs") {
        return;
    }
    let tmp = util::tempdir();
    let example = tmp.path().join("example");
    util::copy_dir(&example_dir(), &example);
    let gen_copy = tmp.path().join("nixvm-gen");
    nixvm_gen_flake_copy(&gen_copy);

    let project = nixvm_gen::project::load(&nixvm_gen::config::Config::new(&example)).expect("example loads");
    let spec = project.tests.iter().find(|t| t.name == "health").expect("health test");
    let expected_plan = nixvm_gen::plan::Plan::from_spec(spec);
    for system in ["x86_64-linux", "aarch64-linux"] {
        let check = format!("checks.{system}.health");
        assert_eq!(eval_flake(&example, &gen_copy, &format!("{check}.name")), "vm-test-run-health");
        // The plan literal reaches the driver as the plan nixvm-driver expects.
        let plan = eval_flake(&example, &gen_copy, &format!("{check}.driver.nixvm.plan"));
        let plan = nixvm_gen::plan::Plan::from_json(&plan.to_string()).expect("a valid plan");
        assert_eq!(plan, expected_plan);
        // The whole test instantiates (derivations, driver wrapper, nodes).
        let drv = eval_flake(&example, &gen_copy, &format!("{check}.drvPath"));
        assert!(drv.as_str().is_some_and(|p| p.ends_with("-vm-test-run-health.drv")), "{drv}");
    }
}

#[test]
fn fixture_checks_evaluate_against_the_stand_in() {
    if !util::require("nix", "evaluates the generated checks against the stand-in nixpkgs") {
        return;
    }
    let tmp = util::tempdir();
    let gen_copy = tmp.path().join("nixvm-gen");
    nixvm_gen_flake_copy(&gen_copy);
    for case in CASES {
        let flake = tmp.path().join(case);
        util::copy_dir(&util::fixture(&format!("codegen/{case}")), &flake);
        generate(&flake);
        let project =
            nixvm_gen::project::load(&nixvm_gen::config::Config::new(&flake)).expect("fixture loads");
        let checks = eval_flake_with(
            &flake,
            &gen_copy,
            "checks.x86_64-linux",
            &[
                "--apply",
                "builtins.mapAttrs (_: t: { drv = t.drvPath; script = t.config.testScriptString; plan = t.driver.nixvm.plan or null; ocr = t.config.enableOCR; tools = t.driver.nixvm.toolsPath or null; })",
            ],
        );
        let checks = checks.as_object().expect("an attribute set of checks");
        let on_x86: Vec<_> = project
            .tests
            .iter()
            .filter(|t| t.systems.as_ref().is_none_or(|s| s.iter().any(|s| s == "x86_64-linux")))
            .collect();
        assert_eq!(checks.len(), on_x86.len(), "{case}: one check per test");
        for test in on_x86 {
            let check = &checks[&test.name];
            let drv = check["drv"].as_str().unwrap_or_default();
            assert!(drv.ends_with(&format!("-vm-test-run-{}.drv", test.name)), "{case}: {drv}");
            // The script Nix sees is exactly the one rendered, with the
            // values Nix computed (read back from the plan) in place.
            let expected_plan = nixvm_gen::plan::Plan::from_spec(test).to_json();
            let mut values = std::collections::BTreeMap::new();
            if !check["plan"].is_null() {
                computed_values(&expected_plan, &check["plan"], &mut values);
            }
            assert_eq!(values.len(), test.computed.len(), "{case}/{}: every computed value found", test.name);
            let mut script = nixvm_gen::codegen::script::render(test, &project.sources).expect("renders");
            for (index, value) in &values {
                let placeholder = escape::python_string(&nixvm_gen::spec::computed::placeholder(*index));
                script = script.replace(&placeholder, &serde_json::to_string(value).unwrap());
            }
            assert_eq!(check["script"].as_str(), Some(script.as_str()), "{case}/{}: testScript", test.name);
            // OCR: the stock driver gets tesseract through `enableOCR`,
            // nixvm-driver through lib.mkDriver's PATH.
            let ocr = script.contains(".wait_for_text(");
            assert_eq!(check["ocr"].as_bool(), Some(ocr), "{case}/{}: enableOCR", test.name);
            if let Some(tools) = check["tools"].as_str() {
                assert_eq!(tools.contains("tesseract"), ocr, "{case}/{}: driver PATH {tools}", test.name);
                assert_eq!(tools.contains("imagemagick"), ocr, "{case}/{}: driver PATH {tools}", test.name);
            }
            match test.backend {
                nixvm_gen::spec::Backend::Rust => {
                    let plan =
                        nixvm_gen::plan::Plan::from_json(&check["plan"].to_string()).expect("a valid plan");
                    let mut expected = expected_plan.to_string();
                    for (index, value) in &values {
                        let placeholder =
                            serde_json::to_string(&nixvm_gen::spec::computed::placeholder(*index)).unwrap();
                        expected = expected.replace(&placeholder, &serde_json::to_string(value).unwrap());
                    }
                    let expected = nixvm_gen::plan::Plan::from_json(&expected).unwrap();
                    assert_eq!(plan, expected, "{case}/{}: plan", test.name);
                }
                nixvm_gen::spec::Backend::Python => {
                    assert!(check["plan"].is_null(), "{case}: stock driver kept")
                }
            }
        }
    }
}

/// The values Nix computed for the placeholders of `rendered` (a plan as
/// generated), read at the same places of `evaluated` (the plan Nix built).
fn computed_values(
    rendered: &serde_json::Value,
    evaluated: &serde_json::Value,
    out: &mut std::collections::BTreeMap<usize, serde_json::Value>,
) {
    use serde_json::Value;
    match (rendered, evaluated) {
        (Value::String(s), v) => {
            if let Some(i) = nixvm_gen::spec::computed::placeholder_index(s) {
                out.insert(i, v.clone());
            }
        }
        (Value::Array(a), Value::Array(b)) => a.iter().zip(b).for_each(|(a, b)| computed_values(a, b, out)),
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if let Some(w) = b.get(k) {
                    computed_values(v, w, out);
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Escaping, proven against the real tools. Each test draws a batch of
// strings (plus hand-picked nasty ones) and checks them all with ONE process.

/// Pieces that stress every quoting layer (Nix, Python, shell), plus
/// arbitrary characters (Nix strings cannot hold NUL, so neither can ours).
fn nasty_string() -> impl Strategy<Value = String> {
    let piece = proptest::prop_oneof![
        proptest::sample::select(vec![
            "'", "''", "'''", "${", "$", "{", "}", "\\", "\"", "\n", "\r", "\t", " ", "  ", "`", ";", "|",
            "&", "*", "#", "%", "%s", "é", "😀", "\u{85}", "\u{2028}", "\u{7f}", "\u{1}", "$(x)", "''${",
            "'$",
        ])
        .prop_map(str::to_string),
        proptest::char::any().prop_filter("no NUL", |c| *c != '\0').prop_map(String::from),
        "[a-z]{1,4}",
    ];
    proptest::collection::vec(piece, 0..10).prop_map(|pieces| pieces.concat())
}

/// 64 random nasty strings and the hand-picked ones.
fn string_batch() -> Vec<String> {
    let mut runner = TestRunner::new(ProptestConfig::with_cases(64));
    let strategy = proptest::collection::vec(nasty_string(), 64);
    let mut strings = strategy.new_tree(&mut runner).expect("strategy").current();
    strings.extend(
        [
            "",
            " ",
            "  leading",
            "trailing'",
            "''",
            "'''",
            "x''",
            "'${a}",
            "a\n b\n",
            " a\n b",
            "  \n",
            "\n\n",
            "a\n  ",
            "\r\n",
            "$${x}",
            "\\${x}",
            "''\\n",
            "it's",
            "é\u{2028}😀",
            // Found by this test once: a quote before an escaped character.
            "'\r",
            " '",
            "' ",
        ]
        .map(String::from),
    );
    strings
}

fn assert_round_trip(kind: &str, inputs: &[String], outputs: &[String]) {
    assert_eq!(inputs.len(), outputs.len(), "{kind}: wrong number of results");
    for (input, output) in inputs.iter().zip(outputs) {
        assert_eq!(output, input, "{kind} does not round-trip {input:?}");
    }
}

/// Evaluates a Nix expression to JSON with the real evaluator.
fn nix_eval_file(text: &str) -> serde_json::Value {
    let dir = util::tempdir();
    let file = dir.path().join("expr.nix");
    std::fs::write(&file, text).unwrap();
    nix_eval_path(&file)
}

fn nix_eval_path(file: &Path) -> serde_json::Value {
    let out = util::run(Command::new("nix-instantiate").args(["--eval", "--strict", "--json"]).arg(file));
    assert!(out.status.success(), "nix-instantiate failed on {}", file.display());
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn nix_string_round_trips() {
    if !util::require("nix-instantiate", "proves Nix string escaping") {
        return;
    }
    let strings = string_batch();
    let list: Vec<String> = strings.iter().map(|s| escape::nix_string(s)).collect();
    let got: Vec<String> =
        serde_json::from_value(nix_eval_file(&format!("[\n{}\n]\n", list.join("\n")))).unwrap();
    assert_round_trip("nix_string", &strings, &got);
}

#[test]
fn nix_indented_string_round_trips() {
    if !util::require("nix-instantiate", "proves Nix indented string escaping") {
        return;
    }
    let strings = string_batch();
    let list: Vec<String> =
        strings.iter().map(|s| format!("    {}", escape::nix_indented_string(s, "      ", "    "))).collect();
    let got: Vec<String> =
        serde_json::from_value(nix_eval_file(&format!("[\n{}\n]\n", list.join("\n")))).unwrap();
    assert_round_trip("nix_indented_string", &strings, &got);
}

#[test]
fn nix_attr_names_round_trip() {
    if !util::require("nix-instantiate", "proves Nix attribute name quoting") {
        return;
    }
    let mut strings = string_batch();
    strings.extend(["if", "or", "x-y", "_a'", "1a", "true"].map(String::from));
    strings.sort();
    strings.dedup();
    let attrs: Vec<String> =
        strings.iter().map(|s| format!("  {} = null;", escape::nix_attr_name(s))).collect();
    let got: Vec<String> =
        serde_json::from_value(nix_eval_file(&format!("builtins.attrNames {{\n{}\n}}\n", attrs.join("\n"))))
            .unwrap();
    assert_round_trip("nix_attr_name", &strings, &got);
}

#[test]
fn python_string_round_trips() {
    if !util::require("python3", "proves Python string escaping") {
        return;
    }
    let strings = string_batch();
    let list: Vec<String> = strings.iter().map(|s| escape::python_string(s)).collect();
    let script = format!("import json, sys\nsys.stdout.write(json.dumps([\n{}\n]))\n", list.join(",\n"));
    let out = util::run(Command::new("python3").arg("-c").arg(&script));
    assert!(out.status.success(), "python3 failed on:\n{script}");
    let got: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert_round_trip("python_string", &strings, &got);
}

#[test]
fn shell_quote_round_trips() {
    let strings = string_batch();
    let script: String =
        strings.iter().map(|s| format!("printf '%s\\000' {}\n", escape::shell_quote(s))).collect();
    let out = util::run(Command::new("sh").arg("-c").arg(&script));
    assert!(out.status.success(), "sh failed on:\n{script}");
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let got: Vec<String> = text.split('\0').map(String::from).collect();
    assert_eq!(got.last().map(String::as_str), Some(""), "missing final separator");
    assert_round_trip("shell_quote", &strings, &got[..got.len() - 1]);
}

// ---------------------------------------------------------------------------
// End to end: description → generated file → Nix evaluation of testScript →
// Python run against a fake `machine` that records what it is asked to run.

/// A STAND-IN for nixpkgs that only hands back the test module's attributes
/// (enough to read `testScript`), and a fake driver environment for Python.
const TINY_STAND_IN: &str = r#"
let
  checks = import ./nix/checks.generated.nix {
    self = { nixosModules = { }; };
    nixpkgs.legacyPackages.x86_64-linux.testers.runNixOSTest =
      module: module { config = { }; lib = { }; };
  };
in
checks.x86_64-linux.nasty.testScript
"#;

/// A fake Machine's `succeed` that records the command.
const FAKE_SUCCEED: &str = r#"
    def succeed(self, command, timeout=None):
        calls.append(command)
        return ""
"#;

/// Runs a generated `script` against a fake Machine with the Python
/// `methods` (which append to `calls`); the calls as JSON.
fn run_on_fake_machine(methods: &str, script: &str) -> serde_json::Value {
    let fake = format!(
        "import json, sys\ncalls = []\nclass Machine:\n{}\ndef start_all():\n    pass\nmachine = Machine()\nexec(sys.stdin.read())\nsys.stdout.write(json.dumps(calls))\n",
        methods.trim_matches('\n')
    );
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(&fake)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the generated script failed in python3:\n{script}");
    serde_json::from_slice(&out.stdout).expect("the fake Machine printed JSON")
}

/// A copy of `single-node-rust` whose only description, `nasty`, is a
/// Python-backend test of `steps` (list items), generated.
fn generated_python_test(steps: &str) -> tempfile::TempDir {
    let dir = copy_case("single-node-rust");
    std::fs::remove_file(dir.path().join("tests/vm/health.nix")).unwrap();
    std::fs::write(
        dir.path().join("tests/vm/nasty.nix"),
        format!("{{\n  backend = \"python\";\n  systems = [ \"x86_64-linux\" ];\n  nodes.machine = {{ }};\n  steps = [\n{steps}  ];\n}}\n"),
    )
    .unwrap();
    generate(dir.path());
    dir
}

#[test]
fn nasty_commands_reach_the_guest_unchanged() {
    if !util::require("nix-instantiate", "evaluates the generated testScript")
        || !util::require("python3", "runs the generated testScript")
    {
        return;
    }
    // Blank commands are refused by validation (`empty_command`).
    let commands: Vec<String> =
        string_batch().into_iter().filter(|s| !nixvm_gen::spec::names::is_blank_command(s)).collect();
    let steps: String =
        commands.iter().map(|c| format!("    {{ succeed = {}; }}\n", escape::nix_string(c))).collect();
    let dir = generated_python_test(&steps);
    std::fs::write(dir.path().join("stand-in.nix"), TINY_STAND_IN).unwrap();
    let script = nix_eval_path(&dir.path().join("stand-in.nix"));
    let script = script.as_str().expect("testScript is a string").to_string();

    let got: Vec<String> = serde_json::from_value(run_on_fake_machine(FAKE_SUCCEED, &script)).unwrap();
    assert_round_trip("succeed command", &commands, &got);
}

/// Issue 11: a testScript whose indented string held millions of escape
/// parts overflowed Nix 2.8's stack. Forty commands of 100,000 quotes
/// (each quote is an escape, `''\'`) now come out as a `"…"` string, which
/// the real evaluator reads back exactly.
#[test]
fn a_test_script_of_millions_of_escapes_evaluates_in_nix() {
    if !util::require("nix-instantiate", "evaluates the generated testScript") {
        return;
    }
    let quotes = "'".repeat(100_000);
    let steps: String = (0..40).map(|i| format!("    {{ succeed = \"echo {i}{quotes}\"; }}\n")).collect();
    let dir = generated_python_test(&steps);
    let project =
        nixvm_gen::project::load(&nixvm_gen::config::Config::new(dir.path())).expect("the project loads");
    let expected = nixvm_gen::codegen::script::render(&project.tests[0], &project.sources).expect("renders");
    assert!(expected.matches('\'').count() >= 4_000_000, "the script holds the quotes");
    std::fs::write(dir.path().join("stand-in.nix"), TINY_STAND_IN).unwrap();
    // Not `util::run`: the answer is megabytes.
    let out = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .arg(dir.path().join("stand-in.nix"))
        .output()
        .expect("nix-instantiate runs");
    assert!(out.status.success(), "nix-instantiate failed: {}", String::from_utf8_lossy(&out.stderr));
    let got: String = serde_json::from_slice(&out.stdout).expect("a JSON string");
    assert!(got == expected, "the evaluated testScript differs ({} vs {} bytes)", got.len(), expected.len());
}

#[test]
fn fixture_scripts_compile_as_python() {
    if !util::require("python3", "compiles the generated testScripts") {
        return;
    }
    let mut scripts = Vec::new();
    for case in CASES {
        let project = nixvm_gen::project::load(&nixvm_gen::config::Config::new(util::fixture(&format!(
            "codegen/{case}"
        ))))
        .expect("fixture loads");
        assert!(!project.has_errors(), "{case}: {:?}", project.diagnostics);
        for test in &project.tests {
            let script = nixvm_gen::codegen::script::render(test, &project.sources).expect("renders");
            scripts.push((format!("{case}/{}", test.name), script));
        }
    }
    let program =
        "import json, sys\nfor name, script in json.load(sys.stdin):\n    compile(script, name, 'exec')\n";
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(program)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let input = serde_json::to_vec(&scripts).unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &input).unwrap();
    assert!(
        child.wait().unwrap().success(),
        "a generated testScript is not valid Python (see the traceback above)"
    );
}

/// JSON values without floats (Nix prints floats with 6 significant digits).
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = proptest::prop_oneof![
        proptest::strategy::Just(Value::Null),
        proptest::bool::ANY.prop_map(Value::Bool),
        proptest::num::i64::ANY.prop_map(Value::from),
        nasty_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        proptest::prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(nasty_string(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn json_values_round_trip_through_nix_literals() {
    if !util::require("nix-instantiate", "proves the plan's JSON-to-Nix rendering") {
        return;
    }
    let mut runner = TestRunner::new(ProptestConfig::with_cases(64));
    let values =
        proptest::collection::vec(json_value(), 64).new_tree(&mut runner).expect("strategy").current();
    let list: Vec<String> =
        values.iter().map(|v| format!("  {}", nixvm_gen::codegen::nix_value::render(v, 2, 2))).collect();
    let got = nix_eval_file(&format!("[\n{}\n]\n", list.join("\n")));
    let got = got.as_array().expect("a list");
    assert_eq!(got.len(), values.len());
    for (value, got) in values.iter().zip(got) {
        assert_eq!(got, value, "Nix literal does not round-trip");
    }
}

/// Every value the stock driver would hand to a shell unquoted is refused
/// by validation, all in one run, each at its line and column.
#[test]
fn values_the_stock_driver_cannot_take_are_refused_with_a_location() {
    let dir = copy_case("single-node-rust");
    let before = generate(dir.path());
    std::fs::write(
        dir.path().join("tests/vm/health.nix"),
        concat!(
            "{\n  nodes.machine = { };\n  steps = [\n",
            "    { waitForUnit = \"x\\\"; reboot; \\\".service\"; }\n",
            "    { waitForUnit = \"a.service\"; user = \"a b\"; }\n",
            "    { copyFromVm = \"/tmp/$(id)\"; }\n",
            "    { screenshot = \"\"; }\n",
            "    { fail = \" \"; }\n",
            "  ];\n}\n"
        ),
    )
    .unwrap();
    let out = nixvm_gen(dir.path(), &["generate"]);
    util::assert_code(&out, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "error[unsafe_unit_name]: unit name `x\\\"; reboot; \\\".service`",
        "--> tests/vm/health.nix:4:21",
        "error[unsafe_user_name]",
        "--> tests/vm/health.nix:5:41",
        "error[unsafe_path]",
        "--> tests/vm/health.nix:6:20",
        "error[unsafe_screenshot_name]: the screenshot name is empty",
        "--> tests/vm/health.nix:7:20",
        "error[empty_command]",
        "--> tests/vm/health.nix:8:14",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
    assert_eq!(std::fs::read_to_string(dir.path().join(OUTPUT)).unwrap(), before, "file touched");
}

#[test]
fn output_outside_the_flake_is_refused() {
    let dir = copy_case("single-node-rust");
    let out = nixvm_gen(dir.path(), &["generate", "--output", "../escaped.nix"]);
    util::assert_code(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside the flake"));
    assert!(!dir.path().join("../escaped.nix").exists());
}

/// Descriptions evaluated by Nix (`--eval`) keep the step positions that
/// static parsing can give: here every step of `steps = map …;` is at the
/// `steps` value, not at line 1.
#[test]
fn evaluated_steps_are_located_at_their_source() {
    if !util::require("nix-instantiate", "descriptions that are not plain data are evaluated by Nix")
        || !util::require("nix", "--eval asks Nix for the flake's modules")
    {
        return;
    }
    let dir = util::tempdir();
    util::copy_dir(&util::fixture("cli/computed"), dir.path());
    let out = nixvm_gen(dir.path(), &["--eval", "generate"]);
    util::assert_code(&out, 0);
    let text = std::fs::read_to_string(dir.path().join(OUTPUT)).unwrap();
    assert_eq!(text.matches("# tests/vm/ports.nix:9: waitForOpenPort").count(), 2, "{text}");
    assert!(!text.contains("ports.nix:1:"), "{text}");
}

// ---------------------------------------------------------------------------
// The stock driver's build-time checks (reference §1.2): the driver build
// type-checks `<prepend> + <node>: QemuMachine; lines + testScript` with mypy
// and lints the bare script with pyflakes, the node names and the driver's
// globals as builtins. A generated script that fails either breaks the
// user's build, so every golden's scripts go through both.

/// One generated test as the stock driver build sees it.
#[derive(Debug, serde::Deserialize)]
struct ScriptUnderTest {
    name: String,
    nodes: Vec<String>,
    #[serde(rename = "testScript")]
    test_script: String,
}

/// Every test of a generated checks file, read back with the real evaluator
/// through a stand-in `runNixOSTest` that returns the name, node names and
/// testScript (the rest of the test module is never forced).
fn scripts_of_generated_file(file: &Path) -> Vec<ScriptUnderTest> {
    let systems: Vec<String> =
        nixvm_gen::spec::parse::KNOWN_SYSTEMS.iter().map(|s| escape::nix_string(s)).collect();
    let expr = format!(
        r#"
let
  # Just enough of a package set and of evaluated nodes for the fixtures
  # whose descriptions compute values (tests/fixtures/codegen/store-paths).
  fakeNodes = {{
    server.networking.hostName = "server";
    client.networking.hostName = "client";
    machine.networking.hostName = "machine";
  }};
  runNixOSTest = module:
    let m = module {{ config.nodes = fakeNodes; lib = {{ }}; }};
    in {{ inherit (m) name testScript; nodes = builtins.attrNames m.nodes; }};
  checks = import (/. + {file}) {{
    self = {{ nixosModules = {{ }}; outPath = "/nix/store/00000000000000000000000000000000-source"; }};
    nixpkgs.legacyPackages = builtins.listToAttrs (map
      (system: {{ name = system; value = {{
        testers = {{ inherit runNixOSTest; }};
        runtimeShell = "/bin/sh";
        writeShellScriptBin = name: text: "/nix/store/00000000000000000000000000000000-${{name}}";
      }}; }})
      [ {systems} ]);
  }};
in
builtins.concatLists (map (system: builtins.attrValues checks.${{system}}) (builtins.attrNames checks))
"#,
        file = escape::nix_string(&file.display().to_string()),
        systems = systems.join(" "),
    );
    let mut tests: Vec<ScriptUnderTest> = serde_json::from_value(nix_eval_file(&expr)).expect("tests");
    tests.sort_by(|a, b| a.name.cmp(&b.name));
    tests.dedup_by(|a, b| a.name == b.name);
    tests
}

/// The names the stock driver binds for the nodes: pythonized, plus
/// `machine` when there is exactly one node and it has another name
/// (`nixos/lib/testing/driver.nix`, `theOnlyMachine`).
fn driver_node_names(nodes: &[String]) -> Vec<String> {
    let mut names: Vec<String> = nodes.iter().map(|n| nixvm_gen::codegen::script::pythonize(n)).collect();
    if nodes.len() == 1 && nodes[0] != "machine" {
        names.push("machine".to_string());
    }
    names
}

/// What the driver build type-checks: the prepend, the node hints (one line,
/// as `toString` of the list joins them with spaces), the script.
fn typed_script(prepend: &str, nodes: &[String], script: &str) -> String {
    let hints: Vec<String> = driver_node_names(nodes).iter().map(|n| format!("{n}: QemuMachine;")).collect();
    format!("{prepend}\n{}\n{script}", hints.join(" "))
}

/// Runs mypy the way the driver build does on `files`; returns its output
/// when it fails.
fn mypy(dir: &Path, files: &[PathBuf]) -> Result<(), String> {
    let out = util::run(
        Command::new("mypy")
            .args(["--no-implicit-optional", "--pretty", "--no-color-output", "--cache-dir"])
            .arg(dir.join(".mypy_cache"))
            .args(files)
            .current_dir(dir),
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

/// Runs pyflakes with the driver's builtins on one bare script.
fn pyflakes(file: &Path, nodes: &[String]) -> Result<(), String> {
    let mut builtins = driver_node_names(nodes);
    builtins.extend(nixvm_gen::spec::names::DRIVER_GLOBALS.iter().map(|s| s.to_string()));
    let out = util::run(Command::new("pyflakes3").env("PYFLAKES_BUILTINS", builtins.join(",")).arg(file));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

/// Node names that are also names the generated script assigns or imports;
/// the script must rename its own variables and still pass both checks.
const CLASHING_NODES: &str = r#"{
  backend = "python";
  systems = [ "x86_64-linux" ];
  nodes = { out = { }; re = { }; time = { }; status = { }; body = { }; code = { }; until_1 = { }; web-1 = { }; };
  steps = [
    { waitUntilSucceeds = "cat /x"; expect = { contains = "a"; matches = "b+"; exitCode = 1; }; node = "out"; }
    { succeed = "exit 3"; expect = { exitCode = 3; equals = "x"; matches = "y"; }; node = "re"; }
    { succeed = "echo x"; expect.contains = "x"; node = "status"; }
    { http = { url = "http://localhost/"; contains = "ok"; }; node = "body"; }
    { sleep = 0.5; }
    { subtest = "empty-ish"; steps = [ { waitForConsoleText = "login:"; node = "code"; timeout = 0.5; } ]; }
    { reboot = "until_1"; }
    { start = "until_1"; }
    { waitForOpenPort = 80; addr = "::1"; node = "web-1"; }
    { waitForUnit = "a.service"; user = "alice"; node = "time"; }
  ];
}
"#;

#[test]
fn generated_scripts_pass_the_stock_driver_type_check_and_lint() {
    if !util::require("nix-instantiate", "reads the testScripts out of the generated files")
        || !util::require("mypy", "the stock driver type-checks the testScript (Debian: mypy)")
        || !util::require("pyflakes3", "the stock driver lints the testScript (Debian: pyflakes3)")
    {
        return;
    }
    let prepend = std::fs::read_to_string(util::fixture("python-stubs/test-script-prepend.py")).unwrap();
    let dir = util::tempdir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(util::root().join("tests/goldens"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "nix"))
        .collect();
    files.sort();
    assert!(files.len() >= CASES.len(), "expected a golden per case in tests/goldens");
    // Plus one project whose node names clash with the script's own names.
    let project = copy_case("single-node-rust");
    std::fs::write(project.path().join("tests/vm/health.nix"), CLASHING_NODES).unwrap();
    generate(project.path());
    files.push(project.path().join(OUTPUT));

    let mut typed = Vec::new();
    let mut names = Vec::new();
    let fixtures = util::tempdir();
    for file in &files {
        let shown = file.strip_prefix(util::root()).unwrap_or(file).display().to_string();
        // A golden whose descriptions are read at evaluation time (computed
        // values) is evaluated in a copy of its fixture project.
        let case = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let in_fixture = fixtures.path().join(&case);
        let file = if file.starts_with(util::root()) && util::fixture(&format!("codegen/{case}")).is_dir() {
            util::copy_dir(&util::fixture(&format!("codegen/{case}")), &in_fixture);
            std::fs::create_dir_all(in_fixture.join("nix")).unwrap();
            std::fs::copy(file, in_fixture.join(OUTPUT)).unwrap();
            in_fixture.join(OUTPUT)
        } else {
            file.clone()
        };
        let tests = scripts_of_generated_file(&file);
        assert!(!tests.is_empty(), "{shown}: no tests read back");
        for test in tests {
            let index = typed.len();
            let label = format!("{shown}: {}", test.name);
            let bare = dir.path().join(format!("bare_{index}.py"));
            std::fs::write(&bare, &test.test_script).unwrap();
            if let Err(e) = pyflakes(&bare, &test.nodes) {
                panic!("pyflakes rejects the testScript of {label}:\n{e}\n--- script\n{}", test.test_script);
            }
            let typed_file = dir.path().join(format!("typed_{index}.py"));
            std::fs::write(&typed_file, typed_script(&prepend, &test.nodes, &test.test_script)).unwrap();
            typed.push(typed_file);
            names.push(format!("typed_{index}.py = {label}"));
        }
    }
    assert!(names.iter().any(|n| n.ends_with(": health")), "the clashing project was not checked");
    if let Err(e) = mypy(dir.path(), &typed) {
        panic!("mypy rejects generated testScripts:\n{e}\nfiles:\n{}", names.join("\n"));
    }
}

/// The checks above can fail: the stubs are typed (a float timeout, which
/// the real driver's `int` rejects, is an error) and pyflakes sees an
/// unknown name.
#[test]
fn the_stock_driver_checks_catch_mistakes() {
    if !util::require("mypy", "the stock driver type-checks the testScript (Debian: mypy)")
        || !util::require("pyflakes3", "the stock driver lints the testScript (Debian: pyflakes3)")
    {
        return;
    }
    let prepend = std::fs::read_to_string(util::fixture("python-stubs/test-script-prepend.py")).unwrap();
    let dir = util::tempdir();
    let nodes = vec!["web-1".to_string()];
    let good = "start_all()\nweb_1.wait_for_unit(\"a.service\", timeout=3)\nmachine.succeed(\"true\")\n";
    let file = dir.path().join("good.py");
    std::fs::write(&file, typed_script(&prepend, &nodes, good)).unwrap();
    assert_eq!(mypy(dir.path(), std::slice::from_ref(&file)), Ok(()));
    std::fs::write(&file, good).unwrap();
    assert_eq!(pyflakes(&file, &nodes), Ok(()));

    for bad in [
        "web_1.wait_for_unit(\"a.service\", timeout=2.5)\n",
        "web_1.succeed(\"true\", timeout_s=3)\n",
        "n: int = web_1.succeed(\"true\")\n",
        "retry(lambda: True)\n",
    ] {
        let file = dir.path().join("bad.py");
        std::fs::write(&file, typed_script(&prepend, &nodes, bad)).unwrap();
        assert!(mypy(dir.path(), &[file]).is_err(), "mypy accepts {bad:?}");
    }
    let file = dir.path().join("bad_lint.py");
    std::fs::write(&file, "web_2.succeed(\"true\")\n").unwrap();
    assert!(pyflakes(&file, &nodes).is_err(), "pyflakes accepts an unknown node");
    std::fs::write(&file, "import re\nweb_1.succeed(\"true\")\n").unwrap();
    assert!(pyflakes(&file, &nodes).is_err(), "pyflakes accepts an unused import");
}

/// `systems = [ ]` is a warning: the file is still generated (the test is
/// checked, but no `checks.<system>` holds it).
#[test]
fn empty_systems_warn_but_generate() {
    let dir = copy_case("single-node-rust");
    let path = dir.path().join("tests/vm/health.nix");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen('{', "{\n  systems = [ ];", 1)).unwrap();
    let out = nixvm_gen(dir.path(), &["generate"]);
    util::assert_code(&out, 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning[empty_systems]"), "{stderr}");
    assert!(stderr.contains("--> tests/vm/health.nix:2:13"), "{stderr}");
    let generated = std::fs::read_to_string(dir.path().join(OUTPUT)).unwrap();
    assert!(!generated.contains("x86_64-linux ="), "{generated}");
}

/// Strings that Nix computes (here: each nasty string passed through
/// `builtins.replaceStrings`, which the static parse does not fold) reach the Python script
/// and the plan exactly: both embed `builtins.toJSON` of the value, whose
/// JSON string literals are valid Python literals.
#[test]
fn computed_strings_reach_python_and_the_plan_unchanged() {
    if !util::require("nix-instantiate", "evaluates the generated testScript and plan")
        || !util::require("python3", "runs the generated testScript")
    {
        return;
    }
    let strings: Vec<String> =
        string_batch().into_iter().filter(|s| !nixvm_gen::spec::names::is_blank_command(s)).collect();
    let items: String = strings.iter().map(|c| format!("    {}\n", escape::nix_string(c))).collect();
    let dir = copy_case("single-node-rust");
    std::fs::remove_file(dir.path().join("tests/vm/health.nix")).unwrap();
    for backend in ["python", "rust"] {
        std::fs::write(
            dir.path().join("tests/vm/nasty.nix"),
            computed_strings_description(backend, &items, "map (s: { succeed = id s; }) strings"),
        )
        .unwrap();
        let text = generate(dir.path());
        assert!(text.contains("builtins.toJSON (nixvmValue"), "the values are computed:\n{text}");
        if backend == "rust" {
            let plan_of = format!("map (s: s.action.succeed.command) ({})", plan_steps_of("nasty"));
            std::fs::write(dir.path().join("plan.nix"), plan_of).unwrap();
            let got: Vec<String> =
                serde_json::from_value(nix_eval_path(&dir.path().join("plan.nix"))).unwrap();
            assert_round_trip("computed plan command", &strings, &got);
            continue;
        }
        std::fs::write(dir.path().join("stand-in.nix"), TINY_STAND_IN).unwrap();
        let script = nix_eval_path(&dir.path().join("stand-in.nix"));
        let script = script.as_str().expect("testScript is a string").to_string();
        let got: Vec<String> = serde_json::from_value(run_on_fake_machine(FAKE_SUCCEED, &script)).unwrap();
        assert_round_trip("computed succeed command", &strings, &got);
    }
}

/// Runs each shell command in bash with `test` and `curl` replaced by
/// functions that print the argument a probe names (`test -e PATH`, curl's
/// last argument, the URL), NUL-terminated: what the guest shell receives.
fn guest_shell_arguments(commands: &[String]) -> Vec<String> {
    let script: String = commands
        .iter()
        .map(|c| {
            format!(
                "( test() {{ printf '%s\\0' \"$2\"; }}; curl() {{ printf '%s\\0' \"${{@: -1}}\"; }}; {c} )\n"
            )
        })
        .collect();
    let out = util::run(Command::new("bash").arg("-c").arg(&script));
    assert!(out.status.success(), "bash failed on:\n{script}");
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let mut got: Vec<String> = text.split('\0').map(String::from).collect();
    assert_eq!(got.pop().as_deref(), Some(""), "NUL-terminated");
    got
}

/// Strings that Nix computes and that the generator puts into a guest
/// shell command quoted (a `waitForFile` path, an `http.url`) reach the
/// guest shell exactly: through the plan and nixvm-driver's probes, and
/// through the Python script's `shlex.quote` and the stock probes.
#[test]
fn computed_strings_reach_the_guest_shell_exactly() {
    if !util::require("nix-instantiate", "evaluates the generated testScript and plan")
        || !util::require("python3", "runs the generated testScript")
        || !util::require("bash", "runs the guest commands")
    {
        return;
    }
    let strings = string_batch();
    let items: String = strings.iter().map(|c| format!("    {}\n", escape::nix_string(c))).collect();
    let dir = copy_case("single-node-rust");
    std::fs::remove_file(dir.path().join("tests/vm/health.nix")).unwrap();
    for backend in ["rust", "python"] {
        std::fs::write(
            dir.path().join("tests/vm/nasty.nix"),
            computed_strings_description(
                backend,
                &items,
                "map (s: { waitForFile = id s; }) strings ++ map (s: { http.url = id s; }) strings",
            ),
        )
        .unwrap();
        let text = generate(dir.path());
        assert!(text.contains("builtins.toJSON (nixvmValue"), "the values are computed:\n{text}");
        let commands: Vec<String> = if backend == "rust" {
            std::fs::write(dir.path().join("plan.nix"), plan_steps_of("nasty")).unwrap();
            let steps = nix_eval_path(&dir.path().join("plan.nix"));
            let steps = steps.as_array().expect("a list of steps");
            steps
                .iter()
                .map(|s| {
                    match (s["action"]["waitForFile"]["path"].as_str(), s["action"]["http"]["url"].as_str()) {
                        (Some(path), _) => nixvm_gen::guest::commands::file_probe_command(path),
                        (_, Some(url)) => nixvm_gen::guest::commands::http_command(url),
                        _ => panic!("unexpected step {s}"),
                    }
                })
                .collect()
        } else {
            std::fs::write(dir.path().join("stand-in.nix"), TINY_STAND_IN).unwrap();
            let script = nix_eval_path(&dir.path().join("stand-in.nix"));
            let script = script.as_str().expect("testScript is a string").to_string();
            // The stock methods' guest commands (wait_for_file runs
            // `test -e {filename}`).
            let fake = r#"
    def wait_for_file(self, filename, timeout=900):
        calls.append("test -e " + filename)
    def succeed(self, command, timeout=None):
        calls.append(command)
        return "\n200"
"#;
            serde_json::from_value(run_on_fake_machine(fake, &script)).unwrap()
        };
        let got = guest_shell_arguments(&commands);
        let expected: Vec<String> = strings.iter().chain(&strings).cloned().collect();
        assert_round_trip(&format!("computed string in a {backend} guest command"), &expected, &got);
    }
}

/// A description whose numbers Nix computes (`builtins.fromJSON`, which
/// the static parse does not fold): one step per kind of number.
fn computed_numbers_description(backend: &str, port: &str) -> String {
    format!(
        r#"{{ pkgs, ... }}:
let
  n = builtins.fromJSON;
in
{{
  backend = "{backend}";
  systems = [ "x86_64-linux" ];
  nodes.machine = {{ }};
  steps = [
    {{ waitForOpenPort = {port}; timeout = n "2.5"; }}
    {{ execute = "exit 3"; expect.exitCode = n "3"; }}
    {{ http.url = "http://machine/"; http.status = n "404"; }}
    {{ sleep = n "0.01"; }}
    {{ dumpTtyContents = n "2"; }}
  ];
}}
"#
    )
}

/// A Nix expression for the plan steps of `test` in the generated file
/// (mkDriver and runNixOSTest stubbed to hand the plan out).
fn plan_steps_of(test: &str) -> String {
    format!(
        r#"
let
  checks = import ./nix/checks.generated.nix {{
    self = {{ nixosModules = {{ }}; }};
    nixvm-gen.lib.mkDriver = {{ plan, ... }}: plan;
    nixpkgs.legacyPackages.x86_64-linux.testers.runNixOSTest =
      module: (module {{ config = {{ }}; lib.mkForce = x: x; }}).driver;
  }};
in
checks.x86_64-linux.{test}.steps
"#
    )
}

/// A description (for `backend`) with the Nix list `strings` of `items`,
/// each computed (`id`, which the static parse does not fold), and `steps`.
fn computed_strings_description(backend: &str, items: &str, steps: &str) -> String {
    format!(
        "{{ pkgs, ... }}:\nlet\n  id = x: builtins.replaceStrings [ ] [ ] x;\n  strings = [\n{items}  ];\nin\n{{\n  backend = \"{backend}\";\n  systems = [ \"x86_64-linux\" ];\n  nodes.machine = {{ }};\n  steps = {steps};\n}}\n"
    )
}

/// Computed numbers reach the plan as numbers and the Python script as
/// Python numbers (timeouts rounded up to whole seconds, as static ones);
/// a wrong type or a value out of range fails the evaluation with the file,
/// the step's line and what was expected.
#[test]
fn computed_numbers_reach_python_and_the_plan_checked() {
    if !util::require("nix-instantiate", "evaluates the generated testScript and plan")
        || !util::require("python3", "runs the generated testScript")
    {
        return;
    }
    let dir = copy_case("single-node-rust");
    std::fs::remove_file(dir.path().join("tests/vm/health.nix")).unwrap();
    let nums = dir.path().join("tests/vm/nums.nix");

    std::fs::write(&nums, computed_numbers_description("rust", "n \"3000\"")).unwrap();
    let text = generate(dir.path());
    assert!(text.contains("(nixvmNumber \"tests/vm/nums.nix:10: `waitForOpenPort`\""), "{text}");
    std::fs::write(dir.path().join("plan.nix"), plan_steps_of("nums")).unwrap();
    let steps = nix_eval_path(&dir.path().join("plan.nix"));
    let plan = nixvm_gen::plan::Plan::from_json(
        &serde_json::json!({ "version": 1, "name": "nums", "nodes": ["machine"], "steps": steps })
            .to_string(),
    )
    .expect("the evaluated plan reads back");
    use nixvm_gen::spec::{Action, Num};
    assert_eq!(plan.steps[0].action, Action::WaitForOpenPort { port: Num::Lit(3000), addr: None });
    assert_eq!(plan.steps[0].timeout, Some(Num::Lit(2.5)));
    assert!(
        matches!(&plan.steps[1].action, Action::Execute { expect, .. } if expect.exit_code == Some(Num::Lit(3)))
    );
    assert!(matches!(&plan.steps[2].action, Action::Http { status: Num::Lit(404), .. }));
    assert_eq!(plan.steps[3].action, Action::Sleep { seconds: Num::Lit(0.01) });
    assert_eq!(plan.steps[4].action, Action::DumpTtyContents { tty: Num::Lit(2) });

    // Wrong values fail the evaluation and say where and what.
    for (port, found) in [("n \"\\\"80\\\"\"", "a string"), ("n \"70000\"", "70000"), ("n \"80.5\"", "80.5")]
    {
        std::fs::write(&nums, computed_numbers_description("rust", port)).unwrap();
        generate(dir.path());
        let out = util::run(
            Command::new("nix-instantiate")
                .args(["--eval", "--strict", "--json"])
                .arg(dir.path().join("plan.nix")),
        );
        assert!(!out.status.success(), "{port} evaluates");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let want = format!(
            "tests/vm/nums.nix:10: `waitForOpenPort` must be an integer from 1 to 65535, but it evaluates to {found}"
        );
        assert!(stderr.contains(&want), "{port}: {stderr}");
    }

    std::fs::write(&nums, computed_numbers_description("python", "n \"3000\"")).unwrap();
    generate(dir.path());
    std::fs::write(dir.path().join("stand-in.nix"), TINY_STAND_IN.replace("nasty", "nums")).unwrap();
    let script = nix_eval_path(&dir.path().join("stand-in.nix"));
    let script = script.as_str().expect("testScript is a string").to_string();
    let fake = r#"
    def wait_for_open_port(self, port, addr="localhost", timeout=900):
        calls.append(["wait_for_open_port", port, timeout])
    def execute(self, command, timeout=None):
        calls.append(["execute", command, timeout])
        return 3, ""
    def succeed(self, command, timeout=None):
        calls.append(["succeed", timeout])
        return "body\n404"
    def dump_tty_contents(self, tty):
        calls.append(["dump_tty_contents", tty])
"#;
    let calls = run_on_fake_machine(fake, &script);
    assert_eq!(
        calls,
        serde_json::json!([
            ["wait_for_open_port", 3000, 3],
            ["execute", "exit 3", 120],
            ["succeed", 120],
            ["dump_tty_contents", "2"],
        ]),
        "{script}"
    );
}

/// The display steps' Python calls are the ones a hand-written stock
/// testScript makes: the recording fake Machine
/// (benches/import/fake_machine.py, bound to the stock signatures) sees the
/// same calls with the same arguments from both.
#[test]
fn display_steps_make_the_stock_calls() {
    if !util::require("python3", "runs the recording fake Machine") {
        return;
    }
    let case = copy_case("display");
    generate(case.path());
    let scripts = scripts_of_generated_file(&case.path().join(OUTPUT));
    let desktop = scripts.iter().find(|s| s.name == "desktop").expect("desktop test");
    // Written as a NixOS test author writes it.
    let original = r#"
start_all()
machine.wait_for_x()
machine.wait_for_window("^xterm$", timeout=60)
machine.send_chars("echo 'Hello, \"World\"!' > /tmp/out\n")
machine.send_key("ctrl-alt-f2")
machine.send_key("alt-f1")
machine.send_key("A")
machine.send_key("?")
machine.wait_for_text("Hello, [Ww]orld", timeout=120)
with subtest("the console"):
    machine.wait_until_tty_matches(2, "login: $")
    machine.dump_tty_contents(2)
    machine.screenshot("console")
"#;
    let dir = util::tempdir();
    let (orig, gen_) = (dir.path().join("original.py"), dir.path().join("generated.py"));
    std::fs::write(&orig, original).unwrap();
    std::fs::write(&gen_, &desktop.test_script).unwrap();
    let out = util::run(
        Command::new("python3")
            .arg(util::root().join("benches/import/fake_machine.py"))
            .args(["compare", "machine"])
            .args([&orig, &gen_]),
    );
    assert!(
        out.status.success(),
        "the fake Machine saw different calls:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A description function gets the flake's `self`, as a hand-written flake
/// test does: its packages and inputs reach the steps (and the nodes).
#[test]
fn description_functions_get_the_flakes_self() {
    if !util::require("nix-instantiate", "evaluates the generated plan") {
        return;
    }
    let dir = copy_case("single-node-rust");
    std::fs::remove_file(dir.path().join("tests/vm/health.nix")).unwrap();
    std::fs::write(
        dir.path().join("tests/vm/own.nix"),
        "{ self, pkgs, ... }:\n{\n  systems = [ \"x86_64-linux\" ];\n  nodes.machine = { };\n  steps = [ { succeed = \"${self.packages.${pkgs.system}.tool}/bin/tool\"; } ];\n}\n",
    )
    .unwrap();
    let text = generate(dir.path());
    assert!(text.contains("inherit pkgs lib self;"), "{text}");
    let plan_of = r#"
let
  checks = import ./nix/checks.generated.nix {
    self = { nixosModules = { }; packages.x86_64-linux.tool = "/nix/store/own-tool"; };
    nixvm-gen.lib.mkDriver = { plan, ... }: plan;
    nixpkgs.legacyPackages.x86_64-linux = {
      system = "x86_64-linux";
      testers.runNixOSTest = module: (module { config = { }; lib.mkForce = x: x; }).driver;
    };
  };
in
map (s: s.action.succeed.command) checks.x86_64-linux.own.steps
"#;
    std::fs::write(dir.path().join("plan.nix"), plan_of).unwrap();
    let got: Vec<String> = serde_json::from_value(nix_eval_path(&dir.path().join("plan.nix"))).unwrap();
    assert_eq!(got, ["/nix/store/own-tool/bin/tool"]);
}

/// The examples of docs/descriptions.md stay true: a block marked
/// `<!-- docs-example: PATH -->` is the fixture file PATH byte for byte (so
/// the goldens and evaluation tests above cover it), and one marked
/// `<!-- docs-example: validate -->` is accepted by `scan` as it stands.
#[test]
fn docs_examples_are_fixtures_or_validate() {
    const MARK: &str = "<!-- docs-example: ";
    let doc = std::fs::read_to_string(util::root().join("docs/descriptions.md")).unwrap();
    let mut rest = doc.as_str();
    let (mut fixtures, mut validated) = (0, 0);
    while let Some(at) = rest.find(MARK) {
        let after = &rest[at + MARK.len()..];
        let (what, after) = after.split_once(" -->").expect("the marker is closed");
        let start = after.find("```nix\n").expect("a ```nix block follows the marker") + "```nix\n".len();
        let len = after[start..].find("```").expect("the block is closed");
        let block = &after[start..start + len];
        if what == "validate" {
            let dir = copy_case("single-node-rust");
            std::fs::write(dir.path().join("tests/vm/health.nix"), block).unwrap();
            util::assert_code(&nixvm_gen(dir.path(), &["scan"]), 0);
            validated += 1;
        } else {
            let file = std::fs::read_to_string(util::root().join(what)).unwrap();
            assert_eq!(block, file, "docs/descriptions.md: the example differs from {what}");
            fixtures += 1;
        }
        rest = &after[start + len..];
    }
    assert!(
        fixtures >= 1 && validated >= 1,
        "docs-example markers found: {fixtures} fixture(s), {validated} validated"
    );
}
