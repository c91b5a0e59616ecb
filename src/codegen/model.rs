//! The view of the generated file that the template lays out. Everything
//! is decided here: every string is already an escaped Nix fragment and
//! multi-line values are already indented for their place in the template,
//! so `templates/codegen/checks.nix` holds layout only.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use askama::Template;

use super::CodegenError;
use super::escape::{
    comment_text, is_nix_identifier, is_nix_path_literal_safe, nix_attr_name, nix_indented_string, nix_string,
};
use super::{nix_value, script};
use crate::config::Config;
use crate::diagnostic::Sources;
use crate::flake::{FlakeInfo, ModuleKind};
use crate::plan::SpecPlan;
use crate::spec::computed::ComputedType;
use crate::spec::{self, Action, Backend, Step, TestSpec, computed};

/// Indentation of the attributes of a test module in the template.
const TEST_BODY_INDENT: usize = 10;
/// Indentation of the `plan = …;` attribute in the template.
const PLAN_INDENT: usize = 14;

/// Names the generated file binds itself; the nixvm-gen input argument
/// must not shadow them.
pub(crate) const RESERVED_NAMES: &[&str] =
    &["self", "nixpkgs", "pkgs", "lib", "config", "tests", "import", "builtins", "hydraJobs"];

/// Whether `name` can be nixvm-gen's input name: the generated file takes
/// it as a function argument next to `self` and `nixpkgs`, and `init` and
/// `wire` write it into `flake.nix` (one rule for all three).
pub fn is_usable_input_name(name: &str) -> bool {
    is_nix_identifier(name) && !RESERVED_NAMES.contains(&name)
}

/// The whole generated file, around the tests' blocks.
#[derive(Template)]
#[template(path = "codegen/checks.nix", escape = "none")]
pub struct ChecksFile<'a> {
    pub version: &'static str,
    /// The description files, for the header comment.
    pub sources: String,
    /// The nixvm-gen input's argument name.
    pub input_name: &'a str,
    /// The tests' blocks ([`TestBlock::text`]), sorted by test name.
    pub tests: Vec<&'a str>,
    /// Some test refers to values of its description that Nix computes:
    /// the file defines the helpers that call and check them.
    pub computed: bool,
    /// Systems sorted by name.
    pub systems: Vec<SystemView>,
    /// Whether the file also serves `hydraJobs` (`--hydra-jobs`): it then
    /// takes `hydraJobs ? false` and, when true, returns
    /// `<test>.<system>` instead of `<system>.<test>`.
    pub hydra: bool,
    /// The transposed view, filled only when `hydra` is set.
    pub hydra_jobs: Vec<HydraJobView>,
}

/// One test in `hydraJobs`: the systems it is built for.
pub struct HydraJobView {
    pub attr: String,
    /// Attribute names of the systems, sorted.
    pub systems: Vec<String>,
}

impl ChecksFile<'_> {
    /// Turns on `hydraJobs` support: transposes `systems`.
    pub fn with_hydra_jobs(mut self) -> Self {
        let mut jobs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for system in &self.systems {
            for test in &system.tests {
                jobs.entry(test.clone()).or_default().push(system.attr.clone());
            }
        }
        self.hydra = true;
        self.hydra_jobs = jobs.into_iter().map(|(attr, systems)| HydraJobView { attr, systems }).collect();
        self
    }
}

/// One test, as a function from a package set to the check. Rendered on
/// its own (`templates/codegen/test.nix`) into a [`TestBlock`] that depends
/// only on its description, the flake's modules and [`Settings`], so that
/// `check` can reuse it from its cache (`crate::incremental`).
#[derive(Template)]
#[template(path = "codegen/test.nix", escape = "none")]
pub struct TestView<'a> {
    /// The nixvm-gen input's argument name.
    pub input_name: &'a str,
    /// Attribute name in `tests` and in each system's set.
    pub attr: String,
    /// The `name` string literal.
    pub name: String,
    pub global_timeout: Option<u64>,
    /// `enableOCR = true;`: the test has a `waitForText` step (the stock
    /// driver then has tesseract; `lib.mkDriver` puts it on nixvm-driver's PATH).
    pub enable_ocr: bool,
    pub nodes: Vec<NodeView>,
    /// The `testScript` indented string literal.
    pub script: String,
    /// The plan literal, for the rust backend only.
    pub plan: Option<String>,
    /// The evaluated description (`description = …;` in the test module),
    /// when the test refers to it: a function description, or computed values.
    pub description: Option<String>,
    /// The description's `test` module, imported into the test module.
    pub test_module: Option<String>,
}

