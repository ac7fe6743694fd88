# Names shared with the Rust agent. Each value must equal its counterpart in src/handoff/mod.rs,
# src/install/machine.rs, src/install/compose.rs or src/facts.rs; tests/nix_contract.rs reads both sides and fails on any
# difference. Keep this file to `name = "string";` lines and string lists so that test can read it.
{
  # src/handoff/mod.rs
  initrdDir = "nixos-lift";
  stage2Dir = "/run/nixos-lift/handoff";
  planFile = "plan.json";
  factsFile = "facts.json";
  networkdDir = "networkd";
  resolvedFile = "resolved.conf";
  secretsFile = "secrets.json";
  authorizedKeysFile = "authorized_keys";
  machineIdFile = "machine-id";
  agentFile = "nixos-lift";
  manifestFile = "kexec/manifest.json";

  # src/install/machine.rs: fleet mode's per-machine files on the target
  fleetAuthorizedKeysDir = "/etc/nixos-lift/authorized_keys.d";
  hostnameFile = "/etc/hostname";

  # src/install/compose.rs: the day-2 pull's root-only files on the installed system.
  updateNixConf = "/etc/nixos-lift/nix-private.conf";
  updateWebhookToken = "/etc/nixos-lift/webhook-token";

  # src/facts.rs FACTS_VERSION
  factsVersion = "1";

  # src/facts.rs ProviderKind, in declaration order.
  providers = [
    "aws"
    "gcp"
    "azure"
    "hetzner"
    "digitalocean"
    "vultr"
    "akamai"
    "oracle"
    "scaleway"
    "openstack"
    "exoscale"
    "upcloud"
    "alibaba"
    "nocloud"
    "none"
  ];
}
