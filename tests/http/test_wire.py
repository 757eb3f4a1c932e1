"""The http shell's HTTP/1.1 layer (jitctl.gateway.http readers and writers): bytes to events
and back.

Tables of (bytes, expected events), each also fed one byte at a time; the errors a client
gets; Hypothesis: any bytes in any split give events or RemoteProtocolError, a message reads
the same however it is split, and what the writers write reads back as written.
"""

from __future__ import annotations

from typing import Any

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jitctl.gateway.http import writers
from jitctl.gateway.http.events import (
    CLOSED,
    END,
    NEED_DATA,
    PAUSED,
    Data,
    Framing,
    RemoteProtocolError,
    Request,
    Response,
)
from jitctl.gateway.http.readers import MAX_HEAD, RequestReader, ResponseReader

Reader = RequestReader | ResponseReader


def drain(reader: Reader) -> list[Any]:
    """Every event the reader has ready; Data merged, errors as ("error", status)."""
    events: list[Any] = []
    while True:
        try:
            event = reader.next_event()
        except RemoteProtocolError as exc:
            events.append(("error", exc.status))
            return events
        if event is NEED_DATA or event is PAUSED:
            return events
        if type(event) is Data and events and type(events[-1]) is Data:
            events[-1] = Data(events[-1].data + event.data)
        else:
            events.append(event)
        if event is CLOSED:
            return events


def read(reader: Reader, pieces: list[bytes], eof: bool = False) -> list[Any]:
    events: list[Any] = []
    for piece in [*pieces, *([b""] if eof else [])]:
        reader.receive_data(piece)
        events += drain(reader)
        if events and isinstance(events[-1], tuple):
            break
    merged: list[Any] = []  # Data split across reads, merged again
    for event in events:
        if type(event) is Data and merged and type(merged[-1]) is Data:
            merged[-1] = Data(merged[-1].data + event.data)
        else:
            merged.append(event)
    return merged


def requests(data: bytes, eof: bool = False) -> list[Any]:
    """The events of `data` read whole, checked to be the same one byte at a time."""
    whole = read(RequestReader(), [data], eof)
    bytewise = read(RequestReader(), [data[i : i + 1] for i in range(len(data))], eof)
    assert bytewise == whole
    return whole


def responses(data: bytes, method: bytes = b"GET", eof: bool = False) -> list[Any]:
    def one(pieces: list[bytes]) -> list[Any]:
        reader = ResponseReader()
        reader.expect(method)
        return read(reader, pieces, eof)

    whole = one([data])
    assert one([data[i : i + 1] for i in range(len(data))]) == whole
    return whole


def req(method: bytes, target: bytes, fields: list[tuple[bytes, bytes]], **more: Any) -> Request:
    defaults: dict[str, Any] = {"http11": True, "keep_alive": True, "framing": Framing.NONE}
    return Request(method, target, fields, **(defaults | more))


HOST = (b"Host", b"x")

