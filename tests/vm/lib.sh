# The simulated cloud's mechanics, sourced by tests/vm/takeover.sh: build the guest pieces,
# start the host-side servers, boot QEMU and assert on its serial console.
#
# Network inside every VM (QEMU user networking, `restrict=on`: no way out but these):
#   169.254.0.2          slirp gateway; DHCP hands out 169.254.0.15 and up
#   169.254.169.254:80   the provider's metadata service  -> tests/fakecloud/server.py
#   169.254.10.10:80     the "release" server              -> tests/vm/release_server.py
#                        (also the flake host and substituter stage 2 waits for)
#   169.254.10.11:443    the progress webhook (HTTPS)      -> tests/vm/webhook_receiver.py
# shellcheck shell=bash
# Sourced: it sets variables its callers read (INSTALLER_SHA256, setup, ...).
# shellcheck disable=SC2034

VM_SRC=$REPO_ROOT/tests/vm
BASE_CACHE=${SIMCLOUD_CACHE:-$VM_SRC/.cache}
CACHE=$BASE_CACHE   # select_arch gives another arch its own subdirectory
FAKECLOUD=${SIMCLOUD_FAKECLOUD:-$REPO_ROOT/tests/fakecloud/server.py}
METADATA_ADDR=169.254.169.254
RELEASE_ADDR=169.254.10.10
WEBHOOK_ADDR=169.254.10.11
OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd
ROOT_SERIAL=cloudimg-root-0001
DATA_SERIAL=data-volume-0002
DISK_SIZE=8G   # sparse; the root partition inside is small
# Kernel modules both guests load, in dependency order (`modprobe --show-depends`).
GUEST_MODULES="virtio_pci virtio_net virtio_blk ext4 efivarfs"
# The installer fixture also reads the harness's per-scenario control from fw_cfg.
INSTALLER_MODULES="qemu_fw_cfg"
# The guest architecture: x86_64 runs the host's own kernel and busybox; select_arch changes these.
ARCH=x86_64
QEMU=qemu-system-x86_64
QEMU_MACHINE=()
CONSOLE=ttyS0
MODULES_BASE=/    # where `modprobe -d` finds lib/modules/KVER
BUSYBOX=/bin/busybox
AGENT_RUN=()      # how the host runs the guest's agent (qemu-user for another arch)

log() { printf '[simcloud] %s\n' "$*"; }
die() {
    printf '[simcloud] error: %s\n' "$*" >&2
    exit 1
}

# ---- cleanup: only the processes this script started ----------------------------------------
_pids=()
_cleanup() {
    local pid
    for pid in "${_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ -n "${RUN:-}" ] && [ -s "$RUN/qemu.pid" ]; then kill "$(cat "$RUN/qemu.pid")" 2>/dev/null || true; fi
}
trap _cleanup EXIT
trap 'exit 130' INT TERM

# select_arch ARCH: x86_64, or aarch64: `qemu-system-aarch64 -M virt` (TCG) with Debian's arm64
# kernel, modules, busybox and static kexec from tests/vm/aarch64-assets.sh, and the cross-built
# agent. Another arch keeps its built pieces and runs in CACHE/ARCH.
select_arch() {
    ARCH=$1
    case $ARCH in
        x86_64) return 0 ;;
        aarch64) ;;
        *) die "unknown arch '$ARCH' (x86_64 or aarch64)" ;;
    esac
    CACHE=$BASE_CACHE/$ARCH
    QEMU=qemu-system-aarch64
    QEMU_MACHINE=(-M virt -cpu cortex-a57)
    CONSOLE=ttyAMA0
    GUEST_MODULES="$GUEST_MODULES nvme" # Graviton's disks are NVMe
    local env=$BASE_CACHE/assets-aarch64/assets.env
    [ -f "$env" ] || die "no arm64 assets in $BASE_CACHE/assets-aarch64 (run tests/vm/aarch64-assets.sh)"
    # shellcheck source=/dev/null
    . "$env"
    MODULES_BASE=$BASE_CACHE/assets-aarch64
    BUSYBOX=$AARCH64_BUSYBOX
    AGENT_RUN=("$AARCH64_QEMU_USER")
}

# ---- one-time preparation -------------------------------------------------------------------

# Picks the newest installed distro kernel (for aarch64 the cached arm64 one); sets KVER and VMLINUZ.
pick_kernel() {
    if [ "$ARCH" = aarch64 ]; then
        VMLINUZ=$AARCH64_IMAGE
        KVER=$AARCH64_KVER
        return 0
    fi
    VMLINUZ=$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
    [ -n "$VMLINUZ" ] || die "no kernel in /boot (run tests/vm/setup.sh)"
    KVER=${VMLINUZ#/boot/vmlinuz-}
    [ -d "/lib/modules/$KVER" ] || die "no /lib/modules/$KVER for $VMLINUZ"
}

# add_modules DIR [MODULE...]: copies GUEST_MODULES, the extra MODULEs and their dependencies
# (decompressed) to DIR/lib/modules and writes the insmod order to DIR/lib/modules/load-order.
add_modules() {
    local dir=$1 mod line path name
    shift
    mkdir -p "$dir/lib/modules"
    : >"$dir/lib/modules/load-order"
    for mod in $GUEST_MODULES "$@"; do
        modprobe -d "$MODULES_BASE" -S "$KVER" --show-depends "$mod" | while read -r line; do
            set -- $line
            [ "$1" = insmod ] || continue
            path=$2
            name=$(basename "$path")
            name=${name%.xz}
            name=${name%.zst}
            grep -qx "$name" "$dir/lib/modules/load-order" && continue
            case $path in
                *.xz) xz -dc "$path" >"$dir/lib/modules/$name" ;;
                *.zst) zstd -qdc "$path" >"$dir/lib/modules/$name" ;;
                *) cp "$path" "$dir/lib/modules/$name" ;;
            esac
            echo "$name" >>"$dir/lib/modules/load-order"
        done
    done
}

# add_busybox DIR: busybox-static and its applet links in DIR/bin.
add_busybox() {
    local dir=$1 applet
    mkdir -p "$dir/bin"
    cp "$BUSYBOX" "$dir/bin/busybox"
    # The host's busybox-static names the applets (the same Debian version for every arch).
    for applet in $(/bin/busybox --list); do
        [ -e "$dir/bin/$applet" ] || ln -s busybox "$dir/bin/$applet"
    done
}

# mk_initrd DIR OUT: a gzip'd newc archive of DIR, reproducible (fixed timestamps, renumbered
# inodes): the same inputs give the same bytes, so build_sized_installer's cache key holds.
mk_initrd() {
    find "$1" -mindepth 1 -exec touch -h -d @0 {} +
    (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 --reproducible) | gzip -6 -n >"$2"
}

# Builds the static agent (packaging/build-static.sh) and a stripped copy for the guests.
build_agent() {
    local bin
    if [ "$ARCH" = aarch64 ]; then
        # ARM64_PROFILE=release runs the shipped (LTO) build instead of CI's cross-check one.
        log "cross-building the static aarch64 agent (packaging/build-aarch64.sh --profile ${ARM64_PROFILE:-cross-check})"
        bin=$("$REPO_ROOT/packaging/build-aarch64.sh" --profile "${ARM64_PROFILE:-cross-check}") || die "aarch64 cross build failed"
        aarch64-linux-gnu-strip -o "$CACHE/nixos-lift" "$bin"
    else
        log "building the static agent (packaging/build-static.sh --debug)"
        bin=$("$REPO_ROOT/packaging/build-static.sh" --debug) || die "static build failed"
        strip -o "$CACHE/nixos-lift" "$bin"
    fi
    AGENT=$CACHE/nixos-lift
    agent_host --version >/dev/null || die "the static agent does not run on the host"
}

