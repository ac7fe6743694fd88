# The whole pull model in VMs (x86_64): `nix build .#checks.x86_64-linux.installer-vm`.
#
# NEVER RUN: it needs Nix with KVM and the flake's inputs, which the development machine
# lacks (README, "The Nix half"). Written to pass on such a machine; expect to adjust it on
# its first run.
#
#   cloud  the "cloud" on the test VLAN: Hetzner's metadata service on 169.254.169.254:80,
#          the installer tarball, and the user's flake as tarballs over http (the flake plus
#          nixpkgs, disko and nixos-images sources it locks to), and a binary cache
#          (nix-serve, :5000) with the target's closure and what building it with this
#          machine's facts needs
#   stock  the starting VM. It is a NixOS VM whose /etc/os-release says Debian 12: a test-only
#          override, because the test driver only boots NixOS nodes and nixos-lift's
#          `not-nixos` guard (rightly) refuses NixOS. Everything else about it is ordinary.
#
# Stage 1 kexecs into the installer, which drops the test driver's backdoor; from then on the
# test drives the machine over SSH through a forwarded host port (as nixos-images' own kexec
# test does). Stage 2 wipes the disk, `nixos-install`s the flake with the facts module (host
# name and root's key from the metadata) and reboots. The reboot must come up from the disk:
# the node boots with `useBootLoader`, so QEMU starts the installed GRUB, not the test
# driver's direct-boot kernel.
{ pkgs, self }:
let
  inherit (pkgs) lib;
  system = pkgs.stdenv.hostPlatform.system;
  installer = self.packages.${system}.installer;
  agent = self.packages.${system}.nixos-lift;
  sshKeys = import "${pkgs.path}/nixos/tests/ssh-keys.nix" pkgs;
  inputs = self.inputs or { };

  metadataIp = "169.254.169.254";
  cloudUrl = "http://${metadataIp}";
  sshPort = 2222;

  # The user's flake: one host on nixos-lift's modules and the BIOS/UEFI layout. Its inputs
  # are tarballs on the cloud node, so the installer fetches them without the internet.
  userFlake = pkgs.writeTextDir "flake.nix" ''
    {
      inputs = {
        nixpkgs.url = "${cloudUrl}/src/nixpkgs.tar.gz";
        nixos-lift.url = "${cloudUrl}/src/nixos-lift.tar.gz";
        nixos-lift.inputs.nixpkgs.follows = "nixpkgs";
        nixos-lift.inputs.disko.url = "${cloudUrl}/src/disko.tar.gz";
        nixos-lift.inputs.nixos-images.url = "${cloudUrl}/src/nixos-images.tar.gz";
      };
      outputs = { nixpkgs, nixos-lift, ... }: {
        nixosConfigurations.lifted = nixpkgs.lib.nixosSystem {
          modules = [ nixos-lift.nixosModules.default nixos-lift.nixosModules.disk-basic (import ./host.nix) ];
        };
      };
    }
  '';
  # Shared by the served flake and the prebuilt copy below, so the cache holds what the
  # installer will build (except what depends on the facts).
  hostModule = pkgs.writeText "host.nix" ''
    { modulesPath, ... }: {
      imports = [ (modulesPath + "/profiles/qemu-guest.nix") ];
      nixpkgs.hostPlatform = "${system}";
      system.stateVersion = "26.05";
    }
  '';
  tarball = name: dir: pkgs.runCommand "${name}.tar.gz" { } ''
    tar -C ${dir} --transform 's|^\.|${name}|' -czf $out --dereference --sort=name --owner=0 --group=0 --mtime=@1 .
  '';
  userFlakeDir = pkgs.runCommand "user-flake" { } ''
    mkdir $out
    cp ${userFlake}/flake.nix $out/flake.nix
    cp ${hostModule} $out/host.nix
  '';

  # What the installed system will be, built here with the facts stage 2 will see as far as
  # they are known (host name and key from the metadata), so its closure is in the cache.
  expected = (self.nixosConfigurations.cloud-x86_64.extendModules {
    modules = [
      (import hostModule)
      {
        networking.hostName = "lifted";
        users.users.root.openssh.authorizedKeys.keys = [ sshKeys.snakeOilPublicKey ];
      }
    ];
  }).config;
  cacheContents = [
    expected.system.build.toplevel
    expected.system.build.diskoScript
    # Inputs for rebuilding the few derivations that depend on the real facts (/etc, units).
    expected.system.build.toplevel.inputDerivation
    pkgs.stdenv
    pkgs.stdenvNoCC
    pkgs.closureInfo
    pkgs.jq
  ];

  served = pkgs.linkFarm "fake-cloud" ([
    { name = "hetzner/v1/metadata"; path = metadata; }
    { name = "installer/${installerTarball}"; path = "${installer}/${installerTarball}"; }
    { name = "src/flake.tar.gz"; path = tarball "flake" userFlakeDir; }
    { name = "src/nixos-lift.tar.gz"; path = tarball "nixos-lift" self.outPath; }
    { name = "src/nixpkgs.tar.gz"; path = tarball "nixpkgs" pkgs.path; }
  ] ++ lib.optionals (inputs ? disko) [
    { name = "src/disko.tar.gz"; path = tarball "disko" inputs.disko.outPath; }
    { name = "src/nixos-images.tar.gz"; path = tarball "nixos-images" inputs.nixos-images.outPath; }
  ]);
  installerTarball = "nixos-lift-installer-${system}.tar.gz";

  metadata = pkgs.writeText "metadata" ''
    hostname: lifted
    instance-id: 4242
    region: test
    public-keys:
      - ${sshKeys.snakeOilPublicKey}
  '';

  # JSON is YAML: the config file's schema, as `nixos-lift config example` prints it.
  liftConfig = pkgs.writeText "nixos-lift.yaml" (builtins.toJSON {
    version = 1;
    flake = "${cloudUrl}/src/flake.tar.gz#lifted";
    installer = {
      url = "${cloudUrl}/installer/${installerTarball}";
      # Import from derivation: the digest of the tarball this test built.
      sha256.x86_64 = lib.head (lib.splitString " " (builtins.readFile "${installer}/${installerTarball}.sha256"));
    };
    nix = {
      substituters = [ "${cloudUrl}:5000" ];
      trusted_public_keys = [ (builtins.readFile ./cache-key.pub) ];
    };
  });

  ssh = "${pkgs.openssh}/bin/ssh";
