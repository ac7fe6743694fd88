# The simulated cloud's mechanics, sourced by tests/vm/takeover.sh: build the guest pieces,
# start the host-side servers, boot QEMU and assert on its serial console.
#
# Network inside every VM (QEMU user networking, `restrict=on`: no way out but these):
#   169.254.0.2          slirp gateway; DHCP hands out 169.254.0.15 and up
#   169.254.169.254:80   the provider's metadata service  -> tests/fakecloud/server.py
#   169.254.10.10:80     the "release" server              -> tests/vm/release_server.py
# shellcheck shell=bash

VM_SRC=$REPO_ROOT/tests/vm
CACHE=${SIMCLOUD_CACHE:-$VM_SRC/.cache}
FAKECLOUD=${SIMCLOUD_FAKECLOUD:-$REPO_ROOT/tests/fakecloud/server.py}
METADATA_ADDR=169.254.169.254
RELEASE_ADDR=169.254.10.10
OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd
ROOT_SERIAL=cloudimg-root-0001
DATA_SERIAL=data-volume-0002
DISK_SIZE=8G   # sparse; the root partition inside is small
# Kernel modules both guests load, in dependency order (`modprobe --show-depends`).
GUEST_MODULES="virtio_pci virtio_net virtio_blk ext4 efivarfs"

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

# ---- one-time preparation -------------------------------------------------------------------

