"""WebSocket messages for the trail: a passive RFC 6455 frame reader, one `Tap` per direction.

After the upstream accepts an `Upgrade: websocket` (101), the gateway relays the raw stream and
hands each direction's bytes to a `Tap`. The tap only reads: the gateway forwards the original
bytes unchanged and never sends anything the parser would.

Rules:
- A `Tap` reads one sender: `WS_CLIENT` (every frame masked, RFC 6455 §5.1) or `WS_UPSTREAM`
  (no frame masked). `feed(data)` returns the messages (`Message`) and the close frame
  (`Close`) completed in `data`, in order, however the stream is cut.
- Memory is bounded whatever the sender does: a message's payload is read piece by piece as it
  arrives and only its first `limit` bytes are kept (`Message.head`); `size` counts the rest.
  A text head is cut at a character boundary, so it is valid UTF-8 of at most `limit` bytes
  (possibly up to 3 bytes shorter than `limit` when a character straddles the cut).
- Messages, pings and pongs are counted (`messages`, `pings`, `pongs`); pings and pongs are
  not recorded one by one. Control frames may come between the fragments of a message (§5.4).
- Anything that breaks RFC 6455 raises `WebSocketError`, and the gateway ends the connection
  (fail closed): a reserved opcode, a client frame unmasked or an upstream frame masked, an RSV
  bit set (no extension is negotiated: the gateway strips `Sec-WebSocket-Extensions`), a text
  message or close reason that is not UTF-8 (§8.1), a control frame over 125 bytes or
  fragmented (§5.5), a continuation outside a message or a new message inside one (§5.4), a
  length not in its shortest form (§5.2), a close code not allowed on the wire (§7.4), and any
  byte after the close frame (§5.5.1: the close frame is the last thing an endpoint sends).
  After an error, every further `feed` raises it again. No other exception leaves `feed`.

The frames are parsed by wsproto, itself sans-I/O (no sockets, no asyncio), so this core stays
pure even though it imports more than the standard library. wsproto reports bad input not by
raising but by emitting a `CloseConnection` it decided itself (1002/1007) without changing its
state; a close frame it *received* moves it to `REMOTE_CLOSING`. That state is how the two are
told apart here.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, Pong, TextMessage
from wsproto.frame_protocol import CloseReason

WS_CLIENT = "client"
WS_UPSTREAM = "upstream"


@dataclass(frozen=True, slots=True)
class Message:
    """A whole text or binary message: its size and the first bytes of its payload."""

    kind: str  # "text" | "binary"
    size: int  # payload bytes of the whole message (UTF-8 bytes for text)
    head: bytes  # the first `limit` bytes of the payload, unmasked; text cut between characters
    # What masking on the wire found (jitctl_http.reframe); None: the message went unmasked
    # (a `Tap` never masks), so the trail masks its own copy.
    masked: dict[str, int] | None = None


@dataclass(frozen=True, slots=True)
class Close:
    """The sender's close frame."""

    code: int | None  # None when the close frame had no code
    reason: str


class WebSocketError(Exception):
    """What the sender sent breaks RFC 6455 (the gateway ends the connection: fail closed;
    the bytes of that `feed` are not forwarded, so nothing completed in them is recorded)."""


# wsproto's own words for what went wrong (wsproto/frame_protocol.py, ParseFailed), by prefix,
# in the gateway's terms: its "client"/"server" are its own role, not the sender.
_EXPLAINED = (
    ("server received unexpected unmasked frame", "an unmasked frame (§5.1: clients mask)"),
    ("client received unexpected masked frame", "a masked frame (§5.1: servers never mask)"),
    ("Reserved bit set", "an RSV bit set with no extension negotiated (§5.2)"),
    ("Invalid opcode", "a reserved opcode (§5.2)"),
    ("Invalid attempt to fragment control frame", "a fragmented control frame (§5.5)"),
    ("Control frame with payload len > 125", "a control frame over 125 bytes (§5.5)"),
    ("unexpected CONTINUATION", "a continuation frame outside a message (§5.4)"),
    ("expected CONTINUATION", "a new message inside an unfinished one (§5.4)"),
    ("Payload length used", "a payload length not in its shortest form (§5.2)"),
    ("8-byte payload length with non-zero MSB", "a payload length over 2**63 - 1 (§5.2)"),
    ("CLOSE with 1 byte payload", "a close frame with a 1-byte payload (§5.5.1)"),
    ("CLOSE with invalid code", "a close code out of range (§7.4)"),
    ("remote CLOSE with local-only reason", "a close code reserved for local use (§7.4.1)"),
    ("CLOSE with unknown reserved code", "an unassigned close code below 3000 (§7.4.2)"),
    ("Error decoding CLOSE reason", "a close reason that is not UTF-8 (§5.5.1)"),
)


