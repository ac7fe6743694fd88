#!/bin/sh
# nixos-lift installer: the `curl | sh` path, for a VM you are already logged in to.
#
#   curl -fsSL https://github.com/nixos-lift/nixos-lift/releases/download/vX.Y.Z/install.sh \
#     | sudo sh -s -- --flake github:me/hosts#web --installer-url URL --installer-sha256 HEX \
#       [--disk auto]
#
# It downloads the static agent for this machine's architecture, checks its sha256, writes
# /etc/nixos-lift/config.yaml (mode 0600) and runs `nixos-lift run`, which takes the machine
# over: the disk is replaced by your NixOS flake. A release's copy of this script carries the
# release's sha256s; a copy from the source tree needs --agent-sha256.
set -eu

# Stamped by packaging/build-static.sh into the release's install.sh.
AGENT_URL='https://github.com/nixos-lift/nixos-lift/releases/latest/download/nixos-lift-{arch}-linux'
AGENT_SHA256_X86_64=''
AGENT_SHA256_AARCH64=''

CONFIG=/etc/nixos-lift/config.yaml
BIN=/usr/local/bin/nixos-lift

say() { echo "nixos-lift-install: $*" >&2; }
die() {
    say "$*"
    exit 1
}
usage() {
    cat <<'USAGE'
usage: install.sh --flake REF --installer-url URL --installer-sha256 HEX [--disk DISK] [options]
       install.sh --config FILE [options]

  --flake REF             flake reference with attribute, e.g. github:me/hosts#web
  --installer-url URL     the NixOS installer tarball stage 1 kexecs into ({arch} allowed)
  --installer-sha256 HEX  its sha256 for this machine's architecture
  --disk DISK             target disk: auto (the root disk, the default), /dev/disk/by-id/...
  --config FILE           use this nixos-lift config instead of writing one from the options
                          above (needed for private flakes: keep tokens in a file, not in argv)
  --agent-url URL         where to download the agent; {arch} becomes `uname -m`
  --agent-sha256 HEX      the agent's sha256 for this architecture (release's SHA256SUMS)
  -h, --help              show this help

Runs `nixos-lift run --config /etc/nixos-lift/config.yaml`, which replaces this machine's
operating system. Needs root.
USAGE
}

flake=""
disk=""
installer_url=""
installer_sha256=""
config_src=""
sha256=""
while [ $# -gt 0 ]; do
    case "$1" in
    --flake | --disk | --installer-url | --installer-sha256 | --config | --agent-url | --agent-sha256)
        [ $# -ge 2 ] || die "$1 needs a value (see --help)"
        case "$1" in
        --flake) flake=$2 ;;
        --disk) disk=$2 ;;
        --installer-url) installer_url=$2 ;;
        --installer-sha256) installer_sha256=$2 ;;
        --config) config_src=$2 ;;
        --agent-url) AGENT_URL=$2 ;;
        --agent-sha256) sha256=$2 ;;
        esac
        shift 2
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
done

options="$flake$disk$installer_url$installer_sha256"
case "$options" in
*[[:cntrl:]]*) die "--flake, --disk and --installer-* must not contain control characters" ;;
esac
if [ -n "$config_src" ]; then
    [ -z "$options" ] || die "--config excludes --flake, --disk and --installer-*: put them in the config file"
    [ -r "$config_src" ] || die "cannot read config file $config_src"
else
    [ -n "$flake" ] || die "--flake is required (or --config FILE); see --help"
    if [ -z "$installer_url" ] || [ -z "$installer_sha256" ]; then
        die "--installer-url and --installer-sha256 are required with --flake; see --help"
    fi
fi

if [ "$(id -u)" -ne 0 ]; then
    die "refusing to run: root is required to take this machine over (uid is $(id -u)); run it with sudo: curl -fsSL URL/install.sh | sudo sh -s -- ..."
fi

arch=$(uname -m)
case "$arch" in
x86_64) pinned=$AGENT_SHA256_X86_64 ;;
aarch64) pinned=$AGENT_SHA256_AARCH64 ;;
*) die "refusing to run: no nixos-lift agent is built for architecture $arch (x86_64, aarch64)" ;;
esac
[ -n "$sha256" ] || sha256=$pinned
[ -n "$sha256" ] || die "refusing to download the agent: no sha256 pinned for $arch; pass --agent-sha256 from the release's SHA256SUMS"
sha256=$(printf '%s' "$sha256" | tr 'A-F' 'a-f')
case "$sha256" in
*[!0-9a-f]*) die "--agent-sha256 must be 64 hex digits" ;;
esac
[ ${#sha256} -eq 64 ] || die "--agent-sha256 must be 64 hex digits, got ${#sha256}"

url=$(printf '%s' "$AGENT_URL" | sed "s/{arch}/$arch/g")
mkdir -p "$(dirname "$BIN")"
tmp=$(mktemp "$(dirname "$BIN")/.nixos-lift.XXXXXX")
trap 'rm -f "$tmp"' EXIT
say "downloading $url"
if command -v curl >/dev/null; then
    curl --fail --silent --show-error --location --retry 5 --retry-connrefused \
        --connect-timeout 10 --max-time 600 --output "$tmp" "$url" ||
        die "downloading $url failed"
elif command -v wget >/dev/null; then
    wget --quiet --tries=5 --timeout=60 --output-document="$tmp" "$url" ||
        die "downloading $url failed"
else
    die "neither curl nor wget is installed"
fi
got=$(sha256sum "$tmp" | cut -d' ' -f1)
[ "$got" = "$sha256" ] ||
    die "refusing to run the agent: sha256 mismatch for $url: got $got, expected $sha256"
chmod 0755 "$tmp"
mv -f "$tmp" "$BIN"
trap - EXIT
say "agent verified: $BIN (sha256 $got)"

# The config may hold tokens: create it unreadable to others from the start.
umask 077
mkdir -p "$(dirname "$CONFIG")"
if [ -n "$config_src" ]; then
    cp "$config_src" "$CONFIG.tmp"
else
    # YAML double-quoted scalars: escape backslash and double quote.
    quote() { printf '"%s"' "$(printf '%s' "$1" | sed 's/[\\"]/\\&/g')"; }
    {
        echo "# Written by install.sh; see the README's config reference."
        echo "version: 1"
        echo "flake: $(quote "$flake")"
        [ -z "$disk" ] || echo "disk: $(quote "$disk")"
        echo "installer:"
        echo "  url: $(quote "$installer_url")"
        echo "  sha256:"
        echo "    $arch: $(quote "$installer_sha256")"
    } >"$CONFIG.tmp"
fi
chmod 0600 "$CONFIG.tmp"
mv -f "$CONFIG.tmp" "$CONFIG"
say "config written to $CONFIG; starting nixos-lift run"
exec "$BIN" run --config "$CONFIG"
