//! The example's VM test end to end, the way Nix really runs it: a sandboxed
//! build (`sandbox = true`, `PATH=/path-not-set`, only what
//! tests/stand-in/prepare.sh exposes), offline, with the real QEMU guest of
//! tests/guest booting inside the build and the real nixvm-driver running
//! the plan (installed by the stand-in rustPlatform from this build's cargo
//! binaries; see tests/stand-in/README.md).
//!
//! Also: a test with `isolate` (snapshot and restore in the sandbox, the
//! store from the generated `useNixStoreImage`), and the nixvm-driver
//! package of nix/package.nix runs a two-node VLAN test with an empty PATH
//! (its wrapper carries vde2).
//!
//! Skipped (loudly) with the other VM tests (`NIXVM_SKIP_VM_TESTS`,
//! `scripts/test.sh --fast`), never on CI. Holds the VM lock of driver.rs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::util;

/// The stand-in prepared for sandboxed builds: its nixpkgs copy and the
/// `extra-sandbox-paths` value.
struct Prepared {
    nixpkgs: PathBuf,
    sandbox_paths: String,
}

fn prepare(dir: &Path) -> Prepared {
    let cargo_bin = Path::new(env!("CARGO_BIN_EXE_nixvm-driver")).parent().unwrap().to_owned();
    let out = util::run(
        Command::new("bash")
            .arg(util::root().join("tests/stand-in/prepare.sh"))
            .arg(dir)
            .arg("--cargo-bin")
            .arg(&cargo_bin),
    );
    assert!(out.status.success(), "prepare.sh failed (output above)");
    Prepared {
        nixpkgs: dir.join("nixpkgs"),
        sandbox_paths: std::fs::read_to_string(dir.join("sandbox-paths")).unwrap().trim().to_owned(),
    }
}

/// `nix <sub> …` with flakes, offline, sandboxed, and the stand-in's
/// host programs exposed.
fn nix(p: &Prepared, sub: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new("nix");
    cmd.args(sub.split(' '))
        .args(["--extra-experimental-features", "nix-command flakes"])
        .args(["--option", "flake-registry", "/dev/null", "--no-write-lock-file"])
        .args(["--option", "sandbox", "true"])
        .args(["--option", "build-users-group", ""])
        .args(["--option", "substituters", ""])
        .args(["--option", "system-features", "nixos-test kvm"])
        .args(["--option", "extra-sandbox-paths", &p.sandbox_paths])
        .args(args);
    util::run(&mut cmd)
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout)
}

/// A copy of this repository's flake (what the `nixvm-gen` input fetches).
fn repo_copy(dir: &Path) -> PathBuf {
    let dest = dir.join("nixvm-gen");
    std::fs::create_dir_all(&dest).unwrap();
    for file in ["flake.nix", "Cargo.toml", "Cargo.lock"] {
        std::fs::copy(util::root().join(file), dest.join(file)).unwrap();
    }
    for sub in ["nix", "src", "templates", "examples"] {
        util::copy_dir(&util::root().join(sub), &dest.join(sub));
    }
    dest
}

/// examples/health with `nixpkgs` and `nixvm-gen` pointed at the prepared
/// stand-in and a copy of this repository (path inputs).
fn example(dir: &Path, p: &Prepared) -> PathBuf {
    let repo = repo_copy(dir);
    let project = dir.join("health");
    util::copy_dir(&util::root().join("examples/health"), &project);
    let flake = std::fs::read_to_string(project.join("flake.nix")).unwrap();
    let re = regex::Regex::new(r#"(?m)^(\s*)(nixpkgs|nixvm-gen)\.url = "[^"]*";"#).unwrap();
    let rewritten = re.replace_all(&flake, |c: &regex::Captures| {
        let url = if &c[2] == "nixpkgs" { p.nixpkgs.clone() } else { repo.clone() };
        format!("{}{}.url = \"path:{}\";", &c[1], &c[2], url.display())
    });
    assert_ne!(rewritten, flake, "examples/health/flake.nix has no url lines to rewrite");
    std::fs::write(project.join("flake.nix"), rewritten.as_bytes()).unwrap();
    project
}

fn attr(project: &Path, attr: &str) -> String {
    format!("path:{}#{attr}", project.display())
}

/// Deletes a previous build of `attr` from the store, so that this run
/// really boots the guest (a cached output would pass without running).
fn forget(p: &Prepared, flake_attr: &str) {
    let out = nix(p, "eval", &["--raw", &format!("{flake_attr}.outPath")]);
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !path.is_empty() && Path::new(&path).exists() {
        let _ = util::run(Command::new("nix-store").args(["--delete", &path]));
        assert!(!Path::new(&path).exists(), "{path} is still in the store (a GC root holds it?)");
    }
}

/// Deletes the outputs of `attrs` (referrers first), best effort: the
/// package holds three copies of the cargo binaries (~300 MB) and every
/// rebuild of them makes a new one.
fn discard(p: &Prepared, attrs: &[String]) {
    for attr in attrs {
        let out = nix(p, "eval", &["--raw", &format!("{attr}.outPath")]);
        let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !path.is_empty() {
            let _ = util::run(Command::new("nix-store").args(["--delete", &path]));
        }
    }
}

fn vm_tests() -> Option<std::sync::MutexGuard<'static, ()>> {
    if !util::require("nix", "builds the example's check in the Nix sandbox") {
        return None;
    }
    crate::driver::guests()?;
    Some(crate::driver::vm_lock())
}

