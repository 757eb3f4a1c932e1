"""The ssh plugin's shell: paramiko on both sides of the gateway (docs/ssh.md).

`run_session(io)` is the ssh plugin's `run_session` (jitctl.plugin, custom shells). For one
tunnel it:

1. connects to the host with the broker's credential and checks its host key (`upstream.py`),
   in a thread; a failure is the tunnel's refusal (`upstream`), recorded by the gateway;
2. writes `session.start` and answers the tunnel (`io.start()`);
3. runs a paramiko *server* transport with the gateway's host key over one end of a
   socketpair; the other end is pumped to and from the tunnel by two asyncio tasks;
4. lets `server.Connection` decide, record and relay each channel;
5. ends when the client's SSH connection ends, the host's does, or the gateway ends the session
   (`io.ended`: max_session, broker shutdown, audit failure) — then closes everything.

Threads: paramiko's two transport threads, an accept thread, and per relayed channel two or
three reader threads (relay.py). Records go through `relay.Bridge`: on the event loop, except a
keystroke's durable record, which the reader thread appends straight to the audit writer and
whose commit wakes that thread directly (two loop hops fewer per line).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import jitctl_ssh.events as events
from jitctl_ssh.policy import SshPolicy
from jitctl_ssh.streammask import Mask

log = logging.getLogger("jitctl.gateway.ssh")
T = TypeVar("T")
PUMP_SIZE = 256 * 1024


def build_mask(target: Any) -> Mask | None:
    """The target's detectors as a bytes masker (jitctl.masking), or None without any."""
    if not any(mask.detectors for mask in target.masks):
        return None
    from jitctl.masking import MaskPolicy

    scanner = MaskPolicy.from_config(target.masks).scanner
    redact: Mask = scanner.redact
    return redact


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking call in its own thread (the default executor is small and shared)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:
            loop.call_soon_threadsafe(_settle, future, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, future, result, None)

    threading.Thread(target=run, name="ssh-connect", daemon=True).start()
    return await future


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


async def run_session(io: Any) -> None:
    from jitctl.gateway.ssh.hostkey import load_gateway_key
    from jitctl.gateway.ssh.upstream import UpstreamRefused, connect_upstream

    context = io.context
    target = context.target
    state_dir = Path(context.settings.get("state_dir") or ".")
    approvals = context.settings.get("approvals") or {}
    can_hold = bool(approvals) and hasattr(io, "hold")
    policy = SshPolicy.from_target(target, context.groups, approvals=can_hold)
    try:
        mask = build_mask(target)
    except Exception as exc:
        await io.refuse("unavailable", f"cannot build the masks of {target.name}: {exc}")
        return
    try:
        host_key = await _in_thread(load_gateway_key, state_dir)
        upstream = await _in_thread(
            connect_upstream,
            target,
            dict(context.settings.get("credential") or {}),
            tuple(context.groups),
            state_dir,
        )
    except UpstreamRefused as exc:
        await io.refuse("upstream", exc.error, exc.hint)
        return
    try:
        await io.start()
    except Exception:
        upstream.transport.close()
        return
    try:
        await _relay(io, policy, upstream, host_key, mask)
    finally:
        upstream.transport.close()


async def _relay(
    io: Any, policy: SshPolicy, upstream: Any, host_key: Any, mask: Mask | None
) -> None:
    from jitctl.gateway.ssh.interface import GatewayServer
    from jitctl.gateway.ssh.relay import Bridge
    from jitctl.gateway.ssh.server import Connection
    from jitctl.gateway.ssh.wire import GatewayTransport

    loop = asyncio.get_running_loop()
    bridge = Bridge(io, loop)
    context = io.context
    if upstream.verdict.how == "first use":
        io.record(events.host_key_learned(context.target.address, upstream.host_key))
    approvals = context.settings.get("approvals") or {}
    conn = Connection(
        bridge,
        policy,
        upstream,
        chunk_size=context.chunk_size,
        mask=mask,
        hold=io.hold if policy.approvals else None,
        released=io.released if policy.approvals else None,
        approval_timeout=float(approvals.get("timeout") or 0),
    )
    ours, theirs = socket.socketpair()
    transport = GatewayTransport(theirs)
    transport.add_server_key(host_key)
    conn.transport = transport
    server = GatewayServer(conn)
    transport.start_server(event=threading.Event(), server=server)
    threading.Thread(
        target=_accept_loop, args=(transport, conn), name="ssh-accept", daemon=True
    ).start()
    host_gone: asyncio.Future[None] = loop.create_future()
    threading.Thread(
        target=_watch, args=(upstream.transport, loop, host_gone), name="ssh-watch", daemon=True
    ).start()
    reader, writer = await asyncio.open_connection(sock=ours, limit=PUMP_SIZE)
    to_ssh = asyncio.ensure_future(_client_to_ssh(io, writer))
    from_ssh = asyncio.ensure_future(_ssh_to_client(reader, io))
    ended = asyncio.ensure_future(io.ended.wait())
    try:
        done, _ = await asyncio.wait({from_ssh, ended, host_gone}, return_when="FIRST_COMPLETED")
        if host_gone in done:
            io.end("the host closed the connection")
        elif from_ssh in done:
            exc = from_ssh.exception()
            io.end(f"client connection lost: {exc}" if exc else "the client closed the connection")
    finally:
        conn.close()
        transport.close()
        for task in (to_ssh, from_ssh, ended):
            task.cancel()
        if not host_gone.done():
            host_gone.cancel()
        await asyncio.gather(to_ssh, from_ssh, ended, return_exceptions=True)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _client_to_ssh(io: Any, writer: asyncio.StreamWriter) -> None:
    while data := await io.read():
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


async def _ssh_to_client(reader: asyncio.StreamReader, io: Any) -> None:
    while data := await reader.read(PUMP_SIZE):
        await io.write(data)


def _accept_loop(transport: Any, conn: Any) -> None:
    from jitctl.gateway.ssh import forwarding

    while transport.is_active() and not conn.closed.is_set():
        channel = transport.accept(1.0)
        if channel is not None:
            forwarding.accepted(conn, channel)


def _watch(transport: Any, loop: asyncio.AbstractEventLoop, gone: asyncio.Future[None]) -> None:
    transport.join()
    with contextlib.suppress(RuntimeError):  # the loop may be closed already
        loop.call_soon_threadsafe(_settle, gone, None, None)
