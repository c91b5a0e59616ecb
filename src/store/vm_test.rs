//! What a NixOS VM test check builds, read from its `.drv` closure: the node
//! VMs (`run-<node>-vm`), the driver wrapper, the JSON plan and the driver
//! configuration.
//!
//! Everything is found by the names the NixOS test framework and our glue
//! give derivations (nixos/lib/testing/{run,driver,driver-configuration}.nix,
//! nix/lib.nix): `vm-test-run-<name>`, `nixos-test-driver-<name>`,
//! `driverConfiguration.json`, `nixvm-plan-<name>.json`. File contents are
//! read from the derivation environment (`text` for `writeText`, `input` for
//! `writers.writeJSON`), so nothing has to be built.

use serde::Serialize;

use super::{Closure, Derivation, StorePath};

/// Why a closure does not look like a VM test of nixvm-gen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VmTestError {
    #[error("{drv} is not in the closure that was read")]
    MissingRoot { drv: String },
    #[error("{drv} is not a NixOS VM test (its name is `{name}`, expected `vm-test-run-<name>`)")]
    NotAVmTest { drv: String, name: String },
    #[error("{drv} has no `nixos-test-driver-<name>` input; it was not made by pkgs.testers.runNixOSTest")]
    NoDriver { drv: String },
    #[error("{drv}: the text of `{name}` is not JSON: {message}")]
    BadJson { drv: String, name: String, message: String },
}

/// One node VM the check builds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeVm {
    /// Attribute name under `nodes`.
    pub node: String,
    /// `…/bin/run-<system.name>-vm`.
    pub start_script: String,
    /// The derivation producing the start script, when it is in the closure.
    pub drv: Option<StorePath>,
}

/// The driver program the check runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriverInfo {
    pub drv: StorePath,
    pub out: Option<StorePath>,
    /// Whether it is nixvm-gen's wrapper (`lib.mkDriver`) rather than the
    /// stock Python driver.
    pub nixvm: bool,
    /// The wrapped `nixvm-driver` package, for nixvm wrappers.
    pub nixvm_driver: Option<StorePath>,
}

/// A VM test check, as far as its derivations tell.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VmTest {
    pub name: String,
    pub drv: StorePath,
    pub out: Option<StorePath>,
    pub system: String,
    pub required_system_features: Vec<String>,
    pub driver: DriverInfo,
    pub nodes: Vec<NodeVm>,
    /// The JSON plan nixvm-driver runs (nixvm wrappers only).
    pub plan: Option<serde_json::Value>,
    /// gen-C driver configuration (`driverConfiguration.json`).
    pub driver_configuration: Option<serde_json::Value>,
    /// Number of derivations in the closure.
    pub derivations: usize,
}

impl VmTest {
    /// Reads the check whose `.drv` is the closure's root.
    pub fn from_closure(closure: &Closure) -> Result<VmTest, VmTestError> {
        let drv_path = &closure.root;
        let root = closure
            .root_derivation()
            .ok_or_else(|| VmTestError::MissingRoot { drv: drv_path.to_string() })?;
        let full_name = root.name().unwrap_or(drv_path.derivation_name());
        let Some(name) = full_name.strip_prefix("vm-test-run-") else {
            return Err(VmTestError::NotAVmTest { drv: drv_path.to_string(), name: full_name.to_string() });
        };
        let driver_name = format!("nixos-test-driver-{name}");
        let (driver_path, driver) = inputs_of(closure, root)
            .find(|(_, d)| d.name() == Some(driver_name.as_str()))
            .ok_or_else(|| VmTestError::NoDriver { drv: drv_path.to_string() })?;

        // nix/lib.nix keeps the wrapper script in the `wrapper` variable; the
        // wrapped package is the input whose `bin/nixvm-driver` it execs.
        let nixvm_driver = driver.env.get("wrapper").and_then(|w| {
            inputs_of(closure, driver)
                .filter_map(|(_, d)| d.out_path())
                .find(|out| w.contains(&format!("{out}/bin/nixvm-driver")))
                .cloned()
        });
        let plan_name = format!("nixvm-plan-{name}.json");
        let plan = find_json(closure, driver, &plan_name)?;
        let driver_configuration = match find_json(closure, driver, "driverConfiguration.json")? {
            Some(c) => Some(c),
            // The stock driver has it as an input too, one level down at most.
            None => closure
                .named("driverConfiguration.json")
                .next()
                .map(|(p, d)| json_text(p, d, "driverConfiguration.json"))
                .transpose()?,
        };

        let nodes = match driver_configuration.as_ref().and_then(|c| c.get("vms")).and_then(|v| v.as_object())
        {
            Some(vms) => vms
                .iter()
                .map(|(node, vm)| {
                    let start_script =
                        vm.get("start_script").and_then(|s| s.as_str()).unwrap_or_default().to_string();
                    let drv = StorePath::from_absolute_path_prefix(&start_script)
                        .ok()
                        .and_then(|(out, _)| closure.producer_of(&out).map(|(p, _, _)| p.clone()));
                    NodeVm { node: node.clone(), start_script, drv }
                })
                .collect(),
            None => Vec::new(),
        };

        Ok(VmTest {
            name: name.to_string(),
            drv: drv_path.clone(),
            out: root.out_path().cloned(),
            system: root.system.clone(),
            required_system_features: root
                .env
                .get("requiredSystemFeatures")
                .map(|s| s.split_whitespace().map(String::from).collect())
                .unwrap_or_default(),
            driver: DriverInfo {
                drv: driver_path.clone(),
                out: driver.out_path().cloned(),
                nixvm: plan.is_some() || nixvm_driver.is_some(),
                nixvm_driver,
            },
            nodes,
            plan,
            driver_configuration,
            derivations: closure.derivations.len(),
        })
    }
}

