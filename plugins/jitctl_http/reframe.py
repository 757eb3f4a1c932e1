"""WebSocket messages from the upstream, masked on their way to the client: a sans-I/O re-framer.

When a target masks (detectors, JSON field names) or the broker injected a secret, what the
upstream sends on an upgraded WebSocket cannot reach the client as it is. A `Reframer` reads
the upstream's bytes (`feed(data)`) and returns the bytes to send the client instead, and the
events to record. A target with neither keeps the pass-through `Tap` (jitctl_http.websocket).

Rules:
- Every byte is read first by a `Tap`, so what breaks RFC 6455 raises `WebSocketError` as there,
  before anything of that `feed` is sent; after an error every `feed` raises it again. No other
  exception leaves `feed`.
- A text message is collected whole (its fragments, §5.4), up to `limit` payload bytes (the
  target's mask_limit, bounded as an HTTP body is in jitctl.gateway.http.responses.masked). The
  broker's secrets are replaced (`bodies.Scrub`, counted as BROKER_SECRET), then it is masked
  as an HTTP body with no content type is (`bodies.mask_body`: by field name and detectors when
  it parses as JSON, by detectors otherwise), and sent as one server text frame (FIN set, no
  masking key: §5.1).
- A text message over `limit` is not sent: as soon as a frame header says so, the client gets
  a close frame 1009 (message too big, §7.4.1) and the events end with `Refused`; every later
  `feed` raises `WebSocketError`. What came before it in the same `feed` is sent.
- Binary messages are not masked (as an HTTP body whose type `bodies.maskable` rejects), and
  go frame by frame, each header as the upstream wrote it. Like such a body they are scrubbed
  of the secrets (a replacement keeps the length, so every header stays true), and the
  payloads of consecutive binary frames are scrubbed as one stream: a secret cut between two
  frames of a message, or between two binary messages, is caught. So the end of that stream
  that could start a secret (at most the longest secret's length minus one byte) waits for
  the next binary payload, and the headers of the frames after it wait behind it; it goes out
  as it is when a text or control frame comes next (a ping must not wait on data that may
  never come), when more than `MAX_WAITING` frame headers and message ends wait behind it,
  or on `flush()`, at the upstream's end. Control frames (ping, pong, close) are scrubbed
  within themselves and go out as they arrive: before a text message whose end has not
  arrived yet, otherwise in the upstream's order.
- The bytes out do not depend on how the input is cut: only an end that could start a secret
  waits for what follows it.
- Events, in order: a `Message` for each message sent, once its last byte went out (as sent:
  `masked` holds what masking found; a secret cut between two binary messages counts in the
  one it ends in), the upstream's `Close` (its reason scrubbed), `Refused`. `messages`,
  `pings`, `pongs` and `closed` count and keep what a `Tap` would, for `http.upgrade.end`.
"""

from __future__ import annotations

import struct
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from wsproto.frame_protocol import CloseReason, FrameProtocol

from jitctl_http import bodies
from jitctl_http.websocket import (
    WS_UPSTREAM,
    Close,
    Message,
    Tap,
    WebSocketError,
    whole_characters,
)

WITHHELD = "[WITHHELD]"
_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
# Frame headers and message ends that may wait behind the binary bytes held back (each empty
# frame adds one without adding a byte): past this, the held bytes go out as they are.
MAX_WAITING = 64


@dataclass(frozen=True, slots=True)
class Refused:
    """The gateway closed the client's side with `code` instead of forwarding a message."""

    code: int
    reason: str


@dataclass(slots=True)
class _Binary:
    """A binary message on its way out: what its `Message` will say."""

    size: int = 0
    head: bytearray = field(default_factory=bytearray)
    found: int = 0  # secrets replaced that end in its bytes


def _header_size(head: bytes | bytearray) -> int:
    """The size of a server frame's header from its first two bytes (§5.2; no masking key)."""
    code = head[1] & 0x7F
    return 4 if code == 126 else 10 if code == 127 else 2


def _payload_length(head: bytes) -> int:
    code = head[1] & 0x7F
    if code == 126:
        return int(struct.unpack("!H", head[2:4])[0])
    if code == 127:
        return int(struct.unpack("!Q", head[2:10])[0])
    return code


