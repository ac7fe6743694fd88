#!/usr/bin/python3
"""Helpers for the delivery suite, reading a rendered #cloud-config the way cloud-init does.

  cloud_config.py runcmd-script FILE     print the boot script (runcmd[0], `sh -c SCRIPT`)
  cloud_config.py write-files FILE       apply write_files (b64 content, permissions, owner)
                                         to the running root; the suite calls it only inside
                                         its overlay sandbox, never on the host's /etc
  cloud_config.py templatefile TEMPLATE CONFIG URL SHA_X86 SHA_ARM
                                         render TEMPLATE as Terraform's templatefile() would,
                                         for the expressions it uses; an independent check of
                                         `nixos-lift user-data`
"""
import base64
import grp
import pwd
import os
import re
import sys

import yaml


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def runcmd_script(path):
    cmd = load(path)["runcmd"][0]
    assert cmd[:2] == ["sh", "-c"], cmd
    sys.stdout.write(cmd[2])


def write_files(path):
    for entry in load(path)["write_files"]:
        data = entry["content"]
        data = base64.b64decode(data) if entry.get("encoding") == "b64" else data.encode()
        os.makedirs(os.path.dirname(entry["path"]), exist_ok=True)
        with open(entry["path"], "wb") as f:
            f.write(data)
        os.chmod(entry["path"], int(entry.get("permissions", "0644"), 8))
        user, _, group = entry.get("owner", "root:root").partition(":")
        os.chown(entry["path"], pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid)


def templatefile(template, config, url, sha_x86, sha_arm):
    with open(config, "rb") as f:
        values = {
            "base64encode(config)": base64.b64encode(f.read()).decode(),
            "agent_url": url,
            "agent_sha256_x86_64": sha_x86,
            "agent_sha256_aarch64": sha_arm,
        }
    with open(template) as f:
        text = f.read()
    if "%{" in text.replace("%%{", ""):
        sys.exit("template uses a directive")
    out = re.sub(r"(?<!\$)\$\{([^}]*)\}", lambda m: values[m.group(1).strip()], text)
    sys.stdout.write(out.replace("$${", "${"))


if __name__ == "__main__":
    {"runcmd-script": runcmd_script, "write-files": write_files, "templatefile": templatefile}[
        sys.argv[1]
    ](*sys.argv[2:])
