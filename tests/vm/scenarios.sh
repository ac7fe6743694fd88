# The simulated cloud's scenarios, sourced by tests/vm/takeover.sh. Each `scenario_NAME`
# describes the VM (cloud, firmware, memory, disks, network, config), and `check_NAME` asserts
# on the serial console and the host-side logs after the run.
# shellcheck shell=bash
# Sourced: the scenario functions set the variables tests/vm/lib.sh and takeover.sh read.
# shellcheck disable=SC2034

SCENARIOS="installer-fixture detect hetzner aws-uefi digitalocean-static gcp-reboot wrong-sha256 low-memory lockdown second-disk install-fails upstream-installer big-1g big-1g-refused fleet fleet-wrong-key fleet-private fleet-missing-path fleet-1g"

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
    VM_ROOT_BUS=virtio # or nvme
    VM_BOOT=disk # or `installer`: straight into the installer fixture, no stock image
    VM_HOSTNAME=stock-image
    # SIMCLOUD_GUEST_COMMAND replaces the command for debugging a VM setup (the checks then fail).
    VM_COMMAND=${SIMCLOUD_GUEST_COMMAND:-nixos-lift run --config /etc/nixos-lift/config.yaml}
    VM_TIMEOUT=${SIMCLOUD_TIMEOUT:-300}
    METADATA_ARGS=()
    # nixos-lift's manifest layout, as nix/installer writes it: the one stage 1 takes over with
    # (upstream-installer shows nixos-images' own layout refused).
    INSTALLER_FILE=installer-manifest-$ARCH.tar.gz
    INSTALLER_LAYOUT=manifest
    CONFIG_SHA256=$INSTALLER_MANIFEST_SHA256
    CONFIG_MIN_MEMORY="" # empty: no min_memory in the config, the memory guard computes the need
    CONFIG_SYSTEM=""   # fleet mode: a prebuilt system closure
    CONFIG_SUBSTITUTER=http://$RELEASE_ADDR/cache
    CONFIG_CACHE_KEY=$CACHE_KEY
    CONFIG_REBOOT=false
    CONFIG_KEEP_HOST_KEYS=false
    CONFIG_UPDATE=""   # day 2: an `update` interval turns the pull on
    # Stage 2 in the installer fixture: faults for its doubles (tests/vm/installer/init).
    VM_FIXTURE_CONTROL=""
    # Secrets of this run: each must reach only where it belongs, never the console or argv.
    WEBHOOK_TOKEN=whk-simcloud-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
    ACCESS_TOKEN=ghp_simcloud$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
}

# aws_instance: the EC2 t3.small of tests/fixtures/metadata/aws, under UEFI (OVMF). The uuid
# starts with ec2 and equals the serial, as ds-identify and cloud-init's identify_aws want.
aws_instance() {
    PROVIDER=aws
    VM_SMBIOS=("type=1,manufacturer=Amazon EC2,product=t3.small,version=1.0,serial=ec2e1916-9099-7caf-fd21-0123456789ab,uuid=ec2e1916-9099-7caf-fd21-0123456789ab"
        "type=3,manufacturer=Amazon EC2,asset=i-0abc123def4567890")
    VM_MAC=0a:1b:2c:3d:4e:01 # the NIC in tests/fixtures/metadata/aws
    VM_FIRMWARE=uefi
}

# write_config FILE: the config the stock image runs with (the one place it is written).
write_config() {
    local url="http://$RELEASE_ADDR/${INSTALLER_FILE/$ARCH/'{arch}'}"
    cat >"$1" <<YAML
# Written by tests/vm/scenarios.sh for the scenario "$SCENARIO".
version: 1
flake: "git+http://$RELEASE_ADDR/example.git#cloud-{arch}"
disk: auto
installer:
  url: "$url"
  sha256:
    $ARCH: "$CONFIG_SHA256"
ssh:
  authorized_keys:
    - "$CONFIG_KEY"
nix:
  substituters: ["$CONFIG_SUBSTITUTER"]
  trusted_public_keys: ["$CONFIG_CACHE_KEY"]
  access_tokens:
    "$RELEASE_ADDR": "$ACCESS_TOKEN"
report:
  webhook_url: "https://$WEBHOOK_ADDR/events"
  webhook_token: "$WEBHOOK_TOKEN"
reboot: $CONFIG_REBOOT
keep_host_keys: $CONFIG_KEEP_HOST_KEYS
YAML
    [ -z "$CONFIG_SYSTEM" ] || echo "system: \"$CONFIG_SYSTEM\"" >>"$1"
    [ -z "$CONFIG_MIN_MEMORY" ] || echo "min_memory: $CONFIG_MIN_MEMORY" >>"$1"
    [ -z "$CONFIG_UPDATE" ] || printf 'update:\n  enable: true\n  interval: %s\n' "$CONFIG_UPDATE" >>"$1"
}
CONFIG_KEY="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHNpbWNsb3VkLWNvbmZpZy1rZXktMDAwMDAwMDAwMDAw simcloud-config-key"
CACHE_KEY="simcloud-cache-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="
FLEET_SYSTEM=/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-fleet-24.11

