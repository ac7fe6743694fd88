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

  # Observed facts with a static address, a static route and a loopback resolver, as
  # `nixos-lift detect` writes them (no `install`).
  detected = {
    version = 1;
    host = { arch = "x86_64"; firmware = "bios"; };
    disks = [ ];
    network = {
      interfaces = [{
        name = "eth0";
        mac = "2a:35:8c:91:4e:07";
        driver = "virtio_net";
        physical = true;
        link_type = "ether";
        mtu = 9000;
        addresses = [{ family = "inet"; address = "203.0.113.17"; prefix_len = 20; scope = "global"; dynamic = false; }];
      }];
      routes = [{ family = "inet"; dst = "default"; gateway = "203.0.113.1"; gateway_family = null; dev = "eth0"; onlink = false; metric = null; protocol = "static"; }];
      dns = [ "127.0.0.53" "192.0.2.53" ];
    };
    cloud = null;
  };
  # facts.json's `install.network` in the shape the agent writes it (the contract's example).
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

    # The network is Rust's plan (src/plan/networkd.rs), passed through unchanged; facts
    # without it (`nixos-lift detect`) give nothing, whatever the stock image had.
    networkPassedThrough =
      let d = h.fromFacts (detected // { install.network = network; });
      in d.networks == network.networks && d.nameservers == network.nameservers && d.search == network.search;
    noPlanNoNetwork =
      let d = h.fromFacts detected;
      in d.networks == { } && d.nameservers == [ ] && d.search == [ ];
  };
  failed = builtins.filter (n: !checks.${n}) (builtins.attrNames checks);
in
if failed == [ ] then true else throw "nix/lib checks failed: ${builtins.concatStringsSep ", " failed}"
