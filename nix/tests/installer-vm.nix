# The whole pull model in VMs (x86_64, `nix flake check` or `nix build .#checks.x86_64-linux.installer-vm`).
#
#   cloud   the "cloud": a fake Hetzner metadata service on 169.254.169.254 and a binary cache
#           (nix-serve) holding the target system, so nothing needs the internet
#   stock   the stock VM (a plain NixOS with Hetzner's SMBIOS strings). It runs stage 1, which
#           kexecs into the installer image with the handoff; stage 2 wipes its disk, installs
#           the target and reboots
#
# Then the test logs in over SSH with the key from the metadata and checks the host name and
# the network. The target is cloud-x86_64 extended with the test key's facts, installed as a
# prebuilt system (fleet mode) from the cache, because the VMs cannot evaluate a flake offline.
# cache-key.sec/.pub sign that cache; they are test-only keys that guard nothing.
#
# Written against the CLI and config as of its commit and never run (no Nix here): the config
# keys below are the ones this test assumes stage 1 reads.
{ pkgs, self }:
let
  inherit (pkgs) lib;
  system = pkgs.stdenv.hostPlatform.system;
  installer = self.packages.${system}.installer;
  agent = self.packages.${system}.nixos-lift;
  sshKeys = import "${pkgs.path}/nixos/tests/ssh-keys.nix" pkgs;

  target = (self.nixosConfigurations.cloud-x86_64.extendModules {
    modules = [{
      # The test VM's root disk; stage 2 finds it again from the plan.
      nixos-lift.disk.device = "/dev/vda";
      networking.hostName = lib.mkForce "lifted";
      # A prebuilt system cannot take facts made at install time, so the static address the
      # facts module would set is spelt out (the eval checks cover the facts module itself).
      systemd.network.networks."10-eth1" = {
        matchConfig.Name = "eth1";
        address = [ "169.254.1.2/16" ];
      };
    }];
  }).config.system.build.toplevel;

  tarball = "nixos-lift-installer-${system}.tar.gz";
  # Served at http://169.254.169.254/: the metadata and the installer tarball.
  served = pkgs.linkFarm "fake-cloud" [
    { name = "hetzner/v1/metadata"; path = metadata; }
    { name = "installer/${tarball}"; path = "${installer}/${tarball}"; }
  ];

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
    flake = "${self.outPath}#cloud-x86_64";
    system = "${target}";
    installer = {
      url = "http://169.254.169.254/installer/${tarball}";
      # Import from derivation: the digest of the tarball this test built.
      sha256.x86_64 = lib.head (lib.splitString " " (builtins.readFile "${installer}/${tarball}.sha256"));
    };
    nix = {
      substituters = [ "http://169.254.169.254:5000" ];
      trusted_public_keys = [ (builtins.readFile ./cache-key.pub) ];
    };
  });
in
pkgs.testers.runNixOSTest {
  name = "nixos-lift-installer";

  nodes = {
    cloud = {
      virtualisation.vlans = [ 1 ];
      networking.interfaces.eth1.ipv4.addresses = [{ address = "169.254.169.254"; prefixLength = 16; }];
      networking.firewall.enable = false;
      system.extraDependencies = [ target ];
      services.nix-serve = {
        enable = true;
        secretKeyFile = "${./cache-key.sec}";
      };
      systemd.services.fake-metadata = {
        wantedBy = [ "multi-user.target" ];
        serviceConfig.ExecStart = "${pkgs.python3}/bin/python3 -m http.server 80 --directory ${served}";
      };
    };

    stock = {
      virtualisation = {
        vlans = [ 1 ];
        memorySize = 3 * 1024;
        diskSize = 8 * 1024;
        qemu.options = [ "-smbios type=1,manufacturer=Hetzner,product=vServer,serial=4242" ];
      };
      networking.interfaces.eth1.ipv4.addresses = [{ address = "169.254.1.2"; prefixLength = 16; }];
      environment.systemPackages = [ agent ];
      environment.etc."nixos-lift/config.yaml".source = liftConfig;
      system.extraDependencies = [ installer ];
    };
  };

  testScript = ''
    start_all()
    cloud.wait_for_unit("nix-serve.service")
    cloud.wait_for_unit("fake-metadata.service")
    stock.wait_for_unit("multi-user.target")

    stock.succeed("nixos-lift detect --format json >&2")
    stock.succeed("nixos-lift plan --config /etc/nixos-lift/config.yaml >&2")

    # Stage 1 kexecs; the old system goes away without a shutdown.
    stock.execute("nixos-lift run --config /etc/nixos-lift/config.yaml >&2 &")
    stock.connected = False
    stock.wait_for_console_text("nixos-lift", timeout=300)

    # Stage 2 reports on the serial console, installs and reboots into the target.
    stock.wait_for_console_text("Welcome to NixOS", timeout=1800)
    stock.wait_for_unit("sshd.service")
    assert stock.succeed("hostname").strip() == "lifted"
    stock.succeed("ip -4 addr show eth1 | grep -q 169.254.1.2")
    stock.succeed("grep -q '${sshKeys.snakeOilPublicKey}' /etc/ssh/authorized_keys.d/root")
    cloud.succeed(
        "install -m 600 ${sshKeys.snakeOilPrivateKey} /tmp/key && "
        "ssh -i /tmp/key -o StrictHostKeyChecking=no root@169.254.1.2 true"
    )
  '';
}
