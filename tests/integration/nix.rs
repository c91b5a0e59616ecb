//! Tests of the nix area (see main.rs): this repo's flake and `lib.mkDriver`
//! glue, a generated example project, the stand-in nixpkgs' assertions,
//! `.drv` parsing against real Nix, and `nixvm-gen plan`.
//!
//! Everything runs the real Nix (2.8 here) offline: `nixpkgs` is replaced by
//! the stand-in in tests/stand-in/nixpkgs, builds use `/bin/sh` without a
//! sandbox.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nixvm_gen::store::{Derivation, StorePath};

use crate::util;

fn stand_in() -> PathBuf {
    util::root().join("tests/stand-in/nixpkgs")
}

/// Flags every flake command gets (after the subcommand).
const FLAKE_FLAGS: &[&str] = &[
    "--extra-experimental-features",
    "nix-command flakes",
    "--option",
    "flake-registry",
    "/dev/null",
    "--no-write-lock-file",
];

/// What offline builds need: no sandbox (builders are /bin/sh), no build
/// users, no binary cache, and the features a vm-test-run requires.
pub(crate) const BUILD_FLAGS: &[&str] = &[
    "--option",
    "sandbox",
    "false",
    "--option",
    "build-users-group",
    "",
    "--option",
    "substituters",
    "",
    "--option",
    "system-features",
    "nixos-test kvm",
];

/// `nix <sub…> <FLAKE_FLAGS> <args…>` (Nix 2.8 wants flags after the
/// whole subcommand).
fn nix(sub: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new("nix");
    cmd.args(sub.split(' ')).args(FLAKE_FLAGS).args(args);
    util::run(&mut cmd)
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "command failed (output above)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(out)).expect("JSON on stdout")
}

/// A copy of this repository's flake (what a `nixvm-gen` input would
/// fetch), as a plain directory. Its `nixpkgs` is overridden per command.
fn repo_copy(dir: &Path) -> PathBuf {
    let dest = dir.join("nixvm-gen");
    std::fs::create_dir_all(&dest).unwrap();
    for file in ["flake.nix", "Cargo.toml", "Cargo.lock"] {
        std::fs::copy(util::root().join(file), dest.join(file)).unwrap();
    }
    for sub in ["nix", "src", "templates", "examples"] {
        if util::root().join(sub).is_dir() {
            util::copy_dir(&util::root().join(sub), &dest.join(sub));
        }
    }
    dest
}

/// `--override-input nixpkgs path:<stand-in>`.
fn nixpkgs_override() -> Vec<String> {
    vec!["--override-input".into(), "nixpkgs".into(), format!("path:{}", stand_in().display())]
}