# -- requests --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n", [req(b"GET", b"/a?b=1", [HOST]), END]),
        (
            b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
            [
                req(b"POST", b"/up", [HOST, (b"Content-Length", b"5")], framing=Framing.LENGTH),
                Data(b"hello"),
                END,
            ],
        ),
        (  # chunk extensions and trailer fields are dropped
            b"PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nChecksum: 1\r\n\r\n",
            [
                req(
                    b"PUT",
                    b"/",
                    [HOST, (b"Transfer-Encoding", b"chunked")],
                    framing=Framing.CHUNKED,
                ),
                Data(b"hello world"),
                END,
            ],
        ),
        (  # HTTP/1.0: no Host needed, no keep-alive (as h11)
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            [
                req(b"GET", b"/", [(b"Connection", b"keep-alive")], http11=False, keep_alive=False),
                END,
            ],
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            [req(b"GET", b"/", [HOST, (b"Connection", b"close")], keep_alive=False), END],
        ),
        (  # RFC 9112 §5.5: whitespace around a value is not part of it
            b"GET / HTTP/1.1\r\nHost:   x \t\r\nX-Empty:\r\n\r\n",
            [req(b"GET", b"/", [HOST, (b"X-Empty", b"")]), END],
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\nz",
            [
                req(
                    b"POST",
                    b"/",
                    [HOST, (b"Expect", b"100-Continue"), (b"Content-Length", b"1")],
                    framing=Framing.LENGTH,
                    expect_continue=True,
                ),
                Data(b"z"),
                END,
            ],
        ),
        (  # Content-Length: 0 is no body
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            [req(b"POST", b"/", [HOST, (b"Content-Length", b"0")]), END],
        ),
        (
            b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nHEAD /2 HTTP/1.1\r\nHost: x\r\n\r\n",
            [req(b"GET", b"/1", [HOST]), END, req(b"HEAD", b"/2", [HOST]), END],
        ),
        (b"\r\nOPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", [req(b"OPTIONS", b"*", [HOST]), END]),
    ],
)
def test_requests_read_as_events(data: bytes, expected: list[Any]) -> None:
    assert requests(data) == expected


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"\x00\x01 not http\r\n\r\n", 400),
        (b"get / HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # methods are case-sensitive (RFC 9110 §9.1)
        (b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # llhttp knows the registered methods only
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # RFC 9112 §3.2: Host is required ...
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),  # ... once
        (b"GET / HTTP/1.1\nHost: x\n\n", 400),  # bare LF
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n folded\r\n\r\n", 400),  # obs-fold
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),  # whitespace before the colon
        (b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET / HTTP/0.9\r\n\r\n", 505),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET / HTTP/1.7\r\nHost: x\r\n\r\n", 400),
        (  # RFC 9112 §6.3: smuggling
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (  # llhttp hands over what follows an upgrade's head raw: a body would be lost in it
            b"POST / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: h2c\r\n"
            b"Content-Length: 2\r\n\r\nhi",
            400,
        ),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    ],
)
def test_malformed_requests_get_a_status(data: bytes, status: int) -> None:
    assert requests(data)[-1] == ("error", status)


