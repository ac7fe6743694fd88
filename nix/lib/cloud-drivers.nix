# Storage and network drivers of every hypervisor nixos-lift supports, for the initrd of both
# the installed system (nix/modules/cloud.nix) and the installer (nix/installer/lean.nix).
# Hyper-V runs Azure's arm64 VMs too; Xen drivers are x86_64-only in the NixOS kernels.
# Usage: import ./cloud-drivers.nix { x86 = pkgs.stdenv.hostPlatform.isx86; }
{ x86 }:
[
  "virtio_pci"
  "virtio_blk"
  "virtio_scsi"
  "virtio_net"
  "nvme"
  "ena"
  "gve"
  "hv_vmbus"
  "hv_storvsc"
  "hv_netvsc"
] ++ (if x86 then [
  "xen_blkfront"
  "xen_netfront"
] else [ ])
