# An autoscaling group that mixes x86_64 and arm64 (Graviton) instance types. Both launch
# templates carry the same user-data: on each VM the boot script picks the agent for
# `uname -m` through the {arch} placeholder and checks it against the matching pinned sha256.
#   terraform init && terraform apply -var subnet_ids='["subnet-..."]' \
#     -var agent_sha256_x86_64=<...> -var agent_sha256_aarch64=<...>
# Watch one: aws ec2 get-console-output --instance-id i-... --latest --output text

terraform {
  required_providers {
    aws = {
      source = "hashicorp/aws"
    }
  }
}

variable "subnet_ids" {
  type = list(string)
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
  description = "sha256 of the aarch64 agent, from the release's SHA256SUMS"
  type        = string
}

locals {
  # AWS limits user-data to 16 KiB before base64; `nixos-lift user-data --provider aws`
  # measures a config against it.
  user_data = base64encode(templatefile("${path.module}/../../user-data.yaml.tftpl", {
    config               = file(var.config_file)
    agent_url            = var.agent_url
    agent_sha256_x86_64  = var.agent_sha256_x86_64
    agent_sha256_aarch64 = var.agent_sha256_aarch64
  }))
  arches = {
    x86_64 = "amd64"
    arm64  = "arm64"
  }
}

# Stock Debian 12, one AMI per architecture (the AMI is the only per-arch part).
data "aws_ami" "debian" {
  for_each    = local.arches
  most_recent = true
  owners      = ["136693071363"] # Debian

  filter {
    name   = "name"
    values = ["debian-12-${each.value}-*"]
  }
}

resource "aws_launch_template" "nixos" {
  for_each      = local.arches
  name_prefix   = "nixos-${each.key}-"
  image_id      = data.aws_ami.debian[each.key].id
  user_data     = local.user_data
  ebs_optimized = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size = 20
      volume_type = "gp3"
    }
  }
}

resource "aws_autoscaling_group" "nixos" {
  name_prefix         = "nixos-"
  min_size            = 1
  max_size            = 4
  desired_capacity    = 2
  vpc_zone_identifier = var.subnet_ids

  mixed_instances_policy {
    instances_distribution {
      on_demand_percentage_above_base_capacity = 0
      spot_allocation_strategy                 = "price-capacity-optimized"
    }

    launch_template {
      launch_template_specification {
        launch_template_id = aws_launch_template.nixos["x86_64"].id
        version            = "$Latest"
      }

      override {
        instance_type = "m6i.large"
      }

      override {
        instance_type = "m7g.large"
        launch_template_specification {
          launch_template_id = aws_launch_template.nixos["arm64"].id
          version            = "$Latest"
        }
      }
    }
  }
}