/// The input derivations of `drv` that are in the closure.
fn inputs_of<'a>(
    closure: &'a Closure,
    drv: &'a Derivation,
) -> impl Iterator<Item = (&'a StorePath, &'a Derivation)> + 'a {
    drv.input_derivations.keys().filter_map(|p| closure.derivations.get_key_value(p))
}

fn find_json(
    closure: &Closure,
    parent: &Derivation,
    name: &str,
) -> Result<Option<serde_json::Value>, VmTestError> {
    inputs_of(closure, parent)
        .find(|(_, d)| d.name() == Some(name))
        .map(|(p, d)| json_text(p, d, name))
        .transpose()
}

/// The JSON a text-writing derivation stores: `text` (writeText) or `input`
/// (writers.writeJSON, passAsFile).
fn json_text(path: &StorePath, drv: &Derivation, name: &str) -> Result<serde_json::Value, VmTestError> {
    let text = drv.env.get("text").or_else(|| drv.env.get("input")).map(String::as_str).unwrap_or_default();
    serde_json::from_str(text).map_err(|e| VmTestError::BadJson {
        drv: path.to_string(),
        name: name.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn health_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/drv/health")
    }

    fn health() -> Closure {
        let root = std::fs::read_to_string(health_dir().join("ROOT")).unwrap();
        Closure::read_from(&health_dir(), &StorePath::from_base_name(root.trim()).unwrap()).unwrap()
    }

    #[test]
    fn reads_nodes_driver_plan_and_configuration() {
        let t = VmTest::from_closure(&health()).unwrap();
        assert_eq!(t.name, "health");
        assert_eq!(t.system, "x86_64-linux");
        assert_eq!(t.required_system_features, ["nixos-test", "kvm"]);
        assert_eq!(t.driver.drv.derivation_name(), "nixos-test-driver-health");
        assert!(t.driver.nixvm);
        assert_eq!(
            t.driver.nixvm_driver.as_ref().map(StorePath::name),
            Some("nixvm-driver-stand-in"),
            "the wrapped package"
        );
        let nodes: Vec<_> =
            t.nodes.iter().map(|n| (n.node.as_str(), n.start_script.rsplit('/').next())).collect();
        assert_eq!(nodes, [("client", Some("run-probe-vm")), ("server", Some("run-server-vm"))]);
        assert!(t.nodes.iter().all(|n| n.drv.as_ref().is_some_and(|d| d.name() == "nixos-vm.drv")));
        let plan = t.plan.unwrap();
        assert_eq!(plan["name"], "health");
        assert_eq!(plan["steps"][0]["action"]["waitForUnit"]["unit"], "syshc.service");
        let config = t.driver_configuration.unwrap();
        assert_eq!(config["vlans"], serde_json::json!([1, 2]));
        assert_eq!(config["global_timeout"], 600);
        assert_eq!(t.derivations, 8);
    }

    #[test]
    fn other_derivations_are_not_vm_tests() {
        let mut closure = health();
        let driver = closure.derivations.keys().find(|p| p.name().starts_with("nixos-test-driver")).unwrap();
        closure.root = driver.clone();
        let err = VmTest::from_closure(&closure).unwrap_err();
        assert!(
            matches!(err, VmTestError::NotAVmTest { ref name, .. } if name == "nixos-test-driver-health")
        );
    }

    #[test]
    fn a_stock_driver_is_not_nixvm() {
        let mut closure = health();
        // Remove the plan and the wrapper script: what a stock driver looks like.
        for drv in closure.derivations.values_mut() {
            drv.env.remove("wrapper");
            drv.input_derivations.retain(|p, _| !p.name().starts_with("nixvm-plan-"));
        }
        let t = VmTest::from_closure(&closure).unwrap();
        assert!(!t.driver.nixvm);
        assert_eq!(t.plan, None);
        assert_eq!(t.nodes.len(), 2);
    }
}
