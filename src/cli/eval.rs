//! The evaluator fallback of `scan --eval`: ask Nix for the names of the
//! flake's `nixosModules` and merge them into what static analysis found.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Context;

use crate::cli::app::{EvalMode, GlobalArgs, say};
use crate::config::Config;
use crate::diagnostic::FileId;
use crate::eval::{self, EvalError};
use crate::flake::{FLAKE_FILE, FlakeInfo, Module, ModuleKind};
use crate::project::Project;
use crate::spec;

/// Completes `project` with what the evaluator says, per `mode`:
/// `never` does nothing, `auto` asks only when something is unresolved (a
/// module list or a description that is not plain data) and keeps the static
/// results when Nix is missing or fails, `always` asks and fails (exit code
/// 3) when Nix is missing or fails.
pub fn apply_eval(
    g: &GlobalArgs,
    config: &Config,
    project: &mut Project,
    mode: EvalMode,
) -> anyhow::Result<()> {
    if mode == EvalMode::Never {
        return Ok(());
    }
    let modules_changed = eval_modules(g, config, project, mode)?;
    let descriptions_changed = eval_descriptions(g, config, project, mode)?;
    if modules_changed || descriptions_changed {
        revalidate(project);
    }
    Ok(())
}

/// Asks Nix for the module names. Returns whether the project changed.
fn eval_modules(
    g: &GlobalArgs,
    config: &Config,
    project: &mut Project,
    mode: EvalMode,
) -> anyhow::Result<bool> {
    let unresolved = project.flake.unresolved.iter().any(|u| answers(&u.what));
    if mode == EvalMode::Auto && !unresolved {
        return Ok(false);
    }
    if mode == EvalMode::Auto && !eval::is_installed("nix") {
        if !g.quiet {
            say!(
                "note: `nix` is not installed; keeping the static results (unresolved entries stay unresolved)"
            );
        }
        return Ok(false);
    }
    if g.verbose {
        say!("asking Nix for the nixosModules of {}", config.flake_dir.display());
    }
    let names = match eval::module_names(&config.flake_dir, eval::DEFAULT_TIMEOUT) {
        Ok(names) => names,
        Err(err) if mode == EvalMode::Auto => {
            say!("warning: keeping the static results: {}", summary(&err));
            return Ok(false);
        }
        Err(err) => {
            return Err(err)
                .with_context(|| format!("failed to evaluate the flake in {}", config.flake_dir.display()));
        }
    };
    let dropped = merge(&mut project.flake, &names);
    for name in dropped {
        if !g.quiet {
            say!("warning: static analysis found module `{name}`, but Nix does not list it; dropped");
        }
    }
    Ok(true)
}

/// Evaluates the descriptions that are not plain data (those with a
/// `not_static` error) and converts the result with the same converter the
/// static parser uses. Returns whether the project changed.
fn eval_descriptions(
    g: &GlobalArgs,
    config: &Config,
    project: &mut Project,
    mode: EvalMode,
) -> anyhow::Result<bool> {
    let files: BTreeSet<FileId> = project
        .diagnostics
        .iter()
        .filter(|d| d.code == "not_static" && d.is_error())
        .filter_map(|d| d.span.map(|s| s.file))
        .collect();
    if files.is_empty() {
        return Ok(false);
    }
    if mode == EvalMode::Auto && !eval::is_installed("nix-instantiate") {
        if !g.quiet {
            say!(
                "note: `nix-instantiate` is not installed; descriptions that are not plain data stay errors"
            );
        }
        return Ok(false);
    }
    let mut changed = false;
    for file in files {
        let rel = project.sources.path(file).to_path_buf();
        if g.verbose {
            say!("asking Nix to evaluate {}", rel.display());
        }
        let value = match eval::eval_description(&config.flake_dir.join(&rel), eval::DEFAULT_TIMEOUT) {
            Ok(value) => value,
            Err(err) if mode == EvalMode::Auto => {
                say!("warning: {} stays unread: {}", rel.display(), summary(&err));
                continue;
            }
            Err(err) => return Err(err).with_context(|| format!("failed to evaluate {}", rel.display())),
        };
        let (spec, diags) =
            spec::parse::from_json_with_source(file, &rel, project.sources.text(file), &value);
        // The evaluated value replaces what static parsing made of the file.
        project.diagnostics.retain(|d| d.span.is_none_or(|s| s.file != file));
        project.tests.retain(|t| t.file != rel);
        project.diagnostics.extend(diags);
        project.tests.extend(spec);
        changed = true;
    }
    Ok(changed)
}

