#!/usr/bin/env bash
# Runs `nixvm-gen import` over every .nix file under DIR (a corpus assembled
# from benches/import/SOURCES.md), proves each full conversion with the
# recording fake Machine, and reports the share of files converted fully,
# with leftovers, or not at all, and the top blockers.
#
#   benches/import/run.sh DIR [--json OUT.json]
#
# IMPORT_FLAGS adds flags to `import` (IMPORT_FLAGS=--python-steps keeps
# leftovers as python steps; those tests are compared too).
#
# Needs python3 and a built nixvm-gen (NIXVM_GEN, default target/release,
# then target/debug).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dir=${1:?usage: run.sh DIR [--json OUT.json]}
json_out=${3:-}
bin=${NIXVM_GEN:-}
if [ -z "$bin" ]; then
  for b in "$root/target/release/nixvm-gen" "$root/target/debug/nixvm-gen"; do
    if [ -x "$b" ]; then bin=$b; break; fi
  done
fi
[ -x "$bin" ] || { echo "run.sh: build nixvm-gen first (cargo build --release)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
find -L "$dir" -name '*.nix' -type f | LC_ALL=C sort > "$work/files"
i=0
while read -r f; do
  i=$((i + 1))
  # Exit 2 (no test, not Nix) is a result, not a failure of this script.
  "$bin" import ${IMPORT_FLAGS:-} --dry-run --format json --out "$work/out" "$f" > "$work/$i.json" 2> "$work/$i.err" || true
  printf '%s\n' "$f" > "$work/$i.file"
done < "$work/files"
python3 "$here/summarize.py" "$work" "$i" ${json_out:+"$json_out"}
