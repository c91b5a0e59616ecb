#!/usr/bin/env bash
# Benchmark of nixvm-driver's own cost on a real QEMU stand-in guest
# (tests/guest/), not a timed test:
#
#  * overhead: the same plan (boot + N small commands) is run R times;
#      overhead = driver wall time - boot - guest-side command time
#    where boot is QEMU spawn to backdoor shell (the driver's stock
#    "connecting took" log line; the guest's uptime at its first command is
#    shown next to it) and the command time is what each command measures
#    itself (guest clock). The overhead thus contains driver start, VLAN
#    switch, the protocol round trips and cleanup; the driver's own CPU time
#    is sampled from /proc.
#  * wait latency (the issue's "a wait step finishes within 0.2 s of its
#    condition becoming true"): $WAITS times per run, a step starts
#    `(sleep 2; touch /tmp/xchg/condK) &` and the next step is waitForFile
#    /tmp/xchg/condK. The file lives on the 9p share, so its mtime is the
#    host's clock at the moment the condition became true; the driver's
#    stderr is timestamped line by line on the host, and
#      latency = time of the wait step's "(finished: …condK…)" line - mtime(condK).
#    A step after each wait creates /tmp/xchg/afterK; mtime(afterK) -
#    mtime(condK) is the older, looser bound (it includes the next command).
#
# Usage: benches/driver/overhead.sh [--runs R] [--commands N] [--waits W] [--kind busybox|systemd]
#        [--release | --driver PATH] [--no-append] [--keep]
# (--release builds and measures the optimised driver, as in benches/RESULTS.md)
# Appends a section to benches/RESULTS.md unless --no-append.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
runs=3 commands=10 waits=3 kind=busybox driver=${NIXVM_DRIVER:-} append=1 keep=0 profile=debug
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --commands) commands=$2; shift 2 ;;
    --kind) kind=$2; shift 2 ;;
    --waits) waits=$2; shift 2 ;;
    --driver) driver=$2; shift 2 ;;
    --release) profile=release; shift ;;
    --no-append) append=0; shift ;;
    --keep) keep=1; shift ;;
    *) echo "usage: $0 [--runs R] [--commands N] [--waits W] [--kind busybox|systemd] [--release | --driver PATH] [--no-append] [--keep]" >&2; exit 2 ;;
  esac
done
for tool in jq python3 qemu-system-x86_64 vde_switch; do
  command -v "$tool" > /dev/null || { echo "overhead.sh: $tool is required" >&2; exit 1; }
done

. "$root/benches/driver/common.sh"
bench_driver
bench_workdir nvb

script=$(bash "$root/tests/guest/make-vm.sh" --out "$work/vms" --node machine --kind "$kind")
jq -n --arg s "$script" '{vms: {machine: {name: "machine", start_script: $s}}, vlans: [1],
  global_timeout: 600, enable_ssh_backdoor: false, test_script: "/dev/null"}' > "$work/config.json"

# Guest-side timestamps (seconds of guest uptime) go to the shared xchg dir.
up='$(cut -d" " -f1 /proc/uptime)'
succeed() { jq -n --arg c "$1" --argjson t "${2:-120}" '{node: "machine", timeout: $t, action: {succeed: {command: $c}}}'; }
{
  succeed "echo boot $up >> /tmp/xchg/t"
  for _ in $(seq "$commands"); do
    succeed "a=$up; sleep 0.2; echo cmd \$a $up >> /tmp/xchg/t" 30
  done
  for _ in $(seq 5); do succeed true 30; done
} | jq -s '{version: 1, name: "overhead", nodes: ["machine"], steps: .}' > "$work/overhead.json"
{
  succeed "echo boot $up >> /tmp/xchg/t"
  for k in $(seq "$waits"); do
    succeed "(sleep 2; touch /tmp/xchg/cond$k) > /dev/null 2>&1 &" 30
    jq -n --arg p "/tmp/xchg/cond$k" '{node: "machine", timeout: 30, action: {waitForFile: {path: $p}}}'
    succeed "touch /tmp/xchg/after$k" 30
  done
} | jq -s '{version: 1, name: "wait-latency", nodes: ["machine"], steps: .}' > "$work/latency.json"

# run PLAN N: runs the driver, leaves its report and the xchg dir in $work/PLAN-N.
run() {
  local plan=$1 n=$2 dir=$work/$1-$2 start end
  mkdir -p "$dir/tmp" "$dir/out"
  start=$(date +%s.%N)
  # The driver's own CPU time (utime + stime of its process, QEMU and the
  # switch excluded), sampled from /proc every 0.1 s until it exits.
  TMPDIR=$dir/tmp XDG_RUNTIME_DIR=$dir/tmp "$driver" --config "$work/config.json" --plan "$work/$plan.json" \
    -o "$dir/out" > "$dir/stdout" 2> >(while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done > "$dir/stderr") < /dev/null &
  local pid=$! ticks=0 st
  while kill -0 "$pid" 2> /dev/null; do
    if read -r -a st < "/proc/$pid/stat" 2> /dev/null && [ "${st[2]}" != Z ]; then ticks=$((st[13] + st[14])); fi
    sleep 0.1
  done
  wait "$pid" || {
    echo "overhead.sh: driver failed on $plan (run $n); see below" >&2
    tail -n 30 "$dir/stderr" >&2
    exit 1
  }
  echo "$ticks $(getconf CLK_TCK)" > "$dir/cpu"
  end=$(date +%s.%N)
  echo "$start $end" > "$dir/wall"
  cp -a "$dir/tmp/vm-state-machine/xchg" "$dir/xchg"
}

