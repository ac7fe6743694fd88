# disk-basic: hybrid GPT with the boot partitions and one root filesystem on the rest of the disk.
{ config, ... }:
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

  # The cloud's disk may be larger than the one the layout was made on.
  boot.growPartition = true;
  fileSystems."/".autoResize = cfg.rootFormat == "ext4";
}
