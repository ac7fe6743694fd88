# The fleet scenarios' prebuilt "system": plain derivations, no nixpkgs, built by the real Nix
# on the host (tests/vm/fleet/cache.sh) and served as a signed HTTP binary cache. Four store
# paths with references between them, the top one shaped like a NixOS system's toplevel:
#   system -> kernel, initrd, disko-script (symlinks), init and bin/switch-to-configuration (run by
#             the busybox path), etc/hostname-default
#   kernel, initrd -> busybox (their builders' output names it)
#   disko  -> busybox: the prebuilt disko script (a file) fleet mode runs without evaluating
#   busybox: a static busybox, added to the store as a directory
{ busyboxDir, system ? "x86_64-linux", tag ? "fleet" }:
let
  busybox = builtins.path { path = /. + busyboxDir; name = "busybox-static"; };
  sh = "${busybox}/bin/busybox";
  mk = name: script: derivation {
    inherit name system;
    builder = sh;
    args = [ "sh" "-c" script ];
  };
  kernel = mk "linux-fleet-test" ''
    ${sh} mkdir -p $out
    echo "fleet test kernel ${tag} (busybox at ${busybox})" > $out/bzImage
  '';
  initrd = mk "initrd-fleet-test" ''
    ${sh} mkdir -p $out
    echo "fleet test initrd ${tag} (busybox at ${busybox})" > $out/initrd
  '';
  disko = mk "disko-fleet-test" ''
    echo "#!${sh} sh" > $out
    echo "# the fleet scenarios' prebuilt disko script: runs the disko double (tests/doubles)" >> $out
    echo 'exec /doubles/bin/disko-script "$@"' >> $out
    ${sh} chmod 0555 $out
  '';
in
mk "nixos-system-fleet-test-24.11" ''
  ${sh} mkdir -p $out/bin $out/etc
  ${sh} ln -s ${kernel}/bzImage $out/kernel
  ${sh} ln -s ${initrd}/initrd $out/initrd
  printf '#!${sh} sh\necho "fleet test system ${tag}: stage 2 init"\n' > $out/init
  printf '#!${sh} sh\necho "switch-to-configuration $1 (fleet test system ${tag})"\n' > $out/bin/switch-to-configuration
  ${sh} chmod 0555 $out/init $out/bin/switch-to-configuration
  echo ${tag} > $out/etc/hostname-default
  ${sh} ln -s ${disko} $out/disko-script
  echo 24.11 > $out/nixos-version
''
