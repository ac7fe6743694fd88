# The Debian image scenarios, sourced by tests/debian/takeover.sh (after tests/vm/lib.sh and
# tests/vm/scenarios.sh, whose servers, config writer and assertions they reuse).
# shellcheck shell=bash
# Sourced: the scenario functions set variables tests/vm/lib.sh reads, and read the ones the
# takeover script and tests/vm/lib.sh set (quiet, IMAGE, AGENT_SHA256, ...).
# shellcheck disable=SC2034,SC2154

DEBIAN_SCENARIOS="hetzner-bios ec2-uefi wrong-agent-sha256 big-2g big-1536"

# ---- one scenario ---------------------------------------------------------------------------

debian_defaults() {
    scenario_defaults # PROVIDER, VM_SMBIOS, VM_MAC, VM_MEMORY, config values (tests/vm/scenarios.sh)
    VM_TIMEOUT=${DEBIMG_TIMEOUT:-600}
    VM_SMP=2
    USER_DATA_SHA256=$AGENT_SHA256
}

# render_user_data: $RUN/config.yaml and the user-data `nixos-lift user-data` makes of it.
render_user_data() {
    write_config "$RUN/config.yaml"
    "$AGENT" user-data --config "$RUN/config.yaml" --agent-url "$AGENT_URL" \
        --agent-sha256 "x86_64=$USER_DATA_SHA256" --provider "$PROVIDER" >"$RUN/user-data" ||
        die "nixos-lift user-data failed"
    METADATA_ARGS+=(--user-data "$RUN/user-data")
}

# boot_debian: the stock image on a fresh qcow2 overlay (the cached base stays read-only), with
# the serial console in $RUN/console.log. Sets VM_STATUS (QEMU's exit status; 124 on timeout).
boot_debian() {
    local netdev args s
    # 8 GiB like a small cloud disk (the base is just big enough for its files; stage 1 wants 4 GiB).
    qemu-img create -q -f qcow2 -F qcow2 -b "$IMAGE/disk.qcow2" "$RUN/root.qcow2" 8G
    netdev=$(simcloud_netdev)
    args=(-accel tcg -smp "$VM_SMP" -m "$VM_MEMORY" -nodefaults -display none -serial stdio -no-reboot
        -pidfile "$RUN/qemu.pid"
        -netdev "$netdev" -device "virtio-net-pci,netdev=n0,mac=$VM_MAC"
        -kernel "$IMAGE/vmlinuz" -initrd "$IMAGE/initrd"
        -append "console=ttyS0,115200 root=/dev/vda1 ro quiet systemd.show_status=true $VM_APPEND"
        -drive "file=$RUN/root.qcow2,format=qcow2,if=none,id=root,discard=unmap"
        -device "virtio-blk-pci,drive=root,serial=$ROOT_SERIAL")
    for s in "${VM_SMBIOS[@]}"; do args+=(-smbios "$s"); done
    if [ "$VM_FIRMWARE" = uefi ]; then
        cp "$OVMF_VARS" "$RUN/ovmf-vars.fd"
        args+=(-drive "if=pflash,format=raw,readonly=on,file=$OVMF_CODE"
            -drive "if=pflash,format=raw,file=$RUN/ovmf-vars.fd")
    fi
    printf '%q ' qemu-system-x86_64 "${args[@]}" >"$RUN/qemu.cmd"
    log "booting the Debian image: $VM_FIRMWARE, ${VM_MEMORY} MiB, ${VM_SMP} vCPU, ${VM_SMBIOS[0]} (timeout ${VM_TIMEOUT}s)"
    set +e
    timeout -k 5 "$VM_TIMEOUT" qemu-system-x86_64 "${args[@]}" </dev/null 2>&1 | tee "$RUN/console.raw" |
        strip_console | tee "$RUN/console.log" |
        if [ "$quiet" = yes ]; then cat >/dev/null; else sed -u 's/^/    | /'; fi
    VM_STATUS=${PIPESTATUS[0]}
    set -e
    rm -f "$RUN/qemu.pid" "$RUN/root.qcow2"
    [ "$VM_STATUS" = 124 ] && log "TIMEOUT after ${VM_TIMEOUT}s: QEMU killed"
    return 0
}