/// examples/health with its inputs pointed at the stand-in and a repo copy
/// (in flake.nix itself, so `nixvm-gen plan` needs no extra flags).
fn example_project(dir: &Path) -> (PathBuf, PathBuf) {
    let repo = repo_copy(dir);
    let project = dir.join("health");
    util::copy_dir(&util::root().join("examples/health"), &project);
    let flake = std::fs::read_to_string(project.join("flake.nix")).unwrap();
    let re = regex::Regex::new(r#"(?m)^(\s*)(nixpkgs|nixvm-gen)\.url = "[^"]*";"#).unwrap();
    let rewritten = re.replace_all(&flake, |c: &regex::Captures| {
        let url = if &c[2] == "nixpkgs" { stand_in() } else { repo.clone() };
        format!("{}{}.url = \"path:{}\";", &c[1], &c[2], url.display())
    });
    assert_ne!(rewritten, flake, "examples/health/flake.nix has no nixpkgs/nixvm-gen url lines to rewrite");
    std::fs::write(project.join("flake.nix"), rewritten.as_bytes()).unwrap();
    (repo, project)
}

fn flake_ref(dir: &Path, attr: &str) -> String {
    format!("path:{}#{attr}", dir.display())
}

fn have_nix() -> bool {
    util::require("nix", "Nix 2.8 evaluates the flake glue and writes real .drv files")
}

// ---------------------------------------------------------------- this flake

#[test]
fn repo_flake_shows_its_outputs() {
    if !have_nix() {
        return;
    }
    let tmp = util::tempdir();
    let repo = repo_copy(tmp.path());
    let o = nixpkgs_override();
    let target = format!("path:{}", repo.display());
    let mut args: Vec<&str> = vec!["--json", &target];
    args.extend(o.iter().map(String::as_str));
    let show = json(&nix("flake show", &args));
    for system in ["x86_64-linux", "aarch64-linux"] {
        for p in ["default", "nixvm-gen", "nixvm-driver"] {
            assert_eq!(show["packages"][system][p]["type"], "derivation", "packages.{system}.{p}");
        }
        assert_eq!(show["devShells"][system]["default"]["type"], "derivation");
        assert_eq!(show["apps"][system]["default"]["type"], "app");
        assert_eq!(show["formatter"][system]["type"], "derivation");
        assert_eq!(show["checks"][system]["nixvm-gen"]["type"], "derivation");
        assert_eq!(
            show["checks"][system]["example-health-health"]["name"], "vm-test-run-health",
            "the example's generated VM test is dogfooded"
        );
    }
    assert_eq!(show["overlays"]["default"]["type"], "nixpkgs-overlay");
    // `flake check` also validates apps, overlays and templates, and
    // instantiates every check (building nothing).
    let mut args: Vec<&str> = vec!["--no-build", &target];
    args.extend(o.iter().map(String::as_str));
    stdout(&nix("flake check", &args));
    assert!(show["templates"]["default"]["description"].is_string());
    assert!(show.get("lib").is_some());
}

#[test]
fn repo_flake_package_arguments_evaluate() {
    if !have_nix() {
        return;
    }
    let tmp = util::tempdir();
    let repo = repo_copy(tmp.path());
    // Junk that the source filter must leave out.
    std::fs::create_dir_all(repo.join("target/debug")).unwrap();
    std::fs::write(repo.join("target/debug/big"), "x").unwrap();
    let o = nixpkgs_override();
    let attr = flake_ref(&repo, "packages.x86_64-linux.default.standInArgs");
    let apply = "a: { inherit (a) pname version doCheck; meta = a.meta.mainProgram; lock = builtins.pathExists a.cargoLock.lockFile; src = builtins.attrNames (builtins.readDir a.src); }";
    let mut args = vec!["--json", &attr, "--apply", apply];
    args.extend(o.iter().map(String::as_str));
    let v = json(&nix("eval", &args));
    assert_eq!(v["pname"], "nixvm-gen");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["meta"], "nixvm-gen");
    assert_eq!(v["doCheck"], true);
    assert_eq!(v["lock"], true);
    let src: Vec<&str> = v["src"].as_array().unwrap().iter().filter_map(|s| s.as_str()).collect();
    for needed in ["Cargo.lock", "Cargo.toml", "src", "templates"] {
        assert!(src.contains(&needed), "{needed} missing from the package source {src:?}");
    }
    assert!(
        !src.contains(&"target") && !src.contains(&"flake.nix"),
        "the source filter lets through {src:?}"
    );

    // The overlay provides `pkgs.nixvm-driver`, which mkDriver prefers.
    let attr = flake_ref(&repo, "overlays.default");
    let apply = format!(
        "o: (import {} {{ system = \"x86_64-linux\"; overlays = [ o ]; }}).nixvm-driver.meta.mainProgram",
        stand_in().display()
    );
    // --impure: the stand-in is imported by absolute path.
    let mut args = vec!["--impure", "--raw", &attr, "--apply", &apply];
    args.extend(o.iter().map(String::as_str));
    assert_eq!(stdout(&nix("eval", &args)), "nixvm-driver");
}

#[test]
fn mk_driver_falls_back_to_this_flakes_package() {
    if !have_nix() {
        return;
    }
    let tmp = util::tempdir();
    let repo = repo_copy(tmp.path());
    let attr = flake_ref(&repo, "lib");
    // A package set without `nixvm-driver` (no overlay): the flake's own
    // packages.<system>.nixvm-driver is wrapped.
    let apply = format!(
        r#"lib: let
             pkgs = import {} {{ system = "aarch64-linux"; }};
             config = {{ name = "t"; nodes = {{ }}; extraDriverArgs = [ ]; driverConfigurationFile = pkgs.writeText "c" "{{}}"; }};
             d = lib.mkDriver {{ inherit config pkgs; plan = {{ }}; }};
           in [ d.nixvm.driverPackage.name d.nixvm.driverPackage.meta.mainProgram d.name ]"#,
        stand_in().display()
    );
    let mut args = vec!["--impure", "--json", &attr, "--apply", &apply];
    let o = nixpkgs_override();
    args.extend(o.iter().map(String::as_str));
    let v = json(&nix("eval", &args));
    let package = format!("nixvm-gen-{}-rust-stand-in", env!("CARGO_PKG_VERSION"));
    assert_eq!(v, serde_json::json!([package, "nixvm-driver", "nixos-test-driver-t"]));
}

