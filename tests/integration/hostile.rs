//! Hostile inputs (issue 11): files that nest too deeply, special files
//! where Nix files are expected, paths that leave the output. Each must end
//! in a clear diagnostic and a documented exit code, quickly, without a
//! crash, a hang or exhausting memory. Commands run under `timeout` so a
//! regression shows as a failure, not a stuck suite.

use std::path::Path;
use std::process::{Command, Output};

use crate::util;

/// `nixvm-gen --flake <dir> <args…>` with a 60 s bound (exit 124 on a hang).
fn gen_bounded(dir: &Path, args: &[&str]) -> Output {
    let bin = env!("CARGO_BIN_EXE_nixvm-gen");
    let out = Command::new("timeout")
        .args(["--signal=KILL", "60", bin, "--flake"])
        .arg(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run timeout");
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("exit: {:?}\n--- stderr (first 2000 bytes)\n{}", out.status, &err[..err.len().min(2000)]);
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A copy of `examples/health` whose `flake.nix` is `flake`.
fn flake_with(flake: &str) -> tempfile::TempDir {
    let dir = util::tempdir();
    util::copy_dir(&util::root().join("examples/health"), dir.path());
    std::fs::write(dir.path().join("flake.nix"), flake).expect("write");
    dir
}

fn assert_refused(out: &Output, code: i32, says: &str) {
    assert_eq!(out.status.code(), Some(code), "status {:?}", out.status);
    let err = stderr(out);
    assert!(err.contains(says), "expected `{says}` in:\n{}", &err[..err.len().min(4000)]);
    assert!(!err.contains("panicked") && !err.contains("overflow"), "{}", &err[..err.len().min(4000)]);
}

#[test]
fn deeply_nested_flakes_are_refused_by_every_command() {
    let brackets = format!("{{ outputs = _: {{ x = {}; }}; }}", "[".repeat(50_000));
    let update = format!("{{ outputs = _: {{ x = a{}; }}; }}", "\n // a".repeat(100_000));
    for flake in [brackets, update] {
        let dir = flake_with(&flake);
        for cmd in [&["scan"][..], &["generate"], &["check"], &["wire"]] {
            let out = gen_bounded(dir.path(), cmd);
            assert!(out.status.code().is_some(), "{cmd:?} was killed: {:?}", out.status);
            assert!(stderr(&out).contains("nested more than 256 levels deep"), "{cmd:?}");
            assert!(!stderr(&out).contains("panicked"), "{cmd:?}");
        }
    }
}

#[test]
fn a_long_sum_in_a_description_is_refused() {
    let dir =
        flake_with(&std::fs::read_to_string(util::root().join("examples/health/flake.nix")).expect("read"));
    let sum = format!("1{}", "\n + 1".repeat(1_000_000));
    std::fs::write(
        dir.path().join("tests/vm/health.nix"),
        format!("{{ nodes.machine = {{ }}; steps = [ {{ sleep = {sum}; }} ]; }}"),
    )
    .expect("write");
    assert_refused(&gen_bounded(dir.path(), &["check"]), 2, "nested more than 256 levels deep");
}

/// rnix's tokenizer rescans the run of name and path characters ahead of
/// every token, so a list of 100,000 floats written without spaces
/// (`[ 1.1.1.1… ]`, each `.1` a new element, so nothing nests) took it
/// minutes. Every command refuses such a file at the run, quickly.
#[test]
fn a_long_run_without_spaces_is_refused_by_every_command() {
    let run = format!("1{}", ".1".repeat(100_000));
    let flake = format!("{{ outputs = _: {{ x = [ {run} ]; }}; }}");
    let dir = flake_with(&flake);
    for cmd in [&["scan"][..], &["generate"], &["check"], &["wire"]] {
        let started = std::time::Instant::now();
        let out = gen_bounded(dir.path(), cmd);
        assert_refused(&out, 2, "a run of 200001 name and path characters without a space");
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{cmd:?}: {:?}", started.elapsed());
    }
    let dir =
        flake_with(&std::fs::read_to_string(util::root().join("examples/health/flake.nix")).expect("read"));
    std::fs::write(
        dir.path().join("tests/vm/health.nix"),
        format!("{{ nodes.machine = {{ }}; steps = [ {{ sleep = 1; }} ]; x = [ {run} ]; }}"),
    )
    .expect("write");
    let out = gen_bounded(dir.path(), &["check"]);
    assert_refused(&out, 2, "a run of 200001 name and path characters without a space");
    assert!(stderr(&out).contains("tests/vm/health.nix:1:"), "{}", stderr(&out));
}

/// Issue 11: a command longer than one argument may be in the guest
/// (128 KiB) failed there with "Argument list too long"; now `generate` and
/// `check` refuse it at its span and state the limit.
#[test]
fn commands_over_the_guest_argument_limit_are_refused_with_the_limit() {
    let dir =
        flake_with(&std::fs::read_to_string(util::root().join("examples/health/flake.nix")).expect("read"));
    let command = format!("true {}", "x".repeat(128 * 1024));
    for form in [format!("\"{command}\""), format!("''{command}''")] {
        std::fs::write(
            dir.path().join("tests/vm/health.nix"),
            format!("{{ nodes.machine = {{ }}; steps = [ {{ succeed = {form}; }} ] ; }}"),
        )
        .expect("write");
        for cmd in ["generate", "check"] {
            let out = gen_bounded(dir.path(), &[cmd]);
            assert_refused(&out, 2, "command_too_long");
            assert_refused(&out, 2, "the limit is 130048 bytes");
            assert_refused(&out, 2, "tests/vm/health.nix:1:46");
        }
    }
}

#[test]
fn special_files_are_not_read_as_nix() {
    for (flake, says) in [
        ("{ outputs = _: { nixosModules = import /dev/zero; }; }", "it is a device"),
        ("{ outputs = _: { nixosModules = import /dev/urandom; }; }", "it is a device"),
        ("{ outputs = _: { nixosModules = import ./fifo.nix; }; }", "it is a FIFO"),
        ("{ outputs = _: { nixvmTests = [ /dev/zero ]; }; }", "it is a device"),
        ("{ outputs = _: { nixvmTests = [ ./fifo.nix ]; }; }", "it is a FIFO"),
    ] {
        let dir = flake_with(flake);
        let fifo = dir.path().join("fifo.nix");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let out = gen_bounded(dir.path(), &["scan"]);
        assert!(out.status.code().is_some_and(|c| c != 124), "{flake}: killed or hung: {:?}", out.status);
        let all = stderr(&out) + &String::from_utf8_lossy(&out.stdout);
        assert!(all.contains(says), "{flake}: {all}");
    }
}

/// Control characters from a description (a key that retitles the terminal,
/// a raw ESC in a string) are escaped in everything printed.
#[test]
fn control_characters_are_not_printed_raw() {
    let dir =
        flake_with(&std::fs::read_to_string(util::root().join("examples/health/flake.nix")).expect("read"));
    std::fs::write(
        dir.path().join("tests/vm/health.nix"),
        "{\n  nodes.machine = { };\n  \"\u{1b}]0;pwned\u{7}\" = 1;\n  steps = [ { succeed = \"a\u{1b}[2J\"; node = \"\u{1b}x\"; } ];\n}\n",
    )
    .expect("write");
    for cmd in ["check", "scan"] {
        let out = gen_bounded(dir.path(), &[cmd]);
        let all = [out.stderr.as_slice(), out.stdout.as_slice()].concat();
        assert!(
            !all.contains(&0x1b) && !all.contains(&0x07),
            "{cmd}: raw control characters: {:?}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("\\u{1b}") || stderr(&out).contains('?'), "{cmd}: {}", stderr(&out));
    }
}

/// Entries of `tests/vm` that are not regular files (a dangling link, a
/// link loop, a FIFO) are refused with exit 2, not skipped silently.
#[test]
fn non_regular_descriptions_are_refused() {
    let flake = std::fs::read_to_string(util::root().join("examples/health/flake.nix")).expect("read");
    for make in ["dangling", "loop", "fifo"] {
        let dir = flake_with(&flake);
        let entry = dir.path().join("tests/vm/broken.nix");
        match make {
            "dangling" => std::os::unix::fs::symlink("missing.nix", &entry).expect("symlink"),
            "loop" => std::os::unix::fs::symlink("broken.nix", &entry).expect("symlink"),
            _ => {
                let c = std::ffi::CString::new(entry.as_os_str().as_encoded_bytes()).expect("path");
                // SAFETY: a valid NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            }
        }
        let out = gen_bounded(dir.path(), &["check"]);
        assert_refused(&out, 2, "not a regular file");
    }
}

/// `check` parses up to 200 descriptions on its main thread (no worker to
/// start): the deepest descriptions the limits accept must fit its default
/// 8 MiB stack, in this (debug) build too. Each sits just inside one limit:
/// brackets, an operator chain, `let` nesting, folding depth. The run ends in
/// a verdict (valid, or a diagnostic), never a crash.
#[test]
fn descriptions_at_the_nesting_limits_fit_the_main_threads_stack() {
    let dir =
        flake_with(&std::fs::read_to_string(util::root().join("examples/health/flake.nix")).expect("read"));
    let tests = dir.path().join("tests/vm");
    let deep = [
        (
            "brackets",
            format!(
                "{{ nodes.m = {{ }}; steps = [ {{ sleep = 1; }} ] ++ {}[ ]{}; }}",
                "(".repeat(95),
                ")".repeat(95)
            ),
        ),
        (
            "chain",
            format!(
                "{{ nodes.m = {{ }}; steps = [ {{ succeed = {}; }} ]; }}",
                vec!["\"a\""; 240].join(" + ")
            ),
        ),
        (
            "lets",
            format!(
                "{{ nodes.m = {{ }}; steps = {}[ {{ sleep = 1; }} ]{}; }}",
                "let a = ".repeat(90),
                "; in a".repeat(90)
            ),
        ),
        ("fold", "let f = n: [ { sleep = 1; } ] ++ f (n + 1); in { nodes.m = { }; steps = f 0; }".to_owned()),
    ];
    for (name, text) in &deep {
        std::fs::write(tests.join(format!("{name}.nix")), text).expect("write");
    }
    let out = Command::new("sh")
        .args(["-c", "ulimit -s 8192 && exec \"$0\" --flake \"$1\" check", env!("CARGO_BIN_EXE_nixvm-gen")])
        .arg(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("run sh");
    let err = stderr(&out);
    assert!(matches!(out.status.code(), Some(1 | 2)), "status {:?}\n{err}", out.status);
    assert!(!err.contains("panicked") && !err.contains("overflow"), "{err}");
    // The fold is too deep to be static; the others are valid.
    assert!(err.contains("tests/vm/fold.nix"), "{err}");
    for name in ["brackets", "chain", "lets"] {
        assert!(!err.contains(&format!("tests/vm/{name}.nix")), "{name}: {err}");
    }
}
