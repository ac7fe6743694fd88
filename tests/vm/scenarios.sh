# The simulated cloud's scenarios, sourced by tests/vm/takeover.sh. Each `scenario_NAME`
# describes the VM (cloud, firmware, memory, disks, network, config), and `check_NAME` asserts
# on the serial console and the host-side logs after the run.
# shellcheck shell=bash

SCENARIOS="detect hetzner aws-uefi digitalocean-static wrong-sha256 low-memory lockdown second-disk"

# scenario_blocker NAME: prints why NAME cannot run yet (a part another issue delivers is
# missing) and fails; prints nothing when it can run.
scenario_blocker() {
    if [ ! -f "$FAKECLOUD" ]; then
        echo "the fake metadata server $FAKECLOUD is missing"
        return 1
    fi
    case $1 in
        detect)
            "$AGENT" detect --format json >/dev/null 2>&1 ||
                { echo "\`nixos-lift detect\` does not work on this host yet"; return 1; }
            ;;
        *)
            agent_supports run || { echo "the agent has no \`nixos-lift run\` yet"; return 1; }
            ;;
    esac
}

# Defaults shared by every scenario: a Hetzner x86_64 BIOS VM with DHCP and a good config.
scenario_defaults() {
    PROVIDER=hetzner
    VM_SMBIOS=("type=1,manufacturer=Hetzner,product=vServer,version=20171111,serial=41234567,uuid=8c2f0c4e-5f7d-4a0b-9d1e-3f4a5b6c7d8e")
    VM_MAC=96:00:01:aa:bb:01 # the NIC in tests/fixtures/metadata/hetzner
    VM_FIRMWARE=bios
    VM_MEMORY=1536
    VM_APPEND=""
    VM_NET=dhcp
    VM_STATIC_ADDRS=""
    VM_STATIC_GW=""
    VM_DNS=""
    VM_DATA_DISK=no
    VM_HOSTNAME=stock-image
    VM_COMMAND="nixos-lift run --config /etc/nixos-lift/config.yaml"
    VM_TIMEOUT=${SIMCLOUD_TIMEOUT:-150}
    METADATA_ARGS=()
    CONFIG_SHA256=$INSTALLER_SHA256
    CONFIG_MIN_MEMORY=1GiB
}

# write_config FILE: the config the stock image runs with (the one place it is written).
write_config() {
    cat >"$1" <<YAML
# Written by tests/vm/scenarios.sh for the scenario "$SCENARIO".
version: 1
flake: "github:nixos-lift/example#cloud-{arch}"
disk: auto
min_memory: $CONFIG_MIN_MEMORY
installer:
  url: "http://$RELEASE_ADDR/installer-{arch}.tar.gz"
  sha256:
    x86_64: "$CONFIG_SHA256"
ssh:
  authorized_keys:
    - "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHNpbWNsb3VkLWNvbmZpZy1rZXktMDAwMDAwMDAwMDAw simcloud-config-key"
reboot: false
YAML
}

# ---- 0. detect: the simulated hardware is what stage 1 sees --------------------------------
scenario_detect() { VM_COMMAND="nixos-lift detect --format json"; }
check_detect() {
    expect "DMI: sys_vendor Hetzner" '"sys_vendor": ?"Hetzner"'
    expect "the root disk carries its virtio serial" "\"serial\": ?\"$ROOT_SERIAL\""
    expect "the NIC's MAC is seen" "\"(mac|address)\": ?\"$VM_MAC\""
    expect "firmware bios" '"firmware": ?"bios"'
    expect_disks_untouched
}

# ---- 1. Hetzner, x86_64, BIOS: kexec happens and the installer sees the plan ---------------
scenario_hetzner() { :; }
check_hetzner() {
    expect_download
    expect_kexec
    expect "the installer fixture found the handed-over agent" '^installer-fixture: handoff files: .*nixos-lift/nixos-lift'
    expect "the handoff checks out in the installer" '^installer-fixture: handoff check exit 0$'
    expect "the plan names the cloud: hetzner" '^installer-fixture: plan-compact: .*"provider": ?"hetzner"'
    expect "the plan targets the root disk by serial" "^installer-fixture: plan-compact: .*\"target\": ?\\{[^}]*\"serial\": ?\"$ROOT_SERIAL\""
    expect "the plan resolved {arch} in the flake" '^installer-fixture: plan-compact: .*"reference": ?"github:nixos-lift/example#cloud-x86_64"'
    expect "firmware bios reaches the installer" '^installer-fixture: firmware=bios$'
    expect_disks_untouched
}

