"""Masking on the wire (jitctl_http.reframe): the upstream's frames in, what the client gets out.

The upstream's frames are written by a wsproto server Connection (`frames`), and what the
re-framer sends is read back by a wsproto client Connection (`client_reads`), so a frame header
that lies about its length fails the read. Hypothesis: any split gives the same bytes and
events as the whole; any bytes give output or `WebSocketError`.
"""

from __future__ import annotations

import struct
from collections.abc import Collection
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, Pong, TextMessage

from jitctl.config.targets import Mask
from jitctl.masking import MaskPolicy
from jitctl_http.bodies import Scrub, field_names
from jitctl_http.reframe import Reframer, Refused
from jitctl_http.websocket import WS_UPSTREAM, Close, Message, WebSocketError
from tests.http.test_websocket_core import FUZZ, bytewise, frames, raw_frame, sent_events, split

SECRET = "upstream-token-only-the-broker-knows"
MASKS = [Mask(columns=["ssn"], detectors=["EMAIL_ADDRESS"])]


def reframer(limit: int = 1000, record_limit: int = 64, *, masks: bool = True) -> Reframer:
    return Reframer(
        limit=limit,
        record_limit=record_limit,
        masks=MaskPolicy.from_config(MASKS) if masks else None,
        fields=field_names(MASKS) if masks else set(),
        scrub=Scrub([SECRET.encode()]),
    )


def upstream(*events: Any) -> bytes:
    return frames(WS_UPSTREAM, events)


def client_reads(data: bytes) -> list[Event]:
    """What a client reads from `data`: whole messages (fragments joined) and control frames."""
    conn = Connection(ConnectionType.CLIENT)
    conn.receive_data(data)
    out: list[Event] = []
    parts: list[Any] = []
    for event in conn.events():
        if isinstance(event, TextMessage | BytesMessage):
            parts.append(event.data)
            if event.message_finished:
                joined = "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)
                out.append(type(event)(joined))  # type: ignore[arg-type]
                parts = []
        else:
            if isinstance(event, CloseConnection):  # received, not wsproto's own verdict
                assert conn.state is ConnectionState.REMOTE_CLOSING, event
            out.append(event)
    return out


def run(data: bytes, r: Reframer | None = None) -> tuple[bytes, list[Any]]:
    """Fed whole and one byte at a time: both must give the same; that result."""
    whole = (r or reframer()).feed(data)
    out, events = b"", []
    one = reframer(r.limit, r.record_limit, masks=r.masks is not None) if r else reframer()
    for piece in bytewise(data):
        got, done = one.feed(piece)
        out += got
        events += done
        if done and isinstance(done[-1], Refused):
            break  # the relay ends the connection
    assert (out, events) == whole
    return whole


def test_an_email_in_a_text_message_reaches_the_client_masked_in_a_true_frame() -> None:
    out, events = run(upstream(TextMessage("mail ada@example.com now")))
    payload = b"mail [EMAIL_ADDRESS] now"
    assert out == b"\x81" + bytes([len(payload)]) + payload  # FIN, text, no masking key
    assert events == [Message("text", len(payload), payload, {"EMAIL_ADDRESS": 1})]


def test_a_message_that_masking_lengthens_past_125_bytes_gets_a_16_bit_length() -> None:
    out, _ = run(upstream(TextMessage("x" * 110 + " a@b.io")))  # 117 bytes before, 126 after
    payload = ("x" * 110 + " [EMAIL_ADDRESS]").encode()
    assert out == b"\x81\x7e" + struct.pack("!H", len(payload)) + payload
    assert client_reads(out) == [TextMessage(payload.decode())]


def test_fragments_are_masked_as_one_message_even_with_an_address_cut_between_them() -> None:
    data = upstream(
        TextMessage("mail ada@exa", message_finished=False),
        TextMessage("mple.com", message_finished=False),
        TextMessage(" now", message_finished=True),
    )
    out, _ = run(data)
    assert client_reads(out) == [TextMessage("mail [EMAIL_ADDRESS] now")]
    assert out.count(b"\x81") == 1  # one frame, no continuation


