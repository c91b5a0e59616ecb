//! Static analysis of `flake.nix` (and the files it imports) with rnix: which
//! NixOS modules the flake exports, and where. What cannot be told without
//! evaluating is reported as [`Unresolved`], never guessed.
//!
//! Understood (see `outputs.rs`, and docs/flake-analysis.md for the table):
//! `outputs` as a lambda (any parameter form) or `import ./file.nix`;
//! attribute sets, `rec`, dotted keys, `let`, `with` (names are looked up
//! in the `with` set when it can be read), `assert`; `//` as Nix's shallow
//! update; `inherit name;` and `inherit (set) name;`; `set.attr`; `import
//! <path> args…` of module sets (relative to the importing file, a
//! directory means `default.nix`, cycles stop); flake-parts `mkFlake`
//! (`flake.…`, `config.flake.…`, `config = { flake = …; }`, `flake` as a
//! function, `imports = [ ./x.nix (importApply ./y.nix { … }) ]` with any
//! spelling of the lib); flake-utils `eachSystem`/`eachDefaultSystem`
//! (per-system, so a `nixosModules` inside is unresolved) and the
//! `…PassThrough` variants; `self.<path>`, `inputs.self.<path>` and
//! `config.flake.<path>` into the outputs.
//!
//! Module values: a path → `Path`, `import path …` → `Import`,
//! `…importApply path …` → `ImportApply`, an attribute set or function →
//! `Inline`, `self.nixosModules.x` or a second name for the same definition
//! → `Alias`, a set of modules (`hm.x = ./x.nix`) → `ModuleSet`, anything
//! else under a known name → `Computed`. Attributes defined twice are
//! errors, as in Nix (`dupes.rs`).
//!
//! The legacy `nixosModule` output gets a `legacy_nixos_module` warning and
//! is not reported as a module (generated code references
//! `self.nixosModules.<name>`, which it is not).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::diagnostic::{Diagnostic, Sources};

mod dupes;
mod imports;
mod outputs;
mod parse;

/// The flake's file name.
pub const FLAKE_FILE: &str = "flake.nix";

/// What static analysis found in a flake.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FlakeInfo {
    /// Exported NixOS modules, sorted by name.
    pub modules: Vec<Module>,
    /// Places that need the evaluator to be understood.
    pub unresolved: Vec<Unresolved>,
    /// Description files named by the flake output `nixvmTests` (if any),
    /// relative to the flake root.
    pub test_files: Vec<PathBuf>,
    /// The files the analysis read (`flake.nix` and what it imports),
    /// relative to the flake root: problems in them are the flake's.
    #[serde(skip)]
    pub files: Vec<PathBuf>,
}

/// One `nixosModules.<name>` entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Module {
    pub name: String,
    /// File that defines the attribute, relative to the flake root.
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    #[serde(flatten)]
    pub kind: ModuleKind,
}

/// How a module is defined.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ModuleKind {
    /// `name = ./m.nix;` (`source` is relative to the flake root).
    Path { source: PathBuf },
    /// `name = import ./m.nix;` or `import ./m.nix { … }`.
    Import { source: PathBuf },
    /// `name = importApply ./m.nix { … };` (flake-parts).
    ImportApply { source: PathBuf },
    /// An inline module expression (attribute set or function).
    Inline,
    /// `name = self.nixosModules.other;`, or a second name for the same
    /// definition (`rec { a = …; default = a; }`, `let m = …; in { a = m;
    /// b = m; }`): the same module under another name, imported once.
    Alias { target: String },
    /// The name is known but the value is computed (`moduleWithSystem (…)`,
    /// `mkIf …`): a module Nix lists, whose source cannot be shown.
    Computed { reason: String },
    /// `name.x = ./x.nix;`: a set of modules, not a module (impermanence's
    /// `nixosModules.home-manager.impermanence`). Tests do not import it.
    ModuleSet { members: Vec<String> },
    /// Found via the evaluator (`--eval`), no source location known.
    Evaluated,
}

