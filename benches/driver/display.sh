#!/usr/bin/env bash
# Benchmark of `waitUntilTtyMatches` on a real QEMU stand-in guest
# (tests/guest/), not a timed test: its latency and the processes it starts
# in the guest, against `waitForFile` in the same run as the reference.
#
# $WAITS times per run and per kind of wait, a step starts
#   (sleep 2; touch /tmp/xchg/condK; echo MARKK > /dev/tty1) &
# and the next step waits for it: `waitUntilTtyMatches` for MARKK on tty 1,
# or `waitForFile /tmp/xchg/condK` (the reference). The file lives on the 9p
# share, so its mtime is the host's clock just before the text appears, and
#   latency = time of the wait step's "(finished: …)" line on the driver's
#             stderr (timestamped on the host) - mtime(condK)
# (an upper bound for the tty wait: the text appears after the touch).
# Processes: bash's `read` of /proc/loadavg (no fork) records the guest's
# last PID before and after each wait; the difference counts every process
# the guest started in between (the background job's three, the driver's
# commands, the probes), so the two kinds of wait compare directly.
#
# Usage: benches/driver/display.sh [--runs R] [--waits W] [--kind busybox|systemd]
#        [--release | --driver PATH] [--no-append] [--keep]
# Appends a section to benches/RESULTS.md unless --no-append.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
runs=2 waits=3 kind=busybox driver=${NIXVM_DRIVER:-} append=1 keep=0 profile=debug
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --waits) waits=$2; shift 2 ;;
    --kind) kind=$2; shift 2 ;;
    --driver) driver=$2; shift 2 ;;
    --release) profile=release; shift ;;
    --no-append) append=0; shift ;;
    --keep) keep=1; shift ;;
    *) echo "usage: $0 [--runs R] [--waits W] [--kind busybox|systemd] [--release | --driver PATH] [--no-append] [--keep]" >&2; exit 2 ;;
  esac
done
for tool in jq python3 qemu-system-x86_64 vde_switch; do
  command -v "$tool" > /dev/null || { echo "display.sh: $tool is required" >&2; exit 1; }
done

. "$root/benches/driver/common.sh"
bench_driver
bench_workdir nvd

script=$(bash "$root/tests/guest/make-vm.sh" --out "$work/vms" --node machine --kind "$kind")
jq -n --arg s "$script" '{vms: {machine: {name: "machine", start_script: $s}}, vlans: [1],
  global_timeout: 600, enable_ssh_backdoor: false, test_script: "/dev/null"}' > "$work/config.json"

succeed() { jq -n --arg c "$1" '{node: "machine", timeout: 30, action: {succeed: {command: $c}}}'; }
pid() { succeed "read -r _ _ _ _ p < /proc/loadavg; echo $1 \$p >> /tmp/xchg/pids"; }
{
  succeed true
  for k in $(seq "$waits"); do
    for w in tty file; do
      pid "$w-before-$k"
      succeed "(sleep 2; touch /tmp/xchg/$w$k; echo MARK$w$k > /dev/tty1) > /dev/null 2>&1 &"
      if [ "$w" = tty ]; then
        jq -n --arg r "MARK$w$k" '{node: "machine", timeout: 30, action: {waitUntilTtyMatches: {tty: 1, regex: $r}}}'
      else
        jq -n --arg p "/tmp/xchg/$w$k" '{node: "machine", timeout: 30, action: {waitForFile: {path: $p}}}'
      fi
      pid "$w-after-$k"
    done
  done
} | jq -s '{version: 1, name: "tty-latency", nodes: ["machine"], steps: .}' > "$work/plan.json"

run() {
  local n=$1 dir=$work/run-$1
  mkdir -p "$dir/tmp" "$dir/out"
  TMPDIR=$dir/tmp XDG_RUNTIME_DIR=$dir/tmp "$driver" --config "$work/config.json" --plan "$work/plan.json" \
    -o "$dir/out" > "$dir/stdout" 2> >(while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done > "$dir/stderr") < /dev/null || {
    echo "display.sh: driver failed (run $n); see below" >&2
    tail -n 30 "$dir/stderr" >&2
    exit 1
  }
  sleep 0.2 # the stderr timestamper
  cp -a "$dir/tmp/vm-state-machine/xchg" "$dir/xchg"
}

load=$(cut -d" " -f1-3 /proc/loadavg)
for n in $(seq "$runs"); do
  echo "run $n/$runs" >&2
  run "$n"
done

results=$(python3 - "$work" "$runs" "$waits" << 'EOF'
import os, re, statistics, sys
work, runs, waits = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lat = {"tty": [], "file": []}
procs = {"tty": [], "file": []}
for n in range(1, runs + 1):
    d = f"{work}/run-{n}"
    finished = {}
    for line in open(f"{d}/stderr", errors="replace"):
        m = re.match(r"(\d+[.,]\d+) .*\(finished: waiting for (?:MARK|file '/tmp/xchg/)(tty|file)(\d+)", line)
        if m:
            finished[(m.group(2), int(m.group(3)))] = float(m.group(1).replace(",", "."))
    pids = {}
    for line in open(f"{d}/xchg/pids"):
        name, p = line.split()
        pids[name] = int(p)
    for w in ("tty", "file"):
        for k in range(1, waits + 1):
            lat[w].append(finished[(w, k)] - os.stat(f"{d}/xchg/{w}{k}").st_mtime)
            procs[w].append(pids[f"{w}-after-{k}"] - pids[f"{w}-before-{k}"])
rows = ["| wait | latency s (median) | latency s (max) | guest processes per wait (median) |", "|---|---|---|---|"]
for w, name in (("tty", "`waitUntilTtyMatches` (tty 1)"), ("file", "`waitForFile` (reference)")):
    rows.append(f"| {name} | {statistics.median(lat[w]):.3f} | {max(lat[w]):.3f} | {statistics.median(procs[w]):.0f} |")
print("\n".join(rows))
print()
ratio = statistics.median(lat["tty"]) / statistics.median(lat["file"])
print(f"RATIO tty/file latency (medians, {len(lat['tty'])} waits each): {ratio:.2f}; "
      f"extra guest processes per tty wait: {statistics.median(procs['tty']) - statistics.median(procs['file']):.0f}")
EOF
)
echo "$results"

if [ "$append" -eq 1 ]; then
  machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), accel $(cat "$root/tests/guest/cache/current/accel")"
  {
    echo
    echo "## waitUntilTtyMatches latency and guest processes ($(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    echo "\`benches/driver/display.sh --runs $runs --waits $waits --kind $kind\`; machine: $machine;"
    echo "load before the runs: $load; commit: $(git -C "$root" rev-parse --short HEAD); driver: \`${driver#"$root"/}\`."
    echo "Latency = host time of the wait step's \"(finished: …)\" line − mtime of a file the guest touches just"
    echo "before the text appears (9p share, host clock); processes = guest PIDs used between a step before"
    echo "and a step after the wait (includes the background job's 3 and the driver's commands: compare rows)."
    echo
    echo "$results"
  } >> "$root/benches/RESULTS.md"
  echo "appended to benches/RESULTS.md" >&2
fi
