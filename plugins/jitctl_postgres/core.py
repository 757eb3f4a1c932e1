"""The postgres core: one session's state machine, bytes in, commands out (STYLE.md, h11-style).

Phases (protocol-flow #PROTOCOL-FLOW-START-UP, #PROTOCOL-FLOW-CANCELING-REQUESTS):
- STARTUP: the client's untyped first packets (startup.py). SSLRequest/GSSENCRequest get `N`;
  a StartupMessage is rebuilt and sent upstream (`pg.startup`, durable); a refused one gets a
  FATAL and Close; a CancelRequest goes down the cancel path.
- AUTH: the server's AuthenticationXXX messages are answered with the broker's credential
  (auth.py); nothing reaches the client. Failure: FATAL "jitctl: upstream authentication
  failed: ..." and Close. Client bytes that arrive meanwhile wait (bounded).
- CONNECTING: after AuthenticationOk the client gets its own AuthenticationOk; ParameterStatus
  is relayed (and checked, notes §9); BackendKeyData is replaced by a random proxy key
  registered in the broker's `cancel_registry` (removed by `session_ended`); the first
  ReadyForQuery is relayed — on a masked target only after jitctl's catalog query (table OIDs
  to names, column lists for COPY, the citext type) has run and been consumed here.
- READY: frontend.py and backend.py handle every message (framing.py splits them).
- CANCEL: the shell dialled a fresh upstream connection for this session; the upstream key
  found in the registry (same target only) is sent as the real CancelRequest, then the core
  half-closes and ends the session when the server hangs up (so the cancel is never dropped
  by an early Close). An unknown key is recorded and closed.
- CLOSED: everything is ignored.

Held statements (holds.py, notes §6): while a client message is held the client's framer is
paused (bytes buffer, up to `HOLD_CAP`, then the session ends) and a client EOF waits too;
`resume(hold_id, review)` releases the message (as sent, or rewritten to fail) and what waited
behind it. The NoticeResponse naming the request goes to the client at a message boundary
(never inside a result row being streamed). `terminate(reason)` ends the session for the
broker (a grant expired or was revoked) with a FATAL the client shows.

Any exception other than `RemoteProtocolError` is a bug: parsers raise only that, and the
fuzz tests hold the core to it.
"""

from __future__ import annotations

import enum
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from jitctl.plugin import (
    Close,
    Command,
    Direction,
    Forward,
    Record,
    RemoteProtocolError,
    Review,
    SessionContext,
    Shutdown,
)

from . import catalog
from . import startup as st
from .auth import AuthFailed, UpstreamAuth
from .backend import MASK_CAP, Backend
from .framing import Frames, TooLarge
from .frontend import Frontend
from .messages import (
    MAX_MESSAGE,
    authentication_ok,
    backend_key_data,
    cancel_request,
    error_fields,
    fatal,
    negotiate_protocol_version,
    startup_message,
)
from .state import Kill, Services, SessionState

EARLY_CAP = 1024 * 1024
HOLD_CAP = 16 * 1024 * 1024  # client bytes kept behind a held statement


class Phase(enum.Enum):
    STARTUP = "startup"
    AUTH = "auth"
    CONNECTING = "connecting"
    READY = "ready"
    CANCEL = "cancel"
    CLOSED = "closed"