# ---- the harness's own check: the installer fixture restores a static network --------------
# Boots the installer fixture directly with a handoff the harness writes in stage 1's file
# shapes (`ip -j` addresses and routes), so the fixture's network restore, the guestfwd relay and
# the probe are proven even where `nixos-lift run` cannot run yet. Not a test of stage 1.
scenario_installer-fixture() {
    PROVIDER=none
    VM_SMBIOS=()
    VM_BOOT=installer
    VM_MAC=52:54:00:5e:1f:01
    VM_APPEND="nixos_lift.fixture=check"
    local h=$RUN/handoff
    mkdir -p "$h/nixos-lift"
    cp "$AGENT" "$h/nixos-lift/nixos-lift"
    echo '{"note": "written by tests/vm for the installer-fixture self-test"}' >"$h/nixos-lift/plan.json"
    echo '{"note": "written by tests/vm for the installer-fixture self-test"}' >"$h/nixos-lift/facts.json"
    cat >"$h/addrs.json" <<JSON
[{"ifindex":1,"ifname":"lo","link_type":"loopback","address":"00:00:00:00:00:00","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host","valid_life_time":4294967295,"preferred_life_time":4294967295}]},
 {"ifindex":2,"ifname":"ens3","link_type":"ether","address":"$VM_MAC","mtu":1500,"addr_info":[
  {"family":"inet","local":"169.254.0.88","prefixlen":16,"scope":"global","label":"ens3","valid_life_time":4294967295,"preferred_life_time":4294967295},
  {"family":"inet6","local":"fe80::5054:ff:fe5e:1f01","prefixlen":64,"scope":"link","valid_life_time":4294967295,"preferred_life_time":4294967295}]}]
JSON
    echo '[{"dst":"default","gateway":"169.254.0.2","dev":"ens3","protocol":"static","flags":["onlink"]},{"dst":"169.254.0.0/16","dev":"ens3","protocol":"kernel","scope":"link","prefsrc":"169.254.0.88","flags":[]}]' >"$h/routes-v4.json"
    echo '[]' >"$h/routes-v6.json"
    (cd "$h" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip >"$RUN/handoff.cpio.gz"
    cat "$CACHE/installer/kexec/initrd" "$RUN/handoff.cpio.gz" >"$RUN/installer-initrd"
}
check_installer-fixture() {
    expect "the fixture booted" '^installer-fixture: booted '
    expect "the fixture found the agent in the appended archive" '^installer-fixture: handoff files: .*nixos-lift/nixos-lift'
    expect "the handed-over agent runs in the installer" '^installer-fixture: check: '
    expect "the static address is restored on the NIC found by MAC (ens3 -> eth0)" '^installer-fixture: network: static 169\.254\.0\.88/16 on eth0$'
    expect "the onlink default route is restored" '^installer-fixture: network: route -4 default via 169\.254\.0\.2 dev eth0 onlink$'
    expect "no DHCP (the handoff had none)" '^installer-fixture: network restored from handoff \(dhcp=no\)'
    expect "the fixture fetched a URL from the host through the restored network" \
        "^installer-fixture: probe http://$RELEASE_ADDR/probe.txt -> probe-ok $PROBE_TOKEN\$"
}

# ---- 0. detect: the simulated hardware is what stage 1 sees --------------------------------
scenario_detect() { VM_COMMAND="nixos-lift detect --format json"; }
check_detect() {
    expect "DMI: sys_vendor Hetzner" '"sys_vendor": ?"Hetzner"'
    expect "the root disk carries its virtio serial" "\"serial\": ?\"$ROOT_SERIAL\""
    expect "the NIC's MAC is seen" "\"(mac|address)\": ?\"$VM_MAC\""
    expect "firmware bios" '"firmware": ?"bios"'
    expect_webhook # only `run` sends progress events
    expect_disks_untouched
}

