#!/usr/bin/env bash
# Benchmark: `nixvm-gen check`, cold and incremental, against Nix's own
# parser, as ratios measured in the same run (issue 16).
#
#   benches/check/scale.sh                       # 100, 1000, 10000; record
#   benches/check/scale.sh --sizes "100 1000"    # other sizes
#   benches/check/scale.sh --runs 5 --no-record  # runs per size (10000: 3)
#   NIXVM_GEN_BIN=/path/nixvm-gen benches/check/scale.sh  # another build
#
# For every size N the repository from gen-repo.sh (10 modules, N
# descriptions) is generated once, `generate` writes its checks, and then,
# in rounds (so that load drifts hit every variant alike):
#   - cold: `nixvm-gen --no-cache check` (parses, validates and renders
#     everything; reads and writes no cache);
#   - warm: `nixvm-gen check` with the cache of the previous run and
#     nothing changed;
#   - warm, one edit: `nixvm-gen check` after one description changed (a
#     comment appended to t1.nix, a different one each round: its hash
#     changes, so it is parsed and rendered again, while the generated file
#     stays the same and `check` passes);
#   - `nix-instantiate --parse` over the same .nix files (flake.nix, the
#     modules, the descriptions) in ONE process: the reference.
# Each run is measured with wait4(2) (a python3 helper): wall, CPU
# (user+sys) and peak RSS. The table gives medians and the ratios to the
# parser. The OS page cache is warm for all (files were just written and
# read). The cache lives in a temporary NIXVM_GEN_CACHE_DIR.
# The 1-minute load average before and after is recorded: on a loaded
# machine wall times are noise, the CPU ratios are the figures to compare.
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
export NIXVM_GEN_CACHE_DIR=$work/cache

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

rows=() ratio_rows=()
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "n/a" }'; }
ms() { awk -v s="$1" 'BEGIN { printf "%.1f", s * 1000 }'; }
load_before=$(cut -d' ' -f1 /proc/loadavg)
for n in $sizes; do
  repo=$work/repo$n
  "$root/benches/check/gen-repo.sh" "$repo" "$n"
  "$bin" --flake "$repo" --quiet --no-cache generate
  mapfile -t files < <(cd "$repo" && ls flake.nix modules/*.nix tests/vm/*.nix)
  bytes=$(cd "$repo" && cat "${files[@]}" | wc -c)
  r=$runs
  [ "$n" -ge 10000 ] && r=3
  for v in cold warm edit parse; do : >"$work/$v$n"; done
  # One unmeasured round first: the programs and the files are then in the
  # page cache, the cache exists, and `check` must pass before it is timed.
  "$bin" --flake "$repo" --no-cache check
  "$bin" --flake "$repo" check
  (cd "$repo" && nix-instantiate --parse "${files[@]}" >/dev/null 2>&1)
  original=$(cat "$repo/tests/vm/t1.nix")
  for round in $(seq 1 "$r"); do
    measure "$work/cold$n" "$bin" --flake "$repo" --no-cache check
    "$bin" --flake "$repo" check # the cache is current again
    measure "$work/warm$n" "$bin" --flake "$repo" check
    printf '%s\n# edit %s\n' "$original" "$round" >"$repo/tests/vm/t1.nix"
    measure "$work/edit$n" "$bin" --flake "$repo" check
    (cd "$repo" && measure "$work/parse$n" nix-instantiate --parse "${files[@]}")
  done
  "$bin" --flake "$repo" --verbose check 2>&1 | grep '^cache:' >&2
  for v in cold warm edit parse; do
    read -r "${v}_w" "${v}_c" "${v}_m" < <(echo "$(median "$work/$v$n" 1) $(median "$work/$v$n" 2) $(median "$work/$v$n" 3)")
  done
  # shellcheck disable=SC2154 # set by read above
  row="| $n | $((bytes / 1024)) KiB | $r | $(ms "$cold_w") / $(ms "$cold_c") / $((cold_m / 1024)) | $(ms "$warm_w") / $(ms "$warm_c") / $((warm_m / 1024)) | $(ms "$edit_w") / $(ms "$edit_c") / $((edit_m / 1024)) | $(ms "$parse_w") / $(ms "$parse_c") / $((parse_m / 1024)) |"
  ratio_row="| $n | $(ratio "$cold_w" "$parse_w") / $(ratio "$cold_c" "$parse_c") | $(ratio "$warm_w" "$parse_w") / $(ratio "$warm_c" "$parse_c") | $(ratio "$edit_w" "$parse_w") / $(ratio "$edit_c" "$parse_c") | $(ratio "$cold_m" "$parse_m") |"
  echo "$row"
  echo "$ratio_row"
  rows+=("$row")
  ratio_rows+=("$ratio_row")
done
load_after=$(cut -d' ' -f1 /proc/loadavg)
echo "load (1 min) before ${load_before}, after ${load_after}"

[ "$record" -eq 1 ] || exit 0
results=$root/benches/RESULTS.md
{
  echo
  echo "## \`check\` cold and incremental vs \`nix-instantiate --parse\`, same files, one run ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo "\`benches/check/scale.sh --sizes \"$sizes\" --runs $runs\`; commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?');"
  echo "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -r), $(nix-instantiate --version | head -1);"
  echo "load (1-minute average) ${load_before} before, ${load_after} after. Medians of the runs, each cell"
  echo "wall ms / CPU ms (user + sys) / peak RSS MiB, from wait4(2). cold = \`--no-cache check\`; warm = \`check\`"
  echo "with a current cache; one edit = \`check\` after a comment was appended to one description."
  echo
  echo '| descriptions | size | runs | cold | warm | warm, one edit | parser (one process) |'
  echo '| --- | --- | --- | --- | --- | --- | --- |'
  printf '%s\n' "${rows[@]}"
  echo
  echo 'Ratios to the parser of the same round, wall / CPU (targets: cold ≤ 2× at 1,000; one edit ≤ 0.25× at 1,000):'
  echo
  echo '| descriptions | cold / parser | warm / parser | one edit / parser | cold RSS / parser RSS |'
  echo '| --- | --- | --- | --- | --- |'
  printf '%s\n' "${ratio_rows[@]}"
} >>"$results"
echo "recorded in benches/RESULTS.md" >&2
