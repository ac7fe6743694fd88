# Stand-in for nixpkgs in the wiring checks (tests/nix/wiring.sh). It is not nixpkgs: it
# provides only the few lib functions flake.nix calls at its top level, and a nixosSystem that
# evaluates no options at all. It walks the module list and its `imports`, so a missing or
# unparsable module file, or an import of the wrong input, fails the check.
{
  description = "stand-in nixpkgs (wiring checks only)";

  outputs = _:
    let
      lib = import ./lib.nix;
    in
    {
      inherit lib;
      legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (import ./pkgs.nix lib);
    };
}
