# default: the universal cloud baseline plus facts. Import this, add a disk layout
# (disk-basic or disk-lvm) and your own configuration.
{
  imports = [
    ./cloud.nix
    ./facts.nix
  ];
}
