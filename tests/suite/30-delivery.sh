#!/usr/bin/env bash
# Delivery: the user-data template and `nixos-lift user-data` output against the real
# `cloud-init schema`, bookworm's (22.4) and trixie's (25, the generation Ubuntu's current images
# run, with a newer schema); Terraform examples through python-hcl2; shellcheck; install.sh and the
# user-data boot script against a loopback "release" server.
#
# SAFETY: this runs as root on a real machine. The "agent" served here is
# tests/doubles/agent-recorder.sh, never nixos-lift itself, and every script runs in a private
# mount namespace whose /etc and /usr/local are overlays, so the host's files are untouched.
# ok and fail (tests/delivery/lib.sh) always succeed, so `cond && ok || fail` is a plain
# if-then-else; the single-quoted `sh -c` scripts expand their own positional parameters.
# shellcheck disable=SC2015,SC2016
set -euo pipefail
# shellcheck source=tests/lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/delivery/lib.sh
source "$REPO_ROOT/tests/delivery/lib.sh"
cd "$REPO_ROOT"

# --- tools -------------------------------------------------------------------------------
need_cloud_init
need_cloud_init_trixie
need_apt shellcheck python3-venv python3-yaml curl util-linux
hcl_venv=${XDG_CACHE_HOME:-$HOME/.cache}/nixos-lift/hcl2-venv
if ! "$hcl_venv/bin/python" -c 'import hcl2' 2>/dev/null; then
    /usr/bin/python3 -m venv "$hcl_venv"
    "$hcl_venv/bin/pip" install --quiet --disable-pip-version-check 'python-hcl2>=4,<8'
fi

cargo build --quiet
bin=$(agent_bin)
helper=tests/delivery/cloud_config.py
template=cloud-init/user-data.yaml.tftpl

