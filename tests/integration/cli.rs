//! Tests of the cli area (see main.rs): the real `nixvm-gen` binary run on
//! copies of `examples/health` and `tests/fixtures/cli/*` in temporary
//! directories — scan's JSON shape, generate/check round trips, diagnostics,
//! exit codes, output hygiene (colour, closed pipes, quiet/verbose), the
//! evaluator fallback (`--eval`) — plus an in-process property test of
//! load + render on random descriptions.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::util;

const OUTPUT: &str = "nix/checks.generated.nix";

/// A copy of `examples/health` in a fresh temporary directory.
fn health() -> tempfile::TempDir {
    copy(&util::root().join("examples/health"))
}

/// A copy of `tests/fixtures/cli/<name>` in a fresh temporary directory.
fn cli_fixture(name: &str) -> tempfile::TempDir {
    copy(&util::fixture(&format!("cli/{name}")))
}

fn copy(from: &Path) -> tempfile::TempDir {
    let dir = util::tempdir();
    util::copy_dir(from, dir.path());
    dir
}

/// `nixvm-gen --flake <dir> <args…>`, run to completion.
fn gen_in(dir: &Path, args: &[&str]) -> Output {
    util::run(util::nixvm_gen().arg("--flake").arg(dir).args(args))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Names of the entries of a directory, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn assert_no_panic(out: &Output) {
    let err = stderr(out);
    assert!(!err.contains("panicked"), "the binary panicked:\n{err}");
}

// ---------------------------------------------------------------- scan

#[test]
fn scan_json_of_the_example_has_the_documented_shape() {
    let dir = health();
    let out = gen_in(dir.path(), &["scan", "--json"]);
    util::assert_code(&out, 0);
    let json: Value = serde_json::from_slice(&out.stdout).expect("scan --json prints one JSON object");
    let modules = json["modules"].as_array().expect("modules is a list");
    assert_eq!(modules.len(), 1, "{json}");
    let m = &modules[0];
    assert_eq!(m["name"], "default");
    assert_eq!(m["file"], "flake.nix");
    assert_eq!(m["kind"], "import");
    // `      nixosModules.default = import ./service.nix;` is line 16 of the example.
    let flake = std::fs::read_to_string(dir.path().join("flake.nix")).expect("read flake.nix");
    let line = m["line"].as_u64().expect("line is a number") as usize;
    let column = m["column"].as_u64().expect("column is a number") as usize;
    let text = flake.lines().nth(line - 1).expect("line exists");
    assert!(text[column - 1..].starts_with("default"), "{line}:{column} points at `{text}`");

    let tests = json["tests"].as_array().expect("tests is a list");
    assert_eq!(tests.len(), 1, "{json}");
    let t = &tests[0];
    assert_eq!(t["name"], "health");
    assert_eq!(t["file"], "tests/vm/health.nix");
    assert_eq!(t["nodes"], serde_json::json!(["machine"]));
    assert_eq!(t["steps"], 3);
    assert_eq!(json["unresolved"], serde_json::json!([]));
}

#[test]
fn scan_text_lists_modules_and_tests() {
    let dir = health();
    let out = gen_in(dir.path(), &["scan"]);
    util::assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.starts_with("modules:\n"), "{text}");
    assert!(text.contains("default") && text.contains("flake.nix:16:"), "{text}");
    assert!(text.contains("health") && text.contains("3 step(s)"), "{text}");
}

#[test]
fn symlinked_descriptions_count() {
    let dir = health();
    std::fs::create_dir(dir.path().join("shared")).expect("mkdir");
    std::fs::rename(dir.path().join("tests/vm/health.nix"), dir.path().join("shared/health.nix"))
        .expect("mv");
    std::os::unix::fs::symlink("../../shared/health.nix", dir.path().join("tests/vm/health.nix"))
        .expect("ln");
    let out = gen_in(dir.path(), &["scan", "--json"]);
    util::assert_code(&out, 0);
    let json: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["tests"][0]["name"], "health", "{json}");
    util::assert_code(&gen_in(dir.path(), &["check"]), 0);
}

// ---------------------------------------------------- generate and check

#[test]
fn generate_then_check_and_a_second_generate_changes_nothing() {
    let dir = health();
    let out_path = dir.path().join(OUTPUT);
    std::fs::remove_file(&out_path).expect("start without the generated file");

    let out = gen_in(dir.path(), &["generate"]);
    util::assert_code(&out, 0);
    let err = stderr(&out);
    assert!(err.starts_with("wrote ") && err.contains("nix/checks.generated.nix (1 test(s))"), "{err}");
    let first = std::fs::read(&out_path).expect("generate wrote the file");
    util::assert_code(&gen_in(dir.path(), &["check"]), 0);

    // Age the file so that any rewrite shows in its mtime.
    let old_time = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(&out_path)
        .expect("open")
        .set_modified(old_time)
        .expect("touch");
    let before = std::fs::metadata(&out_path).expect("stat");

    let out = gen_in(dir.path(), &["generate"]);
    util::assert_code(&out, 0);
    assert!(stderr(&out).contains("is up to date"), "{}", stderr(&out));
    let after = std::fs::metadata(&out_path).expect("stat");
    assert_eq!(std::fs::read(&out_path).expect("read"), first, "second generate changed the bytes");
    assert_eq!(after.ino(), before.ino(), "an up-to-date file was replaced");
    assert_eq!(after.modified().expect("mtime"), old_time, "an up-to-date file was rewritten");
    assert_eq!(listing(&dir.path().join("nix")), vec!["checks.generated.nix"]);
}

#[test]
fn an_edited_description_makes_check_fail_with_a_diff() {
    let dir = health();
    let desc = dir.path().join("tests/vm/health.nix");
    let text = std::fs::read_to_string(&desc).expect("read");
    assert!(text.contains("waitForOpenPort = 3000;"));
    std::fs::write(&desc, text.replace("waitForOpenPort = 3000;", "waitForOpenPort = 3001;")).expect("write");
    let generated = std::fs::read(dir.path().join(OUTPUT)).expect("read");

    let out = gen_in(dir.path(), &["check"]);
    util::assert_code(&out, 1);
    let diff = stdout(&out);
    assert!(diff.starts_with("--- a/nix/checks.generated.nix\n+++ b/nix/checks.generated.nix\n"), "{diff}");
    assert!(diff.contains("\n-            machine.wait_for_open_port(3000, timeout=300)\n"), "{diff}");
    assert!(diff.contains("\n+            machine.wait_for_open_port(3001, timeout=300)\n"), "{diff}");
    assert!(diff.contains("\n@@ "), "{diff}");
    let err = stderr(&out);
    let hint = format!("is stale; run `nixvm-gen --flake {} generate`", dir.path().display());
    assert!(err.contains(&hint), "{err}");
    assert_eq!(std::fs::read(dir.path().join(OUTPUT)).expect("read"), generated, "check wrote the file");

    // generate repairs it.
    util::assert_code(&gen_in(dir.path(), &["generate"]), 0);
    util::assert_code(&gen_in(dir.path(), &["check"]), 0);
}