#[test]
fn example_check_runs_end_to_end_in_the_sandbox() {
    let Some(_lock) = vm_tests() else { return };
    let tmp = util::tempdir();
    let p = prepare(&tmp.path().join("stand-in"));
    let project = example(tmp.path(), &p);
    let check = attr(&project, "checks.x86_64-linux.health");
    forget(&p, &check);

    // `nix flake check -L`, as users run it: builds the x86_64-linux check
    // (the guest boots inside the build); Nix 2.8 evaluates the other
    // system's checks without building them.
    let out = nix(&p, "flake check", &["-L", &format!("path:{}", project.display())]);
    let log = text(&out);
    assert!(out.status.success(), "nix flake check failed (output above)");
    assert!(log.contains("connected to guest root shell"), "the guest did not boot in the build:\n{log}");
    assert!(log.contains("(passed; 3 passed, 0 failed, 0 skipped)"), "{log}");
    assert!(!log.contains("Could not remove ctl socket"), "vde_switch cleanup is not quiet:\n{log}");
    let other = nix(&p, "eval", &["--raw", &attr(&project, "checks.aarch64-linux.health.drvPath")]);
    assert!(other.status.success(), "the aarch64-linux check does not evaluate");

    // `nix build` of the same check: $out holds the reports.
    let link = tmp.path().join("result");
    let out = nix(&p, "build", &["-L", "--out-link", link.to_str().unwrap(), &check]);
    assert!(out.status.success(), "nix build failed (output above)");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(link.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["result"], "passed", "{report}");
    let junit = std::fs::read_to_string(link.join("junit.xml")).unwrap();
    assert!(junit.contains("<testsuite") && junit.contains("failures=\"0\""), "{junit}");

    // driverInteractive: the same wrapper with --interactive (and its tools).
    let out =
        nix(&p, "build", &["--out-link", link.to_str().unwrap(), &format!("{check}.driverInteractive")]);
    assert!(out.status.success(), "driverInteractive does not build");
    let wrapper = std::fs::read_to_string(link.join("bin/nixos-test-driver")).unwrap();
    assert!(wrapper.contains("'--interactive'"), "{wrapper}");
    assert!(wrapper.contains("vde2-host-stand-in/bin"), "the wrapper does not put vde2 on PATH: {wrapper}");

    // One step broken: the build fails and the log has the driver's message.
    let generated = project.join("nix/checks.generated.nix");
    let text_before = std::fs::read_to_string(&generated).unwrap();
    let broken = text_before.replace("contains = \"Healthy\";", "contains = \"Unhealthy\";");
    assert_ne!(broken, text_before, "the generated check has no `contains = \"Healthy\";`");
    std::fs::write(&generated, broken).unwrap();
    let out = nix(&p, "build", &["-L", "--no-link", &check]);
    let log = text(&out);
    assert!(!out.status.success(), "the broken check passed:\n{log}");
    for needle in ["machine", "http://localhost:3000/", "Unhealthy", "Healthy", "1 failed"] {
        assert!(log.contains(needle), "the failure log lacks `{needle}`:\n{log}");
    }
    // Back to the passing check, whose outputs are dropped again.
    std::fs::write(&generated, &text_before).unwrap();
    std::fs::remove_file(&link).unwrap();
    let attrs = ["", ".driver", ".driverInteractive", ".driver.nixvm.driverPackage"];
    discard(&p, &attrs.map(|a| format!("{check}{a}")));
}

