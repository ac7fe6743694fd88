# One Hetzner Cloud server that boots stock Debian and turns into your NixOS flake.
#   terraform init && terraform apply -var agent_sha256_x86_64=<from SHA256SUMS>
# Watch it: Hetzner Console > server > Console (or `hcloud server request-console NAME`).

terraform {
  required_providers {
    hcloud = {
      source = "hetznercloud/hcloud"
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

variable "agent_sha256_aarch64" {
  description = "sha256 of the aarch64 agent (needed for cax* server types)"
  type        = string
  default     = ""
}

resource "hcloud_server" "nixos" {
  name        = "nixos-1"
  server_type = "cx22"
  image       = "debian-12"
  location    = "fsn1"

  # Hetzner takes user-data as text, up to 32 KiB; it does not accept gzip.
  user_data = templatefile("${path.module}/../../user-data.yaml.tftpl", {
    config               = file(var.config_file)
    agent_url            = var.agent_url
    agent_sha256_x86_64  = var.agent_sha256_x86_64
    agent_sha256_aarch64 = var.agent_sha256_aarch64
  })
}

output "ipv4" {
  value = hcloud_server.nixos.ipv4_address
}
