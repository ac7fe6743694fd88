# The checks tests/suite/50-nix.sh runs on ./default.nix's evaluations (real nixpkgs lib, real
# disko and nixos-images modules, stand-in NixOS options). Result: { <case> = [ failed checks ]; }
# plus `counts`; the suite fails unless every list is empty. A check that throws counts as failed.
{ nixpkgsLib, disko, nixosImages, wrapper ? null }:
let
  h = import ./. { inherit nixpkgsLib disko nixosImages wrapper; };
  inherit (h) lib helpers sampleFile;
  inherit (lib) all any attrNames attrValues elem filter hasInfix hasPrefix optional;

  # Names of the checks that are false or throw.
  failing = checks: attrNames (lib.filterAttrs
    (_: ok: let r = builtins.tryEval (builtins.deepSeq ok ok); in !(r.success && r.value == true))
    checks);

  failedAssertions = config: map (a: a.message) (filter (a: !a.assertion) config.assertions);

  # Whitespace and line continuations collapsed, so script text can be matched as one line.
  flat = text: lib.concatStringsSep " " (filter (s: builtins.isString s && s != "") (builtins.split "[[:space:]\\\\]+" text));

  sample = helpers.readFacts sampleFile;
  # What stage 2 writes: the sample with its `install` record (and so the network plan).
  installed = sample // { install = lib.importJSON h.installFile; };
  installedFile = builtins.toFile "facts.json" (builtins.toJSON installed);
  want = helpers.fromFacts installed;

  # The networkd units the agent planned (src/plan/networkd.rs names them), by name.
  plannedUnits = lib.filterAttrs (n: _: hasPrefix "10-nixos-lift-" n);
  # Each rendered unit is in the configuration with exactly the rendered values: the keys the
  # agent wrote compare whole (the stand-in options add their defaults beside them).
  passedThrough = rendered: networks:
    attrNames (plannedUnits networks) == attrNames rendered
    && all (n: lib.getAttrs (attrNames rendered.${n}) networks.${n} == rendered.${n}) (attrNames rendered);

  systems = [ "x86_64-linux" "aarch64-linux" ];
  layouts = [ "basic" "lvm" ];

  hostChecks = { system, layout, withFacts }:
    let
      x86 = system == "x86_64-linux";
      c = (h.host {
        inherit system layout;
        modules = optional withFacts { nixos-lift.factsFile = installedFile; };
      }).config;
      device = if withFacts then want.disk.device else helpers.unsetDisk;
      parts = c.disko.devices.disk.main.content.partitions;
      grub = c.boot.loader.grub;
      script = flat c.disko.devices._create;
      has = s: hasInfix s script;
      # disko numbers partitions in priority order: 1 bios (x86 only), then ESP, then root.
      esp = if x86 then "2" else "1";
      rootPart = if x86 then "3" else "2";
      root = c.fileSystems."/";
      modules = c.boot.initrd.availableKernelModules;
      networks = c.systemd.network.networks;
    in
    {
      assertionsHold = failedAssertions c == [ ];
      diskDevice = c.disko.devices.disk.main.device == device;
      biosBootPartition =
        if x86 then parts.bios.size == "1M" && parts.bios.type == "EF02" && parts.bios.priority < parts.ESP.priority
        else !(parts ? bios);
      espPartition = parts.ESP.size == "512M" && parts.ESP.type == "EF00"
      && c.fileSystems."/boot".fsType == "vfat" && c.fileSystems."/boot".options == [ "umask=0077" ];
      grubRemovableEfi = grub.enable && grub.efiSupport && grub.efiInstallAsRemovable && !c.boot.loader.efi.canTouchEfiVariables;
      # disko adds the disk for the EF02 partition; aarch64 installs EFI only.
      grubDevices = grub.devices == (if x86 then [ device ] else [ "nodev" ]);
      serialConsoleLast = helpers.serialConsoleLast c.boot.kernelParams;
      keyOnlySsh = c.services.openssh.enable && !c.services.openssh.settings.PasswordAuthentication
      && !c.services.openssh.settings.KbdInteractiveAuthentication;
      # nixpkgs' own catch-all DHCP network matches `Kind = "!*"` too: veth, bridges and
      # other virtual interfaces are Type=ether but have a kind.
      catchAllSkipsVirtualInterfaces = networks."99-nixos-lift-ethernet".matchConfig == { Type = "ether"; Kind = "!*"; };
      networkdOnly = c.networking.useNetworkd && c.systemd.network.enable && !c.networking.useDHCP;
      # Azure runs arm64 VMs on Hyper-V too; Xen is x86_64-only.
      hypervDriversInInitrd = all (m: elem m modules) [ "hv_vmbus" "hv_storvsc" "hv_netvsc" ];
      xenDriversOnlyOnX86 = elem "xen_blkfront" modules == x86;
      virtioAndNvmeInInitrd = all (m: elem m modules) [ "virtio_blk" "virtio_scsi" "nvme" ];

      # disko's generated script, as disko itself renders it.
      scriptWipesOnlyTheTarget = has ''sgdisk --clear "${device}"'';
      scriptBiosPartition =
        if x86 then has "--new=1:0:+1M" && has "--typecode=1:EF02"
        else !(has "EF02");
      scriptEsp = has "--new=${esp}:0:+512M" && has "--typecode=${esp}:EF00" && has ''--change-name="${esp}:disk-main-ESP"''
      && has ''mkfs.vfat "/dev/disk/by-partlabel/disk-main-ESP"'';
      scriptRootPartition = has "--new=${rootPart}:0:-0" && has ''--change-name="${rootPart}:disk-main-root"'';
      # Fleet mode finds disko's script through this link in the prebuilt toplevel.
      toplevelLinksDiskoScript = hasInfix "$out/disko-script" c.system.systemBuilderCommands;
    }
    // lib.optionalAttrs (layout == "basic") {
      rootFilesystem = root.device == "/dev/disk/by-partlabel/disk-main-root" && root.fsType == "ext4";
      scriptRootMkfs = has ''mkfs.ext4 "/dev/disk/by-partlabel/disk-main-root"'';
      rootGrows = c.boot.growPartition && root.autoResize;
    }
    // lib.optionalAttrs (layout == "lvm") (
      let grow = c.systemd.services.nixos-lift-grow-pv.script;
      in {
        rootFilesystem = root.device == "/dev/pool/root" && root.fsType == "ext4"
        && c.fileSystems."/var".device == "/dev/pool/var" && c.fileSystems."/home".device == "/dev/pool/home";
        lvmInInitrd = c.boot.initrd.services.lvm.enable;
        scriptPhysicalVolume = has ''pvcreate "/dev/disk/by-partlabel/disk-main-root"'' && has ''vgcreate "pool"'';
        # Shares of the whole group, created root, var, home (nix/lib lvmSizes).
        scriptLogicalVolumes = builtins.match
          ''.*lvcreate --yes -l 70%VG -n "root".*lvcreate --yes -l 20%VG -n "var".*lvcreate --yes -l 100%FREE -n "home".*''
          script != null;
        # The grow service finds the PV by the label disko gives its partition.
        growPvFindsThePartition = hasInfix "/dev/disk/by-partlabel/disk-main-root" grow;
      }
    )
    // (if withFacts then {
      hostName = c.networking.hostName == want.hostName;
      rootKeys = c.users.users.root.openssh.authorizedKeys.keys == want.sshKeys && want.sshKeys != [ ];
      nameservers = c.networking.nameservers == want.nameservers && want.nameservers != [ ];
      search = c.networking.search == want.search;
      factsNetworks = want.networks != { } && passedThrough want.networks networks;
      provider = c.nixos-lift.cloud.provider == want.provider;
    } else {
      noHostName = c.networking.hostName == "nixos";
      noPlannedNetwork = plannedUnits networks == { } && c.networking.nameservers == [ ];
      noKeys = lib.attrByPath [ "root" "openssh" "authorizedKeys" "keys" ] [ ] c.users.users == [ ];
      warnsAboutTheDisk = any (hasInfix "no target disk") c.warnings;
    });

  cases = lib.listToAttrs (lib.concatMap
    (system: lib.concatMap
      (layout: map
        (withFacts: {
          name = "${layout}-${system}-${if withFacts then "facts" else "no-facts"}";
          value = failing (hostChecks { inherit system layout withFacts; });
        })
        [ true false ])
      layouts)
    systems);

  # Every root filesystem the layouts offer is grown to the disk: nixpkgs' autoResize only
  # knows ext*, systemd-growfs (x-systemd.growfs) also XFS and btrfs.
  rootFormats = lib.genAttrs [ "ext4" "xfs" "btrfs" ] (format:
    let
      c = (h.host { system = "x86_64-linux"; layout = "basic"; modules = [{ nixos-lift.disk.rootFormat = format; }]; }).config;
      root = c.fileSystems."/";
    in
    failing {
      fsType = root.fsType == format;
      grows = c.boot.growPartition && (root.autoResize || elem "x-systemd.growfs" root.options);
      autoResizeOnlyOnExt = root.autoResize -> lib.hasPrefix "ext" root.fsType;
    });

  # A user's own value for a baseline setting wins over the baseline (the template promises
  # it): each override evaluates and takes effect.
  overrides =
    let
      override = system: module: (h.host { inherit system; layout = "basic"; modules = [{ nixos-lift.factsFile = installedFile; } module]; }).config;
      unit = "10-nixos-lift-2a358c914e07";
      wins = system: module: get: value:
        let c = override system module; in failedAssertions c == [ ] && get c == value;
    in
    failing {
      passwordAuthentication = wins "x86_64-linux" { services.openssh.settings.PasswordAuthentication = true; }
        (c: c.services.openssh.settings.PasswordAuthentication)
        true;
      kbdInteractiveAuthentication = wins "x86_64-linux" { services.openssh.settings.KbdInteractiveAuthentication = true; }
        (c: c.services.openssh.settings.KbdInteractiveAuthentication)
        true;
      useDHCP = wins "x86_64-linux" { networking.useDHCP = true; } (c: c.networking.useDHCP) true;
      efiNvramEntries = wins "x86_64-linux"
        { boot.loader.grub.efiInstallAsRemovable = false; boot.loader.efi.canTouchEfiVariables = true; }
        (c: [ c.boot.loader.grub.efiInstallAsRemovable c.boot.loader.efi.canTouchEfiVariables ]) [ false true ];
      biosOnlyGrub = wins "x86_64-linux"
        { boot.loader.grub.efiSupport = false; boot.loader.grub.efiInstallAsRemovable = false; }
        (c: c.boot.loader.grub.efiSupport)
        false;
      aarch64GrubDevice = wins "aarch64-linux" { boot.loader.grub.device = "/dev/disk/by-id/own"; }
        (c: c.boot.loader.grub.devices) [ "/dev/disk/by-id/own" ];
      hostName = wins "x86_64-linux" { networking.hostName = "own"; } (c: c.networking.hostName) "own";
      # A unit of one's own under the planned name replaces the planned one whole.
      ownNetworkUnit = wins "x86_64-linux" { systemd.network.networks.${unit}.networkConfig.DHCP = "yes"; }
        (c: with c.systemd.network.networks.${unit}; [ networkConfig address ]) [{ DHCP = "yes"; } [ ]];
      nameservers = wins "x86_64-linux" { networking.nameservers = [ "192.0.2.1" ]; } (c: c.networking.nameservers) [ "192.0.2.1" ];
    };

  # A system prebuilt for fleet mode reads root's keys and the host name from the files stage
  # 2 writes (src/install/machine.rs), also when it has facts; without the option it does not.
  fleet =
    let
      eval = modules: (h.host { system = "x86_64-linux"; layout = "basic"; inherit modules; }).config;
      on = { nixos-lift.fleet.enable = true; };
      keysFile = "${helpers.contract.fleetAuthorizedKeysDir}/%u";
      reads = c: failedAssertions c == [ ] && elem keysFile c.services.openssh.authorizedKeysFiles
        && c.networking.hostName == "";
    in
    failing {
      readsTheDiskFiles = reads (eval [ on ]);
      withFactsToo = reads (eval [ on { nixos-lift.factsFile = sampleFile; } ]);
      ownHostNameWins = (eval [ on { networking.hostName = "own"; } ]).networking.hostName == "own";
      offByDefault = let c = eval [ ]; in !(elem keysFile c.services.openssh.authorizedKeysFiles)
        && c.networking.hostName == "nixos";
    };

  # Loopback resolvers (systemd-resolved's stub, dnsmasq) describe the stock image, not a
  # server the installed system can use. The agent's plan leaves them out; the modules take
  # the plan's resolvers as they are and never the observed ones, which only the facts of
  # `nixos-lift detect` (no plan) would offer.
  loopbackResolvers =
    let
      observed = f: lib.recursiveUpdate f { network.dns = [ "127.0.0.53" ] ++ sample.network.dns ++ [ "127.0.1.1" ]; };
      eval = facts: (h.host { system = "x86_64-linux"; layout = "basic"; modules = [{ nixos-lift.facts = facts; }]; }).config;
      planned = eval (observed installed);
      detected = eval (observed sample);
    in
    failing {
      planOnly = planned.networking.nameservers == installed.install.network.nameservers;
      noneWithoutPlan = detected.networking.nameservers == [ ] && plannedUnits detected.systemd.network.networks == { };
    };

  # The contract's example plan (every key the agent may write: an MTU, an IPv4 default via an
  # IPv6 gateway on-link, an Azure VF left unmanaged, search domains) reaches the configuration
  # unchanged, through nixpkgs' types for these options.
  networkPlan =
    let
      network = {
        networks = {
          "10-nixos-lift-2a358c914e07" = {
            matchConfig.MACAddress = "2a:35:8c:91:4e:07";
            linkConfig.MTUBytes = "9000";
            networkConfig = { DHCP = "yes"; IPv6AcceptRA = true; };
            address = [ "203.0.113.17/20" "2001:db8:800::1a/64" ];
            routes = [
              { Gateway = "203.0.113.1"; }
              { Gateway = "2001:db8:800::1"; Metric = 1024; }
              { Destination = "0.0.0.0/0"; Gateway = "fe80::1"; GatewayOnLink = true; }
            ];
          };
          "10-nixos-lift-000d3a047598-mlx5_core" = {
            matchConfig = { MACAddress = "00:0d:3a:04:75:98"; Driver = "mlx5_core"; };
            linkConfig.Unmanaged = true;
          };
        };
        nameservers = [ "192.0.2.53" "2001:db8:10::53" ];
        search = [ "corp.example" ];
      };
      c = (h.host {
        system = "x86_64-linux";
        layout = "basic";
        modules = [{ nixos-lift.facts = installed // { install = installed.install // { inherit network; }; }; }];
      }).config;
    in
    failing {
      assertionsHold = failedAssertions c == [ ];
      units = passedThrough network.networks c.systemd.network.networks;
      nameservers = c.networking.nameservers == network.nameservers;
      search = c.networking.search == network.search;
      catchAllKept = c.systemd.network.networks ? "99-nixos-lift-ethernet";
    };

  # The day-2 pull (nix/modules/update.nix): idle without `install.update` in the facts; with
  # it, a oneshot unit running nix/modules/update.sh on a timer, the token include in
  # nix.conf and the install's caches, and a webhook report with `stage: "update"`.
  update =
    let
      settings = {
        flake = "git+https://git.example/fleet.git";
        attr = "web";
        interval = "6h";
        reboot = false;
        system_url = null;
        substituters = [ "https://cache.example" "https://second.example" ];
        trusted_public_keys = [ "cache.example-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=" ];
        webhook_url = "https://hooks.example/events";
        nix_conf = helpers.contract.updateNixConf;
        webhook_token_file = helpers.contract.updateWebhookToken;
      };
      withUpdate = extra: (h.host {
        system = "x86_64-linux";
        layout = "basic";
        modules = [{ nixos-lift.facts = sample // { install = { disk_device = want.disk.device; disk_path = want.disk.path; update = settings // extra; }; }; }];
      }).config;
      off = (h.host { system = "x86_64-linux"; layout = "basic"; modules = [{ nixos-lift.factsFile = sampleFile; }]; }).config;
      c = withUpdate { };
      svc = c.systemd.services.nixos-lift-update;
      env = svc.environment;
      timer = c.systemd.timers.nixos-lift-update;
      script = c.nixos-lift.update.script;
      fleet = (withUpdate { system_url = "https://fleet.example/web.path"; }).systemd.services.nixos-lift-update.environment;
    in
    failing {
      assertionsHold = failedAssertions c == [ ];
      idleWithoutFacts = !(off.systemd.services ? nixos-lift-update) && !(off.systemd.timers ? nixos-lift-update)
        && off.nix.extraOptions == "" && off.nix.settings.substituters == [ ];
      oneshotUnit = svc.serviceConfig.Type == "oneshot" && svc.serviceConfig.ExecStart == lib.getExe script
        && elem "network-online.target" svc.after && elem "network-online.target" svc.wants;
      # The run switches the system that holds its own unit.
      notRestartedBySwitch = !svc.restartIfChanged;
      sameFlake = env.NIXOS_LIFT_UPDATE_FLAKE == settings.flake && env.NIXOS_LIFT_UPDATE_ATTR == settings.attr;
      switchNotReboot = env.NIXOS_LIFT_UPDATE_REBOOT == "0"
        && (withUpdate { reboot = true; }).systemd.services.nixos-lift-update.environment.NIXOS_LIFT_UPDATE_REBOOT == "1";
      timer = timer.wantedBy == [ "timers.target" ] && timer.timerConfig.OnUnitActiveSec == "6h";
      intervalIsASpan = !(builtins.tryEval (builtins.deepSeq (withUpdate { interval = "1d;x"; }).systemd.timers true)).success;
      tokenInclude = c.nix.extraOptions == "!include ${helpers.contract.updateNixConf}";
      sameCaches = c.nix.settings.substituters == settings.substituters
        && c.nix.settings.trusted-public-keys == settings.trusted_public_keys;
      fleetFromFirstCache = fleet.NIXOS_LIFT_UPDATE_SYSTEM_URL == "https://fleet.example/web.path"
        && fleet.NIXOS_LIFT_UPDATE_SUBSTITUTER == "https://cache.example";
      reportToWebhook = env.NIXOS_LIFT_UPDATE_WEBHOOK_URL == settings.webhook_url
        && env.NIXOS_LIFT_UPDATE_TOKEN_FILE == helpers.contract.updateWebhookToken;
      reportSaysUpdate = script.text == builtins.readFile (h.repo + "/nix/modules/update.sh")
        && hasInfix ''stage: "update"'' script.text;
      scriptTools = all (p: elem p script.runtimeInputs) [ c.nix.package h.pkgs.curl h.pkgs.jq ];
    };

  # Ordering of the installer's units, with the upstream units they meet as systemd ships them
  # (units/*.service.in of systemd 257; restore-network is nixos-images' real definition). A
  # unit without DefaultDependencies=no is ordered after basic.target, which is after
  # sysinit.target.
  upstreamUnits = {
    "systemd-resolved.service" = { defaultDependencies = false; after = [ ]; before = [ "sysinit.target" "network.target" "nss-lookup.target" ]; };
    "systemd-networkd.service" = { defaultDependencies = false; after = [ "network-pre.target" ]; before = [ "network.target" "multi-user.target" ]; };
    "sysinit.target" = { defaultDependencies = false; after = [ ]; before = [ ]; };
    "basic.target" = { defaultDependencies = false; after = [ "sysinit.target" ]; before = [ ]; };
    "network-pre.target" = { defaultDependencies = false; after = [ ]; before = [ ]; };
    "network.target" = { defaultDependencies = false; after = [ "network-pre.target" ]; before = [ ]; };
    "network-online.target" = { defaultDependencies = false; after = [ "network.target" ]; before = [ ]; };
  };
  # Units that must start before `unit`, directly.
  startsAfter = units: unit:
    let
      u = units.${unit} or { defaultDependencies = false; after = [ ]; before = [ ]; };
      implicit = lib.optionals u.defaultDependencies [ "sysinit.target" "basic.target" ];
      inverse = attrNames (lib.filterAttrs (_: o: elem unit o.before) units);
    in
    lib.unique (u.after ++ implicit ++ inverse);
  # Units that take part in an ordering cycle: systemd breaks such a cycle by dropping a job.
  orderingCycles = units: filter
    (unit: elem unit (map (x: x.key) (builtins.genericClosure {
      startSet = map (key: { inherit key; }) (startsAfter units unit);
      operator = x: map (key: { inherit key; }) (startsAfter units x.key);
    })))
    (attrNames units);

  installerChecks = system:
    let
      c = (h.installer system).config;
      m = c.system.build.nixosLiftInstaller.manifest;
      ours = lib.mapAttrs'
        (name: s: lib.nameValuePair "${name}.service" {
          defaultDependencies = (s.unitConfig.DefaultDependencies or true) != false;
          inherit (s) after before;
        })
        c.systemd.services;
      units = upstreamUnits // ours;
      net = c.systemd.services.nixos-lift-network;
      install = c.systemd.services.nixos-lift-install;
    in
    failing {
      assertionsHold = failedAssertions c == [ ];
      manifestSystem = m.system == system && m.name == "nixos-lift-installer";
      manifestSerialLast = helpers.serialConsoleLast m.kernel_params;
      manifestZswapOff = lib.last m.kernel_params == "zswap.enabled=0";
      manifestInit = lib.hasPrefix "init=/nix/store/" m.cmdline && lib.hasSuffix "/init" m.init;
      manifestHandoff = m.handoff == { initrd_dir = helpers.contract.initrdDir; stage2_dir = helpers.contract.stage2Dir; };
      manifestFiles = [ m.kernel m.initrd m.kexec ] == [ "kexec/bzImage" "kexec/initrd" "kexec/kexec" ];
      noOrderingCycle = orderingCycles units == [ ];
      # The resolvers are written while systemd-resolved runs, so the script must make it
      # re-read them (checked by running the script: tests/nix/eval/network-script.sh).
      networkAfterResolved = elem "systemd-resolved.service" (startsAfter units "nixos-lift-network.service");
      networkBeforeNetworkd = elem "systemd-networkd.service" net.before;
      # nix/installer/lean.nix: nixos-lift-network writes the networkd units instead of
      # nixos-images' Python restore-network (tests/nix/eval/network-script.sh runs it).
      pythonRestoreOff = !c.systemd.services.restore-network.enable && !(elem "restore-network.service" (net.after ++ install.after));
      documentationOff = with c.documentation; !(enable || man.enable || info.enable || doc.enable || nixos.enable);
      zfsAndBcachefsOff = c.boot.supportedFilesystems == { zfs = false; bcachefs = false; };
      # Only the clouds' drivers and netboot's squashfs/overlay: nixpkgs' all-hardware list,
      # default modules and firmware off (./netboot-profile.nix restates what turns them on).
      onlyCloudDrivers = c.boot.initrd.availableKernelModules
        == lib.sort lib.lessThan ([ "squashfs" "overlay" ] ++ import (h.repo + "/nix/lib/cloud-drivers.nix") { x86 = system == "x86_64-linux"; })
        && !c.hardware.enableAllHardware && !c.boot.initrd.includeDefaultModules
        && !c.hardware.enableRedistributableFirmware && !c.networking.wireless.enable;
      # xz with CRC32 (the only check the kernel's xz decoder verifies) around an xz squashfs.
      xzInitrd = c.boot.initrd.compressor == "xz" && c.boot.initrd.compressorArgs != null && elem "--check=crc32" c.boot.initrd.compressorArgs
        && lib.hasPrefix "xz " c.netboot.squashfsCompression;
      # nixos-images' noninteractive imports zfs-minimal.nix by path; lean.nix disables it. With it
      # active, its undeclared options (services.udev, networking.hostId) would fail the evaluation.
      # The budget docs/nix.md states, which checks.<system>.installer-size enforces.
      budgetStated = (import (h.repo + "/nix/installer/budget.nix")).initrdMiB == 200;
      zfsMinimalDisabled =
        let
          z = (h.installer system).extendModules { modules = [{ imports = [ "${h.nixosImages}/nix/zfs-minimal.nix" ]; }]; };
        in
        !(elem "zfs" z.config.boot.kernelModules) && failedAssertions z.config == [ ];
      installAfterNetwork = all (u: elem u install.after) [ "network-online.target" "nixos-lift-network.service" ];
      handoffKeptInInitrd = c.boot.initrd.systemd.services.nixos-lift-handoff.unitConfig.ConditionPathIsDirectory == "/${helpers.contract.initrdDir}";
    };

  installer = lib.genAttrs systems installerChecks;

  # The module stage 2 generates. With the facts module present it leaves host name, keys,
  # networks and resolvers to it, so nothing is set twice (lists would concatenate, and a
  # second unit for one MAC would shadow the first); without it, it sets them itself. Either
  # way the network is the agent's rendering in facts.json, unchanged.
  wrapped = withModules:
    let
      c = (h.wrapped { system = "x86_64-linux"; inherit withModules; }).config;
      facts = builtins.fromJSON (builtins.readFile "${wrapper}/facts.json");
      rendered = facts.install.network;
      keys = c.users.users.root.openssh.authorizedKeys.keys;
      networks = attrValues c.systemd.network.networks;
      macs = lib.concatMap (n: lib.toList (n.matchConfig.MACAddress or [ ])) networks;
      # Counted from the observed interfaces, not from the plan: every physical ethernet NIC
      # (a VF and its synthetic NIC are two) has its unit, and nothing else has one.
      physicalEthernet = filter (i: i.link_type == "ether" && i.physical && i.mac != null && i.mac != "00:00:00:00:00:00")
        facts.network.interfaces;
    in
    failing {
      assertionsHold = failedAssertions c == [ ];
      hostName = c.networking.hostName == facts.install.hostname;
      rootKeysOnce = keys == facts.install.authorized_keys;
      nameserversOnce = c.networking.nameservers == rendered.nameservers && rendered.nameservers != [ ];
      search = c.networking.search == rendered.search;
      oneNetworkPerMac = macs == lib.unique (map lib.toLower macs) && macs != [ ];
      oneUnitPerPhysicalEthernet = physicalEthernet != [ ]
        && lib.length (attrNames (plannedUnits c.systemd.network.networks)) == lib.length physicalEthernet;
      renderedUnits = passedThrough rendered.networks c.systemd.network.networks;
      staticAddressKept = elem "203.0.113.10/20" (lib.concatMap (n: n.address) networks);
      diskDevice = c.disko.devices.disk.main.device == facts.install.disk_device;
      efiRemovable = c.boot.loader.grub.efiInstallAsRemovable;
    };
in
cases // {
  rootFormats = lib.concatLists (lib.mapAttrsToList (f: fails: map (x: "${f}.${x}") fails) rootFormats);
  inherit overrides loopbackResolvers networkPlan fleet update;
  installer-x86_64 = installer.x86_64-linux;
  installer-aarch64 = installer.aarch64-linux;
} // lib.optionalAttrs (wrapper != null) {
  wrapped-facts-module = wrapped true;
  wrapped-own-modules = wrapped false;
}
