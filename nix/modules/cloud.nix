# cloud: the universal cloud baseline. It boots on every cloud nixos-lift knows, on BIOS and
# UEFI, x86_64 and aarch64, and holds nothing user-specific (no users, keys, host name or
# packages of anyone's choosing).
{ config, lib, pkgs, ... }:
let
  helpers = import ../lib;
  inherit (lib) mkDefault mkIf mkMerge mkOption types;
  cfg = config.nixos-lift.cloud;
  x86 = pkgs.stdenv.hostPlatform.isx86;
  is = names: cfg.guestAgents && builtins.elem cfg.provider names;
  # Clouds on KVM/QEMU whose hosts talk to qemu-guest-agent.
  kvmClouds = [ "hetzner" "digitalocean" "vultr" "akamai" "openstack" "exoscale" "upcloud" "scaleway" "nocloud" "oracle" "alibaba" ];
in
{
  options.nixos-lift.cloud = {
    provider = mkOption {
      type = types.nullOr (types.enum helpers.contract.providers);
      default =
        let facts = config.nixos-lift.facts or null;
        in if facts == null || (facts.cloud or null) == null then null else facts.cloud.provider;
      defaultText = lib.literalMD "`nixos-lift.facts.cloud.provider`, when facts are present";
      description = "The cloud this machine runs on; picks the guest agents.";
    };
    guestAgents = mkOption {
      type = types.bool;
      default = true;
      description = "Run the provider's guest agents that nixpkgs packages (see the README table).";
    };
  };

  config = mkMerge [
    {
      # Serial consoles: the last `console=` becomes /dev/console, so serial goes last and
      # systemd's and stage 2's messages reach the provider's serial log. A console= for a port
      # the machine lacks is ignored, so listing both works on x86_64 (ttyS0) and on aarch64
      # clouds with a PL011 (ttyAMA0) or an 8250 (ttyS0, e.g. Graviton).
      boot.kernelParams = [ "console=tty0" "console=ttyAMA0,115200" "console=ttyS0,115200" ];
      boot.loader.grub.extraConfig = lib.mkIf x86 ''
        serial --unit=0 --speed=115200
        terminal_input serial console
        terminal_output serial console
      '';
      boot.loader.timeout = mkDefault 1;

      # Storage and network drivers of every supported hypervisor, in the initrd, so root is
      # found whichever cloud the disk ends up on (the list is shared with the installer).
      boot.initrd.availableKernelModules = import ../lib/cloud-drivers.nix { inherit x86; };

      # systemd-networkd: DHCP and RA on every physical ethernet. The facts module adds the
      # units stage 1 planned, 10-nixos-lift-<mac>[-<driver>], which networkd prefers (first
      # match wins); this catch-all covers NICs without one (no facts, or a NIC added later).
      # `Kind = "!*"`, as in nixpkgs' own catch-all, leaves out virtual interfaces (veth,
      # bridges, VLANs), which are Type=ether too but have a kind.
      networking.useNetworkd = true;
      networking.useDHCP = mkDefault false;
      systemd.network.enable = true;
      systemd.network.networks."99-nixos-lift-ethernet" = {
        matchConfig = { Type = "ether"; Kind = "!*"; };
        networkConfig = { DHCP = "yes"; IPv6AcceptRA = true; };
      };
      services.resolved.enable = mkDefault true;

      # OpenSSH, keys only by default (it opens port 22 in the firewall itself).
      services.openssh = {
        enable = true;
        settings = {
          PasswordAuthentication = mkDefault false;
          KbdInteractiveAuthentication = mkDefault false;
          PermitRootLogin = mkDefault "prohibit-password";
        };
      };

      # Small VMs: compressed swap in RAM instead of a swap partition.
      zramSwap.enable = mkDefault true;
    }

    # Guest agents that nixpkgs has, per provider.
    (mkIf (is [ "aws" ]) {
      services.amazon-ssm-agent.enable = mkDefault true;
    })
    (mkIf (is [ "gcp" ]) {
      systemd.packages = [ pkgs.google-guest-agent ];
      systemd.services.google-guest-agent.wantedBy = [ "multi-user.target" ];
    })
    (mkIf (is [ "azure" ]) {
      services.waagent.enable = mkDefault true;
      virtualisation.hypervGuest.enable = mkDefault x86;
    })
    (mkIf (is [ "digitalocean" ]) {
      services.do-agent.enable = mkDefault true;
    })
    (mkIf (is kvmClouds) {
      services.qemuGuest.enable = mkDefault true;
    })
  ];
}