/// One node: the modules it imports.
pub struct NodeView {
    pub attr: String,
    pub imports: Vec<String>,
}

/// One system's checks: the attribute names of its tests.
pub struct SystemView {
    pub attr: String,
    pub tests: Vec<String>,
}

/// Imported into every node of a test that takes snapshots: QEMU refuses
/// to snapshot a VM whose Nix store is the host's 9p share (qemu-vm.nix's
/// default), and the store cannot be unmounted while the guest runs, so the
/// store comes from an image instead (docs/snapshots.md). `mkDefault`: a
/// node may choose otherwise (`useBootLoader` works too).
pub const STORE_IMAGE_MODULE: &str =
    "({ lib, ... }: { virtualisation.useNixStoreImage = lib.mkDefault true; })";

/// Whether any step (in any subtest) takes or restores a snapshot.
fn uses_snapshots(steps: &[crate::spec::Step]) -> bool {
    steps.iter().any(|s| match &s.action {
        crate::spec::Action::Snapshot { .. } | crate::spec::Action::Restore { .. } => true,
        crate::spec::Action::Subtest { steps, .. } => uses_snapshots(steps),
        _ => false,
    })
}

/// What every test block depends on besides its description and the
/// flake's modules: the nixvm-gen input's name and the directory of the
/// generated file (import paths are relative to it). Checked once.
#[derive(Clone, Debug)]
pub struct Settings {
    input_name: String,
    output_dir: Vec<String>,
}

impl Settings {
    pub fn new(config: &Config) -> Result<Settings, CodegenError> {
        let input_name = config.input_name.clone();
        if !is_usable_input_name(&input_name) {
            return Err(CodegenError::InputName { name: input_name });
        }
        let output_dir = normalize(config.output.parent().unwrap_or(Path::new("")))
            .ok_or_else(|| CodegenError::OutputPath { path: config.output.clone() })?;
        Ok(Settings { input_name, output_dir })
    }

    /// Feeds everything the settings change in the output to `h` (the
    /// incremental path's digest of the expected file).
    pub fn digest_into(&self, h: &mut blake3::Hasher) {
        h.update(&(self.input_name.len() as u64).to_le_bytes());
        h.update(self.input_name.as_bytes());
        h.update(&(self.output_dir.len() as u64).to_le_bytes());
        for part in &self.output_dir {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
    }
}

/// One rendered test of the generated file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestBlock {
    /// `<attr> = pkgs: pkgs.testers.runNixOSTest (…);`, indented for its
    /// place in `tests = { … }`, without a final newline.
    pub text: String,
    /// The block calls `nixvmDescription`/`nixvmValue`, which the file
    /// then defines.
    pub evaluated: bool,
}

/// One test of the file: its block and what the file needs besides.
pub struct Entry<'a> {
    pub name: &'a str,
    /// The description file, relative to the flake root.
    pub file: &'a Path,
    /// `None` means [`spec::DEFAULT_SYSTEMS`].
    pub systems: Option<&'a [String]>,
    /// [`TestBlock::text`].
    pub text: &'a str,
    /// [`TestBlock::evaluated`].
    pub evaluated: bool,
}