# ---- 1. Hetzner, x86_64, BIOS: kexec happens and the installer sees the plan ---------------
scenario_hetzner() {
    CONFIG_UPDATE=6h
}
check_hetzner() {
    expect_download
    expect_stage1_progress 5
    expect_kexec
    expect "the installer fixture found the handed-over agent" '^installer-fixture: handoff files: .*nixos-lift/nixos-lift'
    expect "the handoff checks out in the installer" '^installer-fixture: handoff check exit 0$'
    expect "the plan names the cloud: hetzner" '^installer-fixture: plan-compact: .*"provider": ?"hetzner"'
    expect "the plan targets the root disk by serial" "^installer-fixture: plan-compact: .*\"target\": ?\\{[^}]*\"serial\": ?\"$ROOT_SERIAL\""
    expect "the plan resolved {arch} in the flake" "^installer-fixture: plan-compact: .*\"reference\": ?\"git\\+http://$RELEASE_ADDR/example\\.git#cloud-x86_64\""
    expect "firmware bios reaches the installer" '^installer-fixture: firmware=bios$'
    expect "the kernel command line came from kexec/manifest.json" '^installer-fixture: booted .* nixos_lift\.layout=manifest'
    # Stage 2: DHCP as in the stock image, then the whole install with the doubles.
    expect "stage 2 restored DHCP with udhcpc (the stock image had DHCP)" '^nixos-lift: network: eth0: DHCP lease from udhcpc$'
    expect_stage2_done cloud-x86_64
    expect_stage2_install "$(plan_hostname)" cloud-x86_64
    expect_not_in_file "the facts module of a BIOS machine has no UEFI bootloader hints" "$(facts_module)" efiSupport
    expect_update_trail 6h cloud-x86_64
    expect_webhook $WEBHOOK_DONE
    expect_disks_untouched
}

# ---- 2. AWS, IMDSv2, UEFI (OVMF): firmware uefi reaches the installer -----------------------
scenario_aws-uefi() {
    aws_instance
}
check_aws-uefi() {
    expect_download
    expect_kexec
    expect "the plan names the cloud: aws" '^installer-fixture: plan-compact: .*"provider": ?"aws"'
    expect "the plan carries the instance id from IMDSv2" '^installer-fixture: plan-compact: .*"instance_id": ?"i-0abc123def4567890"'
    expect "the plan says uefi" '^installer-fixture: plan-compact: .*"firmware": ?"uefi"'
    expect "the installer runs under UEFI" '^installer-fixture: firmware=uefi$'
    expect "the kernel command line came from kexec/manifest.json" '^installer-fixture: booted .* nixos_lift\.layout=manifest'
    expect_stage2_done cloud-x86_64
    expect_stage2_install "$(plan_hostname)" cloud-x86_64
    expect_in_file "the facts module carries the UEFI bootloader hints" "$(facts_module)" 'efiInstallAsRemovable = lib.mkDefault true'
    expect_webhook $WEBHOOK_DONE
    expect_metadata "stage 1 took an IMDSv2 token" '^/latest/api/token$' '^nixos-lift/' PUT
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
    expect "stage 2 restored the static addresses and routes on the NIC found by MAC" \
        '^nixos-lift: network: eth0 \(7a:9e:a4:00:00:01, was eth0\): [3-9] address\(es\), [1-9][0-9]* route\(s\)'
    expect "the static link-local, public and anchor addresses are up after stage 2" \
        '^installer-fixture: network after stage 2: .*eth0=169\.254\.0\.77/16.*eth0=188\.166\.1\.2/18.*eth0=10\.18\.0\.5/16'
    expect_not "no DHCP in the installer" '^nixos-lift: network: .*udhcpc'
    expect "stage 1 rendered the NIC's networkd unit: by MAC, no DHCP, its static addresses" \
        '^installer-fixture: networkd unit 10-nixos-lift-7a9ea4000001\.network: \[Match\] MACAddress=7a:9e:a4:00:00:01 \[Network\] DHCP=no IPv6AcceptRA=yes Address=169\.254\.0\.77/16 Address=188\.166\.1\.2/18 Address=10\.18\.0\.5/16 '
    # The metadata's private NIC is not on this VM; its unit is planned anyway and matches nothing.
    expect "and one for the private NIC the metadata publishes" \
        '^installer-fixture: networkd unit 10-nixos-lift-7a9ea4000002\.network: \[Match\] MACAddress=7a:9e:a4:00:00:02 \[Network\] DHCP=no IPv6AcceptRA=yes Address=10\.110\.0\.2/20 $'
    local units
    units=$(grep -c '^installer-fixture: networkd unit ' "$RUN/console.log" || true)
    if [ "$units" = 2 ]; then pass "no other unit"; else fail "no other unit (found $units)"; fi
    expect "DNS reached the installer" '^installer-fixture: check: .*67\.207\.67\.2'
    expect "stage 2 wrote the droplet's resolvers" '^nixos-lift: network: resolvers 67\.207\.67\.2 67\.207\.67\.3'
    expect_stage2_done cloud-x86_64
    expect_stage2_install "$(plan_hostname)" cloud-x86_64
    expect_webhook $WEBHOOK_DONE
    expect_disks_untouched
}

