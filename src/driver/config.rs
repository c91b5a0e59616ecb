//! The driver configuration: gen C's `driverConfiguration.json` (reference
//! §1.3) or, without `--config`, the older generations' command line and
//! environment: gen A's `startScripts`, and the later `vmNames` +
//! `vmStartScripts` (with `containerNames`/`containerStartScripts`), both
//! with `vlans` and `globalTimeout` (nixos/lib/test-driver's `__init__.py`,
//! `EnvDefault` arguments).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One VM to start.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct VmEntry {
    pub name: String,
    pub start_script: String,
}

/// The JSON file written by nixpkgs' `driver-configuration.nix`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
struct RawConfig {
    vms: BTreeMap<String, VmEntry>,
    #[serde(default)]
    containers: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    vlans: Vec<u32>,
    global_timeout: Option<u64>,
    #[serde(default)]
    enable_ssh_backdoor: bool,
    #[serde(default)]
    test_script: Option<PathBuf>,
}

/// What the driver needs from its configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverConfig {
    /// Sorted by name.
    pub vms: Vec<VmEntry>,
    /// Unique, sorted.
    pub vlans: Vec<u32>,
    /// Seconds; `None` = unbounded.
    pub global_timeout: Option<u64>,
    /// Requested but unsupported: the caller warns.
    pub ssh_backdoor: bool,
    /// The Python test script; ignored (the plan is executed instead).
    pub test_script: Option<PathBuf>,
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read driver configuration {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: invalid driver configuration: {message}", path.display())]
    Json { path: PathBuf, line: usize, column: usize, message: String },
    #[error(
        "{}: containers ({names}) are not supported by nixvm-driver; use the Python backend for tests with containers",
        path.display()
    )]
    Containers { path: PathBuf, names: String },
    #[error("{}: vms.{key}.name is `{name}`; it must equal the attribute name", path.display())]
    NameMismatch { path: PathBuf, key: String, name: String },
    #[error(
        "no driver configuration: pass --config driverConfiguration.json (or --vm-names/--vm-start-scripts, or set the `vmNames`/`vmStartScripts` or `startScripts` environment variables)"
    )]
    Missing,
    #[error(
        "{names} VM names but {scripts} VM start scripts (--vm-names/`vmNames` and --vm-start-scripts/`vmStartScripts` must pair up)"
    )]
    VmCount { names: usize, scripts: usize },
    #[error(
        "containers ({names}) are not supported by nixvm-driver; use the Python backend for tests with containers"
    )]
    EnvContainers { names: String },
    #[error("environment variable `{var}` is invalid: {message}")]
    Env { var: &'static str, message: String },
    #[error(
        "VLAN {0} is out of range: NixOS numbers VLANs 1 to 255 (MAC 52:54:00:12:<vlan>:…, address 192.168.<vlan>.…)"
    )]
    VlanRange(u32),
}

/// VLAN numbers NixOS can give a node an address and a MAC on
/// (reference §5.2–5.3: two hex digits and one IPv4 octet).
fn check_vlans(vlans: &[u32]) -> Result<(), ConfigError> {
    match vlans.iter().find(|v| !(1..=255).contains(*v)) {
        Some(v) => Err(ConfigError::VlanRange(*v)),
        None => Ok(()),
    }
}

