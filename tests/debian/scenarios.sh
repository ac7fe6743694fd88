# The Debian image scenarios, sourced by tests/debian/takeover.sh (after tests/vm/lib.sh and
# tests/vm/scenarios.sh, whose servers, config writer and assertions they reuse).
# shellcheck shell=bash
# Sourced: the scenario functions set variables tests/vm/lib.sh reads, and read the ones the
# takeover script and tests/vm/lib.sh set (quiet, IMAGE, AGENT_SHA256, ...).
# shellcheck disable=SC2034,SC2154

DEBIAN_SCENARIOS="hetzner-bios ec2-uefi wrong-agent-sha256"

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
    timeout -k 5 "$VM_TIMEOUT" qemu-system-x86_64 "${args[@]}" </dev/null 2>&1 |
        sed -u 's/\r//g; s/\x1b\[[0-9;=?]*[A-Za-z]//g' | tee "$RUN/console.log" |
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
}
