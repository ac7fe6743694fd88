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