impl DriverConfig {
    /// Reads gen C's JSON file.
    pub fn from_file(path: &Path) -> Result<DriverConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::from_json(path, &text)
    }

    pub fn from_json(path: &Path, text: &str) -> Result<DriverConfig, ConfigError> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| {
            let text = e.to_string();
            let at = format!(" at line {} column {}", e.line(), e.column());
            let message = text.strip_suffix(&at).unwrap_or(&text).to_owned();
            ConfigError::Json { path: path.to_owned(), line: e.line(), column: e.column(), message }
        })?;
        if !raw.containers.is_empty() {
            let names = raw.containers.keys().cloned().collect::<Vec<_>>().join(", ");
            return Err(ConfigError::Containers { path: path.to_owned(), names });
        }
        for (key, vm) in &raw.vms {
            if *key != vm.name {
                return Err(ConfigError::NameMismatch {
                    path: path.to_owned(),
                    key: key.clone(),
                    name: vm.name.clone(),
                });
            }
        }
        let mut vlans = raw.vlans;
        check_vlans(&vlans)?;
        vlans.sort_unstable();
        vlans.dedup();
        Ok(DriverConfig {
            vms: raw.vms.into_values().collect(),
            vlans,
            global_timeout: raw.global_timeout,
            ssh_backdoor: raw.enable_ssh_backdoor,
            test_script: raw.test_script,
        })
    }

    /// The older generations' environment (the command line's values are
    /// passed in through `get` too): `vmStartScripts` with `vmNames` (names
    /// in the same order), else gen A's `startScripts` (names from
    /// `…/bin/run-<name>-vm`); `vlans` (whitespace-separated numbers),
    /// `globalTimeout` (seconds). Containers (`containerNames`,
    /// `containerStartScripts`) are refused like in the JSON file.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<DriverConfig, ConfigError> {
        let words = |var: &str| -> Vec<String> {
            get(var).map(|v| v.split_whitespace().map(str::to_owned).collect()).unwrap_or_default()
        };
        let (names, scripts) = (words("containerNames"), words("containerStartScripts"));
        if !names.is_empty() || !scripts.is_empty() {
            let names =
                if names.is_empty() { scripts.iter().map(|s| machine_name(s)).collect() } else { names };
            return Err(ConfigError::EnvContainers { names: names.join(", ") });
        }
        let mut vms: Vec<VmEntry> = if let Some(scripts) = get("vmStartScripts") {
            let scripts: Vec<&str> = scripts.split_whitespace().collect();
            let names = words("vmNames");
            let names = if names.is_empty() && get("vmNames").is_none() {
                scripts.iter().map(|s| machine_name(s)).collect()
            } else {
                names
            };
            if names.len() != scripts.len() {
                return Err(ConfigError::VmCount { names: names.len(), scripts: scripts.len() });
            }
            names
                .into_iter()
                .zip(scripts)
                .map(|(name, s)| VmEntry { name, start_script: s.to_owned() })
                .collect()
        } else {
            let scripts = get("startScripts").ok_or(ConfigError::Missing)?;
            scripts
                .split_whitespace()
                .map(|s| VmEntry { name: machine_name(s), start_script: s.to_owned() })
                .collect()
        };
        vms.sort_by(|a, b| a.name.cmp(&b.name));
        let mut vlans = Vec::new();
        for v in get("vlans").unwrap_or_default().split_whitespace() {
            vlans.push(v.parse::<u32>().map_err(|_| ConfigError::Env {
                var: "vlans",
                message: format!("`{v}` is not a VLAN number"),
            })?);
        }
        check_vlans(&vlans)?;
        vlans.sort_unstable();
        vlans.dedup();
        let global_timeout = match get("globalTimeout") {
            Some(t) if !t.trim().is_empty() => {
                Some(t.trim().parse::<u64>().map_err(|_| ConfigError::Env {
                    var: "globalTimeout",
                    message: format!("`{t}` is not a number of seconds"),
                })?)
            }
            _ => None,
        };
        Ok(DriverConfig {
            vms,
            vlans,
            global_timeout,
            ssh_backdoor: false,
            test_script: get("testScript").map(PathBuf::from),
        })
    }
}

