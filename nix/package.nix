# The nixos-lift agent, built from this repository's Cargo.lock. The installer image carries it
# as the fallback for a handoff without a runnable agent binary.
{ lib, rustPlatform }:
let
  cargo = lib.importTOML ../Cargo.toml;
  root = ../.;
in
rustPlatform.buildRustPackage {
  pname = cargo.package.name;
  inherit (cargo.package) version;

  # Only what cargo needs, so edits to nix/ or the README do not rebuild the agent. src/
  # embeds cloud-init/ (include_str!); tests/suite/50-nix.sh checks every embedded file is here.
  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../src
      ../cloud-init
      (lib.fileset.maybeMissing ../benches)
    ];
  };

  cargoLock.lockFile = ../Cargo.lock;

  # The test suite needs fixtures, root and QEMU; it runs in CI (tests/run-all.sh), not here.
  doCheck = false;

  meta = {
    inherit (cargo.package) description;
    license = with lib.licenses; [ mit asl20 ];
    mainProgram = "nixos-lift";
    platforms = lib.platforms.linux;
  };
}