in
pkgs.testers.runNixOSTest {
  name = "nixos-lift-installer";

  nodes = {
    cloud = {
      virtualisation.vlans = [ 1 ];
      networking.interfaces.eth1.ipv4.addresses = [{ address = metadataIp; prefixLength = 16; }];
      networking.firewall.enable = false;
      system.extraDependencies = cacheContents;
      services.nix-serve = {
        enable = true;
        secretKeyFile = "${./cache-key.sec}";
      };
      systemd.services.fake-cloud = {
        wantedBy = [ "multi-user.target" ];
        serviceConfig.ExecStart = "${pkgs.python3}/bin/python3 -m http.server 80 --directory ${served}";
      };
    };

    stock = {
      virtualisation = {
        vlans = [ 1 ];
        memorySize = 3 * 1024;
        diskSize = 8 * 1024;
        # Boot from the disk, so the reboot after stage 2 runs the installed GRUB.
        useBootLoader = true;
        useEFIBoot = false;
        forwardPorts = [{ from = "host"; host.port = sshPort; guest.port = 22; }];
        qemu.options = [ "-smbios type=1,manufacturer=Hetzner,product=vServer,serial=4242" ];
      };
      # Test-only override (see the top): the guard reads /etc/os-release.
      environment.etc."os-release".text = lib.mkForce ''
        PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
        NAME="Debian GNU/Linux"
        VERSION_ID="12"
        ID=debian
      '';
      networking.interfaces.eth1.ipv4.addresses = [{ address = "169.254.1.2"; prefixLength = 16; }];
      services.openssh.enable = true;
      users.users.root.openssh.authorizedKeys.keys = [ sshKeys.snakeOilPublicKey ];
      environment.systemPackages = [ agent ];
      environment.etc."nixos-lift/config.yaml".source = liftConfig;
    };
  };

  testScript = ''
    import shlex
    import subprocess
    import time

    def ssh(cmd, check=True):
        return subprocess.run(
            ["${ssh}", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "ConnectTimeout=2", "-i", key, "-p", "${toString sshPort}", "root@127.0.0.1", "--", cmd],
            text=True, check=check, capture_output=True)

    def wait_ssh(what, timeout):
        deadline = time.time() + timeout
        while ssh("true", check=False).returncode != 0:
            assert time.time() < deadline, f"no SSH to {what} within {timeout}s"
            time.sleep(2)

    key = "/tmp/snakeoil"
    pub = """${sshKeys.snakeOilPublicKey}""".strip()
    subprocess.run(["install", "-m", "600", "${sshKeys.snakeOilPrivateKey}", key], check=True)

    start_all()
    cloud.wait_for_unit("nix-serve.service")
    cloud.wait_for_unit("fake-cloud.service")
    stock.wait_for_unit("multi-user.target")
    stock.wait_until_succeeds("curl -sf ${cloudUrl}/hetzner/v1/metadata")

    stock.succeed("nixos-lift detect --format json >&2")
    stock.succeed("nixos-lift config check --config /etc/nixos-lift/config.yaml >&2")
    stock.succeed("nixos-lift plan --config /etc/nixos-lift/config.yaml >&2")
    # The stock image's root key file, which stage 1 hands over like nixos-images' kexec/run,
    # and a marker that only the stock system has.
    stock.succeed(f"install -D -m 600 /dev/stdin /root/.ssh/authorized_keys <<< {shlex.quote(pub)}")
    stock.succeed("touch /root/stock-marker")
    wait_ssh("the stock VM", 120)

    # Stage 1 kexecs: the driver's backdoor goes with the old kernel. From here on, SSH only.
    stock.execute("systemd-run --unit nixos-lift-run nixos-lift run --config /etc/nixos-lift/config.yaml")
    stock.connected = False
    deadline = time.time() + 300
    while ssh("test ! -e /root/stock-marker && test -d /run/nixos-lift/handoff", check=False).returncode != 0:
        assert time.time() < deadline, "the installer never came up over SSH"
        time.sleep(2)
    print(ssh("cat /etc/os-release; systemctl status nixos-lift-network nixos-lift-install --no-pager", check=False).stdout)

    # Stage 2 installs and reboots; SSH drops, then the installed system answers from its disk.
    deadline = time.time() + 3600
    while ssh("test -e /run/nixos-lift/handoff", check=False).returncode == 0:
        assert time.time() < deadline, "stage 2 did not finish: " + ssh("journalctl -u nixos-lift-install --no-pager | tail -50", check=False).stdout
        time.sleep(10)
    wait_ssh("the installed system", 600)

    # The installed system, not the installer: no handoff, booted from the disk's GRUB
    # (the installer runs from RAM: its / is a tmpfs).
    assert ssh("hostname").stdout.strip() == "lifted"
    assert "ID=nixos" in ssh("cat /etc/os-release").stdout
    assert ssh("findmnt -no FSTYPE /").stdout.strip() == "ext4", "root is not the installed ext4"
    ssh("test -f /etc/nixos-lift/facts.json && test ! -e /run/nixos-lift/handoff")
    # The metadata's key, where NixOS puts root's authorizedKeys.keys; this SSH session used it.
    ssh(f"grep -qxF {shlex.quote(pub)} /etc/ssh/authorized_keys.d/root")
    ssh("systemctl is-system-running --wait || systemctl --failed --no-pager >&2", check=False)
  '';
}