def _explain(sender: str, reason: str, code: int | None) -> str:
    for prefix, what in _EXPLAINED:
        if reason.startswith(prefix):
            return f"{sender} sent {what}"
    if code == CloseReason.INVALID_FRAME_PAYLOAD_DATA:
        return f"{sender} sent a text message that is not UTF-8 (§8.1)"
    return f"{sender} sent a malformed frame: {reason}"


def whole_characters(head: bytes) -> bytes:
    """`head` (a prefix of valid UTF-8) without a character cut at its end."""
    return head.decode("utf-8", errors="ignore").encode("utf-8")


class Tap:
    """Reads what one sender sends on a WebSocket connection; see the module docstring."""

    def __init__(self, sender: str, limit: int) -> None:
        if sender not in (WS_CLIENT, WS_UPSTREAM):
            raise ValueError(f"sender must be {WS_CLIENT!r} or {WS_UPSTREAM!r}, not {sender!r}")
        if limit < 0:
            raise ValueError(f"limit must be >= 0, not {limit}")
        self.sender = sender
        self.limit = limit
        self.messages = 0  # whole messages returned by `feed` (not those of a failed one)
        self.pings = 0
        self.pongs = 0
        self.pending = 0
        self.closed: Close | None = None
        # To read what a client sends, wsproto plays the server, and the other way round.
        role = ConnectionType.SERVER if sender == WS_CLIENT else ConnectionType.CLIENT
        self._conn = Connection(role)
        self._head = bytearray()
        self._head_full = False  # a text head cut between characters takes nothing more
        self._failed: str | None = None

    def feed(self, data: bytes) -> list[Message | Close]:
        """What completed in `data`, in order; raises `WebSocketError`."""
        if self._failed is not None:
            raise WebSocketError(self._failed)
        if not data:
            return []
        if self.closed is not None:
            self._fail(f"{self.sender} sent data after its close frame (§5.5.1)")
        out: list[Message | Close] = []
        try:
            self._conn.receive_data(data)
            for event in self._conn.events():
                self._handle(event, out)
        except WebSocketError:
            raise
        except Exception as exc:
            # wsproto's own asserts, or anything else it did not foresee, tripped by input:
            # the sender caused it, so it fails closed like any other malformed input.
            self._fail(f"{self.sender} sent input the parser rejected: {exc!r}")
        if self.closed is not None and _unparsed(self._conn):
            self._fail(f"{self.sender} sent data after its close frame (§5.5.1)")
        self.messages += sum(1 for item in out if type(item) is Message)
        return out

    def _handle(self, event: Event, out: list[Message | Close]) -> None:
        if isinstance(event, TextMessage):
            self._take(event.data.encode("utf-8"), text=True)
            if event.message_finished:
                out.append(self._finish("text"))
        elif isinstance(event, BytesMessage):
            self._take(event.data, text=False)
            if event.message_finished:
                out.append(self._finish("binary"))
        elif isinstance(event, Ping):
            self.pings += 1
        elif isinstance(event, Pong):
            self.pongs += 1
        elif isinstance(event, CloseConnection):
            if self._conn.state is not ConnectionState.REMOTE_CLOSING:
                # Decided by wsproto because of bad input: its state did not move.
                self._fail(_explain(self.sender, event.reason or "", event.code))
            code = None if event.code == CloseReason.NO_STATUS_RCVD else int(event.code)
            self.closed = Close(code, event.reason or "")
            out.append(self.closed)
        else:  # pragma: no cover - a data connection emits no handshake events
            self._fail(f"{self.sender}: unexpected parser event {type(event).__name__}")

    def _take(self, piece: bytes | bytearray, *, text: bool) -> None:
        self.pending += len(piece)
        if self._head_full or not piece:
            return
        room = self.limit - len(self._head)
        if len(piece) <= room:
            self._head += piece  # a text piece is whole characters: wsproto decoded it
            return
        cut = bytes(piece[:room])
        self._head += whole_characters(cut) if text else cut
        self._head_full = True

    def _finish(self, kind: str) -> Message:
        message = Message(kind, self.pending, bytes(self._head))
        self.pending = 0
        self._head = bytearray()
        self._head_full = False
        return message

    def _fail(self, message: str) -> None:
        self._failed = message
        raise WebSocketError(message)


def _unparsed(conn: Connection) -> int:
    """Bytes wsproto holds but has not parsed. After a close frame it stops parsing and keeps
    (or, on later `receive_data`, drops) whatever follows; nothing public tells how much did.
    wsproto 1.2-1.3 internals: pinned by the close-then-garbage tests."""
    return len(conn._proto._frame_decoder.buffer)
