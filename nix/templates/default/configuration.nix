# Your host. nixos-lift's modules already give it serial consoles, cloud drivers, networkd,
# key-only SSH and, from the facts stage 2 hands over, the host name, root's SSH keys, static
# network and the target disk, all with mkDefault: anything you set here wins.
#
# Careful with root's keys: the cloud's keys come in with mkDefault, so a list you set in
# users.users.root.openssh.authorizedKeys.keys REPLACES them. Put every key you need in it.
{ pkgs, ... }:
{
  environment.systemPackages = [ pkgs.htop ];

  system.stateVersion = "26.05";
}
