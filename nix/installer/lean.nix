# The lean installer: what a non-interactive takeover does not use, taken out of nixos-images'
# kexec-installer + noninteractive, so the initrd stays within ./budget.nix (docs/nix.md,
# "The installer's size budget"). noninteractive already drops nano, the stdenv of
# system.extraDependencies, nixpkgs, sudo, polkit, perl and man-db; this goes further.
# `noninteractiveModule` (nixos-images' noninteractive.nix, a path) comes from specialArgs in
# flake.nix.
{ lib, pkgs, noninteractiveModule, ... }:
let
  inherit (lib) mkForce;
  x86 = pkgs.stdenv.hostPlatform.isx86;
in
{
  # noninteractive imports ./zfs-minimal.nix, which adds ZFS's kernel module, userland, udev
  # rules and units by itself, so `supportedFilesystems.zfs = false` alone would leave them in.
  # A module imported by path has that path as its key. Stage 2 installs with the user's flake,
  # which brings ZFS along if its layout wants it.
  disabledModules = [{ key = "${dirOf (toString noninteractiveModule)}/zfs-minimal.nix"; }];

  config = {
    # nixpkgs' installation-device profile turns documentation and the NixOS manual back on with
    # mkImageMediaOverride, which beats nixos-images' plain `documentation.enable = false`.
    documentation = {
      enable = mkForce false;
      man.enable = mkForce false;
      info.enable = mkForce false;
      doc.enable = mkForce false;
      nixos.enable = mkForce false;
    };

    boot.supportedFilesystems = {
      zfs = mkForce false;
      bcachefs = mkForce false;
    };

    # Cloud VMs need no firmware files, and the installer's root is a tmpfs with the store in the
    # initrd, so its initrd needs only the drivers stage 2 may meet first: the clouds' ones (as
    # the installed system's), on top of what netboot and the systemd initrd add themselves.
    # nixpkgs' all-hardware (SATA, PATA, SCSI HBAs, USB, early display) and default modules go.
    hardware.enableAllHardware = mkForce false;
    hardware.enableRedistributableFirmware = mkForce false;
    networking.wireless.enable = false;
    boot.initrd.includeDefaultModules = false;
    boot.initrd.availableKernelModules = import ../lib/cloud-drivers.nix { inherit x86; };

    # Stage 2 restores the network (nixos-lift-network writes the networkd units, stage 2 adds
    # addresses and routes over netlink), so nixos-images' Python restore and its interpreter go.
    systemd.services.restore-network.enable = false;

    # The strongest compression the kernel unpacks. The store's squashfs, most of the initrd:
    # xz with a whole-block dictionary (and the x86 BCJ filter, which the kernel's squashfs xz
    # decoder has on x86) instead of nixpkgs' zstd. The initrd around it: xz as nixos-images
    # has it, with CRC32, the only check the kernel's xz decoder verifies, and a 1 MiB
    # dictionary, which the kernel allocates whole while it unpacks (its own xz_wrap.sh keeps
    # initramfs dictionaries that small); the squashfs inside is compressed already.
    netboot.squashfsCompression = "xz -Xdict-size 100%" + lib.optionalString x86 " -Xbcj x86";
    boot.initrd.compressor = "xz";
    boot.initrd.compressorArgs = [ "--check=crc32" "--lzma2=preset=9e,dict=1MiB" ];
  };
}
