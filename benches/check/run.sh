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
"$root/benches/check/gen-repo.sh" "$repo" 100

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
