# Shared by the delivery suites (30-delivery). Source after tests/lib/common.sh.
# ok and fail always succeed, so `cond && ok ... || fail ...` is a plain if-then-else.
# shellcheck shell=bash

failures=0
ok() { echo "ok - $*"; }
fail() {
    echo "FAIL - $*"
    failures=$((failures + 1))
}

# expect_rc WANT DESCRIPTION CMD...: the command's exit code must be WANT.
expect_rc() {
    local want=$1 what=$2 rc=0
    shift 2
    "$@" || rc=$?
    if [ "$rc" -eq "$want" ]; then ok "$what"; else fail "$what (exit $rc, wanted $want)"; fi
}

# finish NAME: the suite's summary line and exit status.
finish() {
    echo "$1: $failures failure(s)"
    [ "$failures" -eq 0 ]
}

# need_cloud_init: Debian's cloud-init, for `cloud-init schema` only. When this installs it,
# it also disables it, so it never runs when this machine next boots.
need_cloud_init() {
    dpkg-query -W -f='${Status}' cloud-init 2>/dev/null | grep -q "install ok installed" && return 0
    need_apt cloud-init
    touch /etc/cloud/cloud-init.disabled
}

# need_cloud_init_trixie: Debian 13's cloud-init (25, the generation Ubuntu's images run, with
# its newer schema) in its own tree, for `cloud-init schema` only; nothing there ever boots.
# Cached by recipe in /var/cache/nixos-lift-tests, so a machine builds it once. Sets TRIXIE_TREE.
need_cloud_init_trixie() {
    local mirror=http://deb.debian.org/debian recipe cache
    need_apt mmdebstrap
    recipe="mmdebstrap --variant=apt --include=cloud-init trixie TARGET $mirror"
    cache=${NIXOS_LIFT_TEST_CACHE:-/var/cache/nixos-lift-tests}
    TRIXIE_TREE="$cache/cloud-init-trixie-$(printf '%s' "$recipe" | sha256sum | cut -c1-16)"
    [ -x "$TRIXIE_TREE/usr/bin/cloud-init" ] && return 0
    echo "--- bootstrapping trixie's cloud-init into $TRIXIE_TREE"
    mkdir -p "$cache"
    rm -rf "$TRIXIE_TREE.tmp"
    mmdebstrap --quiet --variant=apt --include=cloud-init trixie "$TRIXIE_TREE.tmp" "$mirror" >/dev/null
    rm -rf "$TRIXIE_TREE"
    mv "$TRIXIE_TREE.tmp" "$TRIXIE_TREE"
}

# schema_trixie FILE: trixie's `cloud-init schema --config-file` on FILE, run in TRIXIE_TREE.
schema_trixie() {
    local f rc=0
    f=$(mktemp "$TRIXIE_TREE/tmp/schema.XXXXXX")
    cp "$1" "$f"
    chroot "$TRIXIE_TREE" cloud-init schema --config-file "/tmp/${f##*/}" || rc=$?
    rm -f "$f"
    return "$rc"
}
