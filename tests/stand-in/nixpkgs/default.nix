# STAND-IN for `import <nixpkgs> { system = …; overlays = …; }`
# (see flake.nix and ../README.md).
{
  system ? builtins.currentSystem,
  overlays ? [ ],
  ...
}:
let
  lib = import ./lib.nix;
  base = import ./pkgs.nix { inherit system lib; };
  # Overlays are applied as in nixpkgs (final = fix of the composed
  # extensions), but only at the top level: stand-in packages do not see
  # overlaid dependencies.
  final = builtins.foldl' (prev: o: prev // o final prev) base overlays;
in
final