#[test]
fn check_on_a_file_without_the_header_names_a_command_that_works() {
    let dir = health();
    std::fs::write(dir.path().join(OUTPUT), "{ hand-written = true; }\n").expect("write");
    let out = gen_in(dir.path(), &["check"]);
    util::assert_code(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("was not written by nixvm-gen"), "{err}");
    // `generate` alone refuses this file, so the hint must not be just that.
    util::assert_code(&gen_in(dir.path(), &["generate"]), 2);
    let hint =
        err.split("run `").nth(1).and_then(|rest| rest.split('`').next()).expect("a command in the hint");
    assert!(hint.starts_with("rm -- "), "{hint}");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_nixvm-gen")).parent().expect("bin dir").to_owned();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let status = std::process::Command::new("sh").arg("-c").arg(hint).env("PATH", path).status().expect("sh");
    assert!(status.success(), "{hint}");
    util::assert_code(&gen_in(dir.path(), &["check"]), 0);
}

#[test]
fn check_as_json() {
    let dir = health();
    let json =
        |out: &Output| -> Value { serde_json::from_slice(&out.stdout).expect("one JSON object on stdout") };
    let out = gen_in(dir.path(), &["--format", "json", "check"]);
    util::assert_code(&out, 0);
    assert_eq!(json(&out), serde_json::json!({ "file": OUTPUT, "stale": false, "diff": "" }));

    let desc = dir.path().join("tests/vm/health.nix");
    let text = std::fs::read_to_string(&desc).expect("read");
    std::fs::write(&desc, text.replace("3000", "3001")).expect("write");
    let out = gen_in(dir.path(), &["check", "--format=json"]);
    util::assert_code(&out, 1);
    let value = json(&out);
    assert_eq!(value["stale"], true);
    assert_eq!(value["file"], OUTPUT);
    let diff = value["diff"].as_str().expect("diff is text");
    assert!(diff.starts_with("--- a/nix/checks.generated.nix\n"), "{diff}");
    assert!(diff.contains("+            machine.wait_for_open_port(3001, timeout=300)\n"), "{diff}");
}

#[test]
fn check_without_a_generated_file_diffs_from_empty() {
    let dir = health();
    std::fs::remove_file(dir.path().join(OUTPUT)).expect("remove");
    let out = gen_in(dir.path(), &["check"]);
    util::assert_code(&out, 1);
    let diff = stdout(&out);
    let mut lines = diff.lines();
    assert_eq!(lines.next(), Some("--- a/nix/checks.generated.nix"));
    assert_eq!(lines.next(), Some("+++ b/nix/checks.generated.nix"));
    let hunk = lines.next().unwrap_or_default();
    assert!(hunk.starts_with("@@ -0,0 +1,"), "{hunk}");
    assert!(lines.all(|l| l.starts_with('+')), "a diff from empty only adds: {diff}");
    assert!(!dir.path().join(OUTPUT).exists(), "check must not write");
}

#[test]
fn quiet_and_verbose() {
    let dir = health();
    std::fs::remove_file(dir.path().join(OUTPUT)).expect("remove");
    let out = gen_in(dir.path(), &["--quiet", "generate"]);
    util::assert_code(&out, 0);
    assert_eq!(stderr(&out), "", "--quiet prints nothing on success");
    assert!(dir.path().join(OUTPUT).exists());
    let out = gen_in(dir.path(), &["generate", "-q"]);
    assert_eq!(stderr(&out), "", "-q after the subcommand too");

    let out = gen_in(dir.path(), &["check"]);
    util::assert_code(&out, 0);
    assert_eq!(stderr(&out), "", "check is silent when up to date");
    let out = gen_in(dir.path(), &["check", "--verbose"]);
    util::assert_code(&out, 0);
    assert!(stderr(&out).contains("nix/checks.generated.nix is up to date"), "{}", stderr(&out));

    // Errors are still printed with --quiet.
    std::fs::write(
        dir.path().join("tests/vm/health.nix"),
        "{ nodes.machine = { }; steps = [ { nope = 1; } ]; }",
    )
    .expect("write");
    let out = gen_in(dir.path(), &["--quiet", "generate"]);
    util::assert_code(&out, 2);
    assert!(stderr(&out).contains("error["), "{}", stderr(&out));
}

// --------------------------------------------------------- bad input

#[test]
fn invalid_descriptions_are_all_reported_and_nothing_is_written() {
    let dir = cli_fixture("broken");
    // A previous generated file must survive untouched.
    let previous = "# an older generated file\n{ ... }: { }\n";
    std::fs::create_dir_all(dir.path().join("nix")).expect("mkdir");
    std::fs::write(dir.path().join(OUTPUT), previous).expect("write");
    let before = listing(&dir.path().join("nix"));

    let out = gen_in(dir.path(), &["generate"]);
    util::assert_code(&out, 2);
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    // rustc style: `error[code]: message`, the location, the line, a caret.
    assert!(err.contains("error[unknown_step_key]: unknown key `waitForUnti` in a step"), "{err}");
    assert!(err.contains("error[wrong_type]: `waitForOpenPort` must be an integer"), "{err}");
    assert_location(&err, "tests/vm/typo.nix:6:7");
    assert_location(&err, "tests/vm/wrong-type.nix:4:33");
    assert!(err.contains("{ waitForUnti = \"nginx.service\"; }"), "the source line is shown: {err}");
    assert!(err.contains("^^^^^^^^^^^ did you mean `waitForUnit`?"), "{err}");
    assert!(err.contains("2 problem(s) in test descriptions; nothing was written"), "{err}");

    assert_eq!(std::fs::read_to_string(dir.path().join(OUTPUT)).expect("read"), previous);
    assert_eq!(listing(&dir.path().join("nix")), before, "no temporary files are left");

    let out = gen_in(dir.path(), &["check"]);
    util::assert_code(&out, 2);
    assert_eq!(stdout(&out), "", "no diff for invalid input");
    assert!(stderr(&out).contains("error[wrong_type]"), "{}", stderr(&out));
}

