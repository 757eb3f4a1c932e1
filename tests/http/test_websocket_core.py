"""The WebSocket tap (jitctl_http.websocket): frames in, whole messages and the close out.

Frames are written by a wsproto Connection of the other side (`CLIENT` writes the masked frames
a client sends, `SERVER` the unmasked ones an upstream sends), or by hand for malformed ones.
Each round trip is also fed one byte at a time and in random splits. Hypothesis: any split
reads the same as the whole; any bytes give events or `WebSocketError`, with at most `limit`
bytes of a message kept; a 5 MB message costs no more memory than a few reads.
"""

from __future__ import annotations

import os
import random
import re
import struct
import tracemalloc
from collections.abc import Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.frame_protocol import CloseReason

from jitctl_http.websocket import WS_CLIENT, WS_UPSTREAM, Close, Message, Tap, WebSocketError

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SENDERS = [WS_CLIENT, WS_UPSTREAM]
NO_CODE = CloseReason.NO_STATUS_RCVD  # wsproto writes a close frame without a code for it
Event = TextMessage | BytesMessage | Ping | Pong | CloseConnection


def frames(sender: str, events: Iterable[Event]) -> bytes:
    """What `sender` puts on the wire for `events`, written by wsproto playing that side."""
    conn = Connection(ConnectionType.CLIENT if sender == WS_CLIENT else ConnectionType.SERVER)
    return b"".join(conn.send(event) for event in events)


def raw_frame(sender: str, first: int, payload: bytes, *, masked: bool | None = None) -> bytes:
    """One frame by hand: `first` is the FIN/RSV/opcode byte; masked as `sender` would."""
    masked = sender == WS_CLIENT if masked is None else masked
    n = len(payload)
    if n <= 125:
        length = bytes([n | (0x80 if masked else 0)])
    elif n <= 0xFFFF:
        length = bytes([126 | (0x80 if masked else 0)]) + struct.pack("!H", n)
    else:
        length = bytes([127 | (0x80 if masked else 0)]) + struct.pack("!Q", n)
    if not masked:
        return bytes([first]) + length + payload
    key = b"\x00\x00\x00\x00"  # a zero key keeps the payload readable in the table below
    return bytes([first]) + length + key + payload


