//! Tests of the scaffold area (see main.rs): `init`, `new`, `wire`, the
//! pre-commit hooks, and the small CLI extras (completions, man, version).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::util::{self, assert_code, fixture, nixvm_gen, run};

/// Shape fixtures `wire` must edit (each has `flake.nix` and `expected.nix`).
const WIRE_CASES: &[&str] = &[
    "plain",
    "let-in",
    "rec",
    "flake-utils",
    "flake-parts",
    "flake-parts-flake-set",
    "existing-checks",
    "comments",
    "ident-param",
];
/// Fixtures `wire` must refuse (each has `flake.nix` and `expected.stderr`).
const REFUSE_CASES: &[&str] = &["refuse-import", "refuse-nested-checks"];

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A temp dir holding a copy of `tests/fixtures/wire/<case>/flake.nix`.
fn wire_case(case: &str) -> tempfile::TempDir {
    let dir = util::tempdir();
    std::fs::copy(fixture(&format!("wire/{case}/flake.nix")), dir.path().join("flake.nix")).unwrap();
    dir
}

fn wire_in(dir: &Path, extra: &[&str]) -> std::process::Output {
    run(nixvm_gen().current_dir(dir).args(["--flake", ".", "wire"]).args(extra))
}

/// Comment tokens of a Nix file, in order.
fn comments(text: &str) -> Vec<String> {
    rnix::Root::parse(text)
        .syntax()
        .descendants_with_tokens()
        .filter(|t| t.kind() == rnix::SyntaxKind::TOKEN_COMMENT)
        .map(|t| t.to_string())
        .collect()
}

#[test]
fn wire_matches_goldens_and_is_lossless_and_idempotent() {
    for case in WIRE_CASES {
        let dir = wire_case(case);
        let original = read(&dir.path().join("flake.nix"));
        let out = wire_in(dir.path(), &[]);
        assert_code(&out, 0);
        let wired = read(&dir.path().join("flake.nix"));
        util::golden(&fixture(&format!("wire/{case}/expected.nix")), &wired);

        assert!(rnix::Root::parse(&wired).errors().is_empty(), "{case}: wired flake does not parse");
        assert_eq!(comments(&original), comments(&wired), "{case}: comments changed");
        // Lossless: the original text survives as-is; the edit only inserts.
        let diff = similar::TextDiff::from_chars(&original, &wired);
        let deleted: String = diff
            .iter_all_changes()
            .filter(|c| c.tag() == similar::ChangeTag::Delete)
            .map(|c| c.value().to_string())
            .collect();
        assert!(deleted.is_empty(), "{case}: wire deleted {deleted:?}");

        let again = wire_in(dir.path(), &[]);
        assert_code(&again, 0);
        assert!(stderr(&again).contains("already wired"), "{case}: second run is not a no-op");
        assert_eq!(read(&dir.path().join("flake.nix")), wired, "{case}: second run changed the file");
    }
}

#[test]
fn wire_dry_run_prints_a_diff_and_writes_nothing() {
    let dir = wire_case("plain");
    let before = read(&dir.path().join("flake.nix"));
    let out = wire_in(dir.path(), &["--dry-run"]);
    assert_code(&out, 0);
    let diff = stdout(&out);
    assert!(diff.starts_with("--- a/flake.nix\n+++ b/flake.nix\n@@"), "{diff}");
    assert!(diff.contains("+  inputs.nixvm-gen.url = \"github:"), "{diff}");
    assert!(diff.contains("+    checks = import ./nix/checks.generated.nix {"), "{diff}");
    assert!(stderr(&out).contains("run `nixvm-gen generate`"), "{}", stderr(&out));
    assert_eq!(read(&dir.path().join("flake.nix")), before);
}

#[test]
fn wire_refuses_unsafe_shapes_with_instructions() {
    for case in REFUSE_CASES {
        let dir = wire_case(case);
        let before = read(&dir.path().join("flake.nix"));
        let out = wire_in(dir.path(), &[]);
        assert_code(&out, 2);
        assert_eq!(read(&dir.path().join("flake.nix")), before, "{case}: refused but changed the file");
        util::golden(&fixture(&format!("wire/{case}/expected.stderr")), &stderr(&out));
    }
}