/// A location line of a rendered diagnostic: rustc's `--> file:l:c`, or the
/// box-drawing `┌─ file:l:c` that `diagnostic::render` currently uses.
fn assert_location(err: &str, loc: &str) {
    let found = err.lines().any(|l| {
        let l = l.trim_start();
        l == format!("--> {loc}") || l == format!("┌─ {loc}")
    });
    assert!(found, "no location line for {loc}:\n{err}");
}

#[test]
fn diagnostics_as_json() {
    let dir = cli_fixture("broken");
    let out = gen_in(dir.path(), &["--format", "json", "generate"]);
    util::assert_code(&out, 2);
    let err = stderr(&out);
    let line = err.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON on stderr: {err}"));
    let json: Value = serde_json::from_str(line).expect("diagnostics are one JSON line");
    let diags = json["diagnostics"].as_array().expect("a list of diagnostics");
    let got: Vec<(String, String, u64, u64)> = diags
        .iter()
        .map(|d| {
            assert_eq!(d["severity"], "error", "{d}");
            let loc = &d["location"];
            (
                d["code"].as_str().unwrap_or_default().to_string(),
                loc["file"].as_str().unwrap_or_default().to_string(),
                loc["line"].as_u64().unwrap_or_default(),
                loc["column"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("unknown_step_key".into(), "tests/vm/typo.nix".into(), 6, 7),
            ("wrong_type".into(), "tests/vm/wrong-type.nix".into(), 4, 33),
        ]
    );
    assert!(!err.contains("error["), "no text diagnostics in JSON mode: {err}");

    // Errors that are not about descriptions are JSON too.
    let empty = util::tempdir();
    let out = gen_in(empty.path(), &["--format", "json", "check"]);
    util::assert_code(&out, 2);
    let json: Value = serde_json::from_str(stderr(&out).trim()).expect("one JSON error");
    assert_eq!(json["exit_code"], 2);
    assert!(json["error"].as_str().is_some_and(|e| e.contains("no flake.nix")), "{json}");
}

#[test]
fn missing_flake_nix_says_where_and_what_to_do() {
    let empty = util::tempdir();
    for cmd in ["scan", "generate", "check"] {
        let out = gen_in(empty.path(), &[cmd]);
        util::assert_code(&out, 2);
        let err = stderr(&out);
        assert!(err.contains(&format!("no flake.nix in {}", empty.path().display())), "{cmd}: {err}");
        assert!(err.contains("--flake DIR"), "{cmd}: {err}");
    }
    // A directory that does not exist at all.
    let out = gen_in(&empty.path().join("nope"), &["generate"]);
    util::assert_code(&out, 2);
}

#[test]
fn a_description_that_is_not_utf8_exits_2() {
    let dir = health();
    std::fs::write(dir.path().join("tests/vm/latin1.nix"), b"{ description = \"caf\xe9\"; }\n")
        .expect("write");
    let out = gen_in(dir.path(), &["generate"]);
    util::assert_code(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("tests/vm/latin1.nix") && err.contains("UTF-8"), "{err}");
    assert_no_panic(&out);
}

#[test]
fn a_flake_nix_that_is_not_utf8_exits_2_like_a_description() {
    let dir = health();
    std::fs::write(dir.path().join("flake.nix"), b"{ description = \"caf\xe9\"; outputs = _: { }; }\n")
        .expect("write");
    for cmd in ["scan", "generate", "check"] {
        let out = gen_in(dir.path(), &[cmd]);
        util::assert_code(&out, 2);
        let err = stderr(&out);
        assert!(err.contains("flake.nix") && err.contains("UTF-8"), "{cmd}: {err}");
        assert_no_panic(&out);
    }
}

#[test]
fn command_line_mistakes_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["--frobnicate", "scan"],
        &["scan", "--frobnicate"],
        &["--eval=sometimes", "scan"],
        &["--format", "yaml", "scan"],
    ] {
        let out = util::run(util::nixvm_gen().args(args));
        util::assert_code(&out, 2);
        let err = stderr(&out);
        assert!(err.starts_with("error: ") && err.contains("--help"), "{args:?}: {err}");
    }
    // No subcommand: help, as a usage error.
    util::assert_code(&util::run(&mut util::nixvm_gen()), 2);
    util::assert_code(&util::run(util::nixvm_gen().arg("--help")), 0);
    util::assert_code(&util::run(util::nixvm_gen().arg("--version")), 0);
}

#[test]
fn settings_the_generated_code_cannot_use_exit_2() {
    let dir = health();
    let out = gen_in(dir.path(), &["--output", "../outside.nix", "generate"]);
    util::assert_code(&out, 2);
    assert!(stderr(&out).contains("outside the flake"), "{}", stderr(&out));
    let out = gen_in(dir.path(), &["--input-name", "self", "generate"]);
    util::assert_code(&out, 2);
    assert!(stderr(&out).contains("input name `self`"), "{}", stderr(&out));
}

#[test]
fn an_output_that_would_clobber_an_input_is_refused() {
    let dir = health();
    let flake = std::fs::read(dir.path().join("flake.nix")).expect("read");
    let service = std::fs::read(dir.path().join("service.nix")).expect("read");
    for (output, says) in [
        ("flake.nix", "would overwrite flake.nix, an input of the project"),
        ("./tests/vm/../vm/health.nix", "would overwrite tests/vm/health.nix"),
        ("tests/vm/checks.nix", "would be read as a description"),
        ("nix/../service.nix", "was not written by nixvm-gen"),
    ] {
        let out = gen_in(dir.path(), &["--output", output, "generate"]);
        util::assert_code(&out, 2);
        assert!(stderr(&out).contains(says), "{output}: {}", stderr(&out));
    }
    assert_eq!(std::fs::read(dir.path().join("flake.nix")).expect("read"), flake);
    assert_eq!(std::fs::read(dir.path().join("service.nix")).expect("read"), service);
    assert!(!dir.path().join("tests/vm/checks.nix").exists());
    // The check of the same settings refuses too (it could never pass).
    util::assert_code(&gen_in(dir.path(), &["--output", "flake.nix", "check"]), 2);
    // An empty file may be replaced.
    std::fs::write(dir.path().join("empty.nix"), "").expect("write");
    util::assert_code(&gen_in(dir.path(), &["--output", "empty.nix", "generate"]), 0);
}

