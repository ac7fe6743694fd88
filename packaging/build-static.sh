#!/usr/bin/env bash
# Builds the static nixos-lift binary (glibc crt-static, rustls: no shared libraries needed)
# and prints its path on stdout.
#
#   packaging/build-static.sh [--release|--debug] [--dist DIR [--aarch64 FILE]]
#                                                     default: --release
#
#   --dist DIR       also assemble the release files in DIR (emptied first):
#                      nixos-lift-x86_64-linux   this build
#                      nixos-lift-aarch64-linux  FILE from --aarch64 (packaging/build-aarch64.sh,
#                                                or the flake's packages.aarch64-linux.default)
#                      install.sh                packaging/install.sh with this release's URL
#                                                and sha256s stamped in
#                      completions/              bash, zsh and fish, from the CLI definition
#                      man/                      nixos-lift.1 and one page per subcommand
#                      systemd/nixos-lift.service the service `run` detaches into (src/detach.rs)
#                      SHA256SUMS                of all of the above
#
# The explicit --target keeps RUSTFLAGS away from build scripts and proc macros, and gives
# the static build its own directory next to the ordinary debug build.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    echo "usage: packaging/build-static.sh [--release|--debug] [--dist DIR [--aarch64 FILE]]" >&2
    exit 2
}
profile=release
dist=""
aarch64=""
while [ $# -gt 0 ]; do
    case "$1" in
        --release) profile=release ;;
        --debug) profile=debug ;;
        --dist)
            [ $# -ge 2 ] || usage
            dist=$2
            shift
            ;;
        --aarch64)
            [ $# -ge 2 ] || usage
            aarch64=$2
            shift
            ;;
        *) usage ;;
    esac
    shift
done
[ -z "$aarch64" ] || [ -n "$dist" ] || usage

target=x86_64-unknown-linux-gnu
args=(build --quiet --locked --target "$target")
[ "$profile" = release ] && args+=(--release)
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" cargo "${args[@]}" >&2

bin="${CARGO_TARGET_DIR:-$PWD/target}/$target/$profile/nixos-lift"
[ -x "$bin" ] || { echo "packaging/build-static.sh: $bin was not built" >&2; exit 1; }

# assemble_dist DIR: the files a release publishes, see the header.
assemble_dist() {
    local dir=$1 version url sum_x86 sum_arm="" shell
    version=$("$bin" --version | cut -d' ' -f2)
    # Keep in step with DEFAULT_AGENT_URL in src/userdata.rs (the suite checks they agree).
    url="https://github.com/nixos-lift/nixos-lift/releases/download/v$version/nixos-lift-{arch}-linux"
    rm -rf "$dir"
    mkdir -p "$dir/completions" "$dir/man" "$dir/systemd"
    cp "$bin" "$dir/nixos-lift-x86_64-linux"
    sum_x86=$(sha256sum "$bin" | cut -d' ' -f1)
    if [ -n "$aarch64" ]; then
        cp "$aarch64" "$dir/nixos-lift-aarch64-linux"
        sum_arm=$(sha256sum "$aarch64" | cut -d' ' -f1)
    fi
    sed -e "s|^AGENT_URL=.*|AGENT_URL='$url'|" \
        -e "s|^AGENT_SHA256_X86_64=.*|AGENT_SHA256_X86_64='$sum_x86'|" \
        -e "s|^AGENT_SHA256_AARCH64=.*|AGENT_SHA256_AARCH64='$sum_arm'|" \
        packaging/install.sh >"$dir/install.sh"
    grep -q "^AGENT_SHA256_X86_64='$sum_x86'$" "$dir/install.sh" ||
        { echo "packaging/build-static.sh: could not stamp install.sh" >&2; exit 1; }
    for shell in bash zsh fish; do
        "$bin" generate completions "$shell" >"$dir/completions/$(completion_name "$shell")"
    done
    "$bin" generate man --out-dir "$dir/man"
    cp packaging/nixos-lift.service "$dir/systemd/"
    local files
    files=$(cd "$dir" && find . -type f | LC_ALL=C sort | sed 's|^\./||')
    # shellcheck disable=SC2086 # release file names have no spaces
    (cd "$dir" && sha256sum $files >SHA256SUMS)
}
completion_name() {
    case "$1" in
        bash) echo nixos-lift.bash ;;
        zsh) echo _nixos-lift ;;
        fish) echo nixos-lift.fish ;;
    esac
}

[ -z "$dist" ] || assemble_dist "$dist" >&2
echo "$bin"
