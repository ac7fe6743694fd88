# Fleet mode with the real Nix, sourced by tests/vm/takeover.sh after tests/vm/lib.sh:
#   build_fleet_cache      a prebuilt "system" (tests/vm/fleet/closure.nix: plain derivations, no
#                          nixpkgs) built by Debian trixie's Nix 2.26 on the host into a chroot
#                          store, copied into signed file:// binary caches that the release
#                          server serves over HTTP ($CACHE/www/fleet/...)
#   build_fleet_installer  the manifest-layout installer with the real Nix (and sfdisk, mke2fs
#                          for the disko double) added to its initrd as a second archive
#   target_*/expect_target_*  the target disk read back on the host (debugfs, no mount): the
#                          system, the host keys and fleet mode's per-machine files
# shellcheck shell=bash
# Sourced: it sets variables the fleet scenarios read.
# shellcheck disable=SC2034

# The caches under $CACHE/www/fleet (the release server's /fleet/):
#   good/      every path of the closure, signed by the key in FLEET_PUBLIC_KEY
#   wrongkey/  the same paths signed by another key
#   missing/   good/ without the narinfo of FLEET_MISSING_PATH (the initrd path)
#   private/   good/, served only with the access token (release_server.py --private-prefix)
FLEET_PRIVATE_PREFIX=/fleet/private/

# fleet_nix ARGS...: the host's Nix 2.26 on a throwaway configuration (no daemon, no
# substituters, the sandbox on with nothing bound in: the builders are the busybox store path).
fleet_nix() {
    NIX_CONF_DIR=$FLEET_WORK/etc NIX_CONFIG=$'experimental-features = nix-command\nbuild-users-group =\nsandbox = true\nsandbox-paths =\nsubstituters =\nbuild-hook =\nbuilders =' \
        NIX26_HOME=$FLEET_WORK/home nix26 "$@"
}

# build_fleet_cache: builds the closure and its caches once per recipe (closure.nix, busybox,
# this function's layout version) in $CACHE/fleet-KEY; sets FLEET_SYSTEM_PATH, FLEET_DISKO_PATH,
# FLEET_MISSING_PATH, FLEET_CLOSURE (every path, space-separated) and FLEET_PUBLIC_KEY.
build_fleet_cache() {
    local key dir
    ensure_nix26_tree
    key=$( (echo "fleet cache layout 1" && sha256sum "$VM_SRC/fleet/closure.nix" "$BUSYBOX" | cut -d' ' -f1) | sha256sum | cut -c1-16)
    dir=$CACHE/fleet-$key
    FLEET_WORK=$dir/work
    if [ ! -s "$dir/fleet.env" ]; then
        local t system path
        t=$(date +%s)
        rm -rf "$CACHE"/fleet-* && mkdir -p "$FLEET_WORK/bb/bin" "$FLEET_WORK/etc" "$FLEET_WORK/home" "$dir/www"
        cp "$BUSYBOX" "$FLEET_WORK/bb/bin/busybox"
        system=$(fleet_nix nix build --store "$FLEET_WORK/root" --no-link --print-out-paths \
            -f "$VM_SRC/fleet/closure.nix" --argstr busyboxDir "$FLEET_WORK/bb") || die "building the fleet closure failed"
        fleet_nix nix key generate-secret --key-name simcloud-fleet-1 >"$FLEET_WORK/good.key"
        fleet_nix nix key generate-secret --key-name simcloud-other-1 >"$FLEET_WORK/other.key"
        fleet_nix nix copy --store "$FLEET_WORK/root" --to "file://$dir/www/good?secret-key=$FLEET_WORK/good.key&compression=zstd" "$system" 2>/dev/null
        fleet_nix nix copy --store "$FLEET_WORK/root" --to "file://$dir/www/wrongkey?secret-key=$FLEET_WORK/other.key&compression=zstd" "$system" 2>/dev/null
        cp -a "$dir/www/good" "$dir/www/missing"
        ln -s good "$dir/www/private"
        {
            echo "FLEET_SYSTEM_PATH=$system"
            echo "FLEET_DISKO_PATH=$(readlink "$FLEET_WORK/root$system/disko-script")"
            path=$(fleet_nix nix path-info --store "$FLEET_WORK/root" -r "$system" | grep -- '-initrd-fleet-test$')
            rm "$dir/www/missing/$(basename "${path%%-*}").narinfo"
            echo "FLEET_MISSING_PATH=$path"
            echo "FLEET_CLOSURE='$(fleet_nix nix path-info --store "$FLEET_WORK/root" -r "$system" | tr '\n' ' ')'"
            echo "FLEET_PUBLIC_KEY=$(fleet_nix nix key convert-secret-to-public <"$FLEET_WORK/good.key")"
        } >"$dir/fleet.env.tmp"
        mv "$dir/fleet.env.tmp" "$dir/fleet.env"
        log "built the fleet closure and its binary caches with Nix 2.26 in $(($(date +%s) - t)) s ($dir)"
    fi
    # shellcheck source=/dev/null
    . "$dir/fleet.env"
    mkdir -p "$CACHE/www"
    ln -sfn "../fleet-$key/www" "$CACHE/www/fleet"
}