#[test]
fn the_stale_hint_repeats_the_settings() {
    let dir = health();
    let out = gen_in(dir.path(), &["--output", "ci/my checks.nix", "--input-name", "gen", "check"]);
    util::assert_code(&out, 1);
    let hint = format!(
        "run `nixvm-gen --flake {} --output 'ci/my checks.nix' --input-name gen generate`",
        dir.path().display()
    );
    assert!(stderr(&out).contains(&hint), "{}", stderr(&out));
    let out = util::run(util::nixvm_gen().current_dir(dir.path()).args([
        "--eval=auto",
        "--output",
        "x.nix",
        "check",
    ]));
    util::assert_code(&out, 1);
    assert!(stderr(&out).contains("run `nixvm-gen --output x.nix --eval=auto generate`"), "{}", stderr(&out));
}

#[test]
fn values_the_stock_driver_cannot_take_exit_2() {
    let dir = health();
    std::fs::write(
        dir.path().join("tests/vm/health.nix"),
        "{\n  nodes.machine = { };\n  steps = [ { waitForUnit = \"a b\"; } ];\n}\n",
    )
    .expect("write");
    let before = std::fs::read(dir.path().join(OUTPUT)).expect("read");
    let out = gen_in(dir.path(), &["generate"]);
    util::assert_code(&out, 2);
    assert!(stderr(&out).contains("error[unsafe_unit_name]"), "{}", stderr(&out));
    assert!(stderr(&out).contains("--> tests/vm/health.nix:3:29"), "{}", stderr(&out));
    assert_eq!(std::fs::read(dir.path().join(OUTPUT)).expect("read"), before);
}

/// Issue 11: the generated file is never written through a link that leaves
/// the flake (a linked `nix/` directory or checks file); a link that stays
/// inside is fine, and an interrupted run's temporaries are cleaned up.
#[test]
fn generate_does_not_write_through_links_out_of_the_flake() {
    let dir = health();
    let outside = util::tempdir();
    let nix = dir.path().join("nix");
    std::fs::remove_dir_all(&nix).expect("remove nix/");
    std::os::unix::fs::symlink(outside.path(), &nix).expect("symlink");
    let out = gen_in(dir.path(), &["generate"]);
    util::assert_code(&out, 2);
    assert!(stderr(&out).contains("outside"), "{}", stderr(&out));
    assert!(listing(outside.path()).is_empty(), "wrote outside the flake: {:?}", listing(outside.path()));
    std::fs::remove_file(&nix).expect("unlink");
    std::fs::create_dir(&nix).expect("mkdir");
    let victim = outside.path().join("victim.nix");
    std::fs::write(&victim, "").expect("write");
    std::os::unix::fs::symlink(&victim, dir.path().join(OUTPUT)).expect("symlink");
    util::assert_code(&gen_in(dir.path(), &["generate"]), 2);
    assert_eq!(std::fs::read(&victim).expect("read"), b"");
    // Inside the flake a link is followed as before.
    std::fs::remove_file(dir.path().join(OUTPUT)).expect("unlink");
    std::fs::write(dir.path().join("real.nix"), "").expect("write");
    std::os::unix::fs::symlink("../real.nix", dir.path().join(OUTPUT)).expect("symlink");
    let stale = nix.join(".nixvm-tmpXYZ");
    std::fs::write(&stale, "half").expect("write");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(600);
    std::fs::File::options().write(true).open(&stale).expect("open").set_modified(old).expect("mtime");
    util::assert_code(&gen_in(dir.path(), &["generate"]), 0);
    assert!(std::fs::read_to_string(dir.path().join("real.nix")).expect("read").starts_with("# Generated"));
    assert!(!stale.exists(), "a stale temporary file was left");
}

/// `--output ..` or `/` is a mistake on the command line, not an I/O error.
#[test]
fn an_output_without_file_name_is_refused() {
    let dir = health();
    for output in ["..", "/", "nix/.."] {
        let out = gen_in(dir.path(), &["--output", output, "generate"]);
        util::assert_code(&out, 2);
        assert!(stderr(&out).contains(&format!("--output {output} names no file")), "{}", stderr(&out));
    }
}

// ------------------------------------------------------------ I/O errors

#[test]
fn an_output_path_that_is_a_directory_is_an_io_error() {
    let dir = health();
    let out_path = dir.path().join(OUTPUT);
    std::fs::remove_file(&out_path).expect("remove");
    std::fs::create_dir(&out_path).expect("mkdir in its place");
    std::fs::write(out_path.join("keep"), "x").expect("write");

    let out = gen_in(dir.path(), &["generate"]);
    util::assert_code(&out, 4);
    let err = stderr(&out);
    assert!(err.contains("failed to write ") && err.contains("nix/checks.generated.nix: "), "{err}");
    assert!(err.contains("directory"), "the OS reason is shown: {err}");
    assert_no_panic(&out);
    assert!(out_path.is_dir());
    assert_eq!(listing(&out_path), vec!["keep"]);
    assert_eq!(listing(&dir.path().join("nix")), vec!["checks.generated.nix"], "no temporary files left");

    let out = gen_in(dir.path(), &["check"]);
    util::assert_code(&out, 4);
    assert!(stderr(&out).contains("failed to read "), "{}", stderr(&out));
}

/// The process umask, from /proc (calling umask(2) would change it).
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status.lines().find(|l| l.starts_with("Umask:")).expect("Umask line");
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).expect("octal umask")
}

