"""A postgres session's opening: from the client's first packet to the first ReadyForQuery.

The core (core.py) hands these functions its client bytes in STARTUP and every server message
before READY; they move `core.phase` on. Everything here runs once per session, off the hot
path.

Rules (protocol-flow #PROTOCOL-FLOW-START-UP, #PROTOCOL-FLOW-CANCELING-REQUESTS):
- STARTUP: the client's untyped first packets (startup.py). SSLRequest/GSSENCRequest get `N`
  (each at most once); a StartupMessage is rebuilt with the broker's credential and sent
  upstream (`pg.startup`, durable), after a NegotiateProtocolVersion when the client asked for
  a newer minor version or `_pq_` options; a target whose policy or masks could not be loaded
  is refused (`pg.refused`, FATAL F0000); a CancelRequest goes down the cancel path. Bytes after
  the startup packet wait in `core.early` until READY.
- AUTH: the server's AuthenticationXXX messages are answered with the broker's credential
  (auth.py); nothing reaches the client. An ErrorResponse fails the login (the core turns
  `AuthFailed` into FATAL "jitctl: upstream authentication failed: ..." and Close).
- CONNECTING: after AuthenticationOk the client gets its own AuthenticationOk; ParameterStatus
  and notices go through the backend (checked, notes §9); BackendKeyData is replaced by a
  random proxy key registered in the broker's `cancel_registry` (the core removes it when the
  session ends); the first ReadyForQuery is relayed — on a masked target, or one whose policy
  reads inheritance families, only after jitctl's catalog query (table OIDs to names, column
  lists for COPY, the citext type; parent links) has run and been consumed (catalog.py).
- CANCEL: the shell dialled a fresh upstream connection for this packet; the upstream key
  found in the registry (same target only) is sent as the real CancelRequest and the core
  half-closes (it ends the session when the server hangs up, so the cancel is never dropped
  by an early Close). An unknown key is recorded and closed.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from jitctl.plugin import Close, Command, Direction, Forward, Record, RemoteProtocolError, Shutdown

from . import catalog
from . import startup as st
from .auth import AuthFailed, UpstreamAuth
from .messages import (
    authentication_ok,
    backend_key_data,
    cancel_request,
    error_fields,
    negotiate_protocol_version,
    startup_message,
)
from .state import Kill, Phase

if TYPE_CHECKING:
    from .core import PostgresCore


def startup(core: PostgresCore, data: bytes) -> list[Command]:
    core.first += data
    out: list[Command] = []
    while core.phase is Phase.STARTUP:
        length = st.packet_length(core.first)
        if length is None or len(core.first) < length:
            return out
        packet = bytes(core.first[:length])
        del core.first[:length]
        parsed = st.parse_packet(packet)
        if isinstance(parsed, st.Negotiation):
            if parsed.code in core.negotiated:
                raise RemoteProtocolError("repeated SSLRequest/GSSENCRequest")
            core.negotiated.add(parsed.code)
            out.append(Forward(Direction.DOWN, b"N"))  # protocol-flow #PROTOCOL-FLOW-SSL
        elif isinstance(parsed, st.Cancel):
            return out + _cancel(core, parsed.key)
        else:
            out += _start(core, parsed)
    core.early += core.first
    core.first = bytearray()
    return out


def _start(core: PostgresCore, packet: st.Startup) -> list[Command]:
    if core.broken:
        core.state.record("pg.refused", {"sqlstate": "F0000", "reason": core.broken})
        raise Kill("F0000", f"jitctl: this target's policy cannot be loaded ({core.broken})")
    rebuilt = st.rebuild(packet, core.credential)
    out: list[Command] = []
    if packet.minor > 0 or rebuilt.unknown_pq:
        out.append(Forward(Direction.DOWN, negotiate_protocol_version(0, rebuilt.unknown_pq)))
    client, params = rebuilt.client, rebuilt.params
    extra = {k: v for k, v in params.items() if k not in ("user", "database", "client_encoding")}
    out.append(
        Record(
            "pg.startup",
            {
                "client_user": client.get("user"),
                "client_database": client.get("database"),
                "application_name": client.get("application_name", ""),
                "upstream_user": params["user"],
                "upstream_database": params["database"],
                "settings": extra,
                "stripped": rebuilt.stripped + rebuilt.unknown_pq,
                "protocol": f"3.{packet.minor}",
            },
            durable=True,
        )
    )
    core.auth = UpstreamAuth(core.credential, params["user"])
    core.phase = Phase.AUTH
    out.append(Forward(Direction.UP, startup_message(params)))
    return out


def _cancel(core: PostgresCore, key: bytes) -> list[Command]:
    entry = core.registry.get(key)
    if entry is None or entry.get("target") != core.target:
        core.phase = Phase.CLOSED
        return [
            Record("pg.cancel", {"found": False}),
            Close("cancel request for an unknown key"),
        ]
    core.phase = Phase.CANCEL
    return [
        Record(
            "pg.cancel",
            {
                "found": True,
                "session": entry.get("session"),
                "statement": entry.get("statement"),
            },
            durable=True,
        ),
        Forward(Direction.UP, cancel_request(entry["upstream"])),
        Shutdown(Direction.UP),
    ]


def auth_message(core: PostgresCore, kind: int, body: bytes) -> bytes | None:
    assert core.auth is not None
    if kind == 0x52:  # R
        reply = core.auth.request(body)
        if reply is not None:
            core.state.out.append(Forward(Direction.UP, reply))
        if core.auth.done:
            core.phase = Phase.CONNECTING
            return authentication_ok()
        return b""
    if kind == 0x45:  # E
        fields = error_fields(body)
        raise AuthFailed(fields.get("M", "the server refused the login"))
    if kind in (0x4E, 0x76):  # N, v: nothing the client needs before it is authenticated
        return b""
    raise RemoteProtocolError(f"unexpected message type {chr(kind)!r} during authentication")


def connecting_message(core: PostgresCore, kind: int, body: bytes) -> bytes | None:
    if kind == 0x53:  # S ParameterStatus
        return core.backend.message(kind, body, len(body) + 4)
    if kind == 0x4E:  # N
        return core.backend.message(kind, body, len(body) + 4)
    if kind == 0x4B:  # K BackendKeyData (protocol-flow #PROTOCOL-FLOW-CANCELING-REQUESTS)
        if len(body) != 8:
            raise RemoteProtocolError("BackendKeyData is not a 3.0 key")
        pid = (secrets.randbelow(2**31 - 2) + 1).to_bytes(4, "big")
        core.proxy_key = pid + secrets.token_bytes(4)
        entry = {
            "upstream": body,
            "target": core.target,
            "session": core.session_id,
            "statement": None,
        }
        core.registry[core.proxy_key] = entry
        core.state.cancel_entry = entry
        return backend_key_data(core.proxy_key)
    if kind == 0x45:  # E: the server refuses the session (e.g. no such database)
        fields = error_fields(body)
        raise Kill(fields.get("C", "08006"), fields.get("M", "the server ended the session"))
    if kind == 0x5A:  # Z: the first ReadyForQuery
        if body not in (b"I", b"T", b"E"):
            raise RemoteProtocolError("ReadyForQuery with an unknown transaction status")
        core.phase = Phase.READY
        core.down.sink = core.backend  # from the next message on
        core.state.book.tx_status = body.decode()
        needed = catalog.parts(core.state)
        if not needed:
            return None
        core.backend.hold_ready(b"Z" + (len(body) + 4).to_bytes(4, "big") + body)
        catalog.start(core.state, needed)
        return b""
    raise RemoteProtocolError(f"unexpected message type {chr(kind)!r} during startup")
