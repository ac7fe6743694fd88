# One DigitalOcean droplet that boots stock Debian and turns into your NixOS flake.
#   terraform init && terraform apply -var agent_sha256_x86_64=<from SHA256SUMS>
# Watch it: control panel > droplet > Access > Recovery console.

terraform {
  required_providers {
    digitalocean = {
      source = "digitalocean/digitalocean"
    }
  }
}

variable "config_file" {
  description = "nixos-lift config (YAML); written on the VM with mode 0600"
  type        = string
  default     = "nixos-lift.yaml"
}

variable "agent_url" {
  description = "agent download URL; {arch} becomes uname -m on the VM"
  type        = string
  default     = "https://github.com/nixos-lift/nixos-lift/releases/download/v0.1.0/nixos-lift-{arch}-linux"
}

variable "agent_sha256_x86_64" {
  description = "sha256 of the x86_64 agent, from the release's SHA256SUMS"
  type        = string
}

variable "ssh_key_fingerprints" {
  description = "SSH keys DigitalOcean publishes in metadata; nixos-lift installs them"
  type        = list(string)
  default     = []
}

resource "digitalocean_droplet" "nixos" {
  name     = "nixos-1"
  region   = "fra1"
  size     = "s-2vcpu-2gb"
  image    = "debian-12-x64"
  ssh_keys = var.ssh_key_fingerprints

  # DigitalOcean takes user-data as text, up to 64 KiB. Droplets are x86_64 only.
  user_data = templatefile("${path.module}/../../user-data.yaml.tftpl", {
    config               = file(var.config_file)
    agent_url            = var.agent_url
    agent_sha256_x86_64  = var.agent_sha256_x86_64
    agent_sha256_aarch64 = ""
  })
}

output "ipv4" {
  value = digitalocean_droplet.nixos.ipv4_address
}
