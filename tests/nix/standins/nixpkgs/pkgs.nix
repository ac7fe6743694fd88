# The stand-in package set: callPackage calls the function with stand-ins for the arguments
# nix/package.nix takes, so its reading of Cargo.toml and Cargo.lock is checked. runCommand
# returns its arguments, so a check's wiring can be read back.
lib: system: {
  inherit lib;
  stdenv.hostPlatform = { inherit system; isx86 = system == "x86_64-linux"; };
  runCommand = name: env: script: { standin = "runCommand"; inherit name env script; };
  callPackage = f: args: (if builtins.isPath f then import f else f) ({
    inherit lib;
    rustPlatform.buildRustPackage = attrs:
      if builtins.pathExists attrs.cargoLock.lockFile then attrs // { standin = "buildRustPackage"; }
      else throw "buildRustPackage: ${toString attrs.cargoLock.lockFile} does not exist";
  } // args);
}