# agent_host ARGS...: runs the guest's agent on the host (through qemu-user for another arch).
agent_host() { "${AGENT_RUN[@]}" "$AGENT" "$@"; }


# The fresh VM's initramfs: busybox, modules, an /init that switch_roots to the disk.
build_fresh_initrd() {
    local dir=$CACHE/fresh-initramfs
    rm -rf "$dir" && mkdir -p "$dir"/{proc,sys,dev,newroot}
    add_busybox "$dir"
    add_modules "$dir"
    cp "$VM_SRC/guest/initramfs-init" "$dir/init"
    mk_initrd "$dir" "$CACHE/fresh-initrd.gz"
}

# The installer fixture's tarballs, in $CACHE/www (ARCH: x86_64 or aarch64):
#   installer-ARCH.tar.gz           nixos-images' layout: kexec/bzImage, kexec/initrd, kexec/run
#                                   (aarch64: bzImage is the uncompressed arm64 Image, as upstream
#                                   names it, and kexec/kexec the static arm64 kexec-tools);
#                                   kexec/run is upstream's own script (upstream_kexec_run)
#   installer-manifest-ARCH.tar.gz  nixos-lift's layout: the same plus kexec/manifest.json, as
#                                   nix/installer writes it (the layout every takeover uses)
# Each layout puts its own `nixos_lift.layout=` on the kernel command line, so the installer's
# console shows which one stage 1 followed. Sets INSTALLER_SHA256 and INSTALLER_MANIFEST_SHA256.
# build_sized_installer adds a realistic-size variant of the manifest layout.
build_installer() {
    local dir=$CACHE/installer-root tar=$CACHE/installer params
    rm -rf "$dir" "$tar" && mkdir -p "$dir"/{proc,sys,dev,run,tmp,etc,lib/fixture} "$tar/kexec"
    add_busybox "$dir"
    add_modules "$dir" $INSTALLER_MODULES
    cp "$VM_SRC/installer/init" "$dir/init"
    cp "$VM_SRC/installer/json.awk" "$VM_SRC/guest/udhcpc.script" "$VM_SRC/guest/disk-by-id.sh" "$dir/lib/fixture/"
    # Stage 2 runs busybox udhcpc without -s: it needs the default hook, which Debian's
    # busybox looks for in /etc/udhcpc (upstream's default is /usr/share/udhcpc).
    mkdir -p "$dir/etc/udhcpc" "$dir/usr/share/udhcpc" "$dir/etc/ssl/certs" "$dir/doubles"
    cp "$VM_SRC/guest/udhcpc.script" "$dir/etc/udhcpc/default.script"
    cp "$VM_SRC/guest/udhcpc.script" "$dir/usr/share/udhcpc/default.script"
    # The test CA, the only one the installer trusts: the webhook receiver's certificate.
    cp "$CACHE/tls/ca.crt" "$dir/etc/ssl/certs/ca-certificates.crt"
    cp "$REPO_ROOT"/tests/doubles/{double-lib,install-doubles,nix-double,nix-recorder,nixos-install-double,disko-script-double}.sh \
        "$dir/doubles/"
    cat >"$dir/etc/fixture.env" <<ENV
FIXTURE_PROBE_HOST=$RELEASE_ADDR
FIXTURE_PROBE_PATH=/probe.txt
ENV
    cp "$VMLINUZ" "$tar/kexec/bzImage"
    if [ "$ARCH" = aarch64 ]; then cp "$AARCH64_KEXEC" "$tar/kexec/kexec"; fi
    mk_initrd "$dir" "$tar/kexec/initrd"
    params=$(fixture_params)
    upstream_kexec_run "$tar/kexec/run" "$params nixos_lift.layout=nixos-images"
    mkdir -p "$CACHE/www"
    pack_installer "$tar" "$CACHE/www/installer-$ARCH.tar.gz"
    INSTALLER_SHA256=$(sha256sum "$CACHE/www/installer-$ARCH.tar.gz" | cut -d' ' -f1)

    # kexec/manifest.json in the shape nix/installer writes (on x86_64 no static kexec binary:
    # stage 1's kexec_file_load is what the scenarios exercise).
    python3 - "$tar/kexec/manifest.json" "$params nixos_lift.layout=manifest" "$ARCH" <<'PY'
import json, os, sys
params = sys.argv[2].split()
kexec = os.path.join(os.path.dirname(sys.argv[1]), "kexec")
json.dump({
    "version": 1,
    "name": "nixos-lift-test-installer",
    "system": sys.argv[3] + "-linux",
    "nixos_release": "test-fixture",
    "agent_version": None,
    "kernel": "kexec/bzImage",
    "initrd": "kexec/initrd",
    "init": "/init",
    "kernel_params": params,
    "cmdline": " ".join(["init=/init"] + params),
    "handoff": {"initrd_dir": "nixos-lift", "stage2_dir": "/run/nixos-lift/handoff"},
    **({"kexec": "kexec/kexec"} if os.path.exists(kexec) else {}),
}, open(sys.argv[1], "w"), indent=2)
PY
    pack_installer "$tar" "$CACHE/www/installer-manifest-$ARCH.tar.gz"
    INSTALLER_MANIFEST_SHA256=$(sha256sum "$CACHE/www/installer-manifest-$ARCH.tar.gz" | cut -d' ' -f1)
}

# pack_installer DIR OUT [GZIP-LEVEL]: the tarball of DIR/kexec as nixos-images packs it (one
# gzip stream of a tar of kexec/), owned by root.
pack_installer() {
    tar -C "$1" --owner=0 --group=0 --sort=name -cf - kexec | gzip "-${3:-6}" -n >"$2"
}

# Where the real upstream sources are (read-only, beside the clone, as in CI; never copied into
# the repository): nixos-images-*.tar.gz among them.
UPSTREAM_DIR=${SIMCLOUD_UPSTREAM:-$REPO_ROOT/../shared/upstream}

# shell_escape_arg ARG: nixpkgs' lib.escapeShellArg: ARG bare when it matches
# [[:alnum:],._+:@%/-]+, else in single quotes with each ' written '\''.
shell_escape_arg() {
    local LC_ALL=C
    if [[ $1 =~ ^[[:alnum:],._+:@%/-]+$ ]]; then
        printf '%s' "$1"
    else
        printf "'%s'" "${1//\'/\'\\\'\'}"
    fi
}

# upstream_kexec_run OUT PARAMS: nixos-images' nix/kexec-installer/kexec-run.sh, unpacked from
# $UPSTREAM_DIR/nixos-images-*.tar.gz, with module.nix's substitution by its own sed
# expressions: @init@ -> /init (the fixture's init), @kernelParams@ -> lib.escapeShellArgs of
# PARAMS (split on spaces). So stage 1 reads kexec/run exactly as upstream writes it.
upstream_kexec_run() {
    local out=$1 tarball args="" p
    # `|| true`: under pipefail a missing snapshot would end the script here, before the die
    # below could say which directory was read.
    tarball=$(ls -1 "$UPSTREAM_DIR"/nixos-images-*.tar.gz 2>/dev/null | sort | tail -n 1) || true
    [ -n "$tarball" ] || die "no nixos-images-*.tar.gz in $UPSTREAM_DIR: the installer fixture's kexec/run is nixos-images' own kexec-run.sh, unpacked from it (SIMCLOUD_UPSTREAM names another directory)"
    if ! tar -xzOf "$tarball" --wildcards '*/nix/kexec-installer/kexec-run.sh' >"$out.in" 2>/dev/null || [ ! -s "$out.in" ]; then
        die "$tarball has no nix/kexec-installer/kexec-run.sh"
    fi
    for p in $2; do args+="${args:+ }$(shell_escape_arg "$p")"; done
    # module.nix's sed: the replacement text must not hold sed's own specials.
    case $args in *'|'* | *'&'* | *\\*) die "kernel parameters '$args' cannot go through module.nix's sed" ;; esac
    sed -e 's|@init@|/init|' -e "s|@kernelParams@|$args|" "$out.in" >"$out"
    rm -f "$out.in"
    chmod 0755 "$out"
    if grep -q '@init@\|@kernelParams@' "$out" || ! sh -n "$out"; then
        die "the substituted kexec-run.sh from $tarball is not a valid script"
    fi
}