/// Lays out the file around the tests' blocks; `entries` are sorted by
/// test name.
pub fn assemble<'a>(settings: &'a Settings, entries: &[Entry<'a>]) -> ChecksFile<'a> {
    let mut systems: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut listed: std::collections::HashSet<(&str, &str)> = std::collections::HashSet::new();
    let mut attrs = Vec::with_capacity(entries.len());
    for entry in entries {
        attrs.push(nix_attr_name(entry.name));
    }
    for (entry, attr) in entries.iter().zip(&attrs) {
        let test_systems: Box<dyn Iterator<Item = &str>> = match entry.systems {
            Some(list) => Box::new(list.iter().map(String::as_str)),
            None => Box::new(spec::DEFAULT_SYSTEMS.iter().copied()),
        };
        for system in test_systems {
            // A set beside the lists: `Vec::contains` made this quadratic
            // (12 % of `check` at 10,000 descriptions).
            if listed.insert((system, attr.as_str())) {
                systems.entry(system).or_default().push(attr.clone());
            }
        }
    }
    let mut sources: Vec<String> = entries.iter().map(|e| e.file.display().to_string()).collect();
    sources.dedup();
    ChecksFile {
        computed: entries.iter().any(|e| e.evaluated),
        version: env!("CARGO_PKG_VERSION"),
        sources: if sources.is_empty() {
            "no test descriptions".to_string()
        } else {
            comment_text(&sources.join(", "))
        },
        input_name: &settings.input_name,
        tests: entries.iter().map(|e| e.text).collect(),
        systems: systems
            .into_iter()
            .map(|(system, tests)| SystemView { attr: nix_attr_name(system), tests })
            .collect(),
        hydra: false,
        hydra_jobs: Vec::new(),
    }
}

/// Renders one test's block (see [`TestView`]).
pub fn test_block(
    spec: &TestSpec,
    flake: &FlakeInfo,
    sources: &Sources,
    settings: &Settings,
) -> Result<TestBlock, CodegenError> {
    let view = test_view(spec, flake, sources, settings)?;
    let evaluated = view.description.is_some();
    let mut text =
        view.render().map_err(|source| CodegenError::Template { template: "codegen/test.nix", source })?;
    let trimmed = text.trim_end_matches('\n').len();
    text.truncate(trimmed);
    Ok(TestBlock { text, evaluated })
}

fn test_view<'a>(
    spec: &TestSpec,
    flake: &FlakeInfo,
    sources: &Sources,
    settings: &'a Settings,
) -> Result<TestView<'a>, CodegenError> {
    let description = import_path(&settings.output_dir, &spec.file)?;
    // A function or computed values: one evaluated description per test,
    // which the node imports, the script and the plan all refer to.
    let evaluated = (spec.function || !spec.computed.is_empty()).then(|| {
        format!(
            "nixvmDescription (import {description}) {{ inherit pkgs lib self; inherit (config) nodes; }}"
        )
    });
    let modules = selected_modules(spec, flake);
    let curl_nodes = http_nodes(&spec.steps);
    let snapshots = uses_snapshots(&spec.steps);
    let nodes = spec
        .nodes
        .keys()
        .map(|node| {
            let attr = nix_attr_name(node);
            let mut imports: Vec<String> =
                modules.iter().map(|m| format!("self.nixosModules.{}", nix_attr_name(m))).collect();
            match &evaluated {
                Some(_) => imports.push(format!("description.nodes.{attr}")),
                None => imports.push(format!("(import {description}).nodes.{attr}")),
            }
            if curl_nodes.contains(node.as_str()) {
                imports.push("({ pkgs, ... }: { environment.systemPackages = [ pkgs.curl ]; })".to_string());
            }
            if snapshots {
                imports.push(STORE_IMAGE_MODULE.to_string());
            }
            NodeView { attr, imports }
        })
        .collect();
    let script_text = script::render(spec, sources)?;
    let indent = " ".repeat(TEST_BODY_INDENT);
    let script = nix_indented_string(&script_text, &format!("{indent}  "), &indent);
    let script = computed_values(script, spec, sources, Embed::Python)?;
    let plan = match spec.backend {
        Backend::Rust => {
            let mut text = String::new();
            nix_value::render_into(&mut text, &SpecPlan(spec), PLAN_INDENT, PLAN_INDENT + "plan = ".len())
                .map_err(|e| CodegenError::Unsupported {
                    location: spec.file.display().to_string(),
                    message: format!("the plan has no Nix literal: {e}"),
                })?;
            Some(computed_values(text, spec, sources, Embed::Nix)?)
        }
        Backend::Python => None,
    };
    Ok(TestView {
        input_name: &settings.input_name,
        attr: nix_attr_name(&spec.name),
        name: nix_string(&spec.name),
        global_timeout: spec.timeout,
        enable_ocr: uses_ocr(&spec.steps),
        nodes,
        script,
        plan,
        test_module: spec.test_module.then(|| match &evaluated {
            Some(_) => "description.test".to_string(),
            None => format!("(import {description}).test"),
        }),
        description: evaluated,
    })
}

