# The four universal targets that `flake: github:<owner>/nixos-lift#cloud-<arch>` refers to:
# the cloud baseline, facts and a disk layout, nothing else. A user's own flake starts from
# the template instead (nix/templates/default).
{ lib, self }:
let
  cloud = { system, disk }: lib.nixosSystem {
    modules = [
      self.nixosModules.default
      self.nixosModules.${disk}
      {
        nixpkgs.hostPlatform = system;
        system.stateVersion = "26.05";
      }
    ];
  };
in
{
  cloud-x86_64 = cloud { system = "x86_64-linux"; disk = "disk-basic"; };
  cloud-aarch64 = cloud { system = "aarch64-linux"; disk = "disk-basic"; };
  cloud-lvm-x86_64 = cloud { system = "x86_64-linux"; disk = "disk-lvm"; };
  cloud-lvm-aarch64 = cloud { system = "aarch64-linux"; disk = "disk-lvm"; };
}