work=$(mktemp -d)
server_pid=""
cleanup() {
    [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# schema FILE: FILE passes both cloud-inits' schema (each is also checked alone below).
schema_bookworm() { cloud-init schema --config-file "$1"; }
schema() {
    local rc=0
    schema_bookworm "$1" >"$work/schema.log" 2>&1 || rc=$?
    schema_trixie "$1" >>"$work/schema.log" 2>&1 || rc=$?
    return "$rc"
}
quiet() { "$@" >"$work/schema.log" 2>&1; }
echo "validators: cloud-init $(cloud-init --version 2>&1 | awk '{print $2}') (bookworm)," \
    "$(chroot "$TRIXIE_TREE" cloud-init --version 2>&1 | awk '{print $2}') (trixie)"

# --- sample inputs -----------------------------------------------------------------------
secret="s3cret-token-$RANDOM$RANDOM"
cat >"$work/config.yaml" <<EOF
# sample config for the delivery tests
version: 1
flake: "github:example/hosts#web-{arch}"
disk: auto
installer:
  url: https://releases.example.org/nixos-lift-installer-{arch}.tar.gz
  sha256:
    x86_64: $(printf '%064d' 3)
    aarch64: $(printf '%064d' 4)
report:
  webhook_url: https://hooks.example.org/nixos-lift
  webhook_token: "$secret"
EOF
sum_x86=$(printf '%064d' 1)
sum_arm=$(printf '%064d' 2)
url='https://releases.example.org/v1/nixos-lift-{arch}-linux'
userdata() { "$bin" user-data --config "$work/config.yaml" --agent-url "$url" \
    --agent-sha256 "x86_64=$sum_x86" --agent-sha256 "aarch64=$sum_arm" "$@"; }

# --- the validator must be able to fail --------------------------------------------------
printf '#cloud-config\nruncmd: 5\n' >"$work/invalid.yaml"
expect_rc 1 "bookworm's cloud-init schema rejects an invalid cloud-config (negative control)" \
    quiet schema_bookworm "$work/invalid.yaml"
expect_rc 1 "trixie's cloud-init schema rejects an invalid cloud-config (negative control)" \
    quiet schema_trixie "$work/invalid.yaml"

# --- template, rendered two ways ---------------------------------------------------------
/usr/bin/python3 "$helper" templatefile "$template" "$work/config.yaml" "$url" "$sum_x86" "$sum_arm" \
    >"$work/tf.yaml"
expect_rc 0 "template rendered as templatefile() passes cloud-init schema" schema "$work/tf.yaml"
userdata >"$work/ud.yaml" 2>"$work/ud.err"
if cmp -s "$work/tf.yaml" "$work/ud.yaml"; then
    ok "nixos-lift user-data equals templatefile() on the same template"
else
    fail "nixos-lift user-data differs from templatefile(): $(diff "$work/tf.yaml" "$work/ud.yaml" | head -5)"
fi
if grep -q "$secret" "$work/ud.yaml" "$work/ud.err"; then
    fail "the webhook token appears in clear in user-data or on stderr"
else
    ok "the webhook token appears neither in clear in user-data nor on stderr"
fi
/usr/bin/python3 - "$work/ud.yaml" "$work/config.yaml" <<'EOF' && ok "the config travels only in write_files, mode 0600, owner root, decoding to the file" || fail "write_files entry is wrong"
import base64, sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
assert sorted(doc) == ["runcmd", "write_files"], sorted(doc)
(entry,) = doc["write_files"]
assert entry["path"] == "/etc/nixos-lift/config.yaml" and entry["permissions"] == "0600", entry
assert entry["owner"] == "root:root", entry
assert base64.b64decode(entry["content"]) == open(sys.argv[2], "rb").read()
EOF

# --- user-data per provider --------------------------------------------------------------
for provider in aws gcp azure hetzner digitalocean vultr oracle; do
    userdata --provider "$provider" >"$work/ud-$provider.yaml" 2>"$work/ud-$provider.err"
    expect_rc 0 "user-data --provider $provider passes cloud-init schema" schema "$work/ud-$provider.yaml"
done
# The example names no installer: a development build refuses it (config check says so);
# render it with one installer pinned, as a user of such a build would.
{ cat cloud-init/nixos-lift.example.yaml; printf "installer:\n  url: https://example.org/i-{arch}.tar.gz\n  sha256:\n    x86_64: %064d\n" 1; } >"$work/example-config.yaml"
"$bin" user-data --config "$work/example-config.yaml" --agent-sha256 "x86_64=$sum_x86" \
    >"$work/example.yaml" 2>/dev/null
expect_rc 0 "user-data from the shipped example config passes cloud-init schema" schema "$work/example.yaml"
for provider in aws azure gcp oracle; do
    userdata --provider "$provider" --gzip-base64 >"$work/gz-$provider.b64"
    base64 -d "$work/gz-$provider.b64" | gunzip >"$work/gz-$provider.yaml"
    expect_rc 0 "user-data --gzip-base64 --provider $provider decodes to a valid cloud-config" \
        schema "$work/gz-$provider.yaml"
done
for provider in hetzner digitalocean vultr; do
    expect_rc 2 "user-data --gzip-base64 is refused for $provider (text-only user-data)" \
        userdata --provider "$provider" --gzip-base64
done
expect_rc 2 "user-data without --agent-sha256 is a usage error" \
    "$bin" user-data --config "$work/config.yaml"
printf 'flake: [unclosed\n' >"$work/broken.yaml"
expect_rc 78 "user-data with an unparsable config is a config error" \
    "$bin" user-data --config "$work/broken.yaml" --agent-sha256 "x86_64=$sum_x86"

# A config over AWS's 16 KiB: warned as text, fits once gzipped.
cp "$work/config.yaml" "$work/big.yaml"
for i in $(seq 400); do echo "# padding line $i of a long comment in the config file" >>"$work/big.yaml"; done
"$bin" user-data --config "$work/big.yaml" --agent-sha256 "x86_64=$sum_x86" --provider aws \
    >/dev/null 2>"$work/big.err"
if grep -q "over aws's limit of 16384 bytes" "$work/big.err"; then ok "an oversized user-data is warned about for aws"; else fail "no size warning: $(cat "$work/big.err")"; fi
"$bin" user-data --config "$work/big.yaml" --agent-sha256 "x86_64=$sum_x86" --provider aws \
    --gzip-base64 >/dev/null 2>"$work/big-gz.err"
if grep -q "over aws" "$work/big-gz.err"; then fail "gzip did not bring it under the limit"; else ok "--gzip-base64 brings it under aws's limit"; fi

# --- Terraform examples ------------------------------------------------------------------
tf_count=0
while IFS= read -r tf; do
    tf_count=$((tf_count + 1))
    if "$hcl_venv/bin/python" - "$tf" <<'EOF'; then ok "$tf parses with python-hcl2 and passes the four template variables"; else fail "$tf"; fi
import sys, hcl2
text = open(sys.argv[1]).read()
hcl2.loads(text)
assert 'templatefile("${path.module}/../../user-data.yaml.tftpl"' in text, "not using the shared template"
for var in ("config", "agent_url", "agent_sha256_x86_64", "agent_sha256_aarch64"):
    assert f"\n    {var} " in text or f"\n      {var} " in text, f"template variable {var} not passed"
EOF
done < <(find cloud-init -name '*.tf' | sort)
[ "$tf_count" -ge 4 ] && ok "$tf_count Terraform files checked" || fail "only $tf_count Terraform files found"

# --- shellcheck --------------------------------------------------------------------------
/usr/bin/python3 "$helper" runcmd-script "$work/ud.yaml" >"$work/boot.sh"
expect_rc 0 "shellcheck: install.sh, the user-data boot script, the agent double, packaging scripts" \
    shellcheck -s sh packaging/install.sh "$work/boot.sh" tests/doubles/agent-recorder.sh
for script in packaging/*.sh tests/suite/30-delivery.sh tests/suite/31-release.sh tests/delivery/lib.sh; do
    [ "$script" = packaging/install.sh ] && continue
    expect_rc 0 "shellcheck $script" shellcheck -x "$script"
done

# --- loopback release server -------------------------------------------------------------
release=$work/release
mkdir -p "$release"
cp tests/doubles/agent-recorder.sh "$release/nixos-lift-x86_64-linux"
cp packaging/install.sh "$release/install.sh"
good=$(sha256sum "$release/nixos-lift-x86_64-linux" | cut -d' ' -f1)
wrong=$(printf '%064d' 7)
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$release" >"$work/http.log" 2>&1 &
server_pid=$!
for _ in $(seq 50); do grep -q "port" "$work/http.log" && break; sleep 0.1; done
port=$(sed -n 's/.* port \([0-9]*\) .*/\1/p' "$work/http.log" | head -1)
base=http://127.0.0.1:$port
[ -n "$port" ] && ok "release server on $base" || fail "release server did not start"

# sandbox NAME CMD...: run CMD in a private mount namespace where /etc and /usr/local are
# overlays whose changes land in $work/NAME; the host's directories never change.
sandbox() {
    local name=$1
    shift
    local box=$work/$name
    mkdir -p "$box"/{etc,usr-local}/{upper,work}
    AGENT_RECORD=$box/record unshare --mount --propagation private -- sh -c '
        box=$1; shift
        mount -t overlay overlay -o "lowerdir=/etc,upperdir=$box/etc/upper,workdir=$box/etc/work" /etc
        mount -t overlay overlay -o "lowerdir=/usr/local,upperdir=$box/usr-local/upper,workdir=$box/usr-local/work" /usr/local
        exec "$@"' sandbox "$box" "$@"
}
# recorded NAME: what the agent double recorded in sandbox NAME.
recorded() { cat "$work/$1/record" 2>/dev/null || true; }
installed() { [ -e "$work/$1/usr-local/upper/bin/nixos-lift" ]; }

# The user-data boot script: write_files, then runcmd, as cloud-init runs them.
boot() {
    local name=$1
    shift
    "$bin" user-data --config "$work/config.yaml" --agent-url "$base/nixos-lift-{arch}-linux" "$@" \
        >"$work/$name.yaml" 2>/dev/null
    sandbox "$name" sh -c '/usr/bin/python3 "$1" write-files "$2" && sh -c "$(/usr/bin/python3 "$1" runcmd-script "$2")"' \
        boot "$PWD/$helper" "$work/$name.yaml" 2>"$work/$name.err"
}
expect_rc 0 "user-data boot script with the right sha256 runs the agent" boot ud-good --agent-sha256 "x86_64=$good"
rec=$(recorded ud-good)
[ "$(head -1 <<<"$rec")" = "argv: run --config /etc/nixos-lift/config.yaml" ] &&
    ok "boot script hands the agent: run --config /etc/nixos-lift/config.yaml" || fail "agent argv: $rec"
grep -qx "config-mode: 600" <<<"$rec" && grep -qx "config-owner: root:root" <<<"$rec" &&
    ok "the agent sees its config at mode 0600, root:root" || fail "config mode/owner: $rec"
[ "$(sed '1,/^config:$/d' <<<"$rec")" = "$(cat "$work/config.yaml")" ] &&
    ok "the agent sees the exact config" || fail "config content differs"
[ ! -e /etc/nixos-lift/config.yaml ] && ok "host /etc untouched" || fail "host /etc/nixos-lift/config.yaml exists"

expect_rc 1 "user-data boot script with a wrong sha256 fails" boot ud-wrong --agent-sha256 "x86_64=$wrong"
grep -q "refusing to run the agent: sha256 mismatch for $base/nixos-lift-x86_64-linux: got $good, pinned $wrong" \
    "$work/ud-wrong.err" && ok "wrong sha256: clear message naming both sums" || fail "message: $(cat "$work/ud-wrong.err")"
[ -z "$(recorded ud-wrong)" ] && ! installed ud-wrong &&
    ok "wrong sha256: nothing run, nothing installed" || fail "wrong sha256 still ran or installed the agent"

expect_rc 1 "user-data boot script with no pin for this arch fails" boot ud-unpinned --agent-sha256 "aarch64=$good"
grep -q "no sha256 is pinned for x86_64" "$work/ud-unpinned.err" && [ -z "$(recorded ud-unpinned)" ] &&
    ok "unpinned arch: refused before download, nothing run" || fail "unpinned: $(cat "$work/ud-unpinned.err")"

# install.sh, fetched and piped to sh as the README says.
install_sh() {
    local name=$1
    shift
    sandbox "$name" sh -c 'b=$1; shift; curl -fsSL "$b/install.sh" | sh -s -- "$@"' install "$base" "$@" \
        2>"$work/$name.err"
}
expect_rc 0 "curl | sh install.sh with the right sha256 runs the agent" \
    install_sh inst-good --flake 'github:example/hosts#web' --disk /dev/disk/by-id/virtio-root \
    --installer-url "$base/installer-{arch}.tar.gz" --installer-sha256 "$(printf '%064d' 5)" \
    --agent-url "$base/nixos-lift-{arch}-linux" --agent-sha256 "$good"
rec=$(recorded inst-good)
[ "$(head -1 <<<"$rec")" = "argv: run --config /etc/nixos-lift/config.yaml" ] &&
    ok "install.sh hands the agent: run --config /etc/nixos-lift/config.yaml" || fail "agent argv: $rec"
grep -qx 'flake: "github:example/hosts#web"' <<<"$rec" && grep -qx 'disk: "/dev/disk/by-id/virtio-root"' <<<"$rec" &&
    grep -qx "  url: \"$base/installer-{arch}.tar.gz\"" <<<"$rec" &&
    grep -qx "config-mode: 600" <<<"$rec" &&
    ok "install.sh writes flake and disk into a mode 0600 config" || fail "install.sh config: $rec"
sed '1,/^config:$/d' <<<"$rec" >"$work/inst-config.yaml"
if "$bin" config check "$work/inst-config.yaml" >"$work/check.log" 2>&1; then
    ok "install.sh's config passes nixos-lift config check"
else
    fail "install.sh's config fails config check: $(cat "$work/check.log")"
fi

expect_rc 1 "install.sh with a wrong sha256 fails" \
    install_sh inst-wrong --flake 'github:example/hosts#web' --agent-url "$base/nixos-lift-{arch}-linux" \
    --installer-url "$base/i.tar.gz" --installer-sha256 "$(printf '%064d' 5)" \
    --agent-sha256 "$wrong"
grep -q "refusing to run the agent: sha256 mismatch" "$work/inst-wrong.err" && [ -z "$(recorded inst-wrong)" ] &&
    ! installed inst-wrong && ok "install.sh wrong sha256: clear message, nothing run or installed" ||
    fail "install.sh wrong sha256: $(cat "$work/inst-wrong.err")"

expect_rc 1 "install.sh without a pin fails" install_sh inst-nopin --flake x#y \
    --installer-url "$base/i.tar.gz" --installer-sha256 "$(printf '%064d' 5)" --agent-url "$base/nixos-lift-{arch}-linux"
grep -q "no sha256 pinned for x86_64" "$work/inst-nopin.err" && ok "install.sh without a pin says how to pin" ||
    fail "install.sh no pin: $(cat "$work/inst-nopin.err")"

nobody_rc=0
# The script comes on stdin, as with `curl | sh`: the checkout may be unreadable to nobody.
setpriv --reuid=65534 --regid=65534 --clear-groups sh -s -- --flake x#y \
    --installer-url "$base/i.tar.gz" --installer-sha256 "$(printf '%064d' 5)" --agent-sha256 "$good" \
    <packaging/install.sh 2>"$work/nonroot.err" || nobody_rc=$?
[ "$nobody_rc" -eq 1 ] && grep -q "refusing to run: root is required" "$work/nonroot.err" &&
    ok "install.sh refuses without root, clearly" || fail "non-root: exit $nobody_rc $(cat "$work/nonroot.err")"
grep -q '"GET /nixos-lift-x86_64-linux' "$work/http.log" && ok "the agent came from the loopback server" ||
    fail "no agent download in the server log"

finish delivery
