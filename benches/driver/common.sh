# Shared by the driver benchmarks (sourced, not run). Expects $root,
# $profile ("debug"/"release"), $driver (empty: build one) and $keep (1:
# keep the work dir); sets $driver, builds the stand-in guests and makes
# $work, a temporary directory whose processes and files go at exit.

# Builds nixvm-driver with $profile unless a --driver was given.
bench_driver() {
  if [ -z "$driver" ]; then
    echo "building nixvm-driver ($profile profile; pass --release or --driver for another build)" >&2
    if [ "$profile" = release ]; then
      (cd "$root" && cargo build --quiet --release --bin nixvm-driver)
    else
      (cd "$root" && cargo build --quiet --bin nixvm-driver)
    fi
    driver=$root/target/$profile/nixvm-driver
  fi
  bash "$root/tests/guest/build.sh" > /dev/null
}

# Makes $work (prefix $1) and removes it at exit, after killing anything
# still mentioning it (VMs of a crashed run).
bench_workdir() {
  work=$(mktemp -d "/tmp/$1-XXXXXX")
  trap bench_cleanup EXIT
}

bench_cleanup() {
  for p in /proc/[0-9]*; do
    if { tr "\0" " " < "$p/cmdline"; } 2> /dev/null | grep -q -- "$work"; then kill -9 "${p#/proc/}" 2> /dev/null || true; fi
  done
  if [ "$keep" -eq 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
