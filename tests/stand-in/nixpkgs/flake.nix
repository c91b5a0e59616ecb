# STAND-IN for github:NixOS/nixpkgs, used ONLY by nixvm-gen's tests
# (`--override-input nixpkgs path:tests/stand-in/nixpkgs`). It has no inputs
# and builds offline with Nix 2.8. See ../README.md for the interface it
# provides and asserts; see ./testers.nix for the cited nixpkgs sources.
{
  description = "STAND-IN nixpkgs for nixvm-gen tests (not real nixpkgs)";

  outputs =
    { self }:
    let
      lib = import ./lib.nix;
    in
    {
      inherit lib;
      legacyPackages = lib.genAttrs lib.systems.flakeExposed (system: import ./default.nix { inherit system; });
    };
}