def test_a_request_before_garbage_is_still_read() -> None:
    events = requests(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00garbage")
    assert events == [req(b"GET", b"/", [HOST]), END, ("error", 400)]


def test_an_eof_between_requests_is_closed_and_within_one_an_error() -> None:
    assert requests(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", eof=True)[-1] is CLOSED
    assert requests(b"GET / HTTP/1.1\r\nHost: x\r\n", eof=True) == [("error", 400)]
    cut = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nabc"
    assert requests(cut, eof=True)[-2:] == [Data(b"abc"), ("error", 400)]


@pytest.mark.parametrize("pieces", [1, 7, 4096])
def test_a_head_over_the_limit_gets_431_whatever_the_reads(pieces: int) -> None:
    data = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MAX_HEAD + b"\r\n\r\n"
    reader = RequestReader()
    events = read(reader, [data[i : i + pieces] for i in range(0, len(data), pieces)])
    assert events == [("error", 431)]


def test_a_field_that_never_ends_is_refused_before_it_fills_memory() -> None:
    reader = RequestReader()
    reader.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nX: ")
    fed = 0
    while not (events := drain(reader)):
        reader.receive_data(b"a" * 1000)  # httptools keeps this field until its line ends
        fed += 1000
        assert fed <= MAX_HEAD + 1000
    assert events == [("error", 431)]


def test_trailers_have_a_limit_of_their_own() -> None:
    head = b"POST / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"h" * (MAX_HEAD - 100) + b"\r\n"
    data = (
        head
        + b"Transfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nT: "
        + b"t" * (MAX_HEAD - 100)
        + b"\r\n\r\n"
    )
    assert read(RequestReader(), [data])[1:] == [Data(b"a"), END]


def test_trailers_over_the_limit_are_refused_too() -> None:
    data = (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n"
        + b"".join(b"T%d: %s\r\n" % (n, b"v" * 1000) for n in range(20))
        + b"\r\n"
    )
    assert read(RequestReader(), [data[i : i + 500] for i in range(0, len(data), 500)])[-1] == (
        "error",
        431,
    )


def test_an_upgrade_pauses_and_keeps_the_bytes_after_it() -> None:
    reader = RequestReader()
    head = b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    reader.receive_data(head + b"\x81\x05hello")
    event = reader.next_event()
    assert type(event) is Request and event.upgrade
    assert reader.next_event() is END
    assert reader.next_event() is PAUSED
    reader.receive_data(b" more")  # kept with the rest, not parsed
    assert reader.trailing == b"\x81\x05hello more"


def test_an_upgrade_that_did_not_happen_reads_on_as_http() -> None:
    reader = RequestReader()
    head = b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    reader.receive_data(head + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
    assert drain(reader)[1:] == [END]
    reader.resume()
    assert drain(reader) == [req(b"GET", b"/next", [HOST]), END]


# -- responses -------------------------------------------------------------------------------


def resp(status: int, fields: list[tuple[bytes, bytes]], framing: Framing, **more: Any) -> Response:
    return Response(
        status, more.pop("reason", b"OK"), fields, framing, more.pop("keep_alive", True)
    )


CL4 = (b"Content-Length", b"4")
CHUNKED = (b"Transfer-Encoding", b"chunked")


@pytest.mark.parametrize(
    ("data", "method", "expected", "reusable"),
    [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npong",
            b"GET",
            [resp(200, [CL4], Framing.LENGTH), Data(b"pong"), END],
            True,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\npo\r\n2\r\nng\r\n0\r\n\r\n",
            b"GET",
            [resp(200, [CHUNKED], Framing.CHUNKED), Data(b"pong"), END],
            True,
        ),
        (  # 1xx come first (RFC 9110 §15.2); a 100 and a 103 here
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npong",
            b"POST",
            [
                resp(100, [], Framing.NONE, reason=b"Continue"),
                resp(103, [(b"Link", b"</a>")], Framing.NONE, reason=b"Early Hints"),
                resp(200, [CL4], Framing.LENGTH),
                Data(b"pong"),
                END,
            ],
            True,
        ),
        (  # RFC 9110 §9.3.2: the answer to HEAD has no body, whatever its head says
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n",
            b"HEAD",
            [resp(200, [CL4], Framing.LENGTH), END],
            True,
        ),
        (  # ... and what comes after it is not read as another response
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npong",
            b"HEAD",
            [resp(200, [CL4], Framing.LENGTH), END],
            False,
        ),
        (
            b"HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\n",
            b"DELETE",
            [resp(204, [CL4], Framing.LENGTH, reason=b"No Content"), END],
            True,
        ),
        (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 4\r\n\r\npong",
            b"GET",
            [
                resp(200, [(b"Connection", b"close"), CL4], Framing.LENGTH, keep_alive=False),
                Data(b"pong"),
                END,
            ],
            False,
        ),
        (
            b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\npong",
            b"GET",
            [resp(200, [CL4], Framing.LENGTH, keep_alive=False), Data(b"pong"), END],
            False,
        ),
        (  # a complete response, then bytes nobody asked for
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npongHTTP/1.1 200 OK\r\n\r\n",
            b"GET",
            [resp(200, [CL4], Framing.LENGTH), Data(b"pong"), END],
            False,
        ),
        (
            b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
            b"GET",
            [resp(200, [(b"Content-Length", b"0")], Framing.LENGTH, reason=b""), END],
            True,
        ),
    ],
)
def test_responses_read_as_events(
    data: bytes, method: bytes, expected: list[Any], reusable: bool
) -> None:
    assert responses(data, method) == expected
    reader = ResponseReader()
    reader.expect(method)
    reader.receive_data(data)
    drain(reader)
    assert reader.reusable is reusable


def test_a_body_until_close_ends_at_eof() -> None:
    data = b"HTTP/1.1 200 OK\r\n\r\nuntil the end"
    assert responses(data, eof=True) == [
        resp(200, [], Framing.CLOSE, keep_alive=False),
        Data(b"until the end"),
        END,
    ]


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc",  # cut short
        b"HTTP/1.1 200 OK\r\nContent-Le",
        b"HTTP/1.1 099 Odd\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",  # no Upgrade
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
    ],
)
def test_broken_responses_are_errors(data: bytes) -> None:
    events = responses(data, eof=True)
    assert isinstance(events[-1], tuple) and events[-1][0] == "error"


