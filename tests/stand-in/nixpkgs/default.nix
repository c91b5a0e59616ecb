# STAND-IN for `import <nixpkgs> { system = …; overlays = …; }`
# (see flake.nix and ../README.md).
{
  system ? builtins.currentSystem,
  overlays ? [ ],
  # STAND-IN only: "legacy" models the nixpkgs generation before
  # driver-configuration.nix (no `driverConfiguration`/`driverConfigurationFile`
  # options; the driver got its VMs through the environment), so that
  # nix/lib.nix's older-nixpkgs branch runs through runNixOSTest itself.
  standInTestFramework ? "current",
  ...
}:
let
  lib = import ./lib.nix;
  base = import ./pkgs.nix { inherit system lib standInTestFramework; };
  # Overlays are applied as in nixpkgs (final = fix of the composed
  # extensions), but only at the top level: stand-in packages do not see
  # overlaid dependencies.
  final = builtins.foldl' (prev: o: prev // o final prev) base overlays;
in
final