/// Runs the cross-file checks again: module names or tests changed.
fn revalidate(project: &mut Project) {
    project.diagnostics.retain(|d| !VALIDATE_CODES.contains(&d.code));
    let names: Vec<String> =
        project.flake.modules.iter().filter(|m| m.kind.is_module()).map(|m| m.name.clone()).collect();
    let diags = spec::validate::validate(&mut project.tests, &names);
    project.diagnostics.extend(diags);
    project.tests.sort_by(|a, b| a.name.cmp(&b.name));
}

/// Codes of the diagnostics [`spec::validate::validate`] produces.
const VALIDATE_CODES: &[&str] = &["duplicate_test_name", "unknown_module"];

/// Whether the evaluator's list of module names answers an unresolved entry.
fn answers(what: &str) -> bool {
    what == "outputs" || what == "nixosModules" || what.starts_with("nixosModules.")
}

/// A one-paragraph version of an evaluator error for `auto` mode warnings.
fn summary(err: &EvalError) -> String {
    let text = err.to_string();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().unwrap_or_default().to_string();
    match lines.find(|l| l.starts_with("error:")) {
        Some(e) => format!("{first}\n  {e}"),
        None => first,
    }
}

/// Merges the evaluated module `names` into `flake`: static entries are
/// kept where Nix agrees, new names become [`ModuleKind::Evaluated`] (located
/// at the unresolved entry they came from), and the unresolved entries the
/// list answers are dropped. Returns the static modules Nix does not list
/// (they are removed: Nix is authoritative).
pub fn merge(flake: &mut FlakeInfo, names: &[String]) -> Vec<String> {
    let dropped: Vec<String> =
        flake.modules.iter().filter(|m| !names.contains(&m.name)).map(|m| m.name.clone()).collect();
    flake.modules.retain(|m| names.contains(&m.name));
    for name in names {
        if flake.modules.iter().any(|m| &m.name == name) {
            continue;
        }
        let what = format!("nixosModules.{name}");
        let at = flake
            .unresolved
            .iter()
            .find(|u| u.what == what)
            .or_else(|| flake.unresolved.iter().find(|u| answers(&u.what)))
            .map(|u| (u.file.clone(), u.line, u.column))
            .unwrap_or_else(|| (PathBuf::from(FLAKE_FILE), 1, 1));
        flake.modules.push(Module {
            name: name.clone(),
            file: at.0,
            line: at.1,
            column: at.2,
            kind: ModuleKind::Evaluated,
        });
    }
    flake.modules.sort_by(|a, b| a.name.cmp(&b.name));
    flake.unresolved.retain(|u| !answers(&u.what));
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flake::Unresolved;

    fn module(name: &str, kind: ModuleKind) -> Module {
        Module { name: name.into(), file: "flake.nix".into(), line: 3, column: 5, kind }
    }

    #[test]
    fn merge_keeps_static_entries_and_drops_answered_unresolved() {
        let mut flake = FlakeInfo {
            modules: vec![module("a", ModuleKind::Inline), module("gone", ModuleKind::Inline)],
            unresolved: vec![
                Unresolved {
                    what: "nixosModules".into(),
                    file: "flake.nix".into(),
                    line: 7,
                    column: 3,
                    reason: "x".into(),
                },
                Unresolved {
                    what: "nixosModules.c".into(),
                    file: "m.nix".into(),
                    line: 2,
                    column: 1,
                    reason: "y".into(),
                },
                Unresolved {
                    what: "nixvmTests".into(),
                    file: "flake.nix".into(),
                    line: 9,
                    column: 3,
                    reason: "z".into(),
                },
            ],
            test_files: vec![],
            files: vec![],
        };
        let dropped = merge(&mut flake, &["a".into(), "b".into(), "c".into()]);
        assert_eq!(dropped, vec!["gone".to_string()]);
        let got: Vec<_> =
            flake.modules.iter().map(|m| (m.name.as_str(), m.file.clone(), m.line, &m.kind)).collect();
        assert_eq!(
            got,
            vec![
                ("a", PathBuf::from("flake.nix"), 3, &ModuleKind::Inline),
                ("b", PathBuf::from("flake.nix"), 7, &ModuleKind::Evaluated),
                ("c", PathBuf::from("m.nix"), 2, &ModuleKind::Evaluated),
            ]
        );
        assert_eq!(flake.unresolved.len(), 1);
        assert_eq!(flake.unresolved[0].what, "nixvmTests");
    }
}
