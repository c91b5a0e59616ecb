#!/usr/bin/env bash
# Benchmark of nixvm-driver's own cost on a real QEMU stand-in guest
# (tests/guest/), not a timed test:
#
#  * overhead: the same plan (boot + N small commands) is run R times;
#      overhead = driver wall time - guest boot - guest-side command time
#    where guest boot is the guest's uptime at the first command and the
#    command time is what each command measures itself (guest clock). The
#    overhead thus contains QEMU/firmware start before the kernel, VLAN
#    switch start, the protocol round trips and the driver's own work.
#  * wait latency: a step starts `(sleep 3; touch /tmp/xchg/cond) &`, the
#    next step is waitForFile /tmp/xchg/cond, and the step after it creates
#    /tmp/xchg/after. Both files live on the 9p share, so their mtimes come
#    from the host clock; latency = mtime(after) - mtime(cond) is an upper
#    bound of how long the wait took to notice (it includes starting the
#    next command); the round trip of a trivial command is shown next to it.
#
# Usage: benches/driver/overhead.sh [--runs R] [--commands N] [--kind busybox|systemd]
#        [--driver PATH] [--no-append]
# Appends a section to benches/RESULTS.md unless --no-append.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
runs=3 commands=10 kind=busybox driver=${NIXVM_DRIVER:-} append=1
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --commands) commands=$2; shift 2 ;;
    --kind) kind=$2; shift 2 ;;
    --driver) driver=$2; shift 2 ;;
    --no-append) append=0; shift ;;
    *) echo "usage: $0 [--runs R] [--commands N] [--kind busybox|systemd] [--driver PATH] [--no-append]" >&2; exit 2 ;;
  esac
done
for tool in jq python3 qemu-system-x86_64 vde_switch; do
  command -v "$tool" > /dev/null || { echo "overhead.sh: $tool is required" >&2; exit 1; }
done

if [ -z "$driver" ]; then
  echo "building nixvm-driver (debug profile; pass --driver for another build)" >&2
  (cd "$root" && cargo build --quiet --bin nixvm-driver)
  driver=$root/target/debug/nixvm-driver
fi
bash "$root/tests/guest/build.sh" > /dev/null

work=$(mktemp -d /tmp/nvb-XXXXXX)
cleanup() {
  # Kill anything still mentioning the work dir (VMs of a crashed run).
  for p in /proc/[0-9]*; do
    if tr '\0' ' ' < "$p/cmdline" 2> /dev/null | grep -q -- "$work"; then kill -9 "${p#/proc/}" 2> /dev/null || true; fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

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
  succeed "(sleep 3; touch /tmp/xchg/cond) > /dev/null 2>&1 &" 30
  jq -n '{node: "machine", timeout: 30, action: {waitForFile: {path: "/tmp/xchg/cond"}}}'
  succeed "touch /tmp/xchg/after" 30
} | jq -s '{version: 1, name: "wait-latency", nodes: ["machine"], steps: .}' > "$work/latency.json"

# run PLAN N: runs the driver, leaves its report and the xchg dir in $work/PLAN-N.
run() {
  local plan=$1 n=$2 dir=$work/$1-$2 start end
  mkdir -p "$dir/tmp"
  start=$(date +%s.%N)
  TMPDIR=$dir/tmp XDG_RUNTIME_DIR=$dir/tmp "$driver" --config "$work/config.json" --plan "$work/$plan.json" \
    -o "$dir/out" > "$dir/stdout" 2> "$dir/stderr" < /dev/null || {
    echo "overhead.sh: driver failed on $plan (run $n); see below" >&2
    tail -n 30 "$dir/stderr" >&2
    exit 1
  }
  end=$(date +%s.%N)
  echo "$start $end" > "$dir/wall"
  cp -r "$dir/tmp/vm-state-machine/xchg" "$dir/xchg"
}

for n in $(seq "$runs"); do
  echo "run $n/$runs" >&2
  run overhead "$n"
  run latency "$n"
done

results=$(python3 - "$work" "$runs" << 'EOF'
import json, os, statistics, sys
work, runs = sys.argv[1], int(sys.argv[2])
rows = []
for n in range(1, runs + 1):
    d = f"{work}/overhead-{n}"
    start, end = map(float, open(f"{d}/wall").read().split())
    wall = end - start
    boot, guest = None, 0.0
    for line in open(f"{d}/xchg/t"):
        f = line.split()
        if f[0] == "boot":
            boot = float(f[1])
        elif f[0] == "cmd":
            guest += float(f[2]) - float(f[1])
    report = json.load(open(f"{d}/out/report.json"))
    steps = report["steps"]
    trivial = [s["durationSecs"] for s in steps[-5:]]  # the five `true` steps
    ld = f"{work}/latency-{n}"
    cond = os.stat(f"{ld}/xchg/cond").st_mtime
    after = os.stat(f"{ld}/xchg/after").st_mtime
    lrep = json.load(open(f"{ld}/out/report.json"))
    rows.append(dict(wall=wall, boot=boot, guest=guest, overhead=wall - boot - guest,
                     per_cmd=(wall - boot - guest) / len(steps), trivial=statistics.median(trivial),
                     latency=after - cond, wait_step=lrep["steps"][2]["durationSecs"]))
med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
out = ["| run | wall s | guest boot s | guest cmd s | overhead s | overhead/step s | trivial cmd round trip s | wait latency s (upper bound) |",
       "|---|---|---|---|---|---|---|---|"]
for i, r in enumerate(rows + [med], 1):
    name = str(i) if i <= len(rows) else "median"
    out.append(f"| {name} | {r['wall']:.2f} | {r['boot']:.2f} | {r['guest']:.2f} | {r['overhead']:.2f} | "
               f"{r['per_cmd']:.3f} | {r['trivial']:.3f} | {r['latency']:.3f} |")
print("\n".join(out))
print()
print(f"median wait latency {med['latency']:.3f} s ({'within' if med['latency'] <= 0.2 else 'NOT within'} 0.2 s)")
EOF
)
echo "$results"

if [ "$append" -eq 1 ]; then
  machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r), accel $(cat "$root/tests/guest/cache/current/accel")"
  {
    echo
    echo "## nixvm-driver overhead and wait latency ($(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    echo "\`benches/driver/overhead.sh --runs $runs --commands $commands --kind $kind\`; machine: $machine;"
    echo "driver: \`${driver#"$root"/}\`. Overhead = wall − guest boot (guest uptime at the first command)"
    echo "− guest-side command time; it includes QEMU/firmware start before the kernel, the VLAN switch and"
    echo "$((commands + 6)) protocol round trips. Wait latency = host mtime of a file created by the step after"
    echo "\`waitForFile\` − host mtime of the awaited file (9p share), an upper bound."
    echo
    echo "$results"
  } >> "$root/benches/RESULTS.md"
  echo "appended to benches/RESULTS.md" >&2
fi
