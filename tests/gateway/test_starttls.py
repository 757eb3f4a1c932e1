"""jitctl.gateway.starttls against small real servers that answer the TLS request badly.

The happy paths (TLS, "prefer" falling back, certificates) run against PostgreSQL in
tests/postgres/test_upstream_tls.py; here are the answers a real server never gives.
"""

from __future__ import annotations

import asyncio
import ssl

import pytest

from jitctl.gateway.starttls import UpstreamTlsError, open_upstream
from jitctl.plugin import StartTls

REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"


def spec(required: bool = False) -> StartTls:
    return StartTls(
        request=REQUEST,
        accepted=b"S",
        declined=b"N",
        context=ssl.create_default_context(),
        server_hostname="127.0.0.1",
        required=required,
        mode="require" if required else "prefer",
    )


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = b""

    def data_received(self, data: bytes) -> None:
        self.data += data


async def against(answer: bytes | None, start: StartTls) -> tuple[bytes, object]:
    """Serve one connection that reads the request and writes `answer` (None: hangs up);
    returns (what the server read, open_upstream's result or exception)."""
    seen = bytearray()
    served = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            seen.extend(await reader.readexactly(len(REQUEST)))
            if answer is not None:
                writer.write(answer)
                await reader.read(4096)  # a ClientHello, or the client hanging up
        finally:
            writer.close()
            served.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    result: object
    try:
        opened = await open_upstream("127.0.0.1", port, start, Sink)
        opened[0].close()
        result = opened
    except UpstreamTlsError as exc:
        result = exc
    finally:
        server.close()
    await asyncio.wait_for(served.wait(), 10)
    return bytes(seen), result


def run(answer: bytes | None, start: StartTls) -> tuple[bytes, object]:
    return asyncio.run(against(answer, start))


def test_bytes_sent_along_with_the_answer_refuse_the_session() -> None:
    # CVE-2021-23222: what comes with "S" was written before any encryption.
    seen, result = run(b"S" + b"\x00\x00\x00\x0cZ", spec())
    assert seen == REQUEST
    assert isinstance(result, UpstreamTlsError)
    assert "man-in-the-middle" in str(result)


def test_a_decline_with_bytes_behind_it_is_refused_too() -> None:
    _, result = run(b"NR\x00\x00\x00\x08\x00\x00\x00\x00", spec())
    assert isinstance(result, UpstreamTlsError) and "man-in-the-middle" in str(result)


def test_a_decline_is_refused_when_tls_is_required() -> None:
    _, result = run(b"N", spec(required=True))
    assert isinstance(result, UpstreamTlsError)
    assert "does not offer TLS" in str(result) and "'require'" in str(result)


def test_a_decline_goes_on_in_plain_tcp_under_prefer() -> None:
    _, result = run(b"N", spec())
    assert isinstance(result, tuple)
    _, protocol, record = result
    assert isinstance(protocol, Sink) and record == {"mode": "prefer", "version": None}


def test_an_error_answer_is_refused_with_what_came() -> None:
    # A server too old for SSLRequest answers with an ErrorResponse.
    _, result = run(b"E", spec())
    assert isinstance(result, UpstreamTlsError) and "unexpected answer b'E'" in str(result)


def test_a_server_that_hangs_up_is_refused() -> None:
    _, result = run(None, spec())
    assert isinstance(result, UpstreamTlsError)
    assert "closed the connection" in str(result)


def test_a_server_that_says_yes_but_speaks_no_tls_fails_the_handshake() -> None:
    _, result = run(b"S", spec())
    assert isinstance(result, UpstreamTlsError)
    assert "TLS handshake failed" in str(result) or "closed" in str(result)


@pytest.mark.parametrize("answer", [b"S", b"N"])
def test_nothing_else_is_sent_before_the_answer(answer: bytes) -> None:
    seen, _ = run(answer, spec())
    assert seen == REQUEST