#[test]
fn wire_without_flake_is_a_usage_error() {
    let dir = util::tempdir();
    let out = wire_in(dir.path(), &[]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("no flake.nix"), "{}", stderr(&out));
}

/// Evaluates every wired fixture with real Nix (offline): inputs are the
/// stand-in nixpkgs and the stand-ins in `tests/fixtures/wire/_stand-in/`.
#[test]
fn wired_flakes_evaluate_with_nix() {
    let stand_in = util::root().join("tests/stand-in/nixpkgs/flake.nix");
    if !stand_in.exists() {
        eprintln!("\n!!! SKIPPED: {} does not exist yet\n", stand_in.display());
        return;
    }
    if !util::require("nix", "evaluating wired flakes") {
        return;
    }
    let stubs = fixture("wire/_stand-in");
    for case in WIRE_CASES {
        let dir = util::tempdir();
        let src = read(&fixture(&format!("wire/{case}/expected.nix")));
        std::fs::write(dir.path().join("flake.nix"), &src).unwrap();
        std::fs::write(dir.path().join("module.nix"), "{ }\n").unwrap();
        std::fs::create_dir_all(dir.path().join("nix")).unwrap();
        std::fs::copy(stubs.join("checks.generated.nix"), dir.path().join("nix/checks.generated.nix"))
            .unwrap();

        let mut cmd = Command::new("nix");
        cmd.args(["--extra-experimental-features", "nix-command flakes", "eval", "--json"])
            .arg(format!("path:{}#checks", dir.path().display()))
            .args(["--apply", "c: builtins.mapAttrs (s: builtins.attrNames) c", "--no-write-lock-file"])
            .args(["--override-input", "nixpkgs"])
            .arg(format!("path:{}", stand_in.parent().unwrap().display()))
            .args(["--override-input", "nixvm-gen"])
            .arg(format!("path:{}", stubs.join("nixvm-gen").display()));
        for input in ["flake-utils", "flake-parts"] {
            if src.contains(&format!("{input}.url")) {
                cmd.args(["--override-input", input]).arg(format!("path:{}", stubs.join(input).display()));
            }
        }
        let out = run(&mut cmd);
        assert_code(&out, 0);
        let checks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let x86: Vec<&str> = checks["x86_64-linux"]
            .as_array()
            .unwrap_or_else(|| panic!("{case}: no x86_64-linux checks in {checks}"))
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(x86.contains(&"wired"), "{case}: generated checks missing: {checks}");
        if src.contains("\"lint\"") {
            assert!(x86.contains(&"lint"), "{case}: existing checks lost: {checks}");
        }
    }
}

// --- init -----------------------------------------------------------------

fn init(dir: &Path, extra: &[&str]) -> std::process::Output {
    run(nixvm_gen().arg("init").arg(dir).args(extra))
}

/// Every file `init` writes, relative to the project.
const INIT_FILES: &[&str] = &[
    "flake.nix",
    "modules/web.nix",
    "tests/vm/web.nix",
    ".pre-commit-config.yaml",
    "README.md",
    ".gitignore",
    "nix/checks.generated.nix",
];

#[test]
fn init_creates_a_project_that_checks_and_is_wired() {
    let tmp = util::tempdir();
    let dir = tmp.path().join("demo");
    let out = init(&dir, &["--service", "web", "--port", "8080"]);
    assert_code(&out, 0);
    for f in INIT_FILES {
        assert!(dir.join(f).is_file(), "missing {f}");
    }
    for f in INIT_FILES.iter().filter(|f| f.ends_with(".nix")) {
        let text = read(&dir.join(f));
        assert!(rnix::Root::parse(&text).errors().is_empty(), "{f} does not parse:\n{text}");
    }
    let flake = read(&dir.join("flake.nix"));
    assert!(flake.contains("nixosModules.web = ./modules/web.nix;"), "{flake}");
    assert!(read(&dir.join("modules/web.nix")).contains("default = 8080;"));
    assert!(read(&dir.join("tests/vm/web.nix")).contains("waitForOpenPort = 8080;"));

    let check = run(nixvm_gen().arg("--flake").arg(&dir).arg("check"));
    assert_code(&check, 0);

    let scan = run(nixvm_gen().arg("--flake").arg(&dir).args(["scan", "--json"]));
    assert_code(&scan, 0);
    let scan: serde_json::Value = serde_json::from_slice(&scan.stdout).unwrap();
    assert_eq!(scan["tests"][0]["name"], "web", "{scan}");
    assert!(scan["modules"].as_array().unwrap().iter().any(|m| m["name"] == "web"), "{scan}");

    let wire = run(nixvm_gen().arg("--flake").arg(&dir).arg("wire"));
    assert_code(&wire, 0);
    assert!(stderr(&wire).contains("already wired"), "{}", stderr(&wire));
    assert_eq!(read(&dir.join("flake.nix")), flake);
}

