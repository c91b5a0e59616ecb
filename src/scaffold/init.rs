//! `nixvm-gen init`: a complete, working project (flake, service module, one
//! test, generated checks, pre-commit config, README).
//!
//! The project is first rendered into a staging directory and loaded with
//! [`crate::project::load`] + [`crate::codegen::render`], exactly as
//! `generate` would, so the generated checks are real and `check` passes right
//! away; only then are the files copied into place.

use std::path::{Path, PathBuf};

use super::templates::{
    self, CiWorkflow, Flake, GitlabPipeline, Module, PreCommitConfig, Readme, ServiceTest,
};
use super::{PlannedFile, ScaffoldError, validate_name};
use crate::config::Config;

/// Default port of the example service (the blog post's health page).
pub const DEFAULT_PORT: u16 = 3000;

/// What `init` was asked to do.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Project directory (created when missing).
    pub dir: PathBuf,
    /// Project name; defaults to the directory's name.
    pub name: Option<String>,
    /// `nixosModules.<module>`; defaults to the service name.
    pub module: Option<String>,
    /// `services.<service>`; defaults to the project name.
    pub service: Option<String>,
    pub port: u16,
    pub force: bool,
    /// Where descriptions, the generated file and the input name go.
    pub tests_dir: PathBuf,
    pub output: PathBuf,
    pub input_name: String,
    /// Also write a CI workflow that fans the checks out (`--ci`).
    pub ci: Option<Ci>,
}

/// CI services `init --ci` writes a workflow for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ci {
    /// `.github/workflows/vm-tests.yml`
    Github,
    /// `.gitlab-ci.yml` (the child pipeline is `nixvm-gen matrix --format gitlab`)
    Gitlab,
}

impl InitOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let defaults = Config::new(".");
        InitOptions {
            dir: dir.into(),
            name: None,
            module: None,
            service: None,
            port: DEFAULT_PORT,
            force: false,
            tests_dir: defaults.tests_dir,
            output: defaults.output,
            input_name: defaults.input_name,
            ci: None,
        }
    }
}

/// What `init` did.
#[derive(Debug)]
pub struct InitReport {
    pub name: String,
    pub service: String,
    pub module: String,
    /// Files written, relative to the project directory.
    pub written: Vec<PathBuf>,
    /// The subset of `written` that existed before (only with `force`).
    pub overwritten: Vec<PathBuf>,
}

/// Names after defaults are applied and everything is validated.
struct Names {
    name: String,
    service: String,
    module: String,
    tests_dir: String,
    output: String,
}

fn resolve_names(opts: &InitOptions) -> Result<Names, ScaffoldError> {
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => dir_name(&opts.dir).ok_or_else(|| ScaffoldError::InvalidName {
            what: "project name",
            value: opts.dir.display().to_string(),
            reason: "the directory has no usable name; pass --name".into(),
        })?,
    };
    validate_name("project name", &name).map_err(|e| match (e, &opts.name) {
        (ScaffoldError::InvalidName { what, value, reason }, None) => ScaffoldError::InvalidName {
            what,
            value,
            reason: format!("{reason} (it is the directory's name; pass --name)"),
        },
        (e, _) => e,
    })?;
    let service = opts.service.clone().unwrap_or_else(|| name.clone());
    validate_name("service name", &service)?;
    let module = opts.module.clone().unwrap_or_else(|| service.clone());
    validate_name("module name", &module)?;
    validate_input_name(&opts.input_name)?;
    if opts.port == 0 {
        // The test would wait for port 0 and validation refuses it.
        let reason = "the example service needs a port from 1 to 65535".into();
        return Err(ScaffoldError::InvalidName { what: "port", value: "0".into(), reason });
    }
    Ok(Names {
        name,
        service,
        module,
        tests_dir: nix_relative_path("tests directory", &opts.tests_dir)?,
        output: nix_relative_path("output file", &opts.output)?,
    })
}

