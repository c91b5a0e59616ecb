{
  description = "syshc: a health-check service with a declarative NixOS VM test";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    nixvm-gen.url = "github:nixvm-gen/nixvm-gen";
    nixvm-gen.inputs.nixpkgs.follows = "nixpkgs";
  };

  outputs =
    { self, nixpkgs, ... }@inputs:
    {
      # `import`, not the bare path: `nix flake check` before Nix 2.13
      # rejects path-valued modules ("module must be a function or an
      # attribute set", NixOS/nix#6866).
      nixosModules.default = import ./service.nix;

      # Written by `nixvm-gen generate` from tests/vm/*.nix; `nixvm-gen check`
      # (e.g. in a pre-commit hook) tells when it is stale.
      checks = import ./nix/checks.generated.nix {
        inherit self nixpkgs;
        nixvm-gen = inputs.nixvm-gen;
      };
    };
}
