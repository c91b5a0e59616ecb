//! The real-world corpus: one reproduction per public flake listed in
//! `tests/fixtures/real-world/SOURCES.md` (same shape of outputs, imports
//! and module names as the original; bodies reduced to the minimum). Each
//! has a golden `scan.json` and a hand-written `expected.json`, written
//! from reading the original's Nix, not from this tool's output:
//!
//! - `modules`: name → `kind`, `kind source` (path relative to the flake)
//!   or `alias target`;
//! - `unresolved`: the `what` of every unresolved entry;
//! - `nix`: the names Nix lists for the reproduction (checked with
//!   `nix-instantiate` and stub inputs), or `null` where it needs real
//!   inputs (flake-parts), with the names in `names` instead.
//!
//! Every entry must also be "right or reported": the modules found are
//! among Nix's names, and if some are missing, something is unresolved.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::util;

/// Stub inputs for evaluating reproductions without the network. Only
/// what the reproductions call is there; `recursiveUpdate` is shallow
/// (the corpus merges sets with disjoint names), and flake-utils'
/// per-system functions return nothing (they never define `nixosModules`).
const STUBS: &str = r#"
  lib = {
    genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
    nameValuePair = name: value: { inherit name value; };
    mapAttrs = builtins.mapAttrs;
    mapAttrs' = f: set: builtins.listToAttrs (map (n: f n set.${n}) (builtins.attrNames set));
    removeSuffix = suf: s:
      let ls = builtins.stringLength s; lf = builtins.stringLength suf; in
      if lf <= ls && builtins.substring (ls - lf) lf s == suf then builtins.substring 0 (ls - lf) s else s;
    foldl' = builtins.foldl';
    const = x: _: x;
    recursiveUpdate = a: b: a // b;
  };
  inputs = {
    self = outputs;
    nixpkgs = { inherit lib; legacyPackages = { }; };
    nixlib = { inherit lib; };
    flake-utils.lib = { eachSystem = systems: f: { }; eachDefaultSystem = f: { }; };
  };
"#;

fn nix_names(dir: &Path) -> Vec<String> {
    let expr = format!(
        "let {STUBS} flake = import {}/flake.nix; want = builtins.functionArgs flake.outputs;
           outputs = flake.outputs (if want == {{ }} then inputs else builtins.intersectAttrs want inputs);
         in builtins.attrNames outputs.nixosModules",
        dir.display()
    );
    let out = std::process::Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json", "-E", &expr])
        .output()
        .expect("run nix-instantiate");
    assert!(out.status.success(), "{}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("a list of names")
}

/// A module entry of `scan --json` in the form `expected.json` uses.
fn describe(m: &Value) -> String {
    let kind = m["kind"].as_str().unwrap_or("");
    match kind {
        "alias" => format!("alias {}", m["target"].as_str().unwrap_or("")),
        "path" | "import" | "importApply" => format!("{kind} {}", m["source"].as_str().unwrap_or("")),
        _ => kind.to_string(),
    }
}

#[test]
fn real_world_corpus() {
    let root = util::fixture("real-world");
    let sources = std::fs::read_to_string(root.join("SOURCES.md")).expect("SOURCES.md");
    let with_nix = util::require("nix-instantiate", "the corpus' expectations are checked against Nix");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .expect("corpus")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 15, "the corpus has {} flakes, at least 15 are wanted", dirs.len());
    for name in dirs {
        let dir = root.join(&name);
        assert!(sources.contains(&format!("| `{name}` |")), "{name} is not listed in SOURCES.md");
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).expect("expected.json"))
                .unwrap_or_else(|e| panic!("{name}/expected.json: {e}"));

        let mut cmd = util::nixvm_gen();
        cmd.args(["scan", "--json", "--flake"]).arg(&dir);
        let out = util::run(&mut cmd);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        util::golden(&dir.join("scan.json"), &text);
        let json: Value = serde_json::from_str(&text).expect("scan JSON");

        let found: BTreeMap<String, String> = json["modules"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| (m["name"].as_str().unwrap_or("").to_string(), describe(m)))
            .collect();
        let want: BTreeMap<String, String> = expected["modules"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
            .collect();
        assert_eq!(found, want, "{name}: modules");
        let mut unresolved: Vec<&str> =
            json["unresolved"].as_array().into_iter().flatten().filter_map(|u| u["what"].as_str()).collect();
        let mut want_unresolved: Vec<&str> =
            expected["unresolved"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        unresolved.sort();
        want_unresolved.sort();
        assert_eq!(unresolved, want_unresolved, "{name}: unresolved");

        // Right or reported, against what Nix lists.
        let names: Vec<String> = match (&expected["nix"], with_nix) {
            (Value::Array(names), true) => {
                let nix = nix_names(&dir);
                let listed: Vec<String> = names.iter().filter_map(|n| n.as_str().map(String::from)).collect();
                assert_eq!(nix, listed, "{name}: the `nix` names of expected.json are not what Nix lists");
                nix
            }
            (Value::Array(names), false) => {
                names.iter().filter_map(|n| n.as_str().map(String::from)).collect()
            }
            _ => expected["names"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().map(String::from))
                .collect(),
        };
        assert!(!names.is_empty(), "{name}: expected.json names no module at all");
        for m in found.keys() {
            assert!(names.contains(m), "{name}: `{m}` is not a module Nix lists ({names:?})");
        }
        if found.len() < names.len() {
            assert!(!unresolved.is_empty(), "{name}: modules are missing and nothing is unresolved");
        }
    }
}
