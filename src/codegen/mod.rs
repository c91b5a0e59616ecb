//! Rendering a validated [`Project`] into one Nix file of
//! `checks.<system>.<test>` built with `pkgs.testers.runNixOSTest`.
//!
//! Layout lives in `templates/codegen/checks.nix`; every value reaching the
//! template is already a valid Nix (or Python, or shell) fragment, escaped by
//! [`escape`] and prepared by [`model`].
//!
//! The file is a function `{ self, nixpkgs, <input> ? null }:` returning
//! `{ <system> = { <test> = <derivation>; }; }`; `wire` and `init` import it
//! that way, and the rust backend calls `<input>.lib.mkDriver`.

pub mod escape;
pub mod model;
pub mod nix_value;
pub mod script;

use std::path::PathBuf;

use askama::Template;

use crate::config::Config;
use crate::project::Project;

/// Errors while rendering. Bad descriptions are caught by validation first;
/// what is left are settings and values the generated code cannot express.
#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    #[error("failed to render template {template}")]
    Template {
        template: &'static str,
        #[source]
        source: askama::Error,
    },
    /// `--input-name` is not usable as a Nix function argument.
    #[error(
        "input name `{name}` cannot be used as an argument of the generated file: use a Nix identifier other than self, nixpkgs, pkgs, lib, config, tests, import, builtins and hydraJobs"
    )]
    InputName { name: String },
    /// The output or a description lies outside the flake.
    #[error(
        "{path} is outside the flake: the generated file and the descriptions must be inside the flake directory"
    )]
    OutputPath { path: PathBuf },
    /// A step without a node slipped through validation.
    #[error("{location}: `{action}` step has no node; name one with `node = \"…\";`")]
    MissingNode { location: String, action: &'static str },
    /// A value the stock driver would pass to a shell unquoted. Validation
    /// refuses these first, with spans (`unsafe_*` codes, see
    /// [`crate::spec::names`]); this is the backstop for specs built in code.
    #[error("{location}: {message}")]
    Unsupported { location: String, message: String },
}

/// Renders the generated checks file. Deterministic: the same project always
/// gives byte-identical output.
pub fn render(project: &Project, config: &Config) -> Result<String, CodegenError> {
    render_with(project, config, false)
}

/// [`render`], optionally serving `hydraJobs` too (`--hydra-jobs`).
pub fn render_with(project: &Project, config: &Config, hydra_jobs: bool) -> Result<String, CodegenError> {
    let settings = model::Settings::new(config)?;
    let mut specs: Vec<&crate::spec::TestSpec> = project.tests.iter().collect();
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    let blocks = test_blocks(&specs, &project.flake, &project.sources, &settings)
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let entries: Vec<model::Entry> = specs
        .iter()
        .zip(&blocks)
        .map(|(spec, block)| model::Entry {
            name: &spec.name,
            file: &spec.file,
            systems: spec.systems.as_deref(),
            text: &block.text,
            evaluated: block.evaluated,
        })
        .collect();
    render_file(&settings, &entries, hydra_jobs)
}

/// Below this many tests one thread renders them all: starting workers
/// costs more than it saves (as for parsing, `spec::parse::parse_many`).
const TESTS_PER_WORKER: usize = 200;

/// The blocks' renderers recurse (subtests, the plan literal) as deep as
/// the nesting limits let a description go: room to spare, like the parse.
const RENDER_STACK_BYTES: usize = 64 << 20;

/// Renders the blocks of `specs`, in order, on up to one thread per core
/// when there are many (this halves the wall time of a cold `check` on two
/// cores, not its CPU time).
pub fn test_blocks(
    specs: &[&crate::spec::TestSpec],
    flake: &crate::flake::FlakeInfo,
    sources: &crate::diagnostic::Sources,
    settings: &model::Settings,
) -> Vec<Result<model::TestBlock, CodegenError>> {
    let render = |spec: &&crate::spec::TestSpec| model::test_block(spec, flake, sources, settings);
    let wanted = specs.len().div_ceil(TESTS_PER_WORKER).max(1);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, wanted);
    if workers == 1 {
        return specs.iter().map(render).collect();
    }
    let chunk = specs.len().div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = specs
            .chunks(chunk)
            .map(|part| {
                let job = move || part.iter().map(render).collect::<Vec<_>>();
                let handle = std::thread::Builder::new()
                    .name("render".into())
                    .stack_size(RENDER_STACK_BYTES)
                    .spawn_scoped(scope, job);
                (part, handle)
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|(part, handle)| match handle {
                Ok(h) => h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(_) => part.iter().map(render).collect(),
            })
            .collect()
    })
}

/// Renders the file around already rendered test blocks (`entries` sorted
/// by test name): the last step of [`render_with`] and of the incremental
/// path, which takes unchanged tests' blocks from its cache.
pub fn render_file(
    settings: &model::Settings,
    entries: &[model::Entry<'_>],
    hydra_jobs: bool,
) -> Result<String, CodegenError> {
    let mut file = model::assemble(settings, entries);
    if hydra_jobs {
        file = file.with_hydra_jobs();
    }
    // One buffer of the right size: the blocks are most of the file, and
    // growing a buffer of megabytes copies it and faults in fresh pages.
    let capacity = 4096 + entries.iter().map(|e| e.text.len() + 160).sum::<usize>();
    let mut text = String::with_capacity(capacity);
    file.render_into(&mut text)
        .map_err(|source| CodegenError::Template { template: "codegen/checks.nix", source })?;
    let trimmed = text.trim_end_matches('\n').len();
    text.truncate(trimmed);
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests;
