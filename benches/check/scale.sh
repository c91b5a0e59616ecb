#!/usr/bin/env bash
# Benchmark: cold `nixvm-gen check` against Nix's own parser, as ratios
# measured in the same run (issue 16).
#
#   benches/check/scale.sh                       # 100, 1000, 10000; record
#   benches/check/scale.sh --sizes "100 1000"    # other sizes
#   benches/check/scale.sh --runs 5 --no-record  # runs per size (10000: 1)
#   NIXVM_GEN_BIN=/path/nixvm-gen benches/check/scale.sh  # another build
#
# For every size N the repository from gen-repo.sh (10 modules, N
# descriptions) is generated once, `generate` writes its checks, and then,
# alternating so that load drifts hit both alike:
#   - `nixvm-gen check` (release build; no cache exists yet, so every run
#     parses, validates and renders everything: the cold path);
#   - `nix-instantiate --parse` over the same .nix files (flake.nix, the
#     modules, the descriptions) in ONE process: the reference.
# Each run is measured with wait4(2) (a python3 helper): wall, CPU
# (user+sys) and peak RSS. The table row gives medians and the ratios check / parser. The
# OS page cache is warm for both (files were just written and read).
# The 1-minute load average before and after is recorded: on a loaded
# machine wall times are noise, the CPU ratio is the figure to compare.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

record=1 sizes="100 1000 10000" runs=5
while [ $# -gt 0 ]; do
  case "$1" in
    --no-record) record=0 ;;
    --sizes) sizes=$2; shift ;;
    --runs) runs=$2; shift ;;
    *) echo "usage: $0 [--sizes \"N ...\"] [--runs R] [--no-record]" >&2; exit 2 ;;
  esac
  shift
done
command -v nix-instantiate >/dev/null || { echo "needs nix-instantiate (Debian package \`nix-bin\`)" >&2; exit 1; }

# NIXVM_GEN_BIN=path measures another build (e.g. an older commit's) instead.
if [ -n "${NIXVM_GEN_BIN:-}" ]; then
  bin=$NIXVM_GEN_BIN
else
  cargo build --release --quiet --bin nixvm-gen
  bin=$root/target/release/nixvm-gen
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/nixvm-bench-scale.XXXXXX")
trap 'rm -rf "$work"' EXIT

# measure OUT CMD...: appends "wall_s cpu_s maxrss_kib" to OUT. wait4(2)
# gives CPU time in microseconds (GNU time rounds to 10 ms) and peak RSS.
measure() {
  local out=$1
  shift
  python3 - "$out" "$@" <<'PY'
import os, subprocess, sys, time
out, cmd = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = p.stderr.read()
_, status, ru = os.wait4(p.pid, 0)
wall = time.perf_counter() - t0
if os.waitstatus_to_exitcode(status) != 0:
    sys.stderr.write("failed: %s\n%s" % (" ".join(cmd[:3]), err.decode(errors="replace")[-2000:]))
    sys.exit(1)
with open(out, "a") as f:
    f.write("%.3f %.3f %d\n" % (wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss))
PY
}

# median FILE COLUMN
median() {
  sort -g -k"$2","$2" "$1" | awk -v c="$2" '{ v[NR] = $c } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

rows=()
load_before=$(cut -d' ' -f1 /proc/loadavg)
for n in $sizes; do
  repo=$work/repo$n
  "$root/benches/check/gen-repo.sh" "$repo" "$n"
  "$bin" --flake "$repo" --quiet generate
  mapfile -t files < <(cd "$repo" && ls flake.nix modules/*.nix tests/vm/*.nix)
  bytes=$(cd "$repo" && cat "${files[@]}" | wc -c)
  r=$runs
  [ "$n" -ge 10000 ] && r=1
  : >"$work/check$n" && : >"$work/parse$n"
  # One unmeasured round first: both programs and the files are then in the
  # page cache, and `check` must pass before it is timed.
  "$bin" --flake "$repo" check
  (cd "$repo" && nix-instantiate --parse "${files[@]}" >/dev/null 2>&1)
  for _ in $(seq 1 "$r"); do
    measure "$work/check$n" "$bin" --flake "$repo" check
    (cd "$repo" && measure "$work/parse$n" nix-instantiate --parse "${files[@]}")
  done
  cw=$(median "$work/check$n" 1) cc=$(median "$work/check$n" 2) cm=$(median "$work/check$n" 3)
  pw=$(median "$work/parse$n" 1) pc=$(median "$work/parse$n" 2) pm=$(median "$work/parse$n" 3)
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f×", a / b; else print "n/a" }'; }
  row="| $n | $((bytes / 1024)) KiB | $r | $cw | $cc | $((cm / 1024)) | $pw | $pc | $((pm / 1024)) | $(ratio "$cw" "$pw") | $(ratio "$cc" "$pc") | $(ratio "$cm" "$pm") |"
  echo "$row"
  rows+=("$row")
done
load_after=$(cut -d' ' -f1 /proc/loadavg)
echo "load (1 min) before ${load_before}, after ${load_after}"

[ "$record" -eq 1 ] || exit 0
results=$root/benches/RESULTS.md
{
  echo
  echo "## Cold \`check\` vs \`nix-instantiate --parse\`, same files, one run ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo "\`benches/check/scale.sh --sizes \"$sizes\" --runs $runs\`; commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?');"
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -r), $(nix-instantiate --version | head -1);"
  echo "load (1-minute average) ${load_before} before, ${load_after} after. Medians of the runs; wall and CPU in"
  echo "seconds (CPU = user + sys), peak RSS in MiB, from wait4(2). \`check\` has no cache yet: every run is cold."
  echo "Ratios are check / parser (target at 1,000 descriptions: ≤ 2×)."
  echo
  echo '| descriptions | size | runs | check wall s | check CPU s | check RSS MiB | parse wall s | parse CPU s | parse RSS MiB | wall ratio | CPU ratio | RSS ratio |'
  echo '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |'
  printf '%s\n' "${rows[@]}"
} >>"$results"
echo "recorded in benches/RESULTS.md" >&2
