//! `nixvm-gen new NAME`: a commented description skeleton showing every
//! step kind (commented out, so the file is valid with one real step).

use std::path::PathBuf;

use super::templates::{self, NewTest};
use super::{PlannedFile, ScaffoldError, validate_name};
use crate::config::Config;

/// Node name used when `--nodes` is not given.
pub const DEFAULT_NODE: &str = "machine";

/// What `new` was asked to do.
#[derive(Clone, Debug)]
pub struct NewOptions {
    pub name: String,
    /// A `nixosModules` entry to import (default: all of them).
    pub module: Option<String>,
    /// Node names; empty means [`DEFAULT_NODE`].
    pub nodes: Vec<String>,
}

/// Plans `tests/vm/<name>.nix` for the project at `config`. Refuses when the
/// file exists or another description already uses the name.
pub fn plan(config: &Config, opts: &NewOptions) -> Result<PlannedFile, ScaffoldError> {
    validate_name("test name", &opts.name)?;
    let mut nodes: Vec<String> = Vec::new();
    for n in &opts.nodes {
        validate_name("node name", n)?;
        // The same rule validation applies, so `new` never writes a
        // description that `check` then refuses (`--nodes log`).
        let pythonized = crate::spec::names::pythonize(n);
        if let Some(why) = crate::spec::names::reserved_python_name(&pythonized) {
            return Err(ScaffoldError::InvalidName {
                what: "node name",
                value: n.clone(),
                reason: format!("`{pythonized}` is {why} in the test script; choose another name"),
            });
        }
        if !nodes.contains(n) {
            nodes.push(n.clone());
        }
    }
    if nodes.is_empty() {
        nodes.push(DEFAULT_NODE.to_string());
    }
    let tests_dir = super::init::nix_relative_path("tests directory", &config.tests_dir)?;
    let rel = PathBuf::from(&tests_dir).join(format!("{}.nix", opts.name));
    if config.flake_dir.join(&rel).exists() {
        return Err(ScaffoldError::WouldOverwrite { paths: vec![rel] });
    }

    let project = crate::project::load(config)?;
    if let Some(t) = project.tests.iter().find(|t| t.name == opts.name) {
        return Err(ScaffoldError::DuplicateTest { name: opts.name.clone(), file: t.file.clone() });
    }
    if let Some(m) = &opts.module {
        let known: Vec<&str> = project.flake.modules.iter().map(|m| m.name.as_str()).collect();
        if !known.contains(&m.as_str()) {
            return Err(ScaffoldError::UnknownModule { name: m.clone(), hint: module_hint(m, &known) });
        }
    }

    let several = nodes.len() > 1;
    let first = &nodes[0];
    let node_attr = |n: &str| if several { format!(" node = \"{n}\";") } else { String::new() };
    let view = NewTest {
        name: &opts.name,
        module: opts.module.as_deref(),
        nodes: &nodes,
        first_node: first,
        first_step: format!("{{ waitForUnit = \"multi-user.target\";{} }}", node_attr(first)),
        node_hint: node_attr(first),
    };
    Ok(PlannedFile { path: rel, contents: templates::render("scaffold/new-test.nix", &view)? })
}

/// Writes the planned description; returns its path relative to the flake.
pub fn new(config: &Config, opts: &NewOptions) -> Result<PathBuf, ScaffoldError> {
    let file = plan(config, opts)?;
    super::write_planned(&config.flake_dir, std::slice::from_ref(&file))?;
    Ok(file.path)
}

/// " (did you mean `x`?)" or the list of known modules.
fn module_hint(name: &str, known: &[&str]) -> String {
    let best = known
        .iter()
        .map(|k| (strsim::jaro_winkler(name, k), *k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match (best, known.is_empty()) {
        (Some((_, k)), _) => format!(" (did you mean `{k}`?)"),
        (None, true) => " (it exports no nixosModules at all)".to_string(),
        (None, false) => format!(" (it exports: {})", known.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints() {
        assert_eq!(module_hint("webb", &["web", "db"]), " (did you mean `web`?)");
        assert_eq!(module_hint("zzz", &["web", "db"]), " (it exports: web, db)");
        assert_eq!(module_hint("zzz", &[]), " (it exports no nixosModules at all)");
    }
}