def test_a_ping_between_fragments_goes_out_at_once_before_the_whole_message() -> None:
    data = upstream(
        TextMessage("one ", message_finished=False),
        Ping(b"are you there"),
        TextMessage("two", message_finished=True),
        Pong(b"after"),
    )
    out, _ = run(data)
    assert out.startswith(upstream(Ping(b"are you there")))  # byte for byte, first
    assert client_reads(out) == [Ping(b"are you there"), TextMessage("one two"), Pong(b"after")]


def test_json_is_masked_by_field_name_and_detectors() -> None:
    out, events = run(upstream(TextMessage('{"ssn": "123-45-6789", "mail": "ada@example.com"}')))
    [message] = client_reads(out)
    assert isinstance(message, TextMessage)
    assert "123-45-6789" not in message.data and "ada@example.com" not in message.data
    assert events[0].masked == {"FIELD:ssn": 1, "EMAIL_ADDRESS": 1}


def test_a_text_message_with_nothing_to_mask_arrives_as_sent() -> None:
    data = upstream(TextMessage("nothing here"), TextMessage('{"name": "Ada"}'))
    out, events = run(data)
    assert out == data
    assert [e.masked for e in events] == [{}, {}]


def test_the_brokers_secret_is_replaced_in_text_even_without_masks() -> None:
    for masks in (True, False):
        data = upstream(TextMessage(f"your token is {SECRET}!"))
        out, events = run(data, reframer(masks=masks))
        assert client_reads(out) == [TextMessage(f"your token is {'*' * len(SECRET)}!")]
        assert events[0].masked == {"BROKER_SECRET": 1}


def test_binary_messages_pass_byte_for_byte_and_are_not_masked() -> None:
    data = upstream(
        BytesMessage(b"\x00ada@example.com\xff", message_finished=False),
        Ping(b""),
        BytesMessage(b"x" * 70000, message_finished=True),
    )
    out, events = run(data)
    assert out == data
    size = 17 + 70000
    assert events == [Message("binary", size, b"\x00ada@example.com\xff" + b"x" * 47, {})]


def test_a_large_binary_message_streams_out_as_it_comes_in() -> None:
    """Not held until it ends: each read's bytes go out with it (memory stays bounded)."""
    data = upstream(BytesMessage(b"z" * (5 << 20)))
    r = reframer()
    for start in range(0, len(data), 65536):
        piece = data[start : start + 65536]
        assert r.feed(piece)[0] == piece


def test_the_brokers_secret_is_replaced_in_a_binary_frame_keeping_its_length() -> None:
    data = upstream(BytesMessage(b"\x00" + SECRET.encode() + b"\x01"))
    out, events = run(data)
    assert out == data.replace(SECRET.encode(), b"*" * len(SECRET))
    assert events[0].masked == {"BROKER_SECRET": 1}


STARS = b"*" * len(SECRET)


def binary_frames(payload: bytes, cuts: list[int], ends: Collection[int] = ()) -> bytes:
    """`payload` as binary frames cut at `cuts`; a message ends after each frame in `ends`
    (by its index) and after the last."""
    pieces = split(payload, cuts)
    return upstream(
        *(
            BytesMessage(piece, message_finished=n in ends or n == len(pieces) - 1)
            for n, piece in enumerate(pieces)
        )
    )


def test_the_brokers_secret_cut_between_two_frames_of_a_binary_message_is_replaced() -> None:
    payload = b"\x00key=" + SECRET.encode() + b"\x01"
    data = binary_frames(payload, [20])  # the secret starts at 5: cut inside it
    out, events = run(data)
    assert out == binary_frames(payload.replace(SECRET.encode(), STARS), [20])  # same frames
    sent = payload.replace(SECRET.encode(), STARS)
    assert events == [Message("binary", len(payload), sent[:64], {"BROKER_SECRET": 1})]


def test_the_brokers_secret_cut_between_two_binary_messages_is_replaced() -> None:
    """Counted in the message it ends in."""
    payload = b"env: API_TOKEN=" + SECRET.encode() + b"\n"
    cut = 15 + len(SECRET) // 2
    data = binary_frames(payload, [cut], ends={0})
    out, events = run(data)
    assert out == binary_frames(payload.replace(SECRET.encode(), STARS), [cut], ends={0})
    assert [e.masked for e in events] == [{}, {"BROKER_SECRET": 1}]
    assert [e.size for e in events] == [cut, len(payload) - cut]


