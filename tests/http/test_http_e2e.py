"""httpx and curl through the gateway to a local upstream: credentials, policy, masking, trail."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from jitctl.testing.broker import BrokerProcess
from jitctl.testing.http_upstream import HttpUpstream
from tests.http.conftest import API_KEY, TOKEN, Tunnel, upgraded

CLIENT_SECRET = "client-supplied-secret"


def records(broker: BrokerProcess, kind: str) -> list[dict[str, Any]]:
    from jitctl.audit.store import open_store

    with open_store(f"sqlite:///{broker.state_dir / 'audit.db'}", create=False) as store:
        return [dict(r.payload) for r in store.iter_records(kinds=[kind])]


def wait_for(broker: BrokerProcess, kind: str, predicate: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [p for p in records(broker, kind) if predicate(p)]
        if found:
            return found[-1]
        time.sleep(0.05)
    raise AssertionError(f"no {kind} record matched")


def test_httpx_gets_the_injected_token_upstream_and_no_client_credential(
    tunnels: dict[str, Tunnel], upstream: HttpUpstream, broker: BrokerProcess
) -> None:
    response = httpx.get(
        tunnels["api"].url + "/echo/one?x=1",
        headers={
            "Authorization": f"Bearer {CLIENT_SECRET}",
            "Proxy-Authorization": f"Basic {CLIENT_SECRET}",
            "Cookie": f"session={CLIENT_SECRET}",
        },
    )
    assert response.status_code == 200
    seen = [r for r in upstream.requests if r["path"] == "/echo/one?x=1"][-1]["headers"]
    assert seen["authorization"] == f"Bearer {TOKEN}"
    assert CLIENT_SECRET not in json.dumps(seen)
    # The upstream echoed the broker's token back: it is scrubbed, not handed to the client.
    assert TOKEN not in response.text and "*" * len(TOKEN) in response.text
    assert "cookie" not in seen and "proxy-authorization" not in seen
    assert seen["host"] == upstream.address
    record = wait_for(broker, "http.response", lambda p: p["path"] == "/echo/one")
    assert record["query"] == "x=1" and record["decision"] == "allow"
    assert record["status"] == 200 and record["duration_ms"] > 0
    assert record["request_headers"]["authorization"] == "[REDACTED]"
    assert record["request_headers"]["cookie"] == "[REDACTED]"
    assert set(record["client_credentials_dropped"]) >= {"authorization", "cookie"}
    assert record["masked"]["BROKER_SECRET"] >= 1  # the echo is on record, scrubbed
    trail = json.dumps(records(broker, "http.request") + records(broker, "http.response"))
    assert CLIENT_SECRET not in trail and TOKEN not in trail


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_with_an_api_key_header_gets_the_brokers_key_upstream(
    tunnels: dict[str, Tunnel], upstream: HttpUpstream
) -> None:
    result = subprocess.run(
        ["curl", "-sS", "-H", f"X-Api-Key: {CLIENT_SECRET}", tunnels["keyed"].url + "/echo/curl"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["headers"]["x-api-key"] == "*" * len(API_KEY)
    seen = [r for r in upstream.requests if r["path"] == "/echo/curl"][-1]["headers"]
    assert seen["x-api-key"] == API_KEY
    assert "authorization" not in seen
    assert CLIENT_SECRET not in json.dumps(seen)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_a_denied_delete_gets_403_naming_the_rule_and_never_reaches_the_upstream(
    tunnels: dict[str, Tunnel], upstream: HttpUpstream, broker: BrokerProcess
) -> None:
    result = subprocess.run(
        ["curl", "-sS", "-X", "DELETE", "-w", "\n%{http_code}", tunnels["api"].url + "/echo/7"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    body, _, status = result.stdout.rpartition("\n")
    assert status == "403"
    answer = json.loads(body)
    assert answer["rule"] == "no-deletes"
    assert "change process" in answer["message"]
    assert not [r for r in upstream.requests if r["method"] == "DELETE"]
    response = wait_for(broker, "http.response", lambda p: p["method"] == "DELETE")
    assert response["status"] == 403 and response["by"] == "broker"


def test_encoded_dot_segments_cannot_reach_a_denied_path(
    tunnels: dict[str, Tunnel], upstream: HttpUpstream
) -> None:
    with httpx.Client(base_url=tunnels["api"].url) as client:
        assert client.get("/admin/users").status_code == 403
        sneaky = client.send(client.build_request("GET", "/echo/%2e%2e/admin/users"))
        assert sneaky.status_code == 400
    assert not [r for r in upstream.requests if "admin" in r["path"]]


def test_a_json_body_field_rule_denies_prod_and_allows_staging(
    tunnels: dict[str, Tunnel], upstream: HttpUpstream, broker: BrokerProcess
) -> None:
    with httpx.Client(base_url=tunnels["api"].url) as client:
        denied = client.post("/jobs", json={"env": "production", "job": "wipe"})
        allowed = client.post("/jobs", json={"env": "staging", "job": "wipe"})
    assert denied.status_code == 403 and denied.json()["rule"] == "no-prod-jobs"
    assert allowed.status_code == 200
    assert len([r for r in upstream.requests if r["path"] == "/jobs"]) == 1
    # The allowed POST was on record (write-ahead) before it went upstream; both were answered.
    wait_for(broker, "http.request", lambda p: p["path"] == "/jobs" and p["decision"] == "allow")
    refused = wait_for(broker, "http.response", lambda p: p.get("rule") == "no-prod-jobs")
    assert refused["status"] == 403 and refused["decision"] == "deny"


def test_masked_fields_reach_neither_the_client_nor_the_trail(
    tunnels: dict[str, Tunnel], broker: BrokerProcess
) -> None:
    response = httpx.get(tunnels["api"].url + "/users")
    text = response.text
    assert response.status_code == 200
    assert "123-45-6789" not in text and "ada@example.com" not in text
    users = response.json()["users"]
    assert users[0]["ssn"] == "[MASKED]" and users[0]["name"] == "Ada"
    plain = httpx.get(tunnels["api"].url + "/text").text
    assert "ada@example.com" not in plain and "contact" in plain
    record = wait_for(broker, "http.response", lambda p: p["path"] == "/users")
    assert record["masked"]["FIELD:ssn"] == 2
    trail = json.dumps(records(broker, "http.response"))
    assert "123-45-6789" not in trail and "ada@example.com" not in trail


def test_a_chunked_upload_streams_through(tunnels: dict[str, Tunnel]) -> None:
    def chunks() -> Any:
        for _ in range(64):
            yield b"y" * 65536

    response = httpx.post(tunnels["keyed"].url + "/upload", content=chunks(), timeout=30)
    assert response.status_code == 200
    assert response.json()["body_size"] == 64 * 65536


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_a_200_mb_streamed_response_passes_with_bounded_broker_memory(
    tunnels: dict[str, Tunnel], broker: BrokerProcess
) -> None:
    assert broker.proc is not None
    pid = broker.proc.pid
    size = 200 * 1024 * 1024
    before = _rss_kb(pid)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_kb(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    got = 0
    try:
        url = f"{tunnels['api'].url}/stream?bytes={size}"
        with httpx.stream("GET", url, timeout=60) as response:
            assert response.status_code == 200
            for chunk in response.iter_raw():
                got += len(chunk)
    finally:
        done.set()
        sampler.join()
    assert got == size
    grew_mb = (peak[0] - before) / 1024
    assert grew_mb < 64, f"the broker grew by {grew_mb:.0f} MB while streaming 200 MB"


def test_a_raw_upgrade_relays_both_ways_and_keeps_the_first_bytes(
    tunnels: dict[str, Tunnel], broker: BrokerProcess
) -> None:
    """On `keyed`, which has no masks (on a target with masks it is refused:
    tests/http/test_upgrade_e2e.py)."""
    import socket

    with socket.create_connection(("127.0.0.1", tunnels["keyed"].address["port"]), 10) as sock:
        sock.sendall(
            b"GET /socket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: raw-echo\r\n"
            b"Authorization: Bearer " + CLIENT_SECRET.encode() + b"\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101")
        sock.sendall(b"frame one, mail ada@example.com")
        echoed = b""
        while len(echoed) < 31:
            echoed += sock.recv(100)
        assert echoed == b"frame one, mail ada@example.com"
    ended = wait_for(broker, "http.upgrade.end", lambda p: p["path"] == "/socket")
    assert ended["client_bytes"] == 31 and ended["upstream_bytes"] == 31
    assert ended["client_head"] == "frame one, mail ada@example.com"


def test_a_websocket_records_every_message_both_ways_masked(
    tunnels: dict[str, Tunnel], broker: BrokerProcess, upstream: HttpUpstream
) -> None:
    from websockets.sync.client import connect

    url = f"ws://127.0.0.1:{tunnels['api'].address['port']}/ws/chat"
    # websockets offers permessage-deflate: the gateway takes the offer out, so the
    # upstream never compresses and every frame is readable on its way.
    with connect(url, additional_headers={"Authorization": f"Bearer {CLIENT_SECRET}"}) as ws:
        ws.send("hello, mail ada@example.com")
        # The upstream got it as sent; its echo is masked on the way back, as a response is.
        assert ws.recv(timeout=10) == "hello, mail [EMAIL_ADDRESS]"
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=10) == b"\x00\x01binary"
        ws.send("x" * 100_000)  # longer than the body limit: recorded cut
        assert ws.recv(timeout=10) == "x" * 100_000
        ws.ping(b"are you there").wait(timeout=10)
    assert ("/ws/chat", "hello, mail ada@example.com") in upstream.ws_messages
    seen = [r for r in upstream.requests if r["path"] == "/ws/chat"][-1]["headers"]
    assert "sec-websocket-extensions" not in seen
    assert seen["authorization"] == f"Bearer {TOKEN}" and CLIENT_SECRET not in json.dumps(seen)
    ended = wait_for(broker, "http.upgrade.end", lambda p: p["path"] == "/ws/chat")
    client, server = ended["websocket"]["client"], ended["websocket"]["upstream"]
    assert client["messages"] == 3 and server["messages"] == 3
    assert client["pings"] == 1 and server["pongs"] == 1
    assert client["close"]["code"] == 1000 and server["close"]["code"] == 1000
    assert "error" not in ended
    messages = [p for p in records(broker, "http.ws.message") if p["path"] == "/ws/chat"]
    by_side = {side: [m for m in messages if m["from"] == side] for side in ("client", "upstream")}
    for side in ("client", "upstream"):
        text, binary, long = by_side[side]
        assert text["type"] == "text" and "hello, mail" in text["text"]
        assert "ada@example.com" not in text["text"] and text["masked"] == {"EMAIL_ADDRESS": 1}
        assert binary["type"] == "binary" and binary["size"] == 8 and "text" not in binary
        assert long["size"] == 100_000 and long["truncated"]
        assert len(long["text"]) < 100_000
    assert "ada@example.com" not in json.dumps(messages)


def test_a_websocket_client_message_is_on_record_before_the_upstream_gets_it(
    tunnels: dict[str, Tunnel], broker: BrokerProcess
) -> None:
    from websockets.sync.client import connect

    url = f"ws://127.0.0.1:{tunnels['api'].address['port']}/ws/order"
    with connect(url) as ws:
        ws.send("first")
        assert ws.recv(timeout=10) == "first"
        # The echo came back through the upstream, so the upstream had it: by then the
        # client's message must already be in the store, not just queued.
        found = [
            p
            for p in records(broker, "http.ws.message")
            if p["path"] == "/ws/order" and p["from"] == "client"
        ]
        assert [p["text"] for p in found] == ["first"]


def test_an_upstream_that_breaks_the_websocket_protocol_is_cut_off(
    tunnels: dict[str, Tunnel], broker: BrokerProcess
) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    url = f"ws://127.0.0.1:{tunnels['api'].address['port']}/ws-bad"
    got = []
    with connect(url) as ws:
        ws.send("one")
        with pytest.raises(ConnectionClosed):
            while True:  # the echo may come, in its own read; the masked frame never does
                got.append(ws.recv(timeout=10))
    assert got in ([], ["one"])
    ended = wait_for(broker, "http.upgrade.end", lambda p: p["path"] == "/ws-bad")
    assert ended["error"].startswith("upstream: ")


def test_a_websocket_client_that_breaks_the_protocol_is_cut_off_before_the_upstream(
    tunnels: dict[str, Tunnel], broker: BrokerProcess, upstream: HttpUpstream
) -> None:
    with upgraded(tunnels["api"].address["port"], "/ws/unmasked") as sock:
        sock.sendall(b"\x81\x05hello")  # a client frame without a mask: RFC 6455 §5.1
        assert sock.recv(100) == b""  # the gateway hangs up; nothing echoed
    ended = wait_for(broker, "http.upgrade.end", lambda p: p["path"] == "/ws/unmasked")
    assert ended["error"].startswith("client: ") and ended["client_bytes"] == 0
    assert ended["websocket"]["upstream"]["messages"] == 0


def test_jitctl_exec_gives_the_command_a_url_and_no_credential(
    broker: BrokerProcess, upstream: HttpUpstream, tmp_path: Path
) -> None:
    import sys
    import textwrap

    script = tmp_path / "agent.py"
    script.write_text(
        textwrap.dedent(
            """
            import json, os, urllib.request
            with urllib.request.urlopen(os.environ["API_URL"] + "/echo/from-exec") as r:
                print(r.status)
            print(json.dumps(dict(os.environ)))
            """
        )
    )
    result = broker.jitctl("exec", "-t", "api", "--", sys.executable, str(script))
    assert result.returncode == 0, result.stderr
    status, env = result.stdout.splitlines()[:2]
    assert status == "200" and TOKEN not in env
    seen = [r for r in upstream.requests if r["path"] == "/echo/from-exec"][-1]["headers"]
    assert seen["authorization"] == f"Bearer {TOKEN}"


def test_the_trail_verifies_after_the_http_sessions(broker: BrokerProcess) -> None:
    result = broker.jitctl("audit", "verify", "--state-dir", str(broker.state_dir))
    assert result.returncode == 0, result.stdout + result.stderr
