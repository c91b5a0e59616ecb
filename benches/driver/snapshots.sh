#!/usr/bin/env bash
# Benchmark of snapshot restores on the systemd stand-in guest (tests/guest/,
# store as an image, qcow2 root disk, 9p shared/xchg mounted as in NixOS),
# not a timed test:
#
#  * reset time: one run boots the node, waits for syshc.service, takes a
#    snapshot, then restores it R times (each restore step ends when the
#    shell answered with the clock set and the shares mounted again: the
#    "restore to a responsive shell" time), then runs a `reboot` step
#    (ctrl-alt-delete, QEMU restarts, the new backdoor answers). Compared
#    with the same run's boot (QEMU spawn to backdoor shell, the driver's
#    "connecting took" line). Step times come from report.json.
#  * five subtests: the same five subtests (each leaves a file in /etc and
#    stops syshc, and checks that it sees nothing of the others) run once as
#    one test with `isolate` (boot once, restore before subtests 2–5), and
#    as five separate driver runs (five boots). Wall time of the driver runs.
#
# The guest boots the distribution's bzImage, as NixOS does (`--kernel
# vmlinux`: the stand-in's faster PVH boot of the uncompressed ELF, whose
# snapshot loads are slower under TCG; docs/snapshots.md, "Restore time").
#
# Usage: benches/driver/snapshots.sh [--restores R] [--kernel bzimage|vmlinux]
#          [--release | --driver PATH] [--no-append] [--keep]
# Prints the table; appends it to benches/RESULTS.md unless --no-append.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
restores=5 kernel=bzimage driver=${NIXVM_DRIVER:-} append=1 keep=0 profile=debug
while [ $# -gt 0 ]; do
  case "$1" in
    --restores) restores=$2; shift 2 ;;
    --kernel) kernel=$2; shift 2 ;;
    --driver) driver=$2; shift 2 ;;
    --release) profile=release; shift ;;
    --no-append) append=0; shift ;;
    --keep) keep=1; shift ;;
    *) echo "usage: $0 [--restores R] [--kernel bzimage|vmlinux] [--release | --driver PATH] [--no-append] [--keep]" >&2; exit 2 ;;
  esac
done
for tool in jq qemu-system-x86_64 qemu-img vde_switch; do
  command -v "$tool" > /dev/null || { echo "snapshots.sh: $tool is required" >&2; exit 1; }
done
. "$root/benches/driver/common.sh"
bench_driver
bench_workdir nvs

script=$(bash "$root/tests/guest/make-vm.sh" --out "$work/vms" --node machine --kind systemd --store image --kernel "$kernel")
jq -n --arg s "$script" '{vms: {machine: {name: "machine", start_script: $s}}, vlans: [1],
  global_timeout: 1200, enable_ssh_backdoor: false, test_script: "/dev/null"}' > "$work/config.json"

step() { jq -n --argjson a "$1" --argjson t "${2:-120}" '{node: "machine", timeout: $t, action: $a}'; }
all() { jq -n --argjson a "$1" '{timeout: 300, action: $a}'; }
succeed() { step "$(jq -n --arg c "$1" '{succeed: {command: $c}}')" "${2:-60}"; }
boot_wait() { step '{"waitForUnit": {"unit": "syshc.service"}}' 600; }
work_of() { # the subtest body: leaves traces, checks it sees none of the others'
  succeed "test -z \"\$(ls /etc/nixvm-bench-* 2>/dev/null)\" && systemctl is-active syshc.service"
  succeed "touch /etc/nixvm-bench-$1 /tmp/shared/bench-$1 && systemctl stop syshc.service"
}
subtest() { jq -s --arg t "$1" '{action: {subtest: {title: $t, steps: .}}}'; }

{
  boot_wait
  all '{"snapshot": {"name": "clean"}}'
  for _ in $(seq "$restores"); do
    all '{"restore": {"name": "clean"}}'
    succeed true 30
  done
  step '"reboot"' 600
  succeed true 30
} | jq -s '{version: 1, name: "reset", nodes: ["machine"], steps: .}' > "$work/reset.json"
{
  boot_wait
  all '{"snapshot": {"name": "isolate"}}'
  for i in 1 2 3 4 5; do
    [ "$i" -gt 1 ] && all '{"restore": {"name": "isolate"}}'
    work_of "$i" | subtest "subtest $i"
  done
} | jq -s '{version: 1, name: "isolated", nodes: ["machine"], steps: .}' > "$work/isolated.json"
for i in 1 2 3 4 5; do
  { boot_wait; work_of "$i" | subtest "subtest $i"; } |
    jq -s '{version: 1, name: "separate", nodes: ["machine"], steps: .}' > "$work/separate-$i.json"
