//! `nixvm-gen matrix`: one CI job per generated check and system, so a CI
//! service (or any scheduler) fans the VM tests out over its runners.
//!
//! Entries are plain data ([`Entry`]); the formats are views of them:
//! GitHub's `strategy.matrix` JSON, a GitLab child pipeline
//! (`templates/ci/gitlab-child.yml`) and a JSON array. Every string that
//! reaches YAML is a JSON string literal, which YAML reads as a
//! double-quoted scalar, so no test name can break out of its place.

use std::collections::BTreeMap;

use askama::Template;
use serde::Serialize;

use crate::codegen::escape::nix_attr_name;
use crate::project::Project;
use crate::spec::{self, Action, Step, TestSpec};

/// GitHub refuses a matrix of more than 256 jobs.
pub const GITHUB_MAX_JOBS: usize = 256;

/// Where an entry's weight comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum WeightSource {
    /// Worst case from the steps' timeouts (nothing measured).
    Timeouts,
    /// A measured duration from an earlier `report.json`.
    Measured,
}

/// One job: build one check for one system.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The test's name (`report.json`'s `name`).
    pub test: String,
    pub system: String,
    /// Installable for `nix build`: `.#checks.<system>.<test>`.
    pub attr: String,
    /// A file name for this job's reports (`<test>-<system>`, with
    /// anything but `[A-Za-z0-9._-]` replaced by `_`).
    pub dir: String,
    pub nodes: Vec<String>,
    /// What the builder must offer (`system-features` in nix.conf).
    pub required_system_features: Vec<String>,
    /// VM-seconds: nodes × seconds (estimated or measured), for balancing
    /// jobs over runners; larger means heavier.
    pub weight: u64,
    pub weight_source: WeightSource,
}

/// What `runNixOSTest`'s derivation requires of its builder, by system.
/// nixpkgs `nixos/lib/testing/run.nix` (commit 0020e46c8b1c):
/// `[ "nixos-test" ] ++ optionals isLinux [ "kvm" ] ++ optionals isDarwin [ "apple-virt" ]`.
pub fn required_system_features(system: &str) -> Vec<String> {
    let mut features = vec!["nixos-test".to_owned()];
    if system.ends_with("-linux") {
        features.push("kvm".to_owned());
    } else if system.ends_with("-darwin") {
        features.push("apple-virt".to_owned());
    }
    features
}

/// Worst-case seconds of a list of steps: each step's effective timeout,
/// `sleep`'s own length, subtests summed.
fn worst_case_secs(steps: &[Step]) -> f64 {
    steps
        .iter()
        .map(|s| match &s.action {
            Action::Subtest { steps, .. } => worst_case_secs(steps),
            // A computed length counts as nothing, a computed timeout as
            // the action's default: estimates for scheduling only.
            Action::Sleep { seconds } => seconds.literal().unwrap_or(0.0),
            _ => s
                .effective_timeout()
                .and_then(crate::spec::Num::literal)
                .or_else(|| s.action.default_timeout())
                .unwrap_or(0.0),
        })
        .filter(|secs| secs.is_finite() && *secs > 0.0)
        .sum()
}

/// The estimated weight of a test: nodes × the steps' timeouts, bounded by
/// the global timeout when there is one.
pub fn estimated_weight(test: &TestSpec) -> u64 {
    let mut secs = worst_case_secs(&test.steps);
    if let Some(global) = test.timeout {
        secs = secs.min(global as f64);
    }
    weight(test.nodes.len(), secs)
}

fn weight(nodes: usize, secs: f64) -> u64 {
    let w = (nodes.max(1) as f64 * secs).ceil();
    if w.is_finite() && w > 0.0 { w.min(u64::MAX as f64) as u64 } else { 1 }
}

/// The installable of one check, quoting names Nix would not read bare.
pub fn installable(system: &str, test: &str) -> String {
    format!(".#checks.{}.{}", nix_attr_name(system), nix_attr_name(test))
}

/// A safe file name: no `/`, no leading dot, nothing a shell or YAML
/// would read specially.
pub fn file_name(s: &str) -> String {
    let mut name: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .collect();
    if name.starts_with('.') || name.is_empty() {
        name.insert(0, '_');
    }
    name
}

