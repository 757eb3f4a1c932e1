"""OpenSSH client settings for an ssh target's local tunnel: pinned host key, ssh_config.

The gateway presents its own host key (never the host's); `jitctl connect` learns it from the
tunnel check and pins it here, under a host alias (`jitctl.<target>`) rather than the local
port, which changes from run to run:

    <JITCTL_HOME>/ssh/known_hosts          one "jitctl.<target> ssh-ed25519 AAAA..." per target
    <JITCTL_HOME>/ssh/<target>-<port>.conf an ssh_config for this tunnel (removed when it closes)

`ssh -F FILE jitctl.<target>`, `scp -F FILE x jitctl.<target>:y` and `sftp -F FILE
jitctl.<target>` then reach the target through the tunnel and refuse any other key
(StrictHostKeyChecking yes). The config stands alone (`-F` skips ~/.ssh/config), so a user's
ControlMaster, ProxyJump or agent forwarding settings cannot change where the session goes.
`jitctl exec` reuses `ssh_config_text` for its environment.
"""

from __future__ import annotations

import os
from pathlib import Path

from jitctl.paths import ensure_private_dir, home

# AES-GCM first: the gateway (paramiko) has no chacha20-poly1305, and GCM is its fastest cipher.
CIPHERS = "aes128-gcm@openssh.com,aes256-gcm@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr"


def host_alias(target: str) -> str:
    return f"jitctl.{target}"


def ssh_dir(base: Path | None = None) -> Path:
    return ensure_private_dir((base or home()) / "ssh")


def pin_host_key(target: str, host_key: str, base: Path | None = None) -> Path:
    """Write (or replace) the target's line in the known_hosts file; returns its path."""
    path = ssh_dir(base) / "known_hosts"
    alias = host_alias(target)
    kept = []
    if path.exists():
        kept = [
            line
            for line in path.read_text().splitlines()
            if line.strip() and line.split()[0] != alias
        ]
    kept.append(f"{alias} {' '.join(host_key.split()[:2])}")
    tmp = path.with_name(f".known_hosts.{os.getpid()}")
    tmp.write_text("\n".join(kept) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


def ssh_config_text(target: str, port: int, known_hosts: Path, host: str = "127.0.0.1") -> str:
    """An ssh_config block for the tunnel of `target` listening on `host:port`."""
    alias = host_alias(target)
    return "\n".join(
        [
            f"Host {alias}",
            f"  HostName {host}",
            f"  Port {port}",
            f"  HostKeyAlias {alias}",
            f"  UserKnownHostsFile {known_hosts}",
            "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes",
            "  UpdateHostKeys no",
            "  CheckHostIP no",
            # identity comes from the tunnel: the gateway accepts `none`, so no key or password
            # of the user's is ever offered to it
            "  PubkeyAuthentication no",
            "  PasswordAuthentication no",
            "  KbdInteractiveAuthentication no",
            "  ControlMaster no",
            "  ControlPath none",
            "  ForwardAgent no",
            "  ForwardX11 no",
            f"  Ciphers {CIPHERS}",
            "",
        ]
    )


def write_ssh_config(target: str, port: int, known_hosts: Path, base: Path | None = None) -> Path:
    path = ssh_dir(base) / f"{target}-{port}.conf"
    path.write_text(ssh_config_text(target, port, known_hosts))
    path.chmod(0o600)
    return path


def tunnel_environment(
    prefix: str, target: str, port: int, host_key: str, base: Path | None = None
) -> tuple[dict[str, str], Path]:
    """For `jitctl exec`: environment entries that point a wrapped program's OpenSSH clients at
    the tunnel of `target` (`<PREFIX>_SSH_CONFIG`, `<PREFIX>_SSH_HOST`), and the config file to
    remove when the tunnel closes. `host_key` is the check reply's `ssh_host_key`."""
    known_hosts = pin_host_key(target, host_key, base)
    config = write_ssh_config(target, port, known_hosts, base)
    env = {f"{prefix}_SSH_CONFIG": str(config), f"{prefix}_SSH_HOST": host_alias(target)}
    return env, config
