#!/usr/bin/env bash
# The Nix half evaluated with real upstream code: nixpkgs' lib, disko and nixos-images from
# ../shared/upstream (tarballs, unpacked here into WORKDIR, never into the repository), over
# the stand-in NixOS options of nixos-options.nix. See checks.nix for what is asserted.
# Usage: run.sh WORKDIR (with nix26 exported by tests/suite/50-nix.sh)
set -euo pipefail
work=$1
repo=$(git rev-parse --show-toplevel)
here="$repo/tests/nix/eval"
# ../shared/upstream next to the checkout (NIXOS_LIFT_UPSTREAM overrides).
upstream=${NIXOS_LIFT_UPSTREAM:-$(cd "$repo/.." && pwd)/shared/upstream}
src="$work/upstream"
mkdir -p "$src"

# unpack NAME: the one tarball for NAME (nixpkgs-lib, disko, nixos-images); prints its folder.
unpack() {
    local tarballs=("$upstream/$1"-*.tar.gz)
    if [ ${#tarballs[@]} -ne 1 ] || [ ! -f "${tarballs[0]}" ]; then
        echo "eval: want one $upstream/$1-*.tar.gz, found ${tarballs[*]}" >&2
        exit 1
    fi
    tar -xzf "${tarballs[0]}" -C "$src"
    [ -d "$src/$1" ] || { echo "eval: ${tarballs[0]} has no $1/ folder" >&2; exit 1; }
    echo "$src/$1"
}
args=(
    --argstr nixpkgsLib "$(unpack nixpkgs-lib)"
    --argstr disko "$(unpack disko)"
    --argstr nixosImages "$(unpack nixos-images)"
)
echo "eval: nixpkgs lib $(cat "$src/nixpkgs-lib/lib/.version"), disko and nixos-images from $upstream"

# The module stage 2 generates, from the install rehearsal's handoff.
NIXOS_LIFT_WRAPPER_OUT="$work/wrapper" cargo test --quiet --test install_rehearsal \
    installs_on_the_disk_found_by_serial_and_reports_in_order >/dev/null 2>&1 ||
    { echo "eval: the install rehearsal did not produce the generated module" >&2; exit 1; }
args+=(--argstr wrapper "$work/wrapper")

# nix/lib on facts.json as stage 2 writes it (with `install` and its network plan): the one
# the rehearsal wrote, and the sample with nix/tests/install-sample.json.
bash "$repo/tests/nix/check-helpers.sh" "$work/wrapper/facts.json" rehearsal-install
jq -s '.[0] + { install: .[1] }' "$repo/nix/tests/facts-sample.json" "$repo/nix/tests/install-sample.json" \
    > "$work/facts-sample-installed.json"
bash "$repo/tests/nix/check-helpers.sh" "$work/facts-sample-installed.json" facts-sample-installed

# evaluate EXPR-FILE ARGS...: nix-instantiate --eval, its error shown on failure.
evaluate() {
    nix26 nix-instantiate --eval --strict --json --read-write-mode "$@" 2>"$work/eval.log" ||
        { tail -n 40 "$work/eval.log" >&2; echo "eval: evaluation failed" >&2; exit 1; }
}

result=$(evaluate "$here/checks.nix" "${args[@]}")
failed=$(jq -r 'to_entries[] | select(.value != []) | "\(.key): \(.value | join(", "))"' <<<"$result")
if [ -n "$failed" ]; then
    echo "eval: checks that do not hold:" >&2
    echo "$failed" >&2
    exit 1
fi
jq -r 'keys[] | "eval: \(.) ok"' <<<"$result"
cases=$(jq 'length' <<<"$result")

# The agent package's source (real lib.fileset) holds every file that non-test Rust code
# embeds with include_str!/include_bytes! (the test modules sit after `#[cfg(test)]`).
pkg_src=$(nix26 nix-instantiate --eval --read-write-mode --raw --expr \
    "let lib = import $src/nixpkgs-lib/lib; pkgs = import $here/pkgs.nix { inherit lib; system = \"x86_64-linux\"; };
     in \"\${(pkgs.callPackage $repo/nix/package.nix { }).attrs.src}\"" 2>"$work/eval.log") ||
    { tail -n 20 "$work/eval.log" >&2; echo "eval: nix/package.nix's source failed" >&2; exit 1; }
embedded=0
while IFS= read -r rs; do
    while IFS= read -r rel; do
        file=$(realpath -m --relative-to="$repo" "$(dirname "$repo/$rs")/$rel")
        [ -f "$pkg_src/$file" ] ||
            { echo "eval: $rs embeds $file, which nix/package.nix leaves out of the source" >&2; exit 1; }
        embedded=$((embedded + 1))
    done < <(awk '/#\[cfg\(test\)\]/ { exit } { print }' "$repo/$rs" |
        grep -o 'include_\(str\|bytes\)!("[^"]*")' | sed 's/.*("\(.*\)")/\1/')
done < <(cd "$repo" && git ls-files --cached --others --exclude-standard -- 'src/*.rs' 'benches/*.rs')
[ "$embedded" -gt 0 ] || { echo "eval: found no embedded files; the check reads nothing" >&2; exit 1; }
echo "eval: agent package source holds all $embedded embedded files"

bash "$here/network-script.sh" "$work" "${args[@]}"
bash "$here/size-check.sh" "$work"
# The day-2 pull's script (its text is checked against the module's in checks.nix `update`).
bash "$repo/tests/nix/update-script.sh" "$work"
echo "eval: $cases groups of checks, the installer's network script, its size check and the update script passed"
