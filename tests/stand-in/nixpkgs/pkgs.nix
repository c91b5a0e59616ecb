# STAND-IN for `nixpkgs.legacyPackages.<system>` (NOT real nixpkgs).
#
# Builders here really build offline with Nix 2.8 (`builder = "/bin/sh"`,
# tools from the host's /usr/bin), which needs
#   --option sandbox false --option build-users-group '' --option substituters ''
# Everything that cannot exist here (Rust toolchain, QEMU, NixOS systems) is a
# clearly named placeholder derivation that evaluates but refuses to build.
{ system, lib }:
let
  # The one primitive: a /bin/sh derivation with the host PATH (impure on
  # purpose; the real stdenv brings coreutils).
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
          builder = "/bin/sh";
          args = [
            "-c"
            ''
              export PATH=/usr/bin:/bin
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

  runtimeShell = "/bin/sh";

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
          for p in $paths; do cp -rsf --no-preserve=mode "$p"/. $out/; done
          ${postBuild}
        '';
      };

    # Stand-in of nixvm-driver (the real one is built by nix/package.nix with
    # rustPlatform, which this stand-in does not have). It prints its argv, one
    # per line, and with `-o DIR` also writes them to DIR/stand-in-driver-args
    # and copies the files given to --config/--plan there, so tests can see
    # exactly how the wrapper called it.
    nixvm-driver = mkDrv {
      name = "nixvm-driver-stand-in";
      meta.mainProgram = "nixvm-driver";
      env.driver = ''
        #!/bin/sh
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

    # Placeholders for what the flake's devShell/package reference.
    rustPlatform.buildRustPackage =
      args:
      placeholder "${args.pname}-${args.version}-rust-stand-in" {
        inherit (args) pname version;
        meta = args.meta or { };
        # Forcing these in tests checks that nix/package.nix's arguments
        # evaluate (source filter, lock file).
        standInArgs = args;
      };
    installShellFiles = placeholder "installShellFiles-stand-in" { };
    makeWrapper = placeholder "makeWrapper-stand-in" { };
    mkShell = args: placeholder "nix-shell-stand-in" { standInArgs = args; };
    cargo = placeholder "cargo-stand-in" { };
    clippy = placeholder "clippy-stand-in" { };
    rustc = placeholder "rustc-stand-in" { };
    rustfmt = placeholder "rustfmt-stand-in" { };
    rust-analyzer = placeholder "rust-analyzer-stand-in" { };
    nix = placeholder "nix-stand-in" { };
    nixfmt-rfc-style = placeholder "nixfmt-stand-in" { meta.mainProgram = "nixfmt"; };
    nixfmt = self.nixfmt-rfc-style;
    alejandra = placeholder "alejandra-stand-in" { meta.mainProgram = "alejandra"; };
    qemu = placeholder "qemu-stand-in" { };
    qemu_test = placeholder "qemu-test-stand-in" { };
    vde2 = placeholder "vde2-stand-in" { };
    cargo-nextest = placeholder "cargo-nextest-stand-in" { };

    testers = import ./testers.nix { inherit lib self mkDrv placeholder; };
  };
in
self
