#!/usr/bin/env bash
# The static release build, as the release pipeline (.github/workflows/release.yml) runs it but
# dry: packaging/build-static.sh --release --installer ... --dist builds the x86_64 agent
# (glibc crt-static, rustls, the release profile with LTO) and assembles the release files. The
# binary must be static, must run in an empty chroot, and must do TLS there with its built-in
# root store; the release directory must hold both agents, completions that load, man pages that
# render without warnings and the systemd unit, all verified by one SHA256SUMS.
#
# The aarch64 agent is cross-built with packaging/build-aarch64.sh and the same profile as
# 60-arm64 (ARM64_PROFILE, default cross-check: release without LTO), so 60-arm64's build is a
# cargo no-op after this one; RELEASE_AARCH64=skip leaves it out (reported, never "ok").
# ok and fail (tests/delivery/lib.sh) always succeed: `cond && ok || fail` is if-then-else;
# the single-quoted shell snippets expand their own positional parameters.
# shellcheck disable=SC2015,SC2016
set -euo pipefail
# shellcheck source=tests/lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/delivery/lib.sh
source "$REPO_ROOT/tests/delivery/lib.sh"
cd "$REPO_ROOT"

need_cloud_init
need_apt binutils ca-certificates file shellcheck zsh fish groff-base man-db openssl

work=$(mktemp -d /tmp/release-suite-XXXXXX)
tls_pid=""
cleanup() {
    [ -z "$tls_pid" ] || kill "$tls_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# --- build: the release pipeline's assembly, dry ------------------------------------------
# What .github/workflows/release.yml does on a tag, except the Nix build and the upload: the
# installers are stand-ins (a test double: a small deterministic tarball per arch, where the
# pipeline has `nix build .#installer` on each arch), pinned into both agents as the default
# installer and published next to them. Deterministic, so cargo's cache holds across runs.
mkdir -p "$work/installers"
for arch in x86_64 aarch64; do
    mkdir -p "$work/installers/$arch/kexec"
    echo "stand-in for the $arch installer (tests/suite/31-release.sh)" >"$work/installers/$arch/kexec/README"
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/installers/$arch" -cf - kexec |
        gzip -n >"$work/installers/$arch.tar.gz"
done
NIXOS_LIFT_INSTALLER_SHA256_X86_64=$(sha256sum "$work/installers/x86_64.tar.gz" | cut -d' ' -f1)
NIXOS_LIFT_INSTALLER_SHA256_AARCH64=$(sha256sum "$work/installers/aarch64.tar.gz" | cut -d' ' -f1)
export NIXOS_LIFT_INSTALLER_SHA256_X86_64 NIXOS_LIFT_INSTALLER_SHA256_AARCH64
installer_args=(--installer "x86_64=$work/installers/x86_64.tar.gz"
    --installer "aarch64=$work/installers/aarch64.tar.gz")
arm_args=()
if [ "${RELEASE_AARCH64:-build}" = skip ]; then
    [ "${CI:-}" = true ] && { echo "31-release: RELEASE_AARCH64=skip is not allowed under CI" >&2; exit 1; }
    echo "SKIP - aarch64 agent (RELEASE_AARCH64=skip): the release directory holds x86_64 only"
else
    start=$(date +%s)
    arm_bin=$(bash packaging/build-aarch64.sh --profile "${ARM64_PROFILE:-cross-check}")
    echo "aarch64 cross build (profile ${ARM64_PROFILE:-cross-check}): $(($(date +%s) - start)) s"
    arm_args=(--aarch64 "$arm_bin")
fi
start=$(date +%s)
dist=$work/dist
bin=$(packaging/build-static.sh --release "${installer_args[@]}" --dist "$dist" "${arm_args[@]}")
echo "x86_64 release build (LTO) and release files: $(($(date +%s) - start)) s, binary $(stat -c %s "$bin") bytes"
x86=$dist/nixos-lift-x86_64-linux
cmp -s "$bin" "$x86" && ok "the release holds this build as nixos-lift-x86_64-linux" || fail "release binary differs from the build"

# --- static ------------------------------------------------------------------------------
# glibc's ldd prints "not a dynamic executable" for a static binary and "statically linked" for
# a static-pie one; a dynamic binary gets its libraries listed with "=>".
ldd_out=$(ldd "$x86" 2>&1 || true)
if grep -Eq "not a dynamic executable|statically linked" <<<"$ldd_out" && ! grep -q "=>" <<<"$ldd_out"; then
    ok "ldd: $(tr -d '\t' <<<"$ldd_out")"
else
    fail "ldd says it is dynamic: $ldd_out"
fi
desc=$(file -b "$x86")
case $desc in
    *"x86-64"*"statically linked"* | *"x86-64"*"static-pie linked"*) ok "file: ${desc%%, BuildID*}" ;;
    *) fail "file does not say statically linked: $desc" ;;
