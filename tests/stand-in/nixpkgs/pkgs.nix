# STAND-IN for `nixpkgs.legacyPackages.<system>` (NOT real nixpkgs).
#
# Builders here really build offline with Nix 2.8, and the same way inside
# and outside the sandbox: every builder is bash with PATH set to the
# stand-in busybox (the stand-in stdenv); nothing inherits the host's PATH.
# Host programs enter only through the packages of ./host.nix (vde2, netpbm,
# qemu, bash), which a sandboxed build sees only when prepare.sh's
# `extra-sandbox-paths` expose them. Everything that cannot exist here (Rust
# toolchain, NixOS systems) is a clearly named placeholder derivation that
# evaluates but refuses to build.
{
  system,
  lib,
  standInTestFramework ? "current",
}:
let
  host = import ./host.nix;
  # Written by ../prepare.sh into its copy of this directory: content hashes
  # of the host inputs that are not packages (the guest, the cargo
  # binaries), so that derivations using them are rebuilt when they change.
  hostInputs = if builtins.pathExists ./host-inputs.nix then import ./host-inputs.nix else null;

  # The bootstrap: busybox-static copied into the store (its applets are
  # the stand-in's coreutils). Built by busybox itself, whose shell runs
  # its own applets without PATH.
  busybox =
    derivation {
      name = "busybox-stand-in";
      inherit system;
      builder = host.busybox;
      args = [
        "sh"
        "-c"
        ''
          set -e
          mkdir -p $out/bin
          cp ${host.busybox} $out/bin/busybox
          chmod 555 $out/bin/busybox
          for a in $($out/bin/busybox --list); do
            case $a in busybox | bash) ;; *) ln -s busybox $out/bin/$a ;; esac
          done
        ''
      ];
    }
    // {
      meta.mainProgram = "busybox";
    };

  # A package standing for a host program (./host.nix): bin/<name> links
  # to the host's file. `hostPaths` is what the sandbox must expose.
  hostPackage =
    pname: spec:
    let
      bins = spec.bin or { };
      drv = derivation {
        name = "${pname}-host-stand-in";
        inherit system;
        builder = "${busybox}/bin/sh";
        PATH = "${busybox}/bin";
        links = lib.concatStringsSep " " (lib.mapAttrsToList (n: p: "${n}=${p}") bins);
        args = [
          "-c"
          ''
            set -e
            mkdir -p $out/bin
            for l in $links; do ln -s "''${l#*=}" "$out/bin/''${l%%=*}"; done
          ''
        ];
      };
      names = builtins.attrNames bins;
    in
    drv
    // {
      inherit pname;
      hostPaths = builtins.attrValues bins ++ (spec.data or [ ]);
      meta = lib.optionalAttrs (builtins.length names == 1) { mainProgram = builtins.head names; };
    };

  hostPackages = builtins.mapAttrs hostPackage host.packages;
  bash = hostPackages.bash;

  # The one primitive (the stand-in stdenv.mkDerivation): bash as the
  # builder, busybox on PATH, `set -e`.
  mkDrv =
    {
      name,
      script,
      env ? { },
      passthru ? { },
      meta ? { },
    }:
    let
      drv = derivation (
        {
          inherit name system;
          builder = "${bash}/bin/bash";
          PATH = "${busybox}/bin";
          args = [
            "-c"
            ''
              set -e
              ${script}
            ''
          ];
        }
        // env
      );
    in
    drv // passthru // { inherit meta passthru; };

  # A derivation that evaluates (so `nix flake show`/`nix eval` work) and
  # fails loudly when built.
  placeholder =
    name: extra:
    mkDrv {
      inherit name;
      script = ''
        echo "stand-in nixpkgs: '${name}' is a placeholder and cannot be built here" >&2
        exit 1
      '';
      passthru = extra;
      meta = extra.meta or { };
    };

  writeTextFile =
    {
      name,
      text,
      executable ? false,
      destination ? "",
      meta ? { },
      passthru ? { },
    }:
    mkDrv {
      inherit name meta passthru;
      env = {
        inherit text;
        inherit destination;
        executable = if executable then "1" else "";
      };
      script = ''
        target="$out$destination"
        mkdir -p "$(dirname "$target")"
        printf '%s' "$text" > "$target"
        if [ -n "$executable" ]; then chmod +x "$target"; fi
      '';
    };

  # Real: bash (pkgs/top-level/all-packages.nix runtimeShell).
  runtimeShell = "${bash}/bin/bash";

  self = {
    inherit system lib runtimeShell writeTextFile;
    stdenv.hostPlatform = {
      inherit system;
      isLinux = true;
      isDarwin = false;
    };
    stdenv.isLinux = true;
    stdenv.buildPlatform = {
      inherit system;
      canExecute = _: true;
    };

    # Real: lib/customisation.nix callPackageWith (without `override`).
    callPackage =
      fn: overrides:
      let
        f = if builtins.isFunction fn then fn else import fn;
      in
      f (builtins.intersectAttrs (builtins.functionArgs f) self // overrides);

    writeText = name: text: writeTextFile { inherit name text; };
    writeShellScript =
      name: text:
      writeTextFile {
        inherit name;
        executable = true;
        text = "#!${runtimeShell}\n${text}";
      };
    writeShellScriptBin =
      name: text:
      writeTextFile {
        inherit name;
        executable = true;
        destination = "/bin/${name}";
        text = "#!${runtimeShell}\n${text}";
        meta.mainProgram = name;
      };
    # Real: pkgs/build-support/trivial-builders (runCommand = runCommandWith
    # stdenv); `env` attrs become environment variables of the build.
    runCommand =
      name: env: script:
      mkDrv {
        inherit name script;
        env = builtins.removeAttrs env [
          "passthru"
          "meta"
        ];
        passthru = env.passthru or { };
        meta = env.meta or { };
      };
    runCommandLocal = name: env: script: self.runCommand name env script;
    # Real: pkgs/build-support/writers/data.nix (makeDataWriter: the JSON is
    # the `input` attribute, passed as a file, then reformatted); here it is
    # copied as is.
    writers.writeJSON =
      name: value:
      mkDrv {
        inherit name;
        env.input = builtins.toJSON value;
        script = ''printf '%s' "$input" > $out'';
      };
    formats.json = _: {
      generate = name: value: self.writeText name (builtins.toJSON value);
    };
    symlinkJoin =
      {
        name,
        paths,
        passthru ? { },
        meta ? { },
        postBuild ? "",
      }:
      mkDrv {
        inherit name passthru meta;
        env.paths = paths;
        script = ''
          mkdir -p $out
          for p in $paths; do cp -rsf "$p"/. $out/; done
          find $out -type d -exec chmod u+w {} +
          ${postBuild}
        '';
      };

    # A fake nixvm-driver for tests of the glue alone (pass it as mkDriver's
    # `driverPackage`). Real nixpkgs has no `nixvm-driver`, so neither has
    # this package set: lib.mkDriver falls back to the flake's own package,
    # as with real nixpkgs. It prints its argv, one per line, and with
    # `-o DIR` also writes them to DIR/stand-in-driver-args and copies the
    # files given to --config/--plan there, so tests can see exactly how the
    # wrapper called it.
    nixvm-driver-args-stand-in = mkDrv {
      name = "nixvm-driver-stand-in";
      meta.mainProgram = "nixvm-driver";
      env.driver = ''
        #!${runtimeShell}
        out=
        prev=
        for a in "$@"; do
          printf 'arg: %s\n' "$a"
          case "$prev" in
            -o|--output-directory) out="$a" ;;
          esac
          prev="$a"
        done
        if [ -n "$out" ]; then
          for a in "$@"; do printf '%s\n' "$a"; done > "$out/stand-in-driver-args"
          prev=
          for a in "$@"; do
            case "$prev" in
              --config) cp "$a" "$out/config.json" ;;
              --plan) cp "$a" "$out/plan.json" ;;
            esac
            prev="$a"
          done
        fi
        echo "stand-in nixvm-driver: ok"
      '';
      script = ''
        mkdir -p $out/bin
        printf '%s' "$driver" > $out/bin/nixvm-driver
        chmod +x $out/bin/nixvm-driver
      '';
    };

    # The stand-in stdenv's tools and the host programs of ./host.nix.
    inherit busybox bash;
    coreutils = busybox;
    inherit (hostPackages) vde2 netpbm qemu tesseract4;
    qemu_test = hostPackages.qemu;

    # STAND-IN rustPlatform: no Rust toolchain here, so buildRustPackage
    # does not compile. It installs the cargo binaries built on the host
    # (mapped into the sandbox at host.cargoDir by ../prepare.sh, checked
    # against the hash prepare.sh recorded), then runs the package's setup
    # hooks and postInstall like the real one. `src` is an input, so a
    # change of the sources rebuilds it. Without prepare.sh's host inputs it
    # is a placeholder that fails to build. `doCheck` is not run.
    rustPlatform.buildRustPackage =
      args:
      let
        standIn = {
          inherit (args) pname version;
          meta = args.meta or { };
          # Forcing these in tests checks that nix/package.nix's arguments
          # evaluate (source filter, lock file).
          standInArgs = args;
        };
        hooks = builtins.filter (p: p ? setupHook) (args.nativeBuildInputs or [ ]);
      in
      if hostInputs == null then
        placeholder "${args.pname}-${args.version}-rust-stand-in" standIn
      else
        mkDrv {
          name = "${args.pname}-${args.version}";
          env = {
            inherit (args) src;
            inherit (hostInputs) cargoHash;
            cargoDir = host.cargoDir;
            setupHooks = map (p: p.setupHook) hooks;
            postInstall = args.postInstall or "";
          };
          script = ''
            have=$(cd "$cargoDir" && cat $(ls | sort) | sha256sum | cut -d' ' -f1)
            if [ "$have" != "$cargoHash" ]; then
              echo "stand-in rustPlatform: the cargo binaries in $cargoDir are not the ones prepare.sh hashed; run tests/stand-in/prepare.sh again" >&2
              exit 1
            fi
            for h in $setupHooks; do . "$h"; done
            mkdir -p $out/bin
            for b in "$cargoDir"/*; do cp "$b" $out/bin/; done
            chmod 555 $out/bin/*
            eval "$postInstall"
          '';
          passthru = (args.passthru or { }) // standIn;
          meta = args.meta or { };
        };

    # Setup hooks (real: pkgs/build-support/setup-hooks/make-wrapper.sh and
    # installShellFiles), reduced to what nix/package.nix uses.
    makeWrapper = mkDrv {
      name = "make-wrapper-stand-in";
      env.hook = ./setup-hooks/make-wrapper.sh;
      script = ''
        mkdir -p $out/nix-support
        sed "s|@shell@|${runtimeShell}|g" "$hook" > $out/nix-support/setup-hook
      '';
      passthru.setupHook = "${self.makeWrapper}/nix-support/setup-hook";
    };
    installShellFiles = mkDrv {
      name = "install-shell-files-stand-in";
      env.hook = ./setup-hooks/install-shell-files.sh;
      script = ''
        mkdir -p $out/nix-support
        cp "$hook" $out/nix-support/setup-hook
      '';
      passthru.setupHook = "${self.installShellFiles}/nix-support/setup-hook";
    };
    mkShell = args: placeholder "nix-shell-stand-in" { standInArgs = args; };
    # ImageMagick 7's `magick` (the stock OCR's preprocessing, which
    # nixvm-driver runs when it is on PATH) is not on this machine.
    imagemagick_light = placeholder "imagemagick_light-stand-in" { };
    cargo = placeholder "cargo-stand-in" { };
    clippy = placeholder "clippy-stand-in" { };
    rustc = placeholder "rustc-stand-in" { };
    rustfmt = placeholder "rustfmt-stand-in" { };
    rust-analyzer = placeholder "rust-analyzer-stand-in" { };
    nix = placeholder "nix-stand-in" { };
    nixfmt-rfc-style = placeholder "nixfmt-stand-in" { meta.mainProgram = "nixfmt"; };
    nixfmt = self.nixfmt-rfc-style;
    alejandra = placeholder "alejandra-stand-in" { meta.mainProgram = "alejandra"; };
    cargo-nextest = placeholder "cargo-nextest-stand-in" { };

    testers = import ./testers.nix {
      inherit
        lib
        self
        mkDrv
        placeholder
        host
        hostInputs
        standInTestFramework
        ;
    };
  };
in
self