#[test]
fn generated_files_get_normal_permissions() {
    let dir = health();
    let out_path = dir.path().join(OUTPUT);
    std::fs::remove_file(&out_path).expect("remove");
    util::assert_code(&gen_in(dir.path(), &["generate"]), 0);
    let mode = std::fs::metadata(&out_path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o666 & !umask(), "a new file is made like open(2) would");

    // A rewrite keeps the mode of the file it replaces.
    std::fs::write(&out_path, "# Generated by nixvm-gen, stale\n").expect("write");
    std::fs::set_permissions(&out_path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    util::assert_code(&gen_in(dir.path(), &["generate"]), 0);
    let mode = std::fs::metadata(&out_path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
}

// --------------------------------------------------------- output hygiene

fn has_ansi(bytes: &[u8]) -> bool {
    bytes.contains(&0x1b)
}

#[test]
fn no_colour_when_not_a_terminal_or_with_no_color() {
    let dir = cli_fixture("broken");
    // Not a terminal, NO_COLOR unset.
    let out =
        util::run(util::nixvm_gen().env_remove("NO_COLOR").arg("--flake").arg(dir.path()).arg("generate"));
    util::assert_code(&out, 2);
    assert!(!has_ansi(&out.stderr) && !has_ansi(&out.stdout), "escape codes in piped output");
    let out = util::run(util::nixvm_gen().env_remove("NO_COLOR").args(["--frobnicate"]));
    assert!(!has_ansi(&out.stderr), "clap's errors are plain too");

    if !util::require("script", "runs nixvm-gen under a pseudo-terminal (util-linux)") {
        return;
    }
    let bin = env!("CARGO_BIN_EXE_nixvm-gen");
    let under_tty = |no_color: bool| -> Output {
        let env = if no_color { "env NO_COLOR=1" } else { "env -u NO_COLOR" };
        let line = format!("{env} '{bin}' --flake '{}' generate", dir.path().display());
        util::run(Command::new("script").args(["-qec", &line, "/dev/null"]))
    };
    // On a terminal: colour (so the check above can fail) …
    assert!(has_ansi(&under_tty(false).stdout), "a terminal gets colour");
    // … unless NO_COLOR is set.
    let out = under_tty(true);
    assert!(String::from_utf8_lossy(&out.stdout).contains("error[wrong_type]"), "ran under the tty");
    assert!(!has_ansi(&out.stdout), "NO_COLOR=1 still coloured");
}

/// A flake with enough tests that `scan --json` and `check` print far more
/// than a pipe buffer (64 KiB), so that a closed pipe is always hit.
fn big_flake(tests_count: usize) -> tempfile::TempDir {
    let dir = util::tempdir();
    std::fs::write(dir.path().join("flake.nix"), "{ outputs = { self }: { }; }\n").expect("write");
    let tests = dir.path().join("tests/vm");
    std::fs::create_dir_all(&tests).expect("mkdir");
    for i in 0..tests_count {
        std::fs::write(
            tests.join(format!("t{i:04}.nix")),
            format!("{{ nodes.machine = {{ }}; steps = [ {{ waitForOpenPort = {}; }} ]; }}\n", 1000 + i),
        )
        .expect("write");
    }
    dir
}

/// Spawns `nixvm-gen` with stdout piped, reads one byte (like `head -c 1`),
/// closes the pipe and waits.
fn run_closing_stdout(cmd: &mut Command) -> Output {
    use std::io::Read;
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut pipe = child.stdout.take().expect("stdout");
    let mut one = [0u8; 1];
    pipe.read_exact(&mut one).expect("read one byte");
    drop(pipe);
    let out = child.wait_with_output().expect("wait");
    eprintln!("exit: {:?}\n--- stderr\n{}", out.status.code(), stderr(&out));
    out
}

#[test]
fn a_closed_stdout_is_not_a_crash() {
    // `scan` prints ~70 bytes a test, `scan --json` ~250: 1200 tests is
    // more than a pipe holds either way.
    let dir = big_flake(1200);
    let out = run_closing_stdout(util::nixvm_gen().arg("--flake").arg(dir.path()).args(["scan", "--json"]));
    assert_no_panic(&out);
    util::assert_code(&out, 0);
    let out = run_closing_stdout(util::nixvm_gen().arg("--flake").arg(dir.path()).arg("scan"));
    assert_no_panic(&out);
    util::assert_code(&out, 0);
    let out = run_closing_stdout(util::nixvm_gen().args(["completions", "bash"]));
    assert_no_panic(&out);
    util::assert_code(&out, 0);
    let out = run_closing_stdout(util::nixvm_gen().arg("man"));
    assert_no_panic(&out);
    util::assert_code(&out, 0);

    // `check | head`: a reader that stops early does not make stale look fine.
    let out = run_closing_stdout(util::nixvm_gen().arg("--flake").arg(dir.path()).arg("check"));
    assert_no_panic(&out);
    util::assert_code(&out, 1);
    assert!(stderr(&out).contains("is stale"), "{}", stderr(&out));
}

#[test]
fn a_closed_stderr_keeps_the_exit_code() {
    use std::io::Read;
    // 400 broken descriptions: far more diagnostics than a pipe holds.
    let dir = big_flake(400);
    for i in 0..400 {
        std::fs::write(
            dir.path().join(format!("tests/vm/t{i:04}.nix")),
            "{ nodes.machine = { }; steps = [ { nope = 1; } ]; }\n",
        )
        .expect("write");
    }
    let mut child = util::nixvm_gen()
        .arg("--flake")
        .arg(dir.path())
        .arg("generate")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut pipe = child.stderr.take().expect("stderr");
    let mut one = [0u8; 1];
    pipe.read_exact(&mut one).expect("read one byte");
    drop(pipe);
    let status = child.wait().expect("wait");
    // A panic would be 101.
    assert_eq!(status.code(), Some(2), "{status:?}");
}

/// `init`, `new` and `wire` report on stderr too: a reader that is already
/// gone (`nixvm-gen init 2>&1 | true`) must not turn success into a panic.
#[test]
fn scaffold_commands_survive_a_stderr_without_reader() {
    let tmp = util::tempdir();
    let dir = tmp.path().join("demo");
    let closed = || {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        writer
    };
    let run = |args: &[&str]| {
        let status =
            util::nixvm_gen().arg("--flake").arg(&dir).args(args).stderr(closed()).status().expect("run");
        // A panic would be 101.
        assert_eq!(status.code(), Some(0), "{args:?}: {status:?}");
    };
    run(&["init"]);
    run(&["new", "second"]);
    run(&["wire"]);
    assert!(dir.join("tests/vm/second.nix").is_file());
}

// ---------------------------------------------------------- output path

#[test]
fn output_in_another_directory_imports_relative_to_it() {
    let dir = health();
    let rel = "ci/generated/checks.nix";
    let out = gen_in(dir.path(), &["--output", rel, "generate"]);
    util::assert_code(&out, 0);
    assert!(stderr(&out).contains("ci/generated/checks.nix (1 test(s))"), "{}", stderr(&out));
    let path = dir.path().join(rel);
    let text = std::fs::read_to_string(&path).expect("written");
    let imports = relative_paths(&text);
    assert!(imports.iter().any(|p| p == "../../tests/vm/health.nix"), "{imports:?}\n{text}");
    for p in &imports {
        let target = path.parent().expect("parent").join(p);
        assert!(target.exists(), "{p} (from {rel}) does not exist");
    }
    util::assert_code(&gen_in(dir.path(), &["--output", rel, "check"]), 0);
    // The default output is a different file: stale there.
    std::fs::remove_file(dir.path().join(OUTPUT)).expect("remove");
    util::assert_code(&gen_in(dir.path(), &["check"]), 1);

    if !util::require("nix-instantiate", "the generated Nix must parse with the real parser") {
        return;
    }
    let parsed = util::run(Command::new("nix-instantiate").arg("--parse").arg(&path));
    assert!(parsed.status.success(), "{rel} does not parse");
}

/// Relative path literals (`./x`, `../x`) in generated Nix text.
fn relative_paths(text: &str) -> Vec<String> {
    let re = regex::Regex::new(r"(?:^|[\s(\[])(\.\.?/[A-Za-z0-9._/+-]+)").expect("regex");
    re.captures_iter(text).map(|c| c[1].to_string()).collect()
}

// ------------------------------------------------------- evaluator fallback

/// PATH without any directory that holds `nix` or `nix-instantiate`.
fn path_without_nix() -> std::ffi::OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|d| !d.join("nix").exists() && !d.join("nix-instantiate").exists())
        .collect();
    std::env::join_paths(dirs).expect("join PATH")
}

