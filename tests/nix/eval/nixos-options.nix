# TEST DOUBLE for the NixOS module tree (tests/nix/eval only). The full nixpkgs is not available
# here, so this one file declares the NixOS options that nix/modules, nix/disko, nix/installer,
# disko's module.nix and the generated stage-2 module touch, with the types nixpkgs gives them
# (nixos/modules/...: system/boot/loader/grub, tasks/filesystems, config/users-groups,
# services/networking/ssh/sshd, system/boot/networkd, lib/systemd-unit-options, misc/assertions,
# system/activation/top-level, system/boot/kernel, misc/documentation, hardware/all-hardware,
# hardware/all-firmware, installer/netboot, config/nix, installer/kexec from nixos-images).
# Merging, priorities and conflicts are therefore nixpkgs' own (the real lib), but only for these
# options.
#
# It restates three behaviours of nixpkgs' grub module, marked below, because the checks depend
# on them: `device` feeds `devices`, and two of its assertions. Nothing else of NixOS runs:
# no option outside this list exists, nothing is built, and nixpkgs' other assertions do not run.
{ lib, pkgs, config, ... }:
let
  inherit (lib) mkOption types;
  opt = type: default: mkOption { inherit type default; };
  bool = opt types.bool false;
  strs = opt (types.listOf types.str) [ ];

  # lib/systemd-unit-options.nix: list definitions concatenate, others must be equal.
  unitOption = lib.mkOptionType {
    name = "systemd option";
    merge = loc: defs:
      let defs' = lib.filterOverrides defs;
      in
      if builtins.isList (lib.head defs').value
      then lib.concatMap (def: def.value) defs'
      else lib.mergeEqualOption loc defs';
  };
  unitSection = opt (types.attrsOf unitOption) { };
  unitNames = opt (types.listOf types.str) [ ];
  # lib/systemd-unit-options.nix commonUnitOptions: what every unit kind declares.
  commonUnit = {
    enable = opt types.bool true;
    description = opt types.singleLineStr "";
    wantedBy = unitNames;
    requiredBy = unitNames;
    wants = unitNames;
    requires = unitNames;
    after = unitNames;
    before = unitNames;
    unitConfig = unitSection;
  };
  service = types.submodule {
    options = commonUnit // {
      serviceConfig = unitSection;
      environment = opt (types.attrsOf (types.nullOr (types.oneOf [ types.str types.path types.package ]))) { };
      path = opt (types.listOf (types.oneOf [ types.package types.str ])) [ ];
      script = opt types.lines "";
      restartIfChanged = opt types.bool true;
    };
  };

  # lib/systemd-unit-options.nix (timer units).
  timer = types.submodule {
    options = commonUnit // {
      timerConfig = unitSection;
    };
  };

  network = types.submodule {
    options = {
      enable = opt types.bool true;
      name = opt (types.nullOr types.str) null;
      matchConfig = unitSection;
      networkConfig = unitSection;
      linkConfig = unitSection;
      dhcpV4Config = unitSection;
      address = strs;
      dns = strs;
      routes = opt (types.listOf (types.attrsOf unitOption)) [ ];
    };
  };

  fileSystem = types.submodule ({ name, ... }: {
    options = {
      mountPoint = opt types.str name;
      device = opt (types.nullOr types.nonEmptyStr) null;
      fsType = opt types.nonEmptyStr "auto";
      options = opt (types.nonEmptyListOf types.nonEmptyStr) [ "defaults" ];
      label = opt (types.nullOr types.str) null;
      autoResize = bool;
      autoFormat = bool;
      neededForBoot = bool;
      depends = opt (types.listOf types.nonEmptyStr) [ ];
    };
  });

  # system/boot/kernel.nix: module lists or attribute sets (name = true), read back as a list.
  kernelModules = mkOption {
    type = types.coercedTo (types.listOf types.str) (l: lib.genAttrs l (_: true)) (types.attrsOf types.bool);
    default = { };
    apply = mods: lib.attrNames (lib.filterAttrs (_: v: v) mods);
  };

  kernelParam = types.strMatching ''([^"[:space:]]|"[^"]*")+'';
  grub = config.boot.loader.grub;
in
{
  options = {
    assertions = opt (types.listOf types.unspecified) [ ];
    warnings = strs;

    nixpkgs.hostPlatform = opt types.str pkgs.stdenv.hostPlatform.system;

    system = {
      stateVersion = opt types.str lib.trivial.release;
      nixos.release = opt types.str lib.trivial.release;
      # system/activation/top-level.nix: lines appended to the toplevel's builder.
      systemBuilderCommands = opt types.lines "";
      build = opt (types.submoduleWith { modules = [{ freeformType = types.lazyAttrsOf (types.uniq types.unspecified); }]; }) { };
    };

    boot = {
      kernelParams = opt (types.listOf kernelParam) [ ];
      inherit kernelModules;
      kernelPackages = mkOption { type = types.raw; };
      growPartition = bool;
      supportedFilesystems = opt (types.coercedTo (types.listOf types.str) (lib.flip lib.genAttrs (_: true)) (types.attrsOf types.bool)) { };
      initrd = {
        compressor = opt (types.either types.str (types.functionTo types.str)) "zstd";
        compressorArgs = opt (types.nullOr (types.listOf types.str)) null;
        availableKernelModules = kernelModules;
        inherit kernelModules;
        includeDefaultModules = opt types.bool true;
        services.lvm.enable = bool;
        systemd.enable = bool;
        systemd.services = opt (types.attrsOf service) { };
      };
      loader = {
        timeout = opt (types.nullOr types.int) 5;
        efi.canTouchEfiVariables = bool;
        systemd-boot.enable = bool;
        grub = {
          enable = opt types.bool true;
          device = opt types.str "";
          devices = strs;
          efiSupport = bool;
          efiInstallAsRemovable = bool;
          extraConfig = opt types.lines "";
        };
      };
    };

    # installer/netboot/netboot.nix
    netboot.squashfsCompression = opt types.str "zstd -Xcompression-level 19";
    # misc/documentation.nix
    documentation = {
      enable = opt types.bool true;
      man.enable = opt types.bool true;
      info.enable = opt types.bool true;
      doc.enable = opt types.bool true;
      nixos.enable = opt types.bool true;
    };
    # hardware/all-hardware.nix, hardware/all-firmware.nix
    hardware.enableAllHardware = bool;
    hardware.enableRedistributableFirmware = bool;

    fileSystems = opt (types.attrsOf fileSystem) { };
    swapDevices = opt (types.listOf (types.attrsOf types.anything)) [ ];
    zramSwap = {
      enable = bool;
      algorithm = opt (types.either (types.enum [ "842" "lzo" "lzo-rle" "lz4" "lz4hc" "zstd" ]) types.str) "zstd";
      memoryPercent = opt types.int 50;
    };

    networking = {
      hostName = opt (types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$") "nixos";
      useNetworkd = bool;
      useDHCP = opt types.bool true;
      nameservers = strs;
      search = strs;
      networkmanager.enable = bool;
      wireless.enable = bool;
      firewall = {
        enable = opt types.bool true;
        allowedUDPPorts = opt (types.listOf types.port) [ ];
      };
    };

    systemd = {
      services = opt (types.attrsOf service) { };
      timers = opt (types.attrsOf timer) { };
      packages = opt (types.listOf types.package) [ ];
      network = {
        enable = bool;
        networks = opt (types.attrsOf network) { };
      };
    };

    users.users = opt
      (types.attrsOf (types.submodule {
        options.openssh.authorizedKeys = {
          keys = opt (types.listOf types.singleLineStr) [ ];
          keyFiles = opt (types.listOf types.path) [ ];
        };
      }))
      { };

    services = {
      resolved.enable = bool;
      openssh = {
        enable = bool;
        authorizedKeysFiles = opt (types.listOf types.str) [ ];
        settings = opt
          (types.submodule {
            freeformType = types.attrsOf (types.nullOr (types.oneOf [ types.bool types.int types.str (types.listOf types.str) ]));
            options = {
              PasswordAuthentication = opt types.bool true;
              KbdInteractiveAuthentication = opt types.bool true;
              PermitRootLogin = opt (types.enum [ "yes" "without-password" "prohibit-password" "forced-commands-only" "no" ]) "prohibit-password";
            };
          })
          { };
      };
      amazon-ssm-agent.enable = bool;
      waagent.enable = bool;
      do-agent.enable = bool;
      qemuGuest.enable = bool;
    };
    virtualisation.hypervGuest.enable = bool;

    environment.systemPackages = opt (types.listOf types.package) [ ];
    nix = {
      package = opt types.package pkgs.nix;
      # services/system/nix-daemon.nix and config/nix.nix: free-form settings with these two
      # declared as lists, and extraOptions appended to nix.conf.
      extraOptions = opt types.lines "";
      settings = opt
        (types.submodule {
          freeformType = types.attrsOf (types.oneOf [ types.bool types.int types.str (types.listOf types.str) ]);
          options = {
            substituters = strs;
            trusted-public-keys = strs;
          };
        })
        { };
    };
  };

  config = {
    # What the full NixOS would build; the installer and disko only interpolate their paths.
    system.build.toplevel = pkgs.writeText "nixos-system-standin" "";
    system.build.kexecInstallerTarball = pkgs.writeText "kexec-tarball-standin" "";

    # Restated from nixpkgs' grub module: `device` is shorthand for one entry of `devices`, and
    # the assertions that make a configuration with no boot device, or a removable EFI install
    # that also writes NVRAM, fail to evaluate.
    boot.loader.grub.devices = lib.optional (grub.device != "") grub.device;
    assertions = lib.optionals grub.enable [
      {
        assertion = grub.devices != [ ];
        message = "You must set the option ‘boot.loader.grub.devices’ or 'boot.loader.grub.mirroredBoots' to make the system bootable.";
      }
      {
        assertion = grub.efiInstallAsRemovable -> !config.boot.loader.efi.canTouchEfiVariables;
        message = "If you wish to to use boot.loader.grub.efiInstallAsRemovable, then turn off boot.loader.efi.canTouchEfiVariables";
      }
    ];
  };
}
