"""The interface a protocol plugin implements, and the registry that finds plugins.

A plugin is a sans-I/O *core* (bytes in, commands out; no sockets, no asyncio) that the gateway
shell in `jitctl.gateway` drives. The shell reads bytes from the client or the upstream, hands
them to the core, and executes the commands the core returns, in order:

- `Record(kind, payload, data, durable)`: append an audit record. A durable record is on disk
  before any later command of the same batch runs (write-ahead); a non-durable one keeps its
  place in the trail's order but does not hold up forwarding.
- `Forward(direction, data)`: send bytes to the upstream (UP) or the client (DOWN).
- `Shutdown(direction)`: half-close toward the upstream (UP) or the client (DOWN).
- `Close(reason, error)`: end the session; the reason reaches the client and the trail.
- `Hold(hold_id, text, details)`: a person must approve `text` first. The shell files approval
  request `hold_id` before it runs the later commands of the batch, and once it is decided
  (approved, denied, or no answer within the target's `approval_timeout`) calls
  `core.resume(hold_id, Review(...))` and runs the commands that returns. Meanwhile the core
  forwards nothing the client sends (the held message and everything behind it wait, in
  order); the upstream side keeps flowing. A core emits `Hold` only when the shell offers
  approvals (`context.settings["approvals"]`, e.g. `{"timeout": 120.0}`); without it an
  action that needs approval is refused like a denied one. A core may also offer
  `terminate(reason) -> commands`: the broker is ending the session (a grant expired or was
  revoked) and the core can tell the client in its own protocol before the Close.

Cores must treat any input bytes as untrusted: they return commands or raise
`RemoteProtocolError` (which the shell turns into a Close), never another exception.

Third-party plugins register an entry point in the group `jitctl.plugins`:

    [project.entry-points."jitctl.plugins"]
    redis = "jitctl_redis:plugin"

where `plugin` is an object with `name` and `new_core(context) -> Core`.

A protocol that cannot be a byte-level core (SSH: the gateway must end the client's encryption
and open its own connection upstream) may instead provide `async run_session(io: ShellIO)`, a
custom shell: the gateway then skips dialing the upstream and the byte pump and hands the
plugin the tunnel (`ShellIO` below); the plugin dials, calls `io.start()` once the upstream
answered (or `io.refuse(...)`), relays, records through `io.record`, and returns when the
session is over. The gateway still admits the tunnel, enforces `max_session` (by cancelling
`run_session`) and writes `session.end`. Such a plugin keeps its decisions in pure cores too.
A plugin may also provide `check_reply(target, state_dir) -> dict`, merged into the gateway's
answer to a client's `check` (ssh: the gateway host key the client pins).

A protocol that switches to TLS in-band (Postgres's SSLRequest) may provide
`upstream_tls(target) -> StartTls | None`: the gateway then sends `request` on the fresh
upstream connection, reads the one-byte answer and starts TLS before the core sees a byte
(jitctl.gateway.starttls). The session's `session.start` says how it went.

What a plugin derives from a target's settings (compiled rules, TLS contexts) it builds once,
at broker start in `validate_target`, with `per_target` below.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Direction(enum.Enum):
    UP = "up"  # client -> upstream
    DOWN = "down"  # upstream -> client


@dataclass(frozen=True, slots=True)
class Record:
    kind: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    data: bytes = b""
    durable: bool = False


@dataclass(frozen=True, slots=True)
class Forward:
    direction: Direction
    data: bytes


@dataclass(frozen=True, slots=True)
class Shutdown:
    """No more bytes will go toward `direction` (a TCP half-close)."""

    direction: Direction


@dataclass(frozen=True, slots=True)
class Close:
    reason: str
    error: bool = False


@dataclass(frozen=True, slots=True)
class Hold:
    """Wait for a person's decision on `text` before anything more goes upstream."""

    hold_id: str  # the approval request's id (the core makes it: it names it to the client)
    text: str  # exactly what runs if it is approved
    details: Mapping[str, Any] = field(default_factory=dict)  # kind, rule, reason, ...


@dataclass(frozen=True, slots=True)
class Review:
    """How a hold ended, for `core.resume`."""

    approved: bool
    outcome: str  # "approved" | "denied" | "expired" (no answer in time) | "unavailable"
    reason: str = ""  # the approvers' or the broker's words
    by: tuple[str, ...] = ()  # who approved or denied


Command = Record | Forward | Shutdown | Close | Hold


