#!/bin/sh
# install-doubles.sh BIN: puts the installer-tool doubles on a PATH directory as `nix`,
# `nixos-install` and `disko-script`, with empty records/ and control/ next to them.
set -eu
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$bin/records" "$bin/control"
ln -sf "$here/nix-double.sh" "$bin/nix"
ln -sf "$here/nixos-install-double.sh" "$bin/nixos-install"
ln -sf "$here/disko-script-double.sh" "$bin/disko-script"
