//! Tests of `nixvm-gen import`: goldens of the descriptions written for the
//! fixtures in `tests/fixtures/import/` (shapes of real-world tests, written
//! for this project), the equivalence proof with the recording fake Machine
//! of `benches/import/fake_machine.py` (and that it does catch a
//! difference), `--strict`, refusing to overwrite, and bad input.

use std::path::Path;
use std::process::Command;

use crate::util;

/// Fixture files, each with a golden `tests/goldens/import/<case>.txt`.
const CASES: &[&str] = &[
    "seed-flake",
    "nixpkgs-style",
    "function-style",
    "several-tests",
    "expectations",
    "unittest-and-options",
    "python-steps",
    "console",
    "captures",
    "machine-api",
];

/// Tests of the fixtures that must convert fully.
const FULL: &[&str] = &[
    "narwals-are-awesome",
    "greeter",
    "echo-plain",
    "echo-reboot",
    "expectations",
    "unittest-and-options-checks",
    "console",
    "captures",
    "machine-api",
];

fn fixture(case: &str) -> String {
    format!("tests/fixtures/import/{case}.nix")
}

/// `nixvm-gen import` run from the repository root (goldens hold the paths
/// as given on the command line).
fn import(args: &[&str]) -> std::process::Output {
    let mut cmd = util::nixvm_gen();
    cmd.current_dir(util::root()).arg("import").args(args);
    util::run(&mut cmd)
}