# ---- 2. AWS, IMDSv2, UEFI (OVMF): firmware uefi reaches the installer -----------------------
scenario_aws-uefi() {
    PROVIDER=aws
    VM_SMBIOS=("type=1,manufacturer=Amazon EC2,product=t3.small,version=1.0,serial=ec2e1916-9099-7caf-fd21-0123456789ab,uuid=ec2e1916-9099-7caf-fd21-0123456789ab"
        "type=3,manufacturer=Amazon EC2,asset=i-0abc123def4567890")
    VM_MAC=0a:1b:2c:3d:4e:01 # the NIC in tests/fixtures/metadata/aws
    VM_FIRMWARE=uefi
}
check_aws-uefi() {
    expect_download
    expect_kexec
    expect "the plan names the cloud: aws" '^installer-fixture: plan-compact: .*"provider": ?"aws"'
    expect "the plan carries the instance id from IMDSv2" '^installer-fixture: plan-compact: .*"instance_id": ?"i-0abc123def4567890"'
    expect "the plan says uefi" '^installer-fixture: plan-compact: .*"firmware": ?"uefi"'
    expect "the installer runs under UEFI" '^installer-fixture: firmware=uefi$'
    if grep -q '"PUT /latest/api/token' "$RUN/metadata.log" 2>/dev/null || grep -q '"method": *"PUT"' "$RUN/metadata.log"; then
        pass "stage 1 fetched an IMDSv2 token"
    else
        fail "stage 1 never PUT /latest/api/token"
    fi
    expect_disks_untouched
}

# ---- 3. DigitalOcean, static addresses only: the installer restores them and uses them ------
scenario_digitalocean-static() {
    PROVIDER=digitalocean
    VM_SMBIOS=("type=1,manufacturer=DigitalOcean,product=Droplet,version=20171212,serial=301234567")
    VM_MAC=7a:9e:a4:00:00:01 # the public NIC in tests/fixtures/metadata/digitalocean
    VM_NET=static
    # Not in the DHCP range (169.254.0.15+): only a restored static address reaches the host.
    # The droplet's public and anchor addresses ride along, as on a real droplet.
    VM_STATIC_ADDRS="169.254.0.77/16 188.166.1.2/18 10.18.0.5/16"
    VM_STATIC_GW=169.254.0.2
    VM_DNS="67.207.67.2 67.207.67.3"
}
check_digitalocean-static() {
    expect_download
    expect_kexec
    expect "the plan names the cloud: digitalocean" '^installer-fixture: plan-compact: .*"provider": ?"digitalocean"'
    expect "the static link-local address is restored" '^installer-fixture: network: static 169\.254\.0\.77/16 on eth0'
    expect "the droplet's public address is restored" '^installer-fixture: network: static 188\.166\.1\.2/18 on eth0'
    expect "the static default route is restored" '^installer-fixture: network: route -4 default via 169\.254\.0\.2 dev eth0'
    expect "no DHCP in the installer" '^installer-fixture: network restored from handoff \(dhcp=no\)'
    expect "the installer fetched a URL from the host through the restored network" \
        "^installer-fixture: probe http://$RELEASE_ADDR/probe.txt -> probe-ok $PROBE_TOKEN\$"
    expect "DNS reached the installer" '^installer-fixture: check: .*67\.207\.67\.2'
    expect_disks_untouched
}

# ---- 4. wrong sha256: no kexec, a clear error, the documented exit code ---------------------
scenario_wrong-sha256() {
    CONFIG_SHA256=$(printf '%s' "$INSTALLER_SHA256" | tr '0-9a-f' '1-9a-f0')
}
check_wrong-sha256() {
    expect_download
    expect_no_kexec
    expect_exit 1 "failure: verification"
    expect_i "the error names the sha256 mismatch" 'sha-?256'
    expect "the error shows the expected digest" "$CONFIG_SHA256"
    expect_vm_exit
    expect_disks_untouched
}

# ---- 5. -m 768 against a 1 GiB minimum: refused before any download --------------------------
scenario_low-memory() { VM_MEMORY=768; }
check_low-memory() {
    expect_exit 10 "refused by a guard"
    expect_i "the refusal names the memory guard" 'memory'
    expect_i "the refusal names the minimum needed" '1 ?GiB|1073741824'
    expect_no_download
    expect_no_kexec
    expect_vm_exit
    expect_disks_untouched
}

# ---- 6. lockdown=integrity: refused before any download, naming lockdown and Secure Boot ----
scenario_lockdown() { VM_APPEND="lockdown=integrity"; }
check_lockdown() {
    expect_exit 10 "refused by a guard"
    expect_i "the refusal names lockdown" 'lockdown'
    expect_i "the refusal names the found mode integrity" 'integrity'
    expect_i "the refusal names Secure Boot" 'secure ?boot'
    expect_no_download
    expect_no_kexec
    expect_vm_exit
    expect_disks_untouched
}

# ---- 7. a second disk: the plan targets the root disk and leaves the other alone ------------
scenario_second-disk() { VM_DATA_DISK=yes; }
check_second-disk() {
    expect_download
    expect_kexec
    expect "the plan targets the root disk (vda, by serial)" \
        "^installer-fixture: plan-compact: .*\"target\": ?\\{[^}]*\"path\": ?\"/dev/vda\"[^}]*\"serial\": ?\"$ROOT_SERIAL\""
    expect "the plan reports the second disk as left alone" \
        '^installer-fixture: plan-compact: .*"other_disks": ?\[ ?\{ ?"path": ?"/dev/vdb", ?"reason": ?"[^"]+'
    expect_i "stage 1 says on the console that it leaves vdb alone" '^[^|]*vdb.*(left alone|leav|not the target|untouched)|^[^|]*(left alone|leav).*vdb'
    expect_disks_untouched
}
