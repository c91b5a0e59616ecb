#!/usr/bin/env bash
# Benchmark: how `nixvm-gen` scales with the size of its input (issue 11).
#
#   benches/scale/run.sh              # build (release), measure, append to benches/RESULTS.md
#   benches/scale/run.sh --no-record  # measure only
#   benches/scale/run.sh --no-build   # use the existing target/release/nixvm-gen
#
# Two series, each timed as the best of 3 runs of the release binary:
#   - `check` on one description with 1k, 10k and 100k steps (parse,
#     validate, codegen, diff);
#   - `scan` on a flake with a chain of 1k and 10k module aliases
#     (`nixosModules.a<i> = self.nixosModules.a<i-1>;`).
# The goal is linear growth: at most 12x the time per 10x of input. The
# verdict column says whether each 10x step met it. Timing on the shared
# machine is noisy; the load column is the 1-minute load average.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

record=1 build=1
for arg in "$@"; do
  case "$arg" in
    --no-record) record=0 ;;
    --no-build) build=0 ;;
    *) echo "usage: $0 [--no-record] [--no-build]" >&2; exit 2 ;;
  esac
done

if [ "$build" -eq 1 ]; then cargo build --release --quiet --bin nixvm-gen; fi
bin=$root/target/release/nixvm-gen
work=$(mktemp -d "${TMPDIR:-/tmp}/nixvm-bench-scale.XXXXXX")
trap 'rm -rf "$work"' EXIT

# make <dir> <steps> <aliases>
make() {
  python3 - "$@" <<'PY'
import os, sys
out, steps, aliases = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(out + "/tests/vm", exist_ok=True)
os.makedirs(out + "/nix", exist_ok=True)
mods = "    nixosModules.default = ./m.nix;\n" + "".join(
    f"    nixosModules.a{i} = self.nixosModules.{'default' if i == 0 else f'a{i-1}'};\n" for i in range(aliases))
with open(out + "/flake.nix", "w") as f:
    f.write("{\n  outputs = { self, ... }: {\n" + mods + "  };\n}\n")
with open(out + "/m.nix", "w") as f:
    f.write("{ ... }: { }\n")
body = "".join(f'    {{ succeed = "echo {i}"; timeout = 5; }}\n' for i in range(steps))
with open(out + "/tests/vm/t.nix", "w") as f:
    f.write("{\n  nodes.machine = { };\n  steps = [\n" + body + "  ];\n}\n")
PY
}

# best <cmd…>: the best wall time of 3 runs, in ms (exit codes 0 and 1 are fine)
best() {
  local b=""
  for _ in 1 2 3; do
    local s e
    s=$(date +%s%N)
    "$@" >/dev/null 2>&1 || [ $? -eq 1 ]
    e=$(date +%s%N)
    local ms=$(((e - s) / 1000000))
    if [ -z "$b" ] || [ "$ms" -lt "$b" ]; then b=$ms; fi
  done
  echo "$b"
}

rows=()
series() { # series <name> <cmd> <sizes…>; the first size is the reference
  local name=$1 cmd=$2
  shift 2
  local prev="" prev_n="" line="" verdict="ok"
  for n in "$@"; do
    local dir=$work/$name-$n
    if [ "$name" = steps ]; then make "$dir" "$n" 0; else make "$dir" 3 "$n"; fi
    local ms
    ms=$(best "$bin" --flake "$dir" "$cmd")
    line+="${n}: ${ms} ms"
    if [ -n "$prev" ]; then
      local ratio
      ratio=$(awk -v a="$ms" -v b="$prev" -v n="$n" -v p="$prev_n" 'BEGIN { r = (b > 0 ? a / b : 0) / (n / p) * 10; printf "%.1f", r }')
      line+=" (${ratio}x per 10x)"
      if awk -v r="$ratio" 'BEGIN { exit !(r > 12) }'; then verdict="SUPERLINEAR"; fi
    fi
    line+="; "
    prev=$ms prev_n=$n
  done
  echo "$name ($cmd): $line$verdict" >&2
  rows+=("| $name (\`$cmd\`) | ${line%; } | $verdict |")
}

series steps check 1000 10000 100000
series aliases scan 1000 10000

if [ "$record" -eq 1 ]; then
  load=$(cut -d' ' -f1 /proc/loadavg)
  cores=$(nproc)
  when=$(date -u +%Y-%m-%dT%H:%MZ)
  commit=$(git rev-parse --short HEAD)
  {
    echo
    echo "### scale run $when, commit $commit, $cores cores, load $load"
    echo
    echo "| series | best of 3 (ratio per 10x of input) | verdict (≤ 12x per 10x) |"
    echo "| --- | --- | --- |"
    printf '%s\n' "${rows[@]}"
  } >>benches/RESULTS.md
  echo "appended to benches/RESULTS.md" >&2
fi
