#!/usr/bin/env bash
# Writes a NixOS-style start script run-<node>-vm for a stand-in guest.
#
#   make-vm.sh --out DIR --node NAME --kind busybox|systemd
#              [--all-nodes "a b c"] [--vlans "1 2"] [--memory MiB] [--smp N]
#              [--store 9p|image] [--store-dir DIR] [--kernel vmlinux|bzimage]
#              [--qemu PATH] [--qemu-img PATH]
#              [--shell PATH] [--path DIRS]
#
# Like NixOS's start script, the script names its interpreter and QEMU by
# absolute path and puts its own tools (coreutils) in front of PATH, so it
# runs with an empty PATH: --shell (default /bin/bash), --qemu (default:
# qemu-system-x86_64 as found on PATH now), --path (default: the directory
# of `mkdir` as found now), --qemu-img (default: next to QEMU, else on PATH;
# it creates the qcow2 disk). The stand-in nixpkgs passes its store paths.
#
# Node numbers are the positions of the names in the sorted --all-nodes
# list (1-based), as nixos/lib/testing/network.nix numbers them; the node
# gets 192.168.<vlan>.<number>/24 and MAC 52:54:00:12:<vlan>:<number> (hex)
# on each VLAN (default: VLAN 1), and /etc/hosts names every node's first
# VLAN address. --store: the guest's /nix/store is the host's 9p share
# `nix-store` (default, as NixOS's mountHostNixStore) or an erofs store image
# (virtualisation.useNixStoreImage). --store-dir: the directory shared as
# `nix-store` with --store 9p (default: the guest cache's store); a test
# whose commands name store paths passes a directory holding the cache's
# store and the closure of those paths, its view of the host store.
# --kernel: the uncompressed ELF booted
# through its PVH note (default; about twice as fast to boot under TCG), or
# the distribution's bzImage as NixOS boots it (`-kernel …/kernel`, the
# in-kernel decompressor runs at each boot). The bzImage is what snapshot
# restores should be measured with: QEMU writes an ELF kernel's segments
# (ROM blobs) into guest RAM again at the reset before each snapshot load,
# which under TCG invalidates every translated block of the kernel one by
# one (docs/snapshots.md, "Restore time"). Reads the guest paths from
# tests/guest/cache/current/.
# Prints the script's path.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${NIXVM_GUEST_CACHE:-$here/cache}

out="" node="" kind="" all="" vlans="1" memory="" smp="" store=9p store_dir="" kernel=vmlinux qemu="" qemu_img="" shell=/bin/bash tools_path=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --node) node=$2; shift 2 ;;
    --kind) kind=$2; shift 2 ;;
    --all-nodes) all=$2; shift 2 ;;
    --vlans) vlans=$2; shift 2 ;;
    --memory) memory=$2; shift 2 ;;
    --smp) smp=$2; shift 2 ;;
    --store) store=$2; shift 2 ;;
    --store-dir) store_dir=$2; shift 2 ;;
    --kernel) kernel=$2; shift 2 ;;
    --qemu) qemu=$2; shift 2 ;;
    --qemu-img) qemu_img=$2; shift 2 ;;
    --shell) shell=$2; shift 2 ;;
    --path) tools_path=$2; shift 2 ;;
    *) echo "make-vm.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$out" ] && [ -n "$node" ] || { echo "make-vm.sh: --out and --node are required" >&2; exit 2; }
[ -n "$all" ] || all=$node
[ -n "$qemu" ] || qemu=$(command -v qemu-system-x86_64) || { echo "make-vm.sh: qemu-system-x86_64 is not on PATH (pass --qemu)" >&2; exit 1; }
[ -n "$tools_path" ] || tools_path=$(dirname "$(command -v mkdir)")
if [ -z "$qemu_img" ]; then
  if [ -x "$(dirname "$qemu")/qemu-img" ]; then qemu_img=$(dirname "$qemu")/qemu-img
  else qemu_img=$(command -v qemu-img) || { echo "make-vm.sh: qemu-img is not on PATH (pass --qemu-img; Debian: qemu-utils)" >&2; exit 1; }
  fi
fi
[ -f "$cache/current/guest.env" ] || { echo "make-vm.sh: no guests built; run tests/guest/build.sh" >&2; exit 1; }

sorted=$(printf '%s\n' $all | LC_ALL=C sort -u)
number=$(printf '%s\n' "$sorted" | grep -nx -- "$node" | cut -d: -f1)
[ -n "$number" ] || { echo "make-vm.sh: $node is not in --all-nodes" >&2; exit 2; }
[ "$number" -le 254 ] || { echo "make-vm.sh: more than 254 nodes" >&2; exit 2; }
first_vlan=${vlans%% *}