class PostgresCore:
    def __init__(
        self,
        context: SessionContext,
        services: Services,
        *,
        clock: Callable[[], float] = time.monotonic,
        broken: str = "",
    ) -> None:
        settings = context.settings
        self.credential: dict[str, str] = dict(settings.get("credential") or {})
        registry = settings.get("cancel_registry")
        self.registry: dict[bytes, Any] = registry if registry is not None else {}
        self.session_id = context.session_id
        self.target = str(getattr(context.target, "name", "") or "")
        self.state = SessionState(
            services,
            groups=tuple(context.groups),
            target=self.target,
            record_rows=int(getattr(context.target, "record_rows", 0) or 0),
            clock=clock,
        )
        self.frontend = Frontend(self.state)
        self.frontend.approvals = settings.get("approvals")  # None: approve means refuse
        self.eof_held = False  # the client's EOF came while a statement was held
        self.backend = Backend(self.state, lambda p, k, b: catalog.message(self.state, p, k, b))
        self.up = Frames(self.frontend)
        self.down = Frames(self)
        self.phase = Phase.STARTUP
        self.first = bytearray()
        self.early = bytearray()
        self.negotiated: set[int] = set()
        self.auth: UpstreamAuth | None = None
        self.proxy_key: bytes | None = None
        self.broken = broken  # why the target's policy or masks could not be loaded

    # -- the Core interface -------------------------------------------------------------------

    def client_data(self, data: bytes) -> Sequence[Command]:
        if self.phase is Phase.CLOSED or self.phase is Phase.CANCEL:
            return []
        if self.phase is Phase.STARTUP:
            return self._guard(lambda: self._startup(data))
        if self.phase is not Phase.READY:
            self.early += data
            if len(self.early) > EARLY_CAP:
                raise RemoteProtocolError("client sent too much before the session was ready")
            return []
        return self._guard(lambda: self._client_ready(data))

    def upstream_data(self, data: bytes) -> Sequence[Command]:
        if self.phase is Phase.CLOSED or self.phase is Phase.CANCEL:
            return []
        if self.phase is Phase.STARTUP:
            raise RemoteProtocolError("the server spoke before the client's startup")
        return self._guard(self._down_then_early(data))

    def client_eof(self) -> Sequence[Command]:
        if self.phase is Phase.STARTUP:
            self.phase = Phase.CLOSED
            return [Close("client closed before its startup message")]
        if self.phase in (Phase.CLOSED, Phase.CANCEL):
            return []
        if self.up.paused:
            self.eof_held = True
            return []
        return [Shutdown(Direction.UP)]

    def upstream_eof(self) -> Sequence[Command]:
        if self.phase is Phase.CANCEL:
            self.phase = Phase.CLOSED
            return [Close("cancel request forwarded")]
        if self.phase in (Phase.AUTH, Phase.CONNECTING):
            return self._kill(
                Kill("08006", "jitctl: the server closed the connection during startup")
            )
        if self.phase is Phase.CLOSED:
            return []
        return [Shutdown(Direction.DOWN)]

    def resume(self, hold_id: str, review: Review) -> Sequence[Command]:
        """jitctl.plugin.Holding: the held message goes up as sent or rewritten to fail,
        then whatever waited behind it (which may hold again)."""
        if self.phase is not Phase.READY:
            return []
        return self._guard(lambda: self._resume(hold_id, review))

    def terminate(self, reason: str) -> Sequence[Command]:
        """The broker ends the session: the client gets a FATAL (57P01 admin_shutdown) with
        the reason, unless no message boundary is available (startup, a row half sent)."""
        if self.phase in (Phase.CLOSED, Phase.CANCEL):
            return []
        tell = self.phase is not Phase.STARTUP and not self.down.remaining
        self.phase = Phase.CLOSED
        out = self._drain()
        if tell:
            out.append(Forward(Direction.DOWN, fatal("57P01", f"jitctl: {reason}")))
        out.append(Close(reason, error=True))
        return out

    def session_ended(self) -> Sequence[Command]:
        if self.proxy_key is not None:
            self.registry.pop(self.proxy_key, None)
            self.proxy_key = None
        return []

    # -- plumbing -----------------------------------------------------------------------------

    def _guard(self, step: Callable[[], list[Command]]) -> list[Command]:
        try:
            return step()
        except Kill as kill:
            return self._kill(kill)
        except TooLarge as exc:
            return self._kill(
                Kill(
                    "54000",
                    f"jitctl: a {chr(exc.kind)!r} message of {exc.length} "
                    f"bytes is over the {MASK_CAP // 2**20} MiB masking "
                    "limit; withheld",
                )
            )
        except AuthFailed as exc:
            return self._kill(Kill("28000", f"jitctl: upstream authentication failed: {exc}"))
        except st.Refused as exc:
            self.state.record("pg.refused", {"sqlstate": exc.sqlstate, "reason": exc.message})
            return self._kill(Kill(exc.sqlstate, exc.message))

    def _kill(self, kill: Kill) -> list[Command]:
        self.phase = Phase.CLOSED
        out = self._drain()
        out.append(Forward(Direction.DOWN, fatal(kill.sqlstate, kill.message)))
        out.append(Close(kill.message, error=True))
        return out

    def _drain(self) -> list[Command]:
        out, self.state.out = self.state.out, []
        return out

    def _forward(self, direction: Direction, data: bytes) -> list[Command]:
        out = self._drain()
        if data:
            out.append(Forward(direction, data))
        if self.frontend.notice and not self.down.remaining:
            out.append(Forward(Direction.DOWN, self.frontend.notice))
            self.frontend.notice = b""
        return out

    def _client_ready(self, data: bytes) -> list[Command]:
        forwarded = self.up.feed(data)
        if self.up.paused and self.up.pending > HOLD_CAP:
            raise Kill("54000", "jitctl: too much sent while a statement waits for approval")
        return self._forward(Direction.UP, forwarded)

    def _resume(self, hold_id: str, review: Review) -> list[Command]:
        released = self.frontend.release(hold_id, review)
        if released is None:
            return []
        out = self._forward(Direction.UP, released + self.up.resume())
        if self.eof_held and not self.up.paused:
            self.eof_held = False
            out.append(Shutdown(Direction.UP))
        return out

    def _down_then_early(self, data: bytes) -> Callable[[], list[Command]]:
        def step() -> list[Command]:
            out = self._forward(Direction.DOWN, self.down.feed(data))
            if self.phase is Phase.READY and self.early:
                early, self.early = bytes(self.early), bytearray()
                out += self._forward(Direction.UP, self.up.feed(early))
            return out

        return step

    # -- STARTUP ------------------------------------------------------------------------------

    def _startup(self, data: bytes) -> list[Command]:
        self.first += data
        out: list[Command] = []
        while self.phase is Phase.STARTUP:
            length = st.packet_length(self.first)
            if length is None or len(self.first) < length:
                return out
            packet = bytes(self.first[:length])
            del self.first[:length]
            parsed = st.parse_packet(packet)
            if isinstance(parsed, st.Negotiation):
                if parsed.code in self.negotiated:
                    raise RemoteProtocolError("repeated SSLRequest/GSSENCRequest")
                self.negotiated.add(parsed.code)
                out.append(Forward(Direction.DOWN, b"N"))  # protocol-flow #PROTOCOL-FLOW-SSL
            elif isinstance(parsed, st.Cancel):
                return out + self._cancel(parsed.key)
            else:
                out += self._start(parsed)
        self.early += self.first
        self.first = bytearray()
        return out

    def _start(self, packet: st.Startup) -> list[Command]:
        if self.broken:
            self.state.record("pg.refused", {"sqlstate": "F0000", "reason": self.broken})
            raise Kill("F0000", f"jitctl: this target's policy cannot be loaded ({self.broken})")
        rebuilt = st.rebuild(packet, self.credential)
        out: list[Command] = []
        if packet.minor > 0 or rebuilt.unknown_pq:
            out.append(Forward(Direction.DOWN, negotiate_protocol_version(0, rebuilt.unknown_pq)))
        client, params = rebuilt.client, rebuilt.params
        extra = {
            k: v for k, v in params.items() if k not in ("user", "database", "client_encoding")
        }
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
        self.auth = UpstreamAuth(self.credential, params["user"])
        self.phase = Phase.AUTH
        out.append(Forward(Direction.UP, startup_message(params)))
        return out

    def _cancel(self, key: bytes) -> list[Command]:
        entry = self.registry.get(key)
        if entry is None or entry.get("target") != self.target:
            self.phase = Phase.CLOSED
            return [
                Record("pg.cancel", {"found": False}),
                Close("cancel request for an unknown key"),
            ]
        self.phase = Phase.CANCEL
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

    # -- framing.Sink for the server's bytes ---------------------------------------------------

    inspected = range(256)  # before READY every server message is read here

    def limit(self, kind: int) -> int:
        return self.backend.limit(kind) if self.phase is Phase.READY else MAX_MESSAGE

    def stream_start(self, kind: int, length: int) -> bool:
        return self.phase is Phase.READY and self.backend.stream_start(kind, length)

    def message(self, kind: int, body: bytes | None, length: int) -> bytes | None:
        if self.phase is Phase.READY:
            return self.backend.message(kind, body, length)
        if self.phase is Phase.CLOSED:
            return b""
        assert body is not None
        if self.phase is Phase.AUTH:
            return self._auth_message(kind, body)
        return self._connecting_message(kind, body)

    def _auth_message(self, kind: int, body: bytes) -> bytes | None:
        assert self.auth is not None
        if kind == 0x52:  # R
            reply = self.auth.request(body)
            if reply is not None:
                self.state.out.append(Forward(Direction.UP, reply))
            if self.auth.done:
                self.phase = Phase.CONNECTING
                return authentication_ok()
            return b""
        if kind == 0x45:  # E
            fields = error_fields(body)
            raise AuthFailed(fields.get("M", "the server refused the login"))
        if kind in (0x4E, 0x76):  # N, v: nothing the client needs before it is authenticated
            return b""
        raise RemoteProtocolError(f"unexpected message type {chr(kind)!r} during authentication")

    def _connecting_message(self, kind: int, body: bytes) -> bytes | None:
        if kind == 0x53:  # S ParameterStatus
            return self.backend.message(kind, body, len(body) + 4)
        if kind == 0x4E:  # N
            return self.backend.message(kind, body, len(body) + 4)
        if kind == 0x4B:  # K BackendKeyData (protocol-flow #PROTOCOL-FLOW-CANCELING-REQUESTS)
            if len(body) != 8:
                raise RemoteProtocolError("BackendKeyData is not a 3.0 key")
            pid = (secrets.randbelow(2**31 - 2) + 1).to_bytes(4, "big")
            self.proxy_key = pid + secrets.token_bytes(4)
            entry = {
                "upstream": body,
                "target": self.target,
                "session": self.session_id,
                "statement": None,
            }
            self.registry[self.proxy_key] = entry
            self.state.cancel_entry = entry
            return backend_key_data(self.proxy_key)
        if kind == 0x45:  # E: the server refuses the session (e.g. no such database)
            fields = error_fields(body)
            raise Kill(fields.get("C", "08006"), fields.get("M", "the server ended the session"))
        if kind == 0x5A:  # Z: the first ReadyForQuery
            if body not in (b"I", b"T", b"E"):
                raise RemoteProtocolError("ReadyForQuery with an unknown transaction status")
            self.phase = Phase.READY
            self.down.sink = self.backend  # from the next message on
            self.state.book.tx_status = body.decode()
            if self.state.masks is None:
                return None
            self.backend.held_ready = b"Z" + (len(body) + 4).to_bytes(4, "big") + body
            catalog.start(self.state)
            return b""
        raise RemoteProtocolError(f"unexpected message type {chr(kind)!r} during startup")
