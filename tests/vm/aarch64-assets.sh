#!/usr/bin/env bash
# Prepares the arm64 guest pieces of the simulated cloud, idempotently, from Debian's archive
# only, and caches them under the harness's cache dir ($SIMCLOUD_CACHE or tests/vm/.cache):
#
#   assets-aarch64/Image              Debian's arm64 kernel (its vmlinuz is already an
#                                     uncompressed Image)
#   assets-aarch64/lib/modules/KVER/  its modules with modules.dep (`modprobe -d` reads them)
#   assets-aarch64/busybox            busybox-static for arm64
#   assets-aarch64/kexec              a static arm64 kexec-tools, built from Debian's source
#   assets-aarch64/assets.env         the paths and versions above, for tests/vm/lib.sh
#
# and installs the host side: qemu-system-arm and qemu-user-static (bookworm-backports, like
# qemu-system-x86) and qemu-efi-aarch64 (QEMU_EFI.fd). Everything is keyed by the Debian package versions, so a
# new kernel or kexec-tools upload rebuilds only what changed.
#
#   bash tests/vm/aarch64-assets.sh          prints the path of assets.env
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"

CACHE=${SIMCLOUD_CACHE:-$REPO_ROOT/tests/vm/.cache}
OUT=$CACHE/assets-aarch64
APT=(apt-get -o DPkg::Lock::Timeout=600 -qq)
say() { printf '[aarch64-assets] %s\n' "$*" >&2; }
die() {
    printf '[aarch64-assets] error: %s\n' "$*" >&2
    exit 1
}
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
[ "$(id -u)" = 0 ] || die "run as root: it installs Debian packages"