# ---- 3b. GCP, reboot: true: the guest attribute, and stage 2 really reboots at the end -------
# DMI says Google; the fake metadata service answers only with `Metadata-Flavor: Google` and
# records the guest-attribute PUTs. The disko double mounts tmpfs on /mnt and /mnt/boot, so the
# unmount before the reboot has work; QEMU's -no-reboot turns the guest's reboot into its exit.
scenario_gcp-reboot() {
    PROVIDER=gcp
    VM_SMBIOS=("type=1,manufacturer=Google,product=Google Compute Engine,serial=GoogleCloud-8F2E88F,uuid=4a6f8c2e-0d1b-4e3a-9c5f-7b8d9e0f1a2b")
    VM_MAC=42:01:0a:84:00:02 # the NIC in tests/fixtures/metadata/gcp
    CONFIG_REBOOT=true
    VM_FIXTURE_CONTROL="mount-target=/mnt"
}
check_gcp-reboot() {
    expect_download
    expect_kexec
    expect "the plan names the cloud: gcp" '^installer-fixture: plan-compact: .*"provider": ?"gcp"'
    expect "the plan carries the instance id from the GCE metadata" '^installer-fixture: plan-compact: .*"instance_id": ?"4567890123456789012"'
    expect_metadata "stage 1 read the GCE metadata with Metadata-Flavor (refused without)" '^/computeMetadata/v1/instance/id$' '^nixos-lift/'
    expect_stage2_done cloud-x86_64 reboot
    expect_webhook $WEBHOOK_REBOOT
    expect_guest_attribute "1/8 handoff" "2/8 network" "3/8 disk" "4/8 compose" "5/8 partition" \
        "6/8 install" "7/8 trail" "8/8 reboot" "done"
    expect_disks_untouched
}

# ---- 4. wrong sha256: no kexec, a clear error, the documented exit code ---------------------
scenario_wrong-sha256() {
    CONFIG_SHA256=$(printf '%s' "$INSTALLER_MANIFEST_SHA256" | tr '0-9a-f' '1-9a-f0')
}
check_wrong-sha256() {
    expect_download
    expect_no_kexec
    expect_exit 1 "failure: verification"
    expect_i "the error names the sha256 mismatch" 'sha-?256'
    expect "the error shows the expected digest" "$CONFIG_SHA256"
    expect_stage1_progress 2 'verifying .*: sha256 mismatch'
    expect_webhook 1:plan:running 1:download:running 1:download:failed
    expect_staging_removed
    expect_vm_exit
    expect_disks_untouched
}

# ---- 5. -m 768 against `min_memory: 1GiB` (the user's override of the computed need): refused
# before any download ------------------------------------------------------------------------
scenario_low-memory() {
    VM_MEMORY=768
    CONFIG_MIN_MEMORY=1GiB
}
check_low-memory() {
    expect_exit 10 "refused by a guard"
    expect_i "the refusal names the memory guard and the 1 GiB needed" \
        '^[^"]*memory.*(1 ?GiB|1024 ?MiB|1073741824)|^[^"]*(1 ?GiB|1024 ?MiB|1073741824).*memory'
    expect_stage1_progress 1 'refusing to install NixOS: .*memory'
    expect_webhook 1:plan:running 1:plan:failed
    expect_no_download
    expect_no_kexec
    expect_vm_exit
    expect_disks_untouched
}

# ---- 6. lockdown=integrity: refused before any download, naming lockdown and Secure Boot ----
scenario_lockdown() { VM_APPEND="lockdown=integrity"; }
check_lockdown() {
    expect_exit 10 "refused by a guard"
    expect_i "the refusal names lockdown and the mode found (integrity)" '^[^"]*lockdown.*integrity|^[^"]*integrity.*lockdown'
    expect_i "the refusal names Secure Boot" '^[^"]*secure ?boot'
    expect_stage1_progress 1 'refusing to install NixOS: .*lockdown'
    expect_webhook 1:plan:running 1:plan:failed
    expect_no_download
    expect_no_kexec
    expect_vm_exit
    expect_disks_untouched
}

