# What both layouts share: the boot partitions and GRUB.
#
# x86_64 is hybrid, so one disk boots under SeaBIOS and UEFI alike: a 1 MiB EF02 partition for
# GRUB's BIOS core image, then a 512 MiB ESP with GRUB installed as the removable loader
# (EFI/BOOT/BOOTX64.EFI, found without NVRAM entries, which a kexec'd install cannot write).
# aarch64 clouds are UEFI-only: no EF02, and GRUB gets `device = "nodev"`.
{ config, lib, pkgs, ... }:
let
  cfg = config.nixos-lift.disk;
  bios = pkgs.stdenv.hostPlatform.isx86;
in
{
  imports = [ ./options.nix ];

  options.nixos-lift.disk.bootPartitions = lib.mkOption {
    type = lib.types.attrsOf lib.types.anything;
    readOnly = true;
    internal = true;
    description = "The boot partitions of the GPT, for the layouts to add their root to.";
  };

  config = {
    # Fleet mode: stage 2 runs a prebuilt system's disko script without evaluating anything; it
    # finds the script through this link in the toplevel (src/install/fleet.rs, DISKO_LINK).
    system.systemBuilderCommands = ''
      ln -s ${config.system.build.diskoScript} $out/disko-script
    '';

    warnings = lib.optional (cfg.device == (import ../lib).unsetDisk)
      "nixos-lift: no target disk. Set nixos-lift.disk.device, or give the facts module a facts.json that names the disk.";

    nixos-lift.disk.bootPartitions = lib.optionalAttrs bios
      {
        bios = {
          size = "1M";
          type = "EF02";
          priority = 1;
        };
      } // {
      ESP = {
        size = "512M";
        type = "EF00";
        priority = 2;
        content = {
          type = "filesystem";
          format = "vfat";
          mountpoint = "/boot";
          mountOptions = [ "umask=0077" ];
        };
      };
    };

    # Defaults, so a configuration can choose NVRAM entries or BIOS-only GRUB instead.
    boot.loader.grub = {
      enable = true;
      efiSupport = lib.mkDefault true;
      efiInstallAsRemovable = lib.mkDefault true;
      # disko adds the disk to grub.devices for the EF02 partition; without one, EFI only.
      device = lib.mkIf (!bios) (lib.mkDefault "nodev");
    };
    boot.loader.efi.canTouchEfiVariables = lib.mkDefault false;
  };
}
