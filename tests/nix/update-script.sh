#!/usr/bin/env bash
# Runs the day-2 pull, nix/modules/update.sh (the text nix/modules/update.nix wraps, as
# tests/nix/eval/checks.nix checks), with the recording doubles of
# tests/doubles/update-doubles.sh for nix, nix-env, curl and systemctl:
#   - a build that succeeds sets the profile and switches, and reports the revision and path;
#   - a failed build sets no profile and switches nothing, and reports the failure;
#   - reboot mode switches by `boot` and reboots; fleet mode copies the URL's path from the
#     first substituter; a URL body that is no store path is refused before any copy;
#   - the webhook token reaches curl through --config, never argv.
# Usage: update-script.sh [WORKDIR]
set -euo pipefail
repo=$(git rev-parse --show-toplevel)
work=${1:-$(mktemp -d)}/update-script
script="$repo/nix/modules/update.sh"
token="whk-update-$$-secret"

fail() { echo "update script: $*" >&2; exit 1; }

# run NAME CONTROLS [ENV=VALUE...]: a fresh set of doubles in $work/NAME with the control files
# CONTROLS (space-separated, `-` for none), then the script; sets bin and status.
run() {
    local name=$1 controls=$2 c
    shift 2
    bin="$work/$name"
    rm -rf "$bin" && mkdir -p "$bin"
    bash "$repo/tests/doubles/update-doubles.sh" "$bin"
    for c in $controls; do [ "$c" = - ] || touch "$bin/$c"; done
    printf '%s\n' "$token" >"$bin/token"
    ln -s "$bin/store/old-system" "$bin/current"
    status=0
    env PATH="$bin:$PATH" NIXOS_LIFT_UPDATE_FLAKE=git+https://git.example/fleet.git \
        NIXOS_LIFT_UPDATE_ATTR=web NIXOS_LIFT_UPDATE_WRAPPER=/etc/nixos \
        NIXOS_LIFT_UPDATE_PROFILE="$bin/profile" NIXOS_LIFT_UPDATE_CURRENT="$bin/current" \
        NIXOS_LIFT_UPDATE_WEBHOOK_URL=https://hooks.example/events \
        NIXOS_LIFT_UPDATE_TOKEN_FILE="$bin/token" "$@" \
        bash "$script" >"$bin/out" 2>&1 || status=$?
    touch "$bin/calls" "$bin/webhook"
}
called() { grep -qF -- "$1" "$bin/calls"; }
event() { jq -r "$1" "$bin/webhook"; }

# 1. A pull that builds: the profile, then the switch, one `done` report naming both.
run ok -
[ "$status" = 0 ] || fail "a good pull exited $status: $(cat "$bin/out")"
called "nix --extra-experimental-features nix-command flakes build --no-link --print-out-paths --no-write-lock-file --override-input user git+https://git.example/fleet.git?rev=abc123 path:/etc/nixos#nixosConfigurations.\"web\".config.system.build.toplevel" ||
    fail "did not build the wrapper flake at the locked revision: $(cat "$bin/calls")"
new="$bin/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-new"
[ "$(grep -E '^(nix-env|switch-to)' "$bin/calls")" = "nix-env -p $bin/profile --set $new
switch-to-configuration switch" ] || fail "profile then switch expected: $(cat "$bin/calls")"
[ "$(event '[.stage, .status, .revision, .system] | join(" ")')" = "update done abc123 $new" ] ||
    fail "report: $(cat "$bin/webhook")"
grep -qx "header = \"Authorization: Bearer $token\"" "$bin/webhook-config" || fail "no bearer token through --config"
! grep -qF -- "$token" "$bin/calls" "$bin/out" || fail "the token reached argv or the log"

# 2. A build that fails changes nothing: no profile, no switch, a `failed` report.
run fail-build fail-build
[ "$status" = 1 ] || fail "a failed build exited $status, want 1"
! grep -qE '^(nix-env|switch-to-configuration|systemctl)' "$bin/calls" ||
    fail "a failed build still touched the system: $(cat "$bin/calls")"
[ "$(event '[.stage, .status] | join(" ")')" = "update failed" ] || fail "failure report: $(cat "$bin/webhook")"
event .error | grep -q "^building git+https://git.example/fleet.git#web at abc123" ||
    fail "the failure report does not name the build: $(cat "$bin/webhook")"

# 3. Reboot mode: `boot`, then a reboot, after the report.
run reboot - NIXOS_LIFT_UPDATE_REBOOT=1
[ "$status" = 0 ] || fail "reboot mode exited $status: $(cat "$bin/out")"
[ "$(grep -E '^(switch-to|systemctl)' "$bin/calls")" = "switch-to-configuration boot
systemctl reboot" ] || fail "reboot mode: $(cat "$bin/calls")"

# 4. Fleet mode: the path the URL names, copied from the first substituter; no evaluation.
fleet=(NIXOS_LIFT_UPDATE_SYSTEM_URL=https://fleet.example/web.path
    NIXOS_LIFT_UPDATE_SUBSTITUTER=https://cache.example)
path=/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-fleet
run fleet - "${fleet[@]}"
echo "$path" >"$bin/system-url-body"
run_fleet() {
    status=0
    env PATH="$bin:$PATH" NIXOS_LIFT_UPDATE_FLAKE=git+https://git.example/fleet.git \
        NIXOS_LIFT_UPDATE_ATTR=web NIXOS_LIFT_UPDATE_PROFILE="$bin/profile" \
        NIXOS_LIFT_UPDATE_CURRENT="$bin/current" "${fleet[@]}" bash "$script" >"$bin/out" 2>&1 || status=$?
}
: >"$bin/calls"
run_fleet
called "nix --extra-experimental-features nix-command flakes copy --from https://cache.example $path" ||
    fail "fleet mode did not copy the named path: $(cat "$bin/calls")"
! called " build " || fail "fleet mode built the flake"
! called "flake metadata" || fail "fleet mode fetched the flake"
called "nix-env -p $bin/profile --set $path" || fail "fleet mode did not set the profile"
# A copy that fails (unsigned, missing) switches nothing.
: >"$bin/calls"
touch "$bin/fail-copy"
run_fleet
[ "$status" = 1 ] || fail "a failed copy exited $status, want 1"
! called nix-env || fail "a failed copy still set the profile: $(cat "$bin/calls")"
# A body that is no store path is refused before any copy.
rm "$bin/fail-copy"
: >"$bin/calls"
echo "<html>not found</html>" >"$bin/system-url-body"
run_fleet
[ "$status" = 1 ] || fail "a bad system URL body exited $status, want 1"
! called " copy " || fail "a bad system URL body was copied: $(cat "$bin/calls")"
grep -q "does not name a store path" "$bin/out" || fail "no reason for the refused body: $(cat "$bin/out")"

echo "update script: a pull switches, a failed build or copy changes nothing, reboot and fleet modes, token off argv"