# ---- 7. a second disk: the plan targets the root disk and leaves the other alone ------------
# Also fleet mode (`system:` set): stage 2 copies the prebuilt closure and never evaluates.
scenario_second-disk() {
    VM_DATA_DISK=yes
    CONFIG_SYSTEM=$FLEET_SYSTEM
}
check_second-disk() {
    expect_download
    expect_kexec
    expect "the plan targets the root disk (vda, by serial)" \
        "^installer-fixture: plan-compact: .*\"target\": ?\\{[^}]*\"path\": ?\"/dev/vda\"[^}]*\"serial\": ?\"$ROOT_SERIAL\""
    expect "the plan reports the second disk as left alone" \
        '^installer-fixture: plan-compact: .*"other_disks": ?\[ ?\{ ?"path": ?"/dev/vdb", ?"reason": ?"[^"]+'
    expect_i "stage 1 says on the console that it leaves vdb alone" '^[^|]*vdb.*(left alone|leav|not the target|untouched)|^[^|]*(left alone|leav).*vdb'
    expect "stage 2 composes in fleet mode" '^nixos-lift: \[4/8\] composing .* \(fleet mode: disko only\)'
    expect_stage2_done cloud-x86_64
    extract_records || return 0
    expect_tool_order nix-store nix-copy disko-script nix-copy nixos-install
    expect_argv_n nix 0 store ls --store "http://$RELEASE_ADDR/cache" --json "$FLEET_SYSTEM/disko-script"
    expect_argv nix copy --from "http://$RELEASE_ADDR/cache" --to "local?root=/mnt" "$FLEET_SYSTEM"
    expect_argv nixos-install --root /mnt --system "$FLEET_SYSTEM" --no-root-passwd --no-channel-copy
    if grep -qh 'toplevel' "$RUN/records/doubles/bin/records/"*-nix.argv; then
        fail "fleet mode evaluated the system (a nix call names toplevel)"
    else
        pass "fleet mode: no evaluation of the system (no nix call names toplevel)"
    fi
    expect_no_secrets
    expect_webhook $WEBHOOK_DONE
    expect_disks_untouched
}

# ---- 8. nixos-install fails: banner, `failed` event, no reboot although reboot: true --------
scenario_install-fails() {
    CONFIG_REBOOT=true
    VM_FIXTURE_CONTROL="fail-nixos-install=1"
}
check_install-fails() {
    expect_kexec
    expect "the fixture told the nixos-install double to fail" '^installer-fixture: control: fail-nixos-install=1$'
    expect "stage 2 reached the install phase" '^nixos-lift: \[6/8\] installing cloud-x86_64 \(nixos-install\)'
    expect "the failure line names the phase" '^nixos-lift: failed at \[6/8\] install: running nixos-install: exit status: 1'
    expect "a banner names the phase" '^nixos-lift: INSTALL FAILED in phase install \(6/8\)$'
    expect "the banner gives the reason" '^nixos-lift: reason: running nixos-install: exit status: 1$'
    expect "the banner says the disk was touched" '^nixos-lift: the disk was partitioned and is not bootable: do not reboot into it'
    expect "the banner shows the log's tail (the double's own error)" '^nixos-lift: \| nixos-install \(test double\): failing as told by control/fail-nixos-install$'
    expect "stage 2 returned a failure to the installer instead of rebooting" '^installer-fixture: nixos-lift install exited 1$'
    expect_not "no reboot" '^nixos-lift: \[8/8\] rebooting|^nixos-lift: done:'
    expect "the installer stayed up after the failure (it printed its records)" '^installer-fixture: records-end$'
    expect_webhook $WEBHOOK_STAGE1 handoff:running network:running disk:running compose:running partition:running install:running install:failed
    extract_records || return 0
    expect_tool_order nix-eval nix-build nix-eval disko-script nixos-install
    expect_no_secrets
    expect_disks_untouched
}

