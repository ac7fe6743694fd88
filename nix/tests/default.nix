# `nix flake check`: module evaluation checks for every system, and on x86_64 the VM test of
# the installer. These need nixpkgs, so they run only where Nix has network (README).
{ pkgs, self }:
let
  inherit (pkgs) lib;
  system = pkgs.stdenv.hostPlatform.system;
  arch = lib.head (lib.splitString "-" system);
  helpers = self.lib;
  # facts.json as stage 2 writes it: the sample with its `install` record, whose `network` is
  # the agent's rendering of the sample (tests/nix/eval/network-script.sh compares them).
  installed = lib.importJSON ./facts-sample.json // { install = lib.importJSON ./install-sample.json; };
  sampleFile = builtins.toFile "facts.json" (builtins.toJSON installed);
  sample = helpers.fromFacts (helpers.checkFacts installed);
  planned = lib.filterAttrs (n: _: lib.hasPrefix "10-nixos-lift-" n);

  # Fail evaluation, naming every expectation that does not hold.
  expect = name: checks:
    let failed = lib.attrNames (lib.filterAttrs (_: ok: !ok) checks);
    in
    if failed == [ ] then pkgs.runCommand "eval-${name}" { } "touch $out"
    else throw "nixos-lift eval check ${name}: ${lib.concatStringsSep ", " failed}";

  evaluates = config: builtins.isString (builtins.unsafeDiscardStringContext config.system.build.toplevel.drvPath);

  withFacts = name: (self.nixosConfigurations.${name}.extendModules {
    modules = [{ nixos-lift.factsFile = sampleFile; }];
  }).config;

  diskChecks = name:
    let
      config = withFacts name;
      parts = config.disko.devices.disk.main.content.partitions;
      bios = pkgs.stdenv.hostPlatform.isx86;
    in
    {
      toplevel = evaluates config;
      device = config.disko.devices.disk.main.device == sample.disk.device;
      esp = parts.ESP.size == "512M" && parts.ESP.type == "EF00";
      biosBoot = if bios then parts.bios.size == "1M" && parts.bios.type == "EF02" else !(parts ? bios);
      grubRemovable = config.boot.loader.grub.efiInstallAsRemovable && !config.boot.loader.efi.canTouchEfiVariables;
      grubDevice = if bios then config.boot.loader.grub.devices == [ sample.disk.device ] else config.boot.loader.grub.devices == [ "nodev" ];
      hostName = config.networking.hostName == sample.hostName;
      rootKeys = config.users.users.root.openssh.authorizedKeys.keys == sample.sshKeys;
      # The agent's units, unchanged (the keys it wrote compare whole).
      networks = sample.networks != { }
        && lib.attrNames (planned config.systemd.network.networks) == lib.attrNames sample.networks
        && lib.all (n: lib.getAttrs (lib.attrNames sample.networks.${n}) config.systemd.network.networks.${n} == sample.networks.${n})
        (lib.attrNames sample.networks);
      nameservers = config.networking.nameservers == sample.nameservers;
      serialLast = helpers.serialConsoleLast config.boot.kernelParams;
      sshKeyOnly = !config.services.openssh.settings.PasswordAuthentication;
    };

  lvmChecks = name:
    let lvs = (withFacts name).disko.devices.lvm_vg.pool.lvs;
    in {
      root = lvs.root.size == "70%VG";
      var = lvs.var.size == "20%VG";
      home = lvs.home.size == "100%FREE";
      order = lvs.root.priority < lvs.var.priority && lvs.var.priority < lvs.home.priority;
    };

  installer = self.packages.${system}.installer;
in
{
  "eval-cloud-${arch}" = expect "cloud-${arch}" (diskChecks "cloud-${arch}");
  "eval-cloud-lvm-${arch}" = expect "cloud-lvm-${arch}" (diskChecks "cloud-lvm-${arch}" // lvmChecks "cloud-lvm-${arch}");
  "eval-cloud-${arch}-without-facts" = expect "cloud-${arch}-without-facts" {
    toplevel = evaluates self.nixosConfigurations."cloud-${arch}".config;
    noDisk = self.nixosConfigurations."cloud-${arch}".config.nixos-lift.disk.device == helpers.unsetDisk;
    noPlannedNetwork = planned self.nixosConfigurations."cloud-${arch}".config.systemd.network.networks == { };
  };
  "eval-installer-${arch}" = expect "installer-${arch}" {
    serialLast = helpers.serialConsoleLast installer.manifest.kernel_params;
    init = lib.hasPrefix "init=/nix/store/" installer.manifest.cmdline;
    stage2Dir = installer.manifest.handoff.stage2_dir == helpers.contract.stage2Dir;
  };
} // lib.optionalAttrs (system == "x86_64-linux") {
  installer-vm = import ./installer-vm.nix { inherit pkgs self; };
}
