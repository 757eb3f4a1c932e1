"""The records of an SSH connection's requests: one function per kind, payloads in one place.

Channel data has its own cores (channel.py, sftp.py, scp.py); this module covers the requests
that open or refuse things (docs/audit-schema.md lists every kind):

- `ssh.connection`: the gateway's connection to the host is up: upstream user, host key
  (type and SHA-256 fingerprint) and how it was trusted, the client's ssh version and the user
  name it asked for (ignored: identity comes from the tunnel);
- `ssh.host_key`: a host key learned on first use;
- `ssh.shell`, `ssh.exec`, `ssh.subsystem`: a session channel's request with the decision,
  durable before anything runs on the host; `ssh.exec.decided`: how an exec held for approval
  was decided, durable before it runs;
- `ssh.forward`: a forwarding request (direct-tcpip, tcpip-forward, agent, X11, unix
  sockets) with the decision;
- `ssh.channel.error`: a channel ended because its bytes broke the protocol or the host
  refused a request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jitctl.plugin import Record
from jitctl_ssh.cmdline import Analysis
from jitctl_ssh.policy import Decision

MAX_COMMAND = 8192


def connection(
    user: str, host_key: str, trusted: str, client_version: str, client_user: str
) -> Record:
    return Record(
        "ssh.connection",
        {
            "upstream_user": user,
            "host_key": host_key,
            "host_key_trust": trusted,
            "client_version": client_version[:200],
            "client_user": client_user[:200],
        },
        durable=True,
    )


def host_key_learned(address: str, host_key: str) -> Record:
    return Record("ssh.host_key", {"upstream": address, "host_key": host_key, "learned": True})


def _pty(pty: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return dict(pty) if pty else None


def shell(
    channel: int, decision: Decision, pty: Mapping[str, Any] | None, env: Sequence[str]
) -> Record:
    payload = {"channel": channel, "pty": _pty(pty), "env": list(env), **decision.payload()}
    return Record("ssh.shell", payload, durable=True)


def exec_(
    channel: int,
    command: str,
    decision: Decision,
    analysis: Analysis,
    pty: Mapping[str, Any] | None,
    env: Sequence[str],
    transfer: str = "",
    hold: str = "",
) -> Record:
    payload: dict[str, Any] = {
        "channel": channel,
        "command": command[:MAX_COMMAND],
        "programs": analysis.programs()[:50],
        "pty": _pty(pty),
        "env": list(env),
        **decision.payload(),
    }
    if len(command) > MAX_COMMAND:
        payload["command_len"] = len(command)
    if analysis.opaque:
        payload["opaque"] = analysis.opaque
    if transfer:
        payload["transfer"] = transfer  # "scp upload" / "scp download"
    if hold:
        payload["hold"] = hold  # the approval request it waits for
    return Record("ssh.exec", payload, durable=True)


def approved_exec(channel: int, hold: str, decision: Decision) -> Record:
    """How a held exec command was decided; durable before it runs (or is refused)."""
    return Record(
        "ssh.exec.decided", {"channel": channel, "hold": hold, **decision.payload()}, durable=True
    )


def subsystem(channel: int, name: str, decision: Decision, home: str = "") -> Record:
    payload: dict[str, Any] = {"channel": channel, "name": name[:200], **decision.payload()}
    if home:
        payload["home"] = home
    return Record("ssh.subsystem", payload, durable=True)


def forward(
    kind: str,
    decision: Decision,
    *,
    host: str = "",
    port: int = 0,
    origin: str = "",
    channel: int | None = None,
) -> Record:
    payload: dict[str, Any] = {"kind": kind, **decision.payload()}
    if host or port:
        payload["destination"] = f"{host}:{port}"
    if origin:
        payload["origin"] = origin
    if channel is not None:
        payload["channel"] = channel
    return Record("ssh.forward", payload, durable=True)


def channel_error(channel: int, error: str) -> Record:
    return Record("ssh.channel.error", {"channel": channel, "error": error[:500]})