def test_the_brokers_secret_in_one_byte_frames_is_replaced() -> None:
    payload = SECRET.encode()
    data = binary_frames(payload, list(range(1, len(payload))))
    out, events = run(data)
    assert out == binary_frames(STARS, list(range(1, len(payload))))
    assert events[0].masked == {"BROKER_SECRET": 1}


def test_only_an_end_that_could_start_the_secret_waits_and_a_ping_sends_it() -> None:
    """It waits for the next binary bytes, at most the secret's length minus one byte; a
    control frame (or the upstream's end) sends it as it is."""
    r = reframer()
    whole = upstream(BytesMessage(b"abc" + SECRET.encode()[:-1]))
    out, events = r.feed(whole)
    assert out == whole[: -(len(SECRET) - 1)] and events == []
    out, events = r.feed(upstream(Ping(b"x")))
    assert out == SECRET.encode()[:-1] + upstream(Ping(b"x"))
    assert [e.size for e in events if isinstance(e, Message)] == [3 + len(SECRET) - 1]
    r = reframer()
    assert r.feed(whole)[0] + r.flush()[0] == whole
    assert r.flush() == (b"", [])


@given(
    st.binary(max_size=40),
    st.binary(max_size=40),
    st.lists(st.integers(0, 200), max_size=8),
    st.sets(st.integers(0, 8)),
    st.lists(st.integers(0, 10**6), max_size=6),
)
@FUZZ
def test_a_secret_anywhere_in_binary_frames_reaches_no_client_however_cut(
    before: bytes, after: bytes, frame_cuts: list[int], ends: set[int], cuts: list[int]
) -> None:
    """Frames, message ends and reads cut anywhere: the client reads the payload with the
    secret replaced, in frames of the upstream's lengths, and any split of the input gives
    the same bytes and events."""
    payload = before + SECRET.encode() + after
    data = binary_frames(payload, frame_cuts, ends)
    expected = reframer().feed(data)
    cut = reframer()
    out, done = b"", []
    for piece in split(data, cuts):
        got, more = cut.feed(piece)
        out += got
        done += more
    rest, more = cut.flush()
    assert (out, done) == expected
    out += rest
    done += more
    assert out == binary_frames(payload.replace(SECRET.encode(), STARS), frame_cuts, ends)
    assert sum(e.size for e in done) == len(payload)
    assert sum(e.masked.get("BROKER_SECRET", 0) for e in done) >= 1


def test_a_text_message_at_the_limit_passes_and_one_byte_more_is_refused_with_1009() -> None:
    at = upstream(TextMessage("a" * 100))
    assert client_reads(run(at, reframer(limit=100))[0]) == [TextMessage("a" * 100)]
    over = upstream(
        TextMessage("first"),
        TextMessage("a" * 60, message_finished=False),
        TextMessage("a" * 41 + " ada@example.com", message_finished=True),
    )
    out, events = run(over, reframer(limit=100))
    assert client_reads(out) == [
        TextMessage("first"),
        CloseConnection(1009, "message too big to mask"),
    ]
    assert isinstance(events[-1], Refused) and events[-1].code == 1009
    assert "mask_limit (100 bytes)" in events[-1].reason
    assert b"ada@" not in out and out.count(b"a" * 60) == 0


def test_an_oversized_frame_is_refused_from_its_header_without_waiting_for_its_payload() -> None:
    r = reframer(limit=1 << 20)
    out, events = r.feed(b"\x81\x7f" + struct.pack("!Q", 1 << 40))  # a 1 TiB text frame
    assert client_reads(out) == [CloseConnection(1009, "message too big to mask")]
    assert [type(e) for e in events] == [Refused]
    with pytest.raises(WebSocketError, match="mask_limit"):
        r.feed(b"more")


