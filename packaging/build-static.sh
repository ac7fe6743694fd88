#!/usr/bin/env bash
# Builds the static nixos-lift binary (glibc crt-static, rustls: no shared libraries needed)
# and prints its path on stdout.
#
#   packaging/build-static.sh [--release|--debug] [--installer ARCH=TARBALL]...
#                             [--dist DIR [--aarch64 FILE]]       default: --release
#
#   --installer ARCH=TARBALL   the installer for ARCH (x86_64, aarch64; `nix build .#installer`
#                    on that arch): its sha256 is compiled in as the default installer's pin
#                    (NIXOS_LIFT_INSTALLER_SHA256_<ARCH>), so a config without `installer:`
#                    works, and --dist publishes it as nixos-lift-installer-ARCH-linux.tar.gz.
#                    Build the --aarch64 agent with the same NIXOS_LIFT_INSTALLER_* variables
#                    (an already set one must equal the tarball's sum, or this stops).
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
#                      nixos-lift-installer-ARCH-linux.tar.gz  each --installer
#                      nixos-lift-extras.tar.gz  completions/, man/ and systemd/ in one file
#                      SHA256SUMS                of all of the above
#
#   packaging/build-static.sh --list-assets DIR
#                    print the files of an assembled DIR that a release attaches (its
#                    top-level files: GitHub release assets are flat), one path a line; no build.
#
# The explicit --target keeps RUSTFLAGS away from build scripts and proc macros, and gives
# the static build its own directory next to the ordinary debug build.
set -euo pipefail
# --list-assets reads DIR as given (the other paths are relative to the repository root).
if [ "${1:-}" = --list-assets ]; then
    if [ $# -ne 2 ] || [ ! -f "$2/SHA256SUMS" ]; then
        echo "usage: packaging/build-static.sh --list-assets DIR (an assembled release with SHA256SUMS)" >&2
        exit 2
    fi
    find "$2" -maxdepth 1 -type f | LC_ALL=C sort
    exit 0
fi
cd "$(dirname "$0")/.."

usage() {
    echo "usage: packaging/build-static.sh [--release|--debug] [--installer ARCH=TARBALL]... [--dist DIR [--aarch64 FILE]]" >&2
    echo "       packaging/build-static.sh --list-assets DIR" >&2
    exit 2
}
profile=release
dist=""
aarch64=""
installers=()
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
        --installer)
            [ $# -ge 2 ] || usage
            case "${2%%=*}" in x86_64 | aarch64) ;; *) usage ;; esac
            [ -f "${2#*=}" ] || { echo "packaging/build-static.sh: no installer ${2#*=}" >&2; exit 1; }
            installers+=("$2")
            shift
            ;;
        *) usage ;;
    esac
    shift
done
[ -z "$aarch64" ] || [ -n "$dist" ] || usage

# Each installer's sha256 becomes the default installer's pin for its arch.
for spec in "${installers[@]+"${installers[@]}"}"; do
    arch=${spec%%=*}
    var=NIXOS_LIFT_INSTALLER_SHA256_${arch^^}
    sum=$(sha256sum "${spec#*=}" | cut -d' ' -f1)
    if [ -n "${!var:-}" ] && [ "${!var}" != "$sum" ]; then
        echo "packaging/build-static.sh: $var is ${!var}, but the $arch installer's sha256 is $sum" >&2
        exit 1
    fi
    export "$var=$sum"
done

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
    for spec in "${installers[@]+"${installers[@]}"}"; do
        cp "${spec#*=}" "$dir/nixos-lift-installer-${spec%%=*}-linux.tar.gz"
    done
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$dir" -cf - completions man systemd |
        gzip -n >"$dir/nixos-lift-extras.tar.gz"
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
