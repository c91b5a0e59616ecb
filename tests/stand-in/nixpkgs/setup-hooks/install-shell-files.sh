# STAND-IN for nixpkgs' installShellFiles setup hook
# (pkgs/build-support/install-shell-files), reduced to what nixvm-gen's
# package uses: installShellCompletion --cmd NAME --bash|--zsh|--fish FILE…
# and installManPage FILE….

installShellCompletion() {
    local cmd=""
    while [ $# -gt 0 ]; do
        case $1 in
            --cmd) cmd=$2; shift 2 ;;
            --bash) mkdir -p "$out/share/bash-completion/completions"; cat "$2" > "$out/share/bash-completion/completions/$cmd.bash"; shift 2 ;;
            --zsh) mkdir -p "$out/share/zsh/site-functions"; cat "$2" > "$out/share/zsh/site-functions/_$cmd"; shift 2 ;;
            --fish) mkdir -p "$out/share/fish/vendor_completions.d"; cat "$2" > "$out/share/fish/vendor_completions.d/$cmd.fish"; shift 2 ;;
            *) echo "stand-in installShellCompletion: unsupported argument $1" >&2; return 1 ;;
        esac
    done
}

installManPage() {
    local page section
    for page in "$@"; do
        section=${page##*.}
        mkdir -p "$out/share/man/man$section"
        cp "$page" "$out/share/man/man$section/"
    done
}