/// A copy of this repository's tracked files outside `tests/` (its flake
/// and Nix glue), to stand for the `nixvm-gen` input without copying
/// `target/` into the store.
fn nixvm_gen_flake_copy(dest: &Path) -> bool {
    let out = run(Command::new("git").current_dir(util::root()).args(["ls-files", "-z"]));
    if !out.status.success() {
        eprintln!("\n!!! SKIPPED: {} is not a git checkout\n", util::root().display());
        return false;
    }
    for rel in out.stdout.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let rel = Path::new(std::str::from_utf8(rel).unwrap());
        if rel.starts_with("tests") || !util::root().join(rel).is_file() {
            continue;
        }
        let to = dest.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(util::root().join(rel), to).unwrap();
    }
    true
}

/// The project `init` writes evaluates with real Nix: every description
/// becomes `checks.<system>.<name>`, a `vm-test-run-<name>` derivation
/// (stand-in nixpkgs, this repository as the `nixvm-gen` input).
#[test]
fn init_project_evaluates_with_nix() {
    let stand_in = util::root().join("tests/stand-in/nixpkgs");
    if !stand_in.join("flake.nix").exists() || !util::require("nix", "evaluating the init project") {
        return;
    }
    let tmp = util::tempdir();
    let dir = tmp.path().join("demo");
    assert_code(&init(&dir, &[]), 0);
    let glue = tmp.path().join("nixvm-gen");
    if !nixvm_gen_flake_copy(&glue) {
        return;
    }
    let out = run(Command::new("nix")
        .args(["--extra-experimental-features", "nix-command flakes", "eval", "--json"])
        .arg(format!("path:{}#checks", dir.display()))
        .args([
            "--apply",
            "c: builtins.mapAttrs (s: builtins.mapAttrs (n: d: d.name)) c",
            "--no-write-lock-file",
        ])
        .args(["--override-input", "nixpkgs"])
        .arg(format!("path:{}", stand_in.display()))
        .args(["--override-input", "nixvm-gen"])
        .arg(format!("path:{}", glue.display())));
    assert_code(&out, 0);
    let checks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(checks["x86_64-linux"]["demo"], "vm-test-run-demo", "{checks}");
    assert_eq!(checks["aarch64-linux"]["demo"], "vm-test-run-demo", "{checks}");
}

#[test]
fn init_honours_custom_paths_and_input_name() {
    let tmp = util::tempdir();
    let dir = tmp.path().join("demo");
    let flags = ["--output", "ci/vm-checks.nix", "--tests-dir", "vmtests", "--input-name", "vmgen"];
    assert_code(&run(nixvm_gen().args(flags).arg("init").arg(&dir)), 0);
    assert!(dir.join("vmtests/demo.nix").is_file() && dir.join("ci/vm-checks.nix").is_file());
    let flake = read(&dir.join("flake.nix"));
    assert!(flake.contains("checks = import ./ci/vm-checks.nix {"), "{flake}");
    assert!(flake.contains("vmgen = inputs.vmgen;") && flake.contains("vmgen.url = "), "{flake}");
    assert_code(&run(nixvm_gen().args(flags).arg("--flake").arg(&dir).arg("check")), 0);
    let wire = run(nixvm_gen().args(flags).arg("--flake").arg(&dir).arg("wire"));
    assert_code(&wire, 0);
    assert!(stderr(&wire).contains("already wired"), "{}", stderr(&wire));
}