/// The last component of `dir` (of the current directory for `.`), with
/// `..` resolved lexically.
fn dir_name(dir: &Path) -> Option<String> {
    let abs = if dir.is_absolute() { dir.to_path_buf() } else { std::env::current_dir().ok()?.join(dir) };
    let mut parts = Vec::new();
    for c in abs.components() {
        match c {
            std::path::Component::Normal(s) => parts.push(s),
            std::path::Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.last()?.to_str().map(str::to_string)
}

/// nixvm-gen's input name, checked by the same rule as `generate`
/// ([`crate::codegen::model::is_usable_input_name`]), so `init` and `wire`
/// never write a flake whose generated file cannot be made.
pub(crate) fn validate_input_name(value: &str) -> Result<(), ScaffoldError> {
    if crate::codegen::model::is_usable_input_name(value) {
        return Ok(());
    }
    Err(ScaffoldError::InvalidName {
        what: "input name",
        value: value.to_string(),
        reason: format!(
            "it must be a plain Nix identifier ([A-Za-z_][A-Za-z0-9_'-]*), not a keyword, and none of {}",
            crate::codegen::model::RESERVED_NAMES.join(", ")
        ),
    })
}

/// A relative path that can be written as a Nix path literal `./<path>`.
pub(crate) fn nix_relative_path(what: &'static str, path: &Path) -> Result<String, ScaffoldError> {
    let s = path.to_str().unwrap_or("");
    let s = s.strip_prefix("./").unwrap_or(s).trim_end_matches('/');
    let invalid = |reason: &str| ScaffoldError::InvalidName {
        what,
        value: path.display().to_string(),
        reason: reason.to_string(),
    };
    if s.is_empty() || path.is_absolute() {
        return Err(invalid("it must be a non-empty path relative to the flake"));
    }
    if s.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(invalid("it must not contain empty, `.` or `..` components"));
    }
    if !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '/')) {
        return Err(invalid("only letters, digits and `._-+/` can appear in a Nix path literal"));
    }
    Ok(s.to_string())
}

/// Every file `init` writes except the generated checks, relative to the
/// project directory.
fn plan_sources(opts: &InitOptions, n: &Names) -> Result<Vec<PlannedFile>, ScaffoldError> {
    let flake = Flake {
        name: &n.name,
        module: &n.module,
        input_name: &opts.input_name,
        nixpkgs_url: super::NIXPKGS_FLAKE_URL,
        nixvm_gen_url: super::NIXVM_GEN_FLAKE_URL,
        tests_dir: &n.tests_dir,
        output: &n.output,
    };
    let module = Module { service: &n.service, port: opts.port, tests_dir: &n.tests_dir };
    let test = ServiceTest { service: &n.service, port: opts.port };
    let pre_commit = PreCommitConfig { tests_dir: &n.tests_dir, output: &n.output };
    let readme = Readme {
        name: &n.name,
        module: &n.module,
        service: &n.service,
        port: opts.port,
        tests_dir: &n.tests_dir,
        output: &n.output,
    };
    let file = |path: String, contents: String| PlannedFile { path: PathBuf::from(path), contents };
    let mut files = vec![
        file(crate::flake::FLAKE_FILE.into(), templates::render("scaffold/flake.nix", &flake)?),
        file(format!("modules/{}.nix", n.module), templates::render("scaffold/module.nix", &module)?),
        file(format!("{}/{}.nix", n.tests_dir, n.service), templates::render("scaffold/test.nix", &test)?),
        file(
            ".pre-commit-config.yaml".into(),
            templates::render("scaffold/pre-commit-config.yaml", &pre_commit)?,
        ),
        file("README.md".into(), templates::render("scaffold/README.md", &readme)?),
        file(
            ".gitignore".into(),
            "result\nresult-*\n# temporaries of an interrupted nixvm-gen run\n.nixvm-tmp*\n".into(),
        ),
    ];
    files.extend(ci_files(opts)?);
    Ok(files)
}

/// The CI workflow of `--ci`: it asks `nixvm-gen matrix` for the jobs at
/// run time, so it never goes stale when tests are added.
pub fn ci_files(opts: &InitOptions) -> Result<Vec<PlannedFile>, ScaffoldError> {
    let input_name = crate::eval::shell_word(&opts.input_name);
    let view = CiWorkflow { input_name: &input_name };
    Ok(match opts.ci {
        None => Vec::new(),
        Some(Ci::Github) => vec![PlannedFile {
            path: PathBuf::from(".github/workflows/vm-tests.yml"),
            contents: templates::render("ci/github.yml", &view)?,
        }],
        Some(Ci::Gitlab) => vec![PlannedFile {
            path: PathBuf::from(".gitlab-ci.yml"),
            contents: templates::render("ci/gitlab.yml", &GitlabPipeline { input_name: &input_name })?,
        }],
    })
}