/// Where a computed value is embedded.
#[derive(Clone, Copy)]
enum Embed {
    /// Inside the testScript's indented string: `${builtins.toJSON (…)}`,
    /// a JSON string, which is also a valid Python string literal.
    Python,
    /// In the plan's Nix value: `(…)`.
    Nix,
}

/// Replaces each quoted placeholder (`"\u{E000}3\u{E001}"`, as both
/// `python_string` and `nix_string` write it) by the checked value from the
/// evaluated description. Any other use of a placeholder is a bug in the
/// generator; it is refused rather than written out.
fn computed_values(
    text: String,
    spec: &TestSpec,
    sources: &Sources,
    embed: Embed,
) -> Result<String, CodegenError> {
    if !text.contains(computed::OPEN) {
        return Ok(text);
    }
    let open = format!("\"{}", computed::OPEN);
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find(&open) {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let end = after.find(computed::CLOSE).map(|e| e + computed::CLOSE.len_utf8());
        let value = end.and_then(|e| computed::placeholder_index(&after[..e]).map(|i| (i, e)));
        let Some((index, e)) = value.filter(|(_, e)| after[*e..].starts_with('"')) else {
            break;
        };
        let Some(c) = spec.computed.get(index) else { break };
        let check = checked_value(spec, sources, c);
        match embed {
            // Python timeouts are whole seconds (the stock `retry` counts
            // them), rounded up as static ones are.
            Embed::Python if c.ty == ComputedType::Timeout => {
                out.push_str(&format!("${{builtins.toJSON (builtins.ceil ({check}))}}"))
            }
            Embed::Python => out.push_str(&format!("${{builtins.toJSON ({check})}}")),
            Embed::Nix => out.push_str(&format!("({check})")),
        }
        rest = &after[e + 1..];
    }
    out.push_str(rest);
    if out.contains(computed::OPEN) || out.contains(computed::CLOSE) {
        return Err(CodegenError::Unsupported {
            location: spec.file.display().to_string(),
            message:
                "a value computed by Nix is used where the generator cannot embed it; write it literally"
                    .to_string(),
        });
    }
    Ok(out)
}

/// `nixvmValue "<file:line: what>" "<type>" <pattern> <expr>` (strings) or
/// `nixvmNumber "<file:line: what>" "<expected>" (<check>) <expr>`
/// (numbers): the value, or an evaluation error naming the description
/// file, the step and the expected type (and range).
fn checked_value(spec: &TestSpec, sources: &Sources, c: &computed::Computed) -> String {
    let file = spec.file.display().to_string();
    let place = if c.span.file.0 < sources.len() {
        // The line only: a computed value edited on its line keeps the file unchanged.
        let (line, _) = sources.line_col(c.span.file, c.span.start);
        format!("{file}:{line}")
    } else {
        file
    };
    let where_ = nix_string(&format!("{place}: {}", c.what));
    match c.ty.number_check() {
        Some((expected, check)) => {
            format!("nixvmNumber {where_} {} ({check}) {}", nix_string(&expected), c.expr)
        }
        None => {
            let pattern = c.pattern.map_or_else(|| "null".to_string(), nix_string);
            format!("nixvmValue {where_} \"string\" {pattern} {}", c.expr)
        }
    }
}

