# TEST DOUBLE for a nixpkgs package set (tests/nix/eval only). The full nixpkgs cannot be
# fetched here, so packages are attribute sets that look like derivations (type, name, outPath,
# meta.mainProgram) and build nothing. The builders the modules call (writeShellApplication,
# writeText, runCommand, disko's script writer) keep the text they were given, so the checks
# can read generated scripts. `lib` is the real nixpkgs lib.
{ lib, system }:
let
  fake = name: extra: {
    type = "derivation";
    inherit name;
    pname = name;
    version = "0-standin";
    outPath = "/nix/store/${builtins.hashString "sha256" "${system}-${name}"}-${name}";
    meta.mainProgram = name;
  } // extra;

  names = [
    # cloud baseline, layouts, installer
    "google-guest-agent"
    "jq"
    "coreutils"
    "coreutils-full"
    "gawk"
    "gnused"
    "gnugrep"
    "git"
    "disko"
    "nixos-install-tools"
    "util-linux"
    "e2fsprogs"
    "dosfstools"
    "xfsprogs"
    "btrfs-progs"
    "lvm2"
    "parted"
    "gptfdisk"
    "systemd"
    "systemdMinimal"
    "gnutar"
    "gzip"
    "bash"
    "shellcheck"
    "mdadm"
    "zfs"
    "nix"
    "python3"
    # day-2 pull
    "curl"
  ];

  platform = {
    inherit system;
    isx86 = system == "x86_64-linux";
    isx86_64 = system == "x86_64-linux";
    isx86_32 = false;
    isAarch64 = system == "aarch64-linux";
    isAarch32 = false;
    isRiscV = false;
    isRiscV64 = false;
    isLinux = true;
  };

  self = lib.genAttrs names (n: fake n { }) // {
    inherit lib;
    path = "/standin-nixpkgs";
    stdenv = { hostPlatform = platform; buildPlatform = platform; };
    cloud-utils.guest = fake "cloud-utils-guest" { };

    # nix/package.nix with a rustPlatform that records its arguments (src is real: lib.fileset).
    callPackage = f: args: (if builtins.isFunction f then f else import f) ({
      inherit lib;
      rustPlatform.buildRustPackage = attrs: fake attrs.pname { inherit attrs; inherit (attrs) version meta; };
    } // args);

    writeShellApplication = { name, text, runtimeInputs ? [ ], ... }:
      fake name { inherit text runtimeInputs; };
    writeText = name: text: fake name { inherit text; };
    writeScript = name: text: fake name { inherit text; };
    runCommand = name: env: script: fake name { inherit env script; } // (env.passthru or { });
    writers.makeScriptWriter = { interpreter, ... }: name: text:
      fake (baseNameOf name) { inherit interpreter text; };
  };
in
self