#[test]
fn computed_steps_need_eval() {
    let dir = cli_fixture("computed");
    for cmd in ["generate", "check"] {
        let out = gen_in(dir.path(), &[cmd]);
        util::assert_code(&out, 2);
        let err = stderr(&out);
        assert!(err.contains("error[not_static]: `steps` is not plain data"), "{cmd}: {err}");
        assert_location(&err, "tests/vm/ports.nix:9:11");
    }
    assert!(!dir.path().join("nix").exists(), "nothing was written");

    // Without Nix: `auto` says so and the error stays; `always` is exit 3.
    let out = util::run(
        util::nixvm_gen()
            .env("PATH", path_without_nix())
            .arg("--flake")
            .arg(dir.path())
            .args(["--eval=auto", "generate"]),
    );
    util::assert_code(&out, 2);
    assert!(stderr(&out).contains("not installed"), "{}", stderr(&out));
    let out = util::run(
        util::nixvm_gen()
            .env("PATH", path_without_nix())
            .arg("--flake")
            .arg(dir.path())
            .args(["generate", "--eval"]),
    );
    util::assert_code(&out, 3);
    assert!(stderr(&out).contains("not installed"), "{}", stderr(&out));
    assert!(!dir.path().join("nix").exists(), "nothing was written");
}

#[test]
fn generate_and_check_with_eval() {
    if !util::require("nix-instantiate", "descriptions that are not plain data are evaluated by Nix")
        || !util::require("nix", "--eval=always asks Nix for the flake's modules")
    {
        return;
    }
    let dir = cli_fixture("computed");
    // `--eval` before the subcommand must not swallow it as its value.
    let out = gen_in(dir.path(), &["--eval", "generate"]);
    util::assert_code(&out, 0);
    let text = std::fs::read_to_string(dir.path().join(OUTPUT)).expect("written");
    assert!(text.contains("server.wait_for_open_port(80, timeout=300)"), "{text}");
    assert!(text.contains("server.wait_for_open_port(443, timeout=300)"), "{text}");
    assert!(text.contains("self.nixosModules.web"), "{text}");
    // Node modules are imported from the description itself.
    assert!(text.contains("(import ../tests/vm/ports.nix).nodes.server"), "{text}");

    for args in [&["check", "--eval"][..], &["--eval=auto", "check"], &["check", "--eval=always", "-v"]] {
        let out = gen_in(dir.path(), args);
        util::assert_code(&out, 0);
    }
    let out = gen_in(dir.path(), &["check", "--eval=auto", "--verbose"]);
    assert!(stderr(&out).contains("asking Nix to evaluate tests/vm/ports.nix"), "{}", stderr(&out));
    // Static check still cannot read it.
    util::assert_code(&gen_in(dir.path(), &["check"]), 2);
    // `scan --eval` keeps working.
    let out = gen_in(dir.path(), &["scan", "--json", "--eval"]);
    util::assert_code(&out, 0);
    let json: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["tests"][0]["steps"], 2, "{json}");
    assert!(!dir.path().join("flake.lock").exists(), "--eval must not write a lock file");

    // An evaluation error is exit 3 and names the file.
    std::fs::write(dir.path().join("tests/vm/ports.nix"), "{ nodes.server = { }; steps = throw \"boom\"; }")
        .expect("write");
    let before = std::fs::read(dir.path().join(OUTPUT)).expect("read");
    let out = gen_in(dir.path(), &["--eval", "generate"]);
    util::assert_code(&out, 3);
    let err = stderr(&out);
    assert!(err.contains("tests/vm/ports.nix") && err.contains("boom"), "{err}");
    assert_eq!(std::fs::read(dir.path().join(OUTPUT)).expect("read"), before);
}

// ------------------------------------------------------ property test

mod random_descriptions {
    //! Random, mostly plausible descriptions through `project::load` and
    //! `codegen::render`, in-process: never a panic; either diagnostics or
    //! output that rnix parses without errors.

    use proptest::prelude::*;

    use nixvm_gen::codegen::{self, CodegenError};
    use nixvm_gen::config::Config;
    use nixvm_gen::project;

