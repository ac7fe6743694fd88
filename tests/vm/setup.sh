#!/usr/bin/env bash
# Installs what the simulated cloud needs, idempotently, on Debian or Ubuntu (as root):
# QEMU (from bookworm-backports on Debian 12, to match the backports qemu-utils), a distro
# kernel for the guests, busybox-static, cpio, OVMF, sfdisk/mke2fs, python3, openssl (the
# webhook receiver's test CA) and nix-bin (nix-instantiate parses what stage 2 generated).
# Safe to run again: it only touches apt when something is missing.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"

. /etc/os-release
case "${ID:-}" in
    debian) kernel_pkg=linux-image-amd64 ;;
    ubuntu) kernel_pkg=linux-image-generic ;;
    *)
        echo "tests/vm/setup.sh: unsupported distribution '${ID:-unknown}' (Debian or Ubuntu needed)" >&2
        exit 2
        ;;
esac

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
packages=(qemu-system-x86 "$kernel_pkg" busybox-static cpio ovmf fdisk e2fsprogs python3 ca-certificates kmod openssl openssh-client nix-bin)
missing=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" -ne 0 ]; then
    echo "tests/vm/setup.sh: missing ${missing[*]}; run as root to install them" >&2
    exit 2
fi

# Debian 12: the machine's qemu-utils may be the backports build, and plain bookworm
# qemu-system-x86 conflicts with it, so take QEMU from bookworm-backports.
if [ "${VERSION_CODENAME:-}" = bookworm ] && ! installed qemu-system-x86; then
    if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
        # Same archive host as the existing Debian sources.
        mirror=$(grep -rhs -E '^(URIs:|deb) ' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
            grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ' || true)
        mirror=${mirror:-http://deb.debian.org/debian}
        echo "adding bookworm-backports from $mirror"
        cat >/etc/apt/sources.list.d/bookworm-backports.sources <<SRC
Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    fi
    apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -t bookworm-backports qemu-system-x86 >/dev/null
fi

need_apt "${packages[@]}"

# Every tool the harness calls, checked once so a missing one is named here, not mid-scenario.
for tool in qemu-system-x86_64 busybox cpio sfdisk mke2fs python3 modprobe gzip sha256sum openssl nix-instantiate; do
    command -v "$tool" >/dev/null || { echo "tests/vm/setup.sh: $tool still missing" >&2; exit 1; }
done
ls /boot/vmlinuz-* >/dev/null 2>&1 || { echo "tests/vm/setup.sh: no kernel in /boot" >&2; exit 1; }
[ -e /usr/share/OVMF/OVMF_CODE_4M.fd ] || { echo "tests/vm/setup.sh: OVMF_CODE_4M.fd missing" >&2; exit 1; }
echo "simulated cloud prerequisites: ok ($(qemu-system-x86_64 --version | head -n1))"
