#!/usr/bin/env bash
# Builds the stand-in QEMU guests for nixvm-driver's end-to-end tests from
# Debian packages (no Nix, no network other than the Debian mirror):
#
#   cache/current/vmlinux          uncompressed kernel, booted directly (PVH)
#   cache/current/initrd.cpio.gz   busybox + bash initramfs; its /init is the
#                                  fast "busybox guest" (the backdoor shell runs
#                                  in the initramfs) or, given root=, stage 1 of
#                                  the systemd guest
#   cache/current/root.ext4        debootstrap'ed bookworm with systemd,
#                                  configured like NixOS test instrumentation;
#                                  the backing file of each VM's qcow2 disk
#   cache/current/store/           the guests' "Nix store": shared over 9p
#                                  (tag nix-store) as NixOS shares the host's
#   cache/current/store.erofs      the same as an erofs image, the stand-in
#                                  for virtualisation.useNixStoreImage
#   cache/current/accel            "tcg" or "kvm" (probed, see probe_accel)
#   cache/current/guest.env        the paths above as KEY=VALUE lines
#
# Usage: tests/guest/build.sh [--busybox-only] [--refresh-kernel]
# Prints guest.env on stdout; progress goes to stderr.
#
# Everything is cached in cache/ keyed by a hash of the inputs (this script,
# the files next to it, package versions), so a second run is a no-op that
# takes well under a second. The kernel version is pinned at the first build
# (cache/kernel.pin) so the no-op path never asks apt; --refresh-kernel
# re-resolves it. Measured on the project's 2-core host: cold build 42-64 s
# (mostly debootstrap), ~860 MB in cache/ (kernel tree 436 MB, debootstrap
# tree 191 MB, root.ext4 1 GiB sparse / 227 MB allocated); see README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${NIXVM_GUEST_CACHE:-$here/cache}
suite=bookworm
mirror=${NIXVM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Packages of the systemd guest (netcat-openbsd: the stock driver's
# wait_for_open_port runs `nc -z`, which busybox nc lacks).
include=systemd,systemd-sysv,udev,iproute2,iputils-ping,curl,kmod,procps,netcat-openbsd
# Modules the guests need, loaded by /init in dependency order.
modules=(virtio_pci virtio_console virtio_net virtio_rng virtio_blk 9pnet_virtio 9p crc32c_generic ext4 erofs overlay)
# The guests run their backdoor from the store, as NixOS does, so the store
# is busy while the guest runs (it cannot be unmounted for a snapshot).
store_backdoor=/nix/store/3zq1v1nzk3w5cdbxw2m1jj8sm0q4yx6c-nixvm-backdoor/bin/nixvm-backdoor

busybox_only=0
refresh_kernel=0
for arg in "$@"; do
  case "$arg" in
    --busybox-only) busybox_only=1 ;;
    --refresh-kernel) refresh_kernel=1 ;;
    *) echo "usage: $0 [--busybox-only] [--refresh-kernel]" >&2; exit 2 ;;
  esac
done

log() { printf 'guest-build: %s\n' "$*" >&2; }
die() { printf 'guest-build: error: %s\n' "$*" >&2; exit 1; }

mkdir -p "$cache"
# One build at a time (parallel test processes call this script).
exec 9>"$cache/.lock"
flock 9

# --- tools -----------------------------------------------------------------
ensure_tools() {
  local -A need=(
    [qemu-system-x86_64]=qemu-system-x86 [debootstrap]=debootstrap [cpio]=cpio
    [depmod]=kmod [xz]=xz-utils [mkfs.ext4]=e2fsprogs [vde_switch]=vde2
    [nc]=netcat-openbsd [curl]=curl [flock]=util-linux [dpkg-deb]=dpkg
    [qemu-img]=qemu-utils [mkfs.erofs]=erofs-utils
  )
  local missing=() cmd
  for cmd in "${!need[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
  done
  if ! file_is_static /bin/busybox; then missing+=(busybox-static); fi
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    die "missing packages: ${missing[*]} (run as root or: sudo apt-get install --no-install-recommends ${missing[*]})"
  fi
  log "installing missing packages: ${missing[*]}"
  # A fresh machine (or container) may have empty package lists.
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# busybox-static's binary must not need a dynamic loader (it is copied into
# the guests as is).
file_is_static() {
  [ -x "$1" ] && ! LC_ALL=C ldd "$1" >/dev/null 2>&1
}

hash_of() { sha256sum | cut -c1-16; }
pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo none; }

