"""WebSocket masking on the wire, end to end: a real broker and `jitctl connect`, the real
`websockets` client (or a raw socket, to see the exact bytes) and the wsproto echo upstream.

Targets of their own: `plain` has neither masks nor a credential (the pass-through path);
`tight` masks `ssn` and email addresses, injects a token, and has the smallest `mask_limit`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import Ping, TextMessage

from jitctl.testing.broker import BrokerProcess
from jitctl.testing.http_upstream import HttpUpstream
from jitctl.testing.issuer import TokenIssuer
from jitctl_http.websocket import WS_UPSTREAM
from tests.http.conftest import TOKEN, Tunnel, upgraded
from tests.http.test_http_e2e import records, wait_for
from tests.http.test_websocket_core import frames

CONFIG = """
[[identity.issuers]]
issuer = "{issuer}"

[[targets]]
name = "plain"
protocol = "http"
address = "{url}"
allow_groups = ["agents"]

[[targets]]
name = "tight"
protocol = "http"
address = "{url}"
allow_groups = ["agents"]
credential = {{ token_env = "API_TOKEN" }}
http = {{ mask_limit = 1024 }}

[[targets.masks]]
columns = ["ssn"]
detectors = ["EMAIL_ADDRESS"]
"""


@pytest.fixture(scope="module")
def ws_broker(
    token_issuer: TokenIssuer, upstream: HttpUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerProcess]:
    config = CONFIG.format(issuer=token_issuer.url, url=upstream.url)
    process = BrokerProcess(
        config, state_dir=tmp_path_factory.mktemp("ws"), env={"API_TOKEN": TOKEN}
    )
    with process:
        process.login_with_token(token_issuer.mint(sub="agent-9", groups=["agents"], lifetime=3600))
        yield process


@pytest.fixture(scope="module")
def ports(ws_broker: BrokerProcess) -> Iterator[dict[str, int]]:
    opened = {name: Tunnel(*ws_broker.connect(name)) for name in ("plain", "tight")}
    yield {name: tunnel.address["port"] for name, tunnel in opened.items()}
    for tunnel in opened.values():
        tunnel.close()


def echo_bytes(port: int, path: str, text: str, expect: int) -> bytes:
    """Send `text` as a client on a raw socket; the first `expect` bytes that come back."""
    with upgraded(port, path) as sock:
        sock.sendall(Connection(ConnectionType.CLIENT).send(TextMessage(text)))
        got = b""
        while len(got) < expect:
            more = sock.recv(expect - len(got))
            assert more, got
            got += more
        return got


def upstream_records(broker: BrokerProcess, path: str) -> list[dict[str, object]]:
    return [
        p
        for p in records(broker, "http.ws.message")
        if p["path"] == path and p["from"] == WS_UPSTREAM
    ]


def test_a_target_without_masks_or_secret_relays_the_upstreams_frames_byte_for_byte(
    ports: dict[str, int],
) -> None:
    """Fragments, the ping between them and the address in them: exactly as the upstream
    wrote them (the pass-through path)."""
    sent = frames(
        WS_UPSTREAM,
        [
            TextMessage("mail ada", message_finished=False),
            Ping(b"between"),
            TextMessage("@example", message_finished=False),
            TextMessage(".com", message_finished=True),
        ],
    )
    assert echo_bytes(ports["plain"], "/ws-frag/plain", "mail ada@example.com", len(sent)) == sent


def test_a_masking_target_joins_the_fragments_and_masks_an_address_cut_between_them(
    ports: dict[str, int], ws_broker: BrokerProcess, upstream: HttpUpstream
) -> None:
    """The ping goes out first, as it came; then the message, whole, in one frame."""
    masked = "mail [EMAIL_ADDRESS]"
    expected = frames(WS_UPSTREAM, [Ping(b"between"), TextMessage(masked)])
    got = echo_bytes(ports["tight"], "/ws-frag/tight", "mail ada@example.com", len(expected))
    assert got == expected
    assert ("/ws-frag/tight", "mail ada@example.com") in upstream.ws_messages
    record = wait_for(
        ws_broker,
        "http.ws.message",
        lambda p: p["path"] == "/ws-frag/tight" and p["from"] == WS_UPSTREAM,
    )
    assert record["text"] == masked and record["masked"] == {"EMAIL_ADDRESS": 1}
    assert record["size"] == len(masked)


def test_json_and_the_brokers_token_in_an_echo_reach_the_client_masked(
    ports: dict[str, int], ws_broker: BrokerProcess, upstream: HttpUpstream
) -> None:
    from websockets.sync.client import connect

    document = {"name": "Ada", "ssn": "123-45-6789", "mail": "ada@example.com"}
    with connect(f"ws://127.0.0.1:{ports['tight']}/ws/json") as ws:
        ws.send(json.dumps(document))
        assert json.loads(ws.recv(timeout=10)) == {
            "name": "Ada",
            "ssn": "[MASKED]",
            "mail": "[EMAIL_ADDRESS]",
        }
        ws.send(f"the token is {TOKEN}")
        assert ws.recv(timeout=10) == f"the token is {'*' * len(TOKEN)}"
        ws.send(b"\x00binary ada@example.com")  # binary: not masked, as an octet-stream body
        assert ws.recv(timeout=10) == b"\x00binary ada@example.com"
    got = [message for path, message in upstream.ws_messages if path == "/ws/json"]
    assert got[:2] == [json.dumps(document), f"the token is {TOKEN}"]
    wait_for(ws_broker, "http.upgrade.end", lambda p: p["path"] == "/ws/json")
    found = upstream_records(ws_broker, "/ws/json")
    assert [m.get("masked") for m in found] == [
        {"FIELD:ssn": 1, "EMAIL_ADDRESS": 1},
        {"BROKER_SECRET": 1},
        None,
    ]
    trail = json.dumps(found)
    assert "123-45-6789" not in trail and TOKEN not in trail


def test_a_text_message_over_the_mask_limit_closes_the_client_with_1009(
    ports: dict[str, int], ws_broker: BrokerProcess, upstream: HttpUpstream
) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{ports['tight']}/ws/big") as ws:
        ws.send("small")
        assert ws.recv(timeout=10) == "small"
        ws.send("y" * 1025 + " ada@example.com")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    ended = wait_for(ws_broker, "http.upgrade.end", lambda p: p["path"] == "/ws/big")
    assert ended["error"].startswith("upstream: ") and "mask_limit (1024 bytes)" in ended["error"]
    assert ended["websocket"]["upstream"]["messages"] == 1  # the one forwarded
    assert [m["size"] for m in upstream_records(ws_broker, "/ws/big")] == [5]
