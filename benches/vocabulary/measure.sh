#!/bin/bash
# measure.sh [BIN]: validate every translation with BIN (default: main's build in the 10c worktree)
# and print: dir, faithful, validates, and the shares.
BIN=${1:-/work/wt/i10c/target/debug/nixvm-gen}
cd /tmp/vocab/flake || exit 1
total=0; faithful=0; counted=0; valid=0
while IFS=$'\t' read -r dir src origin ok needs blockers notes; do
  case "$dir" in '#'*|'') continue;; esac
  rm -rf t; mkdir -p t; cp /tmp/vocab/t/$dir/*.nix t/
  if out=$($BIN --flake . --tests-dir t scan 2>&1); then v=yes; valid=$((valid+1)); else v=no; fi
  total=$((total+1)); [ "$ok" = Y ] && faithful=$((faithful+1))
  [ "$ok" = Y ] && [ $v = yes ] && counted=$((counted+1))
  why=$(echo "$out" | grep -o 'error\[[a-z_]*\]: [^-]*' | sort -u | head -3 | tr '\n' ';')
  printf '%-28s %-8s faithful=%s validates=%-3s %s\n' "$dir" "$src" "$ok" "$v" "$why"
done < "$(dirname "$0")/classification.tsv"
echo "files: $total; faithful (by hand): $faithful; validating: $valid; faithful AND validating now: $counted ($(( 1000*counted/total ))‰)"