# add_dynamic DIR LIBDIR LOADER BIN NAME...: copies BIN to DIR/libexec/NAME[0] with every library
# LOADER resolves for it (LIBDIR: the search path, colon-separated) into DIR/lib, and writes
# DIR/bin/NAME for each NAME: a wrapper running it through the copied loader with argv[0] NAME
# (Nix picks nix or nix-env from it). The installer fixture is busybox only; this carries a
# dynamically linked tool into it unchanged.
add_dynamic() {
    local dir=$1 libdir=$2 loader=$3 bin=$4 name
    shift 4
    mkdir -p "$dir/bin" "$dir/lib" "$dir/libexec"
    cp -L "$bin" "$dir/libexec/$1"
    cp -L "$loader" "$dir/lib/ld-linux-x86-64.so.2"
    "$loader" --library-path "$libdir" --list "$bin" | awk '/=> \// { print $3 }' | while read -r lib; do
        cp -L "$lib" "$dir/lib/"
    done
    for name in "$@"; do
        printf '#!/bin/sh\nexec %s/lib/ld-linux-x86-64.so.2 --library-path %s/lib --argv0 %s %s/libexec/%s "$@"\n' \
            "${dir#"$FLEET_PAYLOAD"}" "${dir#"$FLEET_PAYLOAD"}" "$name" "${dir#"$FLEET_PAYLOAD"}" "$1" >"$dir/bin/$name"
        chmod 0755 "$dir/bin/$name"
    done
}

# build_fleet_installer: $CACHE/www/installer-manifest-ARCH-fleet.tar.gz, the manifest-layout
# installer whose initrd also holds /opt/nix (Nix 2.26 from the trixie tree: `nix`, `nix-env`)
# and /opt/host (the host's sfdisk and mke2fs, for the disko double's real partitioning), and
# /etc/nix/nix.conf as a NixOS installer's (minus the nixbld users: no builds run). Sets
# FLEET_INSTALLER_FILE and FLEET_INSTALLER_SHA256. Needs build_installer first.
build_fleet_installer() {
    local tar=$CACHE/installer work=$CACHE/fleet-installer payload_gz=$CACHE/fleet-payload.cpio.gz
    FLEET_PAYLOAD=$CACHE/fleet-payload
    [ -s "$tar/kexec/manifest.json" ] || die "build_fleet_installer: run build_installer first"
    if [ ! -s "$payload_gz" ] || [ "$payload_gz" -ot "$NIX26_TREE/usr/bin/nix" ] || [ "$payload_gz" -ot "$VM_SRC/fleet.sh" ]; then
        rm -rf "$FLEET_PAYLOAD" && mkdir -p "$FLEET_PAYLOAD/etc/nix"
        add_dynamic "$FLEET_PAYLOAD/opt/nix" "$NIX26_TREE/usr/lib/x86_64-linux-gnu:$NIX26_TREE/lib/x86_64-linux-gnu" \
            "$NIX26_TREE/lib64/ld-linux-x86-64.so.2" "$NIX26_TREE/usr/bin/nix" nix nix-env
        add_dynamic "$FLEET_PAYLOAD/opt/host" /lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu /lib64/ld-linux-x86-64.so.2 /usr/sbin/sfdisk sfdisk
        add_dynamic "$FLEET_PAYLOAD/opt/host" /lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu /lib64/ld-linux-x86-64.so.2 /usr/sbin/mke2fs mke2fs
        cp /etc/mke2fs.conf "$FLEET_PAYLOAD/etc/"
        printf 'build-users-group =\nsandbox = false\n' >"$FLEET_PAYLOAD/etc/nix/nix.conf"
        find "$FLEET_PAYLOAD" -mindepth 1 -exec touch -h -d @0 {} +
        (cd "$FLEET_PAYLOAD" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 --reproducible) | gzip -1 -n >"$payload_gz"
    fi
    rm -rf "$work" && mkdir -p "$work/kexec"
    find "$tar/kexec" -mindepth 1 ! -name initrd -exec cp -t "$work/kexec" {} +
    cat "$tar/kexec/initrd" "$payload_gz" >"$work/kexec/initrd"
    FLEET_INSTALLER_FILE=installer-manifest-$ARCH-fleet.tar.gz
    pack_installer "$work" "$CACHE/www/$FLEET_INSTALLER_FILE" 1
    FLEET_INSTALLER_SHA256=$(sha256sum "$CACHE/www/$FLEET_INSTALLER_FILE" | cut -d' ' -f1)
    rm -rf "$work"
}