@dataclass(frozen=True)
class StartTls:
    """How to ask an upstream to switch to TLS in-band (`Plugin.upstream_tls`).

    The upstream answers `request` with one byte: `accepted` (then TLS starts, with `context`,
    checking `server_hostname` if the context checks host names) or `declined` (then the
    connection goes on in plain TCP, unless `required`). Anything else refuses the session.
    """

    request: bytes
    accepted: bytes
    declined: bytes
    context: Any  # ssl.SSLContext
    server_hostname: str | None
    required: bool
    mode: str  # the target's own word for it (recorded): "prefer", "verify-full", ...


class ProtocolError(Exception):
    pass


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that break the protocol."""


@dataclass(frozen=True)
class SessionContext:
    """What a core may know about its session; plain data, no services."""

    session_id: str
    target: Any  # jitctl.config.Target
    subject: str = ""
    groups: tuple[str, ...] = ()
    chunk_size: int = 65536
    settings: Mapping[str, Any] = field(default_factory=dict)


class Core(Protocol):
    def client_data(self, data: bytes) -> Sequence[Command]: ...

    def upstream_data(self, data: bytes) -> Sequence[Command]: ...

    def client_eof(self) -> Sequence[Command]: ...

    def upstream_eof(self) -> Sequence[Command]: ...


class Holding(Protocol):
    """A core that emits `Hold` also implements `resume`."""

    def resume(self, hold_id: str, review: Review) -> Sequence[Command]: ...


class Plugin(Protocol):
    name: str

    def new_core(self, context: SessionContext) -> Core: ...


class ShellIO(Protocol):
    """What the gateway gives a plugin's `run_session` (jitctl.gateway.shell_io implements it).

    `record` may be called from the event loop only (threads: `loop.call_soon_threadsafe`);
    it appends in call order and returns an asyncio future that is done once the record is
    on disk. Mark what must be on disk before bytes move `durable=True`: a non-durable record
    shares a later commit (up to the audit writer's `lazy_delay`, 5 ms, after it), so waiting
    for its future is correct but slow. A record that cannot be written ends the session
    (`ended` is set): the plugin must then stop relaying (fail closed).
    """

    context: SessionContext
    upstream: str  # the target's HOST:PORT
    ended: Any  # asyncio.Event, set when the session must end (audit failure, max_session)

    # session.start (durable), then the tunnel's "ok"; `details` are more session.start fields,
    # such as `upstream_tls` (docs/audit-schema.md)
    async def start(self, details: Mapping[str, Any] | None = None) -> None: ...

    async def refuse(self, code: str, error: str, hint: str = "") -> None: ...  # before start

    async def read(self) -> bytes: ...  # the client's next bytes; b"" once it is gone

    # True once read() gave b"" for the client's end of data (a half-close): the client
    # still reads what comes back. False while it sends, and when it went away whole.
    half_closed: bool

    async def gone(self) -> None: ...  # after a half-close: returns once the client left whole

    async def write(self, data: bytes) -> None: ...  # bytes to the client

    def record(self, record: Record, time_us: int = 0) -> Any: ...  # asyncio.Future

    def end(self, reason: str, error: bool = False) -> None: ...  # why, for session.end

    # Approvals, when `context.settings["approvals"]` is offered: file `hold` as an approval
    # request and wait (bounded by the target's approval_timeout, the session and its grant).
    async def hold(self, hold: Hold) -> Review: ...

    # Once an approved hold's action has reached the upstream (not before, and not if it never
    # did): records `approval.executed`. Does nothing for a hold that was not approved.
    async def released(self, hold: Hold) -> None: ...


ENTRY_POINT_GROUP = "jitctl.plugins"


def per_target(build: Callable[[Any], T]) -> Callable[[Any], T]:
    """`build(target)` once per target object, for what a plugin derives from a target's
    settings (compiled rules, TLS contexts): at broker start, then shared by its sessions.
    Keyed by identity (config models are not hashable; a reloaded config is new objects);
    bounded, so replaced configs do not pile up."""
    cache: dict[int, tuple[Any, T]] = {}

    @functools.wraps(build)
    def cached(target: Any) -> T:
        hit = cache.get(id(target))
        if hit is not None and hit[0] is target:
            return hit[1]
        value = build(target)
        if len(cache) >= 4096:  # configs reloaded many times over, not one config's targets
            cache.clear()
        cache[id(target)] = (target, value)
        return value

    return cached


class UnknownProtocol(LookupError):
    pass


@functools.cache  # a name not found raises, and an exception is not cached
def load_plugin(name: str) -> Plugin:
    """The plugin registered for protocol `name` (entry point group `jitctl.plugins`).

    Loaded once per process: `entry_points()` reads every installed distribution's metadata
    (~5 ms with a few hundred packages), and the broker asks at every session start, on its
    event loop. A plugin installed while the broker runs is found after a restart; a name not
    found is looked up again next time."""
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == name:
            plugin: Plugin = entry.load()
            return plugin
    raise UnknownProtocol(name)
