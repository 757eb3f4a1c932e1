"""HTTP/1.1 through the http shell, driven in-process (tests/gateway/test_http_shell.py's fake
tunnel): HEAD, HTTP/1.0 clients, pipelining, chunked uploads in odd pieces, 1xx and odd
upstream framing, and the answers malformed requests get."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from jitctl.config import Target
from jitctl.testing.http_upstream import HttpUpstream
from tests.gateway.test_http_shell import FakeIO, drive, target

GET = b"GET /echo/%d HTTP/1.1\r\nHost: x\r\n\r\n"


class ScriptedUpstream:
    """Answers each request it reads (head, and a Content-Length body) with the next of
    `answers`, as raw bytes; an answer that ends with `CLOSE` closes the connection after it."""

    CLOSE = b"<close>"

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.connections = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        data = b""
        with conn:
            while self.answers:
                while b"\r\n\r\n" not in data:
                    more = conn.recv(65536)
                    if not more:
                        return
                    data += more
                head, _, data = data.partition(b"\r\n\r\n")
                for line in head.lower().split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        while len(data) < int(line[15:]):
                            data += conn.recv(65536)
                        data = data[int(line[15:]) :]
                self.requests.append(head)
                answer = self.answers.pop(0)
                conn.sendall(answer.removesuffix(self.CLOSE))
                if answer.endswith(self.CLOSE):
                    return

    def close(self) -> None:
        self.server.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[HttpUpstream]:
    with HttpUpstream() as server:
        yield server


def scripted(answers: list[bytes], *chunks: bytes, **more: Any) -> tuple[bytes, ScriptedUpstream]:
    up = ScriptedUpstream(answers)
    try:
        io = FakeIO(Target(name="api", protocol="http", address=up.address, **more), list(chunks))
        return drive(io), up
    finally:
        up.close()


def answers(out: bytes) -> list[bytes]:
    """The status lines in what the client got (the bodies here never contain one)."""
    return re.findall(rb"HTTP/1\.1 \d{3} [^\r]*", out)


# -- HEAD, HTTP/1.0, keep-alive ------------------------------------------------------------


def test_a_head_answer_has_the_length_of_the_body_but_no_body(upstream: HttpUpstream) -> None:
    io = FakeIO(target(upstream), [b"HEAD /users HTTP/1.1\r\nHost: x\r\n\r\n" + GET % 2])
    out = drive(io)
    head, _, rest = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"content-length: " in head.lower()
    assert rest.startswith(b"HTTP/1.1 200")  # no body between: the next answer follows
    assert [r.payload["status"] for r in io.records if r.kind == "http.response"] == [200, 200]


def test_a_head_answer_with_a_stray_body_does_not_poison_the_next_request() -> None:
    stray = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\njunk"
    fine = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    out, up = scripted([stray, fine], b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", GET % 1)
    assert answers(out) == [b"HTTP/1.1 200 OK"] * 2 and out.endswith(b"\r\n\r\nok")
    assert b"junk" not in out and up.connections == 2


def test_an_http10_client_gets_its_answer_and_the_connection_closes(
    upstream: HttpUpstream,
) -> None:
    io = FakeIO(target(upstream), [b"GET /echo/old HTTP/1.0\r\n\r\n" + GET % 2])
    out = drive(io)
    assert answers(out) == [b"HTTP/1.1 200 OK"]
    assert b"connection: close" in out.lower() and b"/echo/2" not in out


def test_an_http10_client_gets_a_streamed_body_unchunked_until_close(
    upstream: HttpUpstream,
) -> None:
    out = drive(FakeIO(target(upstream), [b"GET /drip?parts=3 HTTP/1.0\r\n\r\n"]))
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower() and b"connection: close" in head.lower()
    assert body == b"part 1\npart 2\npart 3\n"


def test_an_http11_client_gets_a_close_delimited_upstream_body_chunked() -> None:
    old_style = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close" + (
        ScriptedUpstream.CLOSE
    )
    out, _ = scripted([old_style], GET % 1)
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"b\r\nuntil close\r\n0\r\n\r\n"


def test_pipelined_requests_with_bodies_are_answered_in_order(upstream: HttpUpstream) -> None:
    post = b"POST /echo/p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    io = FakeIO(target(upstream), [post + GET % 2 + post])
    out = drive(io)
    assert answers(out) == [b"HTTP/1.1 200 OK"] * 3
    bodies = [json.loads(part.split(b"\r\n\r\n", 1)[1]) for part in out.split(b"HTTP/1.1 ")[1:]]
    assert [(b["method"], b["body_size"]) for b in bodies] == [("POST", 5), ("GET", 0), ("POST", 5)]


def test_a_chunked_upload_cut_anywhere_arrives_whole(upstream: HttpUpstream) -> None:
    message = (
        b"POST /echo/up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nTrailer: t\r\n\r\n"
    )
    pieces = [message[i : i + 7] for i in range(0, len(message), 7)]
    out = drive(FakeIO(target(upstream), pieces))
    assert json.loads(out.split(b"\r\n\r\n", 1)[1])["body_size"] == 11


def test_1xx_from_the_upstream_are_skipped() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    final = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    out, _ = scripted([interim + final], b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert answers(out) == [b"HTTP/1.1 201 Created"] and out.endswith(b"ok")


def _client_frame(text: str) -> bytes:
    from wsproto.connection import Connection, ConnectionType
    from wsproto.events import TextMessage

    return Connection(ConnectionType.CLIENT).send(TextMessage(data=text))


@pytest.mark.parametrize(
    ("protocol", "after_head", "echo"),
    [
        (b"raw-echo", b"ping", b"ping"),
        # A WebSocket echo answers with an unmasked frame of the same text.
        (b"websocket", _client_frame("ping"), b"\x81\x04ping"),
    ],
)
def test_an_upgrade_answer_names_the_protocol(
    upstream: HttpUpstream, protocol: bytes, after_head: bytes, echo: bytes
) -> None:
    request = (
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: "
        + protocol
        + b"\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    out = drive(FakeIO(target(upstream), [request + after_head]))
    head, _, rest = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101") and b"upgrade: " + protocol in head.lower()
    assert rest == echo  # the bytes after the request's head went through as they were


# -- what malformed requests get -------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"\x00\x01 not http\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"GET / HTTP/0.9\r\n\r\n", 505),
    ],
    ids=["garbage", "no-host", "huge-head", "gzip-coding", "http-0.9"],
)
def test_a_malformed_request_gets_a_json_answer_and_never_reaches_the_upstream(
    upstream: HttpUpstream, request_bytes: bytes, status: int
) -> None:
    before = len(upstream.requests)
    io = FakeIO(target(upstream), [request_bytes])
    out = drive(io)
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status) and b"connection: close" in head.lower()
    assert json.loads(body)["error"].startswith("bad request: ")
    assert len(upstream.requests) == before and not io.records


def test_a_good_request_before_garbage_is_answered_then_the_garbage_gets_400(
    upstream: HttpUpstream,
) -> None:
    out = drive(FakeIO(target(upstream), [GET % 1 + b"\x00garbage\r\n\r\n"]))
    assert answers(out) == [b"HTTP/1.1 200 OK", b"HTTP/1.1 400 Bad Request"]


def test_a_request_body_that_breaks_off_gets_400(upstream: HttpUpstream) -> None:
    bad = b"POST /echo/b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloZZ"
    out = drive(FakeIO(target(upstream), [bad]))
    assert answers(out) == [b"HTTP/1.1 400 Bad Request"]


def test_a_credential_that_would_split_a_header_refuses_the_session(
    upstream: HttpUpstream,
) -> None:
    io = FakeIO(target(upstream), [GET % 1])
    io.context.settings["credential"] = {"token": "abc\r\nX-Evil: 1"}
    assert drive(io) == b""
    assert io.reason.startswith("unavailable: the credential for api")


def test_a_token_about_to_expire_closes_the_connection_after_the_exchange(
    upstream: HttpUpstream,
) -> None:
    io = FakeIO(target(upstream), [GET % 1 + GET % 2])
    expires = str(time.time() + 30)  # within the minute before expiry (Proxy.renew_at)
    io.context.settings["credential"] = {"token": "broker-token-123", "expires_at": expires}
    out = drive(io)
    assert answers(out) == [b"HTTP/1.1 200 OK"] and b"connection: close" in out.lower()


def test_every_response_on_a_keep_alive_connection_is_scrubbed(upstream: HttpUpstream) -> None:
    out = drive(FakeIO(target(upstream), [GET % 1 + GET % 2 + GET % 3]))
    assert answers(out) == [b"HTTP/1.1 200 OK"] * 3
    assert b"broker-token-123" not in out and out.count(b"*" * len("broker-token-123")) == 3
