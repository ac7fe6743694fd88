# disk-basic: hybrid GPT with the boot partitions and one root filesystem on the rest of the disk.
{ config, lib, ... }:
let
  cfg = config.nixos-lift.disk;
in
{
  imports = [ ./boot.nix ];

  disko.devices.disk.main = {
    type = "disk";
    inherit (cfg) device;
    content = {
      type = "gpt";
      partitions = cfg.bootPartitions // {
        root = {
          size = "100%";
          priority = 9000;
          content = {
            type = "filesystem";
            format = cfg.rootFormat;
            mountpoint = "/";
          };
        };
      };
    };
  };

  # The cloud's disk may be larger than the one the layout was made on. nixpkgs' autoResize
  # grows ext4 only; systemd-growfs (x-systemd.growfs) grows XFS and btrfs once mounted.
  boot.growPartition = true;
  fileSystems."/" = {
    autoResize = cfg.rootFormat == "ext4";
    options = lib.mkIf (cfg.rootFormat != "ext4") [ "x-systemd.growfs" ];
  };
}
