# The simulated cloud's arm64 scenarios (issue 9), sourced by tests/vm/takeover.sh and run with
# `--arch aarch64` (or by naming them): the same harness, defaults and checks as
# tests/vm/scenarios.sh, on `qemu-system-aarch64 -M virt -cpu cortex-a57` (TCG) with Debian's
# arm64 kernel, the cross-built agent and an installer fixture whose kexec/bzImage is the arm64
# Image and kexec/kexec a static arm64 kexec-tools. QEMU's virt machine publishes SMBIOS only
# through its UEFI firmware, so every arm64 scenario boots QEMU_EFI.fd, as CAX and Graviton
# machines boot UEFI.
# shellcheck shell=bash

SCENARIOS_AARCH64="arm64-hetzner-cax arm64-aws-graviton arm64-compressed-kernel"

# fixture_json KEY EXPR: evaluates the Python expression EXPR on the JSON document of the first
# `installer-fixture: KEY-compact: ` console line (`j`, e.g. KEY=plan); prints the result, or
# nothing when there is no such line or EXPR does not apply.
fixture_json() {
    python3 - "$RUN/console.log" "installer-fixture: $1-compact: " "$2" <<'PY'
import json, sys
prefix = sys.argv[2]
for line in open(sys.argv[1], errors="replace"):
    if line.startswith(prefix):
        try:
            j = json.loads(line[len(prefix):])
            print(eval(sys.argv[3], {"j": j}))
        except (ValueError, KeyError, IndexError, TypeError):
            pass
        break
PY
}
# expect_fixture_json WHAT KEY EXPR WANT: fixture_json KEY EXPR prints WANT.
expect_fixture_json() {
    local got
    got=$(fixture_json "$2" "$3")
    if [ "$got" = "$4" ]; then pass "$1"; else fail "$1 ($2: $3 = '${got:-<missing>}', want '$4')"; fi
}
# Debian's arm64 kernels lack CONFIG_KEXEC_FILE: kexec_file_load answers ENOSYS, and stage 1 must
# load through the tarball's static kexec (kexec_load), say so, and record it in the handoff.
expect_kexec_load_fallback() {
    expect "stage 1 logs kexec_file_load's ENOSYS and the fallback to the tarball's kexec" \
        'kexec_file_load refused \(Function not implemented.*falling back to kexec_load via .*/kexec/kexec'
    expect "stage 1 loaded the installer with kexec_load" 'installer kernel loaded.*kexec_load'
    expect "the handoff records method kexec_load, and why, for the installer" \
        '^installer-fixture: check: kexec: method=kexec_load fallback=kexec_file_load: Function not implemented'
}

# expect_stage2_aarch64: stage 2 (`nixos-lift install` with the recording doubles) ran the
# aarch64 flake to done on the root disk found again by its stable id, under UEFI.
expect_stage2_aarch64() {
    expect_stage2_done cloud-aarch64
    expect_stage2_install "$(plan_hostname)" cloud-aarch64
    expect_in_file "the facts module carries the UEFI bootloader hints" \
        "$(facts_module)" 'efiInstallAsRemovable = lib.mkDefault true'
    # shellcheck disable=SC2086 # one word per event
    expect_webhook $WEBHOOK_DONE
}

# ---- 1. Hetzner arm64 (CAX), UEFI: {arch} is aarch64, kexec through the kexec_load fallback ----
# Hetzner's SMBIOS strings are the same on CAX as on x86 (scenario_defaults'); only UEFI differs.
# The manifest layout (the default) names the tarball's static kexec, which the fallback runs.
# A harmless control word proves the fixture's fw_cfg channel on the virt machine after kexec.
scenario_arm64-hetzner-cax() {
    VM_FIRMWARE=uefi
    VM_FIXTURE_CONTROL="channel=fw_cfg"
}
check_arm64-hetzner-cax() {
    expect_download
    expect "the stock VM runs Debian's arm64 kernel" '^fresh-vm: up, [^ ]*-arm64,'
    expect_kexec
    expect "the installer fixture runs the arm64 kernel" '^installer-fixture: booted [^ ]*-arm64 '
    expect "the handoff checks out in the installer (the aarch64 agent runs there)" '^installer-fixture: handoff check exit 0$'
    expect_fixture_json "the plan names the cloud: hetzner" plan 'j["provider"]' hetzner
    expect_fixture_json "the plan's arch is aarch64" plan 'j["arch"]' aarch64
    expect_fixture_json "the plan resolved {arch} in the flake to aarch64" plan 'j["flake"]["reference"]' \
        "git+http://$RELEASE_ADDR/example.git#cloud-aarch64"
    expect_fixture_json "the plan fetched installer-manifest-{arch} as installer-manifest-aarch64" plan 'j["installer"]["url"]' \
        "http://$RELEASE_ADDR/installer-manifest-aarch64.tar.gz"
    expect_fixture_json "the plan's firmware is uefi" plan 'j["firmware"]' uefi
    expect_fixture_json "the plan targets the virtio root disk by serial" plan 'j["target"]["serial"]' "$ROOT_SERIAL"
    expect "the installer runs under UEFI" '^installer-fixture: firmware=uefi$'
    expect "the kernel command line came from kexec/manifest.json" '^installer-fixture: booted .* nixos_lift\.layout=manifest'
    expect_kexec_load_fallback
    expect "the fixture read its control from fw_cfg (qemu_fw_cfg on arm64 virt)" '^installer-fixture: control: channel=fw_cfg$'
    expect "stage 2 restored DHCP with udhcpc (the stock image had DHCP)" '^nixos-lift: network: eth0: DHCP lease from udhcpc$'
    expect_stage2_aarch64
    expect_disks_untouched
}