# --- kernel ------------------------------------------------------------------
# The kernel package (e.g. linux-image-6.1.0-56-amd64) is what the
# linux-image-amd64 metapackage points at; pinned in cache/kernel.pin.
kernel_pin() {
  local pin=$cache/kernel.pin
  if [ -n "${NIXVM_GUEST_KERNEL:-}" ]; then
    echo "$NIXVM_GUEST_KERNEL"
    return
  fi
  if [ "$refresh_kernel" -eq 1 ] || [ ! -s "$pin" ]; then
    local pkg
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9][^ ]*\).*/\1/p' | head -n1)
    if [ -z "$pkg" ]; then
      log "apt-cache knows no linux-image-amd64; running apt-get update"
      apt-get update -qq >&2
      pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9][^ ]*\).*/\1/p' | head -n1)
    fi
    [ -n "$pkg" ] || die "cannot resolve linux-image-amd64 with apt-cache"
    local ver
    ver=$(apt-cache policy "$pkg" | sed -n 's/ *Candidate: //p')
    echo "$pkg $ver" > "$pin"
  fi
  cat "$pin"
}

# Extracts the uncompressed ELF kernel from a bzImage: the payload is xz,
# found by its magic; the first offset that decompresses to an ELF wins.
# QEMU boots the ELF directly through its PVH note, skipping SeaBIOS and the
# in-kernel decompressor (about twice as fast under TCG).
extract_vmlinux() {
  local bz=$1 out=$2 off
  for off in $(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$bz" | cut -d: -f1); do
    tail -c +$((off + 1)) "$bz" | xz -dc 2>/dev/null > "$out.tmp" || true
    if [ "$(head -c 4 "$out.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
      mv "$out.tmp" "$out"
      return 0
    fi
  done
  rm -f "$out.tmp"
  die "no xz-compressed ELF found in $bz"
}

build_kernel() {
  local pkg=$1 ver=$2
  kdir=$cache/kernel-$pkg-$ver
  kver=${pkg#linux-image-}
  [ -e "$kdir/.done" ] && return 0
  log "kernel: downloading $pkg $ver"
  rm -rf "$kdir" && mkdir -p "$kdir/dl"
  (cd "$kdir/dl" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$ver" >&2)
  dpkg-deb -x "$kdir"/dl/*.deb "$kdir/root"
  rm -rf "$kdir/dl"
  # The .deb ships no modules.dep.
  depmod -b "$kdir/root" "$kver"
  log "kernel: extracting vmlinux"
  extract_vmlinux "$kdir/root/boot/vmlinuz-$kver" "$kdir/vmlinux"
  touch "$kdir/.done"
}

# Prints the module files for "${modules[@]}" in load order (dependencies
# first), resolved through modules.dep; built-in modules are skipped.
module_closure() {
  local mdir=$kdir/root/lib/modules/$kver
  local -A dep=() seen=()
  local line path name
  while IFS= read -r line; do
    path=${line%%:*}
    name=${path##*/}; name=${name%.ko*}; name=${name//-/_}
    dep[$name]="$path:${line#*:}"
  done < "$mdir/modules.dep"
  visit() {
    local m=${1//-/_} entry d dn
    [ -n "${seen[$m]:-}" ] && return 0
    seen[$m]=1
    entry=${dep[$m]:-}
    if [ -z "$entry" ]; then
      grep -q "/$1.ko" "$mdir/modules.builtin" || grep -q "/${m}.ko" "$mdir/modules.builtin" \
        || die "module $1 is neither in modules.dep nor built in"
      return 0
    fi
    for d in ${entry#*:}; do
      dn=${d##*/}; dn=${dn%.ko*}
      visit "$dn"
    done
    echo "$mdir/${entry%%:*}"
  }
  local m
  for m in "${modules[@]}"; do visit "$m"; done
}

# --- initramfs ------------------------------------------------------------------
# Copies a dynamically linked binary and the libraries ldd names.
copy_with_libs() {
  local bin=$1 dest=$2 lib
  install -D -m 0755 "$(readlink -f "$bin")" "$dest$bin"
  for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    [ -e "$dest$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$dest$lib"
  done
}

build_initrd() {
  local out=$1 stage
  stage=$(mktemp -d "$cache/initrd-stage.XXXXXX")
  mkdir -p "$stage"/{bin,sbin,etc,proc,sys,dev,tmp,root,run,newroot,modules,usr/bin,usr/sbin}
  install -m 0755 /bin/busybox "$stage/bin/busybox"
  local applet
  for applet in $(/bin/busybox --list); do
    [ -e "$stage/bin/$applet" ] || ln -s busybox "$stage/bin/$applet"
  done
  rm -f "$stage/bin/bash" "$stage/bin/nc" "$stage/bin/timeout"
  # The protocol needs real bash (${PIPESTATUS[0]}); `nc -z` needs openbsd nc;
  # drivers prefix commands with `timeout N`, and coreutils' exits 124 when
  # it fires (busybox's exits 143).
  copy_with_libs /bin/bash "$stage"
  copy_with_libs /usr/bin/timeout "$stage"
  ln -s /usr/bin/timeout "$stage/bin/timeout"
  copy_with_libs "$(readlink -f "$(command -v nc)")" "$stage"
  ln -sf "$(readlink -f "$(command -v nc)")" "$stage/usr/bin/nc"
  ln -sf /bin/busybox "$stage/usr/bin/env"
  local i=0 ko
  : > "$stage/modules/load-order"
  for ko in $(module_closure); do
    i=$((i + 1))
    cp "$ko" "$stage/modules/"
    echo "${ko##*/}" >> "$stage/modules/load-order"
  done
  install -m 0755 "$here/init" "$stage/init"
  install -m 0755 "$here/rootfs/usr/local/sbin/nixvm-guestnet" "$stage/bin/nixvm-guestnet"
  cat > "$stage/etc/inittab" <<EOF
::sysinit:/bin/nixvm-guestnet
::once:$store_backdoor
::shutdown:/bin/umount -a -r
EOF
  echo 'root:x:0:0:root:/root:/bin/bash' > "$stage/etc/passwd"
  echo 'root:x:0:' > "$stage/etc/group"
  echo 'export PATH=/bin:/sbin:/usr/bin:/usr/sbin' > "$stage/etc/profile"
  (cd "$stage" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) > "$out.tmp"
  mv "$out.tmp" "$out"
  rm -rf "$stage"
  log "initramfs: $(du -h "$out" | cut -f1), $i modules"
}

# --- systemd root filesystem --------------------------------------------------------
build_debootstrap() {
  local dir=$1
  [ -e "$dir/.done" ] && return 0
  log "rootfs: debootstrap $suite (about a minute)"
  rm -rf "$dir"
  debootstrap --variant=minbase --include="$include" "$suite" "$dir" "$mirror" > "$dir.log" 2>&1 \
    || { tail -n 20 "$dir.log" >&2; die "debootstrap failed (log: $dir.log)"; }
  rm -rf "$dir/var/cache/apt/archives/"*.deb "$dir/var/lib/apt/lists/"*
  touch "$dir/.done"
}

build_rootimg() {
  local base=$1 out=$2 stage
  stage=$(mktemp -d "$cache/rootfs-stage.XXXXXX")
  cp -a "$base/." "$stage/"
  rm -f "$stage/.done"
  # NixOS-test-instrumentation-like configuration (files next to this script).
  cp -a "$here/rootfs/." "$stage/"
  install -m 0755 /bin/busybox "$stage/usr/local/bin/busybox"
  # Empty root password, empty machine-id (regenerated on each boot).
  sed -i 's/^root:[^:]*:/root::/' "$stage/etc/shadow"
  : > "$stage/etc/machine-id"
  rm -f "$stage/var/lib/dbus/machine-id" "$stage/etc/hostname"
  local wants=$stage/etc/systemd/system/multi-user.target.wants
  mkdir -p "$wants"
  local unit
  for unit in backdoor.service syshc.service; do
    ln -sf "/etc/systemd/system/$unit" "$wants/$unit"
  done
  mkdir -p "$stage/etc/systemd/system/sysinit.target.wants"
  ln -sf /etc/systemd/system/nixvm-guestnet.service "$stage/etc/systemd/system/sysinit.target.wants/"
  # agetty on hvc0 would write a login prompt into the protocol stream.
  for unit in serial-getty@hvc0.service serial-getty@ttyS0.service getty@tty1.service getty-static.service \
    apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer; do
    ln -sf /dev/null "$stage/etc/systemd/system/$unit"
  done
  mkdir -p "$stage/tmp/xchg" "$stage/tmp/shared"
  rm -f "$out.tmp"
  truncate -s 1G "$out.tmp"
  mkfs.ext4 -q -F -L root -d "$stage" "$out.tmp"
  mv "$out.tmp" "$out"
  rm -rf "$stage"
  log "rootfs: $out ($(du -h "$out" | cut -f1) allocated)"
}

# --- the guests' Nix store -------------------------------------------------------
# A directory shared over 9p (tag nix-store, mounted at /nix/.ro-store under
# an overlay on /nix/store, as qemu-vm.nix does by default) and the same
# content as an erofs image (virtualisation.useNixStoreImage). NixOS builds
# store.img at every VM start from the closure; the stand-in builds it once
# and the start script copies it into the VM's state directory.
build_store() {
  local dir=$1 img=$2
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  install -D -m 0755 "$here/rootfs/usr/local/bin/nixvm-backdoor" "$dir.tmp$store_backdoor"
  install -D -m 0644 "$here/rootfs/srv/www/index.html" \
    "$dir.tmp/nix/store/9mfjq0d1sa3v3d0rqx2n5w3q2kk7ka4b-syshc-www/index.html"
  mv "$dir.tmp/nix/store" "$dir.new" && rm -rf "$dir.tmp" "$dir" && mv "$dir.new" "$dir"
  rm -f "$img.tmp"
  mkfs.erofs --quiet --all-root -T 0 "$img.tmp" "$dir" >&2
  mv "$img.tmp" "$img"
}

# --- accelerator probe ----------------------------------------------------------
# /dev/kvm may exist and still be unusable (kvm_pvm: QEMU aborts with -cpu
# host, or runs slower than TCG). KVM is used only if a probe boot of the
# busybox guest (its /init powers off at once given nixvm.probe) finishes
# cleanly within 2 s; otherwise TCG.
probe_accel() {
  local out=$1
  if [ -n "${NIXVM_GUEST_ACCEL:-}" ]; then echo "$NIXVM_GUEST_ACCEL" > "$out"; return; fi
  local accel=tcg start end log rc
  if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
    log=$(mktemp)
    start=$(date +%s%N)
    # The subshell waits itself, so bash's "Aborted" notice (QEMU aborts on
    # kvm_pvm) goes to /dev/null.
    rc=$( (timeout 5 qemu-system-x86_64 -accel kvm -cpu host -m 256 -nodefaults -nographic -no-reboot \
      -serial stdio -kernel "$kdir/vmlinux" -initrd "$initrd" \
      -append "console=ttyS0 panic=-1 quiet nixvm.probe" < /dev/null > "$log" 2>&1
      echo $?) 2> /dev/null)
    if [ "$rc" = 0 ] && grep -q nixvm-probe-ok "$log"; then
      end=$(date +%s%N)
      [ $(( (end - start) / 1000000 )) -lt 2000 ] && accel=kvm
    fi
    rm -f "$log"
  fi
  log "accelerator: $accel"
  echo "$accel" > "$out"
}

# --- main -------------------------------------------------------------------
# Fast path: nothing to do when the stamp of the last build matches.
inputs_hash() {
  {
    # Only what goes into the images: the start-script template and
    # make-vm.sh are read when a start script is written, not cached.
    cat "$here/build.sh" "$here/init"
    (cd "$here/rootfs" && find . -type f -o -type l | LC_ALL=C sort | while read -r f; do
      echo "$f"; if [ -L "$f" ]; then readlink "$f"; else cat "$f"; fi; done)
    cat "$cache/kernel.pin" 2>/dev/null || true
    echo "${NIXVM_GUEST_KERNEL:-} $busybox_only $suite $include ${modules[*]}"
    echo "${NIXVM_GUEST_ACCEL:-}"
    pkg_version busybox-static; pkg_version bash; pkg_version netcat-openbsd; pkg_version coreutils
  } | hash_of
}

# The stamp alone is not enough: current/ holds symlinks into the cache,
# which may have been pruned by hand (-e follows them).
stamp=$cache/current/stamp
if [ "$refresh_kernel" -eq 0 ] && [ -s "$cache/kernel.pin" ] && [ -e "$stamp" ] \
  && [ -e "$cache/current/vmlinux" ] && [ -e "$cache/current/initrd.cpio.gz" ] \
  && [ -e "$cache/current/store" ] && [ -e "$cache/current/store.erofs" ] \
  && { [ "$busybox_only" -eq 1 ] || [ -e "$cache/current/root.ext4" ]; } \
  && [ "$(cat "$stamp")" = "$(inputs_hash)" ]; then
  cat "$cache/current/guest.env"
  exit 0
fi

t0=$(date +%s)
# debootstrap and a root-owned root image need root; say so up front
# instead of failing a minute in.
if [ "$(id -u)" -ne 0 ] && [ "$busybox_only" -eq 0 ]; then
  die "building the systemd guest needs root (debootstrap, file ownership in root.ext4): run 'sudo $0' once; later runs use the cache"
fi
# Leftovers of an interrupted build (we hold the lock, so none is in use).
rm -rf "$cache"/initrd-stage.* "$cache"/rootfs-stage.* "$cache"/current.new "$cache"/*.tmp
ensure_tools
read -r kpkg kversion < <(kernel_pin)
build_kernel "$kpkg" "$kversion"

key=$(inputs_hash)
initrd=$cache/initrd-$key.cpio.gz
[ -e "$initrd" ] || build_initrd "$initrd"

store=$cache/store-$key
[ -e "$store.erofs" ] || build_store "$store" "$store.erofs"

rootimg=""
if [ "$busybox_only" -eq 0 ]; then
  dbkey=$(echo "$suite $include $mirror" | hash_of)
  build_debootstrap "$cache/debootstrap-$dbkey"
  rootimg=$cache/root-$key.ext4
  [ -e "$rootimg" ] || build_rootimg "$cache/debootstrap-$dbkey" "$rootimg"
fi

new=$cache/current.new
rm -rf "$new" && mkdir -p "$new"
ln -s "$kdir/vmlinux" "$new/vmlinux"
ln -s "$initrd" "$new/initrd.cpio.gz"
ln -s "$store" "$new/store"
ln -s "$store.erofs" "$new/store.erofs"
[ -n "$rootimg" ] && ln -s "$rootimg" "$new/root.ext4"
probe_accel "$new/accel"
{
  echo "GUEST_VMLINUX=$cache/current/vmlinux"
  echo "GUEST_INITRD=$cache/current/initrd.cpio.gz"
  [ -n "$rootimg" ] && echo "GUEST_ROOT_IMAGE=$cache/current/root.ext4"
  echo "GUEST_STORE=$cache/current/store"
  echo "GUEST_STORE_IMAGE=$cache/current/store.erofs"
  echo "GUEST_ACCEL=$(cat "$new/accel")"
  echo "GUEST_MAKE_VM=$here/make-vm.sh"
} > "$new/guest.env"
echo "$key" > "$new/stamp"
rm -rf "$cache/current.old"
[ -e "$cache/current" ] && mv "$cache/current" "$cache/current.old"
mv "$new" "$cache/current"
rm -rf "$cache/current.old"

# Drop artifacts of older inputs so the cache does not grow without bound.
for f in "$cache"/initrd-*.cpio.gz "$cache"/root-*.ext4 "$cache"/store-*; do
  case "$f" in "$initrd" | "$rootimg" | "$store" | "$store.erofs") ;; *) rm -rf "$f" ;; esac
done
log "done in $(( $(date +%s) - t0 )) s; cache uses $(du -sh "$cache" | cut -f1)"
cat "$cache/current/guest.env"