def test_the_close_is_forwarded_and_recorded_with_the_secret_scrubbed() -> None:
    data = upstream(TextMessage("bye"), CloseConnection(4000, f"no {SECRET}"))
    r = reframer()
    out, events = run(data, r)
    assert client_reads(out)[-1] == CloseConnection(4000, f"no {'*' * len(SECRET)}")
    assert events[-1] == Close(4000, f"no {'*' * len(SECRET)}") == r.closed
    assert (r.messages, r.pings, r.pongs) == (1, 0, 0)


def test_what_breaks_rfc_6455_raises_before_anything_of_that_feed_goes_out() -> None:
    r = reframer()
    with pytest.raises(WebSocketError, match="masked frame"):
        r.feed(upstream(Ping(b"")) + raw_frame("client", 0x81, b"hi"))  # a masked server frame
    with pytest.raises(WebSocketError):
        r.feed(upstream(Ping(b"")))  # and ever after


@given(sent_events(), st.integers(0, 120), st.lists(st.integers(0, 10**6)))
@FUZZ
def test_any_split_gives_the_same_bytes_and_events_as_the_whole(
    events: list[Any], limit: int, cuts: list[int]
) -> None:
    data = frames(WS_UPSTREAM, events)
    expected = reframer(limit, 16).feed(data)
    cut = reframer(limit, 16)
    out, done = b"", []
    for piece in split(data, cuts):
        got, more = cut.feed(piece)
        out += got
        done += more
        if more and isinstance(more[-1], Refused):
            break
    assert (out, done) == expected
    client_reads(expected[0])  # the output is valid RFC 6455 from a server


@given(st.binary(max_size=400), st.lists(st.integers(0, 10**6), max_size=6))
@FUZZ
def test_any_bytes_give_output_or_websocket_error(data: bytes, cuts: list[int]) -> None:
    r = reframer(limit=64)
    try:
        for piece in split(data, cuts):
            r.feed(piece)
    except WebSocketError:
        pass


@given(st.lists(st.sampled_from([Ping(b"x"), Pong(b""), TextMessage("t")]), max_size=5))
@FUZZ
def test_pings_and_pongs_are_counted_as_a_tap_counts_them(events: list[Any]) -> None:
    r = reframer()
    r.feed(frames(WS_UPSTREAM, events))
    assert r.pings == sum(isinstance(e, Ping) for e in events)
    assert r.pongs == sum(isinstance(e, Pong) for e in events)


# -- the trail's copy of a client's message (not masked on the wire) --------------------------


class _RecordingIO:
    def __init__(self) -> None:
        self.records: list[Any] = []

    def record(self, record: Any) -> None:
        self.records.append(record)


def _client_record(head: bytes, size: int | None = None) -> dict[str, Any]:
    from jitctl.config.targets import HttpOptions
    from jitctl.gateway.http.trail import Exchange, Trail
    from jitctl_http.headers import HeaderRules
    from jitctl_http.websocket import WS_CLIENT

    io = _RecordingIO()
    trail = Trail(
        io, HeaderRules.of(HttpOptions()), MaskPolicy.from_config(MASKS), field_names(MASKS)
    )
    exchange = Exchange({"path": "/ws"}, 0, 0.0)
    trail.ws_message(exchange, WS_CLIENT, Message("text", size or len(head), head))
    payload: dict[str, Any] = io.records[0].payload
    return payload


def test_a_clients_json_message_is_recorded_with_its_masked_fields_as_a_request_body_is() -> None:
    payload = _client_record(b'{"ssn": "123-45-6789", "note": "mail a@example.com"}')
    assert "123-45-6789" not in payload["text"] and "a@example.com" not in payload["text"]
    assert payload["masked"] == {"FIELD:ssn": 1, "EMAIL_ADDRESS": 1}


def test_a_clients_json_message_cut_at_the_limit_is_withheld_not_recorded_half_masked() -> None:
    payload = _client_record(b'{"ssn": "123-45-6789", "no', size=4096)
    assert payload["text"] == "[WITHHELD]" and payload["truncated"] is True


def test_a_clients_plain_text_message_is_masked_by_the_detectors() -> None:
    payload = _client_record(b"write to a@example.com", size=4096)
    assert "a@example.com" not in payload["text"] and payload["masked"] == {"EMAIL_ADDRESS": 1}