impl ModuleKind {
    /// The kind's name, as `scan --json` spells it (`importApply`).
    pub fn name(&self) -> &'static str {
        match self {
            ModuleKind::Path { .. } => "path",
            ModuleKind::Import { .. } => "import",
            ModuleKind::ImportApply { .. } => "importApply",
            ModuleKind::Inline => "inline",
            ModuleKind::Alias { .. } => "alias",
            ModuleKind::Computed { .. } => "computed",
            ModuleKind::ModuleSet { .. } => "moduleSet",
            ModuleKind::Evaluated => "evaluated",
        }
    }

    /// Whether a NixOS configuration can import it (a set of modules cannot).
    pub fn is_module(&self) -> bool {
        !matches!(self, ModuleKind::ModuleSet { .. })
    }

    /// The alias target, if this is an alias.
    pub fn alias_target(&self) -> Option<&str> {
        match self {
            ModuleKind::Alias { target } => Some(target),
            _ => None,
        }
    }
}

/// Something static analysis could not resolve.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Unresolved {
    /// The attribute path concerned, e.g. `nixosModules` or `nixosModules.foo`.
    pub what: String,
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// Why it could not be resolved, e.g. "the value is computed by a function call".
    pub reason: String,
}

/// Errors that stop the analysis entirely.
#[derive(Debug, thiserror::Error)]
pub enum FlakeError {
    #[error("no {FLAKE_FILE} in {dir}: run nixvm-gen in a flake or pass --flake DIR")]
    NoFlake { dir: PathBuf },
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Analyzes the flake in `dir`. Files read are added to `sources`; syntax
/// errors in them are returned as diagnostics.
///
/// The legacy output `nixosModule` is not reported as a module: generated
/// tests reference `self.nixosModules.<name>`, which would not exist. It gets
/// a `legacy_nixos_module` warning that says to rename it to
/// `nixosModules.default`.
pub fn analyze(dir: &Path, sources: &mut Sources) -> Result<(FlakeInfo, Vec<Diagnostic>), FlakeError> {
    let path = dir.join(FLAKE_FILE);
    let text = match crate::limits::read_nix_file(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(FlakeError::NoFlake { dir: dir.to_path_buf() });
        }
        Err(source) => return Err(FlakeError::Read { path, source }),
    };
    let mut files = imports::Files::new(dir);
    let abs = files.root.join(FLAKE_FILE);
    let flake = files.add(abs, text, sources);
    let found = outputs::Walker::new(&mut files, sources).run(flake);
    let mut diagnostics = std::mem::take(&mut files.diagnostics);
    diagnostics.extend(found.diagnostics);
    let mut test_files = found.test_files;
    test_files.dedup();
    let read = files.files.iter().map(|f| f.rel.clone()).collect();
    let info = FlakeInfo { modules: found.modules, unresolved: found.unresolved, test_files, files: read };
    Ok((info, diagnostics))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Analyzes a flake made of `files` (path, text) in a temporary directory.
    fn scan(files: &[(&str, &str)]) -> (FlakeInfo, Vec<Diagnostic>) {
        let dir = tempfile::tempdir().expect("tempdir");
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        let mut sources = Sources::default();
        analyze(dir.path(), &mut sources).expect("analyze")
    }

    fn kinds(info: &FlakeInfo) -> Vec<(String, ModuleKind)> {
        info.modules.iter().map(|m| (m.name.clone(), m.kind.clone())).collect()
    }

    fn path(s: &str) -> ModuleKind {
        ModuleKind::Path { source: PathBuf::from(s) }
    }

    #[test]
    fn kind_names_are_the_json_tags() {
        let all = [
            path("m.nix"),
            ModuleKind::Import { source: PathBuf::from("m.nix") },
            ModuleKind::ImportApply { source: PathBuf::from("m.nix") },
            ModuleKind::Inline,
            ModuleKind::Alias { target: "a".into() },
            ModuleKind::Computed { reason: "r".into() },
            ModuleKind::ModuleSet { members: vec!["x".into()] },
            ModuleKind::Evaluated,
        ];
        for kind in all {
            let json = serde_json::to_value(&kind).expect("serializes");
            assert_eq!(json["kind"], kind.name(), "{kind:?}");
        }
    }

