# checks.<system>.installer-size: fails when the installer's compressed initrd, kexec/initrd in
# the tarball stage 1 downloads, is larger than ./budget.nix allows. It needs the installer
# built, so it runs only where Nix has network (`nix build .#checks.x86_64-linux.installer-size`).
{ runCommand, installer }:
let
  inherit (import ./budget.nix) initrdMiB;
in
runCommand "installer-size"
{
  inherit installer initrdMiB;
  budgetBytes = initrdMiB * 1024 * 1024;
} ''
  tar -xzf "$installer"/*.tar.gz kexec/initrd
  size=$(stat -c %s kexec/initrd)
  if [ "$size" -gt "$budgetBytes" ]; then
    echo "installer-size: kexec/initrd is $size bytes ($((size / 1048576)) MiB), over the budget of $initrdMiB MiB ($budgetBytes bytes) in nix/installer/budget.nix; see docs/nix.md, \"The installer's size budget\"" >&2
    exit 1
  fi
  echo "installer-size: kexec/initrd is $size bytes ($((size / 1048576)) MiB), within $initrdMiB MiB"
  echo "$size" > "$out"
''