# run_debian_scenario NAME: servers, user-data, one boot, the checks. Adds to FAILS and RESULTS.
run_debian_scenario() {
    begin_scenario "$1" debian_defaults debian
    render_user_data
    echo "probe-ok $SCENARIO" >"$CACHE/www/probe.txt"
    PROBE_TOKEN=$SCENARIO
    start_metadata "$PROVIDER"
    start_release
    log "scenario $SCENARIO: provider $PROVIDER, metadata and release servers on 127.0.0.1:$METADATA_PORT/$RELEASE_PORT"

    local start before
    start=$(date +%s)
    boot_debian
    VM_SECONDS=$(($(date +%s) - start))
    log "scenario $SCENARIO: VM ran $VM_SECONDS s; checks:"
    before=$FAILS
    "check_debian_$SCENARIO"
    case $VM_STATUS in
        0) pass "the VM powered off by itself" ;;
        124) fail "the VM finished within ${VM_TIMEOUT}s" ;;
        *) fail "QEMU exited with status $VM_STATUS" ;;
    esac
    end_scenario "$before" 80 " (${VM_SECONDS} s in the VM)"
}

# ---- assertions on the host-side logs -------------------------------------------------------

# metadata_requests and expect_metadata, which read the metadata server's log: tests/vm/lib.sh.
expect_release() {
    if grep -Eq "^GET $2 200" "$RUN/release.log"; then pass "$1"; else fail "$1 (release.log: $(tr '\n' ';' <"$RUN/release.log"))"; fi
}
expect_no_release() {
    if grep -Eq "^GET $2 " "$RUN/release.log"; then fail "$1 (release.log: $(tr '\n' ';' <"$RUN/release.log"))"; else pass "$1"; fi
}

# The chain every takeover scenario shows, from cloud-init to the installer.
check_takeover_chain() {
    local datasource=$1
    # cloud-init's EC2 crawler sends python-requests' own User-Agent; the agent never reads user-data.
    expect_metadata "cloud-init's datasource fetched the user-data" "$2" '^(Cloud-Init|python-requests)/'
    expect "cloud-init ran with the $datasource datasource" "Cloud-init v\. .* finished at .*Datasource $datasource"
    expect "runcmd downloaded the agent" 'cloud-init\[[0-9]+\]: nixos-lift-bootstrap: downloading http://169\.254\.10\.10/nixos-lift-x86_64-linux$'
    expect_release "the agent came from the release server" /nixos-lift-x86_64-linux
    expect "the bootstrap verified the pinned sha256" "cloud-init\\[[0-9]+\\]: nixos-lift-bootstrap: agent verified \\(sha256 $AGENT_SHA256\\)"
    expect "systemd-run started the transient unit" 'cloud-init\[[0-9]+\]: Running as unit: nixos-lift\.service$'
    expect "the agent detached from cloud-init" 'cloud-init\[[0-9]+\]: .*continuing detached in unit nixos-lift'
    expect "the unit's log reaches the console (journal+console)" 'nixos-lift\[[0-9]+\]: .*identified the cloud'
    expect_metadata "the agent read the metadata itself" "$3" '^nixos-lift'
    expect_download
    expect "the installer was unpacked" 'installer unpacked; kernel command line:'
    expect "the kexec kernel was loaded" 'kexec loaded'
    expect "the agent handed over with systemctl kexec" 'jumping into the installer now'
    expect_i "systemd shut down for kexec" 'Reached target .*(kexec|Reboot via kexec)|Starting .*Reboot via kexec|kexec_core: Starting new kernel'
    expect_kexec
    expect "the handoff checks out in the installer" '^installer-fixture: handoff check exit 0$'
    expect "the plan targets the image's root disk by serial" "^installer-fixture: plan-compact: .*\"target\": ?\\{[^}]*\"serial\": ?\"$ROOT_SERIAL\""
    expect "stage 2 ran to the end with the recording doubles" '^nixos-lift: done: installed git\+http://169\.254\.10\.10/example\.git#cloud-x86_64 on /dev/vda'
}

