#!/bin/sh
# NOT a double: the real `nix` (Nix 2.26 in the fleet installer's /opt/nix, tests/vm/fleet.sh)
# behind the doubles' recorder, so the fleet scenarios see which nix commands stage 2 ran (argv
# and the private nix.conf's setting names, never values) while the real Nix does the work.
set -eu
. "$(dirname "$(readlink -f "$0")")/double-lib.sh"
double_record nix "$@"
conf=${NIX_USER_CONF_FILES:-}
if [ -n "$conf" ] && [ -f "$conf" ]; then
    printf '=== %s mode=%s settings=%s\n' "$conf" "$(stat -c %a "$conf")" \
        "$(sed -n 's/^\([a-z-]*\) =.*/\1/p' "$conf" | tr '\n' ' ')" >>"$double_prefix.files"
fi
exec /opt/nix/bin/nix "$@"
