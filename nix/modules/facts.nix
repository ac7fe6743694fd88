# facts: `nixos-lift.facts` holds the facts.json that stage 2 writes (schema: src/facts.rs), and
# sets host name, root's SSH keys, the network and the target disk from it, each with mkDefault
# so the flake's own values win. The network units and resolvers are the ones stage 1 planned
# and rendered (`install.network`), passed through unchanged.
#
# Stage 2 fills it by adding a module that sets `nixos-lift.factsFile`; a flake can also commit
# a facts.json and point `nixos-lift.factsFile` at it. A system prebuilt for fleet mode has no
# facts: `nixos-lift.fleet.enable` reads the keys and host name stage 2 writes to the disk.
{ config, lib, ... }:
let
  helpers = import ../lib;
  inherit (lib) mkDefault mkIf mkOption types;
  cfg = config.nixos-lift;
  derived = helpers.fromFacts cfg.facts;

  # Declared fields are the ones these modules read; the rest of facts.json passes through.
  open = options: types.submodule { freeformType = types.attrsOf types.anything; inherit options; };
  disk = open {
    name = mkOption { type = types.str; };
    path = mkOption { type = types.str; };
    size_bytes = mkOption { type = types.ints.unsigned; };
    by_id = mkOption { type = types.listOf types.str; default = [ ]; };
    holds_root = mkOption { type = types.bool; default = false; };
    removable = mkOption { type = types.bool; default = false; };
    read_only = mkOption { type = types.bool; default = false; };
  };
  factsType = open {
    version = mkOption { type = types.ints.unsigned; };
    host = mkOption {
      type = open {
        arch = mkOption { type = types.str; };
        firmware = mkOption { type = types.enum [ "uefi" "bios" ]; };
      };
    };
    disks = mkOption { type = types.listOf disk; default = [ ]; };
    network = mkOption {
      type = open {
        interfaces = mkOption { type = types.listOf (types.attrsOf types.anything); default = [ ]; };
        routes = mkOption { type = types.listOf (types.attrsOf types.anything); default = [ ]; };
        dns = mkOption { type = types.listOf types.str; default = [ ]; };
      };
      default = { };
    };
    cloud = mkOption {
      type = types.nullOr (open {
        provider = mkOption { type = types.enum helpers.contract.providers; };
        hostname = mkOption { type = types.nullOr types.str; default = null; };
        ssh_keys = mkOption { type = types.listOf types.str; default = [ ]; };
        network = mkOption { type = types.listOf (types.attrsOf types.anything); default = [ ]; };
      });
      default = null;
    };
  };
in
{
  imports = [ ../disko/options.nix ];

  options.nixos-lift = {
    factsFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = lib.literalExpression "./facts.json";
      description = "A facts.json to read into `nixos-lift.facts` (stage 2 sets this).";
    };
    fleet.enable = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Build this system for fleet mode (the config's `system:`): one prebuilt closure for
        many machines, so it cannot hold a machine's SSH keys or host name. Stage 2 writes
        them to the disk, and this reads them at boot: root's keys from
        `${helpers.contract.fleetAuthorizedKeysDir}/root` (sshd's AuthorizedKeysFile), the
        host name from `${helpers.contract.hostnameFile}` (`networking.hostName` defaults to
        empty, so systemd takes it from there; a host name set in the flake wins).
      '';
    };
    facts = mkOption {
      type = types.nullOr factsType;
      default = if cfg.factsFile == null then null else helpers.readFacts cfg.factsFile;
      defaultText = lib.literalMD "read from `nixos-lift.factsFile`";
      description = "What stage 1 learnt about the machine (src/facts.rs), or null without facts.";
    };
  };

  config = lib.mkMerge [
    (mkIf cfg.fleet.enable {
      services.openssh.authorizedKeysFiles = [ "${helpers.contract.fleetAuthorizedKeysDir}/%u" ];
      networking.hostName = mkDefault "";
    })
    (mkIf (cfg.facts != null) {
      assertions = [{
        assertion = toString cfg.facts.version == helpers.contract.factsVersion;
        message = "nixos-lift: facts.json has schema version ${toString cfg.facts.version}, this module reads ${helpers.contract.factsVersion}.";
      }];

      # In fleet mode the host name comes from the disk's /etc/hostname.
      networking.hostName = mkIf (derived.hostName != null && !cfg.fleet.enable) (mkDefault derived.hostName);
      users.users.root.openssh.authorizedKeys.keys = mkDefault derived.sshKeys;
      systemd.network.networks = lib.mapAttrs (_: mkDefault) derived.networks;
      networking.nameservers = mkDefault derived.nameservers;
      networking.search = mkDefault derived.search;
      nixos-lift.disk.device = mkIf (derived.disk != null) (mkDefault derived.disk.device);
    })
  ];
}
