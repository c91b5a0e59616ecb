//! Fixture descriptions (`tests/fixtures/codegen/<case>`) run on the
//! stand-in guests: parsed and planned as `generate` does, then executed by
//! nixvm-driver. Fixtures whose values only Nix computes run from the plan
//! Nix evaluated against the stand-in nixpkgs.

use std::path::Path;

use nixvm_gen::diagnostic::FileId;
use nixvm_gen::plan::Plan;
use nixvm_gen::spec::parse::parse;

use super::{Kind, Store, guests, statuses, vm_test, vm_test_with_store};
use crate::codegen::{flake_command, generate, nixvm_gen_flake_copy};
use crate::util;

fn fixture_plan(case: &str, file: &str) -> Plan {
    let rel = format!("tests/vm/{file}");
    let text = std::fs::read_to_string(util::fixture(&format!("codegen/{case}/{rel}"))).unwrap();
    let (spec, diags) = parse(FileId(0), Path::new(&rel), &text);
    assert!(diags.is_empty(), "{diags:#?}");
    let spec = spec.expect("the fixture parses");
    assert!(spec.computed.is_empty(), "{case}: values only Nix computes need an evaluated plan");
    Plan::from_spec(&spec)
}

/// `token`: the server issues a random token, the client presents it over
/// HTTP, and later commands on both nodes compare captures, so a value
/// crosses nodes through the real 9p `/tmp/shared`.
#[test]
fn token_fixture_passes_on_two_systemd_guests() {
    let plan = fixture_plan("token", "token.nix");
    let steps = plan.steps.len();
    let Some(world) = vm_test(Kind::Systemd, &["server", "client"], plan.steps) else { return };
    let run = world.run();
    assert_eq!(run.status.code(), Some(0), "driver failed:\n{}", run.stderr);
    assert_eq!(statuses(&run.report), vec!["passed"; steps]);
}

/// `battery`: musnix-style checks (lists of expectations on one output,
/// JSON, command lists) on one systemd guest.
#[test]
fn battery_fixture_passes_on_a_systemd_guest() {
    let plan = fixture_plan("battery", "audio.nix");
    let steps = plan.steps.len();
    let Some(world) = vm_test(Kind::Systemd, &["machine"], plan.steps) else { return };
    let run = world.run();
    assert_eq!(run.status.code(), Some(0), "driver failed:\n{}", run.stderr);
    assert_eq!(statuses(&run.report), vec!["passed"; steps]);
}

/// `store-paths`: commands that name store paths (a `writeShellScriptBin`,
/// the stand-in's `runtimeShell`), node facts, and numbers read from a
/// settings file. Nix evaluates the generated check against the stand-in
/// nixpkgs and builds the plan file, whose closure holds every store path
/// the commands name; the guests' 9p store then holds that closure besides
/// their own store, as a NixOS VM sees the host's store
/// (tests/stand-in/README.md).
#[test]
fn store_paths_fixture_passes_on_two_systemd_guests() {
    if !util::require("nix", "evaluates the generated check and builds the store paths it names")
        || !util::require("nix-store", "lists the closure of the plan")
    {
        return;
    }
    let Some(guests) = guests() else { return };
    let tmp = util::tempdir();
    let flake = tmp.path().join("store-paths");
    util::copy_dir(&util::fixture("codegen/store-paths"), &flake);
    generate(&flake);
    let gen_copy = tmp.path().join("nixvm-gen");
    nixvm_gen_flake_copy(&gen_copy);
    let link = tmp.path().join("plan");
    let out = util::run(
        flake_command("build", &flake, &gen_copy, "checks.x86_64-linux.greeting.driver.nixvm.planFile")
            .arg("--out-link")
            .arg(&link)
            .args(crate::nix::BUILD_FLAGS),
    );
    assert!(out.status.success(), "nix build of the plan failed");
    let plan_file = std::fs::canonicalize(&link).unwrap();
    let plan = Plan::from_json(&std::fs::read_to_string(&plan_file).unwrap()).expect("an evaluated plan");
    assert!(
        plan.steps.iter().any(|s| format!("{:?}", s.action).contains("/nix/store/")),
        "the commands name store paths"
    );

    // The guests' store: their own, plus the closure of the plan.
    let store = tmp.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let closure = util::run(std::process::Command::new("nix-store").arg("-qR").arg(&plan_file));
    assert!(closure.status.success(), "nix-store -qR failed");
    let own = std::fs::read_dir(guests.store()).unwrap().map(|e| e.unwrap().path());
    let paths: Vec<std::path::PathBuf> =
        String::from_utf8_lossy(&closure.stdout).lines().map(std::path::PathBuf::from).chain(own).collect();
    let cp = util::run(std::process::Command::new("cp").arg("-a").args(&paths).arg(&store));
    assert!(cp.status.success(), "copying the closure failed");

    let steps = plan.steps.len();
    let Some(world) =
        vm_test_with_store(Kind::Systemd, Store::NinePDir(store), &["client", "server"], plan.steps)
    else {
        return;
    };
    let run = world.run();
    assert_eq!(run.status.code(), Some(0), "driver failed:\n{}", run.stderr);
    assert_eq!(statuses(&run.report), vec!["passed"; steps]);
}
