# Options shared by the disk layouts and the `facts` module.
{ lib, ... }:
{
  options.nixos-lift.disk = {
    device = lib.mkOption {
      type = lib.types.str;
      default = (import ../lib).unsetDisk;
      example = "/dev/disk/by-id/virtio-vol-0123";
      description = ''
        The whole disk the layout is written to. The `facts` module sets it from facts.json
        (a /dev/disk/by-id link when the disk has one). Set it yourself when you do not use facts.
        The default names no disk, so a configuration without facts evaluates (`nix flake
        check`) but cannot wipe anything.
      '';
    };
    rootFormat = lib.mkOption {
      type = lib.types.enum [ "ext4" "xfs" "btrfs" ];
      default = "ext4";
      description = "Filesystem of the root filesystem (the root partition, or the root logical volume).";
    };
  };
}
