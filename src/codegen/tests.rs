//! Rendering a hand-built project (the fixture-based goldens are in
//! `tests/integration/codegen.rs`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;
use crate::diagnostic::{Sources, Span};
use crate::flake::{FlakeInfo, Module, ModuleKind};
use crate::spec::{Action, Backend, Expect, Step, TestSpec};

fn step(node: Option<&str>, action: Action) -> Step {
    Step { node: node.map(String::from), timeout: None, action, span: None }
}

fn module(name: &str, kind: ModuleKind) -> Module {
    Module { name: name.into(), file: "flake.nix".into(), line: 1, column: 1, kind }
}

fn project(tests: Vec<TestSpec>) -> Project {
    Project {
        root: PathBuf::from("."),
        flake: FlakeInfo {
            modules: vec![
                module("default", ModuleKind::Path { source: "service.nix".into() }),
                module("syshc", ModuleKind::Alias { target: "default".into() }),
            ],
            ..FlakeInfo::default()
        },
        tests,
        sources: Sources::default(),
        diagnostics: Vec::new(),
    }
}

fn health(backend: Backend) -> TestSpec {
    let mut nodes = BTreeMap::new();
    nodes.insert("machine".to_string(), Span::default());
    TestSpec {
        name: "health".into(),
        name_span: None,
        file: "tests/vm/health.nix".into(),
        description: None,
        nodes,
        modules: None,
        systems: None,
        backend,
        timeout: None,
        steps: vec![
            step(Some("machine"), Action::WaitForUnit { unit: "syshc.service".into(), user: None }),
            step(Some("machine"), Action::WaitForOpenPort { port: 3000, addr: None }),
            step(
                Some("machine"),
                Action::Succeed {
                    command: "curl --fail localhost:3000".into(),
                    expect: Expect { contains: Some("Healthy".into()), ..Expect::default() },
                },
            ),
        ],
    }
}

#[test]
fn renders_deterministically() {
    let project = project(vec![health(Backend::Rust)]);
    let config = Config::new(".");
    let first = render(&project, &config).unwrap();
    assert_eq!(first, render(&project, &config).unwrap());
    assert!(first.ends_with("}\n"), "{first}");
}

#[test]
fn alias_of_an_imported_module_is_skipped() {
    let project = project(vec![health(Backend::Python)]);
    let text = render(&project, &Config::new(".")).unwrap();
    assert!(text.contains("self.nixosModules.default\n"), "{text}");
    assert!(!text.contains("self.nixosModules.syshc"), "{text}");
}

#[test]
fn python_backend_has_no_driver_override() {
    let project = project(vec![health(Backend::Python)]);
    let text = render(&project, &Config::new(".")).unwrap();
    assert!(!text.contains("mkDriver"), "{text}");
    let rust = render(&self::project(vec![health(Backend::Rust)]), &Config::new(".")).unwrap();
    assert!(rust.contains("nixvm-gen.lib.mkDriver"), "{rust}");
}

#[test]
fn default_systems_are_sorted() {
    let text = render(&project(vec![health(Backend::Rust)]), &Config::new(".")).unwrap();
    let aarch = text.find("aarch64-linux =").unwrap();
    let x86 = text.find("x86_64-linux =").unwrap();
    assert!(aarch < x86);
}

#[test]
fn bad_input_name_is_an_error() {
    let mut config = Config::new(".");
    config.input_name = "lib".into();
    assert!(matches!(render(&project(vec![]), &config), Err(CodegenError::InputName { .. })));
    config.input_name = "a.b".into();
    assert!(matches!(render(&project(vec![]), &config), Err(CodegenError::InputName { .. })));
}

#[test]
fn unsafe_unit_is_refused_not_injected() {
    let mut spec = health(Backend::Python);
    spec.steps =
        vec![step(Some("machine"), Action::WaitForUnit { unit: "x\"; reboot; \"".into(), user: None })];
    assert!(matches!(render(&project(vec![spec]), &Config::new(".")), Err(CodegenError::Unsupported { .. })));
}

#[test]
fn empty_project_renders_an_empty_set() {
    let text = render(&project(vec![]), &Config::new(".")).unwrap();
    assert!(text.ends_with("{ self, nixpkgs, nixvm-gen ? null }:\n{ }\n"), "{text}");
}

#[test]
#[ignore = "prints a sample for eyeballing"]
fn print_sample() {
    let text = render(&project(vec![health(Backend::Rust)]), &Config::new(".")).unwrap();
    println!("{text}");
}