# Picks the newest installed distro kernel; sets KVER and VMLINUZ.
pick_kernel() {
    VMLINUZ=$(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
    [ -n "$VMLINUZ" ] || die "no kernel in /boot (run tests/vm/setup.sh)"
    KVER=${VMLINUZ#/boot/vmlinuz-}
    [ -d "/lib/modules/$KVER" ] || die "no /lib/modules/$KVER for $VMLINUZ"
}

# add_modules DIR: copies GUEST_MODULES and their dependencies (decompressed) to DIR/lib/modules
# and writes the insmod order to DIR/lib/modules/load-order.
add_modules() {
    local dir=$1 mod line path name
    mkdir -p "$dir/lib/modules"
    : >"$dir/lib/modules/load-order"
    for mod in $GUEST_MODULES; do
        modprobe -S "$KVER" --show-depends "$mod" | while read -r line; do
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
    cp /bin/busybox "$dir/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ -e "$dir/bin/$applet" ] || ln -s busybox "$dir/bin/$applet"
    done
}

# mk_initrd DIR OUT: a gzip'd newc archive of DIR.
mk_initrd() {
    (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -6 >"$2"
}

# Builds the static agent (packaging/build-static.sh) and a stripped copy for the guests.
build_agent() {
    local bin
    log "building the static agent (packaging/build-static.sh --debug)"
    bin=$("$REPO_ROOT/packaging/build-static.sh" --debug) || die "static build failed"
    strip -o "$CACHE/nixos-lift" "$bin"
    AGENT=$CACHE/nixos-lift
    "$AGENT" --version >/dev/null || die "the static agent does not run on the host"
}

# agent_supports WORDS...: true when `nixos-lift WORDS... --help` exists in the built agent.
agent_supports() { "$AGENT" "$@" --help >/dev/null 2>&1; }

# The fresh VM's initramfs: busybox, modules, an /init that switch_roots to the disk.
build_fresh_initrd() {
    local dir=$CACHE/fresh-initramfs
    rm -rf "$dir" && mkdir -p "$dir"/{proc,sys,dev,newroot}
    add_busybox "$dir"
    add_modules "$dir"
    cp "$VM_SRC/guest/initramfs-init" "$dir/init"
    mk_initrd "$dir" "$CACHE/fresh-initrd.gz"
}

# The installer fixture's tarballs, in $CACHE/www:
#   installer-x86_64.tar.gz           nixos-images' layout: kexec/bzImage, kexec/initrd, kexec/run
#   installer-manifest-x86_64.tar.gz  nixos-lift's layout: the same plus kexec/manifest.json
# Each layout puts its own `nixos_lift.layout=` on the kernel command line, so the installer's
# console shows which one stage 1 followed. Sets INSTALLER_SHA256 and INSTALLER_MANIFEST_SHA256.
build_installer() {
    local dir=$CACHE/installer-root tar=$CACHE/installer params
    rm -rf "$dir" "$tar" && mkdir -p "$dir"/{proc,sys,dev,run,tmp,etc,lib/fixture} "$tar/kexec"
    add_busybox "$dir"
    add_modules "$dir"
    cp "$VM_SRC/installer/init" "$dir/init"
    cp "$VM_SRC/installer/json.awk" "$VM_SRC/guest/udhcpc.script" "$dir/lib/fixture/"
    cat >"$dir/etc/fixture.env" <<ENV
FIXTURE_PROBE_HOST=$RELEASE_ADDR
FIXTURE_PROBE_PATH=/probe.txt
ENV
    cp "$VMLINUZ" "$tar/kexec/bzImage"
    mk_initrd "$dir" "$tar/kexec/initrd"
    params=$(fixture_params)
    # The shape of nixos-images' kexec-run.sh after substitution: stage 1 takes `init=` and
    # the parameters from the --command-line argument.
    cat >"$tar/kexec/run" <<RUN
#!/bin/sh
# nixos-lift test installer (tests/vm): same shape as nixos-images' kexec/run.
set -eu
SCRIPT_DIR=\$(cd "\$(dirname "\$0")" && pwd)
"\$SCRIPT_DIR/kexec" --load "\$SCRIPT_DIR/bzImage" \\
  --kexec-syscall-auto \\
  --initrd="\$SCRIPT_DIR/initrd" --no-checks \\
  --command-line "init=/init $params nixos_lift.layout=nixos-images"
RUN
    chmod +x "$tar/kexec/run"
    mkdir -p "$CACHE/www"
    tar -C "$tar" --owner=0 --group=0 -czf "$CACHE/www/installer-x86_64.tar.gz" kexec
    INSTALLER_SHA256=$(sha256sum "$CACHE/www/installer-x86_64.tar.gz" | cut -d' ' -f1)

    # kexec/manifest.json in the shape nix/installer writes (no static kexec binary here:
    # stage 1's kexec_file_load is what the scenarios exercise).
    python3 - "$tar/kexec/manifest.json" "$params nixos_lift.layout=manifest" <<'PY'
import json, sys
params = sys.argv[2].split()
json.dump({
    "version": 1,
    "name": "nixos-lift-test-installer",
    "system": "x86_64-linux",
    "nixos_release": "test-fixture",
    "agent_version": None,
    "kernel": "kexec/bzImage",
    "initrd": "kexec/initrd",
    "init": "/init",
    "kernel_params": params,
    "cmdline": " ".join(["init=/init"] + params),
    "handoff": {"initrd_dir": "nixos-lift", "stage2_dir": "/run/nixos-lift/handoff"},
}, open(sys.argv[1], "w"), indent=2)
PY
    tar -C "$tar" --owner=0 --group=0 -czf "$CACHE/www/installer-manifest-x86_64.tar.gz" kexec
    INSTALLER_MANIFEST_SHA256=$(sha256sum "$CACHE/www/installer-manifest-x86_64.tar.gz" | cut -d' ' -f1)
}

# The installer fixture's kernel parameters (after `init=`), shared by both layouts.
fixture_params() { echo "console=ttyS0,115200 panic=-1 quiet nixos_lift.fixture=check"; }

# The part of the stock image's root filesystem every scenario shares.
build_base_rootfs() {
    local dir=$CACHE/rootfs-base
    rm -rf "$dir" && mkdir -p "$dir"/{proc,sys,dev,run,tmp,root/.ssh,etc/nixos-lift,etc/ssl/certs,usr/local/bin,var/lib/nixos-lift}
    add_busybox "$dir"
    for d in sbin usr/bin usr/sbin; do mkdir -p "$dir/$d"; done
    cp "$VM_SRC/guest/init" "$dir/sbin/init"
    cp "$VM_SRC/guest/udhcpc.script" "$dir/etc/udhcpc.script"
    cp "$AGENT" "$dir/usr/local/bin/nixos-lift"
    cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/"
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
    local i
    for i in $(seq 200); do
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

# start_release: tests/vm/release_server.py over $CACHE/www; sets RELEASE_PORT.
start_release() {
    : >"$RUN/release.log"
    python3 "$VM_SRC/release_server.py" --dir "$CACHE/www" --log "$RUN/release.log" \
        --port-file "$RUN/release.port" >"$RUN/release.out" 2>&1 &
    _pids+=($!)
    RELEASE_PORT=$(wait_port_file "$RUN/release.port")
}

# ---- the VM ---------------------------------------------------------------------------------

# boot_vm: boots the fresh VM of the current scenario (variables set by the scenario), with the
# serial console in $RUN/console.log and on stdout. Sets VM_STATUS (QEMU's exit status; 124 on
# timeout).
boot_vm() {
    local netdev relay="python3 $VM_SRC/relay.py" args
    netdev="user,id=n0,restrict=on,net=169.254.0.0/16,host=169.254.0.2,dhcpstart=169.254.0.15"
    netdev+=",guestfwd=tcp:$METADATA_ADDR:80-cmd:$relay $METADATA_PORT"
    netdev+=",guestfwd=tcp:$RELEASE_ADDR:80-cmd:$relay $RELEASE_PORT"
    args=(-accel tcg -smp 1 -m "$VM_MEMORY" -nodefaults -display none -serial stdio -no-reboot
        -pidfile "$RUN/qemu.pid"
        -netdev "$netdev" -device "virtio-net-pci,netdev=n0,mac=$VM_MAC")
    if [ "$VM_BOOT" = installer ]; then
        # Straight into the installer fixture with a handoff the harness wrote (self-test).
        args+=(-kernel "$CACHE/installer/kexec/bzImage" -initrd "$RUN/installer-initrd"
            -append "init=/init $(fixture_params) $VM_APPEND")
    else
        args+=(-kernel "$VMLINUZ" -initrd "$CACHE/fresh-initrd.gz"
            -append "console=ttyS0 root=/dev/vda1 ro quiet panic=-1 $VM_APPEND"
            -drive "file=$RUN/root.img,format=raw,if=none,id=root"
            -device "virtio-blk-pci,drive=root,serial=$ROOT_SERIAL")
    fi
    local s
    for s in "${VM_SMBIOS[@]+"${VM_SMBIOS[@]}"}"; do args+=(-smbios "$s"); done
    if [ "$VM_DATA_DISK" = yes ]; then
        args+=(-drive "file=$RUN/data.img,format=raw,if=none,id=data"
            -device "virtio-blk-pci,drive=data,serial=$DATA_SERIAL")
    fi
    if [ "$VM_FIRMWARE" = uefi ]; then
        cp "$OVMF_VARS" "$RUN/ovmf-vars.fd"
        args+=(-drive "if=pflash,format=raw,readonly=on,file=$OVMF_CODE"
            -drive "if=pflash,format=raw,file=$RUN/ovmf-vars.fd")
    fi
    printf '%q ' qemu-system-x86_64 "${args[@]}" >"$RUN/qemu.cmd"
    log "booting: $VM_FIRMWARE, ${VM_MEMORY} MiB, ${VM_SMBIOS[0]:-no smbios} (timeout ${VM_TIMEOUT}s; command in $RUN/qemu.cmd)"
    set +e
    timeout -k 5 "$VM_TIMEOUT" qemu-system-x86_64 "${args[@]}" </dev/null 2>&1 |
        sed -u 's/\r//g; s/\x1b\[[0-9;=?]*[A-Za-z]//g' | tee "$RUN/console.log" | sed -u 's/^/    | /'
    VM_STATUS=${PIPESTATUS[0]}
    set -e
    rm -f "$RUN/qemu.pid"
    [ "$VM_STATUS" = 124 ] && log "TIMEOUT after ${VM_TIMEOUT}s: QEMU killed"
    return 0
}

# ---- assertions -----------------------------------------------------------------------------

FAILS=0
pass() { printf '[simcloud]   ok   %s\n' "$*"; }
fail() {
    printf '[simcloud]   FAIL %s\n' "$*"
    FAILS=$((FAILS + 1))
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
console_value() { grep -m1 -- "^$1" "$RUN/console.log" | cut -c$((${#1} + 1))-; }

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
expect_no_download() {
    if [ -s "$RUN/release.log" ]; then
        fail "no request reached the release server (log: $(tr '\n' ';' <"$RUN/release.log"))"
    else
        pass "no request reached the release server"
    fi
}
expect_download() {
    if grep -q "^GET /$INSTALLER_FILE 20" "$RUN/release.log"; then pass "the installer $INSTALLER_FILE was downloaded"; else fail "the installer $INSTALLER_FILE was not downloaded"; fi
}
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
