# A GCE instance template (for managed instance groups) plus one instance from it.
#   terraform init && terraform apply -var project=my-project -var agent_sha256_x86_64=<...>
# Watch it: gcloud compute instances get-serial-port-output nixos-1 --zone europe-west1-b

terraform {
  required_providers {
    google = {
      source = "hashicorp/google"
    }
  }
}

variable "project" {
  type = string
}

variable "zone" {
  type    = string
  default = "europe-west1-b"
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
  description = "sha256 of the aarch64 agent (needed for t2a/c4a machine types)"
  type        = string
  default     = ""
}

provider "google" {
  project = var.project
  zone    = var.zone
}

resource "google_compute_instance_template" "nixos" {
  name_prefix  = "nixos-"
  machine_type = "e2-standard-2"

  disk {
    # Google's Debian images have no cloud-init (they run google-guest-agent); Ubuntu's do.
    source_image = "ubuntu-os-cloud/ubuntu-2404-lts-amd64"
    boot         = true
    auto_delete  = true
    disk_size_gb = 20
  }

  network_interface {
    network = "default"
    access_config {}
  }

  metadata = {
    # cloud-init's GCE datasource reads the `user-data` key (a value holds up to 256 KiB).
    user-data = templatefile("${path.module}/../../user-data.yaml.tftpl", {
      config               = file(var.config_file)
      agent_url            = var.agent_url
      agent_sha256_x86_64  = var.agent_sha256_x86_64
      agent_sha256_aarch64 = var.agent_sha256_aarch64
    })
    serial-port-logging-enable = "TRUE"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_compute_instance_from_template" "nixos" {
  name                     = "nixos-1"
  source_instance_template = google_compute_instance_template.nixos.self_link_unique
}
