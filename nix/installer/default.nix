# The nixos-lift installer: nixos-images' kexec-installer and noninteractive modules (imported
# next to this one in flake.nix) plus stage 2, made lean by ./lean.nix. Build:
# `nix build .#installer`.
#
# Boot sequence after stage 1's kexec:
#   initrd   nixos-lift-handoff copies /nixos-lift (the handoff) to /run/nixos-lift/handoff;
#            /run survives switch-root. nixos-images' restore-state-from-initrd copies the
#            ssh/ and *.json files as usual.
#   stage 2  nixos-lift-network writes the networkd units for the interfaces in the handoff's
#            facts (MAC match, static addresses, routes, MTU; nixos-images' Python
#            restore-network is off, see lean.nix) before networkd starts, and the resolvers into
#            the running systemd-resolved (which starts before sysinit.target, so no ordinary
#            service can run before it);
#            nixos-lift-install runs `nixos-lift install`, preferring the handed-over agent.
{ config, lib, pkgs, ... }:
let
  helpers = import ../lib;
  c = helpers.contract;
  cfg = config.nixos-lift.installer;
  handoff = file: "${c.stage2Dir}/${file}";

  network = pkgs.writeShellApplication {
    name = "nixos-lift-network";
    runtimeInputs = [ pkgs.jq pkgs.coreutils pkgs.gawk pkgs.systemd ];
    text = ''
      # The network from the handoff's facts: resolvers for systemd-resolved, and one networkd
      # unit per ethernet interface (what nixos-images' restore-network wrote from addrs.json
      # and routes-*.json, plus the MTU).
      facts=${handoff c.factsFile}
      net=${handoff c.networkFile}

      # Loopback resolvers (127.0.0.53, a local dnsmasq) served the stock image, not this one.
      dns=$( {
        jq -r '.network.dns[]?, (.cloud.network // [] | .[].dns[]?)' "$facts"
        if [ -f "$net" ]; then jq -r '.dns[]?' "$net"; fi
      } | awk '!/^127\./ && $0 != "::1" && !seen[$0]++' | tr '\n' ' ')
      if [ -n "''${dns// /}" ]; then
        mkdir -p /run/systemd/resolved.conf.d
        printf '[Resolve]\nDNS=%s\n' "$dns" > /run/systemd/resolved.conf.d/50-nixos-lift.conf
        # resolved is already running (it starts before sysinit.target): make it re-read.
        systemctl try-reload-or-restart systemd-resolved.service
        echo "nixos-lift: resolvers from the handoff: $dns"
      else
        echo "nixos-lift: no resolvers in the handoff; relying on DHCP"
      fi

      # 00-<ifname>.network, matched by MAC (kernel names may differ here): DHCP and RA as
      # before, static addresses, the routes that do not come back by themselves (not kernel,
      # dhcp or ra) and a non-1500 MTU. Stage 2 adds the same addresses and routes over netlink.
      mkdir -p /etc/systemd/network
      jq -r '.network as $n | ($n.interfaces // [])[]
        | select(.link_type == "ether" and .mac != null and .mac != "00:00:00:00:00:00")
        | . as $i
        | "\(.name)\t" + ([
            "[Match]", "MACAddress=\(.mac)",
            (if .mtu != null and .mtu != 1500 then "[Link]", "MTUBytes=\(.mtu)" else empty end),
            "[Network]", "DHCP=yes", "IPv6AcceptRA=yes",
            ((.addresses // [])[] | select(.scope != "link" and .scope != "host" and (.dynamic | not))
              | "Address=\(.address)/\(.prefix_len)"),
            (($n.routes // [])[] | select(.dev == $i.name and ((.protocol // "") | IN("kernel", "dhcp", "ra") | not))
              | "[Route]",
                (if .dst != "default" then "Destination=\(.dst)"
                 elif .family == "inet" and .gateway_family == "inet6" then "Destination=0.0.0.0/0"
                 else empty end),
                (if .gateway != null then "Gateway=\(.gateway)" else empty end),
                (if .onlink then "GatewayOnLink=yes" else empty end),
                (if .metric != null then "Metric=\(.metric)" else empty end))
          ] | join("\\n"))' "$facts" |
        while IFS="$(printf '\t')" read -r ifname unit; do
          printf '%b\n' "$unit" > "/etc/systemd/network/00-$ifname.network"
          echo "nixos-lift: networkd unit for $ifname"
        done
    '';
  };

  # Prefer the agent stage 1 handed over (the exact version that made the plan); fall back to
  # the image's own when it is missing or does not run here.
  launch = pkgs.writeShellApplication {
    name = "nixos-lift-stage2";
    runtimeInputs = [ pkgs.coreutils ];
    text = ''
      agent=${handoff c.agentFile}
      if [ -x "$agent" ] && "$agent" --version >/dev/null 2>&1; then
        echo "nixos-lift: running the handed-over agent ($("$agent" --version))"
        exec "$agent" install
      fi
      echo "nixos-lift: handed-over agent missing or not runnable; using the image's ${cfg.package.version}"
      exec ${lib.getExe cfg.package} install
    '';
  };

  manifest = helpers.manifest {
    name = config.system.kexec-installer.name;
    inherit (pkgs.stdenv.hostPlatform) system;
    nixosRelease = config.system.nixos.release;
    agentVersion = cfg.package.version;
    init = "${config.system.build.toplevel}/init";
    kernelParams = config.boot.kernelParams;
  };
  manifestFile = pkgs.writeText "manifest.json" (builtins.toJSON manifest);
  tarballName = "${config.system.kexec-installer.name}-${pkgs.stdenv.hostPlatform.system}.tar.gz";
in
{
  options.nixos-lift.installer.package = lib.mkOption {
    type = lib.types.package;
    default = pkgs.callPackage ../package.nix { };
    defaultText = lib.literalExpression "pkgs.callPackage ./nix/package.nix { }";
    description = "The agent the image carries (the fallback for the handed-over one).";
  };

  imports = [ ./lean.nix ];

  config = {
    system.kexec-installer.name = "nixos-lift-installer";
    # The network script on its own, for tests/nix/eval and for debugging an installer.
    system.build.nixosLiftNetwork = network;

    assertions = [{
      assertion = helpers.serialConsoleLast config.boot.kernelParams;
      message = "nixos-lift installer: the last console= must be a serial port (it becomes /dev/console); got ${toString (helpers.consoles config.boot.kernelParams)}";
    }];

    # zram is the swap device, so switch off the zswap that nixos-images enables: zswap in front
    # of zram compresses every page twice. A later parameter overrides an earlier one.
    zramSwap = { enable = true; algorithm = "zstd"; memoryPercent = 100; };
    boot.kernelParams = lib.mkAfter [ "zswap.enabled=0" ];

    environment.systemPackages = [ cfg.package pkgs.git ];

    # Stage 1's archive lands at the initrd's root; nothing crosses switch-root unless copied.
    boot.initrd.systemd.services.nixos-lift-handoff = {
      description = "Keep the nixos-lift handoff across switch-root";
      unitConfig = {
        DefaultDependencies = false;
        ConditionPathIsDirectory = "/${c.initrdDir}";
      };
      wantedBy = [ "initrd.target" ];
      before = [ "initrd.target" "initrd-switch-root.target" ];
      serviceConfig.Type = "oneshot";
      script = ''
        rm -rf ${c.stage2Dir}
        mkdir -p -m 0700 ${dirOf c.stage2Dir}
        cp -a /${c.initrdDir} ${c.stage2Dir}
        chmod 0700 ${c.stage2Dir}
        if [ -f ${handoff c.secretsFile} ]; then chmod 0600 ${handoff c.secretsFile}; fi
      '';
    };

    systemd.services.nixos-lift-network = {
      description = "Restore the network from the nixos-lift handoff";
      wantedBy = [ "multi-user.target" ];
      # Not before systemd-resolved: it is ordered before sysinit.target, which this unit
      # (default dependencies) follows, so that would be a cycle systemd breaks by dropping a unit.
      after = [ "systemd-resolved.service" ];
      before = [ "network-pre.target" "systemd-networkd.service" ];
      wants = [ "network-pre.target" ];
      unitConfig.ConditionPathExists = handoff c.factsFile;
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = lib.getExe network;
        StandardOutput = "journal+console";
        StandardError = "journal+console";
      };
    };

    systemd.services.nixos-lift-install = {
      description = "nixos-lift stage 2: install NixOS as planned in the handoff";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" "nixos-lift-network.service" ];
      wants = [ "network-online.target" ];
      unitConfig.ConditionPathExists = handoff c.planFile;
      # What stage 2 runs: nix, git for git+https flakes, disko, nixos-install.
      path = [
        config.nix.package
        pkgs.git
        pkgs.disko
        pkgs.nixos-install-tools
        pkgs.util-linux
        pkgs.coreutils
        pkgs.e2fsprogs
        pkgs.dosfstools
        pkgs.lvm2
        pkgs.parted
        pkgs.gptfdisk
        pkgs.systemd
      ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = lib.getExe launch;
        # An install takes as long as the flake takes to build; stage 2 keeps its own deadlines.
        TimeoutStartSec = "infinity";
        StandardOutput = "journal+console";
        StandardError = "journal+console";
      };
    };

    # nixos-images' tarball plus kexec/manifest.json for stage 1. The tarball's layout (kexec/run,
    # kexec/kexec, kexec/bzImage, kexec/initrd) stays as upstream makes it.
    system.build.nixosLiftInstaller = pkgs.runCommand "nixos-lift-installer-tarball"
      {
        nativeBuildInputs = [ pkgs.gnutar pkgs.gzip pkgs.jq ];
        passthru = { inherit manifest; };
      } ''
      mkdir work $out
      tar -xzf ${config.system.build.kexecInstallerTarball}/${tarballName} -C work
      cp ${manifestFile} work/${c.manifestFile}
      for f in $(jq -r '.kernel, .initrd, .kexec' work/${c.manifestFile}); do
        test -s "work/$f" || { echo "manifest names work/$f, which the tarball lacks" >&2; exit 1; }
      done
      tar -C work --sort=name --owner=0 --group=0 --numeric-owner --mtime=@1 -czf $out/${tarballName} kexec
      (cd $out && sha256sum ${tarballName} > ${tarballName}.sha256)
      cp ${manifestFile} $out/manifest.json
    '';
  };
}
