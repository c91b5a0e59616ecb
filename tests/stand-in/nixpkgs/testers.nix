# STAND-IN for `pkgs.testers.runNixOSTest` (NOT the real NixOS test framework).
#
# Real interface asserted here, paraphrased from NixOS/nixpkgs:
#   pkgs/build-support/testers/default.nix   runNixOSTest = runTest { hostPkgs = pkgs; imports = [ module ]; }
#   nixos/lib/testing/default.nix            evalModules with class "nixosTest"; result = config.test
#   nixos/lib/testing/driver.nix             options driver (types.package, NO default, defined by the
#                                            framework at normal priority 100), globalTimeout (3600),
#                                            extraDriverArgs, enableOCR, extraPythonPackages, skipLint,
#                                            skipTypeCheck, logLevel, qemu.*, hostPkgs,
#                                            pythonTestDriverPackage (readOnly)
#   nixos/lib/testing/driver-configuration.nix  driverConfiguration { vms, containers, vlans,
#                                            global_timeout, enable_ssh_backdoor, test_script },
#                                            driverConfigurationFile = writers.writeJSON …
#   nixos/lib/testing/run.nix                vm-test-run-<name>: `${driver}/bin/nixos-test-driver -o $out`,
#                                            requiredSystemFeatures [ "nixos-test" "kvm" ], passthru
#   nixos/lib/testing/interactive.nix        interactive = same module type; extraDriverArgs
#                                            [ "--interactive" ]; passthru.driverInteractive
#   nixos/lib/testing/{name,nodes,meta,testScript,call-test,legacy,network}.nix
#
# What is modelled: option names (unknown top-level options are an error, as
# with the real module system), definition priorities (mkOverride/mkForce/
# mkDefault/mkIf, so a plain second `driver` definition collides exactly like
# `types.package` does), imports, the function-module calling convention with
# a lazily fixed `config`, the driverConfiguration JSON, and the passthru
# surface. What is NOT modelled: NixOS node evaluation (only hostName,
# system.name, virtualisation.vlans/.interfaces/.useNixStoreImage/
# .mountHostNixStore/.useBootLoader of the node's modules and their imports
# are read) and the stock Python driver
# (a placeholder that fails when run).
{
  lib,
  self,
  mkDrv,
  placeholder,
  host,
  hostInputs,
  standInTestFramework,
}:
let
  pkgs = self;
  inherit (builtins)
    attrNames
    concatMap
    concatStringsSep
    elem
    filter
    foldl'
    functionArgs
    head
    isAttrs
    isFunction
    isList
    isPath
    isString
    length
    mapAttrs
    ;

  defaultPriority = 100; # real: lib.modules.defaultOverridePriority

  logLevels = [
    "debug"
    "info"
    "warning"
    "error"
  ];

  # meta.nix: a submodule (maintainers, timeout, broken, platforms); an
  # unknown attribute is an error, like any undeclared submodule option.
  metaTypes = {
    maintainers = {
      check = isList;
      type = "list of raw value";
    };
    timeout = {
      check = v: v == null || builtins.isInt v;
      type = "null or signed integer";
    };
    broken = {
      check = builtins.isBool;
      type = "boolean";
    };
    platforms = {
      check = isList;
      type = "list of raw value";
    };
  };
  checkMeta =
    m:
    let
      unknown = filter (k: !(metaTypes ? ${k})) (attrNames m);
      bad = filter (k: metaTypes ? ${k} && !(metaTypes.${k}.check m.${k})) (attrNames m);
    in
    if unknown != [ ] then
      throw "The option `meta.${head unknown}' does not exist."
    else if bad != [ ] then
      throw "A definition for option `meta.${head bad}' is not of type `${metaTypes.${head bad}.type}'."
    else
      m;

  # Top-level options of the real test module (files listed above).
  knownOptions = [
    "name"
    "nodes"
    "defaults"
    "nodeDefaults"
    "containers"
    "containerDefaults"
    "extraBaseModules"
    "extraBaseNodeModules"
    "node"
    "testScript"
    "driver"
    "hostPkgs"
    "qemu"
    "globalTimeout"
    "enableOCR"
    "extraPythonPackages"
    "extraDriverArgs"
    "skipLint"
    "skipTypeCheck"
    "logLevel"
    "sshBackdoor"
    "enableDebugHook"
    "interactive"
    "meta"
    "passthru"
    "driverConfiguration"
    "driverConfigurationFile"
    "rawTestDerivation"
    "rawTestDerivationArg"
    "test"
    "result"
    "container" # nodes.nix: container.type (internal)
    "nodesCompat" # nodes.nix (internal)
    "includeTestScriptReferences" # testScript.nix (internal)
    "machine" # legacy.nix (deprecated alias of nodes.machine)
    "_module"
  ];
  legacy = standInTestFramework == "legacy";
  # Options of driver-configuration.nix, absent from the older framework.
  newerOptions = [
    "driverConfiguration"
    "driverConfigurationFile"
  ];
  readOnlyOptions = [
    "pythonTestDriverPackage"
    "testScriptString"
    "allMachines"
  ];

  moduleKeys = [
    "imports"
    "_file"
    "key"
    "config"
    "options"
    "disabledModules"
  ];

  # Turn a module (attrset, function, path) and its imports into a flat list
  # of { file, defs } where defs are the option definitions it makes.
  collect =
    args: file: m:
    let
      isFile = isPath m || isString m;
      file' = if isFile then toString m else file;
      fn = if isFile then import m else m;
      v = if isFunction fn then fn args else fn;
      v' =
        if !isAttrs v then
          throw "stand-in runNixOSTest: module in ${file'} is not an attribute set"
        else if v ? options then
          throw "stand-in runNixOSTest: module in ${file'} declares options; the stand-in only models definitions"
        else
          v;
      defs =
        if v' ? config then
          v'.config
        else
          builtins.removeAttrs v' [
            "imports"
            "_file"
            "key"
            "disabledModules"
          ];
    in
    [
      {
        file = v'._file or file';
        inherit defs;
      }
    ]
    ++ concatMap (collect args file') (v'.imports or [ ]);

  # Strip mkIf/mkOverride; returns [ { file, priority, value } ] (empty when a
  # mkIf condition is false).
  unwrap =
    file: priority: v:
    if isAttrs v && (v._type or null) == "override" then
      unwrap file v.priority v.content
    else if isAttrs v && (v._type or null) == "if" then
      (if v.condition then unwrap file priority v.content else [ ])
    else
      [
        {
          inherit file priority;
          value = v;
        }
      ];

  definitionsOf =
    modules: opt:
    concatMap (m: if m.defs ? ${opt} then unwrap m.file defaultPriority m.defs.${opt} else [ ]) modules;

  # Keep only the highest-priority (lowest number) definitions, like the real
  # `filterOverrides`.
  highest =
    defs:
    let
      best = foldl' (acc: d: if d.priority < acc then d.priority else acc) 9999 defs;
    in
    filter (d: d.priority == best) defs;

  fileList = defs: concatStringsSep "" (map (d: "\n- In `${d.file}'") defs);

  # types.package / types.either str function: exactly one definition.
  mergeUnique =
    opt: defs:
    let
      top = highest defs;
    in
    if defs == [ ] then
      throw "The option `${opt}' was accessed but has no value defined. Try setting the option."
    else if length top == 1 then
      (head top).value
    else
      throw "The option `${opt}' is defined multiple times while it's expected to be unique.\n\nDefinition values:${fileList top}\n\nUse `lib.mkForce value` or `lib.mkDefault value` to change the priority on any of these definitions.";

  # types.str / int / bool: several definitions must agree (mergeEqualOption).
  mergeEqual =
    opt: defs:
    let
      top = highest defs;
      first = (head top).value;
    in
    if defs == [ ] then
      throw "The option `${opt}' was accessed but has no value defined. Try setting the option."
    else if builtins.all (d: d.value == first) top then
      first
    else
      throw "The option `${opt}' has conflicting definition values:${fileList top}";

  mergeList = defs: concatMap (d: d.value) (highest defs);
  mergeAttrs = defs: foldl' (acc: d: lib.recursiveUpdate acc d.value) { } (highest defs);

  checkType =
    opt: pred: what: v:
    if pred v then v else throw "A definition for option `${opt}' is not of type `${what}'.";

  isPackage = v: lib.isDerivation v || (isString v && lib.hasPrefix builtins.storeDir v);

  # ---- one evaluation of the test module (used twice: normal + interactive)
  evalTest =
    {
      userModules,
      extraModules ? [ ],
    }:
    let
      args = {
        inherit config lib;
        pkgs = pkgs; # real: pkgs.nix sets _module.args.pkgs = hostPkgs
        hostPkgs = pkgs;
        options = { };
        specialArgs = { };
        moduleType = null;
      };
      frameworkModule = {
        file = "stand-in nixos/lib/testing/driver.nix";
        defs = {
          # The framework's own definition, normal priority (driver.nix).
          driver = stockDriver config;
        };
      };
      modules = [ frameworkModule ] ++ concatMap (collect args "<unknown-file>") (userModules ++ extraModules);

      defined = foldl' (acc: m: acc ++ attrNames m.defs) [ ] modules;
      known = if legacy then filter (o: !(elem o newerOptions)) knownOptions else knownOptions;
      unknown = filter (o: !(elem o known) && !(elem o readOnlyOptions)) defined;
      readOnlyDefined = filter (o: elem o readOnlyOptions) defined;

      defs = definitionsOf modules;
      withDefault =
        opt: default:
        let
          d = defs opt;
        in
        if d == [ ] then default else mergeEqual opt d;

      nodeModules = foldl' (
        acc: d: acc // mapAttrs (n: m: (acc.${n} or [ ]) ++ [ m ]) d.value
      ) { } (highest (defs "nodes" ++ map (d: d // { value = { machine = d.value; }; }) (defs "machine")));
      defaultsModules = map (d: d.value) (defs "defaults" ++ defs "nodeDefaults");

      # What modules see as `config` (the older framework has no
      # driver-configuration.nix options).
      config = if legacy then builtins.removeAttrs fullConfig newerOptions else fullConfig;
      fullConfig = {
        name = checkType "name" isString "string" (mergeEqual "name" (defs "name"));
        nodes = mapAttrs (n: ms: evalNode (attrNames nodeModules) n (defaultsModules ++ ms)) nodeModules;
        containers = mergeAttrs (defs "containers");
        testScript = checkType "testScript" (v: isString v || isFunction v) "string or function" (
          mergeUnique "testScript" (defs "testScript")
        );
        testScriptString =
          let
            t = config.testScript;
          in
          if isFunction t then
            t (builtins.intersectAttrs (functionArgs t) { inherit (config) nodes containers; })
          else
            t;
        driver = checkType "driver" isPackage "package" (mergeUnique "driver" (defs "driver"));
        # driver.nix: types.int.
        globalTimeout = checkType "globalTimeout" builtins.isInt "signed integer" (
          withDefault "globalTimeout" 3600
        );
        enableOCR = withDefault "enableOCR" false;
        skipLint = withDefault "skipLint" false;
        skipTypeCheck = withDefault "skipTypeCheck" false;
        # driver.nix @01fbdeef: types.enum [ "debug" "info" "warning" "error" ].
        logLevel = checkType "logLevel" (v: elem v logLevels) "one of ${
          concatStringsSep ", " (map (l: "\"${l}\"") logLevels)
        }" (withDefault "logLevel" "info");
        enableDebugHook = withDefault "enableDebugHook" false;
        extraDriverArgs = checkType "extraDriverArgs" isList "list of string" (mergeList (defs "extraDriverArgs"));
        extraPythonPackages = _: [ ];
        sshBackdoor = {
          enable = config.enableDebugHook;
        }
        // mergeAttrs (defs "sshBackdoor");
        qemu = {
          package = pkgs.qemu_test;
        }
        // mergeAttrs (defs "qemu");
        meta = checkMeta (
          {
            timeout = 3600;
            maintainers = [ ];
            broken = false;
            platforms = [ ];
          }
          // mergeAttrs (defs "meta")
        );
        passthru = mergeAttrs (defs "passthru");
        interactive = mergeAttrs (defs "interactive");
        hostPkgs = pkgs;
        inherit (pkgs.testers) pythonTestDriverPackage;

        # driver-configuration.nix (gen C)
        driverConfiguration = {
          vms = mapAttrs (name: node: {
            inherit name;
            start_script = lib.getExe node.system.build.vm;
          }) config.nodes;
          containers = { };
          vlans = lib.unique (
            concatMap (
              n: n.virtualisation.vlans ++ lib.mapAttrsToList (_: i: i.vlan) n.virtualisation.interfaces
            ) (builtins.attrValues config.nodes)
          );
          global_timeout = config.globalTimeout;
          enable_ssh_backdoor = config.sshBackdoor.enable;
          test_script = "${pkgs.writeText "test-script" config.testScriptString}";
        };
        driverConfigurationFile = pkgs.writers.writeJSON "driverConfiguration.json" config.driverConfiguration;
      };

      isModule = m: isAttrs m || isFunction m || isPath m || isString m;
      badNodes = filter (n: !(builtins.all isModule nodeModules.${n})) (attrNames nodeModules);
      badNodesAttrs = filter (d: !(isAttrs d.value)) (defs "nodes");

      problems =
        if badNodesAttrs != [ ] then
          throw "A definition for option `nodes' is not of type `lazy attribute set of (NixOS module)'.${fileList badNodesAttrs}"
        else if badNodes != [ ] then
          throw "A definition for option `nodes.${head badNodes}' is not of type `NixOS module'."
        else if unknown != [ ] then
          throw "The option `${head unknown}' does not exist (stand-in runNixOSTest; known test options: ${concatStringsSep ", " known})."
        else if readOnlyDefined != [ ] then
          throw "The option `${head readOnlyDefined}' is read-only, but it's set."
        else if !(isString config.name) then
          throw "unreachable"
        # Typed options are checked whenever the configuration is used, as
        # the module system checks a definition when its option is read.
        else if !(builtins.isInt config.globalTimeout && isString config.logLevel && isAttrs config.meta) then
          throw "unreachable"
        else
          true;
    in
    assert problems;
    config;

  # Minimal node "evaluation": what driver-configuration.nix and run-<n>-vm
  # need. Real: nodes.nix sets networking.hostName = mkDefault <attr name>,
  # and system.name defaults to the host name (nixos/modules/misc/label.nix).
  evalNode =
    allNodes: name: modules:
    let
      args = {
        config = node;
        inherit lib pkgs name;
        modulesPath = "/stand-in/nixos/modules";
        nodes = { };
        options = { };
      };
      # The node's modules and, depth first, their `imports` (as the module
      # system collects them; imports from modulesPath are not modelled and
      # skipped).
      collect =
        depth: m:
        let
          fn = if isPath m || isString m then import m else m;
          v = if isFunction fn then fn args else fn;
          defs = if isAttrs v && (v._type or null) == "if" then (if v.condition then [ v.content ] else [ ]) else [ v ];
        in
        if (isPath m || isString m) && lib.hasPrefix "${args.modulesPath}/" (toString m) then
          [ ]
        else if depth > 32 then
          throw "stand-in nixpkgs: node ${name}: module imports nested deeper than 32"
        else
          concatMap (d: [ d ] ++ concatMap (collect (depth + 1)) (if isAttrs d then d.imports or [ ] else [ ])) defs;
      ms = concatMap (collect 0) modules;
      pick =
        path: default:
        let
          found = concatMap (m: if lib.hasAttrByPath path m then [ (lib.attrByPath path null m) ] else [ ]) ms;
          plain = map (v: if isAttrs v && v ? _type then v.content else v) found;
        in
        if plain == [ ] then default else head plain;
      # A boolean option of the node's own modules merged as the module
      # system does: the definitions of the highest priority (lowest
      # number; `mkDefault` 1000, plain 100, `mkForce` 50) win and must agree
      # (types.bool merges with mergeEqualOption); `mkIf false` defines nothing.
      pickBool =
        path: default:
        let
          name' = concatStringsSep "." path;
          unIf = v: if isAttrs v && (v._type or null) == "if" then (if v.condition then [ v.content ] else [ ]) else [ v ];
          found = concatMap unIf (
            concatMap (m: if lib.hasAttrByPath path m then [ (lib.attrByPath path null m) ] else [ ]) ms
          );
          isOverride = v: isAttrs v && (v._type or null) == "override";
          prio = v: if isOverride v then v.priority else defaultPriority;
          best = foldl' (acc: v: if prio v < acc then prio v else acc) 100000 found;
          winners = concatMap (v: if prio v == best then unIf (if isOverride v then v.content else v) else [ ]) found;
        in
        if winners == [ ] then
          default
        else if !(builtins.all builtins.isBool winners) then
          throw "A definition for option `${name'}' is not of type `boolean'."
        else if !(builtins.all (v: v == head winners) winners) then
          throw "The option `${name'}' has conflicting definition values."
        else
          head winners;
      hostName = pick [ "networking" "hostName" ] name;
      sysName = pick [ "system" "name" ] hostName;
      node = {
        networking.hostName = hostName;
        system.name = sysName;
        # Real default (qemu-vm.nix): [ 1 ] unless interfaces are set.
        virtualisation.vlans = pick [ "virtualisation" "vlans" ] (
          if node.virtualisation.interfaces == { } then [ 1 ] else [ ]
        );
        virtualisation.interfaces = pick [ "virtualisation" "interfaces" ] { };
        # Real defaults (qemu-vm.nix @00008e8e): useNixStoreImage false,
        # useBootLoader false, mountHostNixStore = !useNixStoreImage &&
        # !useBootLoader; the store image is a raw drive built at each start.
        virtualisation.useNixStoreImage = pickBool [ "virtualisation" "useNixStoreImage" ] false;
        virtualisation.useBootLoader = pickBool [ "virtualisation" "useBootLoader" ] false;
        virtualisation.mountHostNixStore = pickBool [ "virtualisation" "mountHostNixStore" ] (
          !node.virtualisation.useNixStoreImage && !node.virtualisation.useBootLoader
        );
        system.build.vm = startVM {
          inherit name allNodes sysName;
          store =
            let
              v = node.virtualisation;
            in
            if v.useBootLoader then
              throw "stand-in nixpkgs: node ${name}: virtualisation.useBootLoader is not modelled (the stand-in guest boots its kernel directly)"
            else if v.mountHostNixStore && !v.useNixStoreImage then
              "9p"
            else if v.useNixStoreImage && !v.mountHostNixStore then
              "image"
            else
              throw "stand-in nixpkgs: node ${name}: a Nix store both from the host (mountHostNixStore) and from an image (useNixStoreImage), or from neither, is not modelled";
          vlans = node.virtualisation.vlans ++ lib.mapAttrsToList (_: i: i.vlan) node.virtualisation.interfaces;
        };
        system.build.toplevel = placeholder "nixos-system-${sysName}-stand-in" { };
      };
    in
    node;

  # system.build.vm: bin/run-<system.name>-vm, written by tests/guest/make-vm.sh
  # for the systemd stand-in guest of tests/guest/ (mapped into the sandbox
  # at host.guestDir by ../prepare.sh; the guest's cache stamp is an input).
  # It honours the contract of NixOS's start script (startVM in
  # nixos/modules/virtualisation/qemu-vm.nix, NixOS/nixpkgs@00008e8e):
  # `#!runtimeShell`, coreutils in front of PATH, cwd and TMPDIR the state
  # dir unless TMPDIR and USE_TMPDIR are set, `$TMPDIR/xchg` and
  # `${SHARED_DIR:-$TMPDIR/xchg}` shared over 9p, one NIC on
  # `$QEMU_VDE_SOCKET_<vlan>` per VLAN (node numbers over the sorted names,
  # MAC 52:54:00:12:<vlan>:<n>), `$QEMU_NET_OPTS`, `$QEMU_KERNEL_PARAMS`,
  # then `exec qemu … $QEMU_OPTS "$@"`. Without prepare.sh's host inputs
  # the script exists but fails when run, saying why.
  startVM =
    {
      name,
      allNodes,
      sysName,
      vlans,
      store,
    }:
    mkDrv {
      name = "nixos-vm";
      env = {
        inherit store;
        vmName = sysName;
        node = name;
        allNodes = lib.concatStringsSep " " allNodes;
        vlans = lib.concatStringsSep " " (map toString vlans);
        guestDir = host.guestDir;
        guestStamp = if hostInputs == null then "" else hostInputs.guestStamp;
        qemu = "${pkgs.qemu}/bin/qemu-system-x86_64";
        shell = pkgs.runtimeShell;
        coreutils = "${pkgs.coreutils}/bin";
      };
      script = ''
        mkdir -p $out/bin
        if [ -z "$guestStamp" ]; then
          cat > $out/bin/run-$vmName-vm <<EOS
        #!$shell
        echo "stand-in run-$vmName-vm (node $node): no stand-in guest (build through tests/stand-in/prepare.sh's copy of the stand-in)" >&2
        exit 1
        EOS
          chmod +x $out/bin/run-$vmName-vm
        else
          # make-vm.sh numbers the nodes, as network.nix, over the names; the
          # NixOS host name is the node's system.name here.
          NIXVM_GUEST_CACHE=$guestDir/cache "$shell" $guestDir/make-vm.sh --out $out/bin \
            --node "$node" --all-nodes "$allNodes" --vlans "$vlans" --kind systemd --store "$store" \
            --qemu "$qemu" --shell "$shell" --path "$coreutils" > /dev/null
          if [ "$node" != "$vmName" ]; then mv $out/bin/run-$node-vm $out/bin/run-$vmName-vm; fi
        fi
      '';
      meta.mainProgram = "run-${sysName}-vm";
    };

  # The framework's own driver (driver.nix): a placeholder for the Python
  # driver, so an un-forced user definition collides with it.
  stockDriver =
    config:
    placeholder "nixos-test-driver-${config.name}" {
      meta.mainProgram = "nixos-test-driver";
      standInStockDriver = true;
    };

  # run.nix: the test derivation.
  mkTest =
    config: interactiveConfig:
    let
      passthru = config.passthru // {
        inherit (config) driver nodes;
        driverInteractive = interactiveConfig.driver;
        inherit config;
      };
      drv = mkDrv {
        name = "vm-test-run-${config.name}";
        env = {
          inherit (config) driver;
          requiredSystemFeatures = [
            "nixos-test"
            "kvm"
          ];
          preferLocalBuild = false;
        };
        script = ''
          if [ ! -x "$driver/bin/nixos-test-driver" ]; then
            echo "stand-in runNixOSTest: the driver $driver has no executable bin/nixos-test-driver" >&2
            exit 1
          fi
          mkdir -p $out
          export LOGFILE=/dev/null
          "$driver/bin/nixos-test-driver" -o $out
        '';
        inherit passthru;
        inherit (config) meta;
      };
    in
    drv
    // {
      test = drv;
      requiredSystemFeatures = [
        "nixos-test"
        "kvm"
      ];
    };

  runNixOSTest =
    testModule:
    let
      userModules = [ testModule ];
      config = evalTest { inherit userModules; };
      interactiveConfig = evalTest {
        inherit userModules;
        extraModules = [
          {
            _file = "stand-in nixos/lib/testing/interactive.nix";
            extraDriverArgs = [ "--interactive" ];
          }
          (config.interactive // { _file = "interactive"; })
        ];
      };
    in
    mkTest config interactiveConfig;
in
{
  inherit runNixOSTest;
  # Real attribute name; here a placeholder (the Python driver is not
  # available offline).
  pythonTestDriverPackage = placeholder "nixos-test-driver-python-stand-in" { };
}
