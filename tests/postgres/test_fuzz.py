"""Hypothesis: whatever bytes arrive, from either side, whole or cut anywhere, the core answers
with commands or `RemoteProtocolError` — never another exception, never a hang."""

from __future__ import annotations

import contextlib
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jitctl.plugin import Close, RemoteProtocolError

from . import wire as w

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

CLIENT_MESSAGES = st.sampled_from(
    [
        w.q("select 1"),
        w.q("delete from t"),
        w.q(""),
        w.parse("select $1", types=[23]),
        w.parse("drop table t", name="s"),
        w.parse("select 2", name="s"),
        w.bind(params=[b"1"]),
        w.bind("s", "p", params=[None], formats=[1], results=[1]),
        w.describe("S"),
        w.describe("P", "p"),
        w.execute(),
        w.execute("p", 1),
        w.close("S", "s"),
        w.close("P"),
        w.SYNC,
        w.FLUSH,
        w.copy_data(b"1\tx\n"),
        w.COPY_DONE,
        w.function_call(99),
        w.q("copy t to stdout"),
        w.q("copy t from stdin"),
    ]
)
SERVER_MESSAGES = st.sampled_from(
    [
        w.PARSE_OK,
        w.BIND_OK,
        w.CLOSE_OK,
        w.NO_DATA,
        w.EMPTY,
        w.SUSPENDED,
        w.SERVER_COPY_DONE,
        w.row_description("email", ("n", 16384, 20, 1), ("doc", 0, 3802, 1)),
        w.data_row(b"a@b.c", b"\0\0\0\0\0\0\0\1", b"\x01{}"),
        w.data_row(None),
        w.complete("SELECT 1"),
        w.ready(),
        w.ready("T"),
        w.ready("E"),
        w.error("42601", "syntax error"),
        w.error("57P01", "terminating", "FATAL"),
        w.notice("hi x@y.z"),
        w.message_a(1, "c", "p@q.r"),
        w.param("TimeZone", "UTC"),
        w.param("standard_conforming_strings", "off"),
        w.copy_response(b"G", 1),
        w.copy_response(b"H", 2),
        w.copy_response(b"H", 1, 1),
        w.copy_data(b"1\tx@y.z\n"),
        w.message_a(2, "", ""),
        b"t\0\0\0\6\0\0",
        b"V\0\0\0\x08\0\0\0\0",
    ]
)


def _cuts(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points:
        pieces.append(data[last:point])
        last = point
    pieces.append(data[last:])
    return [p for p in pieces if p]


def _feed(h: w.Harness, side: str, pieces: list[bytes]) -> None:
    """Feed pieces until the core closes; only RemoteProtocolError may escape."""
    for piece in pieces:
        if h.closed is not None:
            return
        (h.client if side == "client" else h.server)(piece)


def _fresh(masked: bool, ready: bool) -> w.Harness:
    h = w.Harness(svc=w.services(masks=w.Masks()) if masked else None, record_rows=2)
    if ready:
        (h.connect_masked() if masked else h.connect())
    return h


@FUZZ
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=6))
def test_startup_phase_takes_any_client_bytes(data: bytes, cuts: list[int]) -> None:
    h = _fresh(False, False)
    with contextlib.suppress(RemoteProtocolError):
        _feed(h, "client", _cuts(data, cuts))


@FUZZ
@given(
    st.binary(max_size=400),
    st.lists(st.integers(0, 400), max_size=6),
    st.sampled_from([b"", w.auth(10, b"SCRAM-SHA-256\0\0"), w.AUTH_OK, w.AUTH_OK + w.key()]),
    st.booleans(),
)
def test_authentication_phase_takes_any_server_bytes(
    data: bytes, cuts: list[int], prefix: bytes, masked: bool
) -> None:
    h = _fresh(masked, False)
    h.client(w.startup(user="a"))
    with contextlib.suppress(RemoteProtocolError):
        _feed(h, "server", _cuts(prefix + data, cuts))


@FUZZ
@given(
    st.sampled_from(["client", "server"]),
    st.binary(max_size=600),
    st.lists(st.integers(0, 600), max_size=6),
    st.booleans(),
)
def test_ready_phase_takes_any_bytes_from_either_side(
    side: str, data: bytes, cuts: list[int], masked: bool
) -> None:
    h = _fresh(masked, True)
    with contextlib.suppress(RemoteProtocolError):
        _feed(h, side, _cuts(data, cuts))


@FUZZ
@given(
    st.lists(st.tuples(st.booleans(), st.one_of(CLIENT_MESSAGES, SERVER_MESSAGES)), max_size=25),
    st.booleans(),
    st.booleans(),
)
def test_interleaved_messages_in_any_order_yield_commands_or_protocol_errors(
    steps: list[tuple[bool, bytes]], masked: bool, bytewise: bool
) -> None:
    h = _fresh(masked, True)
    h.bytewise = bytewise
    try:
        for from_client, data in steps:
            if h.closed is not None:
                break
            (h.client if from_client else h.server)(data)
    except RemoteProtocolError:
        return
    assert h.closed is None or isinstance(h.closed, Close)


@FUZZ
@given(st.lists(SERVER_MESSAGES, max_size=12), st.lists(st.integers(0, 2000), max_size=8))
def test_server_messages_cut_anywhere_behave_as_when_whole(
    msgs: list[bytes], cuts: list[int]
) -> None:
    """Same outcome (bytes, records, close) whether the stream came whole or in pieces."""
    data = b"".join(msgs)
    outcomes = []
    for pieces in ([data], _cuts(data, cuts)):
        h = _fresh(True, True)
        h.client(w.q("select 1"))
        error = None
        try:
            _feed(h, "server", pieces)
        except RemoteProtocolError as exc:
            error = str(exc)
        ended = error is not None or h.closed is not None
        # A chunk that ends the session forwards (and, on a protocol error, records) nothing of
        # itself, so after an end only the ending is comparable; otherwise everything must be.
        records = [(r.kind, dict(r.payload)) for r in h.records]
        outcomes.append(
            (None if ended else bytes(h.down), None if error else records, h.closed, error)
        )
    assert outcomes[0] == outcomes[1]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["client", "server"]),
    st.lists(st.one_of(CLIENT_MESSAGES, SERVER_MESSAGES), min_size=1, max_size=5),
    st.booleans(),
)
def test_every_cut_point_behaves_as_the_whole_stream(
    side: str, msgs: list[bytes], masked: bool
) -> None:
    """Each single cut point of one side's stream gives the same bytes, records and ending."""

    def outcome(pieces: list[bytes]) -> tuple[object, ...]:
        h = _fresh(masked, True)
        if side == "server":
            h.client(w.q("select 1"))
            h.take_up()
        error = None
        try:
            _feed(h, side, pieces)
        except RemoteProtocolError as exc:
            error = str(exc)
        ended = error is not None or h.closed is not None
        records = [(r.kind, dict(r.payload)) for r in h.records]
        forwarded = bytes(h.up) + b"|" + bytes(h.down)
        return (None if ended else forwarded, None if error else records, h.closed, error)

    data = b"".join(msgs)
    whole = outcome([data])
    for cut in range(1, len(data)):
        assert outcome([data[:cut], data[cut:]]) == whole