done

# run NAME: one driver run of $work/NAME.json; prints its wall time.
run() {
  local dir=$work/$1 start end
  mkdir -p "$dir/tmp" "$dir/out"
  start=$(date +%s.%N)
  TMPDIR=$dir/tmp XDG_RUNTIME_DIR=$dir/tmp "$driver" --config "$work/config.json" --plan "$work/$1.json" \
    -o "$dir/out" > "$dir/stdout" 2> "$dir/stderr" < /dev/null || {
    echo "snapshots.sh: driver failed on $1; see below" >&2
    tail -n 40 "$dir/stderr" >&2
    exit 1
  }
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}
boot_of() { sed -n 's/.*(connecting took \([0-9.]*\) seconds).*/\1/p' "$work/$1/stderr" | head -n1; }
steps_of() { # steps_of RUN DESCRIPTION-PREFIX: durations of matching leaf steps
  jq -r --arg d "$2" '[.. | objects | select(has("description") and (.description | startswith($d))) | .durationSecs] | .[]' \
    "$work/$1/out/report.json"
}
stats() { # min median max of numbers on stdin
  sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "- - -"; exit } printf "%.2f %.2f %.2f\n", v[1], v[int((NR + 1) / 2)], v[NR] }'
}

load_before=$(cut -d" " -f1-3 /proc/loadavg)
echo "reset time run" >&2
reset_wall=$(run reset)
echo "isolated run" >&2
isolated_wall=$(run isolated)
separate_wall=0
for i in 1 2 3 4 5; do
  echo "separate run $i/5" >&2
  w=$(run "separate-$i")
  separate_wall=$(echo "$separate_wall + $w" | bc)
done
load_after=$(cut -d" " -f1-3 /proc/loadavg)

boot=$(boot_of reset)
read -r rmin rmed rmax < <(steps_of reset "restoring snapshot" | stats)
save=$(steps_of reset "saving snapshot" | head -n1)
reboot=$(steps_of reset "rebooting" | head -n1)
read -r imin imed imax < <(steps_of isolated "restoring snapshot" | stats)
boots=$(for i in 1 2 3 4 5; do boot_of "separate-$i"; done | stats)
ratio() { echo "scale=1; $1 / $2" | bc; }

report=$(cat <<EOF
## Snapshot restores vs boot, isolated subtests vs separate checks ($(date -u +%Y-%m-%dT%H:%MZ))

\`benches/driver/snapshots.sh --restores $restores --kernel $kernel\` ($profile driver, commit $(git -C "$root" rev-parse --short HEAD)),
systemd stand-in guest (512 MiB, 2 vCPUs, TCG, kernel booted as $kernel), store as an erofs image (useNixStoreImage), qcow2 root
disk, \`shared\` and \`xchg\` mounted over 9p as in NixOS.
Machine: $(nproc) cores, $(sed -n 's/^model name\t: //p' /proc/cpuinfo | head -n1), $(free -g | awk '/Mem:/ {print $2}') GiB;
shared with other engineers' builds and VMs: load average $load_before before, $load_after after.

| what | seconds |
|---|---|
| boot (QEMU spawn to backdoor shell) | $boot |
| save (\`snapshot\` step: unmount shares, save, remount) | $save |
| restore to a responsive shell (\`restore\` step), min / median / max of $restores | $rmin / $rmed / $rmax |
| \`reboot\` step (back to a responsive shell) | $reboot |
| boot / median restore | $(ratio "$boot" "$rmed")× |
| reboot / median restore | $(ratio "$reboot" "$rmed")× |
| five subtests, one run with \`isolate\` (wall) | $isolated_wall |
| the same five as separate runs (wall, sum) | $separate_wall |
| separate / isolated | $(ratio "$separate_wall" "$isolated_wall")× |
| restores in the isolated run, min / median / max of 4 | $imin / $imed / $imax |
| boots of the separate runs, min / median / max | $boots |
EOF
)
echo "$report"
if [ "$append" -eq 1 ]; then
  printf '\n%s\n' "$report" >> "$root/benches/RESULTS.md"
fi
