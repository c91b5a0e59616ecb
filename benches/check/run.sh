#!/usr/bin/env bash
# Benchmark: `nixvm-gen check` on a repository with 100 descriptions, against
# Nix's own parser over the same files, in the same run.
#
#   benches/check/run.sh              # build (release), measure, append to benches/RESULTS.md
#   benches/check/run.sh --no-record  # measure only
#   benches/check/run.sh --keep       # keep the generated repository (for profiling)
#   benches/check/run.sh --runs 40    # rounds (default 30)
#   NIXVM_GEN_BIN=/path/nixvm-gen benches/check/run.sh  # another build
#
# The goal is < 50 ms per `check` (it runs on every commit as a pre-commit
# hook). The repository is generated into a temp dir: a flake exporting 10
# NixOS modules and 100 varied descriptions (1-3 nodes, 3-40 steps, subtests,
# every step kind, module subsets, systems, both backends). `generate` runs
# once; then every round runs, in a random order so that load drifts hit all
# alike:
#   - `check` with its cache warm (what the pre-commit hook runs; the cache
#     lives in the temp dir), `check --no-cache` (the cold path: everything
#     parsed and rendered), and the reference `nix-instantiate --parse` over
#     the same .nix files in one process, at normal priority: what a developer
#     sees on this machine now;
#   - the same three under SCHED_FIFO (`chrt -f 50`, when permitted): they then
#     never wait for a core behind other processes, so their wall time is what
#     an idle machine gives. On the shared 2-core machine the difference between
#     the two wall times is time spent runnable but not running (perf sched
#     latency shows it as run-queue delay), not work `check` does.
# Each run is measured with wait4(2): wall, CPU (user + sys). The row records
# medians, the mean and maximum of the normal-priority cold `check`, the
# ratios cold check / parser, the machine and the 1-minute load average
# before and after. Builds without a cache (no `--no-cache`) are cold anyway:
# their warm columns repeat the cold ones.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

record=1 keep=0 runs=30
while [ $# -gt 0 ]; do
  case "$1" in
    --no-record) record=0 ;;
    --keep) keep=1 ;;
    --runs) runs=$2; shift ;;
    *) echo "usage: $0 [--no-record] [--keep] [--runs N]" >&2; exit 2 ;;
  esac
  shift
done
command -v nix-instantiate >/dev/null || { echo "needs nix-instantiate (Debian package \`nix-bin\`)" >&2; exit 1; }

if [ -n "${NIXVM_GEN_BIN:-}" ]; then
  bin=$NIXVM_GEN_BIN
else
  cargo build --release --quiet --bin nixvm-gen
  bin=$root/target/release/nixvm-gen
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/nixvm-bench-check.XXXXXX")
if [ "$keep" -eq 1 ]; then
  echo "keeping $work/repo" >&2
else
  trap 'rm -rf "$work"' EXIT
fi
repo=$work/repo
export NIXVM_GEN_CACHE_DIR=$work/cache
"$root/benches/check/gen-repo.sh" "$repo" 100 >/dev/null

