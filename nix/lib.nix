# The glue that generated checks call: `nixvm-gen.lib.mkDriver`.
#
# Generated code (nix/checks.generated.nix in a user's flake) does
#
#   pkgs.testers.runNixOSTest ({ config, lib, ... }: {
#     …
#     driver = lib.mkForce (nixvm-gen.lib.mkDriver {
#       inherit config pkgs;
#       plan = { version = 1; name = "…"; nodes = [ … ]; steps = [ … ]; };
#     });
#   })
#
# and mkDriver returns a package shaped like the stock driver of
# nixos/lib/testing/driver.nix: `bin/nixos-test-driver` (what run.nix calls
# with `-o $out`), `meta.mainProgram = "nixos-test-driver"`, the test's
# passthru. Instead of the Python driver it wraps nixvm-driver with the driver
# configuration file and the JSON plan.
#
# `mkForce` is required because `driver` is a `types.package` option with no
# default that driver.nix defines at normal priority (see
# nixos/lib/testing/driver.nix); two normal definitions collide.
{
  # system -> the nixvm-driver package this flake builds for it, or null.
  packageFor ? (_system: null),
}:
let
  # Deliberately independent of any particular nixpkgs `lib`: the caller's
  # `pkgs.lib` is used, and only long-standing functions of it.
  systemOf = pkgs: pkgs.stdenv.hostPlatform.system or pkgs.system;

  # Which nixvm-driver to wrap: an overlay's `pkgs.nixvm-driver` first (so
  # users can pin or patch it), then this flake's package for the system,
  # then a build of ./package.nix with the caller's nixpkgs.
  defaultDriverPackage =
    pkgs:
    let
      own = packageFor (systemOf pkgs);
    in
    pkgs.nixvm-driver or (if own != null then own else pkgs.callPackage ./package.nix { });

  # Driver configuration for nixpkgs without driver-configuration.nix (the
  # "gen A/B" framework that passed startScripts/vlans/globalTimeout through
  # environment variables). Same JSON shape as gen C's driverConfiguration,
  # built from the same sources it uses: each node's system.build.vm with its
  # `run-<system.name>-vm` program, virtualisation.vlans plus the vlans of
  # virtualisation.interfaces (older nixpkgs have no `interfaces`), and
  # globalTimeout.
  legacyDriverConfiguration =
    { config, pkgs }:
    let
      inherit (pkgs) lib;
      startScript =
        node:
        let
          vm = node.system.build.vm;
        in
        if vm ? meta.mainProgram then lib.getExe vm else "${vm}/bin/run-${node.system.name}-vm";
      vlansOf =
        node:
        (node.virtualisation.vlans or [ ])
        ++ lib.mapAttrsToList (_: i: i.vlan) (node.virtualisation.interfaces or { });
    in
    {
      vms = builtins.mapAttrs (name: node: {
        inherit name;
        start_script = startScript node;
      }) config.nodes;
      # This driver configuration has no containers; dropping the test's
      # silently would run it without them.
      containers =
        if (config.containers or { }) == { } then
          { }
        else
          throw "nixvm-gen.lib.mkDriver: the test `${config.name}' defines containers (${lib.concatStringsSep ", " (builtins.attrNames config.containers)}), which nixvm-driver does not support; use the Python backend for tests with containers";
      vlans = lib.unique (builtins.concatMap vlansOf (builtins.attrValues config.nodes));
      global_timeout = config.globalTimeout or 3600;
      enable_ssh_backdoor = config.sshBackdoor.enable or false;
      test_script = "${pkgs.writeText "test-script" (config.testScriptString or "")}";
    };

  # The configuration file the driver reads: the framework's own when it has
  # one (gen C, nixos/lib/testing/driver-configuration.nix), else ours.
  driverConfigurationFileOf =
    { config, pkgs }:
    config.driverConfigurationFile or (pkgs.writeText "driverConfiguration.json" (
      builtins.toJSON (legacyDriverConfiguration { inherit config pkgs; })
    ));

  mkDriver =
    {
      config,
      pkgs,
      plan,
      driverPackage ? defaultDriverPackage pkgs,
    }:
    let
      inherit (pkgs) lib;
      name = config.name;
      planFile = pkgs.writeText "nixvm-plan-${name}.json" (builtins.toJSON plan);
      configFile = driverConfigurationFileOf { inherit config pkgs; };
      # extraDriverArgs carries `--interactive` in the interactive
      # re-evaluation (nixos/lib/testing/interactive.nix), so
      # driverInteractive keeps working with a forced driver.
      # `--junit-xml` is relative to the output directory: run.nix's `-o $out`
      # gets report.json and junit.xml, for CI to pick up.
      args = [
        "--config"
        "${configFile}"
        "--plan"
        "${planFile}"
        "--junit-xml"
        "junit.xml"
      ]
      # gen C's driver.nix passes the `logLevel` option the same way.
      ++ lib.optionals (config ? logLevel) [
        "--log-level"
        config.logLevel
      ]
      ++ (config.extraDriverArgs or [ ]);
      # The host programs the driver runs (src/driver/tools.rs), in front
      # of PATH (/path-not-set in the build), so that a driverPackage
      # without its own wrapper (an overlay's plain build) works too.
      # With `enableOCR` (set by nixvm-gen for a `waitForText` step) also
      # tesseract and ImageMagick, as the stock driver's package adds
      # tesseract4 and imagemagick_light then
      # (nixos/lib/test-driver/default.nix, NixOS/nixpkgs@0354d61d).
      toolsPath = lib.makeBinPath (
        (driverPackage.driverTools or [
          pkgs.vde2
          pkgs.netpbm
        ])
        ++ lib.optionals (config.enableOCR or false) [
          pkgs.tesseract4
          pkgs.imagemagick_light
        ]
      );
      # Runtime arguments (`-o $out` from run.nix, `-K`, …) come after ours.
      wrapper = ''
        #!${pkgs.runtimeShell}
        export PATH=${toolsPath}''${PATH:+:$PATH}
        exec ${driverPackage}/bin/nixvm-driver ${lib.escapeShellArgs args} "$@"
      '';
    in
    pkgs.runCommand "nixos-test-driver-${name}"
      {
        inherit wrapper;
        preferLocalBuild = true;
        passthru = (config.passthru or { }) // {
          nixvm = {
            inherit plan planFile driverPackage toolsPath;
            driverConfigurationFile = configFile;
          };
        };
        meta = (config.meta or { }) // {
          mainProgram = "nixos-test-driver";
        };
      }
      ''
        mkdir -p $out/bin
        printf '%s' "$wrapper" > $out/bin/nixos-test-driver
        chmod +x $out/bin/nixos-test-driver
        ln -s nixos-test-driver $out/bin/nixvm-driver
        ln -s ${planFile} $out/plan.json
        ln -s ${configFile} $out/driver-configuration.json
      '';
in
{
  inherit mkDriver legacyDriverConfiguration driverConfigurationFileOf;
}