#[test]
fn goldens_of_imported_descriptions() {
    for case in CASES {
        let out = import(&["--dry-run", "--out", "tests/vm", &fixture(case)]);
        util::assert_code(&out, 0);
        let text = format!(
            "{}\n---- report ----\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        util::golden(&util::root().join(format!("tests/goldens/import/{case}.txt")), &text);
    }
}

fn report(files: &[&str]) -> serde_json::Value {
    let mut args = vec!["--dry-run", "--format", "json", "--out", "tests/vm"];
    args.extend(files);
    let out = import(&args);
    util::assert_code(&out, 0);
    serde_json::from_slice(&out.stdout).expect("import --format json prints JSON")
}

/// Runs the fake Machine's comparison on a report; returns its verdicts.
fn check_import(report: &serde_json::Value) -> (bool, serde_json::Value) {
    let dir = util::tempdir();
    let path = dir.path().join("report.json");
    std::fs::write(&path, report.to_string()).unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(util::root().join("benches/import/fake_machine.py")).arg("check-import").arg(&path);
    let out = util::run(&mut cmd);
    let verdicts = serde_json::from_slice(&out.stdout).expect("fake_machine.py prints JSON");
    (out.status.success(), verdicts)
}

#[test]
fn fully_converted_fixtures_make_the_same_machine_calls() {
    if !util::require("python3", "the recording fake Machine is a Python script") {
        return;
    }
    let files: Vec<String> = CASES.iter().map(|c| fixture(c)).collect();
    let report = report(&files.iter().map(String::as_str).collect::<Vec<_>>());
    let tests = report["tests"].as_array().unwrap();
    let full: Vec<&str> =
        tests.iter().filter(|t| t["full"] == true).map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(full, FULL);
    let (ok, verdicts) = check_import(&report);
    assert!(ok, "call logs differ: {verdicts:#}");
    for v in verdicts.as_array().unwrap() {
        if v["full"] == true {
            assert_eq!(v["equal"], true, "{v:#}");
            assert!(v["calls"].as_u64().unwrap() >= 2, "{v:#}");
        }
    }
}

#[test]
fn the_fake_machine_catches_a_different_call_or_check() {
    if !util::require("python3", "the recording fake Machine is a Python script") {
        return;
    }
    let report = report(&[&fixture("seed-flake")]);
    let mutations = [
        ("\"Healthy\" in out", "\"Sick\" in out"),
        ("wait_for_open_port(3000", "wait_for_open_port(3001"),
        (
            "wait_for_unit(\"python-server\", timeout=300)",
            "wait_for_unit(\"python-server\", timeout=300)\nmachine.succeed(\"true\")",
        ),
        ("start_all()", "start_all()\nmachine.shutdown()\nmachine.start()"),
    ];
    for (from, to) in mutations {
        let mut mutated = report.clone();
        let script = mutated["tests"][0]["generated_script"].as_str().unwrap().to_string();
        assert!(script.contains(from), "{script}");
        mutated["tests"][0]["generated_script"] = script.replacen(from, to, 1).into();
        let (ok, verdicts) = check_import(&mutated);
        assert!(!ok, "the fake Machine missed `{from}` → `{to}`: {verdicts:#}");
        assert_eq!(verdicts[0]["equal"], false);
    }
}

/// Lists of `contains` and `notContains`: a dropped, swapped or inverted
/// check is a different call log.
#[test]
fn the_fake_machine_catches_a_changed_expectation_list() {
    if !util::require("python3", "the recording fake Machine is a Python script") {
        return;
    }
    let report = report(&[&fixture("expectations")]);
    let (ok, verdicts) = check_import(&report);
    assert!(ok, "call logs differ: {verdicts:#}");
    let mutations = [
        ("\"Listening on\" in out", "\"Listening\" in out"),
        ("\"error\" not in out", "\"error\" in out"),
        ("\"fatal\" not in out", "\"fatal\" in out"),
        ("if not (\"active (running)\" in out):", "if False:"),
    ];
    for (from, to) in mutations {
        let mut mutated = report.clone();
        let script = mutated["tests"][0]["generated_script"].as_str().unwrap().to_string();
        assert!(script.contains(from), "{script}");
        mutated["tests"][0]["generated_script"] = script.replacen(from, to, 1).into();
        let (ok, verdicts) = check_import(&mutated);
        assert!(!ok, "the fake Machine missed `{from}` → `{to}`: {verdicts:#}");
        assert_eq!(verdicts[0]["equal"], false);
    }
}

/// `t.assertIn`/`assertNotIn`/`assertRegex` and a port given as a string:
/// a changed needle, an inverted check, a dropped pattern or another port
/// is a different call log.
#[test]
fn the_fake_machine_catches_a_changed_unittest_check_or_port() {
    if !util::require("python3", "the recording fake Machine is a Python script") {
        return;
    }
    let report = report(&[&fixture("unittest-and-options")]);
    let (ok, verdicts) = check_import(&report);
    assert!(ok, "call logs differ: {verdicts:#}");
    assert_eq!(verdicts[0]["equal"], true, "{verdicts:#}");
    let mutations = [
        ("\"active (running)\" in out", "\"active\" in out"),
        ("\"failed\" not in out", "\"failed\" in out"),
        ("re.search(\"nginx/[0-9]+\", out)", "re.search(\"nginx\", out)"),
        ("wait_for_open_port(80,", "wait_for_open_port(8080,"),
        ("\"worker\" in out", "True"),
    ];
    for (from, to) in mutations {
        let mut mutated = report.clone();
        let script = mutated["tests"][0]["generated_script"].as_str().unwrap().to_string();
        assert!(script.contains(from), "{from} not in {script}");
        mutated["tests"][0]["generated_script"] = script.replacen(from, to, 1).into();
        let (ok, verdicts) = check_import(&mutated);
        assert!(!ok, "the fake Machine missed `{from}` → `{to}`: {verdicts:#}");
        assert_eq!(verdicts[0]["equal"], false);
    }
    // Python source pasted in by Nix is a leftover, never dropped.
    let pasted = &report["tests"][1];
    assert_eq!(pasted["full"], false);
    assert_eq!(pasted["leftovers"][0]["construct"], "Python code from Nix");
}

/// `--python-steps`: what cannot be converted runs as `python` steps of a
/// Python-backend description, with the definitions they use; the call log
/// equals the original's, and using another call's output (the fake
/// Machine's outputs name their call) or dropping a kept statement is
/// caught.
#[test]
fn python_steps_keep_what_cannot_be_converted_and_run_the_same() {
    let out = import(&["--python-steps", "--dry-run", "--out", "tests/vm", &fixture("python-steps")]);
    util::assert_code(&out, 0);
    let text = format!(
        "{}\n---- report ----\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    util::golden(&util::root().join("tests/goldens/import/python-steps-kept.txt"), &text);
    let out = import(&[
        "--python-steps",
        "--dry-run",
        "--format",
        "json",
        "--out",
        "tests/vm",
        &fixture("python-steps"),
    ]);
    util::assert_code(&out, 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let test = &report["tests"][0];
    assert_eq!((test["full"].as_bool(), test["runnable"].as_bool()), (Some(false), Some(true)), "{test:#}");
    assert!(test["leftovers"].as_array().unwrap().iter().all(|l| l["python"] == true));
    if !util::require("python3", "the recording fake Machine is a Python script") {
        return;
    }
    let (ok, verdicts) = check_import(&report);
    assert!(ok, "call logs differ: {verdicts:#}");
    assert_eq!(verdicts[0]["equal"], true, "{verdicts:#}");
    let mutations = [
        ("machine.succeed(f\"test -n {first}\")", "machine.succeed(f\"test -n {second}\")"),
        ("machine.send_chars(\"hello\\n\")", "pass"),
        ("sig = \"USR1\"", "sig = \"HUP\""),
    ];
    for (from, to) in mutations {
        let mut mutated = report.clone();
        let script = mutated["tests"][0]["generated_script"].as_str().unwrap().to_string();
        assert!(script.contains(from), "{from} not in {script}");
        mutated["tests"][0]["generated_script"] = script.replacen(from, to, 1).into();
        let (ok, verdicts) = check_import(&mutated);
        assert!(!ok, "the fake Machine missed `{from}` → `{to}`: {verdicts:#}");
        assert_eq!(verdicts[0]["equal"], false);
    }
}

/// Captures: the fake Machine substitutes a capture's text into later
/// commands only when the capturing step checks the output is plain, so a
/// dropped check, a swapped capture or a missing preamble is caught.
#[test]
fn the_fake_machine_catches_a_wrong_capture() {
    if !util::require("python3", "the recording fake Machine is a Python script") {
        return;
    }
    let report = report(&[&fixture("captures")]);
    assert_eq!(report["tests"][0]["full"], true, "{:#}", report["tests"][0]);
    let (ok, verdicts) = check_import(&report);
    assert!(ok, "call logs differ: {verdicts:#}");
    let script = report["tests"][0]["generated_script"].as_str().unwrap().to_string();
    let guard = "re.search(\"^[A-Za-z0-9._/:@%+=,~-]*\\\\n*$\", out)";
    let mutations = [
        (guard, "True"),
        ("--token ${TOKEN}", "--token ${PORT}"),
        ("for __c in TOKEN PORT; do", "for __c in PORT; do"),
        ("capture(server.shared_dir, \"TOKEN\", out)", "pass"),
    ];
    for (from, to) in mutations {
        let mut mutated = report.clone();
        assert!(script.contains(from), "{from} not in {script}");
        mutated["tests"][0]["generated_script"] = script.replacen(from, to, 1).into();
        let (ok, verdicts) = check_import(&mutated);
        assert!(!ok, "the fake Machine missed `{from}` → `{to}`: {verdicts:#}");
    }
}

#[test]
fn leftovers_are_reported_with_file_line_construct_and_why() {
    let report = report(&[&fixture("nixpkgs-style")]);
    let test = &report["tests"][0];
    assert_eq!(test["full"], false);
    let leftovers = test["leftovers"].as_array().unwrap();
    let send_keys =
        leftovers.iter().find(|l| l["construct"] == "Machine.send_keys").expect("send_keys reported");
    assert_eq!(send_keys["line"], 55);
    assert!(send_keys["why"].as_str().unwrap().contains("no step"), "{send_keys}");
    // `system` is an argument of the test's function that a description's
    // function does not receive; `pkgs` is carried as a Nix value.
    let nix_value = leftovers.iter().find(|l| l["why"].as_str().unwrap().contains("${system}")).unwrap();
    assert_eq!(nix_value["source"], "server.succeed(\"echo ${system}\")");
    assert!(!leftovers.iter().any(|l| l["source"].as_str().unwrap().contains("kvstore-check")));
    // Kept in the description as a TODO with the original line.
    let description = test["description"].as_str().unwrap();
    assert!(description.contains("#   server.send_keys(\"ctrl-alt-delete\")"), "{description}");
    assert!(
        description.starts_with("# Imported") && description.contains("\n{ pkgs, ... }:\nlet\n"),
        "{description}"
    );
    assert!(
        description.contains("{ succeed = \"${pkgs.kvstore}/bin/kvstore-check\"; node = \"server\"; }"),
        "{description}"
    );
}

#[test]
fn strict_fails_and_writes_nothing() {
    let dir = util::tempdir();
    let out_dir = dir.path().join("tests/vm");
    let mut cmd = util::nixvm_gen();
    cmd.current_dir(util::root())
        .args(["import", "--strict", "--out"])
        .arg(&out_dir)
        .args([fixture("nixpkgs-style"), fixture("seed-flake")]);
    let out = util::run(&mut cmd);
    util::assert_code(&out, 1);
    assert!(!out_dir.exists(), "--strict wrote something");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("nixpkgs-style.nix:55: not converted: Machine.send_keys")
    );
}

#[test]
fn writes_descriptions_and_refuses_to_overwrite() {
    let dir = util::tempdir();
    let out_dir = dir.path().join("tests/vm");
    let run = |extra: &[&str]| {
        let mut cmd = util::nixvm_gen();
        cmd.current_dir(util::root())
            .arg("import")
            .arg("--out")
            .arg(&out_dir)
            .args(extra)
            .arg(fixture("seed-flake"));
        util::run(&mut cmd)
    };
    util::assert_code(&run(&[]), 0);
    let written = out_dir.join("narwals-are-awesome.nix");
    let text = std::fs::read_to_string(&written).unwrap();
    assert!(text.contains("{ waitForUnit = \"python-server\"; }"), "{text}");
    std::fs::write(&written, "# edited\n").unwrap();
    let again = run(&[]);
    util::assert_code(&again, 2);
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "# edited\n");
    util::assert_code(&run(&["--force"]), 0);
    assert_eq!(std::fs::read_to_string(&written).unwrap(), text);
}

#[test]
fn bad_input_names_file_line_and_column() {
    let dir = util::tempdir();
    let broken = dir.path().join("broken.nix");
    std::fs::write(&broken, "{\n  testScript = ''\n    x\n  '';\n  nodes = {;\n}\n").unwrap();
    let none = dir.path().join("none.nix");
    std::fs::write(&none, "{ a = 1; }\n").unwrap();
    let deep = dir.path().join("deep.nix");
    std::fs::write(&deep, format!("{}{}", "[".repeat(5000), "]".repeat(5000))).unwrap();
    let script = dir.path().join("script.nix");
    std::fs::write(&script, "{ nodes.m = { }; testScript = \"m.succeed(\\\"x\\\"\"; }\n").unwrap();
    // rnix's tokenizer would rescan this run for minutes (limits::tokens).
    let costly = dir.path().join("costly.nix");
    std::fs::write(&costly, format!("{{\n  x = [ 1{} ];\n}}\n", ".1".repeat(100_000))).unwrap();
    for (file, needle) in [
        (&broken, "broken.nix:5:"),
        (&none, "none.nix: no test found"),
        (&deep, "nested more than 100 levels"),
        (&costly, "line 2: a run of 200001 name and path characters"),
    ] {
        let mut cmd = util::nixvm_gen();
        cmd.arg("import").arg("--dry-run").arg(file);
        let out = util::run(&mut cmd);
        util::assert_code(&out, 2);
        assert!(String::from_utf8_lossy(&out.stderr).contains(needle), "expected `{needle}`");
    }
    // A testScript that is not Python is a leftover, not a crash.
    let mut cmd = util::nixvm_gen();
    cmd.arg("import").arg("--dry-run").arg(&script);
    let out = util::run(&mut cmd);
    util::assert_code(&out, 0);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid Python"));
}

#[test]
fn imported_descriptions_are_accepted_by_scan_and_generate() {
    // The imported description is a valid description of a flake: `check`
    // and `scan` take it without complaint.
    let dir = util::tempdir();
    let flake = dir.path();
    std::fs::write(
        flake.join("flake.nix"),
        "{ outputs = { self, ... }: { nixosModules.default = ./m.nix; }; }\n",
    )
    .unwrap();
    std::fs::write(flake.join("m.nix"), "{ }\n").unwrap();
    let mut cmd = util::nixvm_gen();
    cmd.arg("--flake").arg(flake).arg("import");
    for case in CASES {
        cmd.arg(util::root().join(fixture(case)));
    }
    util::assert_code(&util::run(&mut cmd), 0);
    let mut scan = util::nixvm_gen();
    scan.arg("--flake").arg(flake).arg("scan");
    let out = util::run(&mut scan);
    util::assert_code(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("narwals-are-awesome"));
    // Every description, functions and Nix values included, generates.
    let mut generate = util::nixvm_gen();
    generate.arg("--flake").arg(flake).arg("generate");
    util::assert_code(&util::run(&mut generate), 0);
    let generated = std::fs::read_to_string(flake.join("nix/checks.generated.nix")).unwrap();
    for name in ["narwals-are-awesome", "greeter", "kvstore", "echo-plain", "echo-reboot"] {
        assert!(generated.contains(name), "{name} missing from the generated checks");
    }
    let _ = Path::new("");
}