/// Gen A's machine name: `run-<name>-vm` → `<name>` (else the file name).
pub fn machine_name(start_script: &str) -> String {
    let base =
        Path::new(start_script).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    base.strip_prefix("run-").and_then(|s| s.strip_suffix("-vm")).map(str::to_owned).unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gen_c_json() {
        let json = r#"{
          "vms": { "server": { "name": "server", "start_script": "/nix/store/x/bin/run-server-vm" },
                   "client": { "name": "client", "start_script": "/nix/store/y/bin/run-client-vm" } },
          "containers": {}, "vlans": [2, 1, 2], "global_timeout": 3600,
          "enable_ssh_backdoor": false, "test_script": "/nix/store/z-test-script" }"#;
        let c = DriverConfig::from_json(Path::new("c.json"), json).unwrap();
        assert_eq!(c.vms.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["client", "server"]);
        assert_eq!(c.vlans, [1, 2]);
        assert_eq!(c.global_timeout, Some(3600));
    }

    #[test]
    fn rejects_containers_and_bad_json() {
        let json = r#"{ "vms": {}, "containers": { "c": { "name": "c", "start_script": "x" } },
                        "vlans": [], "global_timeout": 1, "enable_ssh_backdoor": false, "test_script": "t" }"#;
        let err = DriverConfig::from_json(Path::new("c.json"), json).unwrap_err();
        assert!(err.to_string().contains("containers (c) are not supported"), "{err}");
        let err = DriverConfig::from_json(Path::new("c.json"), "{\n  \"vms\": 3 }").unwrap_err();
        assert!(err.to_string().starts_with("c.json:2:"), "{err}");
        assert!(!err.to_string().contains("at line"), "{err}");
    }

    #[test]
    fn reads_gen_a_env() {
        let env = |k: &str| match k {
            "startScripts" => Some("/n/a/bin/run-machine-vm /n/b/bin/run-alpha-vm".to_owned()),
            "vlans" => Some("1 1".to_owned()),
            "globalTimeout" => Some("60".to_owned()),
            _ => None,
        };
        let c = DriverConfig::from_env(env).unwrap();
        assert_eq!(c.vms[0], VmEntry { name: "alpha".into(), start_script: "/n/b/bin/run-alpha-vm".into() });
        assert_eq!(c.vlans, [1]);
        assert_eq!(c.global_timeout, Some(60));
        assert!(matches!(DriverConfig::from_env(|_| None), Err(ConfigError::Missing)));
    }

    #[test]
    fn reads_the_vm_names_and_start_scripts_env() {
        let env = |k: &str| match k {
            "vmNames" => Some("server client".to_owned()),
            "vmStartScripts" => Some("/n/a/bin/run-srv-vm /n/b/bin/run-client-vm".to_owned()),
            "vlans" => Some("2 1".to_owned()),
            "globalTimeout" => Some("30".to_owned()),
            // Ignored when vmStartScripts is there.
            "startScripts" => Some("/n/c/bin/run-other-vm".to_owned()),
            _ => None,
        };
        let c = DriverConfig::from_env(env).unwrap();
        // The name comes from vmNames, not from the script's file name.
        assert_eq!(
            c.vms,
            [
                VmEntry { name: "client".into(), start_script: "/n/b/bin/run-client-vm".into() },
                VmEntry { name: "server".into(), start_script: "/n/a/bin/run-srv-vm".into() },
            ]
        );
        assert_eq!((c.vlans, c.global_timeout), (vec![1, 2], Some(30)));
        let uneven = |k: &str| match k {
            "vmNames" => Some("a b".to_owned()),
            "vmStartScripts" => Some("/x/bin/run-a-vm".to_owned()),
            _ => None,
        };
        let err = DriverConfig::from_env(uneven).unwrap_err();
        assert_eq!(err.to_string().split(" (").next(), Some("2 VM names but 1 VM start scripts"));
        let containers = |k: &str| match k {
            "vmStartScripts" => Some("/x/bin/run-a-vm".to_owned()),
            "containerNames" => Some("c1".to_owned()),
            "containerStartScripts" => Some("/x/bin/run-c1-container".to_owned()),
            _ => None,
        };
        let err = DriverConfig::from_env(containers).unwrap_err().to_string();
        assert!(err.starts_with("containers (c1) are not supported"), "{err}");
    }

    #[test]
    fn vlans_outside_1_to_255_are_refused() {
        for bad in ["0", "256", "65536", "4294967295"] {
            let json =
                format!(r#"{{ "vms": {{}}, "containers": {{}}, "vlans": [{bad}], "global_timeout": 1 }}"#);
            let r = DriverConfig::from_json(Path::new("c.json"), &json);
            assert!(matches!(r, Err(ConfigError::VlanRange(_))), "{bad}: {:?}", r.map(|c| c.vlans));
            let env = |k: &str| match k {
                "startScripts" => Some("/x/bin/run-a-vm".to_owned()),
                "vlans" => Some(bad.to_owned()),
                _ => None,
            };
            assert!(matches!(DriverConfig::from_env(env), Err(ConfigError::VlanRange(_))), "{bad}");
        }
    }
}
