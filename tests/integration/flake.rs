//! Tests of the flake area (see main.rs): `nixvm-gen scan` on one fixture
//! flake per supported form (`tests/fixtures/flakes/<form>/`), compared with
//! the golden `scan.json` next to it, plus the evaluator fallback
//! (`scan --eval`) against the real Nix.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util;

fn flake(form: &str) -> PathBuf {
    util::fixture(&format!("flakes/{form}"))
}

/// Runs `scan --json` on a fixture; returns (exit code, stdout JSON, stderr).
fn scan(dir: &Path, extra: &[&str]) -> (Option<i32>, Value, String) {
    scan_with_path(dir, extra, None)
}

/// [`scan`] with `PATH` set to `path` only (to hide or fake `nix`).
fn scan_with_path(dir: &Path, extra: &[&str], path: Option<&Path>) -> (Option<i32>, Value, String) {
    let mut cmd = util::nixvm_gen();
    cmd.arg("scan").arg("--json").arg("--flake").arg(dir).args(extra);
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    let out = util::run(&mut cmd);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (out.status.code(), json, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Scans a fixture, checks its golden and returns the report.
fn scan_golden(form: &str) -> (Option<i32>, Value, String) {
    let dir = flake(form);
    let (code, json, stderr) = scan(&dir, &[]);
    assert_ne!(json, Value::Null, "scan printed no JSON");
    let text = serde_json::to_string_pretty(&json).expect("json") + "\n";
    util::golden(&dir.join("scan.json"), &text);
    (code, json, stderr)
}

/// (name, kind) of every module in a report.
fn modules(json: &Value) -> Vec<(String, String)> {
    json["modules"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    (
                        m["name"].as_str().unwrap_or("").to_string(),
                        m["kind"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

fn unresolved(json: &Value) -> Vec<String> {
    json["unresolved"]
        .as_array()
        .map(|us| us.iter().map(|u| u["what"].as_str().unwrap_or("").to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn plain_attrset() {
    let (code, json, _) = scan_golden("plain");
    assert_eq!(code, Some(0));
    assert_eq!(
        modules(&json),
        pairs(&[
            ("default", "alias"),
            ("firewall", "inline"),
            ("health-check", "path"),
            ("metrics", "import")
        ])
    );
    assert_eq!(json["modules"][0]["target"], "health-check");
    assert_eq!(json["modules"][2]["source"], "modules/health-check.nix");
    assert_eq!(
        (json["modules"][2]["line"].as_u64(), json["modules"][2]["column"].as_u64()),
        (Some(9), Some(7))
    );
    assert!(unresolved(&json).is_empty());
}

#[test]
fn inputs_argument_and_let_bindings() {
    let (code, json, _) = scan_golden("inputs-arg");
    assert_eq!(code, Some(0));
    assert_eq!(modules(&json), pairs(&[("client", "import"), ("default", "alias"), ("server", "path")]));
    assert_eq!(json["modules"][2]["source"], "nix/server.nix");
}

#[test]
fn let_rec_and_update_chains() {
    let (code, json, _) = scan_golden("let-rec-update");
    assert_eq!(code, Some(0));
    // `//` is shallow: the last `nixosModules` replaces the earlier ones
    // whole (Nix lists only `web`).
    assert_eq!(modules(&json), pairs(&[("web", "import")]));
    assert_eq!(json["modules"][0]["source"], "modules/web-v2.nix");
    assert!(unresolved(&json).is_empty(), "{json}");
}

#[test]
fn flake_utils() {
    let (code, json, _) = scan_golden("flake-utils");
    assert_eq!(code, Some(0));
    assert_eq!(modules(&json), pairs(&[("default", "alias"), ("hello", "path")]));
    assert!(unresolved(&json).is_empty(), "{json}");
}

#[test]
fn flake_parts_with_a_function_module_and_imports() {
    let (code, json, _) = scan_golden("flake-parts-fn");
    assert_eq!(code, Some(0));
    assert_eq!(
        modules(&json),
        pairs(&[
            ("client", "importApply"),
            ("default", "alias"),
            ("monitoring", "path"),
            ("server", "importApply")
        ])
    );
    assert_eq!(json["modules"][2]["file"], "parts/monitoring.nix");
    assert_eq!(json["modules"][2]["source"], "modules/monitoring.nix");
}

#[test]
fn flake_parts_with_an_attrset_module() {
    let (code, json, _) = scan_golden("flake-parts-set");
    assert_eq!(code, Some(0));
    assert_eq!(modules(&json), pairs(&[("backup", "path"), ("default", "alias")]));
}

#[test]
fn module_set_imported_from_a_file() {
    let (code, json, _) = scan_golden("imported-set");
    assert_eq!(code, Some(0));
    assert_eq!(
        modules(&json),
        pairs(&[
            ("default", "alias"),
            ("dns", "path"),
            ("ntp", "inline"),
            ("router", "import"),
            ("vpn", "path")
        ])
    );
    assert_eq!(json["modules"][1]["file"], "nix/modules/default.nix");
    assert_eq!(json["modules"][2]["file"], "nix/modules/extra.nix");
    assert_eq!(json["modules"][4]["source"], "nix/modules/vpn/default.nix");
}

#[test]
fn legacy_singular_module_is_a_warning() {
    let (code, json, stderr) = scan_golden("legacy");
    assert_eq!(code, Some(0));
    assert_eq!(modules(&json), pairs(&[("current", "path")]));
    assert!(stderr.contains("legacy_nixos_module"), "{stderr}");
    assert!(stderr.contains("nixosModules.default"), "{stderr}");
}

#[test]
fn computed_modules_are_unresolved_never_guessed() {
    let (code, json, _) = scan_golden("computed");
    assert_eq!(code, Some(0));
    // The `mkModules` set is replaced whole by the `//` (shallow update);
    // `fromOther`'s name is known, its value is another flake's.
    assert_eq!(modules(&json), pairs(&[("fromOther", "computed"), ("static", "path")]));
    assert_eq!(unresolved(&json), vec!["nixosModules.${builtins.head names}", "nixosModules.broken"]);
    let reasons: Vec<&str> =
        json["unresolved"].as_array().into_iter().flatten().filter_map(|u| u["reason"].as_str()).collect();
    assert!(
        reasons[1].contains("self.nixosModules.missing`, which the flake does not define"),
        "{reasons:?}"
    );
}

/// Aliases that only point at each other would make Nix recurse forever:
/// they are unresolved, and an alias into the cycle points at nothing.
#[test]
fn alias_cycles_are_unresolved() {
    let (code, json, _) = scan_golden("alias-cycle");
    assert_eq!(code, Some(0));
    assert_eq!(modules(&json), pairs(&[("web", "path")]));
    assert_eq!(unresolved(&json), vec!["nixosModules.default", "nixosModules.main", "nixosModules.extra"]);
    let reasons: Vec<&str> =
        json["unresolved"].as_array().into_iter().flatten().filter_map(|u| u["reason"].as_str()).collect();
    assert!(reasons[0].contains("cycle (default -> main -> default)"), "{reasons:?}");
    assert!(reasons[2].contains("self.nixosModules.main"), "{reasons:?}");
}

#[test]
fn syntax_errors_are_located_diagnostics() {
    let dir = flake("syntax-error");
    let mut cmd = util::nixvm_gen();
    cmd.args(["scan", "--json", "--format", "json", "--flake"]).arg(&dir);
    let out = util::run(&mut cmd);
    util::assert_code(&out, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let diags: Value = serde_json::from_str(stderr.lines().next().unwrap_or("")).expect("diagnostics JSON");
    let first = &diags["diagnostics"][0];
    assert_eq!(first["code"], "nix_syntax");
    assert_eq!(first["location"]["file"], "flake.nix");
    assert_eq!(first["location"]["line"], 4);
    // The human form names file:line:column.
    let mut cmd = util::nixvm_gen();
    cmd.args(["scan", "--flake"]).arg(&dir);
    let out = util::run(&mut cmd);
    util::assert_code(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("flake.nix:4:"));
}

#[test]
fn missing_outputs_is_an_error() {
    let (code, _, stderr) = scan(&flake("no-outputs"), &[]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("flake_no_outputs"), "{stderr}");
}

#[test]
fn missing_flake_is_exit_code_2() {
    let dir = util::tempdir();
    let (code, _, stderr) = scan(dir.path(), &[]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("no flake.nix"), "{stderr}");
}

/// Every fixture, truncated at many points, and some garbage: `scan` never
/// crashes (exit codes 0 or 2 only).
#[test]
fn truncated_flakes_never_crash() {
    let tmp = util::tempdir();
    let mut inputs: Vec<String> = Vec::new();
    for form in ["plain", "flake-parts-fn", "imported-set", "computed", "let-rec-update"] {
        let text = std::fs::read_to_string(flake(form).join("flake.nix")).expect("fixture");
        let cuts: Vec<usize> = (0..text.len()).step_by(37).filter(|i| text.is_char_boundary(*i)).collect();
        inputs.extend(cuts.into_iter().map(|i| text[..i].to_string()));
    }
    inputs.extend(
        ["{{{{", "}", "\u{0}\u{1}", "''${", "{ outputs = x: x x; }", "{ outputs = { }: rec { a = a; }; }"]
            .map(String::from),
    );
    for (i, text) in inputs.iter().enumerate() {
        let dir = tmp.path().join(i.to_string());
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("flake.nix"), text).expect("write");
        let mut cmd = util::nixvm_gen();
        cmd.args(["scan", "--json", "--flake"]).arg(&dir);
        let out = cmd.output().expect("run");
        assert!(
            matches!(out.status.code(), Some(0 | 2)),
            "scan crashed on {text:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// --- the evaluator fallback --------------------------------------------------

/// A directory with a fake `nix` that records being called, for tests of
/// when the evaluator is (not) asked.
fn fake_path(script: &str) -> tempfile::TempDir {
    let dir = util::tempdir();
    let nix = dir.path().join("nix");
    std::fs::write(&nix, format!("#!/bin/sh\n{script}\n")).expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&nix, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

#[test]
fn eval_resolves_modules_built_by_a_function() {
    let dir = flake("eval-list");
    let (code, json, _) = scan_golden("eval-list");
    assert_eq!(code, Some(0));
    assert!(modules(&json).is_empty());
    assert_eq!(unresolved(&json), vec!["nixosModules"]);
    if !util::require("nix", "scan --eval asks the real Nix evaluator") {
        return;
    }
    for flag in ["--eval", "--eval=auto", "--eval=always"] {
        let (code, json, _) = scan(&dir, &[flag]);
        assert_eq!(code, Some(0));
        assert_eq!(modules(&json), pairs(&[("a", "evaluated"), ("b", "evaluated")]), "{flag}");
        assert!(unresolved(&json).is_empty(), "{flag}: {json}");
        // Located at the place that needed the evaluator.
        assert_eq!(json["modules"][0]["file"], "flake.nix");
        assert_eq!(json["modules"][0]["line"], 6);
    }
    assert!(!dir.join("flake.lock").exists(), "--eval must not write a lock file into the flake");
}

#[test]
fn eval_keeps_static_entries() {
    if !util::require("nix", "scan --eval asks the real Nix evaluator") {
        return;
    }
    // A copy (Nix copies `path:` flakes into the store; keep the tree clean).
    let tmp = util::tempdir();
    util::copy_dir(&flake("plain"), tmp.path());
    // Drop the github input: this test is about merging, not the network.
    let text = std::fs::read_to_string(tmp.path().join("flake.nix")).expect("read");
    let text = text
        .replace("inputs.nixpkgs.url = \"github:NixOS/nixpkgs/nixos-24.05\";", "")
        .replace("nixpkgs, ", "");
    std::fs::write(tmp.path().join("flake.nix"), text).expect("write");
    let (code, json, _) = scan(tmp.path(), &["--eval"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        modules(&json),
        pairs(&[
            ("default", "alias"),
            ("firewall", "inline"),
            ("health-check", "path"),
            ("metrics", "import")
        ])
    );
}

#[test]
fn eval_auto_does_not_call_nix_when_everything_is_static() {
    let marker = util::tempdir();
    let called = marker.path().join("called");
    let bin = fake_path(&format!("touch '{}'; exit 1", called.display()));
    let (code, _, _) = scan_with_path(&flake("plain"), &["--eval=auto"], Some(bin.path()));
    assert_eq!(code, Some(0));
    assert!(!called.exists(), "auto mode called nix although nothing was unresolved");
}

#[test]
fn eval_without_nix() {
    let empty = util::tempdir();
    // auto: says so, keeps the static result.
    let (code, json, stderr) = scan_with_path(&flake("eval-list"), &["--eval=auto"], Some(empty.path()));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(unresolved(&json), vec!["nixosModules"]);
    assert!(stderr.contains("not installed"), "{stderr}");
    // always: exit code 3.
    let (code, _, stderr) = scan_with_path(&flake("eval-list"), &["--eval=always"], Some(empty.path()));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("not installed"), "{stderr}");
}

#[test]
fn eval_of_a_flake_that_needs_the_network_says_so() {
    if !util::require("nix", "scan --eval asks the real Nix evaluator") {
        return;
    }
    let (code, _, stderr) = scan(&flake("eval-network"), &["--eval"]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("cannot be evaluated offline"), "{stderr}");
    assert!(stderr.contains("nix eval"), "the command line is shown: {stderr}");
    assert!(stderr.contains("flake-registry /dev/null"), "{stderr}");
    // auto keeps the static results and warns.
    let (code, json, stderr) = scan(&flake("eval-network"), &["--eval=auto"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("warning: keeping the static results"), "{stderr}");
    assert_eq!(unresolved(&json), vec!["nixosModules"]);
}

#[test]
fn eval_description_replaces_nodes_and_quotes_paths() {
    if !util::require("nix-instantiate", "descriptions that are not static data are evaluated by Nix") {
        return;
    }
    let tmp = util::tempdir();
    // A name that would break naive quoting inside a Nix expression.
    let dir = tmp.path().join("it's a \"dir\" ${x}");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join("web.nix");
    std::fs::write(
        &file,
        r#"let port = 8000 + 80; in {
  name = "web";
  nodes.server = { pkgs, ... }: { services.nginx.enable = true; };
  steps = map (n: { wait_for_open_port = port; node = n; }) [ "server" ];
}"#,
    )
    .expect("write");
    let value =
        nixvm_gen::eval::eval_description(&file, std::time::Duration::from_secs(60)).expect("evaluates");
    assert_eq!(
        value,
        serde_json::json!({
            "name": "web",
            "nodes": { "server": null },
            "steps": [ { "wait_for_open_port": 8080, "node": "server" } ],
        })
    );
    std::fs::write(&file, "{ nodes = throw \"boom\"; }").expect("write");
    let err =
        nixvm_gen::eval::eval_description(&file, std::time::Duration::from_secs(60)).expect_err("fails");
    let msg = err.to_string();
    assert!(msg.contains("boom") && msg.contains("nix-instantiate"), "{msg}");
}

#[test]
fn eval_reads_descriptions_that_are_not_plain_data() {
    let dir = flake("eval-description");
    let (code, json, stderr) = scan_golden("eval-description");
    assert_eq!(code, Some(2));
    assert!(stderr.contains("not_static"), "{stderr}");
    let names = |json: &Value| -> Vec<String> {
        json["tests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str().map(String::from))
            .collect()
    };
    // Static parsing keeps what it could read of `ports` (no steps), or nothing.
    let ports_steps = json["tests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["name"] == "ports")
        .map(|t| t["steps"].clone());
    assert!(matches!(ports_steps, None | Some(Value::Number(_))), "{json}");
    assert_ne!(ports_steps, Some(serde_json::json!(2)), "static parsing cannot know the steps: {json}");
    if !util::require("nix-instantiate", "descriptions that are not plain data are evaluated by Nix") {
        return;
    }
    for flag in ["--eval", "--eval=auto"] {
        let (code, json, stderr) = scan(&dir, &[flag]);
        assert_eq!(code, Some(0), "{flag}: {stderr}");
        assert!(!stderr.contains("not_static"), "{flag}: {stderr}");
        assert_eq!(names(&json), vec!["ports", "static"], "{flag}");
        assert_eq!(json["tests"][0]["steps"], 2, "{flag}");
        assert_eq!(json["tests"][0]["nodes"], serde_json::json!(["server"]), "{flag}");
    }
}

#[test]
fn nixvm_tests_output_names_description_files() {
    let (code, json, stderr) = scan_golden("nixvm-tests");
    assert_eq!(code, Some(0), "{stderr}");
    let files: Vec<&str> =
        json["tests"].as_array().into_iter().flatten().filter_map(|t| t["file"].as_str()).collect();
    assert_eq!(files, vec!["tests/vm/boot.nix", "other/upgrade.nix"]);
}

#[test]
fn references_to_other_outputs_through_self() {
    let (code, json, stderr) = scan_golden("self-reference");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(modules(&json), pairs(&[("mixins-telegraf", "path"), ("server", "path")]));
    assert_eq!(json["modules"][1]["file"], "nixos/default.nix");
    assert_eq!(json["modules"][1]["source"], "nixos/server/default.nix");
}

#[test]
fn eval_description_without_nodes_stays_without() {
    if !util::require("nix-instantiate", "descriptions that are not plain data are evaluated by Nix") {
        return;
    }
    let tmp = util::tempdir();
    let file = tmp.path().join("t.nix");
    std::fs::write(&file, "{ steps = [ ]; }").expect("write");
    let value =
        nixvm_gen::eval::eval_description(&file, std::time::Duration::from_secs(60)).expect("evaluates");
    assert_eq!(value, serde_json::json!({ "steps": [] }));
}

// --- issue 9: Nix's own semantics, one fixture per reproduction ---------------
// Each expectation below is what Nix itself lists (checked with
// `nix-instantiate --eval` on the fixture where no real input is needed).

/// (name, kind) pairs and unresolved `what`s of a fixture's golden scan.
fn scan_expect(form: &str, expected: &[(&str, &str)], expected_unresolved: &[&str]) -> Value {
    let (code, json, stderr) = scan_golden(form);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(modules(&json), pairs(expected), "{json}");
    assert_eq!(unresolved(&json), expected_unresolved, "{json}");
    json
}

#[test]
fn update_is_shallow_in_chains() {
    // Nix: [ "extra" "newest" ]; `old` and `new` are replaced whole.
    scan_expect("update-shallow", &[("extra", "path"), ("newest", "path")], &[]);
}

#[test]
fn flake_parts_every_form() {
    let json = scan_expect(
        "parts-every-form",
        &[
            ("a", "path"),
            ("applied", "inline"),
            ("b", "path"),
            ("c", "path"),
            ("default", "alias"),
            ("inherited", "path"),
            ("viaAliasedLib", "path"),
            ("web", "import"),
        ],
        &[],
    );
    let file = |name: &str| {
        json["modules"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["name"] == name)
            .map(|m| m["file"].clone())
    };
    assert_eq!(file("a"), Some("modules/default.nix".into()));
    assert_eq!(file("applied"), Some("parts/applied.nix".into()));
    assert_eq!(file("viaAliasedLib"), Some("parts/aliased-lib.nix".into()));
}

#[test]
fn aliases_through_rec_and_let_are_aliases() {
    let json = scan_expect(
        "aliases-rec-let",
        &[("client", "alias"), ("copy", "path"), ("default", "alias"), ("foo", "path"), ("server", "inline")],
        &[],
    );
    assert_eq!(json["modules"][0]["target"], "server");
    assert_eq!(json["modules"][2]["target"], "foo");
}

#[test]
fn nested_module_sets_are_not_modules() {
    let json = scan_expect(
        "module-set",
        &[("default", "alias"), ("home-manager", "moduleSet"), ("impermanence", "path"), ("tuned", "inline")],
        &[],
    );
    assert_eq!(json["modules"][1]["members"], serde_json::json!(["impermanence"]));
    // The text form says what it is.
    let mut cmd = util::nixvm_gen();
    cmd.args(["scan", "--flake"]).arg(flake("module-set"));
    let out = util::run(&mut cmd);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("moduleSet (impermanence; not a module, tests do not import it)"), "{text}");
}

#[test]
fn duplicate_attributes_are_errors_with_both_locations() {
    let dir = flake("duplicate-attribute");
    let (code, json, stderr) = scan(&dir, &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(json["failed"], true, "{json}");
    assert_eq!(json["errors"][0]["code"], "duplicate_attribute");
    assert!(stderr.contains("attribute `nixosModules.a` is defined twice"), "{stderr}");
    assert!(stderr.contains("flake.nix:5:7"), "{stderr}");
    assert!(stderr.contains("3 |     nixosModules.a = ./a.nix;"), "the first definition is shown: {stderr}");
    assert!(stderr.contains("first defined here"), "{stderr}");
}

#[test]
fn statically_known_names_with_computed_values() {
    let json =
        scan_expect("computed-names", &[("db", "import"), ("default", "computed"), ("web", "path")], &[]);
    assert!(json["modules"][1]["reason"].as_str().unwrap_or("").contains("moduleWithSystem"), "{json}");
    assert_eq!(json["modules"][0]["file"], "flake.nix");
    assert_eq!(json["modules"][2]["source"], "web.nix");
}

#[test]
fn with_scopes_are_looked_into() {
    let json = scan_expect("with-scope", &[("db", "computed"), ("web", "path")], &[]);
    let reason = json["modules"][0]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("`db` may come from `with other;`"), "{reason}");
    assert!(!reason.contains("not bound"), "{reason}");
}

#[test]
fn a_broken_flake_says_one_thing_and_scan_json_says_it_failed() {
    let dir = flake("syntax-error");
    let mut cmd = util::nixvm_gen();
    cmd.args(["scan", "--flake"]).arg(&dir);
    let out = util::run(&mut cmd);
    util::assert_code(&out, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("error[").count(), 1, "{stderr}");
    assert!(stderr.contains("1 problem(s) in flake.nix"), "{stderr}");
    assert!(!stderr.contains("test descriptions"), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "no report for a flake that does not parse");
    let (code, json, _) = scan(&dir, &[]);
    assert_eq!(code, Some(2));
    assert_eq!(json["failed"], true, "{json}");
    assert_eq!(json["errors"].as_array().map(Vec::len), Some(1), "{json}");
}

#[test]
fn long_names_keep_the_table_aligned() {
    let tmp = util::tempdir();
    let long = "a-module-name-that-is-much-longer-than-twenty-characters";
    std::fs::write(
        tmp.path().join("flake.nix"),
        format!("{{ outputs = {{ self }}: {{ nixosModules = {{ {long} = ./m.nix; b = ./m.nix; }}; }}; }}"),
    )
    .expect("write");
    std::fs::write(tmp.path().join("m.nix"), "{ }").expect("write");
    let mut cmd = util::nixvm_gen();
    cmd.args(["scan", "--flake"]).arg(tmp.path());
    let out = util::run(&mut cmd);
    let text = String::from_utf8_lossy(&out.stdout);
    let columns: Vec<usize> =
        text.lines().filter(|l| l.contains("path (")).filter_map(|l| l.find("path (")).collect();
    assert_eq!(columns.len(), 2, "{text}");
    assert_eq!(columns[0], columns[1], "kinds line up:\n{text}");
}