/// Without DIR, `init` creates the project where `--flake` points, as every
/// other command reads the flake there (not in the working directory).
#[test]
fn init_without_dir_uses_the_flake_option() {
    let tmp = util::tempdir();
    let cwd = tmp.path().join("cwd");
    let dir = tmp.path().join("demo");
    std::fs::create_dir(&cwd).unwrap();
    assert_code(&run(nixvm_gen().current_dir(&cwd).arg("--flake").arg(&dir).arg("init")), 0);
    assert!(dir.join("flake.nix").is_file() && dir.join("tests/vm/demo.nix").is_file());
    assert!(std::fs::read_dir(&cwd).unwrap().next().is_none(), "init wrote into the working directory");
}

#[test]
fn init_refuses_to_overwrite_and_writes_nothing() {
    let tmp = util::tempdir();
    let dir = tmp.path().join("demo");
    std::fs::create_dir_all(dir.join("tests/vm")).unwrap();
    std::fs::write(dir.join("README.md"), "mine\n").unwrap();
    std::fs::write(dir.join("tests/vm/demo.nix"), "{ }\n").unwrap();
    let out = init(&dir, &[]);
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("README.md") && err.contains("tests/vm/demo.nix"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert!(!dir.join("flake.nix").exists(), "init wrote flake.nix despite refusing");
    assert_eq!(read(&dir.join("README.md")), "mine\n");

    let forced = init(&dir, &["--force"]);
    assert_code(&forced, 0);
    assert!(read(&dir.join("README.md")).starts_with("# demo"));
    assert!(dir.join("flake.nix").is_file());
}

#[test]
fn init_rejects_bad_names() {
    let tmp = util::tempdir();
    for args in [
        &["--name", "Bad_Name"][..],
        &["--service", "1svc"],
        &["--module", "a.b"],
        &["--port", "0"],
        &["--name", "let"],
        &["--module", "if"],
    ] {
        let dir = tmp.path().join("x");
        let out = init(&dir, args);
        assert_code(&out, 2);
        assert!(stderr(&out).contains("invalid"), "{}", stderr(&out));
        assert!(!dir.exists(), "init created {} for {args:?}", dir.display());
    }
    // The directory name is the default project name.
    let out = init(&tmp.path().join("Not Valid"), &[]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--name"), "{}", stderr(&out));
}

/// An input name the generated file cannot take as an argument (`self`,
/// `nixpkgs`, …) is the user's mistake for `init` and `wire` too, refused
/// before anything is written, as `generate` refuses it.
#[test]
fn init_and_wire_refuse_input_names_generate_refuses() {
    let tmp = util::tempdir();
    let dir = tmp.path().join("x");
    for name in ["nixpkgs", "self", "in"] {
        let out = run(nixvm_gen().args(["--input-name", name, "init"]).arg(&dir));
        assert_code(&out, 2);
        assert!(stderr(&out).contains(&format!("invalid input name `{name}`")), "{}", stderr(&out));
        assert!(!dir.exists(), "init created {} for {name}", dir.display());
    }
    let dir = wire_case("plain");
    let original = read(&dir.path().join("flake.nix"));
    let out = wire_in(dir.path(), &["--input-name", "self"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("invalid input name `self`"), "{}", stderr(&out));
    assert_eq!(read(&dir.path().join("flake.nix")), original);
}

// --- new ------------------------------------------------------------------

fn init_project() -> (tempfile::TempDir, PathBuf) {
    let tmp = util::tempdir();
    let dir = tmp.path().join("demo");
    assert_code(&init(&dir, &[]), 0);
    (tmp, dir)
}

#[test]
fn new_writes_a_valid_skeleton_with_every_step_kind() {
    let (_tmp, dir) = init_project();
    let out = run(nixvm_gen().arg("--flake").arg(&dir).args(["new", "smoke", "--nodes", "client,server"]));
    assert_code(&out, 0);
    let text = read(&dir.join("tests/vm/smoke.nix"));
    for key in nixvm_gen::spec::ACTION_KEYS {
        assert!(
            text.contains(&format!("# {{ {key} =")) || text.contains(&format!("#   {key} =")),
            "no {key}:\n{text}"
        );
    }
    assert!(text.contains("nodes.client =") && text.contains("nodes.server ="), "{text}");

    assert_code(&run(nixvm_gen().arg("--flake").arg(&dir).arg("generate")), 0);
    let scan = run(nixvm_gen().arg("--flake").arg(&dir).args(["scan", "--json"]));
    assert_code(&scan, 0);
    let scan: serde_json::Value = serde_json::from_slice(&scan.stdout).unwrap();
    let smoke =
        scan["tests"].as_array().unwrap().iter().find(|t| t["name"] == "smoke").expect("smoke in scan");
    assert_eq!(smoke["nodes"], serde_json::json!(["client", "server"]), "{smoke}");
    assert_eq!(smoke["steps"], 1, "{smoke}");
}

#[test]
fn new_with_a_module_imports_it() {
    let (_tmp, dir) = init_project();
    let out = run(nixvm_gen().arg("--flake").arg(&dir).args(["new", "only-demo", "--module", "demo"]));
    assert_code(&out, 0);
    assert!(read(&dir.join("tests/vm/only-demo.nix")).contains("modules = [ \"demo\" ];"));
    assert_code(&run(nixvm_gen().arg("--flake").arg(&dir).arg("generate")), 0);

    let out = run(nixvm_gen().arg("--flake").arg(&dir).args(["new", "other", "--module", "dmeo"]));
    assert_code(&out, 2);
    assert!(stderr(&out).contains("did you mean `demo`?"), "{}", stderr(&out));
    assert!(!dir.join("tests/vm/other.nix").exists());
}

/// Node names the test script cannot use (`log`, `class`, `vlan1`) are
/// refused by `new` as validation would refuse them in the written file.
#[test]
fn new_refuses_node_names_the_test_script_reserves() {
    let (_tmp, dir) = init_project();
    for nodes in ["web,log", "class", "vlan1"] {
        let out = run(nixvm_gen().arg("--flake").arg(&dir).args(["new", "extra", "--nodes", nodes]));
        assert_code(&out, 2);
        assert!(stderr(&out).contains("invalid node name"), "{nodes}: {}", stderr(&out));
        assert!(!dir.join("tests/vm/extra.nix").exists(), "{nodes}: written anyway");
    }
    let out = run(nixvm_gen().arg("--flake").arg(&dir).args(["new", "extra", "--nodes", "web-1,db"]));
    assert_code(&out, 0);
    assert_code(&run(nixvm_gen().arg("--flake").arg(&dir).arg("generate")), 0);
}

#[test]
fn new_refuses_duplicates() {
    let (_tmp, dir) = init_project();
    // Same file name as the test `init` made.
    let out = run(nixvm_gen().arg("--flake").arg(&dir).args(["new", "demo"]));
    assert_code(&out, 2);
    assert!(stderr(&out).contains("tests/vm/demo.nix"), "{}", stderr(&out));

    // Same `name` in a file with another stem.
    let renamed = read(&dir.join("tests/vm/demo.nix")).replace("name = \"demo\";", "name = \"dup\";");
    std::fs::write(dir.join("tests/vm/other.nix"), renamed).unwrap();
    let out = run(nixvm_gen().arg("--flake").arg(&dir).args(["new", "dup"]));
    assert_code(&out, 2);
    assert!(stderr(&out).contains("already exists in tests/vm/other.nix"), "{}", stderr(&out));
    assert!(!dir.join("tests/vm/dup.nix").exists());
}

// --- diagnostics colour -------------------------------------------------------

/// A project whose only description has an unknown step key.
fn broken_project() -> (tempfile::TempDir, PathBuf) {
    let (tmp, dir) = init_project();
    let path = dir.join("tests/vm/demo.nix");
    std::fs::write(&path, read(&path).replace("waitForUnit", "waitForUnitt")).unwrap();
    (tmp, dir)
}

#[test]
fn check_diagnostics_have_no_colour_when_piped() {
    let (_tmp, dir) = broken_project();
    // util::nixvm_gen sets NO_COLOR; here stderr is a pipe and NO_COLOR is unset.
    let out = run(nixvm_gen().env_remove("NO_COLOR").arg("--flake").arg(&dir).arg("check"));
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("error[") && err.contains("tests/vm/demo.nix:"), "{err}");
    assert!(!err.contains('\u{1b}'), "colour codes on a pipe: {err:?}");
}

/// Runs `nixvm-gen check` on a pseudo-terminal (util-linux `script`).
fn check_on_tty(dir: &Path, no_color: bool) -> String {
    let bin = env!("CARGO_BIN_EXE_nixvm-gen");
    let env = if no_color { "env NO_COLOR=1" } else { "env -u NO_COLOR" };
    let cmd = format!("{env} '{bin}' --flake '{}' check", dir.display());
    let out = run(Command::new("script").args(["-qec", &cmd, "/dev/null"]));
    stdout(&out)
}

#[test]
fn check_diagnostics_honour_no_color_on_a_terminal() {
    if !util::require("script", "running nixvm-gen on a pseudo-terminal (util-linux)") {
        return;
    }
    let (_tmp, dir) = broken_project();
    let plain = check_on_tty(&dir, true);
    assert!(plain.contains("error["), "{plain}");
    assert!(!plain.contains('\u{1b}'), "colour despite NO_COLOR: {plain:?}");
    // Control: the same run on a terminal without NO_COLOR is coloured, so
    // the assertion above can fail.
    let coloured = check_on_tty(&dir, false);
    assert!(coloured.contains('\u{1b}'), "no colour on a terminal: {coloured:?}");
}

// --- pre-commit -------------------------------------------------------------

static PRE_COMMIT: Mutex<Option<Option<PathBuf>>> = Mutex::new(None);

/// `pre-commit` from PyPI in a venv under the target dir (installed once,
/// cached across runs). `None` (after a loud skip) when it cannot be had
/// locally; on CI that is a failure.
fn pre_commit() -> Option<PathBuf> {
    let mut guard = PRE_COMMIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = guard.as_ref() {
        return found.clone();
    }
    let found = install_pre_commit();
    *guard = Some(found.clone());
    found
}

fn install_pre_commit() -> Option<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pre-commit-venv");
    let bin = venv.join("bin/pre-commit");
    if bin.is_file() {
        return Some(bin);
    }
    if !util::require("python3", "installing pre-commit from PyPI") {
        return None;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let skip = |why: String| {
        if ci {
            panic!("pre-commit is required on CI: {why}");
        }
        eprintln!("\n!!! SKIPPED: cannot install pre-commit ({why})\n");
        None
    };
    let out = run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    if !out.status.success() {
        return skip("python3 -m venv failed (install python3-venv)".into());
    }
    let out = run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", "pre-commit"]));
    if !out.status.success() || !bin.is_file() {
        let _ = std::fs::remove_dir_all(&venv);
        return skip("pip install pre-commit failed".into());
    }
    Some(bin)
}

fn git(dir: &Path, args: &[&str]) {
    let out = run(Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false"])
        .args(args));
    assert_code(&out, 0);
}

/// `pre-commit run --all-files` in `dir` with nixvm-gen on PATH.
fn pre_commit_run(pre_commit: &Path, dir: &Path) -> std::process::Output {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_nixvm-gen")).parent().unwrap().to_path_buf();
    let path = std::env::join_paths(
        [bin_dir].into_iter().chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    run(Command::new(pre_commit)
        .current_dir(dir)
        .env("PATH", path)
        .env("PRE_COMMIT_HOME", PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pre-commit-home"))
        .env_remove("NO_COLOR")
        .args(["run", "--all-files"]))
}

fn combined(out: &std::process::Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

/// Commits a fresh project, runs the hooks (pass), edits the description
/// without regenerating (fail with the diff), then breaks it (fail with a
/// rustc-style diagnostic, no colour).
fn exercise_hooks(pre_commit: &Path, dir: &Path) {
    git(dir, &["init", "-q"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-qm", "init"]);
    let out = pre_commit_run(pre_commit, dir);
    assert_code(&out, 0);
    assert!(combined(&out).contains("Passed"), "{}", combined(&out));

    let test = dir.join("tests/vm/demo.nix");
    let original = read(&test);
    std::fs::write(&test, original.replace("waitForOpenPort = 3000;", "waitForOpenPort = 3999;")).unwrap();
    let out = pre_commit_run(pre_commit, dir);
    assert_code(&out, 1);
    let text = combined(&out);
    assert!(text.contains("--- a/nix/checks.generated.nix") && text.contains("@@"), "no diff: {text}");
    assert!(text.lines().any(|l| l.starts_with('+') && l.contains("3999")), "diff lacks the change: {text}");

    std::fs::write(&test, original.replace("waitForUnit", "waitForUnitt")).unwrap();
    let out = pre_commit_run(pre_commit, dir);
    assert_code(&out, 1);
    let text = combined(&out);
    assert!(text.contains("error[") && text.contains("tests/vm/demo.nix:"), "no diagnostic: {text}");
    assert!(!text.contains('\u{1b}'), "colour in hook output: {text:?}");
}

#[test]
fn pre_commit_local_hook_from_init() {
    let Some(pc) = pre_commit() else { return };
    if !util::require("git", "pre-commit needs a git repository") {
        return;
    }
    let (_tmp, dir) = init_project();
    exercise_hooks(&pc, &dir);
}

/// The repository's `.pre-commit-hooks.yaml`, used as a remote hook repo
/// (a local git repository holding a copy of it, so it works offline).
#[test]
fn pre_commit_hooks_file_of_this_repo() {
    let Some(pc) = pre_commit() else { return };
    if !util::require("git", "pre-commit needs a git repository") {
        return;
    }
    let (tmp, dir) = init_project();
    let hooks_repo = tmp.path().join("hooks-repo");
    std::fs::create_dir_all(&hooks_repo).unwrap();
    std::fs::copy(util::root().join(".pre-commit-hooks.yaml"), hooks_repo.join(".pre-commit-hooks.yaml"))
        .unwrap();
    git(&hooks_repo, &["init", "-q"]);
    git(&hooks_repo, &["add", "-A"]);
    git(&hooks_repo, &["commit", "-qm", "hooks"]);
    let rev = run(Command::new("git").current_dir(&hooks_repo).args(["rev-parse", "HEAD"]));
    let rev = stdout(&rev).trim().to_string();
    std::fs::write(
        dir.join(".pre-commit-config.yaml"),
        format!(
            "repos:\n  - repo: {}\n    rev: {rev}\n    hooks:\n      - id: nixvm-gen-check\n",
            hooks_repo.display()
        ),
    )
    .unwrap();
    exercise_hooks(&pc, &dir);
}

#[test]
fn pre_commit_hooks_file_declares_both_hooks() {
    let text = read(&util::root().join(".pre-commit-hooks.yaml"));
    for needle in [
        "- id: nixvm-gen-check",
        "entry: nixvm-gen check",
        "- id: nixvm-gen-generate",
        "entry: nixvm-gen generate",
        "pass_filenames: false",
        "files: \\.nix$",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in .pre-commit-hooks.yaml");
    }
}

// --- CLI extras -------------------------------------------------------------

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(nixvm_gen().args(["completions", shell]));
        assert_code(&out, 0);
        let text = stdout(&out);
        assert!(text.contains("nixvm-gen") && text.contains("wire"), "{shell}: {text}");
    }
}

#[test]
fn man_page_is_roff() {
    let out = run(nixvm_gen().arg("man"));
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.contains(".TH nixvm-gen") && text.contains("init"), "{text}");
}

#[test]
fn version_is_the_crate_version() {
    let out = run(nixvm_gen().arg("--version"));
    assert_code(&out, 0);
    assert_eq!(stdout(&out).trim(), format!("nixvm-gen {}", env!("CARGO_PKG_VERSION")));
}

/// `examples/init` is what `nix flake init -t` copies (`templates.default`
/// in flake.nix), so it must stay exactly what `nixvm-gen init` writes.
/// Refresh with `UPDATE_GOLDENS=1` after changing the scaffold templates.
#[test]
fn flake_template_is_what_init_writes() {
    let tmp = util::tempdir();
    let dir = tmp.path().join("my-service");
    let out = init(&dir, &["--name", "my-service"]);
    util::assert_code(&out, 0);
    let template = util::root().join("examples/init");
    let mut written = Vec::new();
    collect_files(&dir, &dir, &mut written);
    written.sort();
    let mut committed = Vec::new();
    collect_files(&template, &template, &mut committed);
    committed.sort();
    if std::env::var_os("UPDATE_GOLDENS").is_none() {
        assert_eq!(written, committed, "examples/init has other files than `init` writes");
    }
    assert!(!written.is_empty());
    for rel in &written {
        util::golden(&template.join(rel), &read(&dir.join(rel)));
    }
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(root, &path, out);
        } else {
            out.push(path.strip_prefix(root).unwrap().to_path_buf());
        }
    }
}