    /// Keys of the description and step vocabulary, plus near misses.
    const KEYS: &[&str] = &[
        "name",
        "description",
        "nodes",
        "modules",
        "systems",
        "backend",
        "timeout",
        "steps",
        "node",
        "expect",
        "waitForUnit",
        "waitForOpenPort",
        "waitForClosedPort",
        "waitForFile",
        "waitForConsoleText",
        "succeed",
        "waitUntilSucceeds",
        "fail",
        "waitUntilFails",
        "sleep",
        "http",
        "start",
        "shutdown",
        "crash",
        "reboot",
        "block",
        "unblock",
        "copyFromVm",
        "screenshot",
        "subtest",
        "sendKeys",
        "sendChars",
        "waitUntilTtyMatches",
        "tty",
        "dumpTtyContents",
        "waitForText",
        "waitForX",
        "waitForWindow",
        "ctrl-alt-delete",
        "contains",
        "equals",
        "matches",
        "exitCode",
        "url",
        "status",
        "user",
        "addr",
        "testScript",
        "machine",
        "waitForUnti",
        "x",
        "_",
        "a-b",
    ];
    /// Every action key but `subtest` (which needs nested steps).
    fn step_keys() -> Vec<&'static str> {
        nixvm_gen::spec::ACTION_KEYS.iter().copied().filter(|k| *k != "subtest").collect()
    }
    const NODE_NAMES: &[&str] = &["machine", "server", "client", "a-b", "1x", "with space", "in\"quote"];

    /// Strings with the characters that break naive escaping.
    fn nasty() -> impl Strategy<Value = String> + Clone {
        let piece = prop_oneof![
            Just("\"".to_string()),
            Just("\\".to_string()),
            Just("${".to_string()),
            Just("${x}".to_string()),
            Just("$".to_string()),
            Just("''".to_string()),
            Just("'''".to_string()),
            Just("\n".to_string()),
            Just("\t".to_string()),
            Just("%s".to_string()),
            Just("{}".to_string()),
            Just("é☃".to_string()),
            Just("multi-user.target".to_string()),
            Just("http://localhost:80/".to_string()),
            Just("'".to_string()),
            Just("`".to_string()),
            Just(";".to_string()),
            "[a-z0-9 ._-]{0,8}",
        ];
        prop::collection::vec(piece, 0..5).prop_map(|v| v.concat())
    }

    /// A Nix string literal of `s`: usually correctly escaped, as either
    /// kind of string; rarely raw (then it is a syntax error, which must
    /// be a diagnostic too).
    fn string_lit(s: String, style: u8) -> String {
        match style % 8 {
            0..=4 => {
                let mut out = String::from("\"");
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        '\t' => out.push_str("\\t"),
                        '$' => out.push_str("\\$"),
                        c => out.push(c),
                    }
                }
                out.push('"');
                out
            }
            5 | 6 => {
                let body = s.replace("''", "'''").replace("${", "''${");
                format!("''{body}''")
            }
            _ => format!("\"{s}\""),
        }
    }

    fn scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => (nasty(), any::<u8>()).prop_map(|(s, st)| string_lit(s, st)),
            2 => prop_oneof![Just(0i64), Just(1), Just(80), Just(443), Just(65535), Just(65536), Just(-1), any::<i64>()]
                .prop_map(|n| if n < 0 { format!("({n})") } else { n.to_string() }),
            1 => prop_oneof![Just("true"), Just("false"), Just("null"), Just("1.5"), Just("x: x"), Just("./x.nix")]
                .prop_map(String::from),
        ]
    }

    /// A key: from the vocabulary, sometimes quoted or dotted.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            6 => prop::sample::select(KEYS).prop_map(String::from),
            1 => prop::sample::select(KEYS).prop_map(|k| format!("\"{k}\"")),
            1 => (prop::sample::select(KEYS), prop::sample::select(KEYS)).prop_map(|(a, b)| format!("{a}.{b}")),
        ]
    }

    /// Any value, nested up to a few levels.
    fn value() -> impl Strategy<Value = String> {
        scalar().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[ {} ]", v.join(" "))),
                prop::collection::vec((key(), inner), 0..4).prop_map(|v| {
                    let body: String = v.iter().map(|(k, x)| format!("{k} = {x}; ")).collect();
                    format!("{{ {body}}}")
                }),
            ]
        })
    }

    /// A step: mostly one action key with a fitting-looking value and a
    /// few siblings.
    fn step() -> impl Strategy<Value = String> {
        let action = (prop::sample::select(step_keys()), value(), any::<bool>());
        let siblings = prop::collection::vec((key(), value()), 0..3);
        let node = prop::option::of(prop::sample::select(NODE_NAMES));
        (action, siblings, node).prop_map(|((k, v, plain), sib, node)| {
            let v = if plain { plain_value(k) } else { v };
            let mut s = format!("{{ {k} = {v}; ");
            if let Some(n) = node {
                s.push_str(&format!("node = {}; ", string_lit(n.to_string(), 0)));
            }
            for (k, v) in sib {
                s.push_str(&format!("{k} = {v}; "));
            }
            s.push('}');
            s
        })
    }

    /// A value of the right type for an action key.
    fn plain_value(key: &str) -> String {
        match key {
            "waitForOpenPort" | "waitForClosedPort" => "8080".into(),
            "sleep" => "1".into(),
            "start" | "shutdown" | "crash" | "reboot" | "block" | "unblock" => "true".into(),
            "http" => "{ url = \"http://localhost/\"; contains = \"ok\"; }".into(),
            "copyFromVm" => "\"/etc/hostname\"".into(),
            "sendKeys" => "[ \"ctrl-alt-f2\" \"ret\" ]".into(),
            "dumpTtyContents" => "1".into(),
            "waitForX" => "true".into(),
            "waitUntilTtyMatches" => "\"login: \"; tty = 1".into(),
            _ => "\"true\"".into(),
        }
    }

    /// A string literal that is always well-formed Nix.
    fn good_string() -> impl Strategy<Value = String> + Clone {
        prop_oneof![
            1 => prop::sample::select(&["multi-user.target", "nginx.service", "/etc/hostname", "true", "a b"][..])
                .prop_map(|s| string_lit(s.to_string(), 0)),
            2 => (nasty(), 0u8..7).prop_map(|(s, st)| string_lit(s, st)),
        ]
    }

    /// A step that is well-formed most of the time: an action with a value
    /// of the right type (strings may be nasty), on one of `nodes`.
    fn plausible_step(nodes: Vec<&'static str>) -> impl Strategy<Value = String> + Clone {
        let node = prop::sample::select(nodes);
        let port = prop_oneof![Just(22i64), Just(80), Just(443), 1i64..65536];
        let string_action = prop::sample::select(
            &[
                "waitForUnit",
                "waitForFile",
                "waitForConsoleText",
                "succeed",
                "waitUntilSucceeds",
                "fail",
                "waitUntilFails",
                "screenshot",
                "copyFromVm",
            ][..],
        );
        let expect = prop::option::of((good_string(), prop::option::of(0i64..3)));
        prop_oneof![
            3 => (string_action, good_string(), node.clone(), expect).prop_map(|(k, v, n, expect)| {
                let mut s = format!("{{ {k} = {v}; node = \"{n}\"; ");
                if let (Some((c, code)), "succeed" | "waitUntilSucceeds") = (expect, k) {
                    s.push_str(&format!("expect.contains = {c}; "));
                    if let Some(code) = code {
                        s.push_str(&format!("expect.exitCode = {code}; "));
                    }
                }
                s.push('}');
                s
            }),
            2 => (prop::sample::select(&["waitForOpenPort", "waitForClosedPort"][..]), port, node.clone())
                .prop_map(|(k, p, n)| format!("{{ {k} = {p}; node = \"{n}\"; }}")),
            1 => (good_string(), good_string(), node.clone()).prop_map(|(url, c, n)| {
                format!("{{ http.url = {url}; http.contains = {c}; node = \"{n}\"; }}")
            }),
            1 => (prop::sample::select(&["start", "shutdown", "crash", "reboot", "block", "unblock"][..]), node)
                .prop_map(|(k, n)| format!("{{ {k} = \"{n}\"; }}")),
            1 => (1i64..5).prop_map(|n| format!("{{ sleep = {n}; }}")),
        ]
    }

    /// A description that is valid most of the time.
    fn plausible_description() -> impl Strategy<Value = String> {
        prop::sample::subsequence(&["machine", "server", "client", "web-1", "x_y"][..], 1..4).prop_flat_map(
            |nodes| {
                let step = plausible_step(nodes.clone());
                let steps = prop::collection::vec(step.clone(), 1..6);
                let subtest = prop::option::of((good_string(), prop::collection::vec(step, 1..3)));
                let desc = prop::option::of(good_string());
                let name = prop::option::of(prop::sample::select(&["\"named\"", "\"a-b_c\""][..]));
                let modules = prop::option::of(prop::sample::select(
                    &["[ \"web\" ]", "[ ]", "[ \"default\" \"web\" ]"][..],
                ));
                (Just(nodes), steps, subtest, desc, name, modules).prop_map(
                    |(nodes, mut steps, subtest, desc, name, modules)| {
                        let mut s = String::from("{\n");
                        for n in nodes {
                            s.push_str(&format!("  nodes.{n} = {{ pkgs, ... }}: {{ }};\n"));
                        }
                        if let Some((title, inner)) = subtest {
                            steps.push(format!("{{ subtest = {title}; steps = [ {} ]; }}", inner.join(" ")));
                        }
                        s.push_str(&format!("  steps = [\n    {}\n  ];\n", steps.join("\n    ")));
                        if let Some(d) = desc {
                            s.push_str(&format!("  description = {d};\n"));
                        }
                        if let Some(n) = name {
                            s.push_str(&format!("  name = {n};\n"));
                        }
                        if let Some(m) = modules {
                            s.push_str(&format!("  modules = {m};\n"));
                        }
                        s.push_str("}\n");
                        s
                    },
                )
            },
        )
    }

    /// A whole description file: plausible, or anything.
    fn description() -> impl Strategy<Value = String> {
        prop_oneof![3 => plausible_description(), 1 => any_description()]
    }

    /// A description made of random vocabulary and junk.
    fn any_description() -> impl Strategy<Value = String> {
        let nodes = prop::collection::btree_set(prop::sample::select(NODE_NAMES), 0..3);
        let steps = prop::collection::vec(step(), 0..5);
        let extra = prop::collection::vec((key(), value()), 0..3);
        let subtest = prop::option::of((nasty(), prop::collection::vec(step(), 0..3)));
        let opt = (
            prop::option::of(nasty()),
            prop::option::of(prop::sample::select(&["[ \"web\" ]", "[ \"nope\" ]", "[ ]", "\"web\""][..])),
            prop::option::of(prop::sample::select(&["\"rust\"", "\"python\"", "\"perl\""][..])),
        );
        (nodes, steps, extra, subtest, opt).prop_map(
            |(nodes, steps, extra, subtest, (desc, modules, backend))| {
                let mut s = String::from("{\n");
                if !nodes.is_empty() {
                    s.push_str("  nodes = {\n");
                    for n in nodes {
                        let k = if n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                            && !n.starts_with('1')
                        {
                            n.to_string()
                        } else {
                            string_lit(n.to_string(), 0)
                        };
                        s.push_str(&format!("    {k} = {{ pkgs, ... }}: {{ }};\n"));
                    }
                    s.push_str("  };\n");
                }
                if let Some(d) = desc {
                    s.push_str(&format!("  description = {};\n", string_lit(d, 0)));
                }
                if let Some(m) = modules {
                    s.push_str(&format!("  modules = {m};\n"));
                }
                if let Some(b) = backend {
                    s.push_str(&format!("  backend = {b};\n"));
                }
                let mut all = steps;
                if let Some((name, inner)) = subtest {
                    all.push(format!(
                        "{{ subtest = {}; steps = [ {} ]; }}",
                        string_lit(name, 0),
                        inner.join(" ")
                    ));
                }
                s.push_str(&format!("  steps = [\n    {}\n  ];\n", all.join("\n    ")));
                for (k, v) in extra {
                    s.push_str(&format!("  {k} = {v};\n"));
                }
                s.push_str("}\n");
                s
            },
        )
    }

    /// File names (stems become test names unless `name` is set).
    fn file_name() -> impl Strategy<Value = String> {
        prop::sample::select(&["a.nix", "b.nix", "web-1.nix", "My Test.nix", "x.y.nix"][..])
            .prop_map(String::from)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 100, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn load_and_render_never_panic(files in prop::collection::vec((file_name(), description()), 1..4)) {
            let dir = crate::util::tempdir();
            std::fs::write(
                dir.path().join("flake.nix"),
                "{ outputs = { self }: { nixosModules.web = ./web.nix; nixosModules.default = ./web.nix; }; }\n",
            ).expect("write flake.nix");
            std::fs::write(dir.path().join("web.nix"), "{ ... }: { }\n").expect("write web.nix");
            let tests = dir.path().join("tests/vm");
            std::fs::create_dir_all(&tests).expect("mkdir");
            for (name, text) in &files {
                std::fs::write(tests.join(name), text).expect("write description");
            }
            let config = Config::new(dir.path());
            let project = project::load(&config).expect("a valid flake loads");
            // `NIXVM_CASE_STATS=1 … -- --nocapture` shows the mix of cases.
            let stats = std::env::var_os("NIXVM_CASE_STATS").is_some();
            if stats {
                let codes: Vec<_> = project.diagnostics.iter().map(|d| d.code).collect();
                eprintln!("STAT errors={} {codes:?}", project.has_errors());
            }
            if project.has_errors() {
                // Every error can be rendered for the user.
                let shown = nixvm_gen::diagnostic::render(&project.diagnostics, &project.sources, false);
                prop_assert!(shown.contains("error["), "{shown}");
                return Ok(());
            }
            match codegen::render(&project, &config) {
                Ok(text) => {
                    let parsed = rnix::Root::parse(&text);
                    prop_assert!(
                        parsed.errors().is_empty(),
                        "generated Nix does not parse: {:?}\n{text}\nfrom {files:?}",
                        parsed.errors()
                    );
                    let again = codegen::render(&project, &config).expect("renders twice");
                    prop_assert_eq!(again, text, "rendering is not deterministic");
                }
                // A value the generated code cannot express is reported.
                Err(e @ CodegenError::Unsupported { .. }) => {
                    if stats {
                        eprintln!("STAT unsupported: {e}");
                    }
                }
                Err(e) => prop_assert!(false, "validated project failed to render: {e}\nfrom {files:?}"),
            }
        }
    }
}
