//! Never a silent miss: every expression kind rnix can produce, written
//! where the flake analysis meets it (the outputs, the `nixosModules` set, a
//! module value), is either understood (the module names Nix lists) or
//! reported (an `unresolved` entry, or an error). Never a wrong module list
//! with nothing unresolved.
//!
//! The expected names are what Nix lists; with `nix-instantiate` installed
//! (always on CI) each expectation is checked against Nix itself.

use std::collections::BTreeSet;
use std::path::Path;

use nixvm_gen::diagnostic::Sources;
use nixvm_gen::flake;
use rnix::ast;

use crate::util;

/// Where a construct is written. `@` is replaced by the construct.
#[derive(Clone, Copy, Debug)]
enum Pos {
    /// The body of `outputs` (must evaluate to the outputs set).
    Outputs,
    /// The value of `nixosModules` (must evaluate to the module set).
    Modules,
    /// The value of `nixosModules.a` (must be a module).
    Module,
}

impl Pos {
    fn flake(self, construct: &str) -> String {
        let body = match self {
            Pos::Outputs => construct.to_string(),
            Pos::Modules => format!("{{ nixosModules = {construct}; }}"),
            Pos::Module => format!("{{ nixosModules.a = {construct}; }}"),
        };
        format!("{{\n  outputs = {{ self, other }}:\n    {body};\n}}\n")
    }
}

/// Every expression kind of rnix, by an exhaustive match: a new kind in a
/// new rnix fails to compile here, and then needs cases below.
fn kind(e: &ast::Expr) -> &'static str {
    match e {
        ast::Expr::Apply(_) => "Apply",
        ast::Expr::Assert(_) => "Assert",
        ast::Expr::Error(_) => "Error",
        ast::Expr::IfElse(_) => "IfElse",
        ast::Expr::Select(_) => "Select",
        ast::Expr::Str(_) => "Str",
        ast::Expr::PathAbs(_) => "PathAbs",
        ast::Expr::PathRel(_) => "PathRel",
        ast::Expr::PathHome(_) => "PathHome",
        ast::Expr::PathSearch(_) => "PathSearch",
        ast::Expr::Literal(_) => "Literal",
        ast::Expr::Lambda(_) => "Lambda",
        ast::Expr::LegacyLet(_) => "LegacyLet",
        ast::Expr::LetIn(_) => "LetIn",
        ast::Expr::List(_) => "List",
        ast::Expr::BinOp(_) => "BinOp",
        ast::Expr::Paren(_) => "Paren",
        ast::Expr::Root(_) => "Root",
        ast::Expr::AttrSet(_) => "AttrSet",
        ast::Expr::UnaryOp(_) => "UnaryOp",
        ast::Expr::Ident(_) => "Ident",
        ast::Expr::With(_) => "With",
        ast::Expr::HasAttr(_) => "HasAttr",
        ast::Expr::CurPos(_) => "CurPos",
    }
}

/// Kinds that cannot stand in an outputs position of a file that parses:
/// `Error` only exists in files with syntax errors (the analysis stops at
/// the `nix_syntax` error, see `syntax_errors_are_located_diagnostics`),
/// and `Root` is the file itself.
const NOT_IN_POSITION: &[&str] = &["Error", "Root"];

/// A set for the `Outputs`, `Modules` and `Module` positions.
const SETS: [(Pos, &str); 3] = [
    (Pos::Outputs, "{ nixosModules.a = ./a.nix; }"),
    (Pos::Modules, "{ a = ./a.nix; }"),
    (Pos::Module, "./a.nix"),
];

/// (position, construct, what Nix lists: `None` when Nix fails).
fn cases() -> Vec<(Pos, String, Option<Vec<&'static str>>)> {
    let a = || Some(vec!["a"]);
    let mut out: Vec<(Pos, String, Option<Vec<&'static str>>)> = Vec::new();
    for (pos, s) in SETS {
        let set_like = !matches!(pos, Pos::Module);
        let mut add = |c: String, names: Option<Vec<&'static str>>| out.push((pos, c, names));
        // Understood by every position.
        add(format!("({s})"), a());
        add(format!("let s = {s}; in s"), a());
        add(format!("assert true; {s}"), a());
        add(format!("with {{ s = {s}; }}; s"), a());
        add(format!("{{ x = {s}; }}.x"), a());
        add(format!("import ./s-{}.nix", pos_name(pos)), a());
        // Computed: an evaluator question (or a `computed` module).
        add(format!("(x: x) {s}"), a());
        add(format!("if true then {s} else {s}"), a());
        add(format!("{{ }}.x or {s}"), a());
        // `other` is `{ }` here.
        let other = match pos {
            Pos::Outputs => None,
            Pos::Modules => Some(vec![]),
            Pos::Module => a(),
        };
        add("other".to_string(), other);
        add(format!("with other; {s}"), a());
        add(format!("let {{ body = {s}; }}"), a());
        add("\"./a.nix\"".to_string(), if set_like { None } else { a() });
        add("1".to_string(), if set_like { None } else { a() });
        add(format!("[ {s} ]"), if set_like { None } else { a() });
        add(format!("!{s}"), if set_like { None } else { a() });
        add(format!("{s} ? a"), if set_like { None } else { a() });
        let cur_pos = match pos {
            Pos::Outputs => None,
            Pos::Modules => Some(vec!["column", "file", "line"]),
            Pos::Module => a(),
        };
        add("__curPos".to_string(), cur_pos);
        add("/abs/a.nix".to_string(), if set_like { None } else { a() });
        add("~/a.nix".to_string(), if set_like { None } else { a() });
        add("<nixpkgs/a.nix>".to_string(), if set_like { None } else { a() });
        add(format!("x: {s}"), if set_like { None } else { a() });
        add(format!("{s} + {s}"), if set_like { None } else { a() });
        add(s.to_string(), a());
        if set_like {
            add("./a.nix".to_string(), None);
            add(format!("rec {s}"), a());
            add(format!("{s} // {{ }}"), a());
            add(format!("{{ }} // {s}"), a());
            add(format!("{s} // other"), a());
            add(format!("other // {s}"), a());
            add(format!("{s} // (x: x) {{ }}"), a());
        } else {
            add("{ ... }: { }".to_string(), a());
            add("{ imports = [ ]; }".to_string(), a());
            add("import ./a.nix".to_string(), a());
            // Nix lists `a` without looking at its value.
            add("self.nixosModules.b".to_string(), a());
        }
    }
    // The shallow update, at the outputs.
    out.push((
        Pos::Outputs,
        "{ nixosModules.old = ./a.nix; } // { nixosModules.a = ./a.nix; }".to_string(),
        Some(vec!["a"]),
    ));
    out.push((Pos::Modules, "{ b = ./a.nix; } // { a = ./a.nix; }".to_string(), Some(vec!["a", "b"])));
    out
}

fn pos_name(pos: Pos) -> &'static str {
    match pos {
        Pos::Outputs => "outputs",
        Pos::Modules => "modules",
        Pos::Module => "module",
    }
}

