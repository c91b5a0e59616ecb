//! `init`, `new` and `wire`: creating test projects and wiring generated
//! checks into existing flakes.
//!
//! Everything here plans first and writes last: a command computes every
//! file it would write, checks for conflicts, and only then writes (each file
//! atomically), so a refused command leaves the tree untouched.

pub mod init;
pub mod new;
mod templates;
pub mod wire;

use std::path::PathBuf;

/// Flake URL of nixvm-gen written into users' `inputs`.
pub const NIXVM_GEN_FLAKE_URL: &str = "github:nixvm-gen/nixvm-gen";
/// Flake URL of nixpkgs written by `init`.
pub const NIXPKGS_FLAKE_URL: &str = "github:NixOS/nixpkgs/nixos-unstable";

/// Errors of the scaffolding commands. [`ScaffoldError::is_usage`] tells which
/// are the user's to fix (exit code 2); the rest are I/O or internal.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("invalid {what} `{value}`: {reason}")]
    InvalidName { what: &'static str, value: String, reason: String },
    #[error(
        "refusing to overwrite existing file(s): {}; nothing was written (pass --force to overwrite)",
        list_paths(paths)
    )]
    WouldOverwrite { paths: Vec<PathBuf> },
    #[error("a test named `{name}` already exists in {}", file.display())]
    DuplicateTest { name: String, file: PathBuf },
    #[error("the flake exports no module named `{name}`{hint}")]
    UnknownModule { name: String, hint: String },
    #[error("failed to read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to render template {template}")]
    Template {
        template: &'static str,
        #[source]
        source: askama::Error,
    },
    /// A freshly generated project does not load cleanly: a template bug.
    #[error("the generated project has problems (a bug in nixvm-gen's templates):\n{0}")]
    BrokenScaffold(String),
    #[error(transparent)]
    Project(#[from] crate::project::ProjectError),
    #[error(transparent)]
    Codegen(#[from] crate::codegen::CodegenError),
}

impl ScaffoldError {
    /// Whether the user caused this (bad name, existing file…): exit code 2.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ScaffoldError::InvalidName { .. }
                | ScaffoldError::WouldOverwrite { .. }
                | ScaffoldError::DuplicateTest { .. }
                | ScaffoldError::UnknownModule { .. }
                | ScaffoldError::Project(crate::project::ProjectError::Flake(
                    crate::flake::FlakeError::NoFlake { .. }
                ))
        )
    }
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// Validates a name used as a Nix identifier, attribute, file stem and unit
/// name at once (project, service, module and test names): `[a-z][a-z0-9-]*`.
/// Validating instead of escaping keeps every generated file plain.
pub fn validate_name(what: &'static str, value: &str) -> Result<(), ScaffoldError> {
    let invalid = |reason: &str| ScaffoldError::InvalidName {
        what,
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let mut chars = value.chars();
    match chars.next() {
        None => return Err(invalid("it is empty")),
        Some(c) if !c.is_ascii_lowercase() => {
            return Err(invalid("it must start with a lowercase letter (a-z)"));
        }
        Some(_) => {}
    }
    if value.len() > 64 {
        return Err(invalid("it is longer than 64 characters"));
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        return Err(invalid(&format!(
            "`{c}` is not allowed; use lowercase letters, digits and `-` ([a-z][a-z0-9-]*)"
        )));
    }
    // The characters are fine, so only a keyword (`if`, `let`…) is left to
    // refuse: `nixosModules.if` and `services.if` do not parse.
    if !crate::codegen::escape::is_nix_identifier(value) {
        return Err(invalid("it is a Nix keyword"));
    }
    Ok(())
}

/// A file a command wants to write, relative to the project root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedFile {
    pub path: PathBuf,
    pub contents: String,
}

/// Writes planned files under `root`, atomically each.
pub(crate) fn write_planned(root: &std::path::Path, files: &[PlannedFile]) -> Result<(), ScaffoldError> {
    for f in files {
        let path = root.join(&f.path);
        // A linked `tests/vm` that leads out of the project is not followed.
        crate::fsutil::check_stays_inside(root, &path)
            .map_err(|source| ScaffoldError::Write { path: path.clone(), source })?;
        crate::fsutil::write_atomic(&path, f.contents.as_bytes())
            .map_err(|source| ScaffoldError::Write { path, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "hello", "health-check", "svc2"] {
            assert!(validate_name("name", ok).is_ok(), "{ok}");
        }
        for bad in ["", "Hello", "1abc", "-x", "a_b", "a.b", "a b", "ä", &"a".repeat(65)] {
            assert!(validate_name("name", bad).is_err(), "{bad}");
        }
    }
}
