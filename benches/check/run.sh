#!/usr/bin/env bash
# Benchmark: `nixvm-gen check` on a repository with 100 descriptions.
#
#   benches/check/run.sh            # build (release), measure, append to benches/RESULTS.md
#   benches/check/run.sh --no-record  # measure only
#   benches/check/run.sh --keep       # keep the generated repository (for profiling)
#
# The goal is < 50 ms per `check` (it runs on every commit as a pre-commit
# hook). The repository is generated into a temp dir: a flake exporting 10
# NixOS modules and 100 varied descriptions (1-3 nodes, 3-40 steps, subtests,
# every step kind, module subsets, systems, both backends). `generate` runs
# once, then `check` is timed with hyperfine when installed (Debian package
# `hyperfine`), else with a `date +%s%N` loop.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

record=1 keep=0
for arg in "$@"; do
  case "$arg" in
    --no-record) record=0 ;;
    --keep) keep=1 ;;
    *) echo "usage: $0 [--no-record] [--keep]" >&2; exit 2 ;;
  esac
done

cargo build --release --quiet --bin nixvm-gen
bin=$root/target/release/nixvm-gen

work=$(mktemp -d "${TMPDIR:-/tmp}/nixvm-bench-check.XXXXXX")
if [ "$keep" -eq 1 ]; then
  echo "keeping $work/repo" >&2
else
  trap 'rm -rf "$work"' EXIT
fi
repo=$work/repo
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

# --- 100 varied descriptions ---------------------------------------------------
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
for i in $(seq 1 100); do
  describe "$i" >"$repo/tests/vm/t$i.nix"
done

"$bin" --flake "$repo" --quiet generate
"$bin" --flake "$repo" check # must pass before it is timed

# --- timing ------------------------------------------------------------------
if command -v hyperfine >/dev/null 2>&1; then
  tool=hyperfine
  hyperfine --warmup 3 --runs 30 --style basic --export-json "$work/h.json" \
    "'$bin' --flake '$repo' check" >&2
  read -r mean_ms min_ms max_ms user_ms sys_ms < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print(" ".join("%.1f" % (r[k] * 1000) for k in ("mean", "min", "max", "user", "system")))' "$work/h.json")
else
  tool="date loop"
  echo "hyperfine not installed (apt-get install hyperfine); timing with a date loop" >&2
  runs=30 total=0 min=999999999999 max=0
  for _ in 1 2 3; do "$bin" --flake "$repo" check; done
  for _ in $(seq 1 $runs); do
    t0=$(date +%s%N)
    "$bin" --flake "$repo" check
    t=$(($(date +%s%N) - t0))
    total=$((total + t))
    ((t < min)) && min=$t
    ((t > max)) && max=$t
  done
  mean_ms=$(awk "BEGIN { printf \"%.1f\", $total / $runs / 1e6 }")
  cpu_ms="?"
  min_ms=$(awk "BEGIN { printf \"%.1f\", $min / 1e6 }")
  max_ms=$(awk "BEGIN { printf \"%.1f\", $max / 1e6 }")
fi

[ -n "${user_ms:-}" ] && cpu_ms=$(awk "BEGIN { printf \"%.1f\", $user_ms + $sys_ms }")
load=$(cut -d' ' -f1 /proc/loadavg)
verdict=$(awk "BEGIN { print ($mean_ms < 50) ? \"ok (< 50 ms)\" : \"SLOW (>= 50 ms)\" }")
echo "check, 100 descriptions: mean ${mean_ms} ms (min ${min_ms}, max ${max_ms}; CPU ${cpu_ms} ms; load ${load}) [$tool] — $verdict"

# --- record ------------------------------------------------------------------
[ "$record" -eq 1 ] || exit 0
results=$root/benches/RESULTS.md
begin='<!-- bench:check:begin -->'
end='<!-- bench:check:end -->'
row="| $(date -u +%Y-%m-%dT%H:%MZ) | $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?') | $(nproc) cores, load ${load} | ${mean_ms} | ${min_ms} | ${max_ms} | ${cpu_ms} | $tool | $verdict |"
touch "$results"
if ! grep -qF "$begin" "$results"; then
  {
    [ -s "$results" ] && echo
    echo '## `nixvm-gen check`, 100 descriptions (benches/check/run.sh)'
    echo
    echo 'Goal: < 50 ms per run (pre-commit). Release build, warm cache, generated repository'
    echo 'of 10 modules and 100 descriptions; the time includes process start. The machine is'
    echo 'shared: "load" is the 1-minute load average at the end of the run, and the CPU column'
    echo '(hyperfine user+sys mean) is the least load-dependent figure.'
    echo
    echo "$begin"
    echo '| date (UTC) | commit | machine | mean ms | min ms | max ms | CPU ms (user+sys) | tool | verdict |'
    echo '| --- | --- | --- | --- | --- | --- | --- | --- | --- |'
    echo "$end"
  } >>"$results"
fi
python3 - "$results" "$end" "$row" <<'PY'
import sys
path, end, row = sys.argv[1:]
text = open(path).read()
text = text.replace(end, row + "\n" + end, 1)
open(path, "w").write(text)
PY
echo "recorded in benches/RESULTS.md" >&2