load=$(cut -d" " -f1-3 /proc/loadavg)
for n in $(seq "$runs"); do
  echo "run $n/$runs" >&2
  run overhead "$n"
  run latency "$n"
done

results=$(python3 - "$work" "$runs" "$waits" << 'EOF'
import json, os, re, statistics, sys
work, runs, waits = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows, latencies = [], []
for n in range(1, runs + 1):
    d = f"{work}/overhead-{n}"
    start, end = map(float, open(f"{d}/wall").read().split())
    wall = end - start
    boot_guest, guest = None, 0.0
    for line in open(f"{d}/xchg/t"):
        f = line.split()
        if f[0] == "boot":
            boot_guest = float(f[1])
        elif f[0] == "cmd":
            guest += float(f[2]) - float(f[1])
    # Host-side boot (QEMU spawn to backdoor marker), from the stock log line.
    m = re.search(r"connecting took ([0-9.]+) seconds", open(f"{d}/stderr", errors="replace").read())
    boot = float(m.group(1)) if m else boot_guest
    steps = json.load(open(f"{d}/out/report.json"))["steps"]
    steps_sum = sum(s["durationSecs"] for s in steps)
    ticks, hz = map(int, open(f"{d}/cpu").read().split())
    ld = f"{work}/latency-{n}"
    finished = {}
    for line in open(f"{ld}/stderr", errors="replace"):
        m = re.match(r"(\d+[.,]\d+) .*\(finished: waiting for file '/tmp/xchg/cond(\d+)'", line)
        if m:
            finished[int(m.group(2))] = float(m.group(1).replace(",", "."))
    lat, bound = [], []
    for k in range(1, waits + 1):
        cond = os.stat(f"{ld}/xchg/cond{k}").st_mtime
        bound.append(os.stat(f"{ld}/xchg/after{k}").st_mtime - cond)
        lat.append(finished[k] - cond)
    latencies += lat
    rows.append(dict(
        wall=wall, boot=boot, boot_guest=boot_guest, guest=guest,
        overhead=wall - boot - guest,
        protocol=(steps_sum - guest) / len(steps),
        rest=wall - boot - steps_sum,
        cpu=ticks / hz,
        trivial=statistics.median(s["durationSecs"] for s in steps[-5:]),
        latency=statistics.median(lat),
        latency_max=max(lat),
        bound=statistics.median(bound),
    ))
med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
cols = [("wall", "wall s"), ("boot", "boot s (spawn→shell)"), ("boot_guest", "guest uptime at 1st cmd s"),
        ("guest", "guest cmd s"), ("overhead", "overhead s"), ("protocol", "per-step protocol s"),
        ("rest", "setup+teardown s"), ("cpu", "driver CPU s"), ("trivial", "`true` round trip s"),
        ("latency", f"wait latency s (median of {waits})"), ("latency_max", f"wait latency s (max of {waits})"),
        ("bound", "next command − condition s (median)")]
out = ["| run | " + " | ".join(c[1] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
for i, r in enumerate(rows + [med], 1):
    name = str(i) if i <= len(rows) else "**median**"
    out.append(f"| {name} | " + " | ".join(f"{r[k]:.3f}" for k, _ in cols) + " |")
print("\n".join(out))
print()
within = sum(l < 0.2 for l in latencies)
print(f"WAIT LATENCY (waitForFile step end − condition, {len(latencies)} waits): "
      f"median {statistics.median(latencies):.3f} s, max {max(latencies):.3f} s, "
      f"min {min(latencies):.3f} s; {within}/{len(latencies)} within 0.2 s")
EOF
)
echo "$results"

if [ "$append" -eq 1 ]; then
  machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), accel $(cat "$root/tests/guest/cache/current/accel")"
  {
    echo
    echo "## nixvm-driver overhead and wait latency ($(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    echo "\`benches/driver/overhead.sh --runs $runs --commands $commands --waits $waits --kind $kind\`; machine: $machine;"
    echo "load before the runs: $load; commit: $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD -- src/driver || echo " + uncommitted src/driver changes");"
    echo "driver: \`${driver#"$root"/}\`. Columns: boot = QEMU spawn to backdoor shell (the driver's"
    echo "\"connecting took\" line); guest cmd = time the $commands \`sleep 0.2\` commands measured themselves;"
    echo "overhead = wall − boot − guest cmd (driver start, VLAN switch, $((commands + 6)) protocol round trips"
    echo "including the guest's \`bash -c … | base64\` under TCG, cleanup); per-step protocol = (Σ step"
    echo "durations − guest cmd) / steps; driver CPU = the driver process's own utime+stime (QEMU excluded)."
    echo "Wait latency = host time of the \`waitForFile\` step's \"(finished: …)\" line on the driver's stderr −"
    echo "mtime of the awaited file (created on the 9p share, so host clock), $waits waits per run; \"next"
    echo "command − condition\" is the older, looser bound (mtime of a file the next step creates)."
    echo
    echo "$results"
  } >> "$root/benches/RESULTS.md"
  echo "appended to benches/RESULTS.md" >&2
fi