# prepare_fleet: the cache and the installer, once per run of the fleet scenarios.
prepare_fleet() {
    [ -z "${FLEET_INSTALLER_SHA256:-}" ] || return 0
    need_apt mmdebstrap
    build_fleet_cache
    build_fleet_installer
}

# fleet_scenario CACHE: a fleet-mode takeover with the real Nix from the cache CACHE (good,
# wrongkey, missing or private); the disko double really partitions and formats the root disk.
fleet_scenario() {
    prepare_fleet
    INSTALLER_FILE=$FLEET_INSTALLER_FILE
    CONFIG_SHA256=$FLEET_INSTALLER_SHA256
    CONFIG_SYSTEM=$FLEET_SYSTEM_PATH
    CONFIG_SUBSTITUTER=http://$RELEASE_ADDR/fleet/$1
    CONFIG_CACHE_KEY=$FLEET_PUBLIC_KEY
    VM_FIXTURE_CONTROL="real-nix=1 disko-format=$(root_disk)"
}

# target_dump: the target disk's /nix and /etc (partition 1 of root.img, as the disko double
# made it) copied out with debugfs into $RUN/target; false when there is no filesystem.
target_dump() {
    rm -rf "$RUN/target" && mkdir -p "$RUN/target"
    local img="$RUN/root.img?offset=1048576"
    debugfs -R "stats" "$img" >/dev/null 2>&1 || return 1
    debugfs -R "rdump /nix $RUN/target" "$img" >/dev/null 2>&1
    debugfs -R "rdump /etc $RUN/target" "$img" >/dev/null 2>&1
    return 0
}

# expect_target_system: every path of the closure is in the target's /nix/store and valid in
# its Nix database, and the system profile points at the system path.
expect_target_system() {
    local p missing="" invalid="" link
    if ! target_dump; then
        fail "the target disk holds no filesystem at partition 1 (debugfs)"
        return
    fi
    for p in $FLEET_CLOSURE; do
        [ -e "$RUN/target$p" ] || [ -L "$RUN/target$p" ] || missing+=" $p"
        if [ "$(sqlite3 "file:$RUN/target/nix/var/nix/db/db.sqlite?mode=ro" "select count(*) from ValidPaths where path = '$p'" 2>/dev/null)" != 1 ]; then
            invalid+=" $p"
        fi
    done
    if [ -z "$missing" ]; then pass "all $(wc -w <<<"$FLEET_CLOSURE") paths of the closure are in the target's /nix/store"; else fail "missing from the target's /nix/store:$missing"; fi
    if [ -z "$invalid" ]; then pass "each is valid in the target's Nix database (ValidPaths)"; else fail "not valid in the target's Nix database:$invalid"; fi
    link=$(readlink "$RUN/target/nix/var/nix/profiles/system" || true)
    if [ -n "$link" ] && [ "$(readlink "$RUN/target/nix/var/nix/profiles/$link")" = "$FLEET_SYSTEM_PATH" ]; then
        pass "profiles/system -> $link -> $FLEET_SYSTEM_PATH"
    else
        fail "profiles/system -> '${link:-nothing}' -> '$(readlink "$RUN/target/nix/var/nix/profiles/${link:-none}")', wanted $FLEET_SYSTEM_PATH"
    fi
    for p in init bin/switch-to-configuration kernel initrd; do
        if [ -e "$RUN/target$FLEET_SYSTEM_PATH/$p" ] || [ -L "$RUN/target$FLEET_SYSTEM_PATH/$p" ]; then :; else fail "the system path on the target lacks $p"; return; fi
    done
    pass "the system path on the target has init, bin/switch-to-configuration, kernel and initrd"
}

# expect_target_no_system: the target's store did not get the system path (a failed copy
# leaves no profile).
expect_target_no_system() {
    target_dump || { pass "the target disk holds no installed system (no filesystem)"; return; }
    if [ -L "$RUN/target/nix/var/nix/profiles/system" ]; then
        fail "the target has a system profile after a failed copy"
    else
        pass "the target has no system profile"
    fi
}