// --------------------------------------------------------- generated example

#[test]
fn generated_example_check_uses_our_driver() {
    if !have_nix() {
        return;
    }
    let tmp = util::tempdir();
    let (_repo, project) = example_project(tmp.path());
    let attr = flake_ref(&project, "checks.x86_64-linux.health");
    let apply = "c: { name = c.name; driver = c.driver.name; main = c.driver.meta.mainProgram; \
                 plan = c.driver.nixvm.plan; features = c.requiredSystemFeatures; \
                 interactive = c.driverInteractive.name; \
                 vm = c.nodes.machine.system.build.vm.meta.mainProgram; }";
    let v = json(&nix("eval", &["--json", &attr, "--apply", apply]));
    assert_eq!(v["name"], "vm-test-run-health");
    assert_eq!(v["driver"], "nixos-test-driver-health");
    assert_eq!(v["main"], "nixos-test-driver");
    assert_eq!(v["interactive"], "nixos-test-driver-health");
    assert_eq!(v["vm"], "run-machine-vm");
    assert_eq!(v["features"], serde_json::json!(["nixos-test", "kvm"]));
    // The plan is the one the generator embedded, and the driver can read it.
    let plan = nixvm_gen::plan::Plan::from_json(&v["plan"].to_string()).expect("a valid plan");
    assert_eq!(plan.name, "health");
    assert_eq!(plan.nodes, ["machine"]);
    assert!(!plan.steps.is_empty());
}