class Reframer:
    """Masks what the upstream sends on a WebSocket; see the module docstring. `masks`: the
    target's MaskPolicy or None; `fields`: JSON field names; `scrub`: the broker's secrets;
    `limit`: the target's mask_limit; `record_limit`: the bytes of a message recorded."""

    def __init__(
        self, *, limit: int, record_limit: int, masks: Any, fields: set[str], scrub: bodies.Scrub
    ) -> None:
        self.limit, self.record_limit = limit, record_limit
        self.masks, self.fields, self.scrub = masks, fields, scrub
        self.tap = Tap(WS_UPSTREAM, 0)  # validates; the records are made here, as sent
        self.messages = 0
        self.closed: Close | None = None
        self._writer = FrameProtocol(client=False, extensions=[])
        self._header = bytearray()
        self._frame = -1  # the current frame's kind (_TEXT, _BINARY or a control opcode); -1: none
        self._fin = False
        self._left = 0  # payload bytes of the current frame still to come
        self._kind = 0  # the data message in progress (_TEXT or _BINARY), 0 between messages
        self._frame_scrub = scrub.fresh()  # a control frame's payload
        self._text = bytearray()  # a text message, collected
        # Binary payloads, one stream across frames and messages (module docstring): bytes
        # fed to its scrub and sent so far, and what waits for a stream offset to be sent:
        # (offset, a frame header to write there or None for a message's end, its message).
        self._stream = scrub.fresh()
        self._fed = self._sent = 0
        self._waiting: deque[tuple[int, bytes | None, _Binary]] = deque()
        self._latest = _Binary()  # the binary message whose payload is being read
        self._emitting = self._latest  # the one whose payload is being sent
        self._failed: str | None = None

    @property
    def pings(self) -> int:
        return self.tap.pings

    @property
    def pongs(self) -> int:
        return self.tap.pongs

    def flush(self) -> tuple[bytes, list[Message | Close | Refused]]:
        """The upstream has ended: what was held back, and the messages it ends."""
        out = bytearray()
        events: list[Message | Close | Refused] = []
        if self._failed is None:
            self._release(out, events)
        return bytes(out), events

    def feed(self, data: bytes) -> tuple[bytes, list[Message | Close | Refused]]:
        """The bytes to send the client and what to record; raises `WebSocketError`."""
        if self._failed is not None:
            raise WebSocketError(self._failed)
        self.tap.feed(data)
        out = bytearray()
        events: list[Message | Close | Refused] = []
        try:
            self._split(data, out, events)
        except Exception as exc:  # pragma: no cover - the tap let through what we cannot read
            self._failed = f"upstream sent input the re-framer could not read: {exc!r}"
            raise WebSocketError(self._failed) from None
        return bytes(out), events

    def _split(self, data: bytes, out: bytearray, events: list[Message | Close | Refused]) -> None:
        pos, end = 0, len(data)
        while pos < end and self._failed is None:
            if self._frame < 0:
                pos = self._read_header(data, pos, out, events)
                continue
            take = min(self._left, end - pos)
            self._payload(data[pos : pos + take], out, events)
            pos += take
            self._left -= take
            if self._left == 0:
                self._end_frame(out, events)

    def _read_header(
        self, data: bytes, pos: int, out: bytearray, events: list[Message | Close | Refused]
    ) -> int:
        head = self._header
        need = 2 if len(head) < 2 else _header_size(head)
        take = min(need - len(head), len(data) - pos)
        head += data[pos : pos + take]
        pos += take
        if len(head) < 2 or len(head) < _header_size(head):
            return pos
        header = bytes(head)
        head.clear()
        self._start_frame(header, out, events)
        if self._frame >= 0 and self._left == 0:
            self._end_frame(out, events)
        return pos

    def _start_frame(
        self, header: bytes, out: bytearray, events: list[Message | Close | Refused]
    ) -> None:
        opcode, length = header[0] & 0x0F, _payload_length(header)
        if opcode in (_TEXT, _BINARY):
            self._kind = opcode
        kind = self._kind if opcode == _CONTINUATION else opcode
        self._fin, self._left = bool(header[0] & 0x80), length
        if kind == _BINARY:  # its header waits behind the binary bytes held back, if any
            if opcode == _BINARY:
                self._latest = _Binary()
            self._wait(self._fed, header, self._latest, out, events)
            self._frame = kind
            return
        self._release(out, events)  # anything else goes after every binary byte before it
        if kind == _TEXT:
            if len(self._text) + length > self.limit:
                self._refuse(len(self._text) + length, out, events)
                return
        else:  # the frame goes out as it comes: its header now
            out += header
            self._frame_scrub = self.scrub.fresh()
        self._frame = kind

    def _payload(
        self, piece: bytes, out: bytearray, events: list[Message | Close | Refused]
    ) -> None:
        if self._frame == _TEXT:
            self._text += piece
        elif self._frame == _BINARY:
            stream, message = self._stream, self._latest
            found = stream.found
            ready = stream.feed(piece)
            self._fed += len(piece)
            message.size += len(piece)
            message.found += stream.found - found
            self._send_stream(ready, out, events)
        else:
            out += self._frame_scrub.feed(piece)

    def _end_frame(self, out: bytearray, events: list[Message | Close | Refused]) -> None:
        frame, self._frame = self._frame, -1
        if frame == _TEXT:
            if self._fin:
                self._send_text(out, events)
            return
        if frame == _BINARY:
            if self._fin:  # reported once its last byte is sent
                self._kind = 0
                self._wait(self._fed, None, self._latest, out, events)
            return
        out += self._frame_scrub.flush()
        if frame == _CLOSE and self.tap.closed is not None:
            closed = self.tap.closed
            scrub = self.scrub.fresh()
            reason = scrub.feed(closed.reason.encode("utf-8")) + scrub.flush()
            self.closed = Close(closed.code, reason.decode("utf-8", "replace"))
            events.append(self.closed)

    # --- the binary stream -------------------------------------------------------------------

    def _wait(
        self,
        offset: int,
        header: bytes | None,
        message: _Binary,
        out: bytearray,
        events: list[Message | Close | Refused],
    ) -> None:
        """Write `header` (or report `message`, for None) once the stream is sent up to
        `offset`: at once when nothing is held back."""
        if len(self._waiting) >= MAX_WAITING:
            self._release(out, events)
        self._waiting.append((offset, header, message))
        self._send_stream(b"", out, events)

    def _release(self, out: bytearray, events: list[Message | Close | Refused]) -> None:
        """Send what the stream holds back as it is (nothing binary can follow it directly)."""
        if self._fed == self._sent and not self._waiting:
            return
        stream = self._stream
        found = stream.found
        rest = stream.flush()
        self._latest.found += stream.found - found  # the held bytes end in the latest message
        self._send_stream(rest, out, events)

    def _send_stream(
        self, data: bytes, out: bytearray, events: list[Message | Close | Refused]
    ) -> None:
        """Send the stream's next `data`, each header before the byte it precedes, each
        message reported after its last byte."""
        waiting, limit = self._waiting, self.record_limit
        pos, end = 0, len(data)
        while True:
            while waiting and waiting[0][0] <= self._sent:
                _, header, message = waiting.popleft()
                if header is not None:
                    out += header
                    self._emitting = message
                else:
                    masked = {bodies.SECRET_FOUND: message.found} if message.found else {}
                    events.append(Message("binary", message.size, bytes(message.head), masked))
                    self.messages += 1
            if pos == end:
                return
            take = end - pos
            if waiting:
                take = min(take, waiting[0][0] - self._sent)
            piece = data[pos : pos + take]
            out += piece
            head = self._emitting.head
            if len(head) < limit:
                head += piece[: limit - len(head)]
            pos += take
            self._sent += take

    def _send_text(self, out: bytearray, events: list[Message | Close | Refused]) -> None:
        whole, self._text, self._kind = bytes(self._text), bytearray(), 0
        scrub = self.scrub.fresh()
        body = scrub.feed(whole) + scrub.flush()
        counts: Counter[str] = Counter()
        if scrub.found:
            counts[bodies.SECRET_FOUND] = scrub.found
        if self.masks is not None:
            found: Counter[str]
            body, found = bodies.mask_body(body, b"", self.masks, self.fields)
            counts.update(found)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:  # a secret replaced inside a character: send nothing of it
            text, body = WITHHELD, WITHHELD.encode()
            counts["WITHHELD"] += 1
        out += self._writer.send_data(text, fin=True)
        head = whole_characters(body[: self.record_limit])
        events.append(Message("text", len(body), head, dict(counts)))
        self.messages += 1

    def _refuse(self, size: int, out: bytearray, events: list[Message | Close | Refused]) -> None:
        reason = (
            f"a text message of at least {size} bytes is over this target's mask_limit "
            f"({self.limit} bytes), so it cannot be masked: not forwarded, the client's side "
            f"closed with {int(CloseReason.MESSAGE_TOO_BIG)}"
        )
        out += self._writer.close(CloseReason.MESSAGE_TOO_BIG, "message too big to mask")
        events.append(Refused(int(CloseReason.MESSAGE_TOO_BIG), reason))
        self._text = bytearray()
        self._failed = reason
