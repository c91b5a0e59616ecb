#!/usr/bin/env bash
# Writes a benchmark repository for `nixvm-gen check`: a flake exporting 10
# NixOS modules and N varied descriptions (1-3 nodes, 3-40 steps, subtests,
# every step kind, module subsets, systems, both backends; six shapes in
# rotation, so the size grows linearly with N: ~4 KB per description).
#
#   benches/check/gen-repo.sh DIR N
#
# Used by run.sh (N = 100) and scale.sh (100, 1,000, 10,000).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 DIR N" >&2; exit 2; }
repo=$1 count=$2
mkdir -p "$repo/modules" "$repo/tests/vm" "$repo/nix"

# --- the flake: 10 modules ---------------------------------------------------
modules=10
{
  echo '{'
  echo '  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";'
  echo '  inputs.nixvm-gen.url = "github:nixvm-gen/nixvm-gen";'
  echo '  outputs = { self, nixpkgs, ... }@inputs: {'
  for m in $(seq 1 $modules); do
    echo "    nixosModules.svc$m = ./modules/svc$m.nix;"
  done
  echo '    nixosModules.default = self.nixosModules.svc1;'
  echo '    checks = import ./nix/checks.generated.nix { inherit self nixpkgs; nixvm-gen = inputs.nixvm-gen; };'
  echo '  };'
  echo '}'
} >"$repo/flake.nix"
for m in $(seq 1 $modules); do
  cat >"$repo/modules/svc$m.nix" <<NIX
{ config, lib, pkgs, ... }:
{
  options.services.svc$m.enable = lib.mkEnableOption "svc$m";
  config = lib.mkIf config.services.svc$m.enable {
    systemd.services.svc$m.script = "\${pkgs.python3}/bin/python3 -m http.server 80$m";
  };
}
NIX
done

# --- N varied descriptions ---------------------------------------------------
describe() { # $1 = index
  local i=$1 kind=$(($1 % 6)) m=$(($1 % modules + 1))
  echo "# Benchmark description $i (kind $kind)."
  echo '{'
  echo "  name = \"t$i\";"
  echo "  description = \"generated test $i\";"
  case $kind in
    0)
      echo "  nodes.machine = { ... }: { services.svc$m.enable = true; };"
      echo '  steps = ['
      echo "    { waitForUnit = \"svc$m.service\"; }"
      echo "    { waitForOpenPort = 80$m; }"
      echo "    { succeed = \"curl --fail localhost:80$m\"; expect.contains = \"Healthy\"; }"
      echo "    { http = { url = \"http://localhost:80$m/health\"; status = 200; contains = \"ok\"; }; }"
      echo '  ];'
      ;;
    1)
      echo "  modules = [ \"svc$m\" ];"
      echo "  nodes.server = { ... }: { services.svc$m.enable = true; networking.firewall.enable = false; };"
      echo '  nodes.client = { pkgs, ... }: { environment.systemPackages = [ pkgs.curl ]; };'
      echo '  steps = ['
      echo '    { start = "server"; }'
      echo "    { waitForUnit = \"svc$m.service\"; node = \"server\"; }"
      echo '    {'
      echo '      subtest = "client reaches server";'
      echo '      steps = ['
      echo "        { waitUntilSucceeds = \"curl --fail http://server:80$m/\"; node = \"client\"; timeout = 60; }"
      echo '        { block = "server"; }'
      echo "        { fail = \"curl --max-time 2 http://server:80$m/\"; node = \"client\"; }"
      echo '        { unblock = "server"; }'
      echo '      ];'
      echo '    }'
      echo '  ];'
      ;;
    2)
      echo "  modules = [ \"svc$m\" \"svc$(( (m % modules) + 1 ))\" ];"
      echo '  systems = [ "x86_64-linux" ];'
      echo '  backend = "python";'
      echo '  timeout = 900;'
      echo '  nodes.machine = { ... }: { };'
      echo '  steps = ['
      echo '    { waitForUnit = "multi-user.target"; }'
      echo '    { waitForFile = "/run/booted-system"; }'
      echo "    { succeed = \"systemctl is-active svc$m\"; expect.equals = \"active\"; }"
      echo '    { succeed = "uname -r"; expect.matches = "^[0-9]+\\."; }'
      echo '  ];'
      ;;
    3)
      echo '  nodes.machine = { ... }: { };'
      echo '  steps = ['
      for s in $(seq 1 40); do
        echo "    { succeed = \"echo step $s && test $s -gt 0\"; expect.contains = \"step $s\"; }"
      done
      echo '  ];'
      ;;
    4)
      echo '  nodes.machine = { ... }: { };'
      echo '  steps = ['
      echo '    { waitForConsoleText = "login:"; }'
      echo '    { sleep = 1.5; }'
      echo '    { copyFromVm = "/etc/os-release"; targetDir = "out"; }'
      echo "    { screenshot = \"boot-$i\"; }"
      echo '    { reboot = true; }'
      echo '    { waitForUnit = "multi-user.target"; }'
      echo '    { shutdown = true; }'
      echo '  ];'
      ;;
    5)
      echo '  nodes.a = { ... }: { };'
      echo '  nodes.b = { ... }: { };'
      echo '  nodes.c = { ... }: { };'
      echo '  steps = ['
      for n in a b c; do
        echo "    { waitForUnit = \"network-online.target\"; node = \"$n\"; }"
        echo "    { waitForClosedPort = 22; node = \"$n\"; }"
        echo "    { waitUntilFails = \"pgrep -x setup\"; node = \"$n\"; }"
        echo "    { succeed = \"false\"; expect.exitCode = 1; node = \"$n\"; }"
      done
      echo '    { crash = "c"; }'
      echo '  ];'
      ;;
  esac
  echo '}'
}
for i in $(seq 1 "$count"); do
  describe "$i" >"$repo/tests/vm/t$i.nix"
done

