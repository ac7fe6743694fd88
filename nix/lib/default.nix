# Plain-Nix helpers: builtins only, no nixpkgs, so tests/suite/50-nix.sh can evaluate them with a
# bare `nix eval` on facts.json files that the Rust agent produced. The NixOS modules under nix/
# call these; nothing else should re-derive the same values.
let
  contract = import ./contract.nix;

  inherit (builtins)
    all
    concatStringsSep
    filter
    foldl'
    head
    isList
    length
    listToAttrs
    map
    match
    replaceStrings
    split
    stringLength
    substring
    toString
    ;

  # The first element of a list, or null for an empty one.
  first = xs: if xs == [ ] then null else head xs;

  # `Option<String>` or `Vec<String>` on the Rust side: the first value either way.
  firstOf = v: if isList v then first v else v;

  upper = [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ];
  lower = [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ];
  toLower = replaceStrings upper lower;
in
rec {
  inherit contract;

  # The disk layouts' device when nothing names the target: no such link ever exists, so disko
  # stops before writing anything, while the configuration still evaluates.
  unsetDisk = "/dev/disk/by-id/nixos-lift-target-disk-unset";

  # Parse a facts.json file and refuse a schema this code was not written for.
  readFacts = path: checkFacts (builtins.fromJSON (builtins.readFile path));

  checkFacts = facts:
    if toString (facts.version or "missing") == contract.factsVersion then facts
    else throw "nixos-lift: facts.json has schema version ${toString (facts.version or "missing")}, these modules read version ${contract.factsVersion}";

  # The Nix system double, e.g. `x86_64-linux`.
  system = facts: "${facts.host.arch}-linux";

  # What stage 2 decided (src/install/compose.rs adds it to the facts.json it writes as
  # `install`): it wins over what the modules would derive, so both agree.
  installed = facts: facts.install or null;

  # The host name stage 2 chose, else a valid single-label name from the cloud's host name,
  # else null.
  hostName = facts:
    let
      raw = if (facts.cloud or null) == null then null else facts.cloud.hostname or null;
      label = if raw == null then null else toLower (head (split "\\." raw));
      valid = label != null && stringLength label <= 63
        && match "[a-z0-9]([a-z0-9-]*[a-z0-9])?" label != null;
    in
    if installed facts != null then (installed facts).hostname
    else if valid then label else null;

  # Root's keys: stage 2's list (config, metadata and the stock image's keys), else the cloud's.
  sshKeys = facts:
    if installed facts != null then (installed facts).authorized_keys
    else if (facts.cloud or null) == null then [ ] else facts.cloud.ssh_keys;

  # The disk the layouts go on: the one stage 2 found again, else the disk that held the stock
  # image's root, else the only writable disk. `device` prefers a /dev/disk/by-id link, because
  # /dev/sdX and nvmeXn1 names can swap between boots.
  targetDisk = facts:
    let
      install = installed facts;
      eligible = filter (d: !d.removable && !d.read_only) facts.disks;
      rooted = filter (d: d.holds_root) facts.disks;
      chosen =
        if rooted != [ ] then head rooted
        else if length eligible == 1 then head eligible
        else null;
      byId = if chosen == null then null else firstOf chosen.by_id;
    in
    if install != null then {
      device = install.disk_device;
      path = install.disk_path;
    }
    else if chosen == null then null else {
      inherit (chosen) path;
      device = if byId != null then byId else chosen.path;
    };

  # The network stage 1 planned and rendered (src/plan/network.rs, src/plan/networkd.rs),
  # passed through unchanged: Rust is the only place that decides it. Facts without an
  # `install` record (`nixos-lift detect`) carry no plan, and the cloud module's DHCP
  # catch-all covers every NIC.
  network = facts: let i = installed facts; in if i == null then { } else i.network or { };

  # `systemd.network.networks`: unit name to NixOS value, exactly as rendered.
  networks = facts: (network facts).networks or { };

  # Resolvers and search domains for the installed system (never a loopback stub).
  nameservers = facts: (network facts).nameservers or [ ];
  search = facts: (network facts).search or [ ];

  # Everything the `facts` module sets, from one facts value.
  fromFacts = facts: {
    system = system facts;
    hostName = hostName facts;
    sshKeys = sshKeys facts;
    disk = targetDisk facts;
    networks = networks facts;
    nameservers = nameservers facts;
    search = search facts;
    firmware = facts.host.firmware;
    provider = if (facts.cloud or null) == null then null else facts.cloud.provider;
  };

  # The `console=` devices of a kernel command line, in order.
  consoles = params: map (p: substring 8 (stringLength p) p)
    (filter (p: match "console=.*" p != null) params);

  # The kernel makes the LAST `console=` /dev/console: the one systemd and stage 2 write to.
  # True when that one is a serial port, so a provider's serial console shows the install.
  serialConsoleLast = params:
    let cs = consoles params;
    in cs != [ ] && match "(ttyS|ttyAMA)[0-9]+(,.*)?" (builtins.elemAt cs (length cs - 1)) != null;

  # LVM sizing. disko runs `lvcreate -l N%FREE` for a size "N%", one volume after another, so
  # each percentage applies to what the previous volumes left: 70%, 20%, 10% in creation order
  # gives 70, 6 and 2.4 percent, and with a "100%" last volume other orders give results such
  # as 56/20/24. `N%VG` is a share of the whole volume group whatever the order, so every volume
  # but the last gets `N%VG`; the last takes `100%FREE` (its share plus rounding leftovers) when
  # the shares add up to 100, and its own `N%VG` otherwise (the rest stays free). Volumes are
  # created in list order (explicit priorities).
  lvmSizes = volumes:
    let
      total = foldl' (acc: v: acc + v.percent) 0 volumes;
      n = length volumes;
      indexed = builtins.genList (i: { inherit i; v = builtins.elemAt volumes i; }) n;
      sizeOf = { i, v }: if i == n - 1 && total == 100 then "100%FREE" else "${toString v.percent}%VG";
    in
    if n == 0 then throw "nixos-lift: the LVM layout needs at least one volume"
    else if !(all (v: v.percent > 0) volumes) then throw "nixos-lift: every LVM volume needs a percent above 0"
    else if total > 100 then throw "nixos-lift: LVM volume percentages add up to ${toString total}, more than 100"
    else
      listToAttrs (map
        (e: {
          name = e.v.name;
          value = { size = sizeOf e; priority = 100 + e.i; };
        })
        indexed);

  # kexec/manifest.json: what stage 1 reads to load the installer. Paths are relative to the
  # tarball's root, like contract.manifestFile itself.
  manifest = { name, system, nixosRelease, agentVersion, init, kernelParams }: {
    version = 1;
    inherit name system;
    nixos_release = nixosRelease;
    agent_version = agentVersion;
    kernel = "kexec/bzImage";
    initrd = "kexec/initrd";
    kexec = "kexec/kexec";
    inherit init;
    kernel_params = kernelParams;
    cmdline = concatStringsSep " " ([ "init=${init}" ] ++ kernelParams);
    handoff = {
      initrd_dir = contract.initrdDir;
      stage2_dir = contract.stage2Dir;
    };
  };
}