# ---- 9. nixos-images' own tarball (kexec/run, no manifest): no nixos-lift stage 2 in it ------
# The upstream layout with upstream's kexec-run.sh (module.nix's substitution done): stage 1
# downloads and verifies it, reads the command line as upstream's script builds it, and refuses
# before the kexec.
scenario_upstream-installer() {
    INSTALLER_FILE=installer-$ARCH.tar.gz
    INSTALLER_LAYOUT=nixos-images
    CONFIG_SHA256=$INSTALLER_SHA256
}
check_upstream-installer() {
    expect_download
    expect_exit 10 "refused by a guard"
    expect "the refusal names the installer-stage2 guard and the upstream layout" \
        "installer-stage2: found nixos-images' upstream kexec layout"
    # kexec/run has kernelParams="'console=ttyS0,115200' 'panic=-1' quiet ...": only a reading
    # that follows upstream's shell quoting gives these words back.
    expect "the refusal shows the command line rebuilt from upstream's kexec/run" \
        "installer-stage2: .*init=/init console=$CONSOLE,115200 panic=-1 quiet nixos_lift\\.fixture=install nixos_lift\\.layout=nixos-images"
    expect_not "no shell quote of kexec/run is left in a command line" "init=/init '|'console="
    expect_stage1_progress 2 'refusing to kexec: installer-stage2'
    expect_webhook 1:plan:running 1:download:running 1:download:failed
    expect_not "no kexec syscall was tried" 'kexec_file_load refused|installer kernel loaded'
    expect_no_kexec
    expect_staging_removed
    expect_vm_exit
    expect_disks_untouched
}

# ---- 10. a 1 GiB instance, a 200 MiB store image: the takeover fits in RAM -------------------
# The realistic-size installer (build_sized_installer): stage 1 stages it on a tmpfs sized to
# the need, hands over through the big initrd, and stage 2 runs in fleet mode, as a 1 GiB
# machine would be deployed (a prebuilt closure, no evaluation in the installer).
scenario_big-1g() {
    VM_MEMORY=1024
    VM_TIMEOUT=${SIMCLOUD_TIMEOUT:-600}
    build_sized_installer 200
    INSTALLER_FILE=$SIZED_INSTALLER_FILE
    CONFIG_SHA256=$SIZED_INSTALLER_SHA256
    CONFIG_SYSTEM=$FLEET_SYSTEM
}
check_big-1g() {
    local avail staged
    expect_size_asked
    expect_download
    expect_stage1_progress 5
    expect "stage 1 staged on a tmpfs sized to the need" 'staging: tmpfs of [0-9]+ MiB at /run/nixos-lift/work'
    expect "stage 1 reported its lowest MemAvailable" 'memory: lowest MemAvailable [0-9]+ MiB during stage 1 \(staged [0-9]+ MiB\)'
    staged=$(console_mib 'staged [0-9]+ MiB')
    if [ "${staged:-0}" -ge 200 ]; then pass "the staged size counts the store image ($staged MiB)"; else fail "staged ${staged:-?} MiB, less than the 200 MiB store image"; fi
    expect_kexec
    expect "the handoff checks out in the installer" '^installer-fixture: handoff check exit 0$'
    expect "the whole store image arrived in the installer" '^installer-fixture: store image 200 MiB$'
    expect "stage 2 composes in fleet mode" '^nixos-lift: \[4/8\] composing .* \(fleet mode: disko only\)'
    expect_stage2_done cloud-x86_64
    expect_webhook $WEBHOOK_DONE
    expect_disks_untouched
    avail=$(console_mib 'lowest MemAvailable [0-9]+')
    log "big-1g: $(console_value 'fresh-vm: memory: ')| $(grep -Eom1 'staging: [^;]*' "$RUN/console.log") | lowest MemAvailable ${avail:-?} MiB, staged ${staged:-?} MiB"
}

# ---- 11. a 1 GiB instance, a 430 MiB store image (nixos-images' real size): refused before the
# download, by the memory the takeover needs (no min_memory in the config) ----------------------
scenario_big-1g-refused() {
    VM_MEMORY=1024
    build_sized_installer 430
    INSTALLER_FILE=$SIZED_INSTALLER_FILE
    CONFIG_SHA256=$SIZED_INSTALLER_SHA256
}
check_big-1g-refused() {
    local avail total need
    expect_exit 10 "refused by a guard"
    expect "the refusal names MemAvailable, MemTotal and the MiB needed" \
        'memory: found MemAvailable [0-9]+ MiB \(MemTotal [0-9]+ MiB\)[;,] needed [0-9]+ MiB'
    avail=$(console_mib 'found MemAvailable [0-9]+')
    total=$(console_mib '\(MemTotal [0-9]+')
    need=$(console_mib 'needed [0-9]+ MiB')
    if [ -n "$need" ] && [ -n "$avail" ] && [ "$need" -gt "$avail" ] && [ "$need" -gt 430 ]; then
        pass "the need ($need MiB) exceeds MemAvailable ($avail MiB) and the 430 MiB store image"
    else
        fail "the refusal's numbers: needed ${need:-?} MiB, MemAvailable ${avail:-?} MiB"
    fi
    expect_stage1_progress 1 'refusing to install NixOS: .*memory'
    expect_webhook 1:plan:running 1:plan:failed
    expect_size_asked
    expect_no_download
    expect_no_kexec
    expect_staging_removed
    expect_vm_exit
    expect_disks_untouched
    log "big-1g-refused: MemTotal ${total:-?} MiB, MemAvailable ${avail:-?} MiB, needed ${need:-?} MiB"
}

