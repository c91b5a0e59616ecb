# nixvm-gen and nixvm-driver (one cargo package, three binaries:
# nixvm-gen, nixvm-driver, nixos-test-driver), built from Cargo.lock without
# network access.
{
  lib,
  stdenv,
  rustPlatform,
  installShellFiles,
  makeWrapper,
  vde2,
  netpbm,
}:
let
  fs = lib.fileset;
  root = ../.;
  cargoToml = builtins.fromTOML (builtins.readFile ../Cargo.toml);
  # Every host program the driver runs (src/driver/tools.rs): vde_switch
  # for VLANs, pnmtopng for screenshots. Inside a Nix build PATH is
  # /path-not-set, so the driver finds them only through its wrapper, as
  # the stock driver does (nixos/lib/test-driver/default.nix @0354d61d
  # wraps nixos-test-driver with `--prefix PATH` of vde2, netpbm, …).
  driverTools = [
    vde2
    netpbm
  ];
in
rustPlatform.buildRustPackage {
  pname = cargoToml.package.name;
  inherit (cargoToml.package) version;

  # Only what cargo needs: a change to docs or CI does not rebuild.
  # templates/ holds the askama templates compiled into the binary; tests/
  # and examples/ are read by the test suite (doCheck). The stand-in guests'
  # cache (git-ignored, ~860 MB) is left out explicitly: a flake source has
  # only tracked files, but a plain `callPackage ./nix/package.nix` from a
  # checkout would copy it into the store (lib/fileset/default.nix,
  # `difference`).
  src = fs.toSource {
    inherit root;
    fileset = fs.difference (fs.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../src
      ../templates
      (fs.maybeMissing ../build.rs)
      (fs.maybeMissing ../askama.toml)
      (fs.maybeMissing ../benches)
      (fs.maybeMissing ../tests)
      (fs.maybeMissing ../examples)
      (fs.maybeMissing ../nix)
    ]) (fs.maybeMissing ../tests/guest/cache);
  };

  cargoLock.lockFile = ../Cargo.lock;

  nativeBuildInputs = [
    installShellFiles
    makeWrapper
  ];

  # Tests that need nix/qemu skip themselves loudly in the sandbox (they
  # call util::require); the rest run here.
  doCheck = true;
  preCheck = ''
    export HOME=$TMPDIR
  '';

  # Completions and the man page come from the binary itself (clap).
  postInstall = lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
    installShellCompletion --cmd nixvm-gen \
      --bash <($out/bin/nixvm-gen completions bash) \
      --zsh <($out/bin/nixvm-gen completions zsh) \
      --fish <($out/bin/nixvm-gen completions fish)
    $out/bin/nixvm-gen man > nixvm-gen.1
    installManPage nixvm-gen.1
  ''
  + ''
    for driver in nixvm-driver nixos-test-driver; do
      wrapProgram $out/bin/$driver --prefix PATH : ${lib.makeBinPath driverTools}
    done
  '';

  passthru = {
    inherit driverTools;
  };

  meta = {
    description = cargoToml.package.description;
    license = lib.licenses.mit;
    platforms = lib.platforms.linux;
    mainProgram = "nixvm-gen";
  };
}
