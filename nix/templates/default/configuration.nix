# Your host. nixos-lift's modules already give it serial consoles, cloud drivers, networkd,
# key-only SSH and, from the facts stage 2 hands over, the host name, root's SSH keys, static
# network and the target disk, all with mkDefault: anything you set here wins.
#
# Careful with root's keys: the cloud's keys come in with mkDefault, so a list you set in
# users.users.root.openssh.authorizedKeys.keys REPLACES them. Put every key you need in it.
#
# Day 2: with `update: { enable: true }` in the nixos-lift config, this host keeps pulling this
# flake and switching to it (nixosModules.update, part of the default modules). Its settings
# come from the config through the facts; any of them can be set here instead.
{ pkgs, ... }:
{
  environment.systemPackages = [ pkgs.htop ];

  # nixos-lift.update.interval = "6h";
  # nixos-lift.update.reboot = true;

  system.stateVersion = "26.05";
}