/// The `nixosModules` every node of `spec` imports: the ones it lists (in
/// its order) or all of the flake's, minus aliases of a module that is
/// imported anyway (directly or through an earlier alias), so no module is
/// imported twice.
pub fn selected_modules(spec: &TestSpec, flake: &FlakeInfo) -> Vec<String> {
    let mut names: Vec<String> = match &spec.modules {
        Some(list) => list.iter().map(|(name, _)| name.clone()).collect(),
        // A set of modules (`nixosModules.hm.x`) is not importable.
        None => flake.modules.iter().filter(|m| m.kind.is_module()).map(|m| m.name.clone()).collect(),
    };
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| seen.insert(n.clone()));

    let alias_of = |name: &str| {
        flake.modules.iter().find(|m| m.name == name).and_then(|m| m.kind.alias_target().map(str::to_string))
    };
    // Follow alias chains to the module they finally denote.
    let root = |name: &str| {
        let mut current = name.to_string();
        for _ in 0..=flake.modules.len() {
            match alias_of(&current) {
                Some(target) => current = target,
                None => break,
            }
        }
        current
    };
    let direct: std::collections::BTreeSet<&str> =
        names.iter().filter(|n| alias_of(n).is_none()).map(String::as_str).collect();
    let mut roots_done = std::collections::BTreeSet::new();
    let mut selected = Vec::new();
    for name in &names {
        let is_alias =
            flake.modules.iter().any(|m| &m.name == name && matches!(m.kind, ModuleKind::Alias { .. }));
        if is_alias {
            let r = root(name);
            if direct.contains(r.as_str()) || !roots_done.insert(r) {
                continue;
            }
        }
        selected.push(name.clone());
    }
    selected
}

/// Nodes that run an `http` step (they need curl).
fn http_nodes(steps: &[Step]) -> std::collections::BTreeSet<&str> {
    let mut nodes = std::collections::BTreeSet::new();
    for step in steps {
        match &step.action {
            Action::Http { .. } => {
                if let Some(node) = &step.node {
                    nodes.insert(node.as_str());
                }
            }
            Action::Subtest { steps, .. } => nodes.extend(http_nodes(steps)),
            _ => {}
        }
    }
    nodes
}

/// Lexically normalised components of a relative path; `None` when it is
/// absolute or climbs above its start.
fn normalize(path: &Path) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?.to_string()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts)
}

/// A Nix expression for the path of `file` (relative to the flake root) as
/// seen from the generated file's directory: a path literal such as
/// `../tests/vm/health.nix`, or `(./.. + "/tests/vm/my test.nix")` when the
/// name has characters path literals cannot hold.
fn import_path(output_dir: &[String], file: &Path) -> Result<String, CodegenError> {
    let target = normalize(file).ok_or_else(|| CodegenError::OutputPath { path: PathBuf::from(file) })?;
    let common = output_dir.iter().zip(&target).take_while(|(a, b)| a == b).count();
    let ups = output_dir.len() - common;
    let rest = target[common..].join("/");
    let literal = if ups == 0 { format!("./{rest}") } else { format!("{}{rest}", "../".repeat(ups)) };
    if is_nix_path_literal_safe(&literal) {
        return Ok(literal);
    }
    let base = if ups == 0 { "./.".to_string() } else { format!("./{}", vec![".."; ups].join("/")) };
    Ok(format!("({base} + {})", nix_string(&format!("/{rest}"))))
}

/// Whether any step (in subtests too) reads the screen by OCR.
fn uses_ocr(steps: &[crate::spec::Step]) -> bool {
    steps.iter().any(|s| match &s.action {
        crate::spec::Action::WaitForText { .. } => true,
        crate::spec::Action::Subtest { steps, .. } => uses_ocr(steps),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(s: &str) -> Vec<String> {
        normalize(Path::new(s)).unwrap()
    }

    #[test]
    fn import_paths_are_relative_to_the_output() {
        assert_eq!(
            import_path(&dir("nix"), Path::new("tests/vm/health.nix")).unwrap(),
            "../tests/vm/health.nix"
        );
        assert_eq!(import_path(&dir(""), Path::new("tests/vm/health.nix")).unwrap(), "./tests/vm/health.nix");
        assert_eq!(import_path(&dir("a/b"), Path::new("a/t.nix")).unwrap(), "../t.nix");
        assert_eq!(
            import_path(&dir("nix"), Path::new("tests/vm/my test.nix")).unwrap(),
            "(./.. + \"/tests/vm/my test.nix\")"
        );
        assert_eq!(import_path(&dir("."), Path::new("t/${x}.nix")).unwrap(), "(./. + \"/t/\\${x}.nix\")");
    }

    #[test]
    fn paths_outside_the_flake_are_refused() {
        assert!(normalize(Path::new("../x")).is_none());
        assert!(normalize(Path::new("/abs")).is_none());
        assert_eq!(normalize(Path::new("./a/../b")).unwrap(), vec!["b".to_string()]);
    }
}