# ---- 2. AWS Graviton, IMDSv2, NVMe root disk: root disk and instance facts right on arm64 ------
scenario_arm64-aws-graviton() {
    aws_instance
    VM_SMBIOS[0]=${VM_SMBIOS[0]/product=t3.small/product=c7g.medium}
    VM_ROOT_BUS=nvme
    VM_DATA_DISK=yes # a virtio data volume next to the NVMe root: left alone
    # The x86_64 fixture served as a Graviton instance.
    METADATA_ARGS=(--subst t3.small=c7g.medium --subst '"architecture": "x86_64"="architecture": "arm64"')
}
check_arm64-aws-graviton() {
    expect_download
    expect_metadata "stage 1 took an IMDSv2 token" '^/latest/api/token$' '^nixos-lift/' PUT
    expect_kexec
    expect_fixture_json "the plan names the cloud: aws" plan 'j["provider"]' aws
    expect_fixture_json "the plan carries the instance id from IMDSv2" plan 'j["instance_id"]' i-0abc123def4567890
    expect_fixture_json "the facts carry the Graviton instance type from IMDSv2" facts 'j["cloud"]["instance_type"]' c7g.medium
    expect_fixture_json "the facts carry the region from IMDSv2" facts 'j["cloud"]["region"]' eu-central-1
    expect_fixture_json "the facts say aarch64" facts 'j["host"]["arch"]' aarch64
    expect_fixture_json "the plan targets the NVMe namespace" plan 'j["target"]["path"]' /dev/nvme0n1
    expect_fixture_json "the target's transport is nvme" plan 'j["target"]["transport"]' nvme
    expect_fixture_json "the target carries the NVMe serial" plan 'j["target"]["serial"]' "$ROOT_SERIAL"
    expect_fixture_json "the target's stable id is udev's NVMe by-id name" plan 'j["target"]["by_id"]' \
        "$(root_disk_by_id)"
    expect_fixture_json "the virtio data volume is left alone" plan '[d["path"] for d in j["other_disks"]]' "['/dev/vda']"
    expect "the kernel command line came from kexec/manifest.json" '^installer-fixture: booted .* nixos_lift\.layout=manifest'
    expect_kexec_load_fallback
    expect_stage2_aarch64
    expect_disks_untouched
}

# ---- 3. a gzip'd arm64 kernel in the installer tarball: refused before kexec, VM untouched ------
scenario_arm64-compressed-kernel() {
    VM_FIRMWARE=uefi
    local dir=$RUN/installer-gz
    mkdir -p "$dir"
    cp -a "$CACHE/installer/kexec" "$dir/"
    gzip -6 -c "$CACHE/installer/kexec/bzImage" >"$dir/kexec/bzImage"
    INSTALLER_FILE=installer-aarch64-gz.tar.gz
    tar -C "$dir" --owner=0 --group=0 -czf "$CACHE/www/$INSTALLER_FILE" kexec
    rm -rf "$dir"
    CONFIG_SHA256=$(sha256sum "$CACHE/www/$INSTALLER_FILE" | cut -d' ' -f1)
}
check_arm64-compressed-kernel() {
    expect_download
    expect_exit 10 "refused by a guard"
    expect "the refusal names the guard and what it found" 'refusing to kexec: arm64-image: found a kernel compressed with gzip'
    expect "the refusal names what is needed and the way out" 'needed an uncompressed arm64 Image.*way out: '
    expect_not "no kexec syscall was tried" 'kexec_file_load refused|installer kernel loaded'
    expect_no_kexec
    expect_vm_exit
    expect_disks_untouched
}
