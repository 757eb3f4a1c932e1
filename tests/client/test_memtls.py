"""jitctl.client.memtls: server-side TLS on memory buffers, for local clients that open with
their ClientHello (PostgreSQL 17's direct TLS). A real OpenSSL client (on memory buffers too)
talks to it; the bytes between them are cut anywhere."""

from __future__ import annotations

import itertools
import ssl
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jitctl.broker.tlsfiles import ensure_tls_files, server_context
from jitctl.client.memtls import MemoryTLS


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca, cert, key = ensure_tls_files(Path(tmp_path_factory.mktemp("memtls")), ["127.0.0.1"])
    server = server_context(cert, key)
    server.set_alpn_protocols(["postgresql"])
    client = ssl.create_default_context(cafile=str(ca))
    client.set_alpn_protocols(["postgresql"])
    return server, client


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


def session(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], cuts: list[int], message: bytes
) -> tuple[bytes, bytes, MemoryTLS]:
    """Handshake, the client sends `message`, the server answers it reversed, the client
    closes: (what the server read, what the client read, the server)."""
    server_context, client_context = contexts
    server = MemoryTLS(server_context)
    c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(c_in, c_out, server_hostname="127.0.0.1")
    got = b""
    while True:  # the handshake, each flight cut at `cuts`
        try:
            client.do_handshake()
            break
        except ssl.SSLWantReadError:
            pass
        for piece in cut(c_out.read(), cuts):
            plain, reply = server.receive(piece)
            got += plain
            c_in.write(reply)
    assert client.selected_alpn_protocol() == "postgresql"  # what libpq's direct TLS demands
    client.write(message)
    for piece in cut(c_out.read(), cuts):
        plain, reply = server.receive(piece)
        got += plain
        c_in.write(reply)
    c_in.write(server.send(got[::-1]))
    back = b""
    while True:
        try:
            back += client.read(65536)
        except ssl.SSLWantReadError:
            break
    with pytest.raises(ssl.SSLWantReadError):
        client.unwrap()  # close_notify out; the server's own is not awaited
    plain, _ = server.receive(c_out.read())
    return got + plain, back, server


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(0, 5000), max_size=6), message=st.binary(max_size=70_000))
def test_the_bytes_arrive_whole_however_the_records_are_cut(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], cuts: list[int], message: bytes
) -> None:
    got, back, server = session(contexts, cuts, message)
    assert got == message and back == message[::-1]
    assert server.closed  # close_notify read: the client's end of data


@settings(max_examples=100, deadline=None)
@given(garbage=st.binary(min_size=1, max_size=600))
def test_garbage_is_an_ssl_error_or_waits_never_anything_else(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], garbage: bytes
) -> None:
    server = MemoryTLS(contexts[0])
    try:
        plain, _ = server.receive(b"\x16" + garbage)
    except ssl.SSLError:
        return
    assert plain == b"" and not server.handshaken
