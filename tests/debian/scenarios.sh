# The Debian image scenarios, sourced by tests/debian/takeover.sh (after tests/vm/lib.sh and
# tests/vm/scenarios.sh, whose servers, config writer and assertions they reuse).
# shellcheck shell=bash
# Sourced: the scenario functions set variables tests/vm/lib.sh reads, and read the ones the
# takeover script and tests/vm/lib.sh set (quiet, IMAGE, AGENT_SHA256, ...).
# shellcheck disable=SC2034,SC2154

DEBIAN_SCENARIOS="hetzner-bios ec2-uefi wrong-agent-sha256 big-2g big-1536 ubuntu-hetzner-ipv6 ubuntu-ec2-uefi ubuntu-wrong-agent-sha256"

# ---- one scenario ---------------------------------------------------------------------------

debian_defaults() {
    scenario_defaults # PROVIDER, VM_SMBIOS, VM_MAC, VM_MEMORY, config values (tests/vm/scenarios.sh)
    VM_TIMEOUT=${DEBIMG_TIMEOUT:-600}
    VM_SMP=2
    USER_DATA_SHA256=$AGENT_SHA256
    IMAGE_RECIPE=debian-12 # tests/debian/build-image.sh's recipe; the ubuntu-* scenarios change it
}

# use_image RECIPE: sets IMAGE to RECIPE's image, built or found in its cache once per run.
use_image() {
    local t
    if [ -z "${IMAGES[$1]:-}" ]; then
        t=$(date +%s)
        IMAGES[$1]=$(bash "$REPO_ROOT/tests/debian/build-image.sh" "$1") || die "building the $1 image failed"
        log "$1 image ready in $(($(date +%s) - t)) s: ${IMAGES[$1]} ($(sed -n 2p "${IMAGES[$1]}/manifest.txt"))"
    fi
    IMAGE=${IMAGES[$1]}
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
    log "booting the $IMAGE_RECIPE image: $VM_FIRMWARE, ${VM_MEMORY} MiB, ${VM_SMP} vCPU, ${VM_SMBIOS[0]} (timeout ${VM_TIMEOUT}s)"
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
    use_image "$IMAGE_RECIPE"
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
    run_checks "check_debian_$SCENARIO"
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
    expect "systemd-run started the transient unit" 'cloud-init\[[0-9]+\]: Running as unit: nixos-lift\.service(;|$)'
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
    # cloud-utils 0.32 (bookworm) names the disk and partition, 0.33 (trixie) the partition.
    expect "cloud-init's growpart grew the root partition" "^simcloud-alive: growpart: resized: changed \\((/dev/vda, 1|/dev/vda1)\\) from [0-9]+ to [0-9]+"
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

# ==== the ubuntu-shaped image: netplan, systemd-networkd, systemd-resolved, cloud-init 25 =====
# tests/debian/build-image.sh ubuntu-shaped: Debian 13 with cloud-init configured as Ubuntu's
# cloud images are. cloud-init renders the datasource's network config to
# /etc/netplan/50-cloud-init.yaml, networkd runs it, resolved owns DNS and /etc/resolv.conf is
# its stub (127.0.0.53): stage 1 must look through the stub to the real resolvers.

ubuntu_image() { IMAGE_RECIPE=ubuntu-shaped; }

# stage1_network PYTHON-EXPR: evaluates EXPR on the network stage 1 saw (`net`, the facts'
# network object as the installer fixture printed it); prints its value, or nothing.
stage1_network() {
    console_value "installer-fixture: facts-compact: " | python3 -c '
import json, sys
net = json.load(sys.stdin)["network"]
links = [i for i in net["interfaces"] if i["link_type"] != "loopback"]
print(eval(sys.argv[1]))' "$1" 2>/dev/null || true
}
# expect_stage1_network WHAT PYTHON-EXPR: the expression is True on stage 1's network facts.
expect_stage1_network() {
    if [ "$(stage1_network "$2")" = True ]; then
        pass "$1"
    else
        fail "$1 (stage 1's network: $(stage1_network 'json.dumps(net)' | cut -c1-600))"
    fi
}

# hetzner_link_dns [MTU]: Hetzner's metadata with its resolvers also on the interface's static
# subnet (`dns_nameservers`), and with MTU on the interface when given. On Hetzner, networkd
# gets those resolvers from DHCP; slirp's DHCP under restrict=on offers no DNS option, and
# cloud-init 25's netplan renderer attaches v1's global `nameserver` entry to no interface, so
# without this resolved would have no upstream at all. Through netplan they reach resolved as
# eth0's link DNS, where Hetzner's DHCP would put them.
hetzner_link_dns() {
    local md=$RUN/metadata-hetzner/hetzner/v1/metadata
    cp -a "$REPO_ROOT/tests/fixtures/metadata/hetzner" "$RUN/metadata-hetzner"
    sed -i 's/^\(      \)type: static$/&\n\1dns_nameservers: [185.12.64.2, 185.12.64.1]/' "$md"
    [ -z "${1:-}" ] || sed -i "s/^    name: eth0\$/&\\n    mtu: $1/" "$md"
    grep -q "dns_nameservers: \[185" "$md" && { [ -z "${1:-}" ] || grep -q "^    mtu: $1\$" "$md"; } ||
        die "could not edit the Hetzner metadata"
    METADATA_ARGS+=(--fixtures "$RUN/metadata-hetzner")
}

# ---- 6. Hetzner, DHCP plus the metadata's static IPv6, netplan -> networkd -> stage 2 --------
# Hetzner's network-config (v1): DHCPv4 and a static 2a01:4f8:c17:1234::1/64 via fe80::1, with
# Hetzner's resolvers (hetzner_link_dns). This scenario adds `mtu: 1450` to the physical
# interface (v1 allows it; Hetzner's own document has none, its private networks run 1450), so
# the MTU restore shows.
UBUNTU_IPV6=2a01:4f8:c17:1234::1
UBUNTU_MTU=1450
debian_ubuntu-hetzner-ipv6() {
    ubuntu_image
    hetzner_link_dns "$UBUNTU_MTU"
}
check_debian_ubuntu-hetzner-ipv6() {
    local v6=${UBUNTU_IPV6//./\\.}
    check_takeover_chain DataSourceHetzner '^/hetzner/v1/userdata$' '^/hetzner/v1/metadata'
    expect "the plan names the cloud: hetzner" '^installer-fixture: plan-compact: .*"provider": ?"hetzner"'
    # Stage 1 saw what networkd made of cloud-init's netplan file.
    expect_stage1_network "stage 1 saw the static IPv6 from the metadata on the NIC (networkd, from netplan)" \
        "any(a['address'] == '$UBUNTU_IPV6' and a['prefix_len'] == 64 and not a['dynamic'] for i in links for a in i['addresses'])"
    expect_stage1_network "stage 1 saw the DHCPv4 lease as dynamic" \
        "any(a['family'] == 'inet' and a['dynamic'] and a['address'].startswith('169.254.0.') for i in links for a in i['addresses'])"
    expect_stage1_network "stage 1 saw networkd's static IPv6 default route via fe80::1" \
        "any(r['family'] == 'inet6' and r['dst'] == 'default' and r['gateway'] == 'fe80::1' and r['protocol'] == 'static' for r in net['routes'])"
    expect_stage1_network "stage 1 saw MTU $UBUNTU_MTU on the NIC" "[i['mtu'] for i in links] == [$UBUNTU_MTU]"
    expect_stage1_network "stage 1 read the resolvers from systemd-resolved, not the stub" \
        "net['dns_source'] == 'systemd-resolved' and {'185.12.64.1', '185.12.64.2'} <= set(net['dns']) and not any(s.startswith('127.') for s in net['dns'])"
    # Stage 2 put it back in the installer.
    expect "stage 2 restored the NIC found by MAC: the static IPv6, its route, the MTU and DHCP" \
        "^nixos-lift: network: eth0 \\(96:00:01:aa:bb:01, was [a-z0-9]+\\): [1-9] address\\(es\\), [1-9][0-9]* route\\(s\\), mtu $UBUNTU_MTU, dhcp\$"
    expect "stage 2 took a DHCPv4 lease with udhcpc" '^nixos-lift: network: eth0: DHCP lease from udhcpc$'
    expect "stage 2 wrote Hetzner's resolvers, not resolved's stub" '^nixos-lift: network: resolvers ([0-9.]+ )*185\.12\.64\.[12] ([0-9.]+ )*185\.12\.64\.[12]'
    expect_not "no stub address in stage 2's resolvers" '^nixos-lift: network: resolvers .*127\.0\.0\.5[34]'
    expect "the static IPv6 is up after stage 2" "^installer-fixture: network after stage 2, IPv6: .*eth0=$v6/64"
    expect "the IPv6 default route via fe80::1 is back" '^installer-fixture: network after stage 2, IPv6 routes: .*default via fe80::1 dev eth0'
    expect "the MTU is back" "^installer-fixture: network after stage 2, MTU: .*eth0=$UBUNTU_MTU "
    expect_stage2_done cloud-x86_64
}

# ---- 7. EC2, IMDSv2, UEFI, on the ubuntu-shaped image ----------------------------------------
# The instance keeps its IPv6 in the metadata: cloud-init asks netplan for dhcp6, and networkd,
# unlike ifupdown's dhclient -6, does not hold the boot while no DHCPv6 server answers.
debian_ubuntu-ec2-uefi() {
    ubuntu_image
    aws_instance
    INSTALLER_FILE=installer-manifest-x86_64.tar.gz
    CONFIG_SHA256=$INSTALLER_MANIFEST_SHA256
}
check_debian_ubuntu-ec2-uefi() {
    check_debian_ec2-uefi
    # EC2's resolver comes by DHCP, which slirp's restricted DHCP leaves out: resolved has no
    # upstream, and stage 1 must say so rather than hand over the stub.
    expect_stage1_network "stage 1 looked through resolved's stub and kept no 127.0.0.53" \
        "net['dns_source'] == 'systemd-resolved' and not any(s.startswith('127.') for s in net['dns'])"
    expect "stage 1 warned that resolved had no upstream" 'nixos-lift\[[0-9]+\]: .*points at the systemd-resolved stub but /run/systemd/resolve/resolv.conf lists no servers'
}

# ---- 8. a wrong agent sha256: nothing runs; SSH, netplan and resolved keep working -----------
debian_ubuntu-wrong-agent-sha256() {
    ubuntu_image
    hetzner_link_dns
    debian_wrong-agent-sha256
}
check_debian_ubuntu-wrong-agent-sha256() {
    check_debian_wrong-agent-sha256
    expect "cloud-init rendered the network to netplan" '^simcloud-alive: netplan: 50-cloud-init\.yaml $'
    expect "networkd configured the NIC" '^simcloud-alive: networkd links: .*eth0 ether routable configured'
    expect "networkd and resolved run" '^simcloud-alive: services: networkd active resolved active$'
    expect "resolv.conf is resolved's stub at 127.0.0.53" '^simcloud-alive: resolv.conf: \.\./run/systemd/resolve/stub-resolv\.conf nameservers 127\.0\.0\.53 $'
    expect "resolved's upstreams are Hetzner's resolvers, eth0's link DNS" '^simcloud-alive: resolved upstreams: .*185\.12\.64\.2 .*185\.12\.64\.1 '
    expect "resolvectl shows them on eth0" '^simcloud-alive: resolvectl dns: .*Link 2 \(eth0\): 185\.12\.64\.2 185\.12\.64\.1'
    expect "the stub answers (_gateway, resolved's synthesized name for the router)" '^simcloud-alive: stub answers _gateway: [0-9a-f:.]+ _gateway'
    expect "no ifupdown and no dhclient in the image" '^simcloud-alive: ifupdown or dhclient: $'
}
