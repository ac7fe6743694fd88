#!/usr/bin/env bash
# Runs checks.<system>.installer-size's builder (nix/installer/size-check.nix, its text as Nix
# renders it, with the real nixpkgs lib) on fabricated installer outputs: an initrd at the
# budget passes and writes its size, one byte more fails naming the budget. The budget is
# shrunk to 1 MiB through the same environment variable the derivation sets, so the files stay
# small; checks.nix pins the real value.
# Usage: size-check.sh WORKDIR (with nix26 exported)
set -euo pipefail
work=$1
repo=$(git rev-parse --show-toplevel)
root="$work/size-check"
rm -rf "$root"
mkdir -p "$root"

script=$(nix26 nix-instantiate --eval --strict --raw --expr \
    "(import $repo/nix/installer/size-check.nix { runCommand = _: _: s: s; installer = null; })")

# run SIZE: the builder on an installer whose kexec/initrd has SIZE bytes; prints its status.
run() {
    local dir="$root/$1"
    mkdir -p "$dir/installer" "$dir/src/kexec" "$dir/build"
    truncate -s "$1" "$dir/src/kexec/initrd"
    tar -C "$dir/src" -czf "$dir/installer/nixos-lift-installer-x86_64-linux.tar.gz" kexec
    (cd "$dir/build" && installer="$dir/installer" initrdMiB=1 budgetBytes=1048576 out="$dir/out" \
        bash -euo pipefail -c "$script") >"$dir/log" 2>&1 && echo 0 || echo $?
}
fail() { echo "size check: $*" >&2; exit 1; }

[ "$(run 1048576)" = 0 ] || fail "an initrd at the budget failed: $(cat "$root/1048576/log")"
[ "$(cat "$root/1048576/out")" = 1048576 ] || fail "the output does not hold the measured size"
[ "$(run 1048577)" != 0 ] || fail "an initrd one byte over the budget passed"
grep -q "over the budget of 1 MiB" "$root/1048577/log" || fail "no clear message: $(cat "$root/1048577/log")"
echo "eval: installer-size builder: passes at the budget, fails one byte over it"
