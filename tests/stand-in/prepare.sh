#!/usr/bin/env bash
# Prepares the stand-in nixpkgs for sandboxed builds that boot real guests.
#
#   tests/stand-in/prepare.sh OUT [--cargo-bin DIR] [--guest-cache DIR]
#
# Writes
#   OUT/nixpkgs/        a copy of tests/stand-in/nixpkgs plus host-inputs.nix
#                       (content hashes of the guest and the cargo binaries);
#                       use it as `--override-input nixpkgs path:OUT/nixpkgs`
#   OUT/sandbox-paths   the value for `--option extra-sandbox-paths`: busybox
#                       (the bootstrap), every program of nixpkgs/host.nix with
#                       the shared libraries ldd names and its data dirs, the
#                       guest (tests/guest/make-vm.sh, run-vm.sh.in, the built
#                       cache/current files) at /nixvm-stand-in/guest, and the
#                       cargo binaries (default: target/debug) at
#                       /nixvm-stand-in/cargo.
# The guests must be built (tests/guest/build.sh) and the binaries compiled
# (cargo build) first. Prints OUT/sandbox-paths.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

out="" cargo_bin=$repo/target/debug guest_cache=${NIXVM_GUEST_CACHE:-$repo/tests/guest/cache}
while [ $# -gt 0 ]; do
  case "$1" in
    --cargo-bin) cargo_bin=$2; shift 2 ;;
    --guest-cache) guest_cache=$2; shift 2 ;;
    -*) echo "usage: $0 OUT [--cargo-bin DIR] [--guest-cache DIR]" >&2; exit 2 ;;
    *) out=$1; shift ;;
  esac
done
[ -n "$out" ] || { echo "usage: $0 OUT [--cargo-bin DIR] [--guest-cache DIR]" >&2; exit 2; }
die() { echo "prepare.sh: $*" >&2; exit 1; }

bins=(nixvm-gen nixvm-driver nixos-test-driver)
for b in "${bins[@]}"; do
  [ -x "$cargo_bin/$b" ] || die "$cargo_bin/$b is missing (run cargo build, or pass --cargo-bin)"
done
current=$guest_cache/current
for f in vmlinux initrd.cpio.gz root.ext4 store store.erofs accel guest.env stamp; do
  [ -e "$current/$f" ] || die "$current/$f is missing (run tests/guest/build.sh)"
done

# host.nix as lines: "busybox PATH", "bin PATH", "data PATH".
host_lines=$(nix-instantiate --eval --strict -E "
  let h = import $here/nixpkgs/host.nix; in
  builtins.concatStringsSep \"\\n\" ([ \"busybox \${h.busybox}\" ]
    ++ builtins.concatMap (p: map (b: \"bin \${b}\") (builtins.attrValues (p.bin or { }))
         ++ map (d: \"data \${d}\") (p.data or [ ])) (builtins.attrValues h.packages))" |
  sed 's/^"//; s/"$//; s/\\n/\n/g')

declare -A seen=()
paths=()
add() { # add TARGET [SOURCE]
  local target=$1 source=${2:-$1}
  [ -n "${seen[$target]:-}" ] && return 0
  [ -e "$source" ] || die "$source does not exist"
  seen[$target]=1
  if [ "$target" = "$source" ]; then paths+=("$target"); else paths+=("$target=$source"); fi
}
# A program and what its dynamic loader needs.
add_program() { # add_program TARGET SOURCE
  add "$1" "$2"
  local lib
  for lib in $(ldd "$2" 2>/dev/null | grep -o '/[^ ]*' || true); do add "$lib"; done
}

while read -r kind path; do
  case "$kind" in
    busybox) ldd "$path" >/dev/null 2>&1 && die "$path must be statically linked (busybox-static)"; add "$path" ;;
    bin) add_program "$path" "$path" ;;
    data)
      [ -d "$path" ] || continue
      add "$path"
      # Modules (QEMU's .so files) and their libraries.
      while IFS= read -r so; do
        for lib in $(ldd "$so" 2>/dev/null | grep -o '/[^ ]*' || true); do add "$lib"; done
      done < <(find "$path" -name "*.so*")
      ;;
  esac
done <<< "$host_lines"
# Nix on NixOS builds with a sandbox shell and exposes it as /bin/sh in
# every sandbox (the default of `sandbox-paths`); Debian's nix-bin does not.
# The stock driver and ours start `sh -c <start script>` through it.
add /bin/sh /bin/busybox
# The dynamic loader finds libraries through its cache.
[ -e /etc/ld.so.cache ] && add /etc/ld.so.cache

guest=/nixvm-stand-in/guest
add "$guest/make-vm.sh" "$repo/tests/guest/make-vm.sh"
add "$guest/run-vm.sh.in" "$repo/tests/guest/run-vm.sh.in"
for f in vmlinux initrd.cpio.gz root.ext4 store store.erofs accel guest.env; do
  add "$guest/cache/current/$f" "$(readlink -f "$current/$f")"
done
for b in "${bins[@]}"; do
  add_program "/nixvm-stand-in/cargo/$b" "$(readlink -f "$cargo_bin/$b")"
done

guest_stamp=$(cat "$current/stamp" "$repo/tests/guest/make-vm.sh" "$repo/tests/guest/run-vm.sh.in" | sha256sum | cut -d' ' -f1)
cargo_hash=$(cd "$cargo_bin" && cat $(printf '%s\n' "${bins[@]}" | LC_ALL=C sort) | sha256sum | cut -d' ' -f1)

mkdir -p "$out"
rm -rf "$out/nixpkgs"
cp -r "$here/nixpkgs" "$out/nixpkgs"
chmod -R u+w "$out/nixpkgs"
cat > "$out/nixpkgs/host-inputs.nix" <<EOS
# Written by tests/stand-in/prepare.sh: content hashes of the host inputs
# mapped into the sandbox (see host.nix), so derivations using them are
# rebuilt when they change.
{
  guestStamp = "$guest_stamp";
  cargoHash = "$cargo_hash";
}
EOS
printf '%s\n' "${paths[*]}" > "$out/sandbox-paths"
cat "$out/sandbox-paths"
