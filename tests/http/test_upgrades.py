"""Upgrades to a protocol other than WebSocket, through the http shell driven in-process: on a
target with masks the gateway refuses them (it could not mask what follows a 101); on one
without, the raw relay still replaces the broker's secret in what the upstream sends."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from jitctl.config import Target
from jitctl.testing.http_upstream import HttpUpstream
from tests.gateway.test_http_shell import FakeIO, drive, target
from tests.http.test_http11 import ScriptedUpstream

BROKER_TOKEN = "broker-token-123"  # FakeIO's credential
MASKS = [{"columns": ["ssn"], "detectors": ["EMAIL_ADDRESS"]}]


def upgrade(path: str, protocol: str, *more: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: x", "Connection: Upgrade", f"Upgrade: {protocol}"]
    return ("\r\n".join([*lines, *more]) + "\r\n\r\n").encode()


class LingeringIO(FakeIO):
    """A client that stays `linger` seconds after its last chunk before it goes away, so what
    the upstream sends slowly after a 101 still reaches it."""

    linger = 0.4

    async def read(self) -> bytes:
        if self.chunks:
            return await super().read()
        await asyncio.sleep(self.linger)
        return b""


class HalfClosingIO(FakeIO):
    """A client that ends its sending side after its last chunk and still reads (a
    half-close: `shutdown(SHUT_WR)`, `nc -N`)."""

    half_closed = False

    async def read(self) -> bytes:
        data = await super().read()
        self.half_closed = not data
        return data

    async def gone(self) -> None:
        await asyncio.Event().wait()  # it stays: the upstream's end ends the relay


def of_kind(io: FakeIO, kind: str) -> list[dict[str, Any]]:
    return [r.payload for r in io.records if r.kind == kind]


def test_a_masked_target_answers_502_to_a_custom_upgrade_and_the_upstream_never_sees_it(
    upstream: HttpUpstream,
) -> None:
    """The connection stays HTTP/1.1: a request after the refused upgrade is answered."""
    before = len(upstream.requests)
    request = upgrade("/socket", "raw-echo") + b"GET /users HTTP/1.1\r\nHost: x\r\n\r\n"
    out = drive(FakeIO(target(upstream, masks=MASKS), [request]))
    head, _, rest = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 502") and b"101" not in out
    body = json.loads(rest[: rest.index(b"HTTP/1.1")])
    assert body["protocol"] == "raw-echo" and "cannot mask" in body["error"]
    assert b"HTTP/1.1 200" in rest and b"123-45-6789" not in rest  # the next one, masked
    assert [r["path"] for r in upstream.requests[before:]] == ["/users"]


def test_a_refused_upgrade_is_on_record_as_the_brokers_502() -> None:
    up = ScriptedUpstream([])
    try:
        io = FakeIO(
            Target(name="api", protocol="http", address=up.address, masks=MASKS),
            [upgrade("/tcp", "my-tcp/2")],
        )
        drive(io)
    finally:
        up.close()
    [response] = of_kind(io, "http.response")
    assert response["status"] == 502 and response["by"] == "broker"
    assert response["upgrade_refused"] == "my-tcp/2" and "cannot mask" in response["message"]
    assert up.requests == []  # connected at the session's start, never asked


def test_an_h2c_upgrade_on_a_masked_target_is_served_over_http11_masked(
    upstream: HttpUpstream,
) -> None:
    """RFC 7540 §3.2: the upgrade is left out, the request answered as a plain one."""
    before = len(upstream.requests)
    request = upgrade(
        "/users", "h2c", "Connection: Upgrade, HTTP2-Settings", "HTTP2-Settings: AAMAAABkAAQ"
    ).replace(b"Connection: Upgrade\r\n", b"", 1)
    io = FakeIO(target(upstream, masks=MASKS), [request])
    out = drive(io)
    assert out.startswith(b"HTTP/1.1 200") and b"[MASKED]" in out and b"123-45-6789" not in out
    [seen] = upstream.requests[before:]
    assert not {"upgrade", "http2-settings", "connection"} & set(seen["headers"])
    [response] = of_kind(io, "http.response")
    assert response["status"] == 200 and response["upgrade_refused"] == "h2c"


def test_an_upstream_that_switches_a_masked_target_to_another_protocol_gets_502() -> None:
    """Asked for a WebSocket, it answers 101 to h2c: nothing after its head reaches the client."""
    switched = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
        b"token " + BROKER_TOKEN.encode() + b" mail ada@example.com"
    )
    up = ScriptedUpstream([switched])
    try:
        io = FakeIO(
            Target(name="api", protocol="http", address=up.address, masks=MASKS),
            [upgrade("/ws", "websocket", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==")],
        )
        out = drive(io)
    finally:
        up.close()
    assert out.startswith(b"HTTP/1.1 502") and b"101" not in out
    assert b"ada@example.com" not in out and BROKER_TOKEN.encode() not in out
    assert b"'h2c'" in out
    [response] = of_kind(io, "http.response")
    assert response["status"] == 502 and response["upgrade_refused"] == "h2c"


def test_a_raw_upgrade_without_masks_replaces_the_brokers_token_cut_between_reads(
    upstream: HttpUpstream,
) -> None:
    """The upstream echoes the request's headers, each cut mid-value (the injected
    `Authorization` among them): the client gets `*` where the token was, and the trail
    counts it."""
    io = LingeringIO(target(upstream), [upgrade("/upgrade-headers", "raw-echo")])
    out = drive(io)
    head, _, rest = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    # The token is replaced; the scheme before it is no secret (bodies.Scrub).
    assert b"Authorization: Bearer " + b"*" * len(BROKER_TOKEN) + b"\r\n" in rest
    assert BROKER_TOKEN.encode() not in rest
    [ended] = of_kind(io, "http.upgrade.end")
    assert ended["masked"] == {"BROKER_SECRET": 1} and BROKER_TOKEN not in json.dumps(ended)
    assert ended["upstream_bytes"] == len(rest)


def test_a_client_that_half_closes_a_raw_upgrade_gets_what_the_upstream_sends_after(
    upstream: HttpUpstream,
) -> None:
    """The upstream answers the client's end of data with `bye ` and the broker's token cut
    in two writes, then closes: all of it reaches the client (the token replaced), and the
    relay ends with the upstream, not with the client's end of data."""
    io = HalfClosingIO(target(upstream), [upgrade("/upgrade-after-eof", "raw-echo"), b"ping"])
    out = drive(io)
    head, _, rest = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    assert rest == b"ping" + b"bye Bearer " + b"*" * len(BROKER_TOKEN)
    [ended] = of_kind(io, "http.upgrade.end")
    assert ended["masked"] == {"BROKER_SECRET": 1}
    assert ended["client_bytes"] == 4 and ended["upstream_bytes"] == len(rest)


def test_a_client_gone_whole_ends_a_raw_upgrade_without_waiting_for_the_upstream(
    upstream: HttpUpstream,
) -> None:
    """Without a half-close (the tunnel closed) nobody can read what the upstream would send:
    the relay ends at once, as before."""
    io = FakeIO(target(upstream), [upgrade("/upgrade-after-eof", "raw-echo"), b"ping"])
    out = drive(io)
    assert b"bye" not in out
    [ended] = of_kind(io, "http.upgrade.end")
    assert ended["client_bytes"] == 4
