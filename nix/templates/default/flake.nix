{
  description = "A NixOS host installed by nixos-lift";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
    nixos-lift = {
      url = "github:nixos-lift/nixos-lift";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs = { nixpkgs, nixos-lift, ... }: {
    # `flake: github:<you>/<repo>#web` in the nixos-lift config installs this host. The
    # architecture must match the VM's (aarch64-linux for Arm instances).
    nixosConfigurations.web = nixpkgs.lib.nixosSystem {
      modules = [
        nixos-lift.nixosModules.default
        nixos-lift.nixosModules.disk-basic
        ./configuration.nix
        { nixpkgs.hostPlatform = "x86_64-linux"; }
      ];
    };
  };
}