# ---- 12-15. fleet mode with the real Nix (tests/vm/fleet.sh) ------------------------------
# The installer carries Debian trixie's Nix 2.26; the substituter is a signed binary cache built
# on the host by the same Nix from plain derivations. Stage 2 reads the prebuilt disko script's
# path from the system (`nix store ls`), copies it into the installer's store and runs it (the
# disko double, really partitioning and formatting the root disk), copies the closure into
# /mnt's store, and the nixos-install double sets the system profile with the real nix-env.
# The host reads the target disk back with debugfs.

# expect_fleet_failure PHASE N WHY-ERE: stage 2 failed at phase N/8 PHASE with Nix's reason in
# the banner's log tail, returned to the installer (no reboot although reboot: true) and the
# webhook's last event is PHASE:failed.
expect_fleet_failure() {
    local phase=$1 n=$2 why=$3 events="" p
    expect "the failure line names phase $n/8 $phase" "^nixos-lift: failed at \\[$n/8\\] $phase: running nix: exit status: 1"
    expect "a banner names the phase" "^nixos-lift: INSTALL FAILED in phase $phase \\($n/8\\)\$"
    expect "the banner's log tail gives Nix's reason" "^nixos-lift: \\| error: $why"
    expect "stage 2 returned a failure to the installer" '^installer-fixture: nixos-lift install exited 1$'
    expect_not "no reboot" '^nixos-lift: \[8/8\] rebooting|^nixos-lift: done:'
    for p in handoff network disk compose partition install; do
        events+=" $p:running"
        [ "$p" = "$phase" ] && break
    done
    # shellcheck disable=SC2086 # a list of events
    expect_webhook $WEBHOOK_STAGE1 $events "$phase:failed"
}

# expect_fleet_tools CACHE: the recorded nix runs: the disko link read from CACHE, the disko
# script copied into the installer's store and run, then the system copied into /mnt.
expect_fleet_tools() {
    local from=http://$RELEASE_ADDR/fleet/$1
    expect_tool_order nix-store nix-copy disko-script nix-copy nixos-install
    expect_argv_n nix 0 store ls --store "$from" --json "$FLEET_SYSTEM_PATH/disko-script"
    expect_argv_n nix 1 copy --from "$from" "$FLEET_DISKO_PATH"
    expect_argv_n nix 2 copy --from "$from" --to "local?root=/mnt" "$FLEET_SYSTEM_PATH"
    expect_argv nixos-install --root /mnt --system "$FLEET_SYSTEM_PATH" --no-root-passwd --no-channel-copy
    expect_no_evaluation
}

scenario_fleet() {
    fleet_scenario good
    CONFIG_KEEP_HOST_KEYS=true
}
check_fleet() {
    expect_kexec
    expect "the installer runs the real Nix 2.26" '^installer-fixture: real nix: nix \(Nix\) 2\.26'
    expect "stage 2 composes in fleet mode" '^nixos-lift: \[4/8\] composing .* \(fleet mode: disko only\)'
    expect_stage2_done cloud-x86_64
    extract_records || return 0
    expect_fleet_tools good
    expect_in_file "the disko double partitioned and formatted the root disk" "$RUN/records/run/nixos-lift/install.log" \
        "disko-script (test double): $(root_disk) partitioned, ext4 on $(root_disk)1 mounted on /mnt"
    expect_target_system
    expect_target_host_keys
    expect_target_machine_files
    expect_no_secrets
    expect_webhook $WEBHOOK_DONE
}