#[test]
fn building_the_check_runs_the_wrapper_with_config_plan_and_output() {
    if !have_nix() {
        return;
    }
    let tmp = util::tempdir();
    let (_repo, project) = example_project(tmp.path());
    // The glue alone: the fake driver that prints its arguments stands in
    // for nixvm-driver (the real one runs in sandbox.rs).
    let generated = project.join("nix/checks.generated.nix");
    let text = std::fs::read_to_string(&generated).unwrap();
    let patched = text.replace(
        "nixvm-gen.lib.mkDriver {",
        "nixvm-gen.lib.mkDriver {\n driverPackage = pkgs.nixvm-driver-args-stand-in;",
    );
    assert_ne!(patched, text);
    std::fs::write(&generated, patched).unwrap();
    let out_link = tmp.path().join("result");
    let link = out_link.to_str().unwrap();

    // The wrapper alone, run by hand.
    let attr = flake_ref(&project, "checks.x86_64-linux.health.driver");
    let mut args = vec!["-L", "--out-link", link, &attr];
    args.extend(BUILD_FLAGS);
    stdout(&nix("build", &args));
    let wrapper = std::fs::read_to_string(out_link.join("bin/nixos-test-driver")).unwrap();
    assert!(wrapper.starts_with("#!"), "{wrapper}");
    assert!(out_link.join("bin/nixvm-driver").exists());
    let outdir = tmp.path().join("out");
    std::fs::create_dir_all(&outdir).unwrap();
    let run =
        util::run(Command::new(out_link.join("bin/nixos-test-driver")).arg("-o").arg(&outdir).arg("-K"));
    let printed = stdout(&run);
    let argv: Vec<&str> = printed.lines().filter_map(|l| l.strip_prefix("arg: ")).collect();
    assert_eq!(argv.len(), 11, "{argv:?}");
    assert_eq!(
        (argv[0], argv[2], argv[4], argv[5], argv[6], argv[7], argv[8], argv[10]),
        ("--config", "--plan", "--junit-xml", "junit.xml", "--log-level", "info", "-o", "-K"),
        "{argv:?}"
    );
    assert!(argv[1].ends_with("-driverConfiguration.json"), "{argv:?}");
    assert!(argv[3].ends_with("-nixvm-plan-health.json"), "{argv:?}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(outdir.join("config.json")).unwrap()).unwrap();
    assert!(
        config["vms"]["machine"]["start_script"].as_str().unwrap().ends_with("/bin/run-machine-vm"),
        "{config}"
    );
    let plan = std::fs::read_to_string(outdir.join("plan.json")).unwrap();
    assert_eq!(nixvm_gen::plan::Plan::from_json(&plan).expect("valid plan").name, "health");

    // The whole check: run.nix's `nixos-test-driver -o $out` reaches nixvm-driver.
    let attr = flake_ref(&project, "checks.x86_64-linux.health");
    let mut args = vec!["-L", "--out-link", link, &attr];
    args.extend(BUILD_FLAGS);
    stdout(&nix("build", &args));
    let args = std::fs::read_to_string(out_link.join("stand-in-driver-args")).unwrap();
    let lines: Vec<&str> = args.lines().collect();
    assert_eq!(lines[8], "-o", "{lines:?}");
    assert_eq!(lines[9], std::fs::read_link(&out_link).unwrap().to_str().unwrap());

    // driverInteractive: the same wrapper with `--interactive` from extraDriverArgs.
    let attr = flake_ref(&project, "checks.x86_64-linux.health.driverInteractive");
    let mut args = vec!["--out-link", link, &attr];
    args.extend(BUILD_FLAGS);
    stdout(&nix("build", &args));
    let wrapper = std::fs::read_to_string(out_link.join("bin/nixos-test-driver")).unwrap();
    assert!(wrapper.contains("'--interactive'"), "{wrapper}");
}

// ---------------------------------------------- what the stand-in must refuse

/// A test module evaluated against the stand-in and nix/lib.nix, without
/// flakes; `body` is the module's attribute set (with `drv` in scope).
fn hand_written_test(body: &str, attr: &str, build: bool) -> Output {
    hand_written_test_in("current", body, attr, build)
}

/// [`hand_written_test`] against the stand-in's `framework` generation
/// (`"legacy"`: before driver-configuration.nix).
fn hand_written_test_in(framework: &str, body: &str, attr: &str, build: bool) -> Output {
    let tmp = util::tempdir();
    let file = tmp.path().join("test.nix");
    std::fs::write(
        &file,
        format!(
            r#"let
  pkgs = import {stand_in} {{ system = "x86_64-linux"; standInTestFramework = "{framework}"; }};
  glue = import {lib} {{ }};
  plan = {{ version = 1; name = "t"; nodes = [ "machine" ]; steps = [ ]; }};
  driverPackage = pkgs.nixvm-driver-args-stand-in;
  test = pkgs.testers.runNixOSTest ({{ config, lib, ... }}: let drv = glue.mkDriver {{ inherit config pkgs plan driverPackage; }}; in {body});
in test"#,
            stand_in = stand_in().display(),
            lib = util::root().join("nix/lib.nix").display(),
        ),
    )
    .unwrap();
    let mut cmd = if build {
        let mut c = Command::new("nix-build");
        c.args(["--no-out-link", "-A", attr]).args(BUILD_FLAGS);
        c
    } else {
        let mut c = Command::new("nix-instantiate");
        c.args(["--eval", "--strict", "-A", attr]);
        c
    };
    cmd.arg(&file);
    util::run(&mut cmd)
}

const OK_BODY: &str = r#"{ name = "t"; nodes.machine = { }; testScript = "x"; driver = lib.mkForce drv; }"#;

#[test]
fn stand_in_accepts_a_forced_driver() {
    if !have_nix() {
        return;
    }
    let out = hand_written_test(OK_BODY, "driver.name", false);
    assert_eq!(stdout(&out).trim(), "\"nixos-test-driver-t\"");
    let out = hand_written_test(OK_BODY, "", true);
    assert!(out.status.success(), "building the test with a forced nixvm driver works");
}

#[test]
fn stand_in_rejects_a_driver_that_is_not_forced() {
    if !have_nix() {
        return;
    }
    let body = OK_BODY.replace("lib.mkForce drv", "drv");
    // drvPath: what `nix build` and `nix flake check` force.
    let out = hand_written_test(&body, "drvPath", false);
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("The option `driver' is defined multiple times while it's expected to be unique"),
        "{}",
        stderr(&out)
    );
    // mkOverride below 100 is as good as mkForce.
    let body = OK_BODY.replace("lib.mkForce drv", "lib.mkOverride 90 drv");
    assert!(hand_written_test(&body, "drvPath", false).status.success());
}

#[test]
fn stand_in_rejects_unknown_top_level_options() {
    if !have_nix() {
        return;
    }
    let body = OK_BODY.replace("testScript = ", "nodez.machine = { }; testScript = ");
    let out = hand_written_test(&body, "name", false);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("The option `nodez' does not exist"), "{}", stderr(&out));
}