/// A test with `isolate = true;` built in the sandbox: the generated
/// `useNixStoreImage` reaches the stand-in's start script (store from an
/// image, so QEMU lets the driver snapshot the VM), the snapshot is taken
/// after the wait and restored before the second subtest. One node, one
/// boot: the cheapest build that runs a restore in the sandbox.
#[test]
fn isolated_check_snapshots_and_restores_in_the_sandbox() {
    let Some(_lock) = vm_tests() else { return };
    let tmp = util::tempdir();
    let p = prepare(&tmp.path().join("stand-in"));
    let project = example(tmp.path(), &p);
    std::fs::write(
        project.join("tests/vm/isolated.nix"),
        r#"{
  nodes.machine = { services.syshc.enable = true; };
  isolate = true;
  steps = [
    { waitForUnit = "syshc.service"; }
    {
      subtest = "leave traces";
      steps = [ { succeed = "touch /etc/trace /tmp/shared/trace && systemctl stop syshc.service"; } ];
    }
    {
      subtest = "sees none of them";
      steps = [
        { succeed = "test ! -e /etc/trace && test ! -e /tmp/shared/trace && systemctl is-active syshc.service"; }
        { succeed = "grep -q ' /nix/.ro-store erofs ' /proc/mounts"; }
      ];
    }
  ];
}
"#,
    )
    .unwrap();
    let out = util::run(util::nixvm_gen().arg("generate").arg("--flake").arg(&project));
    util::assert_code(&out, 0);
    let check = attr(&project, "checks.x86_64-linux.isolated");
    forget(&p, &check);
    let link = tmp.path().join("result");
    let out = nix(&p, "build", &["-L", "--out-link", link.to_str().unwrap(), &check]);
    let log = text(&out);
    assert!(out.status.success(), "nix build of the isolated check failed:\n{log}");
    assert!(log.contains("restored snapshot `isolate"), "no restore in the build log:\n{log}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(link.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["result"], "passed", "{report}");
    std::fs::remove_file(&link).unwrap();
    let attrs = ["", ".driver", ".driverInteractive", ".driver.nixvm.driverPackage"];
    discard(&p, &attrs.map(|a| format!("{check}{a}")));
}

#[test]
fn packaged_driver_runs_a_vlan_test_with_an_empty_path() {
    let Some(_lock) = vm_tests() else { return };
    let guests = crate::driver::guests().unwrap();
    let tmp = tempfile::Builder::new().prefix("nvs-").tempdir_in("/tmp").unwrap();
    let p = prepare(&tmp.path().join("stand-in"));
    let repo = repo_copy(tmp.path());
    let link = tmp.path().join("driver");
    let pkg = format!("path:{}#packages.x86_64-linux.nixvm-driver", repo.display());
    let o = format!("path:{}", p.nixpkgs.display());
    let out = nix(
        &p,
        "build",
        &["-L", "--out-link", link.to_str().unwrap(), &pkg, "--override-input", "nixpkgs", &o],
    );
    assert!(out.status.success(), "nix/package.nix does not build (output above)");

    // Two busybox guests on VLAN 1; start scripts like NixOS's (absolute
    // interpreter and QEMU, their own PATH).
    let qemu = which("qemu-system-x86_64");
    let vms = tmp.path().join("vms");
    let mut config_vms = serde_json::Map::new();
    for node in ["a", "b"] {
        let out = util::run(
            Command::new("bash")
                .arg(guests.make_vm())
                .arg("--out")
                .arg(&vms)
                .args(["--node", node, "--kind", "busybox", "--all-nodes", "a b", "--qemu"])
                .arg(&qemu),
        );
        assert!(out.status.success(), "make-vm.sh failed");
        let script = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        config_vms.insert(node.into(), json!({ "name": node, "start_script": script }));
    }
    let config = tmp.path().join("config.json");
    let config_json = json!({ "vms": config_vms, "vlans": [1], "global_timeout": 300,
        "enable_ssh_backdoor": false, "test_script": "/dev/null" });
    std::fs::write(&config, config_json.to_string()).unwrap();
    let plan = tmp.path().join("plan.json");
    let plan_json = json!({ "version": 1, "name": "vlan", "nodes": ["a", "b"], "steps": [
        { "node": "a", "timeout": 60.0, "action": { "succeed": { "command": "ping -c 1 -W 10 192.168.1.2" } } },
        { "node": "b", "timeout": 60.0, "action": { "succeed": { "command": "ping -c 1 -W 10 192.168.1.1" } } }
    ]});
    std::fs::write(&plan, plan_json.to_string()).unwrap();
    let out_dir = tmp.path().join("out");
    let state = tmp.path().join("tmp");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    let out = util::run(
        Command::new(link.join("bin/nixvm-driver"))
            .env_clear()
            .env("PATH", "")
            .env("TMPDIR", &state)
            .arg("--config")
            .arg(&config)
            .arg("--plan")
            .arg(&plan)
            .arg("-o")
            .arg(&out_dir),
    );
    assert!(out.status.success(), "the packaged driver failed with an empty PATH (output above)");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["result"], "passed", "{report}");
    let built = std::fs::read_link(&link).unwrap();
    std::fs::remove_file(&link).unwrap();
    let _ = util::run(Command::new("nix-store").arg("--delete").arg(&built));
}

fn which(program: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} is not on PATH"))
}