# A 1 GiB instance: once disko has made the target's ext4 (1 GiB here), stage 2 puts a swap
# file and the builds' temporary files there for the install phase, and takes both away after.
scenario_fleet-1g() {
    fleet_scenario good
    VM_MEMORY=1024
    VM_FIXTURE_CONTROL+=" disko-size-mib=1024"
}
check_fleet-1g() {
    local swaps
    expect_kexec
    expect "stage 2 adds swap on the target" \
        '^nixos-lift: memory is tight \([0-9]+ MiB\): [0-9]+ MiB of swap on the target \(/mnt/\.nixos-lift-swap, ext4\)'
    expect "stage 2 released it after the install phase" \
        '^nixos-lift: swap on the target released \(/mnt/\.nixos-lift-swap removed\)'
    if awk '/^nixos-lift: memory is tight .* swap on the target/ { swap = NR } /^nixos-lift: \[6\/8\] installing/ { install = NR }
        /^nixos-lift: swap on the target released/ { released = NR }
        END { exit !(swap && swap < install && install < released) }' "$RUN/console.log"; then
        pass "the swap is on before the install phase begins and released after it"
    else
        fail "the swap line, the install phase and the release are not in that order on the console"
    fi
    expect_stage2_done cloud-x86_64
    extract_records || return 0
    swaps=$(ls "$RUN/records/doubles/bin/records/"*-nixos-install.files 2>/dev/null | head -n1)
    expect_in_file "the swap file was on while nixos-install ran" "$swaps" "/mnt/.nixos-lift-swap"
    expect_in_file "nixos-install's temporary files went to the target" \
        "${swaps%.files}.env" "TMPDIR=/mnt/.nixos-lift-tmp"
    expect_target_system
    if debugfs -R "stat /.nixos-lift-swap" "$RUN/root.img?offset=1048576" 2>/dev/null | grep -q Inode; then
        fail "the swap file is still on the target"
    else
        pass "the swap file is gone from the target"
    fi
}

# A cache signed by another key: the first copy (the disko script, into the installer's store)
# already fails, so the disk is never touched.
scenario_fleet-wrong-key() {
    fleet_scenario wrongkey
    CONFIG_REBOOT=true
}
check_fleet-wrong-key() {
    expect_kexec
    expect_fleet_failure compose 4 "cannot add path '/nix/store/[^']+' because it lacks a signature by a trusted key"
    extract_records || return 0
    expect_tool_order nix-store nix-copy
    expect_disks_untouched
    expect_no_secrets
}

# The private cache: 401 without the token (the host's real Nix, asked without it), success
# with it (netrc-file in the private nix.conf; the token in no console line, record or argv).
# Without keep_host_keys, the stock image's host keys stay off the target.
scenario_fleet-private() { fleet_scenario private; }
check_fleet-private() {
    local out n
    if out=$(fleet_nix nix store ls --store "http://127.0.0.1:$RELEASE_PORT/fleet/private" --json "$FLEET_SYSTEM_PATH/disko-script" 2>&1); then
        fail "the private cache answered the host's Nix without the token"
    elif grep -q 'HTTP error 401' <<<"$out"; then
        pass "without the token the private cache answers 401 (the host's Nix: $(grep -o "HTTP error 401" <<<"$out" | head -n1))"
    else
        fail "without the token: '$out', wanted HTTP error 401"
    fi
    expect_stage2_done cloud-x86_64
    n=$(grep -c "^GET /fleet/private/.* 200\$" "$RUN/release.log" || true)
    if [ "$n" -gt 0 ]; then pass "the VM's Nix fetched $n files of the private cache with the token"; else fail "no request to the private cache was answered 200"; fi
    extract_records || return 0
    expect_fleet_tools private
    if grep -hq "nix/nix.conf mode=600 settings=.*netrc-file" "$RUN/records/doubles/bin/records/"*-nix.files 2>/dev/null; then
        pass "nix got the token through netrc-file in the private nix.conf"
    else
        fail "the private nix.conf has no netrc-file"
    fi
    expect_target_system
    expect_target_no_host_keys
    expect_no_secrets
}

# The cache lacks one path of the closure (the initrd's, not in the disko script's closure):
# the system copy fails at the install phase, naming the path.
scenario_fleet-missing-path() {
    fleet_scenario missing
    CONFIG_REBOOT=true
}
check_fleet-missing-path() {
    expect_kexec
    expect_fleet_failure install 6 "path '${FLEET_MISSING_PATH//./\\.}' is not valid"
    extract_records || return 0
    expect_tool_order nix-store nix-copy disko-script nix-copy
    expect_target_no_system
    expect_no_secrets
}