/// Builds the entries: every test × each of its systems (those in
/// `systems` only, when not empty), heaviest first, then by name and
/// system. `measured` maps test names to measured run durations in seconds.
pub fn entries(project: &Project, systems: &[String], measured: &BTreeMap<String, f64>) -> Vec<Entry> {
    let mut out = Vec::new();
    for test in &project.tests {
        let own: Vec<String> = match &test.systems {
            Some(list) => list.clone(),
            None => spec::DEFAULT_SYSTEMS.iter().map(|s| s.to_string()).collect(),
        };
        let (weight, source) = match measured.get(&test.name) {
            Some(secs) => (weight(test.nodes.len(), *secs), WeightSource::Measured),
            None => (estimated_weight(test), WeightSource::Timeouts),
        };
        for system in own.into_iter().filter(|s| systems.is_empty() || systems.contains(s)) {
            out.push(Entry {
                test: test.name.clone(),
                attr: installable(&system, &test.name),
                dir: file_name(&format!("{}-{system}", test.name)),
                nodes: test.nodes.keys().cloned().collect(),
                required_system_features: required_system_features(&system),
                system,
                weight,
                weight_source: source,
            });
        }
    }
    out.sort_by(|a, b| b.weight.cmp(&a.weight).then_with(|| (&a.test, &a.system).cmp(&(&b.test, &b.system))));
    out.dedup_by(|a, b| a.test == b.test && a.system == b.system);
    out
}

/// GitHub's `strategy.matrix` value, on one line (for `$GITHUB_OUTPUT`):
/// `{"include":[{…},…]}`. An empty matrix is `{"include":[]}`, which the
/// workflow skips.
pub fn github(entries: &[Entry]) -> String {
    let mut s = serde_json::json!({ "include": entries }).to_string();
    s.push('\n');
    s
}

/// The entries as a pretty JSON array.
pub fn json(entries: &[Entry]) -> String {
    let mut s = serde_json::to_string_pretty(entries).unwrap_or_else(|_| "[]".to_owned());
    s.push('\n');
    s
}

/// A human-readable table.
pub fn text(entries: &[Entry]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "{:<8} {:<16} {:<6} {:<10} ATTR", "WEIGHT", "SYSTEM", "NODES", "SOURCE");
    for e in entries {
        let source = match e.weight_source {
            WeightSource::Timeouts => "timeouts",
            WeightSource::Measured => "measured",
        };
        let _ =
            writeln!(out, "{:<8} {:<16} {:<6} {:<10} {}", e.weight, e.system, e.nodes.len(), source, e.attr);
    }
    let _ = writeln!(out, "{} job(s)", entries.len());
    out
}

/// The GitLab child pipeline: one job per entry plus a job that merges
/// the reports.
#[derive(Template)]
#[template(path = "ci/gitlab-child.yml", escape = "none")]
struct GitlabChild {
    version: &'static str,
    /// `nixvm-gen`'s flake input name (for `nix run --inputs-from .`),
    /// shell-quoted.
    input_name: String,
    jobs: Vec<GitlabJob>,
}

struct GitlabJob {
    /// Every field is a YAML double-quoted scalar (a JSON string).
    key: String,
    test: String,
    system: String,
    attr: String,
    dir: String,
    weight: String,
    features: String,
}

/// YAML double-quoted scalar (JSON's string syntax is a subset of it).
pub fn yaml_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Renders the GitLab child pipeline.
pub fn gitlab(entries: &[Entry], input_name: &str) -> Result<String, askama::Error> {
    let jobs = entries
        .iter()
        .map(|e| GitlabJob {
            key: yaml_string(&format!("vm-test {} {}", e.test, e.system)),
            test: yaml_string(&e.test),
            system: yaml_string(&e.system),
            attr: yaml_string(&e.attr),
            dir: yaml_string(&e.dir),
            weight: yaml_string(&e.weight.to_string()),
            features: yaml_string(&e.required_system_features.join(" ")),
        })
        .collect();
    let input_name = crate::eval::shell_word(input_name);
    GitlabChild { version: env!("CARGO_PKG_VERSION"), input_name, jobs }.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_follow_run_nix() {
        assert_eq!(required_system_features("x86_64-linux"), ["nixos-test", "kvm"]);
        assert_eq!(required_system_features("aarch64-darwin"), ["nixos-test", "apple-virt"]);
        assert_eq!(required_system_features("riscv64-none"), ["nixos-test"]);
    }

    #[test]
    fn installables_quote_odd_names() {
        assert_eq!(installable("x86_64-linux", "health"), ".#checks.x86_64-linux.health");
        assert_eq!(installable("x86_64-linux", "a b"), ".#checks.x86_64-linux.\"a b\"");
    }

    #[test]
    fn weights_are_at_least_one_and_saturate() {
        assert_eq!(weight(0, 0.0), 1);
        assert_eq!(weight(2, 1.2), 3);
        assert_eq!(weight(3, f64::INFINITY), 1);
        assert_eq!(weight(3, 1e30), u64::MAX);
    }

    #[test]
    fn file_names_stay_in_their_directory() {
        assert_eq!(file_name("web-x86_64-linux"), "web-x86_64-linux");
        assert_eq!(file_name("../a b/$(x)"), "_.._a_b___x_");
        assert_eq!(file_name(""), "_");
    }

    #[test]
    fn yaml_strings_cannot_break_out() {
        assert_eq!(yaml_string("a\"b\n: c"), r#""a\"b\n: c""#);
    }
}
