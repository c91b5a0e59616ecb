//! Loading a whole project: the flake analysis plus every description,
//! parsed and validated. This is the single entry point the CLI uses before
//! rendering, so `generate` and `check` see exactly the same input.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::diagnostic::{Diagnostic, Sources};
use crate::flake::{self, FlakeError, FlakeInfo};
use crate::spec::{self, TestSpec};

/// A loaded project. Generation may proceed only when
/// [`Project::has_errors`] is false.
#[derive(Debug)]
pub struct Project {
    pub root: PathBuf,
    pub flake: FlakeInfo,
    /// Valid descriptions, sorted by name.
    pub tests: Vec<TestSpec>,
    pub sources: Sources,
    pub diagnostics: Vec<Diagnostic>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error(transparent)]
    Flake(#[from] FlakeError),
    #[error("failed to read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The descriptions directory exists but cannot be listed (for example
    /// `--tests-dir` names a file).
    #[error("failed to list the descriptions directory {path} (--tests-dir)")]
    ReadDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Project {
    pub fn has_errors(&self) -> bool {
        crate::diagnostic::has_errors(&self.diagnostics)
    }
}

/// Description files: `*.nix` directly in the tests directory plus those the
/// flake names in `nixvmTests`, relative to the flake root, sorted, unique.
pub fn discover(config: &Config, flake: &FlakeInfo) -> Result<Vec<PathBuf>, ProjectError> {
    let mut files: Vec<PathBuf> = flake.test_files.clone();
    let dir = config.flake_dir.join(&config.tests_dir);
    match std::fs::read_dir(&dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(|source| ProjectError::ReadDir { path: dir.clone(), source })?;
                let name = entry.file_name();
                let is_nix = Path::new(&name).extension().is_some_and(|e| e == "nix");
                // `metadata` follows symlinks: a linked description counts.
                if !is_nix {
                    continue;
                }
                if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
                    files.push(config.tests_dir.join(name));
                } else if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    // A dangling link, a link loop, a FIFO: say so rather than
                    // silently check fewer tests (issue 11).
                    let source = std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "it is not a regular file (a dangling or looping link, a FIFO, a socket or a device)",
                    );
                    return Err(ProjectError::Read { path: entry.path(), source });
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(ProjectError::ReadDir { path: dir, source }),
    }
    files.sort();
    files.dedup();
    Ok(files)
}

/// Loads and validates everything.
pub fn load(config: &Config) -> Result<Project, ProjectError> {
    let mut sources = Sources::default();
    let (flake, mut diagnostics) = flake::analyze(&config.flake_dir, &mut sources)?;
    let mut files = Vec::new();
    for rel in discover(config, &flake)? {
        let text = read_description(config, &rel)?;
        files.push((sources.add(rel.clone(), text), rel));
    }
    let inputs: Vec<_> =
        files.iter().map(|(file, rel)| (*file, rel.as_path(), sources.text(*file))).collect();
    let mut tests = Vec::new();
    for (spec, diags) in spec::parse::parse_many(&inputs) {
        diagnostics.extend(diags);
        tests.extend(spec);
    }
    let heads: Vec<_> = tests.iter().map(spec::validate::TestHead::of).collect();
    let checked = cross_checks(&heads, &flake, &diagnostics);
    diagnostics.extend(checked);
    tests.iter_mut().for_each(spec::validate::fill_implicit_nodes);
    tests.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Project { root: config.flake_dir.clone(), flake, tests, sources, diagnostics })
}

/// Reads the description `rel` (relative to the flake).
pub fn read_description(config: &Config, rel: &Path) -> Result<String, ProjectError> {
    let path = config.flake_dir.join(rel);
    crate::limits::read_nix_file(&path).map_err(|source| ProjectError::Read { path, source })
}

/// The checks across descriptions and against the flake
/// ([`spec::validate::validate_heads`]), given the tests in file order and
/// the diagnostics found so far.
pub fn cross_checks(
    heads: &[spec::validate::TestHead],
    flake: &FlakeInfo,
    so_far: &[Diagnostic],
) -> Vec<Diagnostic> {
    // A set of modules (`nixosModules.hm.x`) is not something to import.
    let module_names: Vec<String> =
        flake.modules.iter().filter(|m| m.kind.is_module()).map(|m| m.name.clone()).collect();
    let broken = crate::diagnostic::has_errors(so_far);
    let checked = spec::validate::validate_heads(heads, &module_names);
    // With a broken flake no module is known: "unknown module" would only
    // repeat the flake's error once per description.
    checked.into_iter().filter(|d| !(broken && d.code == "unknown_module")).collect()
}
