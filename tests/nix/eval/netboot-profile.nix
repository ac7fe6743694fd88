# TEST DOUBLE (tests/nix/eval only): the definitions from nixpkgs' netboot-minimal profile and
# nixos-images' installer.nix that nix/installer/lean.nix has to override, restated with their
# priorities (the real modules are nixpkgs' own and cannot be imported here), so the lean checks
# meet what the real installer meets. Abridged module lists; the sources:
#   installer/netboot/netboot-base.nix   hardware.enableAllHardware = true
#   hardware/all-hardware.nix            SATA/PATA/SCSI/USB/VMware modules, firmware on
#   installer/scan/not-detected.nix      firmware on (mkDefault)
#   installer/netboot/netboot.nix        squashfs and overlay in the initrd
#   system/boot/kernel.nix               default modules unless includeDefaultModules = false
#   profiles/installation-device.nix     documentation and the manual (mkImageMediaOverride),
#                                        wireless (mkDefault)
#   nixos-images nix/installer.nix       documentation.enable = false, bcachefs (mkDefault)
{ config, lib, ... }:
let
  inherit (lib) mkDefault mkIf mkImageMediaOverride mkMerge;
in
{
  hardware.enableAllHardware = true;
  hardware.enableRedistributableFirmware = mkMerge [ (mkIf config.hardware.enableAllHardware true) (mkDefault true) ];
  boot.initrd.availableKernelModules = mkMerge [
    (mkIf config.hardware.enableAllHardware [ "ahci" "ata_piix" "pata_via" "3w-9xxx" "uas" "mptspi" "vmxnet3" ])
    (mkIf config.boot.initrd.includeDefaultModules [ "ahci" "sd_mod" "xhci_pci" "usbhid" "hid_generic" ])
    [ "squashfs" "overlay" ]
  ];
  documentation.enable = mkMerge [ (mkImageMediaOverride true) false ];
  documentation.nixos.enable = mkImageMediaOverride true;
  networking.wireless.enable = mkDefault true;
  boot.supportedFilesystems.bcachefs = mkDefault true;
}
