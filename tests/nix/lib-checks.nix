# Unit checks of nix/lib that need no facts file: `nix eval --file tests/nix/lib-checks.nix`
# prints true or fails with the names of the checks that did not hold.
let
  h = import ../../nix/lib;

  # What lvcreate does with disko's sizes, in priority order: `N%VG` takes N % of the whole
  # group, `N%FREE` N % of what is still free (both rounded down to whole extents).
  simulate = extents: lvs:
    let
      ordered = builtins.sort (a: b: a.priority < b.priority)
        (map (name: lvs.${name} // { inherit name; }) (builtins.attrNames lvs));
      step = acc: lv:
        let
          vg = builtins.match "([0-9]+)%VG" lv.size;
          free = builtins.match "([0-9]+)%FREE" lv.size;
          pct = builtins.fromJSON (builtins.head (if vg != null then vg else free));
          base = if vg != null then extents else acc.free;
          got = base * pct / 100;
        in
        { free = acc.free - got; sizes = acc.sizes // { ${lv.name} = got; }; };
    in
    (builtins.foldl' step { free = extents; sizes = { }; } ordered).sizes;

  default = [
    { name = "root"; percent = 70; }
    { name = "var"; percent = 20; }
    { name = "home"; percent = 10; }
  ];
  partial = [
    { name = "root"; percent = 60; }
    { name = "var"; percent = 25; }
  ];
  fails = x: !(builtins.tryEval (builtins.deepSeq x x)).success;

  x86Params = [ "console=tty0" "console=ttyS0,115200" "nouveau.modeset=0" "zswap.enabled=1" ];
  armParams = [ "console=tty0" "console=ttyAMA0,115200" "console=ttyS0,115200" ];
  m = h.manifest {
    name = "nixos-lift-installer";
    system = "x86_64-linux";
    nixosRelease = "26.05";
    agentVersion = "0.1.0";
    init = "/nix/store/xxx-nixos-system/init";
    kernelParams = x86Params;
  };

  checks = {
    lvmSizes = h.lvmSizes default == {
      root = { size = "70%VG"; priority = 100; };
      var = { size = "20%VG"; priority = 101; };
      home = { size = "100%FREE"; priority = 102; };
    };
    # 70/20/10 of a 2559-extent group (10 GiB less the boot partitions, 4 MiB extents).
    lvmSharesOfWholeGroup = simulate 2559 (h.lvmSizes default) == { root = 1791; var = 511; home = 257; };
    lvmPartialLeavesFree = simulate 1000 (h.lvmSizes partial) == { root = 600; var = 250; };
    lvmOverfullRefused = fails (h.lvmSizes (default ++ [{ name = "x"; percent = 1; }]));
    lvmEmptyRefused = fails (h.lvmSizes [ ]);
    lvmZeroRefused = fails (h.lvmSizes [{ name = "x"; percent = 0; }]);
    # The bug this replaces: plain "N%" is N % of FREE, so order changes the result.
    naivePercentDrifts = simulate 1000
      {
        var = { size = "20%FREE"; priority = 1; };
        root = { size = "70%FREE"; priority = 2; };
        home = { size = "100%FREE"; priority = 3; };
      } == { var = 200; root = 560; home = 240; };

    serialLastX86 = h.serialConsoleLast x86Params;
    serialLastArm = h.serialConsoleLast armParams;
    serialFirstIsWrong = !h.serialConsoleLast [ "console=ttyS0,115200" "console=tty0" ];
    noConsole = !h.serialConsoleLast [ "quiet" ];
    consoles = h.consoles armParams == [ "tty0" "ttyAMA0,115200" "ttyS0,115200" ];

    azureMac = h.normalizeMac "000D3A047598" == "00:0d:3a:04:75:98";
    plainMac = h.normalizeMac "2A:35:8C:91:4E:07" == "2a:35:8c:91:4e:07";

    manifestCmdline = m.cmdline == "init=/nix/store/xxx-nixos-system/init console=tty0 console=ttyS0,115200 nouveau.modeset=0 zswap.enabled=1";
    manifestPaths = [ m.kernel m.initrd m.kexec ] == [ "kexec/bzImage" "kexec/initrd" "kexec/kexec" ];
    manifestHandoff = m.handoff == { initrd_dir = h.contract.initrdDir; stage2_dir = h.contract.stage2Dir; };

    wrongFactsVersion = fails (h.checkFacts { version = 99; });

    # Stage 2's `install` record wins, so its generated module and the facts module agree.
    installWins =
      let
        facts = {
          version = 1;
          host = { arch = "x86_64"; firmware = "bios"; };
          disks = [{ name = "vda"; path = "/dev/vda"; by_id = [ ]; holds_root = true; removable = false; read_only = false; }];
          network = { interfaces = [ ]; routes = [ ]; dns = [ ]; };
          cloud = { provider = "hetzner"; hostname = "from-metadata"; ssh_keys = [ "ssh-ed25519 AAAA metadata" ]; network = [ ]; };
          install = {
            hostname = "from-config";
            disk_device = "/dev/disk/by-id/virtio-root";
            disk_path = "/dev/vda";
            authorized_keys = [ "ssh-ed25519 AAAA config" "ssh-ed25519 AAAA metadata" ];
          };
        };
        d = h.fromFacts facts;
      in
      d.hostName == "from-config"
      && d.disk == { device = "/dev/disk/by-id/virtio-root"; path = "/dev/vda"; }
      && d.sshKeys == facts.install.authorized_keys
      && h.hostName (builtins.removeAttrs facts [ "install" ]) == "from-metadata";
  };
  failed = builtins.filter (n: !checks.${n}) (builtins.attrNames checks);
in
if failed == [ ] then true else throw "nix/lib checks failed: ${builtins.concatStringsSep ", " failed}"
