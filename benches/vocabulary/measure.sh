#!/bin/bash
# measure.sh [BIN]: validate every hand translation in /tmp/vocab/t/<dir>/ (one directory per row of
# classification.tsv) with BIN (default: target/debug/nixvm-gen of this checkout): in a scratch flake,
# `generate` must write the checks file and `check` must then accept it (exit 0). Prints one line per
# file and the shares; with MARKDOWN=1 it then prints the per-file table of RESULTS.md.
set -u
here=$(cd "$(dirname "$0")" && pwd)
BIN=${1:-$here/../../target/debug/nixvm-gen}
work=/tmp/vocab/flake
rm -rf "$work"; mkdir -p "$work"
cat > "$work/flake.nix" <<'NIX'
{
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
  inputs.nixvm-gen.url = "github:nixvm-gen/nixvm-gen";
  outputs = { self, nixpkgs, nixvm-gen }: {
    nixosModules.default = { ... }: { };
    nixosModules.besserestrichliste = { ... }: { };
    checks = import ./nix/checks.generated.nix { inherit self nixpkgs nixvm-gen; };
  };
}
NIX
cd "$work" || exit 1
total=0; faithful=0; counted=0; valid=0; table=""
commit=$(git -C "$here" rev-parse --short HEAD)
# Fields are tab-separated and may be empty: read them through \037 (tabs are IFS whitespace, which collapses).
while IFS=$'\037' read -r dir src origin ok needs blockers notes; do
  note=$blockers; [ -n "$notes" ] && note=${note:+$note; }$notes
  case "$dir" in '#'*|'') continue;; esac
  total=$((total+1)); [ "$ok" = Y ] && faithful=$((faithful+1))
  rm -rf t nix
  if ! ls /tmp/vocab/t/"$dir"/*.nix >/dev/null 2>&1; then
    printf '%-28s %-8s faithful=%s validates=no  (no translation in /tmp/vocab/t/%s)\n' "$dir" "$src" "$ok" "$dir"
    table+="| ${dir#f-} | $src | $( [ "$ok" = Y ] && echo yes || echo '**no**') | not translated | $needs | $note |"$'\n'
    continue
  fi
  mkdir -p t; cp /tmp/vocab/t/"$dir"/*.nix t/
  out=$("$BIN" --flake . --tests-dir t generate 2>&1) && out=$("$BIN" --flake . --tests-dir t check 2>&1)
  if [ $? = 0 ]; then v=yes; valid=$((valid+1)); else v=no; fi
  [ "$ok" = Y ] && [ $v = yes ] && counted=$((counted+1))
  why=$(echo "$out" | grep -o 'error\[[a-z_]*\]: [^-]*' | sort -u | head -3 | tr '\n' ';')
  printf '%-28s %-8s faithful=%s validates=%-3s %s\n' "$dir" "$src" "$ok" "$v" "$why"
  table+="| ${dir#f-} | $src | $( [ "$ok" = Y ] && echo yes || echo '**no**') | $v${why:+ (${why%;})} | $needs | $note |"$'\n'
done < <(tr '\t' '\037' < "$here/classification.tsv")
if [ "${MARKDOWN:-0}" = 1 ]; then
  echo
  echo "| test | source | faithful | generate + check on $commit | needs | blocker / note |"
  echo "| --- | --- | --- | --- | --- | --- |"
  printf '%s' "$table"
  echo
fi
echo "files: $total; faithful (by hand): $faithful; validating: $valid; faithful AND validating now: $counted ($(( 1000*counted/total ))‰)"
