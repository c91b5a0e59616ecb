# STAND-IN for nixpkgs' makeWrapper setup hook
# (pkgs/build-support/setup-hooks/make-wrapper.sh), reduced to the options
# nixvm-gen's package uses: --prefix/--suffix VAR SEP VALUE, --set VAR VALUE,
# --add-flags FLAGS. The wrapper is a @shell@ script that execs the original.

makeWrapper() {
    local original=$1 wrapper=$2 flags=""
    shift 2
    {
        echo "#!@shell@"
        while [ $# -gt 0 ]; do
            case $1 in
                --prefix) printf 'export %s=%q${%s:+%q$%s}\n' "$2" "$4" "$2" "$3" "$2"; shift 4 ;;
                --suffix) printf 'export %s=${%s:+$%s%q}%q\n' "$2" "$2" "$2" "$3" "$4"; shift 4 ;;
                --set) printf 'export %s=%q\n' "$2" "$3"; shift 3 ;;
                --add-flags) flags="$flags $2"; shift 2 ;;
                *) echo "stand-in makeWrapper: unsupported option $1" >&2; return 1 ;;
            esac
        done
        printf 'exec -a "$0" %q%s "$@"\n' "$original" "$flags"
    } > "$wrapper"
    chmod +x "$wrapper"
}

wrapProgram() {
    local prog=$1
    shift
    local hidden
    hidden="$(dirname "$prog")/.$(basename "$prog")-wrapped"
    mv "$prog" "$hidden"
    makeWrapper "$hidden" "$prog" "$@"
}