# ---- 1. Hetzner, BIOS: cloud-init to the installer ------------------------------------------
debian_hetzner-bios() { :; }
check_debian_hetzner-bios() {
    check_takeover_chain DataSourceHetzner '^/hetzner/v1/userdata$' '^/hetzner/v1/metadata'
    expect "the plan names the cloud: hetzner" '^installer-fixture: plan-compact: .*"provider": ?"hetzner"'
    expect "firmware bios reaches the installer" '^installer-fixture: firmware=bios$'
}

# ---- 2. EC2, IMDSv2, UEFI (OVMF): the same chain ---------------------------------------------
debian_ec2-uefi() {
    aws_instance
    # An instance without IPv6, as many are: slirp has no DHCPv6 server, and with `ipv6s` in the
    # metadata cloud-init's network config asks ifupdown for DHCPv6, whose dhclient -6 then holds
    # networking.service for minutes.
    cp -a "$REPO_ROOT/tests/fixtures/metadata/aws" "$RUN/metadata-aws"
    rm -f "$RUN"/metadata-aws/latest/meta-data/network/interfaces/macs/*/{ipv6s,subnet-ipv6-cidr-blocks}
    METADATA_ARGS+=(--fixtures "$RUN/metadata-aws")
    INSTALLER_FILE=installer-manifest-x86_64.tar.gz
    CONFIG_SHA256=$INSTALLER_MANIFEST_SHA256
}
check_debian_ec2-uefi() {
    check_takeover_chain 'DataSourceEc2(Local)?' '^/[^/]+/user-data$' '^/latest/meta-data'
    expect_metadata "cloud-init took an IMDSv2 token" '^/latest/api/token$' '^Cloud-Init/' PUT
    expect_metadata "the agent took an IMDSv2 token" '^/latest/api/token$' '^nixos-lift/' PUT
    expect "the plan names the cloud: aws" '^installer-fixture: plan-compact: .*"provider": ?"aws"'
    expect "the plan carries the instance id from IMDSv2" '^installer-fixture: plan-compact: .*"instance_id": ?"i-0abc123def4567890"'
    expect "the installer runs under UEFI" '^installer-fixture: firmware=uefi$'
}

# ---- 3. a wrong agent sha256 in the user-data: nothing runs, Debian keeps working -----------
debian_wrong-agent-sha256() {
    USER_DATA_SHA256=$(printf '%s' "$AGENT_SHA256" | tr '0-9a-f' '1-9a-f0')
    VM_APPEND="simcloud.after=alive" # tests/debian/simcloud-alive.service reports, then powers off
}
check_debian_wrong-agent-sha256() {
    expect_metadata "cloud-init's datasource fetched the user-data" '^/hetzner/v1/userdata$' '^Cloud-Init/'
    expect_release "the agent was downloaded" /nixos-lift-x86_64-linux
    expect "the bootstrap refused the agent, naming both digests" \
        "cloud-init\\[[0-9]+\\]: nixos-lift-bootstrap: refusing to run the agent: sha256 mismatch .*got $AGENT_SHA256, pinned $USER_DATA_SHA256"
    expect_not "the agent never ran" 'continuing detached|nixos-lift\.service|kexec loaded'
    expect_no_release "no installer was downloaded" '/installer'
    expect "cloud-init reported the failed runcmd" 'Failed to run module scripts[-_]user|scripts[-_]user.*fail'
    expect "cloud-init's status is error, from runcmd's script" '^simcloud-alive: cloud-init status: status: error .*scripts-user'
    expect "the refused agent is not on the disk" '^simcloud-alive: agent on disk: .*No such file'
    expect "no nixos-lift unit exists" '^simcloud-alive: units running nixos-lift: 0$'
    expect "sshd still runs" '^simcloud-alive: ssh: active$'
    expect "a login shell still works" '^simcloud-alive: login shell: works as root in '
    expect_no_kexec
    check_grown_root
    check_run_tmpfs
}

# check_grown_root: cloud-init's growpart and resizefs grew the image's small root partition and
# its ext4 to the 8 GiB disk (simcloud-alive's report), as on a real cloud VM.
check_grown_root() {
    local size free part disk
    expect "cloud-init's growpart grew the root partition" "^simcloud-alive: growpart: resized: changed \\(/dev/vda, 1\\) from [0-9]+ to [0-9]+"
    read -r size free < <(console_value "simcloud-alive: root filesystem (source, MiB size, MiB free): " | awk '{print $2, $3}') || true
    read -r part disk < <(console_value "simcloud-alive: root partition: " | grep -Eo '[0-9]+' | tr '\n' ' ') || true
    # 8 GiB = 8192 MiB; ext4's own metadata takes a few per cent of it.
    if [ "${size:-0}" -ge 7500 ] && [ "${free:-0}" -ge 6000 ] && [ "${part:-0}" -ge $((disk * 99 / 100)) ]; then
        pass "resizefs grew / to the disk: ${size} MiB, ${free} MiB free (partition ${part} of ${disk} bytes)"
    else
        fail "the root filesystem did not grow to the 8 GiB disk: ${size:-?} MiB, ${free:-?} MiB free, partition ${part:-?} of ${disk:-?} bytes"
    fi
}

# check_run_tmpfs: /run is the tmpfs initramfs-tools mounts with size=10% of RAM (what a stage 1
# staging under /run without its own mount would be limited to).
check_run_tmpfs() {
    local fstype bytes total
    read -r fstype bytes _ < <(console_value "simcloud-alive: /run (fstype, bytes, options): ") || true
    total=$(console_value "simcloud-alive: memory: " | grep -Eo 'MemTotal: [0-9]+' | grep -Eo '[0-9]+' || true)
    # MemTotal is in KiB; 10 % of it, give or take a page-rounding per cent.
    if [ "$fstype" = tmpfs ] && [ -n "$total" ] && [ "$((bytes / 1024))" -ge $((total * 9 / 100)) ] &&
        [ "$((bytes / 1024))" -le $((total * 11 / 100)) ]; then
        pass "/run is initramfs-tools' tmpfs at 10 % of RAM: $((bytes >> 20)) MiB of MemTotal $((total >> 10)) MiB"
    else
        fail "/run is not a tmpfs of 10 % of RAM: ${fstype:-?} of ${bytes:-?} bytes, MemTotal ${total:-?} KiB"
    fi
}

# ---- 4, 5. nixos-images' real size: a 430 MiB store image in the installer's initrd ---------
# The realistic-size installer (tests/vm/lib.sh, build_sized_installer: the manifest layout with
# 430 MiB of incompressible "store image" appended to the fixture's initrd, ~440 MiB tarball).
# The memory guard computes the need from the installer's size (no min_memory in the config):
# staged in stage 1's own tmpfs it is the unpacked installer + the initrd twice during the kexec
# load + headroom (~1.5 GiB); staged on the root filesystem, the two copies + headroom (~1 GiB).
# Stage 2 runs in fleet mode (a prebuilt closure), as a small machine would be deployed.
DEBIAN_STORE_MB=430

big_installer() {
    VM_MEMORY=$1
    # Measured under TCG on a 2-core CI-like machine: the VM runs ~140-155 s (the 440 MiB
    # download ~17 s, stage 1 ~40 s in all, the fixture's boot with the 440 MiB initramfs and
    # stage 2 ~35 s), against ~75-90 s for the small fixture. Five times that, for a busy host.
    VM_TIMEOUT=${DEBIMG_TIMEOUT:-720}
    build_sized_installer "$DEBIAN_STORE_MB"
    INSTALLER_FILE=$SIZED_INSTALLER_FILE
    CONFIG_SHA256=$SIZED_INSTALLER_SHA256
    CONFIG_SYSTEM=$FLEET_SYSTEM
}

# plan_memory FIELD: a figure of the plan's memory section (bytes, or the staging kind), from
# the plan the installer fixture printed.
plan_memory() {
    console_value "installer-fixture: plan-compact: " | python3 -c '
import json, sys
m = json.load(sys.stdin).get("memory") or {}
v = m.get("staging") if sys.argv[1] == "staging" else m.get(sys.argv[1])
print((v or {}).get("kind", "none") if sys.argv[1] == "staging" else v)' "$1" 2>/dev/null || true
}

# check_big_installer STAGING: the takeover chain with the big installer, staged as STAGING
# (tmpfs or rootfs), and the figures behind that choice on one log line.
check_big_installer() {
    local want=$1 kind staged low avail total need tmpfs free mib=1048576
    check_takeover_chain DataSourceHetzner '^/hetzner/v1/userdata$' '^/hetzner/v1/metadata'
    expect_size_asked
    expect "the memory guard passed without min_memory" 'nixos-lift\[[0-9]+\]: .*\[2/5\] downloading and verifying the installer'
    if [ "$want" = tmpfs ]; then
        expect "stage 1 staged on its own tmpfs, sized to the need" 'nixos-lift\[[0-9]+\]: .*staging: tmpfs of [0-9]+ MiB at /run/nixos-lift/work$'
    else
        expect "stage 1 staged on the (grown) root filesystem" 'nixos-lift\[[0-9]+\]: .*staging: root filesystem at /var/lib/nixos-lift/staging \([0-9]+ MiB free\)$'
        free=$(console_mib 'staging: root filesystem at /var/lib/nixos-lift/staging \([0-9]+')
        if [ "${free:-0}" -ge 4096 ]; then
            pass "the root filesystem had the room growpart gave it (${free} MiB free)"
        else
            fail "the root filesystem had ${free:-?} MiB free: did growpart run?"
        fi
    fi
    expect "stage 1 reported its lowest MemAvailable" 'nixos-lift\[[0-9]+\]: .*memory: lowest MemAvailable [0-9]+ MiB during stage 1 \(staged [0-9]+ MiB\)'
    staged=$(console_mib 'staged [0-9]+ MiB\)')
    if [ "${staged:-0}" -ge "$DEBIAN_STORE_MB" ]; then pass "the staged size counts the store image ($staged MiB)"; else fail "staged ${staged:-?} MiB, less than the $DEBIAN_STORE_MB MiB store image"; fi
    expect "the installer fixture found the handed-over agent" '^installer-fixture: handoff files: .*nixos-lift/nixos-lift'
    expect "the whole store image arrived in the installer" "^installer-fixture: store image $DEBIAN_STORE_MB MiB\$"
    kind=$(plan_memory staging)
    if [ "$kind" = "${want/rootfs/root_fs}" ]; then pass "the plan chose $kind staging"; else fail "the plan chose ${kind:-?} staging, wanted $want"; fi
    low=$(console_mib 'lowest MemAvailable [0-9]+')
    avail=$(plan_memory available_bytes)
    total=$(plan_memory total_bytes)
    need=$(plan_memory needed_bytes)
    tmpfs=$(console_mib 'staging: tmpfs of [0-9]+')
    log "$SCENARIO: -m $VM_MEMORY: MemTotal $((${total:-0} / mib)) MiB, MemAvailable at the plan $((${avail:-0} / mib)) MiB," \
        "needed $((${need:-0} / mib)) MiB -> $kind staging${tmpfs:+ (tmpfs $tmpfs MiB)}${free:+ ($free MiB free on /)};" \
        "lowest MemAvailable ${low:-?} MiB, staged ${staged:-?} MiB; VM ran ${VM_SECONDS:-?} s"
}

# ---- 4. 2 GiB: the installer fits in RAM, staged on stage 1's own tmpfs ----------------------
# Debian's /run is initramfs-tools' tmpfs at 10 % of RAM (~200 MiB here): stage 1 mounts its own
# tmpfs at /run/nixos-lift/work, sized to the staged installer, so /run's size does not matter.
debian_big-2g() { big_installer 2048; }
check_debian_big-2g() { check_big_installer tmpfs; }

# ---- 5. 1.5 GiB: three copies of the initrd do not fit, two do: root-filesystem staging ------
# The staged installer goes to /var/lib/nixos-lift/staging on the root filesystem cloud-init's
# growpart grew to the disk (without growpart it would not fit), as page cache the kexec load
# can reclaim.
debian_big-1536() { big_installer 1536; }
check_debian_big-1536() { check_big_installer rootfs; }
