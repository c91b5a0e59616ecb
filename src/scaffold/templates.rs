//! askama views of the files `init` and `new` write. Templates hold layout
//! only (`escape = "none"`): every value is a validated name, a number or a
//! fixed URL, so nothing needs escaping.

use askama::Template;

use super::ScaffoldError;

/// `flake.nix` of a new project.
#[derive(Template)]
#[template(path = "scaffold/flake.nix", escape = "none")]
pub(super) struct Flake<'a> {
    pub name: &'a str,
    pub module: &'a str,
    pub input_name: &'a str,
    pub nixpkgs_url: &'a str,
    pub nixvm_gen_url: &'a str,
    pub tests_dir: &'a str,
    pub output: &'a str,
}

/// `modules/<module>.nix`: the example service.
#[derive(Template)]
#[template(path = "scaffold/module.nix", escape = "none")]
pub(super) struct Module<'a> {
    pub service: &'a str,
    pub port: u16,
    pub tests_dir: &'a str,
}

/// `tests/vm/<service>.nix`: the example test.
#[derive(Template)]
#[template(path = "scaffold/test.nix", escape = "none")]
pub(super) struct ServiceTest<'a> {
    pub service: &'a str,
    pub port: u16,
}

/// `.pre-commit-config.yaml` of a new project.
#[derive(Template)]
#[template(path = "scaffold/pre-commit-config.yaml", escape = "none")]
pub(super) struct PreCommitConfig<'a> {
    pub tests_dir: &'a str,
    pub output: &'a str,
}

/// `README.md` of a new project.
#[derive(Template)]
#[template(path = "scaffold/README.md", escape = "none")]
pub(super) struct Readme<'a> {
    pub name: &'a str,
    pub module: &'a str,
    pub service: &'a str,
    pub port: u16,
    pub tests_dir: &'a str,
    pub output: &'a str,
}

/// `.github/workflows/vm-tests.yml` of `init --ci github`.
#[derive(Template)]
#[template(path = "ci/github.yml", escape = "none")]
pub(super) struct CiWorkflow<'a> {
    /// nixvm-gen's flake input name, shell-quoted.
    pub input_name: &'a str,
}

/// `.gitlab-ci.yml` of `init --ci gitlab`.
#[derive(Template)]
#[template(path = "ci/gitlab.yml", escape = "none")]
pub(super) struct GitlabPipeline<'a> {
    /// nixvm-gen's flake input name, shell-quoted.
    pub input_name: &'a str,
}

/// The skeleton `nixvm-gen new` writes.
#[derive(Template)]
#[template(path = "scaffold/new-test.nix", escape = "none")]
pub(super) struct NewTest<'a> {
    pub name: &'a str,
    pub module: Option<&'a str>,
    pub nodes: &'a [String],
    pub first_node: &'a str,
    /// The one real step, a complete Nix list element.
    pub first_step: String,
    /// ` node = "…";` inside the commented examples when there are several nodes.
    pub node_hint: String,
}

/// Renders a template, naming it in the error.
pub(super) fn render(template: &'static str, t: &impl Template) -> Result<String, ScaffoldError> {
    t.render().map_err(|source| ScaffoldError::Template { template, source })
}
