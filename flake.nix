{
  description = "nixvm-gen: declarative NixOS VM tests for flakes, with a Rust test driver";

  # Tests replace this with the offline stand-in:
  #   --override-input nixpkgs path:tests/stand-in/nixpkgs
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});

      glue = import ./nix/lib.nix {
        packageFor = system: self.packages.${system}.nixvm-driver or null;
      };

      # The example project, evaluated as if it were a flake whose
      # `nixvm-gen` input is this flake (dogfooding without a lock file).
      example =
        let
          flake = import ./examples/health/flake.nix;
          outputs = flake.outputs {
            self = outputs // {
              outPath = ./examples/health;
            };
            inherit nixpkgs;
            nixvm-gen = self;
          };
        in
        if builtins.pathExists ./examples/health/flake.nix then outputs else { };
    in
    {
      packages = forAllSystems (
        _system: pkgs:
        let
          nixvm-gen = pkgs.callPackage ./nix/package.nix { };
        in
        {
          default = nixvm-gen;
          inherit nixvm-gen;
          # Same build; `nix run .#nixvm-driver` and lib.getExe pick the driver.
          nixvm-driver = nixvm-gen // {
            meta = nixvm-gen.meta // {
              mainProgram = "nixvm-driver";
            };
          };
        }
      );

      # `pkgs.nixvm-driver` from this overlay is what lib.mkDriver wraps.
      overlays.default = final: _prev: {
        nixvm-gen = final.callPackage ./nix/package.nix { };
        nixvm-driver = final.nixvm-gen // {
          meta = final.nixvm-gen.meta // {
            mainProgram = "nixvm-driver";
          };
        };
      };

      apps = forAllSystems (
        system: _pkgs:
        let
          p = self.packages.${system};
        in
        {
          default = {
            type = "app";
            program = "${p.nixvm-gen}/bin/nixvm-gen";
          };
          nixvm-gen = self.apps.${system}.default;
          nixvm-driver = {
            type = "app";
            program = "${p.nixvm-driver}/bin/nixvm-driver";
          };
        }
      );

      devShells = forAllSystems (
        _system: pkgs: {
          default = pkgs.mkShell {
            packages = [
              pkgs.cargo
              pkgs.rustc
              pkgs.clippy
              pkgs.rustfmt
              pkgs.rust-analyzer
              pkgs.cargo-nextest
              pkgs.nix
              pkgs.nixfmt-rfc-style
              pkgs.qemu
              pkgs.vde2
            ];
          };
        }
      );

      formatter = forAllSystems (_system: pkgs: pkgs.nixfmt-rfc-style);

      # The glue generated checks call (see nix/lib.nix, docs/nix.md).
      lib = {
        inherit (glue) mkDriver legacyDriverConfiguration driverConfigurationFileOf;
      };

      # Exactly what `nixvm-gen init --name my-service` writes (a test keeps
      # examples/init in sync with the scaffold templates).
      templates.default = {
        path = ./examples/init;
        description = "A NixOS module with declarative VM tests";
        welcomeText = ''
          Edit `tests/vm/*.nix`, then run `nixvm-gen generate` to refresh
          `nix/checks.generated.nix`, and `nix flake check` to run the VM tests.
        '';
      };

      # Dogfood: the example's generated VM tests, and the Rust test suite
      # (the package's doCheck).
      checks = forAllSystems (
        system: _pkgs:
        lib.mapAttrs' (n: v: lib.nameValuePair "example-health-${n}" v) (example.checks.${system} or { })
        // {
          nixvm-gen = self.packages.${system}.default;
        }
      );
    };
}
