# List the recipes.
default:
    @just --list

# Everything CI runs (installs Debian packages when missing).
test:
    ./scripts/test.sh

# Formatting, clippy and the tests that need no QEMU.
check:
    ./scripts/test.sh --fast

# Accept changed golden files (review the diff afterwards).
bless:
    UPDATE_GOLDENS=1 cargo test --test integration

# The driver's end-to-end tests against real QEMU guests.
test-vm:
    bash tests/guest/build.sh && cargo test --test integration driver::

# Regenerate the bundled example's checks.
example:
    cargo run --bin nixvm-gen -- --flake examples/health generate
