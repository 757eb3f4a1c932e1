"""Forwarding requests: refused and recorded unless the target lists the destination.

- direct-tcpip (`ssh -L`, `-W`, `-D`): checked against `ssh.forward`, recorded durably, then a
  direct-tcpip channel to the host carries it (`accepted` starts the relay once paramiko hands
  the channel over); its bytes are recorded as `ssh.forward.data`.
- tcpip-forward (`ssh -R`): checked against `ssh.remote_forward`; each connection the host then
  forwards is recorded and relayed back to the client as a forwarded-tcpip channel.
- agent, X11, unix sockets, other channel types: always refused, always recorded.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from typing import Any

import jitctl_ssh.events as events
from jitctl.gateway.ssh.relay import RecordingFailed
from jitctl.gateway.ssh.server import (
    OPEN_CONNECT_FAILED,
    OPEN_PROHIBITED,
    OPEN_SUCCEEDED,
    OPEN_TIMEOUT,
    ChannelState,
    Connection,
)
from jitctl_ssh.channel import ChannelRecorder
from jitctl_ssh.policy import Decision

log = logging.getLogger("jitctl.gateway.ssh")
FORWARD_DATA_KIND = "ssh.forward.data"


def open_direct(
    conn: Connection, chanid: int, origin: tuple[str, int], destination: tuple[str, int]
) -> int:
    host, port = str(destination[0]), int(destination[1])
    where = f"{origin[0]}:{origin[1]}"
    decision = conn.policy.check_forward("direct-tcpip", host, port)
    try:
        conn.record(
            events.forward(
                "direct-tcpip", decision, host=host, port=port, origin=where, channel=chanid
            ),
            wait=True,
        )
    except RecordingFailed:
        return OPEN_PROHIBITED
    if not decision.allowed:
        return OPEN_PROHIBITED
    try:
        upstream = conn.upstream.transport.open_channel(
            "direct-tcpip", (host, port), (str(origin[0]), int(origin[1])), timeout=OPEN_TIMEOUT
        )
    except Exception as exc:
        log.info("forward refused by the host", extra={"error": str(exc)})
        return OPEN_CONNECT_FAILED
    with conn.lock:
        conn.channels[chanid] = ChannelState("direct-tcpip", upstream, forward=(host, port, where))
    return OPEN_SUCCEEDED


def accepted(conn: Connection, channel: Any) -> None:
    """A channel the client opened (paramiko's accept queue): forwards start relaying."""
    state = conn.state(channel)
    if state is None or state.kind != "direct-tcpip" or state.started:
        return
    state.started = True
    core = ChannelRecorder(
        channel.get_id(), pty=False, chunk_size=conn.chunk_size, data_kind=FORWARD_DATA_KIND
    )
    conn.relay(channel, state, core, stderr=False, exit_status=False)


def refuse_forward(conn: Connection, kind: str, channel: Any = None, **where: Any) -> bool:
    decision = Decision("deny", "ssh.forward", f"{kind} is not relayed by the gateway")
    chanid = channel.get_id() if channel is not None else None
    conn.record_quietly(events.forward(kind, decision, channel=chanid, **where))
    return False


def remote_forward(conn: Connection, address: str, port: int) -> int | bool:
    decision = conn.policy.check_forward("tcpip-forward", address, port)
    try:
        conn.record(events.forward("tcpip-forward", decision, host=address, port=port), wait=True)
    except RecordingFailed:
        return False
    if not decision.allowed:
        return False
    try:
        bound = conn.upstream.transport.request_port_forward(
            address, port, handler=functools.partial(_forwarded, conn)
        )
    except Exception as exc:
        log.info("host refused a remote forward", extra={"error": str(exc)})
        return False
    return int(bound)


def cancel_remote_forward(conn: Connection, address: str, port: int) -> None:
    with contextlib.suppress(Exception):
        conn.upstream.transport.cancel_port_forward(address, port)


def _forwarded(
    conn: Connection, upstream_chan: Any, origin: tuple[str, int], server: tuple[str, int]
) -> None:
    """The host opened a connection on a remote-forwarded port (upstream transport thread)."""

    def open_to_client() -> None:
        where = f"{origin[0]}:{origin[1]}"
        allowed = Decision("allow", "ssh.forward")
        try:
            conn.record(
                events.forward(
                    "forwarded-tcpip", allowed, host=str(server[0]), port=int(server[1]),
                    origin=where,
                ),
                wait=True,
            )  # fmt: skip
            client_chan = conn.transport.open_forwarded_tcpip_channel(origin, server)
        except Exception:
            upstream_chan.close()
            return
        state = ChannelState("forwarded-tcpip", upstream_chan, started=True)
        with conn.lock:
            conn.channels[client_chan.get_id()] = state
        core = ChannelRecorder(
            client_chan.get_id(), pty=False, chunk_size=conn.chunk_size,
            data_kind=FORWARD_DATA_KIND,
        )  # fmt: skip
        conn.relay(client_chan, state, core, stderr=False, exit_status=False)

    threading.Thread(target=open_to_client, name="ssh-forwarded", daemon=True).start()
