"""The gateway's own SSH connection to the host: dial, check the host key, log in.

Blocking (paramiko); the session runs it in a thread. The user is the first of the caller's
groups found in the target's `ssh.users` table, else `credential.user`. The credential is the
broker's: `credential.key_file` (a private key, unencrypted) and/or a password
(`password_env` / `password_file`); the key is tried first. Every failure is an
`UpstreamRefused` whose message says what to fix; the client only ever hears the refusal.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from jitctl.gateway.ssh.hostkey import HostKeyVerdict, check_host_key, fingerprint
from jitctl.gateway.ssh.wire import GatewayTransport

CONNECT_TIMEOUT = 10.0


class UpstreamRefused(Exception):
    def __init__(self, error: str, hint: str = "") -> None:
        super().__init__(error)
        self.error, self.hint = error, hint


@dataclass
class Upstream:
    transport: Any  # GatewayTransport, authenticated
    user: str
    host_key: str  # "ssh-ed25519 SHA256:..."
    verdict: HostKeyVerdict


def upstream_user(target: Any, groups: tuple[str, ...], credential: dict[str, str]) -> str:
    table = dict(getattr(getattr(target, "ssh", None), "users", {}) or {})
    for group, user in table.items():
        if group in groups:
            return str(user)
    return credential.get("user") or target.credential.user


def connect_upstream(
    target: Any, credential: dict[str, str], groups: tuple[str, ...], state_dir: Path | str
) -> Upstream:
    host, _, port_text = target.address.rpartition(":")
    host, port = host.strip("[]"), int(port_text)
    user = upstream_user(target, groups, credential)
    if not user:
        raise UpstreamRefused(
            f"target {target.name} has no upstream user",
            "set credential.user (or ssh.users) in the broker config",
        )
    try:
        sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        raise UpstreamRefused(f"cannot reach {target.name} at {target.address}: {exc}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = GatewayTransport(sock)
    try:
        try:
            transport.start_client(timeout=CONNECT_TIMEOUT)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise UpstreamRefused(f"ssh handshake with {target.address} failed: {exc}") from None
        key = transport.get_remote_server_key()
        verdict = check_host_key(target, state_dir, host, port, key.get_name(), key.get_base64())
        if not verdict.ok:
            raise UpstreamRefused(
                f"host key check failed for {target.name} ({target.address}): {verdict.reason}",
                "if the host's key really changed, update ssh.host_keys / ssh.known_hosts "
                "(or the broker's ssh_known_hosts) in the broker config",
            )
        _login(transport, target, user, credential)
        transport.set_keepalive(30)
        return Upstream(
            transport,
            user,
            f"{key.get_name()} {fingerprint(key.get_name(), key.get_base64())}",
            verdict,
        )
    except BaseException:
        transport.close()
        raise


def _login(transport: Any, target: Any, user: str, credential: dict[str, str]) -> None:
    key_file = target.credential.key_file
    password = credential.get("password", "")
    problems: list[str] = []
    if key_file:
        try:
            pkey = paramiko.PKey.from_path(key_file)
        except (OSError, paramiko.SSHException, ValueError) as exc:
            problems.append(f"cannot load credential.key_file {key_file}: {exc}")
        else:
            try:
                transport.auth_publickey(user, pkey)
            except paramiko.AuthenticationException:
                problems.append(f"the host refused the key {key_file} for {user}")
            except (paramiko.SSHException, OSError) as exc:
                problems.append(f"key login failed: {exc}")
            if transport.is_authenticated():
                return
    if password:
        try:
            transport.auth_password(user, password)
        except paramiko.AuthenticationException:
            problems.append(f"the host refused the password for {user}")
        except (paramiko.SSHException, OSError) as exc:
            problems.append(f"password login failed: {exc}")
        if transport.is_authenticated():
            return
    if not key_file and not password:
        problems.append("no credential.key_file or password is configured")
    raise UpstreamRefused(
        f"the broker cannot log in to {target.name} as {user}: " + "; ".join(problems),
        "check the target's credential in the broker config",
    )
