# shellcheck shell=bash
# nixos-lift-update: day 2. Builds the flake this machine was installed from (its latest
# commit, through the wrapper flake in /etc/nixos so this machine's facts still apply), or in
# fleet mode copies the system path that NIXOS_LIFT_UPDATE_SYSTEM_URL names from the first
# substituter, then switches to it. Nothing changes before the new system is in the store: a
# failed build or copy leaves the profile and the running system as they were. Each run posts
# one `stage: "update"` event to the webhook, if there is one.
# Settings come from the unit's environment (nix/modules/update.nix); the webhook token only
# from the root-only NIXOS_LIFT_UPDATE_TOKEN_FILE, never argv.
set -euo pipefail

: "${NIXOS_LIFT_UPDATE_FLAKE:?}" "${NIXOS_LIFT_UPDATE_ATTR:?}"
wrapper=${NIXOS_LIFT_UPDATE_WRAPPER:-/etc/nixos}
profile=${NIXOS_LIFT_UPDATE_PROFILE:-/nix/var/nix/profiles/system}
current=${NIXOS_LIFT_UPDATE_CURRENT:-/run/current-system}
system_url=${NIXOS_LIFT_UPDATE_SYSTEM_URL:-}
substituter=${NIXOS_LIFT_UPDATE_SUBSTITUTER:-}
webhook=${NIXOS_LIFT_UPDATE_WEBHOOK_URL:-}
token_file=${NIXOS_LIFT_UPDATE_TOKEN_FILE:-}
action=switch
[ "${NIXOS_LIFT_UPDATE_REBOOT:-0}" = 1 ] && action=boot
nixx=(nix --extra-experimental-features "nix-command flakes")

revision=""
system=""

# report STATUS MESSAGE [ERROR]: one event to the webhook; a report that fails is logged and
# does not change the run's outcome.
report() {
    echo "nixos-lift-update: $1: $2${3:+: $3}"
    [ -n "$webhook" ] || return 0
    local body config=""
    body=$(jq -cn --arg status "$1" --arg message "$2" --arg error "${3:-}" \
        --arg flake "$NIXOS_LIFT_UPDATE_FLAKE#$NIXOS_LIFT_UPDATE_ATTR" \
        --arg revision "$revision" --arg system "$system" --arg hostname "$(uname -n)" \
        '{stage: "update", phase: "update", status: $status, message: $message,
          error: (if $error == "" then null else $error end), flake: $flake,
          revision: (if $revision == "" then null else $revision end),
          system: (if $system == "" then null else $system end),
          hostname: $hostname, time: now | floor}')
    if [ -n "$token_file" ] && [ -r "$token_file" ]; then
        local token
        read -r token <"$token_file"
        config="header = \"Authorization: Bearer $token\""
    fi
    # curl reads the header from descriptor 3: the token stays out of argv.
    curl -fsS --max-time 20 --retry 2 --config /dev/fd/3 -H 'content-type: application/json' \
        --data-binary @- "$webhook" <<<"$body" 3<<<"$config" >/dev/null ||
        echo "nixos-lift-update: the webhook did not take the report" >&2
}

# fail MESSAGE: report the failure and stop; nothing has been switched.
fail() {
    report failed "no change, still at $(readlink -f "$current" || echo unknown)" "$1"
    exit 1
}

if [ -n "$system_url" ]; then
    [ -n "$substituter" ] || fail "fleet mode needs a substituter to copy from"
    system=$(curl -fsSL --max-time 60 "$system_url" | head -n 1 | tr -d '[:space:]') ||
        fail "fetching $system_url"
    [[ $system =~ ^/nix/store/[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+._?=-]+$ ]] ||
        fail "$system_url does not name a store path (got '${system:0:80}')"
    "${nixx[@]}" copy --from "$substituter" "$system" || fail "copying $system from $substituter"
else
    # Lock the user's flake once, so the revision reported is the one built.
    meta=$("${nixx[@]}" flake metadata --json --refresh "$NIXOS_LIFT_UPDATE_FLAKE") ||
        fail "fetching $NIXOS_LIFT_UPDATE_FLAKE"
    locked=$(jq -r '.url // empty' <<<"$meta")
    revision=$(jq -r '.revision // .locked.rev // empty' <<<"$meta")
    [ -n "$locked" ] || fail "nix flake metadata gave no locked URL"
    system=$("${nixx[@]}" build --no-link --print-out-paths --no-write-lock-file \
        --override-input user "$locked" \
        "path:$wrapper#nixosConfigurations.\"$NIXOS_LIFT_UPDATE_ATTR\".config.system.build.toplevel") ||
        fail "building $NIXOS_LIFT_UPDATE_FLAKE#$NIXOS_LIFT_UPDATE_ATTR${revision:+ at $revision}"
fi

if [ "$system" = "$(readlink -f "$current" || true)" ]; then
    report "done" "already at $system"
    exit 0
fi
nix-env -p "$profile" --set "$system" || fail "setting $profile to $system"
"$system/bin/switch-to-configuration" "$action" ||
    { report failed "switch-to-configuration $action of $system" "exit status $?"; exit 1; }
if [ "$action" = boot ]; then
    report "done" "moved to $system; rebooting into it"
    systemctl reboot
else
    report "done" "moved to $system"
fi
