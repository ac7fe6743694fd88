{
  description = "nixos-lift: paste user-data, boot a stock cloud image, get your NixOS flake";

  # No flake.lock is committed yet: it can only be made where GitHub is reachable. Run
  # `nix flake lock` first (README, "The Nix half").
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
    disko = {
      url = "github:nix-community/disko";
      inputs.nixpkgs.follows = "nixpkgs";
    };
    nixos-images = {
      url = "github:nix-community/nixos-images";
      inputs.nixos-stable.follows = "nixpkgs";
      inputs.nixos-unstable.follows = "nixpkgs";
    };
  };

  outputs = { self, nixpkgs, disko, nixos-images }:
    let
      inherit (nixpkgs) lib;
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      installerFor = system: lib.nixosSystem {
        # nix/installer/lean.nix disables a module that noninteractive imports next to itself.
        specialArgs.noninteractiveModule = nixos-images.nixosModules.noninteractive;
        modules = [
          nixos-images.nixosModules.kexec-installer
          nixos-images.nixosModules.noninteractive
          ./nix/installer
          { nixpkgs.hostPlatform = system; }
        ];
      };
    in
    {
      # Builtins-only helpers (facts to attribute sets, LVM sizing, the manifest).
      lib = import ./nix/lib;

      packages = forAllSystems (pkgs:
        let system = pkgs.stdenv.hostPlatform.system;
        in {
          nixos-lift = pkgs.callPackage ./nix/package.nix { };
          installer = (installerFor system).config.system.build.nixosLiftInstaller;
          default = self.packages.${system}.nixos-lift;
        });

      nixosModules = {
        default = ./nix/modules;
        cloud = ./nix/modules/cloud.nix;
        facts = ./nix/modules/facts.nix;
        update = ./nix/modules/update.nix;
        disk-basic = { imports = [ disko.nixosModules.disko ./nix/disko/basic.nix ]; };
        disk-lvm = { imports = [ disko.nixosModules.disko ./nix/disko/lvm.nix ]; };
      };

      nixosConfigurations = import ./nix/configurations.nix { inherit lib self; };

      templates.default = {
        path = ./nix/templates/default;
        description = "One NixOS host for nixos-lift: the cloud baseline, facts and a disk layout";
      };

      checks = forAllSystems (pkgs: import ./nix/tests { inherit pkgs self; } // {
        # The installer's compressed initrd within nix/installer/budget.nix; builds the installer.
        installer-size = import ./nix/installer/size-check.nix {
          inherit (pkgs) runCommand;
          installer = self.packages.${pkgs.stdenv.hostPlatform.system}.installer;
        };
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.nixos-lift ];
          packages = [ pkgs.clippy pkgs.rustfmt pkgs.nixpkgs-fmt pkgs.deadnix pkgs.jq pkgs.qemu ];
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixpkgs-fmt);
    };
}