# build_sized_installer MB: the manifest-layout installer at a realistic size, as
# $CACHE/www/installer-manifest-ARCH-storeMB.tar.gz; sets SIZED_INSTALLER_FILE (that name, for
# INSTALLER_FILE) and SIZED_INSTALLER_SHA256. Its kexec/initrd is the fixture's initrd followed by
# an uncompressed newc archive holding /nix-store.squashfs, MB MiB of random (incompressible)
# data: the stand-in for the squashfs Nix store nixos-images' initrd carries (~430 MB on x86_64).
# The installer fixture prints the size it finds (`installer-fixture: store image N MiB`).
# Needs build_installer first. The tarball (gzip -1: the data is incompressible anyway) is cached
# across runs in $SIMCLOUD_STORE_CACHE (default tests/vm/.cache/sized, outside SIMCLOUD_CACHE),
# keyed by MB and the digests of the fixture's kexec/ files; the two last used per arch and size
# are kept.
build_sized_installer() {
    local mb=$1 tar=$CACHE/installer store=${SIMCLOUD_STORE_CACHE:-$VM_SRC/.cache/sized} key cached
    [[ $mb =~ ^[1-9][0-9]*$ ]] || die "build_sized_installer: '$mb' is not a size in MiB"
    [ -s "$tar/kexec/manifest.json" ] || die "build_sized_installer: run build_installer first"
    SIZED_INSTALLER_FILE=installer-manifest-$ARCH-store$mb.tar.gz
    key=$( (echo "store $mb MiB, layout 1" && cd "$tar" && sha256sum kexec/*) | sha256sum | cut -c1-16)
    cached=$store/$ARCH-store$mb-$key.tar.gz
    mkdir -p "$store" "$CACHE/www"
    (
        flock 9
        if [ -s "$cached" ] && [ -s "$cached.sha256" ]; then
            touch "$cached"
            exit 0
        fi
        t=$(date +%s)
        work=$(mktemp -d "$store/build.XXXXXX")
        mkdir -p "$work/store" "$work/kexec"
        head -c "${mb}M" /dev/urandom >"$work/store/nix-store.squashfs"
        find "$tar/kexec" -mindepth 1 ! -name initrd -exec cp -t "$work/kexec" {} +
        {
            cat "$tar/kexec/initrd"
            # The kernel takes an uncompressed archive only at a 4-byte-aligned offset.
            head -c $(((4 - $(stat -c %s "$tar/kexec/initrd") % 4) % 4)) /dev/zero
            (cd "$work/store" && echo nix-store.squashfs | cpio -o -H newc --quiet -R 0:0 --reproducible)
        } >"$work/kexec/initrd"
        rm -rf "$work/store"
        pack_installer "$work" "$work/out.tar.gz" 1
        sha256sum "$work/out.tar.gz" | cut -d' ' -f1 >"$cached.sha256"
        mv "$work/out.tar.gz" "$cached"
        rm -rf "$work"
        # Keep the two last used of this arch and size.
        ls -1t "$store/$ARCH-store$mb-"*.tar.gz | tail -n +3 | while read -r old; do rm -f "$old" "$old.sha256"; done
        log "built $SIZED_INSTALLER_FILE (a $mb MiB store image) in $(($(date +%s) - t)) s, cached in $store"
    ) 9>"$store/.lock"
    ln -f "$cached" "$CACHE/www/$SIZED_INSTALLER_FILE" 2>/dev/null || cp "$cached" "$CACHE/www/$SIZED_INSTALLER_FILE"
    SIZED_INSTALLER_SHA256=$(cat "$cached.sha256")
}

# The installer fixture's kernel parameters (after `init=`), shared by both layouts.
fixture_params() { echo "console=$CONSOLE,115200 panic=-1 quiet nixos_lift.fixture=install"; }

# A test CA and the webhook receiver's certificate for $WEBHOOK_ADDR in $CACHE/tls, made once in
# $SIMCLOUD_TLS_CACHE (default tests/vm/.cache/tls) and copied from there, so a run with its own
# scratch SIMCLOUD_CACHE (tests/debian, tests/bench) builds the same installer fixture (the CA
# is in its initrd) and hits build_sized_installer's cache.
build_tls() {
    local d=${SIMCLOUD_TLS_CACHE:-$VM_SRC/.cache/tls}
    mkdir -p "$(dirname "$d")"
    (
        flock 9
        [ -s "$d/server.crt" ] && exit 0
        rm -rf "$d" && mkdir -p "$d"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
            -subj "/CN=nixos-lift simcloud test CA" -keyout "$d/ca.key" -out "$d/ca.crt" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$WEBHOOK_ADDR" \
            -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
        printf 'subjectAltName=IP:%s\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n' \
            "$WEBHOOK_ADDR" >"$d/server.ext"
        openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
            -days 3650 -extfile "$d/server.ext" -out "$d/server.crt" 2>/dev/null
    ) 9>"$d.lock"
    [ "$(realpath -m "$d")" = "$(realpath -m "$CACHE/tls")" ] && return 0
    if ! cmp -s "$d/server.crt" "$CACHE/tls/server.crt"; then
        rm -rf "$CACHE/tls" && mkdir -p "$CACHE" && cp -a "$d" "$CACHE/tls"
    fi
}

# prepare_simcloud: everything a busybox-VM boot needs, once per run: the kernel, the static
# agent, the stock VM's initramfs, the test CA, the installer fixture and the shared rootfs.
prepare_simcloud() {
    pick_kernel
    build_agent
    build_fresh_initrd
    build_tls
    build_installer
    build_base_rootfs
}

# The part of the stock image's root filesystem every scenario shares.
build_base_rootfs() {
    local dir=$CACHE/rootfs-base
    rm -rf "$dir" && mkdir -p "$dir"/{proc,sys,dev,run,tmp,root/.ssh,etc/nixos-lift,etc/ssl/certs,usr/local/bin,var/lib/nixos-lift}
    add_busybox "$dir"
    for d in sbin usr/bin usr/sbin; do mkdir -p "$dir/$d"; done
    cp "$VM_SRC/guest/init" "$dir/sbin/init"
    mkdir -p "$dir/lib/simcloud" && cp "$VM_SRC/guest/disk-by-id.sh" "$dir/lib/simcloud/"
    cp "$VM_SRC/guest/udhcpc.script" "$dir/etc/udhcpc.script"
    cp "$AGENT" "$dir/usr/local/bin/nixos-lift"
    # The host's roots plus the test CA: stage 1 posts its progress to the webhook receiver too.
    cat /etc/ssl/certs/ca-certificates.crt "$CACHE/tls/ca.crt" >"$dir/etc/ssl/certs/ca-certificates.crt"
    ln -s ../run/resolv.conf "$dir/etc/resolv.conf"
    cat >"$dir/etc/os-release" <<'OS'
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
OS
    echo "0123456789abcdef0123456789abcdef" >"$dir/etc/machine-id"
    echo "root:x:0:0:root:/root:/bin/sh" >"$dir/etc/passwd"
    echo "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHNpbWNsb3VkLWV4aXN0aW5nLXJvb3Qta2V5LTAwMDE existing-root-key" \
        >"$dir/root/.ssh/authorized_keys"
    chmod 700 "$dir/root/.ssh"
    # Host keys as a cloud image's first boot makes them: keep_host_keys carries them over.
    mkdir -p "$dir/etc/ssh"
    ssh-keygen -q -A -f "$dir" >/dev/null
}

# mk_disk OUT [ROOTDIR]: a sparse GPT disk image of DISK_SIZE; with ROOTDIR, partition 1 is an
# ext4 filesystem made from it (mke2fs -d: no loop devices, no root needed for mounting).
mk_disk() {
    local out=$1 rootdir=${2:-} part_mib=96
    rm -f "$out"
    truncate -s "$DISK_SIZE" "$out"
    [ -n "$rootdir" ] || return 0
    printf 'label: gpt\nstart=2048, size=%d, type=0FC63DAF-8483-4772-B47D-6983DE4798E4, name="cloudimg-rootfs"\n' \
        $((part_mib * 2048)) | sfdisk -q "$out" >/dev/null
    mke2fs -q -F -t ext4 -L cloudimg-rootfs -d "$rootdir" "$out.part" "${part_mib}M" >/dev/null
    dd if="$out.part" of="$out" bs=1M seek=1 conv=notrunc,sparse status=none
    rm -f "$out.part"
}

# build_stock_disks: the stock image's disk (the shared root filesystem plus this scenario's
# config and settings) and the optional data volume, with their digests for the no-write check.
build_stock_disks() {
    local rootdir=$RUN/rootfs
    cp -a "$CACHE/rootfs-base" "$rootdir"
    write_config "$RUN/config.yaml"
    cp "$RUN/config.yaml" "$rootdir/etc/nixos-lift/config.yaml"
    {
        printf 'SIMCLOUD_NET=%q\nSIMCLOUD_STATIC_ADDRS=%q\n' "$VM_NET" "$VM_STATIC_ADDRS"
        printf 'SIMCLOUD_STATIC_GW=%q\nSIMCLOUD_DNS=%q\n' "$VM_STATIC_GW" "$VM_DNS"
        printf 'SIMCLOUD_HOSTNAME=%q\nSIMCLOUD_COMMAND=%q\n' "$VM_HOSTNAME" "$VM_COMMAND"
    } >"$rootdir/etc/simcloud.env"
    mk_disk "$RUN/root.img" "$rootdir"
    rm -rf "$rootdir"
    disk_digest "$RUN/root.img" >"$RUN/root.digest"
    if [ "$VM_DATA_DISK" = yes ]; then
        mk_disk "$RUN/data.img"
        printf 'a data volume: stage 1 must leave it alone\n' | dd of="$RUN/data.img" conv=notrunc status=none
        disk_digest "$RUN/data.img" >"$RUN/data.digest"
    fi
}

# disk_digest FILE: sha256 over every data extent of a sparse image, with its offset. Any write
# to the image (zeros included: they allocate) changes it; holes cost nothing to read.
disk_digest() {
    python3 - "$1" <<'PY'
import hashlib, os, sys
h = hashlib.sha256()
fd = os.open(sys.argv[1], os.O_RDONLY)
end = os.fstat(fd).st_size
pos = 0
while pos < end:
    try:
        data = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError:
        break
    hole = os.lseek(fd, data, os.SEEK_HOLE)
    h.update(f"{data}:{hole}\n".encode())
    os.lseek(fd, data, os.SEEK_SET)
    left = hole - data
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        h.update(chunk)
        left -= len(chunk)
    pos = hole
h.update(f"size:{end}\n".encode())
print(h.hexdigest())
PY
}

# ---- host-side servers (per scenario) -------------------------------------------------------

# wait_port_file FILE: prints the port a server wrote there.
wait_port_file() {
    for _ in $(seq 200); do
        [ -s "$1" ] && { cat "$1"; return 0; }
        sleep 0.1
    done
    die "server did not write $1"
}

# start_metadata PROVIDER: tests/fakecloud/server.py for PROVIDER; sets METADATA_PORT.
start_metadata() {
    [ -f "$FAKECLOUD" ] || die "the fake metadata server $FAKECLOUD is missing"
    python3 "$FAKECLOUD" --provider "$1" --port-file "$RUN/metadata.port" --log "$RUN/metadata.log" \
        "${METADATA_ARGS[@]}" >"$RUN/metadata.out" 2>&1 &
    _pids+=($!)
    METADATA_PORT=$(wait_port_file "$RUN/metadata.port")
}

# start_release: tests/vm/release_server.py over $CACHE/www (FLEET_PRIVATE_PREFIX only with
# the access token); sets RELEASE_PORT.
start_release() {
    : >"$RUN/release.log"
    # The fleet scenarios' private binary cache wants this run's access token.
    (umask 077 && printf '%s\n' "$ACCESS_TOKEN" >"$RUN/access-token")
    python3 "$VM_SRC/release_server.py" --dir "$CACHE/www" --log "$RUN/release.log" \
        --port-file "$RUN/release.port" --private-prefix "${FLEET_PRIVATE_PREFIX:-/private/}" \
        --token-file "$RUN/access-token" >"$RUN/release.out" 2>&1 &
    _pids+=($!)
    RELEASE_PORT=$(wait_port_file "$RUN/release.port")
}

# start_webhook: tests/vm/webhook_receiver.py (HTTPS, the test CA's certificate); sets
# WEBHOOK_PORT. Its log is $RUN/webhook.log, one JSON line per request.
start_webhook() {
    python3 "$VM_SRC/webhook_receiver.py" --cert "$CACHE/tls/server.crt" --key "$CACHE/tls/server.key" \
        --log "$RUN/webhook.log" --port-file "$RUN/webhook.port" >"$RUN/webhook.out" 2>&1 &
    _pids+=($!)
    WEBHOOK_PORT=$(wait_port_file "$RUN/webhook.port")
}

# ---- the VM ---------------------------------------------------------------------------------

# boot_vm: boots the fresh VM of the current scenario (variables set by the scenario), with the
# serial console in $RUN/console.log and on stdout. Sets VM_STATUS (QEMU's exit status; 124 on
# timeout).
boot_vm() {
    local netdev args
    netdev=$(simcloud_netdev)
    args=("${QEMU_MACHINE[@]}" -accel tcg -smp 1 -m "$VM_MEMORY" -nodefaults -display none -serial stdio -no-reboot
        -pidfile "$RUN/qemu.pid"
        -netdev "$netdev" -device "virtio-net-pci,netdev=n0,mac=$VM_MAC")
    if [ "$VM_BOOT" = installer ]; then
        # Straight into the installer fixture with a handoff the harness wrote (self-test).
        args+=(-kernel "$CACHE/installer/kexec/bzImage" -initrd "$RUN/installer-initrd"
            -append "init=/init $(fixture_params) $VM_APPEND")
    else
        # The root disk on virtio (vda) or, as on Graviton and other Nitro machines, NVMe.
        local root_dev=/dev/vda1 root_device="virtio-blk-pci,drive=root,serial=$ROOT_SERIAL"
        if [ "$VM_ROOT_BUS" = nvme ]; then
            root_dev=/dev/nvme0n1p1
            root_device="nvme,drive=root,serial=$ROOT_SERIAL"
        fi
        args+=(-kernel "$VMLINUZ" -initrd "$CACHE/fresh-initrd.gz"
            -append "console=$CONSOLE root=$root_dev ro quiet panic=-1 $VM_APPEND"
            -drive "file=$RUN/root.img,format=raw,if=none,id=root"
            -device "$root_device")
    fi
    local s
    for s in "${VM_SMBIOS[@]+"${VM_SMBIOS[@]}"}"; do args+=(-smbios "$s"); done
    # The installer fixture's per-scenario faults (tests/vm/installer/init).
    if [ -n "$VM_FIXTURE_CONTROL" ]; then
        args+=(-fw_cfg "name=opt/nixos-lift/fixture,string=$VM_FIXTURE_CONTROL")
    fi
    if [ "$VM_DATA_DISK" = yes ]; then
        args+=(-drive "file=$RUN/data.img,format=raw,if=none,id=data"
            -device "virtio-blk-pci,drive=data,serial=$DATA_SERIAL")
    fi
    if [ "$VM_FIRMWARE" = uefi ] && [ "$ARCH" = aarch64 ]; then
        # The virt machine publishes SMBIOS only through its UEFI firmware.
        args+=(-bios "$AARCH64_QEMU_EFI")
    elif [ "$VM_FIRMWARE" = uefi ]; then
        cp "$OVMF_VARS" "$RUN/ovmf-vars.fd"
        args+=(-drive "if=pflash,format=raw,readonly=on,file=$OVMF_CODE"
            -drive "if=pflash,format=raw,file=$RUN/ovmf-vars.fd")
    fi
    printf '%q ' "$QEMU" "${args[@]}" >"$RUN/qemu.cmd"
    log "booting $ARCH: $VM_FIRMWARE, ${VM_MEMORY} MiB, ${VM_SMBIOS[0]:-no smbios} (timeout ${VM_TIMEOUT}s; command in $RUN/qemu.cmd)"
    set +e
    timeout -k 5 "$VM_TIMEOUT" "$QEMU" "${args[@]}" </dev/null 2>&1 | tee "$RUN/console.raw" |
        strip_console | tee "$RUN/console.log" | sed -u 's/^/    | /'
    VM_STATUS=${PIPESTATUS[0]}
    set -e
    rm -f "$RUN/qemu.pid"
    [ "$VM_STATUS" = 124 ] && log "TIMEOUT after ${VM_TIMEOUT}s: QEMU killed"
    return 0
}

# strip_console: the serial console as text: no carriage returns, no escape sequences (the
# firmware's and systemd's; the raw stream stays in $RUN/console.raw for expect_plain_agent_lines).
strip_console() { sed -u 's/\r//g; s/\x1b\[[0-9;=?]*[A-Za-z]//g'; }

# ---- assertions -----------------------------------------------------------------------------

FAILS=0
pass() { printf '[simcloud]   ok   %s\n' "$*"; }
fail() {
    printf '[simcloud]   FAIL %s\n' "$*"
    FAILS=$((FAILS + 1))
}
# run_checks FN: a scenario's checks in a subshell with errexit on, so a command that stops
# them early (readlink of a missing link, say) is one more failure instead of the end of the
# whole run; the next scenario and the summary still come.
run_checks() {
    local rc
    set +e
    (
        trap 'echo "$FAILS" >"$RUN/.fails"' EXIT
        set -e
        "$1"
    )
    rc=$?
    set -e
    FAILS=$(cat "$RUN/.fails")
    [ "$rc" = 0 ] || fail "$1 stopped early at a failing command (exit $rc); its later checks did not run"
}
# expect WHAT ERE: the serial console has a line matching ERE.
expect() {
    if grep -Eq -- "$2" "$RUN/console.log"; then pass "$1"; else fail "$1 (no console line matches /$2/)"; fi
}
# expect_i WHAT ERE: as expect, case-insensitive.
expect_i() {
    if grep -Eiq -- "$2" "$RUN/console.log"; then pass "$1"; else fail "$1 (no console line matches /$2/i)"; fi
}
# expect_not WHAT ERE: no console line matches ERE.
expect_not() {
    if grep -Eq -- "$2" "$RUN/console.log"; then fail "$1 (console: $(grep -Em1 -- "$2" "$RUN/console.log"))"; else pass "$1"; fi
}
# console_value PREFIX: the rest of the first console line starting with PREFIX.
console_value() { { grep -m1 -- "^$1" "$RUN/console.log" | cut -c$((${#1} + 1))-; } || true; }

expect_exit() {
    local got
    got=$(console_value "fresh-vm: nixos-lift exited ")
    if [ "$got" = "$1" ]; then pass "nixos-lift run exited $1 ($2)"; else fail "nixos-lift run exit status: want $1 ($2), got '${got:-none: it never returned}'"; fi
}
expect_kexec() {
    expect "kexec happened: the installer fixture booted" '^installer-fixture: booted '
    expect_not "nixos-lift run did not return in the stock image" '^fresh-vm: nixos-lift exited'
}
expect_no_kexec() { expect_not "no kexec: the installer fixture never booted" '^installer-fixture: booted'; }
expect_vm_exit() {
    if [ "$VM_STATUS" = 0 ]; then pass "the VM powered off by itself"; else fail "the VM did not power off (QEMU status $VM_STATUS)"; fi
}
# expect_no_download: nothing was downloaded: no request but HEAD (stage 1 asking the
# installer's size) reached the release server.
expect_no_download() {
    local other
    other=$(grep -v '^HEAD ' "$RUN/release.log" | tr '\n' ';' || true)
    if [ -n "$other" ]; then
        fail "nothing was downloaded (release server log: $other)"
    elif [ -s "$RUN/release.log" ]; then
        pass "nothing was downloaded (the release server saw only: $(tr '\n' ';' <"$RUN/release.log"))"
    else
        pass "no request reached the release server"
    fi
}
expect_download() {
    if grep -q "^GET /$INSTALLER_FILE 20" "$RUN/release.log"; then pass "the installer $INSTALLER_FILE was downloaded"; else fail "the installer $INSTALLER_FILE was not downloaded"; fi
}
# expect_size_asked: stage 1's first request for the installer was a HEAD (the size it plans
# memory with), answered 200 with Content-Length (release_server.py).
expect_size_asked() {
    if [ "$(grep -m1 " /$INSTALLER_FILE " "$RUN/release.log")" = "HEAD /$INSTALLER_FILE 200" ]; then
        pass "stage 1 asked the installer's size first (HEAD answered 200)"
    else
        fail "stage 1's first request for $INSTALLER_FILE was not a HEAD (log: $(tr '\n' ';' <"$RUN/release.log"))"
    fi
}
# expect_staging_removed: after `nixos-lift run` returned, no tmpfs under /run/nixos-lift and no
# staged file under /run/nixos-lift/work or /var/lib/nixos-lift/staging (tests/vm/guest/init).
expect_staging_removed() {
    expect "stage 1 left no staging behind (no work mount, no staged file)" \
        '^fresh-vm: after exit: work mounts: none; staged files: none$'
}
# console_mib ERE: the first number in the first console text matching ERE (for arithmetic and notes).
console_mib() { { grep -Eom1 -- "$1" "$RUN/console.log" | grep -Eo '[0-9]+' | head -n1; } || true; }
# The digests taken after building the disks, compared with the images after the run.
expect_disks_untouched() {
    local f
    for f in root data; do
        [ -f "$RUN/$f.img" ] || continue
        if [ "$(disk_digest "$RUN/$f.img")" = "$(cat "$RUN/$f.digest")" ]; then
            pass "$f disk image unchanged (sha256 of its data)"
        else
            fail "$f disk image CHANGED: stage 1 wrote to a disk"
        fi
    done
}

# ---- stage 2 in the installer fixture -------------------------------------------------------

# extract_records: the records the fixture printed between its markers (tests/vm/installer/init),
# checked against their sha256 and unpacked into $RUN/records. Fails when they are missing.
extract_records() {
    local want got
    rm -rf "$RUN/records" && mkdir -p "$RUN/records"
    want=$(sed -n 's/^installer-fixture: records-begin sha256=\([0-9a-f]*\) .*/\1/p' "$RUN/console.log" | head -n1)
    sed -n 's/^installer-fixture: records: //p' "$RUN/console.log" | base64 -d >"$RUN/records.tgz" 2>/dev/null
    got=$(sha256sum <"$RUN/records.tgz" | cut -d' ' -f1)
    if [ -n "$want" ] && [ "$got" = "$want" ] && tar -C "$RUN/records" -xzf "$RUN/records.tgz"; then
        pass "the fixture's records reached the host intact ($(find "$RUN/records" -type f | wc -l) files)"
    else
        fail "the fixture's records did not reach the host (sha256 want '${want:-none}', got $got)"
        return 1
    fi
}

# expect_in_file WHAT FILE TEXT: FILE contains TEXT (a fixed string).
expect_in_file() {
    if grep -qF -- "$3" "$2" 2>/dev/null; then pass "$1"; else fail "$1 (no '$3' in ${2#"$RUN"/})"; fi
}

# record_files TOOL: the argv records of TOOL's runs, in order.
record_files() { ls "$RUN/records/doubles/bin/records/"*"-$1.argv" 2>/dev/null || true; }

# expect_tool_order TOOL...: the doubles ran exactly in this order (nix runs by first argument:
# nix-eval, nix-build, nix-copy).
expect_tool_order() {
    local got="" f tool
    for f in "$RUN/records/doubles/bin/records/"*.argv; do
        [ -e "$f" ] || continue
        tool=$(basename "$f" .argv)
        tool=${tool#*-}
        [ "$tool" = nix ] && tool="nix-$(head -n1 "$f")"
        got+="$tool "
    done
    if [ "${got% }" = "$*" ]; then pass "the tools ran in order: $*"; else fail "the tools ran as '${got% }', wanted '$*'"; fi
}

# expect_argv TOOL WANT...: the (only) run of TOOL had exactly these arguments.
expect_argv() {
    local tool=$1 f got
    shift
    f=$(record_files "$tool" | tail -n1)
    got=$(tr '\n' ' ' <"${f:-/dev/null}")
    if [ -n "$f" ] && [ "${got% }" = "$*" ]; then pass "$tool argv: $*"; else fail "$tool argv: got '${got% }', wanted '$*'"; fi
}

# expect_argv_n TOOL N WANT...: TOOL's run number N (from 0) had exactly these arguments.
expect_argv_n() {
    local tool=$1 n=$2 f got
    shift 2
    f=$(record_files "$tool" | sed -n "$((n + 1))p")
    got=$(tr '\n' ' ' <"${f:-/dev/null}")
    if [ -n "$f" ] && [ "${got% }" = "$*" ]; then pass "$tool run $n argv: $*"; else fail "$tool run $n argv: got '${got% }', wanted '$*'"; fi
}

# expect_flake_files HOSTNAME ATTR: the wrapper flake and the facts module stage 2 generated
# parse as Nix (Debian's nix-instantiate) and carry this machine's hostname, key and disk.
expect_flake_files() {
    local dir=$RUN/records/run/nixos-lift/flake f
    for f in flake.nix nixos-lift-facts.nix; do
        [ -f "$dir/$f" ] || { fail "stage 2 wrote no $f"; continue; }
        if ! command -v nix-instantiate >/dev/null; then
            fail "nix-instantiate missing (tests/vm/setup.sh installs nix-bin): $f not parsed"
        elif nix-instantiate --parse "$dir/$f" >/dev/null 2>"$RUN/parse.err"; then
            pass "$f parses (nix-instantiate --parse)"
        else
            fail "$f does not parse: $(head -n3 "$RUN/parse.err")"
        fi
    done
    expect_in_file "the wrapper flake's input is the user's flake" "$dir/flake.nix" \
        "inputs.user.url = \"git+http://$RELEASE_ADDR/example.git\";"
    expect_in_file "the wrapper extends nixosConfigurations.$2" "$dir/flake.nix" \
        "nixosConfigurations.\"$2\" = base.extendModules"
    expect_in_file "the facts module sets the hostname $1" "$dir/nixos-lift-facts.nix" \
        "networking.hostName = lib.mkDefault \"$1\";"
    expect_in_file "the facts module carries the config's SSH key" "$dir/nixos-lift-facts.nix" "\"$CONFIG_KEY\""
    expect_in_file "the facts module points disko at the root disk by id" "$dir/nixos-lift-facts.nix" \
        "diskDevice = \"$(root_disk_by_id)\";"
}

# expect_no_secrets: neither token of this run appears on the console or in any record (argv,
# environment, files handed to the doubles, install log, trail), and the private nix.conf
# reached nix by path with its access-tokens setting, mode 0600.
expect_no_secrets() {
    local t where
    for t in "$ACCESS_TOKEN" "$WEBHOOK_TOKEN"; do
        where=$( (grep -lF -- "$t" "$RUN/console.log"; grep -rlF -- "$t" "$RUN/records") 2>/dev/null | tr '\n' ' ' || true)
        if [ -z "$where" ]; then pass "the secret ${t:0:8}... is in no console line and no record"; else fail "the secret ${t:0:8}... leaked into: $where"; fi
    done
    if grep -hq "nix/nix.conf mode=600 settings=.*access-tokens" "$RUN/records/doubles/bin/records/"*-nix.files 2>/dev/null; then
        pass "nix got the private nix.conf (mode 600, with access-tokens) by path"
    else
        fail "nix did not get a private nix.conf with access-tokens"
    fi
}

# expect_webhook [STAGE:]PHASE:STATUS...: the receiver got exactly these events, in order, each
# with the bearer token, all naming one machine (instance id and host name). Stage 2's events
# are PHASE:STATUS, other stages' carry their number (`1:plan:running`). Delivery is at least
# once: an event retried after a timed-out answer may arrive twice in a row, and counts once.
expect_webhook() {
    local got
    got=$(python3 - "$RUN/webhook.log" "$WEBHOOK_TOKEN" <<'PY'
import json, sys
events, bad, machines = [], 0, set()
for line in open(sys.argv[1]):
    e = json.loads(line)
    bad += e["authorization"] != "Bearer " + sys.argv[2] or e["path"] != "/events"
    b = e["body"]
    machines.add((b["instance_id"], b["hostname"]))
    event = ("" if b["stage"] == 2 else f'{b["stage"]}:') + f'{b["phase"]}:{b["status"]}'
    if not events or events[-1] != event:
        events.append(event)
print(f"{bad} {len(machines)} {' '.join(events)}")
PY
)
    local bad=${got%% *} rest=${got#* }
    local machines=${rest%% *} events=${rest#* }
    if [ "$bad" = 0 ] && [ "$machines" -le 1 ] && [ "$events" = "$*" ]; then
        pass "the webhook received, in order, each with the bearer token: ${*:-nothing}"
    else
        fail "webhook: got '$events' ($bad without the token, $machines machines), wanted '$*'"
    fi
}
# Stage 1's events, from the stock image before the kexec.
WEBHOOK_STAGE1="1:plan:running 1:download:running 1:handoff:running 1:kexec:running 1:jump:running"
WEBHOOK_DONE="$WEBHOOK_STAGE1 handoff:running network:running disk:running compose:running partition:running install:running trail:running done:done"
WEBHOOK_REBOOT=${WEBHOOK_DONE/done:done/reboot:running done:done}

# expect_stage1_progress LAST [FAILED-ERE]: stage 1 printed its phase lines 1/5 to LAST on the
# stock image's console, in the documented shape, and, with FAILED-ERE, a failure line for
# phase LAST matching it.
expect_stage1_progress() {
    local n phase phases=("identifying this machine" "downloading and verifying the installer"
        "building the handoff" "loading the installer kernel" "jumping into the installer")
    for n in $(seq "$1"); do
        phase=${phases[$((n - 1))]}
        expect "stage 1 phase $n/5: $phase" "^nixos-lift: \\[$n/5\\] $phase.* \\.\\.\\.\$"
    done
    [ -z "${2:-}" ] || expect "stage 1's failure line names phase $1/5" "^nixos-lift: failed at \\[$1/5\\] [a-z]+: $2"
}

# expect_guest_attribute VALUE...: the GCE guest attribute nixos-lift/status took these values
# last, in order (a retried PUT counts once), every PUT with `Metadata-Flavor: Google` (the fake
# metadata service refuses one without) and stored.
expect_guest_attribute() {
    local got
    got=$(python3 - "$RUN/metadata.log" <<'PY'
import json, sys
values, bad = [], 0
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e["method"] != "PUT" or not e["path"].endswith("/instance/guest-attributes/nixos-lift/status"):
        continue
    bad += e["headers"].get("metadata-flavor") != "Google" or e["status"] != 200
    if e.get("value") is not None and (not values or values[-1] != e["value"]):
        values.append(e["value"])
print(f"{bad} {'|'.join(values)}")
PY
)
    local want
    want=$(IFS='|'; echo "$*")
    if [ "${got%% *}" = 0 ] && [[ "|${got#* }" == *"|$want" ]]; then
        pass "the guest attribute nixos-lift/status was set, in order, ending: $*"
    else
        fail "guest attribute: got '${got#* }' (${got%% *} PUTs refused or without Metadata-Flavor), wanted it to end '$want'"
    fi
}

# root_disk, root_disk_by_id, root_disk_match: the stock image's root disk as the guests name it,
# on VM_ROOT_BUS, and the strongest identity stage 2 finds it by (virtio: vda, virtio-SERIAL, the
# serial; nvme: nvme0n1, udev's nvme-MODEL_SERIAL with QEMU's model, the namespace's WWN).
root_disk_match() { if [ "${VM_ROOT_BUS:-virtio}" = nvme ]; then echo wwn; else echo serial; fi; }
root_disk() { if [ "${VM_ROOT_BUS:-virtio}" = nvme ]; then echo /dev/nvme0n1; else echo /dev/vda; fi; }
root_disk_by_id() {
    if [ "${VM_ROOT_BUS:-virtio}" = nvme ]; then
        echo "/dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_$ROOT_SERIAL"
    else
        echo "/dev/disk/by-id/virtio-$ROOT_SERIAL"
    fi
}

# expect_stage2_done ATTR [reboot]: stage 2 ran every phase to `nixos-lift: done` and returned
# to the fixture with 0 (reboot: false), or with `reboot` (reboot: true) rebooted the VM
# (expect_reboot).
expect_stage2_done() {
    local n phase disk done_re
    disk=$(root_disk)
    done_re="^nixos-lift: done: installed git\\+http://$RELEASE_ADDR/example\\.git#$1 on $disk"
    n=0
    for phase in "reading the handoff" "restoring the network" "finding the target disk" "composing" \
        "partitioning $disk \\(disko\\)" "installing" "leaving a trail"; do
        n=$((n + 1))
        expect "stage 2 phase $n/8: $phase" "^nixos-lift: \\[$n/8\\] $phase"
    done
    if [ "${2:-}" = reboot ]; then
        expect "stage 2 printed done, rebooting" "$done_re; rebooting\$"
        expect_reboot
    else
        expect "stage 2 printed done" "$done_re; not rebooting \\(reboot: false\\)"
        expect "stage 2 exited 0 in the installer" '^installer-fixture: nixos-lift install exited 0$'
        expect "the installer fetched a URL from the host through the network stage 2 restored" \
            "^installer-fixture: probe http://$RELEASE_ADDR/probe.txt -> probe-ok $PROBE_TOKEN\$"
    fi
    expect "the target disk was found again by $(root_disk_match)" "^nixos-lift: target disk $disk matched by $(root_disk_match) \\($(root_disk_by_id)\\)"
    expect "stage 2 waited for the flake host and substituter" "^nixos-lift: network: reachable $RELEASE_ADDR:80\$"
}

# expect_in_order WHAT ERE...: console lines match the EREs in this order (each on a later line).
expect_in_order() {
    local what=$1 re after=0 at
    shift
    for re in "$@"; do
        at=$(tail -n +$((after + 1)) "$RUN/console.log" | grep -Enm1 -- "$re" | cut -d: -f1 || true)
        if [ -z "$at" ]; then
            fail "$what (no console line after line $after matches /$re/)"
            return
        fi
        after=$((after + at))
    done
    pass "$what"
}

# expect_reboot: stage 2 (reboot: true) announced the reboot, released what the disko double
# mounted (tmpfs on /mnt and /mnt/boot, fixture control mount-target=/mnt), synced, and the
# kernel restarted the VM: QEMU runs with -no-reboot, so it exited 0 on the guest's reset, not
# on a timeout, a panic or the fixture's poweroff after stage 2 returned.
expect_reboot() {
    expect "stage 2 phase 8/8: rebooting" '^nixos-lift: \[8/8\] rebooting into NixOS'
    expect "the disko double's mounts were there to release" '^installer-fixture: control: mount-target=/mnt$'
    expect "stage 2 unmounted everything under /mnt, deepest first" '^nixos-lift: reboot: unmounted /mnt/boot /mnt$'
    expect_in_order "then done, the unmount, sync and the kernel's restart, in that order" \
        '^nixos-lift: \[8/8\] rebooting' '^nixos-lift: done: ' '^nixos-lift: reboot: unmounted ' \
        '^nixos-lift: reboot: synced$' '(^|\] )reboot: Restarting system'
    expect_not "stage 2 never returned to the fixture" '^installer-fixture: (nixos-lift install exited|end )'
    expect_not "no kernel panic" 'Kernel panic'
    expect_not "no poweroff (the fixture's way out)" 'reboot: Power down'
    if [ "$VM_STATUS" = 0 ]; then pass "QEMU exited 0 on the guest's reboot (-no-reboot)"; else fail "QEMU status $VM_STATUS, wanted 0 from the guest's reboot"; fi
}

# expect_stage2_install HOSTNAME ATTR: every recorded command and generated file of a flake
# install (evaluation, disko on the target disk, nixos-install of the wrapper flake).
expect_stage2_install() {
    extract_records || return 0
    expect_tool_order nix-eval nix-build nix-eval disko-script nixos-install
    expect_argv nixos-install --root /mnt --flake "path:/run/nixos-lift/flake#$2" --no-root-passwd --no-channel-copy
    expect_flake_files "$1" "$2"
    expect_no_secrets
    if [ -f "$RUN/records/mnt/etc/nixos/flake.nix" ] && grep -q "^flake=git+http://$RELEASE_ADDR/example.git#$2\$" "$RUN/records/mnt/etc/nixos-lift/installed" 2>/dev/null; then
        pass "the trail: /etc/nixos holds the wrapper flake, /etc/nixos-lift/installed names the flake"
    else
        fail "the trail in /mnt/etc is incomplete"
    fi
}

# expect_update_trail INTERVAL ATTR: day 2 was on. The trail's facts.json on the target names
# the update settings (the flake with {arch} resolved, the interval, the caches, the webhook),
# and the secrets went only into the root-only files that nix.conf includes (the fixture
# reports their modes and setting names, never their contents).
expect_update_trail() {
    local facts="$RUN/records/mnt/etc/nixos-lift/facts.json" got
    got=$(jq -r '.install.update | [.flake, .attr, .interval, (.reboot | tostring), .substituters[0], .webhook_url, .nix_conf] | join(" ")' "$facts" 2>/dev/null || true)
    if [ "$got" = "git+http://$RELEASE_ADDR/example.git $2 $1 false $CONFIG_SUBSTITUTER https://$WEBHOOK_ADDR/events /etc/nixos-lift/nix-private.conf" ]; then
        pass "the trail's facts.json names the update settings: $got"
    else
        fail "the trail's facts.json lacks the update settings (got '$got')"
    fi
    expect "stage 2 wrote the update's root-only files" \
        "^nixos-lift: update: every $1 \\(switch\\), 3 root-only file\\(s\\): /etc/nixos-lift/nix-private.conf /etc/nixos-lift/netrc /etc/nixos-lift/webhook-token$"
    expect "the access tokens are in a 0600 nix.conf fragment" \
        '^installer-fixture: private file: /mnt/etc/nixos-lift/nix-private.conf mode=600 settings=access-tokens netrc-file $'
    expect "the webhook token is in a 0600 file" '^installer-fixture: private file: /mnt/etc/nixos-lift/webhook-token mode=600 '
}

# plan_hostname: the host name in stage 1's plan, as the installer fixture printed it.
plan_hostname() { console_value "installer-fixture: plan-compact: " | python3 -c 'import json,sys; print(json.load(sys.stdin)["hostname"])' 2>/dev/null; }

# ---- shared by tests/vm/takeover.sh and tests/debian/takeover.sh ----------------------------

# parse_takeover_args SCENARIOS ARG...: the takeover scripts' command line. Sets setup (yes|no),
# quiet (yes|no) and wanted (the scenarios to run, from SCENARIOS); prints the help (the
# script's header comment), the scenario list or a usage error and exits where the line asks.
parse_takeover_args() {
    local all=$1 prog arg names
    shift
    prog=${0#"$REPO_ROOT"/}
    setup=yes
    quiet=no
    wanted=()
    for arg in "$@"; do
        case $arg in
            --no-setup) setup=no ;;
            -q) quiet=yes ;;
            list) echo "$all" | tr ' ' '\n'; exit 0 ;;
            all) read -ra names <<<"$all" && wanted+=("${names[@]}") ;;
            -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
            *)
                if [[ " $all " == *" $arg "* ]]; then
                    wanted+=("$arg")
                else
                    echo "$prog: unknown scenario '$arg' (one of: $all, all)" >&2
                    exit 2
                fi
                ;;
        esac
    done
    [ ${#wanted[@]} -gt 0 ] || { echo "usage: $prog [--no-setup] [-q] SCENARIO...|all|list" >&2; exit 2; }
}

# simcloud_netdev: QEMU's -netdev for the network described at the top of this file: slirp,
# restricted to the guestfwd relays to this scenario's servers (the webhook's once started).
simcloud_netdev() {
    local relay="python3 $VM_SRC/relay.py" netdev
    netdev="user,id=n0,restrict=on,net=169.254.0.0/16,host=169.254.0.2,dhcpstart=169.254.0.15"
    netdev+=",guestfwd=tcp:$METADATA_ADDR:80-cmd:$relay $METADATA_PORT"
    netdev+=",guestfwd=tcp:$RELEASE_ADDR:80-cmd:$relay $RELEASE_PORT"
    [ -z "${WEBHOOK_PORT:-}" ] || netdev+=",guestfwd=tcp:$WEBHOOK_ADDR:443-cmd:$relay $WEBHOOK_PORT"
    echo "$netdev"
}

# begin_scenario NAME DEFAULTS PREFIX: sets SCENARIO and a fresh run directory RUN, then the
# scenario's variables: the function DEFAULTS, then PREFIX_NAME.
begin_scenario() {
    SCENARIO=$1
    RUN=$CACHE/runs/$SCENARIO
    rm -rf "$RUN" && mkdir -p "$RUN"
    "$2"
    "$3_$SCENARIO"
}

# expect_plain_agent_lines: no line nixos-lift wrote to the serial console carries an escape
# byte. Its lines are found in the stripped text (stage 1's and stage 2's `nixos-lift: ...`
# and log lines, bare, behind the journal's `ident[pid]: ` on the console, or relayed by the
# installer fixture's `installer-fixture: check: `) and checked in the raw stream from that
# prefix on: the firmware's and systemd's own escapes stay allowed, also on the same line
# (systemd 257 on the ubuntu-shaped image resets and sizes the console with `ESC[!p ESC[6n`
# in front of a journal line).
expect_plain_agent_lines() {
    local out
    if out=$(python3 - "$RUN/console.raw" <<'PY'
import re, sys
escape = re.compile(rb"\x1b\[[0-9;=?]*[A-Za-z]")
agent = re.compile(
    rb"(^|\S\[[0-9]+\]: |installer-fixture: check: )"
    rb"(nixos-lift(-bootstrap)?: | ?(TRACE|DEBUG|INFO|WARN|ERROR) )")
prefix = re.compile(rb"\S\[[0-9]+\]: |installer-fixture: check: ")
seen = bad = 0
for raw in open(sys.argv[1], "rb").read().replace(b"\r", b"").split(b"\n"):
    if agent.search(escape.sub(b"", raw)):
        seen += 1
        relayed = prefix.search(raw)
        if b"\x1b" in (raw[relayed.end():] if relayed else raw):
            bad += 1
            if bad == 1:
                print("escape byte in: %r" % raw[:160])
print("%d of %d agent lines carry escapes" % (bad, seen))
sys.exit(1 if bad or not seen else 0)
PY
    ); then
        pass "no escape byte in nixos-lift's console lines (${out##*$'\n'})"
    else
        fail "nixos-lift's console lines are plain text: ${out//$'\n'/; }"
    fi
}

# end_scenario BEFORE TAIL [NOTE [FAIL_NOTE]]: stops this scenario's servers and adds PASS or
# FAIL (FAILS was BEFORE when its checks began) to RESULTS, with NOTE (and FAIL_NOTE) appended;
# under -q a failure also shows the serial console's last TAIL lines. Every booted scenario
# gets expect_plain_agent_lines.
end_scenario() {
    local before=$1 lines=$2 note=${3:-} fail_note=${4:-} pid
    [ ! -f "$RUN/console.raw" ] || expect_plain_agent_lines
    for pid in "${_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    _pids=()
    if [ "$FAILS" = "$before" ]; then
        RESULTS+=("PASS $SCENARIO$note")
        return 0
    fi
    RESULTS+=("FAIL $SCENARIO$note$fail_note")
    if [ "$quiet" = yes ]; then
        log "scenario $SCENARIO: last $lines lines of the serial console:"
        tail -n "$lines" "$RUN/console.log" | sed 's/^/    | /'
    fi
}

# expect_not_in_file WHAT FILE TEXT: FILE exists and does not contain TEXT (a fixed string).
expect_not_in_file() {
    if [ ! -f "$2" ]; then
        fail "$1 (no ${2#"$RUN"/})"
    elif grep -qF -- "$3" "$2"; then
        fail "$1 ('$3' in ${2#"$RUN"/})"
    else
        pass "$1"
    fi
}

# facts_module: the facts module stage 2 generated, as the installer fixture's records hold it.
facts_module() { echo "$RUN/records/run/nixos-lift/flake/nixos-lift-facts.nix"; }

# metadata_requests PATH_ERE AGENT_ERE [METHOD]: how many METHOD (default GET) requests for a
# path matching PATH_ERE, answered 200, came from a client whose User-Agent matches AGENT_ERE
# (the metadata server's JSON log).
metadata_requests() {
    python3 - "$RUN/metadata.log" "$1" "$2" "${3:-GET}" <<'PY'
import json, re, sys
n = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    if (r["method"] == sys.argv[4] and re.search(sys.argv[2], r["path"]) and r["status"] == 200
            and re.search(sys.argv[3], r["headers"].get("user-agent", ""))):
        n += 1
print(n)
PY
}
# expect_metadata WHAT PATH_ERE AGENT_ERE [METHOD]: at least one such request (metadata_requests).
expect_metadata() {
    local n
    n=$(metadata_requests "$2" "$3" "${4:-GET}")
    if [ "$n" -gt 0 ]; then pass "$1 ($n requests)"; else fail "$1 (no ${4:-GET} answered 200 for /$2/ from /$3/ in metadata.log)"; fi
}