    #[test]
    fn plain_attrset_forms() {
        let (info, diags) = scan(&[
            (
                "flake.nix",
                r#"{
  outputs = { self, nixpkgs, ... }: {
    nixosModules = {
      a = ./a.nix;
      b = import ./b.nix;
      c = { config, ... }: { };
    };
    nixosModules.d = self.nixosModules.a;
  };
}"#,
            ),
            ("a.nix", "{ }"),
            ("b.nix", "{ }"),
        ]);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(
            kinds(&info),
            vec![
                ("a".into(), path("a.nix")),
                ("b".into(), ModuleKind::Import { source: "b.nix".into() }),
                ("c".into(), ModuleKind::Inline),
                ("d".into(), ModuleKind::Alias { target: "a".into() }),
            ]
        );
        assert_eq!((info.modules[0].line, info.modules[0].column), (4, 7));
        assert_eq!((info.modules[3].line, info.modules[3].column), (8, 18));
        assert!(info.unresolved.is_empty(), "{:?}", info.unresolved);
    }

    #[test]
    fn let_bound_modules_and_aliases() {
        let (info, _) = scan(&[(
            "flake.nix",
            r#"{ outputs = inputs: let m = ./m.nix; n = m; al = inputs.self.nixosModules.m; in
  { nixosModules = { inherit m; n = n; default = al; }; }; }"#,
        )]);
        assert_eq!(
            kinds(&info),
            vec![
                ("default".into(), ModuleKind::Alias { target: "m".into() }),
                ("m".into(), path("m.nix")),
                // The same definition under two names: one module.
                ("n".into(), ModuleKind::Alias { target: "m".into() }),
            ]
        );
    }

    #[test]
    fn computed_values_shared_by_names_are_aliases() {
        let (info, _) = scan(&[(
            "flake.nix",
            r#"{ outputs = { self, lib }: let m = lib.mkModule { }; in { nixosModules = { a = m; default = m; b = lib.mkModule { }; }; }; }"#,
        )]);
        let names: Vec<(String, &str)> =
            info.modules.iter().map(|m| (m.name.clone(), m.kind.name())).collect();
        assert_eq!(
            names,
            vec![("a".into(), "computed"), ("b".into(), "computed"), ("default".into(), "alias")]
        );
        assert_eq!(info.modules[2].kind.alias_target(), Some("a"));
    }

    #[test]
    fn an_alias_of_a_module_set_is_a_module_set() {
        let (info, _) = scan(&[(
            "flake.nix",
            r#"{ outputs = { self }: { nixosModules = { hm.x = ./x.nix; all = self.nixosModules.hm; }; }; }"#,
        )]);
        let set = ModuleKind::ModuleSet { members: vec!["x".into()] };
        assert_eq!(kinds(&info), vec![("all".into(), set.clone()), ("hm".into(), set)]);
    }

    #[test]
    fn params_shadow_let_bindings() {
        let (info, _) = scan(&[(
            "flake.nix",
            r#"{ outputs = { self }: let m = ./m.nix; in (m: { nixosModules.x = m; }) 1; }"#,
        )]);
        assert!(info.modules.is_empty());
        assert_eq!(info.unresolved.len(), 1, "{:?}", info.unresolved);
    }

    #[test]
    fn update_is_shallow_in_chains_too() {
        // Each `nixosModules` replaces the whole previous one, as in Nix.
        let (info, _) = scan(&[(
            "flake.nix",
            r#"{ outputs = { self }: rec { m = ./m.nix; nixosModules.a = m; } // { nixosModules.b = ./b.nix; } // { nixosModules.a = ./a2.nix; }; }"#,
        )]);
        assert_eq!(kinds(&info), vec![("a".into(), path("a2.nix"))]);
        assert!(info.unresolved.is_empty(), "{:?}", info.unresolved);
        // Inside `nixosModules`, `//` merges names; the right side wins.
        let (info, _) = scan(&[(
            "flake.nix",
            r#"{ outputs = { self }: { nixosModules = { a = ./a.nix; b = ./b.nix; } // { a = ./a2.nix; }; }; }"#,
        )]);
        assert_eq!(kinds(&info), vec![("a".into(), path("a2.nix")), ("b".into(), path("b.nix"))]);
    }

    #[test]
    fn computed_names_are_unresolved_computed_values_are_kept() {
        let (info, _) = scan(&[(
            "flake.nix",
            r#"{ outputs = { self, other }: {
  nixosModules = builtins.mapAttrs (n: v: v) { }
    // { ${"dyn" + "x"} = ./x.nix; o = other.nixosModules.o; z = self.nixosModules.nope; }; }; }"#,
        )]);
        assert_eq!(kinds(&info).len(), 1, "{:?}", info.modules);
        assert_eq!(info.modules[0].name, "o");
        assert!(
            matches!(&info.modules[0].kind, ModuleKind::Computed { reason } if reason.contains("other.nixosModules.o")),
            "{:?}",
            info.modules
        );
        let whats: Vec<&str> = info.unresolved.iter().map(|u| u.what.as_str()).collect();
        assert_eq!(whats, vec!["nixosModules", "nixosModules.${\"dyn\" + \"x\"}", "nixosModules.z"]);
        assert!(info.unresolved[0].reason.contains("function call"), "{:?}", info.unresolved[0]);
        // `nope` may come from the unresolved `mapAttrs`: not "undefined".
        assert!(info.unresolved[2].reason.contains("could not resolve"), "{:?}", info.unresolved[2]);
    }

    #[test]
    fn imports_are_followed_relative_to_the_importing_file() {
        let (info, _) = scan(&[
            (
                "flake.nix",
                r#"{ outputs = inputs: { nixosModules = import ./nix/modules { inherit inputs; }; }; }"#,
            ),
            ("nix/modules/default.nix", "{ inputs }: { web = ./web.nix; db = import ../db; }"),
        ]);
        assert_eq!(
            kinds(&info),
            vec![
                ("db".into(), ModuleKind::Import { source: "nix/db".into() }),
                ("web".into(), path("nix/modules/web.nix")),
            ]
        );
        assert_eq!(info.modules[1].file, PathBuf::from("nix/modules/default.nix"));
    }

    #[test]
    fn import_cycles_stop() {
        let (info, _) = scan(&[
            ("flake.nix", r#"{ outputs = _: { nixosModules = import ./a.nix; }; }"#),
            ("a.nix", "import ./b.nix"),
            ("b.nix", "import ./a.nix"),
        ]);
        assert_eq!(info.unresolved.len(), 1);
        assert!(info.unresolved[0].reason.contains("import cycle"), "{:?}", info.unresolved);
        let (info, _) = scan(&[
            ("flake.nix", r#"{ outputs = _: { nixosModules = import ./a.nix; }; }"#),
            ("a.nix", "{ x = ./x.nix; } // import ./a.nix"),
        ]);
        assert!(
            info.unresolved.iter().any(|u| u.reason.contains("import cycle: a.nix → a.nix")),
            "{:?}",
            info.unresolved
        );
        // A cycle through a `let` binding hits the depth limit instead.
        let (info, _) = scan(&[(
            "flake.nix",
            r#"{ outputs = _: let m = { x = ./x.nix; } // m; in { nixosModules = m; }; }"#,
        )]);
        assert!(info.unresolved.iter().any(|u| u.reason.contains("levels deep")), "{:?}", info.unresolved);
    }

    #[test]
    fn flake_parts_forms() {
        let (info, _) = scan(&[
            (
                "flake.nix",
                r#"{ outputs = inputs@{ flake-parts, ... }: flake-parts.lib.mkFlake { inherit inputs; } ({ self, config, ... }: {
  imports = [ ./parts/extra.nix inputs.treefmt.flakeModule ];
  systems = [ "x86_64-linux" ];
  flake.nixosModules.a = inputs.flake-parts.lib.importApply ./a.nix { inherit self; };
  flake = { nixosModules.default = config.flake.nixosModules.a; };
}); }"#,
            ),
            ("parts/extra.nix", "{ ... }: { flake.nixosModules.extra = { ... }: { }; }"),
        ]);
        assert_eq!(
            kinds(&info),
            vec![
                ("a".into(), ModuleKind::ImportApply { source: "a.nix".into() }),
                ("default".into(), ModuleKind::Alias { target: "a".into() }),
                ("extra".into(), ModuleKind::Inline),
            ]
        );
    }

    #[test]
    fn computed_flake_parts_imports_are_unresolved() {
        let (info, _) = scan(&[(
            "flake.nix",
            r#"{ outputs = inputs: inputs.flake-parts.lib.mkFlake { inherit inputs; } { imports = [ ./a.nix ] ++ extra; flake.nixosModules.m = ./m.nix; }; }"#,
        )]);
        assert_eq!(kinds(&info), vec![("m".into(), path("m.nix"))]);
        assert_eq!(info.unresolved.len(), 1, "{:?}", info.unresolved);
        assert!(info.unresolved[0].reason.contains("`imports` is computed"), "{:?}", info.unresolved);
    }

    #[test]
    fn flake_utils_forms() {
        let (info, _) = scan(&[(
            "flake.nix",
            r#"{ outputs = { self, flake-utils, ... }: flake-utils.lib.eachSystem [ "x86_64-linux" ] (system: { packages.default = 1; nixosModules.bad = ./b.nix; }) // { nixosModules.a = ./a.nix; }; }"#,
        )]);
        assert_eq!(kinds(&info), vec![("a".into(), path("a.nix"))]);
        assert_eq!(info.unresolved.len(), 1);
        assert!(info.unresolved[0].reason.contains("per") || info.unresolved[0].reason.contains("<system>"));
    }

    #[test]
    fn legacy_module_and_tests_list() {
        let (info, diags) = scan(&[(
            "flake.nix",
            r#"{ outputs = { self }: { nixosModule = ./m.nix; nixvmTests = [ ./tests/vm/a.nix ./other/b.nix (x) ]; }; }"#,
        )]);
        assert!(info.modules.is_empty());
        let codes: Vec<&str> = diags.iter().map(|d| d.code).collect();
        assert_eq!(codes, ["legacy_nixos_module"]);
        assert_eq!(info.test_files, vec![PathBuf::from("tests/vm/a.nix"), PathBuf::from("other/b.nix")]);
        assert_eq!(info.unresolved.len(), 1);
        assert_eq!(info.unresolved[0].what, "nixvmTests");
    }

    #[test]
    fn missing_module_files_are_warned_about() {
        let (info, diags) = scan(&[
            (
                "flake.nix",
                "{ outputs = _: { nixosModules = { a = ./a.nix; b = import ./nope.nix; c = ./dir; }; }; }",
            ),
            ("a.nix", "{ }"),
            ("dir/default.nix", "{ }"),
        ]);
        assert_eq!(info.modules.len(), 3);
        let found: Vec<(&str, bool)> = diags.iter().map(|d| (d.code, d.is_error())).collect();
        assert_eq!(found, [("missing_module_file", false)]);
        assert!(diags[0].message.contains("nope.nix"), "{diags:?}");
    }

    #[test]
    fn module_sets_from_elsewhere_are_unresolved() {
        for (outputs, reason) in [
            ("{ self, other }: { inherit (other) nixosModules; }", "inherit (other) nixosModules"),
            ("{ self, other }: { nixosModules = other.nixosModules; }", "refers to `other.nixosModules`"),
            ("{ self, other }: { nixosModules = other; }", "function argument"),
            ("{ self }: { nixosModules = if true then { } else { }; }", "if"),
            ("{ self }: { nixosModules = import ./gone.nix; }", "does not exist"),
            ("{ self }: { nixosModules = import ./bad.nix; }", "syntax errors"),
            ("{ self }: { nixosModules = import ./fn.nix; }", "function"),
            ("{ self }: { nixosModules = mkModules ./x; }", "mkModules"),
        ] {
            let flake = format!("{{ outputs = {outputs}; }}");
            let (info, diags) = scan(&[
                ("flake.nix", &flake),
                ("bad.nix", "{ a = ; }"),
                ("fn.nix", "{ lib }: { a = ./a.nix; }"),
            ]);
            assert!(info.modules.is_empty(), "{outputs}: {:?}", info.modules);
            assert_eq!(info.unresolved.len(), 1, "{outputs}: {:?}", info.unresolved);
            let u = &info.unresolved[0];
            assert!(u.reason.contains(reason), "{outputs}: {u:?}");
            assert!(u.what.starts_with("nixosModules"), "{outputs}: {u:?}");
            if outputs.contains("bad.nix") {
                assert_eq!(diags.first().map(|d| d.code), Some("nix_syntax"));
            }
        }
    }

    #[test]
    fn self_references_to_outputs() {
        let (info, _) = scan(&[(
            "flake.nix",
            r#"{ outputs = { self }: { lib.mods = { a = ./a.nix; }; nixosModules = self.lib.mods // { b = self.nixosModules.a; }; }; }"#,
        )]);
        assert_eq!(
            kinds(&info),
            vec![("a".into(), path("a.nix")), ("b".into(), ModuleKind::Alias { target: "a".into() })]
        );
        let (info, _) =
            scan(&[("flake.nix", r#"{ outputs = { self }: { nixosModules = self.nixosModules; }; }"#)]);
        assert!(info.modules.is_empty());
        assert!(info.unresolved.iter().any(|u| u.reason.contains("levels deep")), "{:?}", info.unresolved);
    }

    #[test]
    fn exponential_bindings_stop_quickly() {
        let lets: String = (0..40).map(|i| format!("a{i} = a{} // a{}; ", i + 1, i + 1)).collect();
        let flake =
            format!("{{ outputs = _: let {lets} a40 = {{ x = ./x.nix; }}; in {{ nixosModules = a0; }}; }}");
        let start = std::time::Instant::now();
        let (info, _) = scan(&[("flake.nix", &flake)]);
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "{:?}", start.elapsed());
        assert!(info.unresolved.iter().any(|u| u.reason.contains("too complex")), "{:?}", info.unresolved);
    }

    #[test]
    fn broken_flakes() {
        let (info, diags) = scan(&[("flake.nix", "{ outputs = { self }: { nixosModules.a = ./a.nix; }")]);
        assert!(info.modules.is_empty());
        assert_eq!(diags[0].code, "nix_syntax");
        let (_, diags) = scan(&[("flake.nix", "{ description = \"x\"; }")]);
        assert_eq!(diags[0].code, "flake_no_outputs");
        let (_, diags) = scan(&[("flake.nix", "x: x")]);
        assert_eq!(diags[0].code, "flake_not_attrset");
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(analyze(dir.path(), &mut Sources::default()), Err(FlakeError::NoFlake { .. })));
    }

    #[test]
    fn outputs_from_an_imported_file() {
        let (info, _) = scan(&[
            ("flake.nix", r#"{ outputs = inputs: import ./outputs.nix inputs; }"#),
            ("outputs.nix", "{ self, ... }: { nixosModules.a = ./modules/a.nix; }"),
        ]);
        assert_eq!(kinds(&info), vec![("a".into(), path("modules/a.nix"))]);
    }

    /// Nix-looking token soup: exercises error recovery much more than
    /// random bytes do.
    fn nixish() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let token = prop_oneof![
            Just("{ "),
            Just("} "),
            Just("( "),
            Just(") "),
            Just("[ "),
            Just("] "),
            Just("; "),
            Just("= "),
            Just(": "),
            Just(". "),
            Just("// "),
            Just("@"),
            Just("..."),
            Just(", "),
            Just("rec "),
            Just("let "),
            Just("in "),
            Just("with "),
            Just("inherit "),
            Just("import "),
            Just("./a.nix "),
            Just("./d "),
            Just("self "),
            Just("inputs "),
            Just("outputs "),
            Just("nixosModules "),
            Just("flake "),
            Just("mkFlake "),
            Just("eachDefaultSystem "),
            Just("importApply "),
            Just("nixvmTests "),
            Just("x "),
            Just("\"s\" "),
            Just("${ "),
            Just("''i'' "),
            Just("<p> "),
            Just("if "),
            Just("then "),
            Just("else "),
            Just("1 "),
            Just("# c\n"),
        ];
        proptest::collection::vec(token, 0..80).prop_map(|ts| ts.concat())
    }

    /// A flake whose outputs import `m.nix` (and `m.nix` imports itself or
    /// `d/`), so that garbage also flows through the import code.
    const HOST: &str =
        r#"{ outputs = { self, ... }@inputs: rec { nixosModules = import ./m.nix { }; x = import ./d; }; }"#;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 96, ..Default::default() })]

        #[test]
        fn analyze_never_panics_on_flake_text(text in proptest::prop_oneof![nixish(), ".{0,200}"]) {
            let _ = scan(&[("flake.nix", &text)]);
        }

        #[test]
        fn analyze_never_panics_on_imported_text(text in nixish(), other in nixish()) {
            let _ = scan(&[("flake.nix", HOST), ("m.nix", &text), ("d/default.nix", &other), ("a.nix", &text)]);
        }

        #[test]
        fn analyze_never_panics_on_truncated_flakes(cut in 0usize..2000) {
            let text = r#"{
  inputs.flake-parts.url = "github:hercules-ci/flake-parts";
  outputs = inputs@{ flake-parts, self, ... }: let m = ./m.nix; in
    flake-parts.lib.mkFlake { inherit inputs; } ({ config, ... }: {
      imports = [ ./m.nix ];
      flake.nixosModules = { inherit m; b = importApply ./b.nix { }; ${"c"} = self.nixosModules.m; };
      flake.nixvmTests = [ ./t.nix ];
    }) // inputs.flake-utils.lib.eachDefaultSystem (s: { nixosModules.x = with m; rec { y = y; }; });
}"#;
            let cut = cut.min(text.len());
            let cut = (0..=cut).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
            let _ = scan(&[("flake.nix", &text[..cut]), ("m.nix", &text[..cut])]);
        }
    }
}