esac
readelf -lW "$x86" | grep -q INTERP && fail "the binary asks for a dynamic loader (PT_INTERP)" ||
    ok "no program interpreter (PT_INTERP)"
readelf -dW "$x86" | grep -q NEEDED && fail "the binary needs shared libraries (DT_NEEDED)" ||
    ok "no shared libraries needed (DT_NEEDED)"
tls_tree=$(cargo tree --quiet --locked --target x86_64-unknown-linux-gnu -e normal --prefix none --format '{p}' 2>/dev/null)
grep -q '^rustls ' <<<"$tls_tree" && ! grep -Eq '^(openssl-sys|native-tls) ' <<<"$tls_tree" &&
    ok "TLS is rustls: no openssl-sys or native-tls in the dependency tree" ||
    fail "TLS stack: $(grep -E '^(rustls|openssl-sys|native-tls) ' <<<"$tls_tree" | tr '\n' ' ')"

# --- an empty chroot with only CA certificates -------------------------------------------
# The chroot holds the CA bundle, the binary and the test's config: no libraries, no /proc,
# no /dev. It shares this machine's network namespace, for the loopback TLS server below.
root=$work/chroot
mkdir -p "$root/etc/ssl/certs"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
cp "$x86" "$root/nixos-lift"
cat >"$root/config.yaml" <<EOF
version: 1
flake: "github:example/hosts#web"
disk: auto
installer:
  url: https://releases.example.org/nixos-lift-installer-{arch}.tar.gz
  sha256:
    x86_64: $(printf '%064d' 3)
EOF
contents=$(cd "$root" && find . -mindepth 1 -not -type d | LC_ALL=C sort | tr '\n' ' ')
[ "$contents" = "./config.yaml ./etc/ssl/certs/ca-certificates.crt ./nixos-lift " ] &&
    ok "chroot holds only: $contents" || fail "chroot holds more: $contents"
want_version="nixos-lift $(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
version=$(chroot "$root" /nixos-lift --version 2>&1 || true)
[ "$version" = "$want_version" ] && ok "chroot: --version prints $version" ||
    fail "chroot: --version printed '$version', wanted '$want_version'"
sum_x86=$(sha256sum "$x86" | cut -d' ' -f1)
if chroot "$root" /nixos-lift user-data --config /config.yaml --agent-sha256 "x86_64=$sum_x86" \
    >"$work/ud.yaml" 2>"$work/ud.err" && cloud-init schema --config-file "$work/ud.yaml" >/dev/null 2>&1; then
    ok "chroot: user-data renders a cloud-config that passes cloud-init schema"
else
    fail "chroot: user-data: $(cat "$work/ud.err")"
fi
chroot "$root" /nixos-lift config check /config.yaml >"$work/check.log" 2>&1 &&
    ok "chroot: config check accepts a minimal config" || fail "chroot: config check: $(cat "$work/check.log")"

# TLS without the internet: a loopback HTTPS server whose certificate is signed by a CA made
# here. The agent trusts the Mozilla roots compiled into it (webpki-roots) plus the system's CA
# bundle, so the handshake must get as far as verifying the server's certificate and refuse it
# as UnknownIssuer; once the test CA is in the chroot's bundle, the same request must get
# through the handshake (a private CA is usable, and the bundle really is read in the chroot).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=test release CA" \
    -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$work/leaf.key" -out "$work/leaf.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$work/leaf.ext"
openssl x509 -req -in "$work/leaf.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
    -days 2 -extfile "$work/leaf.ext" -out "$work/leaf.pem" 2>/dev/null
/usr/bin/python3 -u - "$work/leaf.pem" "$work/leaf.key" >"$work/tls.log" 2>&1 <<'EOF' &
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
listener = socket.create_server(("127.0.0.1", 0))
print("port", listener.getsockname()[1])
while True:
    conn, _ = listener.accept()
    try:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            print("handshake completed", tls.version())
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    except (ssl.SSLError, OSError) as e:
        print("handshake failed:", e)