def feed_all(tap: Tap, pieces: Iterable[bytes]) -> list[Message | Close]:
    out: list[Message | Close] = []
    for piece in pieces:
        out += tap.feed(piece)
    return out


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def split(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """`data` in pieces cut at `cuts` (modulo its length)."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def splits(data: bytes) -> list[list[bytes]]:
    """Whole, one byte at a time, and a few random splits (seeded, so a failure repeats)."""
    rng = random.Random(len(data))
    cuts = [[rng.randrange(len(data) + 1) for _ in range(rng.randrange(1, 8))] for _ in range(5)]
    return [[data], bytewise(data), *(split(data, c) for c in cuts)]


# Round trips: (events the sender sends, limit, what the tap reads, pings, pongs).
ROUND_TRIPS = [
    pytest.param([TextMessage("hello")], 64, [Message("text", 5, b"hello")], 0, 0, id="text"),
    pytest.param(
        [BytesMessage(b"\x00\xff" * 100)],
        16,
        [Message("binary", 200, b"\x00\xff" * 8)],
        0,
        0,
        id="binary-head-cut",
    ),
    pytest.param([TextMessage("")], 8, [Message("text", 0, b"")], 0, 0, id="empty-text"),
    pytest.param([BytesMessage(b"")], 8, [Message("binary", 0, b"")], 0, 0, id="empty-binary"),
    pytest.param(
        [TextMessage("a" * 70000)],
        10,
        [Message("text", 70000, b"a" * 10)],
        0,
        0,
        id="text-16-bit-length",
    ),
    pytest.param(
        [BytesMessage(b"x" * 70000)],
        0,
        [Message("binary", 70000, b"")],
        0,
        0,
        id="binary-64-bit-length-limit-0",
    ),
    pytest.param(
        [
            TextMessage("héllo ", message_finished=False),
            Ping(b"p1"),
            TextMessage("wörld ", message_finished=False),
            Pong(b""),
            TextMessage("€", message_finished=True),
        ],
        100,
        [Message("text", len("héllo wörld €".encode()), "héllo wörld €".encode())],
        1,
        1,
        id="fragmented-text-with-pings",
    ),
    pytest.param(
        [
            BytesMessage(b"abc", message_finished=False),
            BytesMessage(b"", message_finished=False),
            BytesMessage(b"defgh", message_finished=True),
            TextMessage("next"),
        ],
        4,
        [Message("binary", 8, b"abcd"), Message("text", 4, b"next")],
        0,
        0,
        id="fragmented-binary-then-text",
    ),
    pytest.param(
        [TextMessage("ab€cd")],  # € is 3 bytes: 61 62 e2 82 ac 63 64
        4,
        [Message("text", 7, b"ab")],
        0,
        0,
        id="text-head-not-cut-inside-a-character",
    ),
    pytest.param(
        [TextMessage("ab€", message_finished=False), TextMessage("c", message_finished=True)],
        4,
        [Message("text", 6, b"ab")],
        0,
        0,
        id="text-head-stops-at-first-cut-character",
    ),
    pytest.param(
        [TextMessage("a€b")], 4, [Message("text", 5, "a€".encode())], 0, 0, id="text-head-exact"
    ),
    pytest.param(
        [Ping(b"x"), Ping(b""), Pong(b"y" * 125), TextMessage("t")],
        8,
        [Message("text", 1, b"t")],
        2,
        1,
        id="control-frames-counted",
    ),
    pytest.param(
        [TextMessage("bye"), CloseConnection(1000, "done")],
        8,
        [Message("text", 3, b"bye"), Close(1000, "done")],
        0,
        0,
        id="close-with-code-and-reason",
    ),
    pytest.param([CloseConnection(4321)], 8, [Close(4321, "")], 0, 0, id="close-with-code"),
    pytest.param(
        [CloseConnection(NO_CODE)],
        8,
        [Close(None, "")],
        0,
        0,
        id="close-without-code",
    ),
]


@pytest.mark.parametrize("sender", SENDERS)
@pytest.mark.parametrize(("events", "limit", "expected", "pings", "pongs"), ROUND_TRIPS)
def test_round_trip_reads_the_messages_sent_however_split(
    sender: str,
    events: list[Event],
    limit: int,
    expected: list[Message | Close],
    pings: int,
    pongs: int,
) -> None:
    data = frames(sender, events)
    for pieces in splits(data):
        tap = Tap(sender, limit)
        assert feed_all(tap, pieces) == expected
        assert (tap.pings, tap.pongs, tap.pending) == (pings, pongs, 0)
        closes = [e for e in expected if isinstance(e, Close)]
        assert tap.closed == (closes[0] if closes else None)


@pytest.mark.parametrize("sender", SENDERS)
def test_pending_counts_a_message_begun_and_not_finished(sender: str) -> None:
    tap = Tap(sender, 4)
    assert tap.feed(frames(sender, [BytesMessage(b"abcdef", message_finished=False)])) == []
    assert tap.pending == 6
    assert tap.feed(raw_frame(sender, 0x00, b"ghijkl")[:-2]) == []  # a continuation, cut short
    assert tap.pending == 10


@pytest.mark.parametrize("sender", SENDERS)
def test_a_gigabyte_frame_keeps_only_limit_bytes(sender: str) -> None:
    """A frame that declares 1 GiB: its payload is counted as it arrives and never kept."""
    size = 1 << 30
    masked = sender == WS_CLIENT
    header = bytes([0x82, 127 | (0x80 if masked else 0)]) + struct.pack("!Q", size)
    header += b"\x00" * 4 if masked else b""
    tap = Tap(sender, 32)
    assert tap.feed(header) == []
    chunk = b"z" * 65536
    for _ in range(16):
        assert tap.feed(chunk) == []
    assert tap.pending == 16 * 65536


def test_a_large_message_costs_no_more_memory_than_a_few_reads() -> None:
    """5 MB in 64 KiB frames, fed in 64 KiB reads: peak memory stays far below the message."""
    conn = Connection(ConnectionType.CLIENT)
    piece = os.urandom(65536)
    count = 80  # 5 MiB
    stream = [conn.send(BytesMessage(piece, message_finished=i == count - 1)) for i in range(count)]
    tap = Tap(WS_CLIENT, 1024)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        out: list[Message | Close] = []
        for frame in stream:
            for at in range(0, len(frame), 65536):
                out += tap.feed(frame[at : at + 65536])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out == [Message("binary", count * 65536, piece[:1024])]
    assert peak - before < 1 << 20


# Malformed input: (sender, bytes, what the error says).
OPEN_TEXT = 0x01  # a text frame begun, FIN clear
MALFORMED = [
    pytest.param(WS_CLIENT, raw_frame(WS_CLIENT, 0x83, b""), "reserved opcode", id="opcode-3"),
    pytest.param(WS_UPSTREAM, raw_frame(WS_UPSTREAM, 0x8B, b""), "reserved opcode", id="opcode-b"),
    pytest.param(
        WS_CLIENT,
        raw_frame(WS_CLIENT, 0x81, b"hi", masked=False),
        "client sent an unmasked frame",
        id="unmasked-client-frame",
    ),
    pytest.param(
        WS_UPSTREAM,
        raw_frame(WS_UPSTREAM, 0x81, b"hi", masked=True),
        "upstream sent a masked frame",
        id="masked-upstream-frame",
    ),
    *(
        pytest.param(
            sender, raw_frame(sender, 0x81 | bit, b"hi"), "RSV bit", id=f"{sender}-{bit:#x}"
        )
        for sender in SENDERS
        for bit in (0x40, 0x20, 0x10)
    ),
    *(
        pytest.param(sender, raw_frame(sender, 0x81, bad), "not UTF-8", id=f"{sender}-utf8-{i}")
        for sender in SENDERS
        for i, bad in enumerate([b"\xff", b"a\xc3(", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"])
    ),
    *(
        pytest.param(
            sender,
            raw_frame(sender, OPEN_TEXT, b"ab\xe2\x82") + raw_frame(sender, 0x80, b""),
            "not UTF-8",
            id=f"{sender}-utf8-truncated-at-message-end",
        )
        for sender in SENDERS
    ),
    pytest.param(
        WS_CLIENT, raw_frame(WS_CLIENT, 0x89, b"p" * 126), "over 125 bytes", id="long-ping"
    ),
    pytest.param(
        WS_UPSTREAM,
        raw_frame(WS_UPSTREAM, 0x88, b"\x03\xe8" + b"r" * 124),
        "over 125",
        id="long-close",
    ),
    pytest.param(WS_CLIENT, raw_frame(WS_CLIENT, 0x09, b""), "fragmented control", id="frag-ping"),
    pytest.param(
        WS_UPSTREAM, raw_frame(WS_UPSTREAM, 0x08, b""), "fragmented control", id="frag-close"
    ),
    pytest.param(
        WS_CLIENT, raw_frame(WS_CLIENT, 0x80, b"x"), "continuation frame outside", id="stray-cont"
    ),
    pytest.param(
        WS_UPSTREAM,
        raw_frame(WS_UPSTREAM, OPEN_TEXT, b"a") + raw_frame(WS_UPSTREAM, 0x82, b"b"),
        "new message inside",
        id="message-inside-message",
    ),
    pytest.param(WS_UPSTREAM, b"\x82\x7e\x00\x05hello", "shortest form", id="16-bit-length-for-5"),
    pytest.param(
        WS_UPSTREAM, b"\x82\x7f" + struct.pack("!Q", 1 << 63), "2**63", id="64-bit-length-msb"
    ),
    pytest.param(WS_CLIENT, raw_frame(WS_CLIENT, 0x88, b"\x03"), "1-byte", id="close-1-byte"),
    pytest.param(
        WS_CLIENT,
        raw_frame(WS_CLIENT, 0x88, struct.pack("!H", 999)),
        "out of range",
        id="close-999",
    ),
    pytest.param(
        WS_UPSTREAM,
        raw_frame(WS_UPSTREAM, 0x88, struct.pack("!H", 1006)),
        "reserved for local use",
        id="close-1006",
    ),
    pytest.param(
        WS_UPSTREAM,
        raw_frame(WS_UPSTREAM, 0x88, struct.pack("!H", 2999)),
        "unassigned close code",
        id="close-2999",
    ),
    pytest.param(
        WS_CLIENT,
        raw_frame(WS_CLIENT, 0x88, struct.pack("!H", 1000) + b"\xff"),
        "close reason that is not UTF-8",
        id="close-reason-not-utf8",
    ),
    *(
        pytest.param(
            sender,
            frames(sender, [CloseConnection(1000)]) + frames(sender, [TextMessage("late")]),
            "data after its close frame",
            id=f"{sender}-message-after-close",
        )
        for sender in SENDERS
    ),
    *(
        pytest.param(
            sender,
            frames(sender, [CloseConnection(NO_CODE)]) + b"\x00",
            "data after its close frame",
            id=f"{sender}-byte-after-close",
        )
        for sender in SENDERS
    ),
]


@pytest.mark.parametrize(("sender", "data", "says"), MALFORMED)
def test_malformed_input_raises_websocket_error(sender: str, data: bytes, says: str) -> None:
    for pieces in ([data], bytewise(data)):
        tap = Tap(sender, 16)
        with pytest.raises(WebSocketError, match=re.escape(says)) as caught:
            feed_all(tap, pieces)
        with pytest.raises(WebSocketError, match=re.escape(says)):
            tap.feed(frames(sender, [TextMessage("ok")]))  # a failed tap stays failed
        assert str(caught.value).startswith(f"{sender} sent ")


def test_a_feed_that_fails_counts_none_of_its_messages() -> None:
    # The gateway forwards none of a failed feed's bytes: its messages never reached the
    # other side, so `http.upgrade.end` must not count them.
    tap = Tap(WS_CLIENT, 8)
    tap.feed(frames(WS_CLIENT, [TextMessage("zero")]))
    data = frames(WS_CLIENT, [TextMessage("one"), CloseConnection(1000)]) + b"\x81"
    with pytest.raises(WebSocketError, match="after its close"):
        tap.feed(data)
    assert tap.messages == 1


def test_empty_feed_after_close_is_not_data() -> None:
    tap = Tap(WS_UPSTREAM, 8)
    assert tap.feed(frames(WS_UPSTREAM, [CloseConnection(1001, "away")])) == [Close(1001, "away")]
    assert tap.feed(b"") == []
    assert tap.closed == Close(1001, "away")


def test_sender_and_limit_are_checked() -> None:
    with pytest.raises(ValueError, match="sender"):
        Tap("server", 8)
    with pytest.raises(ValueError, match="limit"):
        Tap(WS_CLIENT, -1)


# Hypothesis.


def sent_events() -> st.SearchStrategy[list[Event]]:
    """A valid stream: messages (some fragmented, pings between fragments), maybe a close."""
    text = st.text(max_size=40).map(lambda s: [TextMessage(s)])
    binary = st.binary(max_size=300).map(lambda b: [BytesMessage(b)])

    def fragmented(parts: list[str], binary: bool, ping: bool) -> list[Event]:
        out: list[Event] = []
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            out.append(
                BytesMessage(part.encode(), message_finished=last)
                if binary
                else TextMessage(part, message_finished=last)
            )
            if ping and not last:
                out.append(Ping(b"!"))
        return out

    fragments = st.builds(
        fragmented,
        st.lists(st.text(max_size=10), min_size=1, max_size=4),
        st.booleans(),
        st.booleans(),
    )
    control = st.sampled_from([[Ping(b"")], [Pong(b"pong")]])
    close = st.sampled_from(
        [
            [],
            [CloseConnection(1000)],
            [CloseConnection(NO_CODE)],
            [CloseConnection(3000, "é")],
        ]
    )
    body = st.lists(st.one_of(text, binary, fragments, control), max_size=6)
    return st.builds(lambda parts, end: [e for p in parts for e in p] + end, body, close)


def read_back(events: list[Event], limit: int) -> list[Message | Close]:
    """What a tap should read from `events`: fragments joined, heads cut between characters."""
    out: list[Message | Close] = []
    payload = b""
    for event in events:
        if isinstance(event, TextMessage | BytesMessage):
            text = isinstance(event, TextMessage)
            payload += event.data.encode() if isinstance(event.data, str) else event.data
            if event.message_finished:
                head = payload[:limit]
                if text:
                    head = head.decode(errors="ignore").encode()
                out.append(Message("text" if text else "binary", len(payload), head))
                payload = b""
        elif isinstance(event, CloseConnection):
            out.append(Close(None if event.code == NO_CODE else event.code, event.reason or ""))
    return out


@given(st.sampled_from(SENDERS), sent_events(), st.integers(0, 64), st.lists(st.integers(0, 10**6)))
@FUZZ
def test_any_split_reads_the_same_as_the_whole(
    sender: str, events: list[Event], limit: int, cuts: list[int]
) -> None:
    data = frames(sender, events)
    whole = Tap(sender, limit)
    expected = whole.feed(data)
    assert expected == read_back(events, limit)
    cut = Tap(sender, limit)
    assert feed_all(cut, split(data, cuts)) == expected
    assert (cut.pings, cut.pongs, cut.closed) == (whole.pings, whole.pongs, whole.closed)
    messages = [e for e in expected if isinstance(e, Message)]
    assert all(len(m.head) <= limit for m in messages)
    for m in messages:
        if m.kind == "text":
            m.head.decode("utf-8")  # whole characters only


@given(
    st.sampled_from(SENDERS),
    st.binary(max_size=600),
    st.integers(0, 32),
    st.lists(st.integers(0, 10**6), max_size=8),
)
@FUZZ
def test_any_bytes_give_events_or_websocket_error(
    sender: str, data: bytes, limit: int, cuts: list[int]
) -> None:
    tap = Tap(sender, limit)
    seen = 0
    try:
        for piece in split(data, cuts):
            for event in tap.feed(piece):
                if isinstance(event, Message):
                    assert len(event.head) <= limit
                    assert event.size >= len(event.head)
            seen += len(piece)
            assert 0 <= tap.pending <= seen
    except WebSocketError:
        pass  # the one exception `feed` may raise; the heads it returned were checked above


@given(st.sampled_from(SENDERS), sent_events(), st.data())
@FUZZ
def test_garbled_streams_give_events_or_websocket_error(
    sender: str, events: list[Event], data: st.DataObject
) -> None:
    raw = bytearray(frames(sender, events) or b"\x81")
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    tap = Tap(sender, 16)
    try:
        for piece in split(bytes(raw), data.draw(st.lists(st.integers(0, 10**6), max_size=6))):
            for event in tap.feed(piece):
                assert not isinstance(event, Message) or len(event.head) <= 16
    except WebSocketError:
        pass


@given(st.sampled_from(SENDERS), st.integers(1, 80), st.integers(0, 4096))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_large_message_keeps_at_most_limit(sender: str, frames_: int, limit: int) -> None:
    """Up to 5 MiB in 64 KiB frames: the head is the first `limit` bytes, the size exact."""
    conn = Connection(ConnectionType.CLIENT if sender == WS_CLIENT else ConnectionType.SERVER)
    piece = bytes(range(256)) * 256
    tap = Tap(sender, limit)
    out: list[Message | Close] = []
    for i in range(frames_):
        out += tap.feed(conn.send(BytesMessage(piece, message_finished=i == frames_ - 1)))
        assert tap.pending == (0 if i == frames_ - 1 else (i + 1) * len(piece))
    assert out == [Message("binary", frames_ * len(piece), piece[:limit])]
