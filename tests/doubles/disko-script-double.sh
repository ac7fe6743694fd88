#!/bin/sh
# TEST DOUBLE for the disko script that `nix build ...diskoScript` produces (destroy, format
# and mount the layout's disks). It never touches a device: it records that it ran, with
# which environment, so tests can check stage 2 ran it once, after every guard and before
# nixos-install.
set -eu
. "$(dirname "$(readlink -f "$0")")/double-lib.sh"
double_record disko-script "$@"
echo "disko-script (test double): would destroy, format and mount the layout's disks"
double_finish disko-script