"$bin" --flake "$repo" --quiet generate
"$bin" --flake "$repo" check # must pass before it is timed
mapfile -t files < <(cd "$repo" && ls flake.nix modules/*.nix tests/vm/*.nix)
(cd "$repo" && nix-instantiate --parse "${files[@]}" >/dev/null 2>&1)

cold=()
"$bin" check --help 2>/dev/null | grep -q -- --no-cache && cold=(--no-cache)

rt=()
if chrt -f 50 true 2>/dev/null; then
  rt=(chrt -f 50)
else
  echo "chrt -f 50 is not permitted here: the SCHED_FIFO columns stay empty" >&2
fi

load_before=$(cut -d' ' -f1 /proc/loadavg)
# Prints: name median_wall_ms mean_wall_ms max_wall_ms median_cpu_ms, per variant.
(cd "$repo" && python3 - "$runs" "$bin" "${#rt[@]}" "${rt[@]}" "${#cold[@]}" "${cold[@]}" -- "${files[@]}" <<'PY') >"$work/results"
import os, random, statistics, subprocess, sys, time
runs, binary, nrt = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
rt = sys.argv[4:4 + nrt]
ncold = int(sys.argv[4 + nrt])
nocache = sys.argv[5 + nrt:5 + nrt + ncold]
files = sys.argv[sys.argv.index("--") + 1:]
check = [binary, "--flake", ".", "check"]
parse = ["nix-instantiate", "--parse"] + files
variants = {"warm": check, "check": check + nocache, "parse": parse}
if rt:
    variants.update({"warm_rt": rt + check, "check_rt": rt + check + nocache, "parse_rt": rt + parse})
got = {name: [] for name in variants}
for _ in range(runs):
    order = list(variants.items())
    random.shuffle(order)
    for name, cmd in order:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit("failed: " + " ".join(cmd[:4]))
        got[name].append((wall * 1000, (ru.ru_utime + ru.ru_stime) * 1000))
for name, rows in got.items():
    w = [r[0] for r in rows]
    c = [r[1] for r in rows]
    print("%s %.1f %.1f %.1f %.1f" % (name, statistics.median(w), statistics.mean(w), max(w), statistics.median(c)))
PY
load_after=$(cut -d' ' -f1 /proc/loadavg)

get() { awk -v n="$1" -v c="$2" '$1 == n { print $c }' "$work/results"; }
cw=$(get check 2) cmean=$(get check 3) cmax=$(get check 4) cc=$(get check 5)
pw=$(get parse 2) pc=$(get parse 5)
crt=$(get check_rt 2) prt=$(get parse_rt 2)
ww=$(get warm 2) wc=$(get warm 5) wrt=$(get warm_rt 2)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b > 0) printf "%.2f", a / b; else print "n/a" }'; }
verdict=$(awk -v w="${crt:-$cw}" -v c="$cc" -v loaded="$cw" 'BEGIN {
  if (w < 50 && c < 50) printf "ok (< 50 ms without waiting for a core)"; else printf "SLOW (>= 50 ms)";
  if (loaded >= 50) printf "; %s ms at this load", loaded }')
echo "check ${cold[*]:-(no cache in this build)}, 100 descriptions: wall median ${cw} ms (mean ${cmean}, max ${cmax}), CPU ${cc} ms; SCHED_FIFO wall ${crt:-n/a} ms"
echo "check, cache warm: wall median ${ww} ms, CPU ${wc} ms; SCHED_FIFO wall ${wrt:-n/a} ms"
echo "nix-instantiate --parse, same ${#files[@]} files: wall median ${pw} ms, CPU ${pc} ms; SCHED_FIFO wall ${prt:-n/a} ms"
echo "load ${load_before} before, ${load_after} after — $verdict"

# --- record ------------------------------------------------------------------
[ "$record" -eq 1 ] || exit 0
results=$root/benches/RESULTS.md
end='<!-- bench:check-wall:end -->'
grep -qF "$end" "$results" || { echo "no $end marker in $results" >&2; exit 1; }
row="| $(date -u +%Y-%m-%dT%H:%MZ) | $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?') | $(nproc) cores, load ${load_before} → ${load_after} | ${cw} (mean ${cmean}, max ${cmax}) | ${cc} | ${crt:-n/a} | ${ww} / ${wc} / ${wrt:-n/a} | ${pw} | ${pc} | ${prt:-n/a} | $(ratio "$cw" "$pw") / $(ratio "$cc" "$pc") / $(ratio "$crt" "$prt") | $verdict |"
python3 - "$results" "$end" "$row" <<'PY'
import sys
path, end, row = sys.argv[1:]
text = open(path).read()
open(path, "w").write(text.replace(end, row + "\n" + end, 1))
PY
echo "recorded in benches/RESULTS.md" >&2
