#!/bin/sh
# TEST DOUBLE for the nixos-lift agent, served by the delivery tests' loopback "release" server
# in place of the real binary. Running the real `nixos-lift run` on the CI host would try to
# take that machine over (kexec), so the host-side tests check only that install.sh and the
# user-data boot script download and verify *something*, then hand it the right arguments.
#
# It records its argv, and the mode and text of the file given to --config, into
# $AGENT_RECORD, then exits 0. It does nothing else.
set -eu
record=${AGENT_RECORD:?agent-recorder: AGENT_RECORD is not set}
config=""
prev=""
for arg in "$@"; do
    [ "$prev" = "--config" ] && config=$arg
    prev=$arg
done
{
    printf 'argv:'
    printf ' %s' "$@"
    printf '\n'
    if [ -n "$config" ] && [ -f "$config" ]; then
        printf 'config-mode: %s\n' "$(stat -c %a "$config")"
        printf 'config-owner: %s\n' "$(stat -c %U:%G "$config")"
        echo 'config:'
        cat "$config"
    fi
} >"$record"
