# Evaluates nix/modules, the disk layouts and the installer module with the REAL nixpkgs `lib`
# and the REAL disko and nixos-images sources (unpacked from ../shared/upstream by
# tests/suite/50-nix.sh), over the stand-in NixOS options of ./nixos-options.nix and the
# package-set double ./pkgs.nix. checks.nix reads the results.
{ nixpkgsLib, disko, nixosImages, wrapper ? null }:
let
  lib = import "${nixpkgsLib}/lib";
  repo = ../../..;

  evalFor = system: modules: lib.evalModules {
    # As flake.nix's installerFor passes it (nix/installer/lean.nix reads it).
    specialArgs.noninteractiveModule = "${nixosImages}/nix/noninteractive.nix";
    modules = [
      ./nixos-options.nix
      {
        _module.args = {
          pkgs = import ./pkgs.nix { inherit lib system; };
          modulesPath = "/standin-nixpkgs/nixos/modules";
        };
      }
    ] ++ modules;
  };

  layoutModules = layout: [
    (repo + "/nix/modules")
    "${disko}/module.nix"
    (repo + "/nix/disko/${layout}.nix")
  ];

  # nixos-images' kexec-installer module without its imports (they are nixpkgs' netboot
  # modules): its own options and config, restore-network included, are the real ones.
  kexecInstallerModule = import "${nixosImages}/nix/kexec-installer/module.nix";
  kexecInstaller = lib.setFunctionArgs
    (args: builtins.removeAttrs (kexecInstallerModule args) [ "imports" ])
    (lib.functionArgs kexecInstallerModule);
in
{
  inherit lib repo nixosImages;
  pkgs = import ./pkgs.nix { inherit lib; system = "x86_64-linux"; };
  helpers = import (repo + "/nix/lib");
  sampleFile = repo + "/nix/tests/facts-sample.json";
  # The sample as stage 2 writes it: with the `install` record, whose `network` is what the
  # agent renders for the sample (tests/nix/eval/network-script.sh compares the two).
  installFile = repo + "/nix/tests/install-sample.json";

  # host { system, layout, modules }: a configuration the way nixosConfigurations builds it.
  host = { system, layout, modules ? [ ] }: evalFor system (layoutModules layout ++ modules);

  # What flake.nix's installerFor imports, as far as it evaluates without nixpkgs' own modules:
  # the real kexec-installer (less its imports) and its serial, networkd and
  # restore-remote-access modules, plus the restated netboot profile (./netboot-profile.nix).
  installer = system: evalFor system [
    kexecInstaller
    "${nixosImages}/nix/serial.nix"
    "${nixosImages}/nix/networkd.nix"
    "${nixosImages}/nix/restore-remote-access.nix"
    # nixpkgs' netboot.nix (imported by kexec-installer) boots without a boot loader.
    { boot.loader.grub.enable = false; }
    # What nixpkgs' netboot profile and nixos-images' installer.nix set that lean.nix overrides.
    ./netboot-profile.nix
    (repo + "/nix/installer")
  ];

  # The module stage 2 generates (src/install/compose.rs), with the facts.json it was
  # generated with: on a host with nixos-lift's modules (withModules), or with only disko and
  # a layout of its own (here disk-basic without the facts module).
  wrapped = { system, withModules }:
    evalFor system ((if withModules then layoutModules "basic" else [ "${disko}/module.nix" (repo + "/nix/disko/basic.nix") ]) ++ [
      (import "${wrapper}/nixos-lift-facts.nix" { diskNames = [ "main" ]; })
    ]);
}