EOF
tls_pid=$!
for _ in $(seq 50); do grep -q "^port" "$work/tls.log" && break; sleep 0.1; done
tls_port=$(sed -n 's/^port //p' "$work/tls.log")
# Control: the server and its chain are sound for a client that trusts the test CA.
/usr/bin/python3 - "$tls_port" "$work/ca.pem" <<'EOF' && ok "TLS control: a client trusting the test CA completes the handshake" || fail "TLS control handshake failed: the server is broken, the checks below mean nothing"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) as s:
    with ctx.wrap_socket(s, server_hostname="127.0.0.1") as tls:
        tls.recv(100)
EOF
tls_try() {
    chroot "$root" /nixos-lift -v detect --provider hetzner --metadata-base "https://127.0.0.1:$tls_port" \
        --metadata-timeout 3 --format json >/dev/null 2>"$work/$1.err" || true
}
handshakes() { grep -c "^handshake failed" "$work/tls.log" || true; }
tls_try tls-bundle
grep -q "invalid peer certificate: UnknownIssuer" "$work/tls-bundle.err" && [ "$(handshakes)" -ge 1 ] &&
    ok "chroot: a TLS handshake to the loopback server runs and refuses its unknown issuer (server: $(grep -m1 '^handshake failed' "$work/tls.log"))" ||
    fail "chroot: no TLS verification error: $(grep -m3 -i 'tls\|certificate\|https' "$work/tls-bundle.err")"
[ "$(grep -c "^handshake completed" "$work/tls.log")" = 1 ] &&
    ok "the agent completed no TLS connection to the untrusted server (only the control did)" ||
    fail "the agent completed a TLS connection to an untrusted server"
cat "$work/ca.pem" >>"$root/etc/ssl/certs/ca-certificates.crt"
tls_try tls-ca
! grep -q "invalid peer certificate" "$work/tls-ca.err" && [ "$(grep -c "^handshake completed" "$work/tls.log")" -ge 2 ] &&
    ok "chroot: with the test CA added to /etc/ssl/certs the agent completes the handshake (the system bundle is trusted)" ||
    fail "chroot: with the test CA in the bundle: $(grep -m3 -i 'tls\|certificate\|https' "$work/tls-ca.err")"

# --- the release files -------------------------------------------------------------------
(cd "$dist" && sha256sum --check --quiet --strict SHA256SUMS) && ok "sha256sum -c SHA256SUMS verifies every listed file" ||
    fail "SHA256SUMS does not verify"
listed=$(sed 's/^[0-9a-f]\{64\}  //' "$dist/SHA256SUMS" | LC_ALL=C sort)
present=$(cd "$dist" && find . -type f ! -name SHA256SUMS | sed 's|^\./||' | LC_ALL=C sort)
[ "$listed" = "$present" ] && ok "SHA256SUMS lists exactly the $(wc -l <<<"$present") release files" ||
    fail "SHA256SUMS and the release differ: $(diff <(echo "$listed") <(echo "$present") | grep '^[<>]' | tr '\n' ' ')"
cp -r "$dist" "$work/tampered"
printf 'x' >>"$work/tampered/install.sh"
(cd "$work/tampered" && sha256sum --check --quiet SHA256SUMS >/dev/null 2>&1) &&
    fail "sha256sum -c accepted a changed install.sh (negative control)" ||
    ok "sha256sum -c rejects a changed install.sh (negative control)"
rm -rf "$work/tampered"
for f in nixos-lift-x86_64-linux install.sh systemd/nixos-lift.service completions/nixos-lift.bash \
    completions/_nixos-lift completions/nixos-lift.fish man/nixos-lift.1 \
    nixos-lift-installer-x86_64-linux.tar.gz nixos-lift-installer-aarch64-linux.tar.gz; do
    grep -qx "$f" <<<"$listed" || fail "the release lacks $f"