# ---- apt: the arm64 architecture, backports and the deb-src entry, each only if missing ------
. /etc/os-release
mirror=$(grep -rhs -E '^(URIs:|deb) ' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
    grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ' || true)
mirror=${mirror:-http://deb.debian.org/debian}
apt_changed=no
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    apt_changed=yes
fi
if [ "${VERSION_CODENAME:-}" = bookworm ] && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$mirror" >/etc/apt/sources.list.d/bookworm-backports.sources
    apt_changed=yes
fi
if ! grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # kexec-tools is built from source: Debian ships no static arm64 kexec.
    printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$mirror" "${VERSION_CODENAME:-bookworm}" >/etc/apt/sources.list.d/nixos-lift-deb-src.sources
    apt_changed=yes
fi
# An index without arm64 packages or sources (fresh machine, or just added above) needs an update.
if [ "$apt_changed" = yes ] || ! apt-cache show busybox-static:arm64 >/dev/null 2>&1 ||
    ! apt-cache showsrc kexec-tools 2>/dev/null | grep -q '^Package: kexec-tools'; then
    say "apt-get update"
    "${APT[@]}" update >/dev/null
fi

host_pkgs=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross make dpkg-dev cpio file kmod)
missing=()
for p in "${host_pkgs[@]}"; do installed "$p" || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null
missing=()
for p in qemu-system-arm qemu-user-static; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    # Plain bookworm QEMU conflicts with the backports qemu-utils the harness uses.
    backports=()
    [ "${VERSION_CODENAME:-}" = bookworm ] && backports=(-t bookworm-backports)
    DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y --no-install-recommends "${backports[@]}" "${missing[@]}" >/dev/null
fi
installed qemu-efi-aarch64 || DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y --no-install-recommends qemu-efi-aarch64 >/dev/null
for tool in qemu-system-aarch64 qemu-aarch64-static depmod; do
    command -v "$tool" >/dev/null || die "$tool still missing"
done
QEMU_EFI=/usr/share/qemu-efi-aarch64/QEMU_EFI.fd
[ -f "$QEMU_EFI" ] || die "$QEMU_EFI missing after installing qemu-efi-aarch64"

mkdir -p "$OUT"
# pkg_version PKG: the candidate version apt would download.
pkg_version() { apt-cache policy "$1" | awk '/Candidate:/ {print $2; exit}'; }

# ---- kernel, modules and busybox: apt-get download + dpkg -x ----------------------------------
# The metapackage names the current ABI (linux-image-6.1.0-NN-arm64), so nothing is pinned here.
kernel_pkg=$(apt-cache depends linux-image-arm64:arm64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
kernel_pkg=${kernel_pkg%:arm64}
[ -n "$kernel_pkg" ] || die "cannot resolve linux-image-arm64 to a kernel package"
kernel_ver=$(pkg_version "$kernel_pkg:arm64")
busybox_ver=$(pkg_version busybox-static:arm64)
stamp="$kernel_pkg=$kernel_ver busybox-static=$busybox_ver"
if [ "$(cat "$OUT/debs.stamp" 2>/dev/null)" != "$stamp" ]; then
    say "downloading $kernel_pkg:arm64 $kernel_ver and busybox-static:arm64 $busybox_ver"
    tmp=$(mktemp -d "$CACHE/aarch64-debs.XXXXXX")
    (cd "$tmp" && apt-get -o APT::Sandbox::User=root -qq download "$kernel_pkg:arm64" busybox-static:arm64 >/dev/null)
    mkdir "$tmp/root"
    for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$tmp/root"; done
    rm -rf "${OUT:?}/lib" "$OUT/Image" "$OUT/busybox"
    kimage=$(ls "$tmp"/root/boot/vmlinuz-*)
    cp "$kimage" "$OUT/Image"
    mkdir -p "$OUT/lib"
    mv "$tmp/root/lib/modules" "$OUT/lib/modules"
    cp "$tmp/root/bin/busybox" "$OUT/busybox"
    depmod -b "$OUT" "$(ls "$OUT/lib/modules")"
    rm -rf "$tmp"
    echo "$stamp" >"$OUT/debs.stamp"
fi
kver=$(ls "$OUT/lib/modules")
[ -s "$OUT/lib/modules/$kver/modules.dep" ] || depmod -b "$OUT" "$kver"
file -b "$OUT/Image" | grep -q 'ARM64.*boot executable Image' ||
    die "$OUT/Image is not an uncompressed arm64 Image: $(file -b "$OUT/Image")"

# ---- a static arm64 kexec from Debian's kexec-tools source ------------------------------------
kexec_ver=$(apt-cache showsrc kexec-tools | awk '/^Version:/ {print $2}' | sort -V | tail -n1)
if [ "$(cat "$OUT/kexec.stamp" 2>/dev/null)" != "kexec-tools=$kexec_ver" ]; then
    say "building a static arm64 kexec from kexec-tools $kexec_ver"
    src=$(mktemp -d "$CACHE/aarch64-kexec.XXXXXX")
    (cd "$src" && apt-get -o APT::Sandbox::User=root -qq source "kexec-tools=$kexec_ver" >/dev/null 2>&1) ||
        die "apt-get source kexec-tools=$kexec_ver failed"
    dir=$(find "$src" -mindepth 1 -maxdepth 1 -type d -name 'kexec-tools-*' | head -n1)
    (cd "$dir" &&
        ./configure --host=aarch64-linux-gnu --without-xen --without-lzma --without-zlib LDFLAGS=-static >"$src/configure.log" 2>&1 &&
        make -j2 >"$src/make.log" 2>&1) || die "kexec-tools build failed (logs in $src)"
    aarch64-linux-gnu-strip -o "$OUT/kexec" "$dir/build/sbin/kexec"
    rm -rf "$src"
    echo "kexec-tools=$kexec_ver" >"$OUT/kexec.stamp"
fi
file -b "$OUT/kexec" | grep -q 'ARM aarch64.*statically linked' ||
    die "$OUT/kexec is not a static arm64 binary: $(file -b "$OUT/kexec")"

cat >"$OUT/assets.env" <<ENV
# Written by tests/vm/aarch64-assets.sh
AARCH64_KVER=$kver
AARCH64_IMAGE=$OUT/Image
AARCH64_MODULES=$OUT/lib/modules/$kver
AARCH64_BUSYBOX=$OUT/busybox
AARCH64_KEXEC=$OUT/kexec
AARCH64_QEMU_EFI=$QEMU_EFI
AARCH64_QEMU_USER=$(command -v qemu-aarch64-static)
ENV
say "ready: kernel $kver, kexec-tools $kexec_ver, $(qemu-system-aarch64 --version | head -n1)"
echo "$OUT/assets.env"