# target_mode PATH: the octal permission bits of PATH on the target disk (debugfs stat), or
# nothing when it is not there.
target_mode() {
    debugfs -R "stat $1" "$RUN/root.img?offset=1048576" 2>/dev/null | sed -n 's/.*Mode: *0*\([0-7]\{3\}\) .*/\1/p' | head -n1
}

# expect_target_host_keys: keep_host_keys: the target's /etc/ssh holds every host key of the
# stock image, byte for byte, private halves 0600 and public ones 0644 (needs target_dump).
expect_target_host_keys() {
    local stock=$CACHE/rootfs-base/etc/ssh f name want bad="" n=0
    for f in "$stock"/ssh_host_*; do
        name=${f##*/}
        if [[ $name == *.pub ]]; then want=644; else want=600; fi
        if ! cmp -s "$f" "$RUN/target/etc/ssh/$name"; then
            bad+=" $name(bytes)"
        elif [ "$(target_mode "/etc/ssh/$name")" != "$want" ]; then
            bad+=" $name(mode $(target_mode "/etc/ssh/$name"), wanted $want)"
        fi
        n=$((n + 1))
    done
    if [ "$n" -eq 0 ]; then
        fail "the stock image has no host keys to compare ($stock)"
    elif [ -z "$bad" ]; then
        pass "the target's /etc/ssh holds the stock image's $n host key files, same bytes, private 0600, public 0644"
    else
        fail "host keys on the target differ from the stock image's:$bad"
    fi
    expect "stage 2 logged the kept keys by name" '^nixos-lift: kept the stock image.s SSH host keys in /etc/ssh: ssh_host_'
    expect_not "no host key bytes on the console" 'PRIVATE KEY'
}

# expect_target_no_host_keys: without keep_host_keys no host key reached the target.
expect_target_no_host_keys() {
    local found
    found=$(compgen -G "$RUN/target/etc/ssh/ssh_host_*" | sed 's|.*/||' | tr '\n' ' ' || true)
    if [ -z "$found" ]; then pass "without keep_host_keys the target has no host keys"; else fail "host keys copied without keep_host_keys: $found"; fi
}

# expect_target_machine_files: fleet mode wrote root's keys (the config's and the metadata's)
# to a root-only file and the metadata's host name to /etc/hostname (needs target_dump).
expect_target_machine_files() {
    local keys=$RUN/target/etc/nixos-lift/authorized_keys.d/root k missing=""
    for k in "$CONFIG_KEY" "$(sed -n 's/^- \(ssh-ed25519 .* k1@example\)$/\1/p' "$REPO_ROOT/tests/fixtures/metadata/hetzner/hetzner/v1/metadata")"; do
        [ -n "$k" ] && grep -qxF -- "$k" "$keys" 2>/dev/null || missing+=" '${k:0:40}...'"
    done
    if [ -z "$missing" ]; then pass "root's keys on the target: the config's and the metadata's"; else fail "keys missing from ${keys#"$RUN"/target}:$missing"; fi
    if [ "$(target_mode /etc/nixos-lift/authorized_keys.d) $(target_mode /etc/nixos-lift/authorized_keys.d/root)" = "700 600" ]; then
        pass "the keys file is root-only (directory 0700, file 0600)"
    else
        fail "keys file modes: $(target_mode /etc/nixos-lift/authorized_keys.d) $(target_mode /etc/nixos-lift/authorized_keys.d/root), wanted 700 600"
    fi
    if [ "$(cat "$RUN/target/etc/hostname" 2>/dev/null)" = web-1 ]; then
        pass "the target's /etc/hostname is the metadata's host name web-1"
    else
        fail "the target's /etc/hostname is '$(cat "$RUN/target/etc/hostname" 2>/dev/null)', wanted web-1"
    fi
}

# expect_no_evaluation: fleet mode ran no `nix eval` and no `nix build` (the recorder's argv).
expect_no_evaluation() {
    local f runs=""
    for f in $(record_files nix); do runs+="$(head -n1 "$f") "; done
    if [ -z "$runs" ]; then
        fail "no nix run was recorded"
    elif [[ " $runs" == *" eval "* || " $runs" == *" build "* ]]; then
        fail "fleet mode ran nix eval or nix build (nix runs: $runs)"
    else
        pass "fleet mode evaluated and built nothing (nix runs: ${runs% })"
    fi
}
