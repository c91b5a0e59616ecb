//! Fixture descriptions (`tests/fixtures/codegen/<case>`) run on the
//! stand-in guests: parsed and planned as `generate` does, then executed by
//! nixvm-driver. Fixtures whose values only Nix computes run from the plan
//! Nix evaluated against the stand-in nixpkgs.

use std::path::Path;

use nixvm_gen::diagnostic::FileId;
use nixvm_gen::plan::Plan;
use nixvm_gen::spec::parse::parse;

use super::{Kind, statuses, vm_test};
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
