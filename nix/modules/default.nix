# default: the universal cloud baseline plus facts. Import this, add a disk layout
# (disk-basic or disk-lvm) and your own configuration. The day-2 pull (update.nix) is idle
# unless facts.json carries `install.update` (the config's `update.enable`).
{
  imports = [
    ./cloud.nix
    ./facts.nix
    ./update.nix
  ];
}
