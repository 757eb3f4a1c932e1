"""The http shell driven in-process: a fake tunnel (ShellIO) in front, a real upstream behind."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from jitctl.config import Target
from jitctl.gateway.http import run_session
from jitctl.plugin import Hold, Record, Review, SessionContext
from jitctl.testing.http_upstream import HttpUpstream


class FakeIO:
    """A tunnel whose client sends `chunks` and then goes away."""

    def __init__(self, target: Target, chunks: list[bytes], review: Review | None = None) -> None:
        self.context = SessionContext(
            session_id="s1",
            target=target,
            groups=("agents",),
            settings={"credential": {"token": "broker-token-123"}}
            | ({"approvals": {"timeout": 5}} if review else {}),
        )
        self.upstream = target.address
        self.ended = asyncio.Event()
        self.chunks = list(chunks)
        self.sent = bytearray()
        self.writes: list[tuple[float, bytes]] = []  # (monotonic time, bytes) per write
        self.records: list[Record] = []
        self.review = review
        self.holds: list[Hold] = []
        self.released_after: dict[str, list[str]] = {}  # hold id -> record kinds at its release
        self.reason = ""

    async def start(self, details: Any = None) -> None:
        pass

    async def refuse(self, code: str, error: str, hint: str = "") -> None:
        self.reason = f"{code}: {error}"

    async def read(self) -> bytes:
        await asyncio.sleep(0.01)
        return self.chunks.pop(0) if self.chunks else b""

    half_closed = False  # it goes away whole

    async def gone(self) -> None:
        pass

    async def write(self, data: bytes) -> None:
        self.sent += data
        self.writes.append((time.monotonic(), data))

    def record(self, record: Record, time_us: int = 0) -> Any:
        self.records.append(record)
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    def end(self, reason: str, error: bool = False) -> None:
        self.reason = reason

    async def hold(self, hold: Hold) -> Review:
        self.holds.append(hold)
        assert self.review is not None
        return self.review

    async def released(self, hold: Hold) -> None:
        assert hold in self.holds
        self.released_after[hold.hold_id] = [r.kind for r in self.records]


@pytest.fixture(scope="module")
def upstream() -> Iterator[HttpUpstream]:
    with HttpUpstream() as server:
        yield server


def target(upstream: HttpUpstream, **more: Any) -> Target:
    return Target(name="api", protocol="http", address=upstream.url, **more)


def drive(io: FakeIO) -> bytes:
    asyncio.run(asyncio.wait_for(run_session(io), 20))
    return bytes(io.sent)


def test_pipelined_requests_are_answered_in_order(upstream: HttpUpstream) -> None:
    io = FakeIO(
        target(upstream),
        [b"GET /echo/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /echo/2 HTTP/1.1\r\nHost: x\r\n\r\n"],
    )
    out = drive(io)
    assert out.count(b"HTTP/1.1 200") == 2
    assert out.index(b"/echo/1") < out.index(b"/echo/2")
    assert [(r.kind, r.payload["path"]) for r in io.records] == [
        ("http.request", "/echo/1"),
        ("http.response", "/echo/1"),
        ("http.request", "/echo/2"),
        ("http.response", "/echo/2"),
    ]


def test_with_write_ahead_for_changes_only_a_read_has_one_record(upstream: HttpUpstream) -> None:
    io = FakeIO(
        target(upstream, http={"write_ahead": "changes"}),
        [b"GET /echo/1 HTTP/1.1\r\nHost: x\r\n\r\n"],
    )
    assert b"HTTP/1.1 200" in drive(io)
    assert [r.kind for r in io.records] == ["http.response"]


def test_expect_100_continue_is_answered_by_the_gateway(upstream: HttpUpstream) -> None:
    io = FakeIO(
        target(upstream),
        [
            b"POST /echo/up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n",
            b"hello",
        ],
    )
    out = drive(io)
    assert out.startswith(b"HTTP/1.1 100 ")
    assert b"HTTP/1.1 200" in out and b'"body_size": 5' in out
    assert [r.kind for r in io.records] == ["http.request", "http.response"]


def test_a_masked_response_larger_than_mask_limit_is_refused_not_passed(
    upstream: HttpUpstream,
) -> None:
    io = FakeIO(
        target(
            upstream,
            masks=[{"detectors": ["EMAIL_ADDRESS"]}],
            http={"mask_limit": 1024},
        ),
        [b"GET /stream?bytes=5000 HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n"],
    )
    # octet-stream is not masked: it streams
    assert b"HTTP/1.1 200" in drive(io)
    big = FakeIO(
        target(upstream, masks=[{"columns": ["ssn"]}], http={"mask_limit": 1024}),
        [b"GET /echo/" + b"a" * 1500 + b" HTTP/1.1\r\nHost: x\r\n\r\n"],
    )
    out = drive(big)
    assert out.startswith(b"HTTP/1.1 502") and b"mask_limit" in out


def test_an_approved_hold_forwards_and_a_denied_one_does_not(upstream: HttpUpstream) -> None:
    rules = [{"name": "ask", "match": {"method": ["PUT"]}, "action": "approve"}]
    access = {"approvers": ["dba"]}
    request = b"PUT /echo/held HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    yes = FakeIO(target(upstream, rules=rules, access=access), [request], Review(True, "approved"))
    out = drive(yes)
    assert b"HTTP/1.1 102" in out and b"HTTP/1.1 200" in out
    assert yes.holds[0].text == "PUT /echo/held"
    # Released (approval.executed) once the request went upstream: after its write-ahead
    # record, before the response came back.
    assert yes.released_after == {yes.holds[0].hold_id: ["http.request"]}
    no = FakeIO(target(upstream, rules=rules, access=access), [request], Review(False, "denied"))
    out = drive(no)
    assert b"HTTP/1.1 403 Forbidden\r\n" in out and b'"rule": "ask"' in out
    assert no.records[-1].payload["by"] == "broker"
    assert no.released_after == {}  # it never went upstream


def test_garbage_from_the_client_gets_400_and_ends_the_connection(upstream: HttpUpstream) -> None:
    out = drive(FakeIO(target(upstream), [b"\x00\x01 not http\r\n\r\n"]))
    assert out.startswith(b"HTTP/1.1 400")


def test_an_unreachable_upstream_refuses_the_session() -> None:
    io = FakeIO(Target(name="api", protocol="http", address="127.0.0.1:9"), [])
    drive(io)
    assert io.reason.startswith("upstream: cannot reach api")


def test_a_streamed_response_reaches_the_client_as_the_upstream_sends_it(
    upstream: HttpUpstream,
) -> None:
    io = FakeIO(target(upstream), [b"GET /drip?parts=2&pause=0.5 HTTP/1.1\r\nHost: x\r\n\r\n"])
    out = drive(io)
    assert b"part 1" in out and b"part 2" in out
    first = next(at for at, data in io.writes if b"part 1" in data)
    second = next(at for at, data in io.writes if b"part 2" in data)
    assert second - first >= 0.3  # part 1 was not held back until the upstream sent part 2
