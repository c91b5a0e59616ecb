//! Static analysis of `flake.nix` (and the files it imports) with rnix: which
//! NixOS modules the flake exports, and where. What cannot be told without
//! evaluating is reported as [`Unresolved`], never guessed.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::diagnostic::{Diagnostic, Sources};

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
    /// `name = self.nixosModules.other;`: the same module under another name.
    Alias { target: String },
    /// Found via the evaluator (`--eval`), no source location known.
    Evaluated,
}

impl ModuleKind {
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
pub fn analyze(dir: &Path, sources: &mut Sources) -> Result<(FlakeInfo, Vec<Diagnostic>), FlakeError> {
    let _ = (dir, sources);
    todo!("flake::analyze")
}