#[test]
fn stand_in_requires_name_and_test_script() {
    if !have_nix() {
        return;
    }
    let out = hand_written_test(&OK_BODY.replace(r#"name = "t"; "#, ""), "name", false);
    assert!(stderr(&out).contains("`name'"), "{}", stderr(&out));
    let out = hand_written_test(&OK_BODY.replace(r#"testScript = "x"; "#, ""), "drvPath", false);
    assert!(stderr(&out).contains("`testScript'"), "{}", stderr(&out));
}

#[test]
fn stand_in_checks_nodes_and_accepts_test_script_functions() {
    if !have_nix() {
        return;
    }
    let out = hand_written_test(&OK_BODY.replace("nodes.machine = { };", "nodes = [ ];"), "drvPath", false);
    assert!(stderr(&out).contains("A definition for option `nodes' is not of type"), "{}", stderr(&out));
    let out =
        hand_written_test(&OK_BODY.replace("nodes.machine = { };", "nodes.machine = 3;"), "drvPath", false);
    assert!(stderr(&out).contains("`nodes.machine' is not of type `NixOS module'"), "{}", stderr(&out));
    // testScript may be a function of the nodes (testScript.nix).
    let body = OK_BODY.replace(
        r#"testScript = "x";"#,
        r#"testScript = { nodes, ... }: "vm ${nodes.machine.system.name}";"#,
    );
    let out = hand_written_test(&body, "config.testScriptString", false);
    assert_eq!(stdout(&out).trim(), "\"vm machine\"");
}

#[test]
fn stand_in_fails_the_build_without_bin_nixos_test_driver() {
    if !have_nix() {
        return;
    }
    let body = OK_BODY.replace("lib.mkForce drv", r#"lib.mkForce (pkgs.writeShellScriptBin "other" "true")"#);
    let out = hand_written_test(&body, "", true);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("has no executable bin/nixos-test-driver"), "{}", stderr(&out));
}

#[test]
fn mk_driver_builds_the_configuration_for_older_nixpkgs() {
    if !have_nix() {
        return;
    }
    // A gen-A/B style config: no driverConfigurationFile, nodes with
    // system.build.vm, vlans from virtualisation.vlans and interfaces.
    let expr = format!(
        r#"let
  pkgs = import {stand_in} {{ system = "x86_64-linux"; }};
  glue = import {lib} {{ }};
  vm = n: pkgs.writeShellScriptBin "run-${{n}}-vm" "true";
  config = {{
    name = "old";
    globalTimeout = 77;
    testScriptString = "pass";
    extraDriverArgs = [ "--keep-vm-state" ];
    nodes.a = {{ system.name = "a"; system.build.vm = vm "a"; virtualisation.vlans = [ 1 ]; }};
    nodes.b = {{ system.name = "bee"; system.build.vm = (vm "bee") // {{ meta = {{ }}; }};
                 virtualisation.vlans = [ 1 ]; virtualisation.interfaces.eth2.vlan = 3; }};
  }};
  d = glue.mkDriver {{ inherit config pkgs; plan = {{ version = 1; }}; }};
in {{
  conf = glue.legacyDriverConfiguration {{ inherit config pkgs; }};
  wrapper = d.wrapper;
}}"#,
        stand_in = stand_in().display(),
        lib = util::root().join("nix/lib.nix").display(),
    );
    let out = util::run(Command::new("nix-instantiate").args(["--eval", "--strict", "--json", "-E", &expr]));
    let v = json(&out);
    let conf = &v["conf"];
    assert_eq!(conf["global_timeout"], 77);
    assert_eq!(conf["vlans"], serde_json::json!([1, 3]));
    assert!(conf["vms"]["a"]["start_script"].as_str().unwrap().ends_with("/bin/run-a-vm"));
    assert!(conf["vms"]["b"]["start_script"].as_str().unwrap().ends_with("/bin/run-bee-vm"));
    assert_eq!(conf["vms"]["b"]["name"], "b");
    let wrapper = v["wrapper"].as_str().unwrap();
    assert!(wrapper.contains("-driverConfiguration.json'"), "{wrapper}");
    assert!(
        wrapper.contains("'--keep-vm-state' \"$@\""),
        "extraDriverArgs come before runtime args: {wrapper}"
    );
}

// ------------------------------------------------------- .drv files vs Nix

#[test]
fn parsed_drv_files_match_nix_show_derivation() {
    if !have_nix() {
        return;
    }
    // Fresh derivations (a unique string so they are new to this store),
    // plus the whole closure of a generated check.
    let nonce = format!("{:?}", std::time::SystemTime::now());
    let expr = format!(
        r#"let pkgs = import {} {{ system = "x86_64-linux"; }}; in
           pkgs.runCommand "fresh" {{ nonce = "{nonce}\t\"q\"\\"; multi = "a\nb"; dep = pkgs.writeText "dep" "{nonce}"; }} "echo > $out""#,
        stand_in().display()
    );
    let out = util::run(Command::new("nix-instantiate").args(["-E", &expr]));
    let fresh = stdout(&out).trim().to_string();

    let tmp = util::tempdir();
    let (_repo, project) = example_project(tmp.path());
    let attr = flake_ref(&project, "checks.x86_64-linux.health.drvPath");
    let check = stdout(&nix("eval", &["--raw", &attr]));

    for root in [fresh.as_str(), check.as_str()] {
        let shown = json(&nix("show-derivation", &["-r", root]));
        let all = shown.as_object().unwrap();
        assert!(!all.is_empty());
        for (path, expected) in all {
            let bytes = std::fs::read(path).unwrap();
            let drv = Derivation::parse(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
            pretty_assertions::assert_eq!(&drv.to_show_derivation_json(), expected, "{path}");
            assert_eq!(drv.to_aterm().as_bytes(), &bytes[..], "{path} does not round-trip");
            StorePath::from_absolute_path(path).expect("Nix's own paths are valid");
        }
    }
}

// ------------------------------------------------------------ nixvm-gen plan

#[test]
fn plan_shows_what_the_generated_check_builds() {
    if !have_nix() {
        return;
    }
    let tmp = util::tempdir();
    let (_repo, project) = example_project(tmp.path());

    let out = util::run(util::nixvm_gen().arg("--flake").arg(&project).args(["plan", "health"]));
    util::assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.starts_with("check checks.x86_64-linux.health\n"), "{text}");
    assert!(text.contains("-vm-test-run-health.drv"), "{text}");
    assert!(text.contains("-nixos-test-driver-health.drv (nixvm-gen wrapper of"), "{text}");
    assert!(text.contains("builder needs system features: nixos-test kvm"), "{text}");
    let machine = text.lines().find(|l| l.trim_start().starts_with("machine ")).expect("a node line");
    assert!(machine.ends_with("/bin/run-machine-vm"), "{machine}");
    assert!(text.contains("\"waitForUnit\""), "the plan is printed: {text}");
    assert!(text.contains("\"start_script\""), "the driver configuration is printed: {text}");

    let out = util::run(util::nixvm_gen().arg("--flake").arg(&project).args([
        "plan",
        "health",
        "--system",
        "aarch64-linux",
        "--format",
        "json",
    ]));
    let v = json(&out);
    assert_eq!(v["check"], "checks.aarch64-linux.health");
    assert_eq!(v["system"], "aarch64-linux");
    assert_eq!(v["driver"]["nixvm"], true);
    assert_eq!(v["nodes"][0]["node"], "machine");
    assert!(v["nodes"][0]["drv"].as_str().unwrap().ends_with("-nixos-vm.drv"));
    assert_eq!(v["plan"]["name"], "health");
    assert_eq!(v["driverConfiguration"]["vms"]["machine"]["name"], "machine");
    // Every node VM named in the report really is a derivation in the store.
    let drv = v["nodes"][0]["drv"].as_str().unwrap();
    assert!(Path::new(drv).exists());
}

/// The text report of a committed closure (tests/fixtures/drv/health, made
/// by its regen.sh), so no Nix is needed and the output is stable.
#[test]
fn plan_text_report_golden() {
    let dir = util::fixture("drv/health");
    let root = std::fs::read_to_string(dir.join("ROOT")).unwrap();
    let root = StorePath::from_base_name(root.trim()).unwrap();
    let closure = nixvm_gen::store::Closure::read_from(&dir, &root).unwrap();
    let t = nixvm_gen::store::VmTest::from_closure(&closure).unwrap();
    util::golden(&dir.join("plan.txt"), &nixvm_gen::cli::plan::render_text("checks.x86_64-linux.health", &t));
}

#[test]
fn plan_reports_unknown_tests_and_bad_names() {
    if !have_nix() {
        return;
    }
    let tmp = util::tempdir();
    let (_repo, project) = example_project(tmp.path());
    let out = util::run(util::nixvm_gen().arg("--flake").arg(&project).args(["plan", "nope"]));
    util::assert_code(&out, 2);
    assert!(stderr(&out).contains("has no `checks.x86_64-linux.nope`"), "{}", stderr(&out));
    let out = util::run(util::nixvm_gen().arg("--flake").arg(&project).args(["plan", "a.b"]));
    util::assert_code(&out, 2);
    assert!(stderr(&out).contains("invalid test name `a.b`"), "{}", stderr(&out));
}

#[test]
fn plan_warns_about_a_stock_driver() {
    if !have_nix() {
        return;
    }
    // A hand-written check that keeps the framework's (stand-in) driver.
    let tmp = util::tempdir();
    let dir = tmp.path().join("stock");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("flake.nix"),
        format!(
            r#"{{
  inputs.nixpkgs.url = "path:{}";
  outputs = {{ nixpkgs, ... }}: {{
    checks.x86_64-linux.stock = nixpkgs.legacyPackages.x86_64-linux.testers.runNixOSTest {{
      name = "stock"; nodes.machine = {{ }}; testScript = "start_all()";
    }};
    checks.x86_64-linux.text = nixpkgs.legacyPackages.x86_64-linux.writeText "text" "not a VM test";
  }};
}}"#,
            stand_in().display()
        ),
    )
    .unwrap();
    let out = util::run(util::nixvm_gen().arg("--flake").arg(&dir).args(["plan", "stock"]));
    util::assert_code(&out, 0);
    assert!(stderr(&out).contains("runs the stock NixOS test driver"), "{}", stderr(&out));
    assert!(stdout(&out).contains("(stock NixOS test driver)"));

    let out = util::run(util::nixvm_gen().arg("--flake").arg(&dir).args(["plan", "text"]));
    util::assert_code(&out, 2);
    assert!(
        stderr(&out).contains("is not a NixOS VM test (its name is `text`, expected `vm-test-run-<name>`)"),
        "{}",
        stderr(&out)
    );
}

/// The older driver command line and environment (`--vm-names`,
/// `--vm-start-scripts`, `--vlans`, `--global-timeout`, a positional test
/// script; `vmNames`/`vmStartScripts`): the driver starts the named VMs
/// through their scripts (here one that fails at once, so no QEMU is needed).
#[test]
fn driver_accepts_the_older_command_line_and_environment() {
    let tmp = util::tempdir();
    let script = tmp.path().join("run-weird-name-vm");
    std::fs::write(&script, "#!/bin/sh\necho 'fake start script failing' >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let plan = tmp.path().join("plan.json");
    std::fs::write(&plan, r#"{"version": 1, "name": "old", "nodes": ["alpha"], "steps": []}"#).unwrap();
    let state = tmp.path().join("tmp");
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let script = script.to_str().unwrap();
    let check = |o: &Output| {
        let err = stderr(o);
        assert_eq!(o.status.code(), Some(5), "a VM that fails to start: exit 5\n{err}");
        assert!(err.contains("node alpha: start script exited with status 3"), "{err}");
        assert!(err.contains("fake start script failing"), "the script's stderr is shown: {err}");
    };
    // On the command line (vlans empty: no vde_switch needed) …
    let o = util::run(
        util::nixvm_driver()
            .env("TMPDIR", &state)
            .args(["--vm-names", "alpha", "--vm-start-scripts", script, "--vlans", "--global-timeout", "60"])
            .arg("--plan")
            .arg(&plan)
            .arg("-o")
            .arg(&out)
            .arg(tmp.path().join("test-script")),
    );
    check(&o);
    // … and from the environment.
    let o = util::run(
        util::nixvm_driver()
            .env("TMPDIR", &state)
            .env("vmNames", "alpha")
            .env("vmStartScripts", script)
            .env("globalTimeout", "60")
            .arg("--plan")
            .arg(&plan)
            .arg("-o")
            .arg(&out),
    );
    check(&o);
}

#[test]
fn stand_in_checks_option_types() {
    if !have_nix() {
        return;
    }
    for (def, message) in [
        (
            r#"globalTimeout = "60";"#,
            "A definition for option `globalTimeout' is not of type `signed integer'.",
        ),
        (
            r#"logLevel = "loud";"#,
            r#"A definition for option `logLevel' is not of type `one of "debug", "info", "warning", "error"'."#,
        ),
        (r#"meta.owner = "me";"#, "The option `meta.owner' does not exist."),
        (
            r#"meta.timeout = "1h";"#,
            "A definition for option `meta.timeout' is not of type `null or signed integer'.",
        ),
    ] {
        let body = OK_BODY.replace("testScript = ", &format!("{def} testScript = "));
        let out = hand_written_test(&body, "drvPath", false);
        assert!(!out.status.success(), "{def} was accepted");
        assert!(stderr(&out).contains(message), "{def}: {}", stderr(&out));
    }
    let body = OK_BODY.replace(
        "testScript = ",
        r#"globalTimeout = 60; logLevel = "warning"; meta.timeout = null; meta.maintainers = [ ]; testScript = "#,
    );
    assert!(hand_written_test(&body, "drvPath", false).status.success());
}

/// nix/lib.nix's branch for nixpkgs before driver-configuration.nix, through
/// runNixOSTest itself: the driver gets the configuration mkDriver builds.
#[test]
fn older_nixpkgs_branch_runs_through_run_nixos_test() {
    if !have_nix() {
        return;
    }
    let body = r#"{ name = "t"; nodes.machine = { }; nodes.other.virtualisation.vlans = [ 2 ];
                   globalTimeout = 77; testScript = "x"; driver = lib.mkForce drv; }"#;
    // The older framework has no driverConfigurationFile, and refuses it.
    let out = hand_written_test_in("legacy", body, "config.driverConfigurationFile", false);
    assert!(!out.status.success(), "the legacy stand-in has driverConfigurationFile");
    let out = hand_written_test_in(
        "legacy",
        &body.replace("testScript = ", "driverConfigurationFile = null; testScript = "),
        "drvPath",
        false,
    );
    assert!(stderr(&out).contains("The option `driverConfigurationFile' does not exist"), "{}", stderr(&out));
    // Built: the fake driver copies the configuration it was given to $out.
    let out = hand_written_test_in("legacy", body, "", true);
    let path = stdout(&out).trim().to_owned();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(&path).join("config.json")).unwrap())
            .unwrap();
    assert!(config["vms"]["machine"]["start_script"].as_str().unwrap().ends_with("/bin/run-machine-vm"));
    assert!(config["vms"]["other"]["start_script"].as_str().unwrap().ends_with("/bin/run-other-vm"));
    assert_eq!(config["vlans"], serde_json::json!([1, 2]));
    assert_eq!(config["global_timeout"], 77);
    assert_eq!(config["containers"], serde_json::json!({}));
    // Containers are not dropped silently.
    let out = hand_written_test_in(
        "legacy",
        &body.replace("testScript = ", "containers.box = { }; testScript = "),
        "drvPath",
        false,
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("defines containers (box), which nixvm-driver does not support"),
        "{}",
        stderr(&out)
    );
}

// ---------------------------------------------------------------- hydraJobs

#[test]
fn hydra_jobs_evaluate_against_the_stand_in() {
    if !have_nix() {
        return;
    }
    let tmp = util::tempdir();
    let (_repo, project) = example_project(tmp.path());
    let mut cmd = util::nixvm_gen();
    cmd.arg("--flake").arg(&project).args(["--hydra-jobs", "generate"]);
    util::assert_code(&util::run(&mut cmd), 0);
    // `check` without the option calls the file stale, and says how to fix it.
    let mut cmd = util::nixvm_gen();
    cmd.arg("--flake").arg(&project).arg("check");
    util::assert_code(&util::run(&mut cmd), 1);
    let mut cmd = util::nixvm_gen();
    cmd.arg("--flake").arg(&project).args(["--hydra-jobs", "check"]);
    util::assert_code(&util::run(&mut cmd), 0);
    // `wire --hydra-jobs` adds `hydraJobs` next to the existing `checks`.
    let before = std::fs::read_to_string(project.join("flake.nix")).unwrap();
    let mut cmd = util::nixvm_gen();
    cmd.arg("--flake").arg(&project).args(["--hydra-jobs", "wire"]);
    util::assert_code(&util::run(&mut cmd), 0);
    let after = std::fs::read_to_string(project.join("flake.nix")).unwrap();
    assert_ne!(before, after);
    assert!(after.contains("hydraJobs = true;"), "{after}");
    // hydraJobs.<test>.<system>: the same derivations as checks.<system>.<test>.
    let jobs = json(&nix(
        "eval",
        &[
            "--json",
            &flake_ref(&project, "hydraJobs"),
            "--apply",
            "j: builtins.mapAttrs (t: builtins.attrNames) j",
        ],
    ));
    assert_eq!(jobs, serde_json::json!({ "health": ["aarch64-linux", "x86_64-linux"] }));
    let job = stdout(&nix("eval", &["--raw", &flake_ref(&project, "hydraJobs.health.x86_64-linux.drvPath")]));
    let check = stdout(&nix("eval", &["--raw", &flake_ref(&project, "checks.x86_64-linux.health.drvPath")]));
    assert_eq!(job, check);
    assert!(job.ends_with("-vm-test-run-health.drv"), "{job}");
}