done
# What the release job attaches (packaging/build-static.sh --list-assets): the flat files, each
# verified by SHA256SUMS; the extras tarball holds the rest, identical to the listed files.
assets=$(packaging/build-static.sh --list-assets "$dist" | sed "s|^$dist/||" | tr '\n' ' ')
want_assets="SHA256SUMS install.sh nixos-lift-aarch64-linux nixos-lift-extras.tar.gz nixos-lift-installer-aarch64-linux.tar.gz nixos-lift-installer-x86_64-linux.tar.gz nixos-lift-x86_64-linux "
[ ${#arm_args[@]} -gt 0 ] || want_assets=${want_assets/nixos-lift-aarch64-linux /}
[ "$assets" = "$want_assets" ] && ok "release assets: $assets" || fail "release assets: '$assets', wanted '$want_assets'"
mkdir "$work/assets"
for a in $assets; do cp "$dist/$a" "$work/assets/"; done
tar -xzf "$work/assets/nixos-lift-extras.tar.gz" -C "$work/assets"
(cd "$work/assets" && sha256sum --check --quiet --strict SHA256SUMS) &&
    ok "the downloaded assets, extras unpacked, verify against SHA256SUMS" ||
    fail "the release assets do not verify against SHA256SUMS"
# The default installer: the agent's built-in pin is the published tarball's sum, so a config
# without `installer:` passes config check (and stage 1's installer-pinned guard).
printf 'flake: "github:example/hosts#web"\n' >"$root/default.yaml"
chroot "$root" /nixos-lift config check /default.yaml >"$work/default-check.log" 2>&1 &&
    head -1 "$work/default-check.log" | grep -qx '/default.yaml: ok' &&
    ok "chroot: config check accepts a config with no installer key" ||
    fail "chroot: config check of a config without installer: $(cat "$work/default-check.log")"
for arch in x86_64 aarch64; do
    pin=$(grep -Eo "$arch [0-9a-f]{64}" "$work/default-check.log" | cut -d' ' -f2 || true)
    published=$(grep " nixos-lift-installer-$arch-linux.tar.gz$" "$dist/SHA256SUMS" | cut -d' ' -f1)
    [ -n "$pin" ] && [ "$pin" = "$published" ] &&
        ok "the x86_64 agent's built-in $arch installer pin is the dry run's ($pin)" ||
        fail "built-in $arch installer pin '${pin:-none}', published $published"
done
if [ ${#arm_args[@]} -gt 0 ]; then
    grep -qaF "$NIXOS_LIFT_INSTALLER_SHA256_AARCH64" "$dist/nixos-lift-aarch64-linux" &&
        ok "the aarch64 agent carries the dry run's aarch64 installer pin" ||
        fail "the aarch64 agent lacks the installer pin $NIXOS_LIFT_INSTALLER_SHA256_AARCH64"
fi
grep -q "^/default.yaml: ok$" <(env -u NIXOS_LIFT_INSTALLER_SHA256_X86_64 -u NIXOS_LIFT_INSTALLER_SHA256_AARCH64 cargo run --quiet -- config check "$root/default.yaml" 2>/dev/null | sed "s|^$root||") &&
    fail "a build without pins accepts the installer-less config (negative control)" ||
    ok "a development build refuses the installer-less config (negative control)"
grep -qx "AGENT_SHA256_X86_64='$sum_x86'" "$dist/install.sh" && ok "release install.sh pins this x86_64 build" ||
    fail "release install.sh is not stamped with $sum_x86"
if [ ${#arm_args[@]} -gt 0 ]; then
    arm=$dist/nixos-lift-aarch64-linux
    cmp -s "$arm_bin" "$arm" && grep -qx nixos-lift-aarch64-linux <<<"$listed" &&
        ok "the release holds the aarch64 agent, in SHA256SUMS" || fail "aarch64 agent missing or different"
    case $(file -b "$arm") in
        *"ARM aarch64"*"statically linked"* | *"ARM aarch64"*"static-pie linked"*) ok "file: the aarch64 agent is a static aarch64 ELF" ;;
        *) fail "aarch64 agent: $(file -b "$arm")" ;;
    esac
    grep -qx "AGENT_SHA256_AARCH64='$(sha256sum "$arm" | cut -d' ' -f1)'" "$dist/install.sh" &&
        ok "release install.sh pins the aarch64 build" || fail "release install.sh lacks the aarch64 sum"
fi
default_url=$(grep -o "'https://[^']*{arch}[^']*'" "$work/ud.yaml" | tr -d "'")
[ -n "$default_url" ] && grep -qx "AGENT_URL='$default_url'" "$dist/install.sh" &&
    ok "install.sh and user-data default to the same release URL ($default_url)" ||
    fail "release URLs differ: user-data '$default_url', install.sh $(grep '^AGENT_URL=' "$dist/install.sh")"
shellcheck -s sh "$dist/install.sh" && ok "release install.sh passes shellcheck" || fail "shellcheck release install.sh"

# Completions load in their shells and complete a subcommand.
bash_reply=$(bash -c 'source "$1"; COMP_WORDS=(nixos-lift us); COMP_CWORD=1
    f=$(complete -p nixos-lift | sed -n "s/.* -F \([^ ]*\) .*/\1/p"); "$f" nixos-lift us nixos-lift
    printf "%s\n" "${COMPREPLY[@]}"' bash "$dist/completions/nixos-lift.bash" 2>&1)
[ "$bash_reply" = user-data ] && ok "bash completes 'nixos-lift us' to user-data" || fail "bash completion: $bash_reply"
zsh_reply=$(zsh -fc 'autoload -U compinit && compinit -u -D && source "$1" &&
    print -r -- ${+functions[_nixos-lift]} $_comps[nixos-lift]' zsh "$dist/completions/_nixos-lift" 2>&1)
[ "$zsh_reply" = "1 _nixos-lift" ] && ok "zsh completion loads and is registered for nixos-lift" ||
    fail "zsh completion: $zsh_reply"
fish -c 'source $argv[1]; complete -C "nixos-lift us"' "$dist/completions/nixos-lift.fish" | grep -q "^user-data" &&
    ok "fish completes 'nixos-lift us' to user-data" || fail "fish completion"

# Man pages: one per visible subcommand, none for the hidden `generate`; they render with
# man(1) and groff without a single warning (a page with an unknown macro must warn: control).
pages=$(cd "$dist/man" && find . -type f -printf '%f\n' | LC_ALL=C sort | tr '\n' ' ')
for page in nixos-lift nixos-lift-detect nixos-lift-config nixos-lift-config-check nixos-lift-user-data \
    nixos-lift-plan nixos-lift-run nixos-lift-handoff nixos-lift-install; do
    [ -f "$dist/man/$page.1" ] || fail "no man page $page.1 (have: $pages)"
done
compgen -G "$dist/man/*generate*" >/dev/null && fail "the hidden generate command got a man page" ||
    ok "man pages for every visible subcommand, none for the hidden generate: $pages"
printf '.TH bad 1\n.SH NAME\n.NOSUCHMACRO\nbad\n' >"$work/bad.1"
[ -n "$(groff -man -Tutf8 -ww -z "$work/bad.1" 2>&1)" ] && ok "groff -ww warns about a broken page (control)" ||
    fail "groff -ww did not warn about a broken page: the check below means nothing"
warnings=""
for page in "$dist"/man/*.1; do
    w=$( (groff -man -Tutf8 -ww -z "$page" && MANWIDTH=80 man --warnings -l "$page" >/dev/null) 2>&1)
    [ -z "$w" ] || warnings+="$(basename "$page"): $w "
done
[ -z "$warnings" ] && ok "every man page renders with groff -ww and man --warnings -l, no warnings" ||
    fail "man page warnings: $warnings"
MANWIDTH=80 man -l "$dist/man/nixos-lift.1" 2>/dev/null | grep -q "user-data" &&
    ok "nixos-lift.1 renders and lists user-data" || fail "nixos-lift.1 does not render the subcommands"

# The systemd unit: the shipped file is the one src/detach.rs renders and passes to
# systemd-run (cargo test detach:: compares both); here systemd's own parser checks it.
# `systemd-analyze verify` exits 0 even for unknown keys, so any output is a failure. Its
# ExecStart must exist: the copy points at this build instead of /usr/local/bin/nixos-lift.
unit=$dist/systemd/nixos-lift.service
cmp -s "$unit" packaging/nixos-lift.service && ok "the release ships packaging/nixos-lift.service" ||
    fail "systemd/nixos-lift.service differs from packaging/"
if command -v systemd-analyze >/dev/null; then
    mkdir -p "$work/units"
    sed "s|^ExecStart=/usr/local/bin/nixos-lift |ExecStart=$x86 |" "$unit" >"$work/units/nixos-lift.service"
    grep -q "^ExecStart=$x86 run --config /etc/nixos-lift/config.yaml$" "$work/units/nixos-lift.service" ||
        fail "could not point ExecStart at the build"
    printf '[Service]\nExecStart=/bin/true\nStandardOutput=nonsense\n' >"$work/units/bad.service"
    [ -n "$(systemd-analyze verify "$work/units/bad.service" 2>&1)" ] &&
        ok "systemd-analyze verify reports a bad property (control)" ||
        fail "systemd-analyze verify was silent about a bad property: the check below means nothing"
    v=$(systemd-analyze verify "$work/units/nixos-lift.service" 2>&1) && [ -z "$v" ] &&
        ok "systemd-analyze verify: nixos-lift.service is clean ($(systemd-analyze --version | head -1))" ||
        fail "systemd-analyze verify: $v"
else
    [ "${CI:-}" = true ] && fail "systemd-analyze is not installed: under CI the unit file must be verified"
    echo "SKIP - systemd-analyze is not installed: the unit file is not verified by systemd"
fi

finish release
