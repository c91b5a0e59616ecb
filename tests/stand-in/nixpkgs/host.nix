# STAND-IN: the only place where the stand-in nixpkgs names host paths.
#
# Real nixpkgs builds every program from source; this machine has no
# binary cache, so a few packages are stand-ins that point at the host's
# Debian programs (`bin/<name>` is a symlink to the path below). Builds see
# them only because the sandbox exposes them: tests/stand-in/prepare.sh turns
# this file into `extra-sandbox-paths` (each program, the shared libraries
# `ldd` names, and the data directories). Nothing else of the host is visible
# in a sandboxed build, and PATH there is /path-not-set.
{
  # The bootstrap (like nixpkgs' bootstrap-tools busybox): a statically
  # linked busybox (Debian's busybox-static), copied into the store and used
  # as the stand-in's coreutils, grep, sed, awk, … on every builder's PATH.
  busybox = "/bin/busybox";

  # pname -> { bin.<program> = host path; data = [ host dirs the programs read ]; }
  packages = {
    # Real stdenv's shell and `runtimeShell`.
    bash.bin.bash = "/bin/bash";
    vde2.bin.vde_switch = "/usr/bin/vde_switch";
    netpbm.bin.pnmtopng = "/usr/bin/pnmtopng";
    # OCR for waitForText (enableOCR). Debian's tesseract is 5.x where
    # nixpkgs' driver uses tesseract4; both read `--oem 2 --psm 11` the same.
    tesseract4 = {
      bin.tesseract = "/usr/bin/tesseract";
      data = [ "/usr/share/tesseract-ocr" ];
    };
    qemu = {
      bin.qemu-system-x86_64 = "/usr/bin/qemu-system-x86_64";
      # The start script creates the qcow2 root disk with it (NIX_DISK_IMAGE).
      bin.qemu-img = "/usr/bin/qemu-img";
      # Firmware and option ROMs (pvh.bin for the direct kernel boot), and
      # the modules Debian's QEMU loads at run time (TCG itself is one:
      # accel-tcg-x86_64.so).
      data = [
        "/usr/share/qemu"
        "/usr/share/seabios"
        "/usr/lib/ipxe/qemu"
        "/usr/lib/x86_64-linux-gnu/qemu"
        # libvdeplug's plugins: `-netdev vde` loads libvdeplug_vde.so
        # ("Could not open vde: Protocol not supported" without it); it
        # looks for them next to itself, in /lib/….
        "/lib/x86_64-linux-gnu/vdeplug"
      ];
    };
  };

  # Host inputs that are not packages, at fixed paths inside the sandbox
  # (prepare.sh maps them; see ../README.md):
  # the stand-in guest of tests/guest/ (make-vm.sh, run-vm.sh.in and the built
  # cache/current/{vmlinux,initrd.cpio.gz,root.ext4,store,store.erofs,accel,guest.env}) …
  guestDir = "/nixvm-stand-in/guest";
  # … and the prebuilt cargo binaries the stand-in rustPlatform installs.
  cargoDir = "/nixvm-stand-in/cargo";
}