def test_eof_before_any_response_is_closed() -> None:
    assert responses(b"", eof=True) == [CLOSED]


def test_a_101_hands_over_the_bytes_after_it() -> None:
    reader = ResponseReader()
    reader.expect(b"GET")
    reader.receive_data(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        b"\x81\x02hi"
    )
    assert [getattr(e, "status_code", e) for e in drain(reader)] == [101, END]
    assert reader.trailing == b"\x81\x02hi"


def test_each_request_gets_a_fresh_response_after_a_reusable_one() -> None:
    reader = ResponseReader()
    for n in range(3):
        reader.expect(b"HEAD" if n == 1 else b"GET")
        reader.receive_data(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n" + (b"" if n == 1 else b"z")
        )
        assert drain(reader)[-1] is END and reader.reusable


# -- writers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "safe"),
    [
        (b"Authorization", b"Bearer abc", True),
        (b"X-Api-Key", b"a\r\nX-Evil: 1", False),
        (b"X-Api-Key", b"a\nb", False),
        (b"X-Api-Key", b"a\x00", False),
        (b"Bad Name", b"v", False),
        (b"", b"v", False),
        (b"X:Y", b"v", False),
    ],
)
def test_only_safe_fields_pass(name: bytes, value: bytes, safe: bool) -> None:
    assert writers.safe_field(name, value) is safe


def h11_answer(
    status: int, fields: list[tuple[bytes, bytes]], method: bytes, version: bytes, close: bool
) -> bytes:
    """What h11, as a server, writes as the head of this response."""
    server = h11.Connection(h11.SERVER)
    connection = b"Connection: close\r\n" if close else b""
    server.receive_data(b"%s / HTTP/%s\r\nHost: x\r\n%s\r\n" % (method, version, connection))
    server.next_event()
    return server.send(h11.Response(status_code=status, headers=fields))


DECLARED = {
    Framing.LENGTH: [(b"Content-Length", b"2")],
    Framing.CHUNKED: [(b"Transfer-Encoding", b"chunked")],
    Framing.CLOSE: [],
}


@pytest.mark.parametrize("status", [200, 204, 304, 404])
@pytest.mark.parametrize("declared", list(DECLARED))
@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
@pytest.mark.parametrize("version", [b"1.1", b"1.0"])
@pytest.mark.parametrize("close", [False, True])
def test_client_framing_follows_h11s_rules_for_a_server(
    status: int, declared: Framing, method: bytes, version: bytes, close: bool
) -> None:
    """h11 framed the answers before httptools came in: the same heads, bodies and closes."""
    fields = [(b"X-A", b"1"), *DECLARED[declared]]
    expected = h11_answer(status, fields, method, version, close).lower()
    http11 = version == b"1.1"
    out, body, closing = writers.for_client(
        status,
        list(fields),
        declared,
        head=method == b"HEAD",
        http11=http11,
        close=close or not http11,
    )
    ours = writers.response_head(status, b"", out).lower()
    assert sorted(ours.split(b"\r\n")) == sorted(expected.split(b"\r\n"))
    no_body = method == b"HEAD" or status in (204, 304)
    assert (body is Framing.NONE) is no_body
    assert closing is (b"connection: close" in expected)


# -- properties ------------------------------------------------------------------------------

tokens = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=12)
values = st.binary(max_size=40).map(
    lambda b: bytes(c for c in b if c >= 0x21 and c != 0x7F) or b"v"
)


