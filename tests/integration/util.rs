//! Shared harness: run the binaries, compare goldens, find fixtures, and
//! require external tools loudly.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/fixtures/<rel>`.
pub fn fixture(rel: &str) -> PathBuf {
    root().join("tests/fixtures").join(rel)
}

/// A command for the real `nixvm-gen` binary, with colour off and its
/// cache under the target directory, not in the user's home.
pub fn nixvm_gen() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nixvm-gen"));
    cmd.env("NO_COLOR", "1");
    cmd.env("NIXVM_GEN_CACHE_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")).join("nixvm-gen-cache"));
    cmd
}

/// A command for the real `nixvm-driver` binary.
pub fn nixvm_driver() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nixvm-driver"));
    cmd.env("NO_COLOR", "1");
    cmd
}

/// Runs a command and returns its output, printing it for failing tests.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("failed to run {cmd:?}: {e}"));
    eprintln!("$ {cmd:?}\nexit: {:?}", out.status.code());
    eprintln!("--- stdout\n{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("--- stderr\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Asserts the exit code of a finished command.
pub fn assert_code(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "unexpected exit status (output above)");
}

/// Compares `actual` with the golden file at `path`; with `UPDATE_GOLDENS=1`
/// (re)writes the golden instead.
pub fn golden(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_GOLDENS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("missing golden {}: {e}; run with UPDATE_GOLDENS=1", path.display()));
    pretty_assertions::assert_eq!(
        expected,
        actual,
        "golden {} differs; run with UPDATE_GOLDENS=1 to accept",
        path.display()
    );
}

/// Whether an external tool is on PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().is_ok_and(|o| o.status.success())
}

/// Returns false (and says so loudly) when `tool` is missing. On CI
/// (`CI=true`) a missing tool is a failure, never a skip: `.ci/run`
/// installs everything.
pub fn require(tool: &str, why: &str) -> bool {
    if have(tool) {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("`{tool}` is required on CI ({why}); .ci/run must install it");
    }
    eprintln!("\n!!! SKIPPED: `{tool}` is not installed ({why}). Run ./scripts/test.sh to install it.\n");
    false
}

/// A fresh temporary directory (removed on drop).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("nixvm-test-").tempdir().unwrap()
}

/// Recursively copies a directory.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}
