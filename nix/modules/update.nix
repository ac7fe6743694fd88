# update: day 2. When the config's `update.enable` is set, stage 2 writes `install.update` into
# facts.json and this module (part of the cloud baseline, idle without it) runs
# nixos-lift-update on a timer: it builds the same flake reference the machine was installed
# from (or, in fleet mode, copies the prebuilt system path a URL names from the first
# substituter) and switches to it. The substituters and keys of the install go into nix.conf;
# the access tokens stay in a root-only file stage 2 wrote, which nix.conf `!include`s, so they
# are never in the world-readable nix.conf or the store.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkDefault mkIf mkOption types;
  inherit (import ../lib) contract;
  cfg = config.nixos-lift.update;
  facts = config.nixos-lift.facts or null;
  fromFacts = if facts == null then null else (facts.install or { }).update or null;
  pick = name: default: if fromFacts == null then default else fromFacts.${name} or default;
  nullOrStr = default: mkOption { type = types.nullOr types.str; inherit default; };
in
{
  options.nixos-lift.update = {
    enable = mkOption {
      type = types.bool;
      default = fromFacts != null;
      defaultText = lib.literalMD "whether facts.json carries `install.update`";
      description = "Keep pulling the flake this machine was installed from, and switch to it.";
    };
    flake = mkOption { type = types.str; default = pick "flake" ""; description = "The user's flake URL, placeholders resolved."; };
    attr = mkOption { type = types.str; default = pick "attr" ""; description = "The `nixosConfigurations` attribute."; };
    interval = mkOption {
      type = types.strMatching "[0-9a-z ]+";
      default = pick "interval" "1d";
      description = "Time from one pull to the next, a systemd time span.";
    };
    reboot = mkOption { type = types.bool; default = pick "reboot" false; description = "Switch by `boot` and a reboot."; };
    systemUrl = nullOrStr (pick "system_url" null) // { description = "Fleet mode: a URL whose body names the system path."; };
    substituters = mkOption { type = types.listOf types.str; default = pick "substituters" [ ]; description = "Caches of the install."; };
    trustedPublicKeys = mkOption { type = types.listOf types.str; default = pick "trusted_public_keys" [ ]; description = "Their signing keys."; };
    webhookUrl = nullOrStr (pick "webhook_url" null) // { description = "Where each pull reports (`stage: \"update\"`)."; };
    nixConf = mkOption { type = types.str; default = pick "nix_conf" contract.updateNixConf; description = "Root-only nix.conf fragment with the access tokens."; };
    webhookTokenFile = mkOption { type = types.str; default = pick "webhook_token_file" contract.updateWebhookToken; description = "Root-only file with the webhook token."; };
    script = mkOption {
      type = types.package;
      readOnly = true;
      default = pkgs.writeShellApplication {
        name = "nixos-lift-update";
        runtimeInputs = [ config.nix.package pkgs.curl pkgs.jq pkgs.coreutils pkgs.systemd ];
        text = builtins.readFile ./update.sh;
      };
      description = "The pull (nix/modules/update.sh).";
    };
  };

  config = mkIf cfg.enable {
    assertions = [{
      assertion = cfg.flake != "" && cfg.attr != "";
      message = "nixos-lift.update: needs the flake URL and attribute (facts.json's install.update has them).";
    }];

    # A missing file is no error for `!include`: without tokens there is none.
    nix.extraOptions = "!include ${cfg.nixConf}";
    nix.settings.substituters = cfg.substituters;
    nix.settings.trusted-public-keys = cfg.trustedPublicKeys;

    systemd.services.nixos-lift-update = {
      description = "nixos-lift: pull and switch to the flake this machine was installed from";
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      # The run switches the system itself: a switch must not restart it halfway.
      restartIfChanged = false;
      environment = {
        NIXOS_LIFT_UPDATE_FLAKE = cfg.flake;
        NIXOS_LIFT_UPDATE_ATTR = cfg.attr;
        NIXOS_LIFT_UPDATE_REBOOT = if cfg.reboot then "1" else "0";
        NIXOS_LIFT_UPDATE_SYSTEM_URL = cfg.systemUrl;
        NIXOS_LIFT_UPDATE_SUBSTITUTER = if cfg.substituters == [ ] then null else builtins.head cfg.substituters;
        NIXOS_LIFT_UPDATE_WEBHOOK_URL = cfg.webhookUrl;
        NIXOS_LIFT_UPDATE_TOKEN_FILE = cfg.webhookTokenFile;
      };
      serviceConfig = {
        Type = "oneshot";
        ExecStart = lib.getExe cfg.script;
      };
    };
    systemd.timers.nixos-lift-update = {
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnBootSec = mkDefault "15min";
        OnUnitActiveSec = cfg.interval;
        # A fleet installed from one user-data should not pull from the forge all at once.
        RandomizedDelaySec = mkDefault "15min";
      };
    };
  };
}