/// Renders the generated checks of a project whose sources are `files`, by
/// loading a staged copy exactly as `generate` loads a real project.
fn generate_checks(opts: &InitOptions, files: &[PlannedFile]) -> Result<PlannedFile, ScaffoldError> {
    let stage = tempfile::Builder::new()
        .prefix("nixvm-gen-init-")
        .tempdir()
        .map_err(|source| ScaffoldError::Write { path: std::env::temp_dir(), source })?;
    super::write_planned(stage.path(), files)?;
    let config = Config {
        flake_dir: stage.path().to_path_buf(),
        tests_dir: opts.tests_dir.clone(),
        output: opts.output.clone(),
        input_name: opts.input_name.clone(),
    };
    let project = crate::project::load(&config)?;
    if project.has_errors() {
        let text = crate::diagnostic::render(&project.diagnostics, &project.sources, false);
        return Err(ScaffoldError::BrokenScaffold(text));
    }
    let contents = crate::codegen::render(&project, &config)?;
    Ok(PlannedFile { path: opts.output.clone(), contents })
}

/// Creates the project. Refuses (writing nothing) when any file exists,
/// unless `opts.force`.
pub fn init(opts: &InitOptions) -> Result<InitReport, ScaffoldError> {
    let names = resolve_names(opts)?;
    let mut files = plan_sources(opts, &names)?;
    let existing: Vec<PathBuf> = files
        .iter()
        .map(|f| f.path.clone())
        .chain([opts.output.clone()])
        .filter(|p| opts.dir.join(p).exists())
        .collect();
    if !existing.is_empty() && !opts.force {
        return Err(ScaffoldError::WouldOverwrite { paths: existing });
    }
    files.push(generate_checks(opts, &files)?);
    super::write_planned(&opts.dir, &files)?;
    Ok(InitReport {
        name: names.name,
        service: names.service,
        module: names.module,
        written: files.into_iter().map(|f| f.path).collect(),
        overwritten: existing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(
            nix_relative_path("p", Path::new("./nix/checks.generated.nix")).unwrap(),
            "nix/checks.generated.nix"
        );
        assert_eq!(nix_relative_path("p", Path::new("tests/vm/")).unwrap(), "tests/vm");
        for bad in ["", "/abs", "a/../b", "a b", "a//b", "x\"y"] {
            assert!(nix_relative_path("p", Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn input_names() {
        assert!(validate_input_name("nixvm-gen").is_ok());
        assert!(validate_input_name("foo_bar'").is_ok());
        for bad in ["", "1a", "a.b", "in", "a b", "self", "nixpkgs"] {
            assert!(validate_input_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dir_names() {
        assert_eq!(dir_name(Path::new("/tmp/my-proj")).as_deref(), Some("my-proj"));
        assert_eq!(dir_name(Path::new("/tmp/my-proj/sub/..")).as_deref(), Some("my-proj"));
    }

    #[test]
    fn sources_render_with_defaults() {
        let mut opts = InitOptions::new("/tmp/demo");
        opts.module = Some("web".into());
        let names = resolve_names(&opts).unwrap();
        let files = plan_sources(&opts, &names).unwrap();
        let flake = &files[0].contents;
        assert!(flake.contains("nixosModules.web = ./modules/web.nix;"), "{flake}");
        assert!(flake.contains("nixosModules.default = self.nixosModules.web;"), "{flake}");
        assert!(flake.contains("checks = import ./nix/checks.generated.nix {"), "{flake}");
        let paths: Vec<_> = files.iter().map(|f| f.path.display().to_string()).collect();
        assert!(paths.contains(&"tests/vm/demo.nix".to_string()), "{paths:?}");
        for f in &files {
            if f.path.extension().is_some_and(|e| e == "nix") {
                let parse = rnix::Root::parse(&f.contents);
                assert!(
                    parse.errors().is_empty(),
                    "{}: {:?}\n{}",
                    f.path.display(),
                    parse.errors(),
                    f.contents
                );
            }
        }
    }
}
