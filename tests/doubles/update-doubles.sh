#!/usr/bin/env bash
# update-doubles.sh BIN: TEST DOUBLES for the tools nix/modules/update.sh calls, put on a PATH
# directory for tests/nix/update-script.sh: `nix`, `nix-env`, `curl` and `systemctl`. Real Nix
# would need a store and a flake to build, curl a webhook, systemctl a running systemd. Each
# appends its argv (one line, words joined by spaces) to BIN/calls; control files in BIN
# steer them:
#   nix flake metadata --json ... -> {"url": "<flake>?rev=abc123", "revision": "abc123"}
#   nix build ...                  -> fails if BIN/fail-build exists; else makes BIN/store/
#                                     <hash>-nixos-system-new with a bin/switch-to-configuration
#                                     double that logs `switch-to-configuration ACTION`
#   nix copy ...                   -> fails if BIN/fail-copy exists; else makes the path under
#                                     BIN/store (the path argument is /nix/store/..., mapped)
#   nix-env -p PROFILE --set PATH  -> logged only
#   curl URL (no --data-binary)    -> prints BIN/system-url-body (the fleet's path file)
#   curl --data-binary @- URL      -> appends the body to BIN/webhook and the config read
#                                     through --config to BIN/webhook-config
#   systemctl ...                  -> logged only
set -euo pipefail
bin=$1
mkdir -p "$bin/store"

cat >"$bin/nix" <<EOF
#!/usr/bin/env bash
set -eu
echo "nix \$*" >>"$bin/calls"
args=" \$* "
case "\$args" in
    *" flake metadata "*)
        echo '{"url": "git+https://git.example/fleet.git?rev=abc123", "revision": "abc123"}' ;;
    *" build "*)
        [ ! -e "$bin/fail-build" ] || { echo "error: builder failed (double)" >&2; exit 1; }
        out="$bin/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-new"
        mkdir -p "\$out/bin"
        printf '#!/bin/sh\necho "switch-to-configuration \$1" >>"$bin/calls"\n' >"\$out/bin/switch-to-configuration"
        chmod +x "\$out/bin/switch-to-configuration"
        echo "\$out" ;;
    *" copy "*)
        [ ! -e "$bin/fail-copy" ] || { echo "error: path is not valid (double)" >&2; exit 1; } ;;
    *) echo "nix double: unexpected: \$*" >&2; exit 2 ;;
esac
EOF

cat >"$bin/curl" <<EOF
#!/usr/bin/env bash
set -eu
echo "curl \$*" >>"$bin/calls"
data=no
config=""
while [ \$# -gt 0 ]; do
    case "\$1" in
        --data-binary) data=yes; shift ;;
        --config) config=\$(cat "\$2"); shift ;;
    esac
    shift
done
if [ \$data = yes ]; then
    cat >>"$bin/webhook"
    echo >>"$bin/webhook"
    echo "\$config" >>"$bin/webhook-config"
else
    cat "$bin/system-url-body"
fi
EOF

for tool in nix-env systemctl; do
    printf '#!/bin/sh\necho "%s $*" >>"%s/calls"\n' "$tool" "$bin" >"$bin/$tool"
done
chmod +x "$bin/nix" "$bin/curl" "$bin/nix-env" "$bin/systemctl"
