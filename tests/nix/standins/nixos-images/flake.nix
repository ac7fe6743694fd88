# Stand-in for nix-community/nixos-images in the wiring checks: the same input names
# (nixos-stable and nixos-unstable, which flake.nix makes follow its nixpkgs) and the two
# modules the installer is built from.
{
  description = "stand-in nixos-images (wiring checks only)";
  inputs.nixos-stable.url = "git+https://github.com/NixOS/nixpkgs?shallow=1&ref=nixos-26.05";
  inputs.nixos-unstable.url = "git+https://github.com/NixOS/nixpkgs?shallow=1&ref=nixpkgs-unstable";
  outputs = _: {
    nixosModules.kexec-installer = ./kexec-installer.nix;
    nixosModules.noninteractive = ./noninteractive.nix;
  };
}
