# Stand-in for nix-community/disko in the wiring checks: the same input name (nixpkgs, which
# flake.nix makes follow its own) and the one output nixos-lift uses.
{
  description = "stand-in disko (wiring checks only)";
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixpkgs-unstable";
  outputs = _: {
    nixosModules.disko = ./module.nix;
  };
}
