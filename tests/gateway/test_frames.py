"""The tunnel's frame decoder: table tests, byte-at-a-time, and a Hypothesis fuzz."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jitctl.gateway import frames
from jitctl.plugin import RemoteProtocolError

CASES = [
    (frames.data_frame(b"hello"), [frames.Data(b"hello")]),
    (frames.data_frame(b""), [frames.Data(b"")]),
    (frames.eof_frame(), [frames.Eof()]),
    (frames.close_frame("done", error=True), [frames.CloseFrame("done", True)]),
    (
        frames.data_frame(b"a") + frames.eof_frame() + frames.close_frame("x"),
        [frames.Data(b"a"), frames.Eof(), frames.CloseFrame("x", False)],
    ),
]


@pytest.mark.parametrize(("wire", "events"), CASES)
def test_whole_input_decodes_to_the_expected_events(wire: bytes, events: list[object]) -> None:
    assert frames.FrameDecoder().feed(wire) == events


@pytest.mark.parametrize(("wire", "events"), CASES)
def test_input_fed_one_byte_at_a_time_gives_the_same_events(
    wire: bytes, events: list[object]
) -> None:
    decoder = frames.FrameDecoder()
    got: list[object] = []
    for index in range(len(wire)):
        got += decoder.feed(wire[index : index + 1])
    assert got == events
    assert decoder.pending == 0


@pytest.mark.parametrize(
    ("wire", "problem"),
    [
        (b"X\x00\x00\x00\x00", "unknown frame type"),
        (b"D\x7f\xff\xff\xff", "exceeds"),
        (b"E\x00\x00\x00\x01x", "end-of-data frame with a payload"),
        (b"C\x00\x00\x00\x03abc", "not a JSON object"),
    ],
)
def test_malformed_frames_are_protocol_errors(wire: bytes, problem: str) -> None:
    with pytest.raises(RemoteProtocolError, match=problem):
        frames.FrameDecoder().feed(wire)


def test_preamble_must_be_a_json_object() -> None:
    assert frames.decode_line(b'{"target": "x"}\n') == {"target": "x"}
    for bad in (b"[1]\n", b"nope\n", b"\xff\n", b"{" * 70000):
        with pytest.raises(RemoteProtocolError):
            frames.decode_line(bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048), st.integers(min_value=1, max_value=64))
def test_arbitrary_bytes_give_events_or_a_protocol_error(data: bytes, step: int) -> None:
    decoder = frames.FrameDecoder()
    try:
        for start in range(0, len(data), step):
            for event in decoder.feed(data[start : start + step]):
                assert isinstance(event, frames.Data | frames.Eof | frames.CloseFrame)
    except RemoteProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20), st.integers(min_value=1, max_value=50))
def test_any_data_stream_survives_framing_split_anywhere(chunks: list[bytes], step: int) -> None:
    wire = b"".join(frames.data_frame(c) for c in chunks) + frames.eof_frame()
    decoder = frames.FrameDecoder()
    events: list[object] = []
    for start in range(0, len(wire), step):
        events += decoder.feed(wire[start : start + step])
    assert events == [frames.Data(c) for c in chunks] + [frames.Eof()]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(max_size=300), min_size=1, max_size=10),
    st.integers(min_value=0, max_value=3500),
)
def test_taking_the_pending_bytes_and_feeding_them_back_loses_and_reorders_nothing(
    chunks: list[bytes], cut: int
) -> None:
    """What the relay does when a Hold stops a chunk's frames midway (jitctl.gateway.relay):
    it takes the incomplete frame's bytes and feeds them again later, behind nothing else."""
    wire = b"".join(frames.data_frame(c) for c in chunks)
    decoder = frames.FrameDecoder()
    events = decoder.feed(wire[:cut])
    pending = decoder.take_pending()
    assert decoder.pending == 0
    taken = sum(5 + len(e.data) for e in events if isinstance(e, frames.Data))
    assert len(pending) == len(wire[:cut]) - taken
    fresh = frames.FrameDecoder()
    events += fresh.feed(pending + wire[cut:])
    assert events == [frames.Data(c) for c in chunks]
