# The nixos-lift installer: nixos-images' kexec-installer and noninteractive modules (imported
# next to this one in flake.nix) plus stage 2, made lean by ./lean.nix. Build:
# `nix build .#installer`.
#
# Boot sequence after stage 1's kexec:
#   initrd   nixos-lift-handoff copies /nixos-lift (the handoff) to /run/nixos-lift/handoff;
#            /run survives switch-root. nixos-images' restore-state-from-initrd copies the
#            ssh/ and *.json files as usual.
#   stage 2  nixos-lift-network copies the networkd units the agent rendered into the handoff
#            (networkd/*.network; nixos-images' Python restore-network is off, see lean.nix)
#            before networkd starts, and its resolved.conf into the running systemd-resolved
#            (which starts before sysinit.target, so no ordinary service can run before it);
#            nixos-lift-install runs `nixos-lift install`, preferring the handed-over agent.
{ config, lib, pkgs, ... }:
let
  helpers = import ../lib;
  c = helpers.contract;
  cfg = config.nixos-lift.installer;
  handoff = file: "${c.stage2Dir}/${file}";

  network = pkgs.writeShellApplication {
    name = "nixos-lift-network";
    runtimeInputs = [ pkgs.coreutils pkgs.gnused pkgs.systemd ];
    text = ''
      # Installs the network stage 1 planned and the agent rendered (src/plan/networkd.rs):
      # nothing is decided here. Without units or resolvers, DHCP on every NIC is all there is.
      units=${handoff c.networkdDir}
      resolved=${handoff c.resolvedFile}

      if [ -f "$resolved" ]; then
        mkdir -p /run/systemd/resolved.conf.d
        install -m 0644 "$resolved" /run/systemd/resolved.conf.d/50-nixos-lift.conf
        # resolved is already running (it starts before sysinit.target): make it re-read.
        systemctl try-reload-or-restart systemd-resolved.service
        echo "nixos-lift: resolvers from the handoff: $(sed -n 's/^DNS=//p' "$resolved")"
      else
        echo "nixos-lift: no resolvers in the handoff; relying on DHCP"
      fi

      mkdir -p /etc/systemd/network
      shopt -s nullglob
      for unit in "$units"/*.network; do
        install -m 0644 "$unit" /etc/systemd/network/
        echo "nixos-lift: networkd unit $(basename "$unit")"
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