accel=$(cat "$cache/current/accel")
case "$kind" in
  busybox)
    : "${memory:=256}" "${smp:=1}"
    # No root file system on it: the disk holds the VM state of snapshots.
    disk_create="$qemu_img create -q -f qcow2 \"\$NIX_DISK_IMAGE\" 64M"
    params="console=ttyS0 panic=-1 no_timer_check quiet systemd.hostname=$node"
    ;;
  systemd)
    [ -e "$cache/current/root.ext4" ] || { echo "make-vm.sh: no systemd guest built (build.sh without --busybox-only)" >&2; exit 1; }
    : "${memory:=512}" "${smp:=2}"
    # The shared root image is the read-only backing file of each VM's disk.
    root_image=$(readlink -f "$cache/current/root.ext4")
    disk_create="$qemu_img create -q -f qcow2 -F raw -b $root_image \"\$NIX_DISK_IMAGE\""
    params="console=ttyS0 panic=-1 no_timer_check root=/dev/vda rw systemd.hostname=$node"
    ;;
  *) echo "make-vm.sh: --kind must be busybox or systemd" >&2; exit 2 ;;
esac
case "$store" in
  9p)
    store_share="  -virtfs local,path=$(readlink -f "${store_dir:-$cache/current/store}"),security_model=none,mount_tag=nix-store \\"
    store_prep=":" drives="" ;;
  image)
    store_share=""
    store_prep="cp $(readlink -f "$cache/current/store.erofs") \"\$TMPDIR\"/store.img"
    drives="  -drive file=\"\$TMPDIR\"/store.img,format=raw,id=drive2,if=none,index=2 \\
  -device virtio-blk-pci,bootindex=2,drive=drive2 \\" ;;
  *) echo "make-vm.sh: --store must be 9p or image" >&2; exit 2 ;;
esac
params="$params nixvm.store=$store"
case "$kernel" in
  vmlinux) kernel_image=$cache/current/vmlinux ;;
  bzimage)
    # build.sh keeps the kernel package's tree next to the extracted vmlinux.
    kernel_image=$(find "$(dirname "$(readlink -f "$cache/current/vmlinux")")/root/boot" -name 'vmlinuz-*' | head -n1)
    [ -n "$kernel_image" ] || { echo "make-vm.sh: no bzImage (vmlinuz-*) next to the guest's vmlinux" >&2; exit 1; } ;;
  *) echo "make-vm.sh: --kernel must be vmlinux or bzimage" >&2; exit 2 ;;
esac
case "$accel" in
  kvm) accel_args="-accel kvm -cpu host" ;;
  *) if [ "$smp" -gt 1 ]; then accel_args="-accel tcg,thread=multi"; else accel_args="-accel tcg"; fi ;;
esac

nics="" net="" k=0
for vlan in $vlans; do
  k=$((k + 1))
  mac=$(printf '52:54:00:12:%02x:%02x' "$vlan" "$number")
  nics+="  -device virtio-net-pci,netdev=vlan$k,mac=$mac,romfile= -netdev vde,id=vlan$k,sock=\"\$QEMU_VDE_SOCKET_$vlan\" \\"$'\n'
  net+="${net:+,}eth$k=192.168.$vlan.$number/24"
done
hosts="" i=0
for n in $sorted; do
  i=$((i + 1))
  hosts+="${hosts:+,}192.168.$first_vlan.$i=$n"
done
# Under TCG the guest's TSC calibration is unreliable on a loaded host (guest
# clocks ran up to 25% fast, so `timeout 5` fired after 4 s); the emulated
# HPET follows the host clock.
[ "$accel" = kvm ] || params="$params clocksource=hpet"
params="$params net.ifnames=0 nixvm.net=$net nixvm.hosts=$hosts"

mkdir -p "$out"
script=$out/run-$node-vm
NODE=$node NUMBER=$number KIND=$kind MEMORY=$memory SMP=$smp ACCEL=$accel_args \
NICS=${nics%$'\n'} DRIVES=$drives PARAMS=$params SHELL_BIN=$shell TOOLS_PATH=$tools_path \
DISK_CREATE=$disk_create STORE_PREP=$store_prep STORE_SHARE=$store_share STORE_KIND=$store \
QEMU_BIN=$qemu VMLINUX=$kernel_image INITRD=$cache/current/initrd.cpio.gz awk '
  # Values come through ENVIRON: awk -v would interpret their backslashes.
  function sub_all(s, k) { for (k in keys) s = replace(s, "@" k "@", ENVIRON[keys[k]]); return s }
  function replace(s, pat, val,   i, out) {
    out = ""
    while ((i = index(s, pat)) > 0) { out = out substr(s, 1, i - 1) val; s = substr(s, i + length(pat)) }
    return out s
  }
  BEGIN {
    split("NODE NUMBER KIND MEMORY SMP ACCEL VMLINUX INITRD DISK_CREATE STORE_PREP STORE_KIND", names, " ")
    for (n in names) keys[names[n]] = names[n]
    keys["KERNEL_PARAMS"] = "PARAMS"; keys["QEMU"] = "QEMU_BIN"; keys["SHELL"] = "SHELL_BIN"
    keys["PATH"] = "TOOLS_PATH"
  }
  /^@VLAN_NICS@$/ { if (ENVIRON["NICS"] != "") print ENVIRON["NICS"]; next }
  /^@DRIVES@$/ { if (ENVIRON["DRIVES"] != "") print ENVIRON["DRIVES"]; next }
  /^@STORE_SHARE@$/ { if (ENVIRON["STORE_SHARE"] != "") print ENVIRON["STORE_SHARE"]; next }
  { print sub_all($0) }' "$here/run-vm.sh.in" > "$script.tmp"
chmod 755 "$script.tmp"
mv "$script.tmp" "$script"
echo "$script"
