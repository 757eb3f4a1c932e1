"""The postgres core: one session's state machine, bytes in, commands out (STYLE.md, h11-style).

Phases (`state.Phase`):
- STARTUP, AUTH, CONNECTING, CANCEL: the session's opening, from the client's first packet to
  the first ReadyForQuery, or a cancel request forwarded (opening.py states its rules). Client
  bytes that arrive before READY wait (bounded by `EARLY_CAP`) and go up once it is reached
  and jitctl's catalog query (catalog.py), if any, has answered: until then the policy does not
  know the session's inheritance families (families.py).
- READY: frontend.py and backend.py handle every message (framing.py splits them); the server
  framer's sink is the backend from then on, so nothing of the opening runs per message.
- CLOSED: everything is ignored.

Held statements (holds.py, notes §6): while a client message is held the client's framer is
paused (bytes buffer, up to `HOLD_CAP`, then the session ends) and a client EOF waits too;
`resume(hold_id, review)` releases the message (as sent, or rewritten to fail) and what waited
behind it. The NoticeResponse naming the request goes to the client at a message boundary
(never inside a result row being streamed). `terminate(reason)` ends the session for the
broker (a grant expired or was revoked) with a FATAL the client shows.

Errors: `Kill` (and a message over the masking limit, a failed upstream login, a refused
startup) end the session with a FATAL the client shows, then Close. Any exception other than
`RemoteProtocolError` is a bug: parsers raise only that, and the fuzz tests hold the core to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from jitctl.plugin import (
    Close,
    Command,
    Direction,
    Forward,
    RemoteProtocolError,
    Review,
    SessionContext,
    Shutdown,
)

from . import catalog, opening
from . import startup as st
from .auth import AuthFailed, UpstreamAuth
from .backend import MASK_CAP, Backend
from .framing import Frames, TooLarge
from .frontend import Frontend
from .messages import MAX_MESSAGE, fatal
from .state import Kill, Phase, Services, SessionState

EARLY_CAP = 1024 * 1024
HOLD_CAP = 16 * 1024 * 1024  # client bytes kept behind a held statement


def _write_ahead(target: Any) -> str:
    """The target's `postgres.write_ahead` ("all" unless set; jitctl.config.PostgresOptions)."""
    return str(getattr(getattr(target, "postgres", None), "write_ahead", "all"))


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
            reads_wait=_write_ahead(context.target) != "changes",
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
            return self._guard(lambda: opening.startup(self, data))
        if self.phase is not Phase.READY or self.backend.held_ready:
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
            if self.phase is Phase.READY and self.early and not self.backend.held_ready:
                early, self.early = bytes(self.early), bytearray()
                out += self._forward(Direction.UP, self.up.feed(early))
            return out

        return step

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
            return opening.auth_message(self, kind, body)
        return opening.connecting_message(self, kind, body)
