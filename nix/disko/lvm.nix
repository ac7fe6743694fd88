# disk-lvm: hybrid GPT with the boot partitions and one LVM physical volume on the rest of the
# disk, in volume group `pool`. Volumes are shares of the whole group (see lvmSizes in
# nix/lib/default.nix for why `N%` would not do): by default root 70 %, /var 20 %, /home 10 %.
{ config, lib, pkgs, ... }:
let
  helpers = import ../lib;
  cfg = config.nixos-lift.disk;
  sizes = helpers.lvmSizes (map (v: { inherit (v) name percent; }) cfg.lvm.volumes);
  volume = v: {
    inherit (sizes.${v.name}) size priority;
    content = {
      type = "filesystem";
      format = if v.mountpoint == "/" then cfg.rootFormat else v.format;
      inherit (v) mountpoint;
    };
  };
  pvPartLabel = "disk-main-root";
in
{
  imports = [ ./boot.nix ];

  options.nixos-lift.disk.lvm.volumes = lib.mkOption {
    type = lib.types.listOf (lib.types.submodule {
      options = {
        name = lib.mkOption { type = lib.types.str; };
        percent = lib.mkOption {
          type = lib.types.ints.between 1 100;
          description = "Share of the whole volume group, not of what earlier volumes left.";
        };
        mountpoint = lib.mkOption { type = lib.types.str; };
        format = lib.mkOption { type = lib.types.str; default = "ext4"; };
      };
    });
    default = [
      { name = "root"; percent = 70; mountpoint = "/"; }
      { name = "var"; percent = 20; mountpoint = "/var"; }
      { name = "home"; percent = 10; mountpoint = "/home"; }
    ];
    description = ''
      Logical volumes, created in this order. Each gets `percent` of the whole volume group;
      when the percentages add up to 100 the last one takes what is left after rounding, and
      when they add up to less the rest stays free for snapshots or growth.
    '';
  };

  config = {
    assertions = [{
      assertion = lib.any (v: v.mountpoint == "/") cfg.lvm.volumes;
      message = "nixos-lift: nixos-lift.disk.lvm.volumes has no volume mounted at /.";
    }];

    disko.devices = {
      disk.main = {
        type = "disk";
        inherit (cfg) device;
        content = {
          type = "gpt";
          partitions = cfg.bootPartitions // {
            root = {
              size = "100%";
              priority = 9000;
              content = { type = "lvm_pv"; vg = "pool"; };
            };
          };
        };
      };
      lvm_vg.pool = {
        type = "lvm_vg";
        lvs = lib.listToAttrs (map (v: lib.nameValuePair v.name (volume v)) cfg.lvm.volumes);
      };
    };

    boot.initrd.services.lvm.enable = true;

    # growpart cannot follow root through device-mapper: grow the PV's partition and the PV,
    # and leave the new extents free for `lvextend` (which volume deserves them is the user's call).
    systemd.services.nixos-lift-grow-pv = {
      description = "Grow the LVM physical volume to the end of the disk";
      wantedBy = [ "multi-user.target" ];
      after = [ "local-fs.target" ];
      path = [ pkgs.cloud-utils.guest pkgs.lvm2 pkgs.coreutils pkgs.gnused pkgs.gawk pkgs.util-linux ];
      serviceConfig.Type = "oneshot";
      script = ''
        part=$(readlink -f /dev/disk/by-partlabel/${pvPartLabel})
        name=$(basename "$part")
        number=$(cat "/sys/class/block/$name/partition")
        disk=/dev/$(basename "$(readlink -f "/sys/class/block/$name/..")")
        # growpart exits 1 when there is nothing to grow.
        growpart "$disk" "$number" || [ $? -eq 1 ]
        pvresize "$part"
      '';
    };
  };
}