@st.composite
def request_messages(draw: st.DrawFn) -> tuple[bytes, Request, bytes]:
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"]))
    path = b"/" + draw(tokens).encode()
    fields = [(b"Host", b"x")] + [
        (b"X-" + draw(tokens).encode(), draw(values)) for _ in range(draw(st.integers(0, 4)))
    ]
    body = draw(st.binary(max_size=300))
    framing = Framing.NONE
    if body and draw(st.booleans()):
        framing = Framing.CHUNKED
        fields.append((b"Transfer-Encoding", b"chunked"))
        cuts = sorted(draw(st.lists(st.integers(1, len(body)), max_size=5)))
        parts = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        wire = b"".join(writers.chunk(p) for p in parts) + writers.LAST_CHUNK
    elif body:
        framing = Framing.LENGTH
        fields.append((b"Content-Length", b"%d" % len(body)))
        wire = body
    else:
        wire = b""
    data = writers.request_head(method, path, fields) + wire
    return data, req(method, path, fields, framing=framing), body


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` in pieces cut at `cuts` (modulo its length); no piece is empty (b"" is EOF)."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    return [piece for piece in pieces if piece]


@given(st.lists(request_messages(), min_size=1, max_size=3), st.lists(st.integers(0, 10**6)))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_pipelined_requests_read_the_same_however_split(
    messages: list[tuple[bytes, Request, bytes]], cuts: list[int]
) -> None:
    data = b"".join(m[0] for m in messages)
    expected: list[Any] = []
    for _, request, body in messages:
        expected += [request, *([Data(body)] if body else []), END]
    assert read(RequestReader(), split(data, cuts)) == expected


@given(st.binary(max_size=400), st.lists(st.integers(0, 10**6), max_size=8), st.booleans())
@settings(max_examples=500)
def test_any_bytes_give_events_or_a_protocol_error(data: bytes, cuts: list[int], eof: bool) -> None:
    for reader in (RequestReader(max_head=256), ResponseReader(max_head=256)):
        if isinstance(reader, ResponseReader):
            reader.expect(b"GET")
        read(reader, split(data, cuts), eof)  # raises anything else


@given(request_messages(), st.data())
@settings(max_examples=300)
def test_garbled_requests_give_events_or_a_protocol_error(
    message: tuple[bytes, Request, bytes], data: st.DataObject
) -> None:
    raw = bytearray(message[0])
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "drop", "insert"]))
        if action == "flip":
            raw[at] = data.draw(st.integers(0, 255))
        elif action == "drop":
            del raw[at]
        else:
            raw.insert(at, data.draw(st.sampled_from(b"\r\n :\x00\x7f;0")))
    cuts = data.draw(st.lists(st.integers(0, 10**6), max_size=6))
    read(RequestReader(), split(bytes(raw), cuts), data.draw(st.booleans()))


@given(
    st.sampled_from([200, 201, 404, 500]),
    st.binary(max_size=300),
    st.sampled_from([Framing.LENGTH, Framing.CHUNKED]),
    st.lists(st.integers(0, 10**6), max_size=6),
)
def test_a_response_as_the_shell_writes_it_reads_back_the_same(
    status: int, body: bytes, framing: Framing, cuts: list[int]
) -> None:
    declared = [(b"Content-Length", b"%d" % len(body))] if framing is Framing.LENGTH else []
    fields, out, _ = writers.for_client(
        status, [(b"X-A", b"1"), *declared], framing, head=False, http11=True, close=False
    )
    data = writers.response_head(status, b"Fine", fields)
    data += writers.chunk(body) + writers.LAST_CHUNK if out is Framing.CHUNKED else body
    reader = ResponseReader()
    reader.expect(b"GET")
    events = read(reader, split(data, cuts))
    assert events[0].status_code == status and events[0].headers == fields
    assert events[1:] == [*([Data(body)] if body else []), END] and reader.reusable