/// Writes the flake of a case into `dir`, with the files it imports.
fn write_case(dir: &Path, pos: Pos, construct: &str) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join("flake.nix"), pos.flake(construct)).expect("write");
    std::fs::write(dir.join("a.nix"), "{ ... }: { }\n").expect("write");
    for (p, s) in SETS {
        std::fs::write(dir.join(format!("s-{}.nix", pos_name(p))), format!("{s}\n")).expect("write");
    }
}

/// What Nix lists for a case (`None`: evaluation fails).
fn nix_names(dir: &Path) -> Option<Vec<String>> {
    let expr = format!(
        "let f = import {}/flake.nix; o = f.outputs {{ self = o; other = {{ }}; }}; in builtins.attrNames o.nixosModules",
        dir.display()
    );
    let out = std::process::Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json", "-E", &expr])
        .env("NIX_PATH", "nixpkgs=/nonexistent")
        .output()
        .expect("run nix-instantiate");
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

#[test]
fn every_construct_is_understood_or_reported() {
    let tmp = util::tempdir();
    let with_nix = util::require("nix-instantiate", "the expectations are checked against Nix itself");
    let mut covered = BTreeSet::new();
    let mut failures = Vec::new();
    for (i, (pos, construct, expected)) in cases().into_iter().enumerate() {
        let dir = tmp.path().join(i.to_string());
        write_case(&dir, pos, &construct);
        let parsed = rnix::Root::parse(&construct);
        assert!(parsed.errors().is_empty(), "case {construct:?} does not parse");
        if let Some(e) = parsed.tree().expr() {
            covered.insert(kind(&e));
        }
        if with_nix {
            let nix = nix_names(&dir);
            let want = expected.as_ref().map(|v| v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            if nix != want {
                failures
                    .push(format!("the expectation of {pos:?} `{construct}` is {want:?}, Nix says {nix:?}"));
            }
        }
        let mut sources = Sources::default();
        let (info, diags) = flake::analyze(&dir, &mut sources).expect("analyze");
        let found: Vec<String> = info.modules.iter().map(|m| m.name.clone()).collect();
        let reported = !info.unresolved.is_empty() || diags.iter().any(|d| d.is_error());
        let ok = match &expected {
            // Exactly Nix's names, or a subset of them and something reported.
            Some(names) => {
                let subset = found.iter().all(|n| names.contains(&n.as_str()));
                subset && (reported || found.len() == names.len())
            }
            // Nix fails: the analysis must say something is off.
            None => reported,
        };
        if !ok {
            failures.push(format!(
                "{pos:?} `{construct}`: Nix {expected:?}, found {found:?}, unresolved {:?}",
                info.unresolved.iter().map(|u| &u.reason).collect::<Vec<_>>()
            ));
        }
    }
    assert!(failures.is_empty(), "silent misses or phantom modules:\n{}", failures.join("\n"));
    let all = [
        "Apply",
        "Assert",
        "Error",
        "IfElse",
        "Select",
        "Str",
        "PathAbs",
        "PathRel",
        "PathHome",
        "PathSearch",
        "Literal",
        "Lambda",
        "LegacyLet",
        "LetIn",
        "List",
        "BinOp",
        "Paren",
        "Root",
        "AttrSet",
        "UnaryOp",
        "Ident",
        "With",
        "HasAttr",
        "CurPos",
    ];
    let missing: Vec<&str> =
        all.iter().copied().filter(|k| !covered.contains(k) && !NOT_IN_POSITION.contains(k)).collect();
    assert!(missing.is_empty(), "expression kinds without a case: {missing:?}");
}
