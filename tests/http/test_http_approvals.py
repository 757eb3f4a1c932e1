"""An approve rule holds the request until an approver decides; only a yes reaches upstream."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from jitctl.testing.broker import BrokerProcess
from jitctl.testing.http_upstream import HttpUpstream
from jitctl.testing.issuer import TokenIssuer
from tests.http.conftest import Tunnel
from tests.http.test_http_e2e import records, wait_for


def _approver(broker: BrokerProcess, token_issuer: TokenIssuer, tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "bob-home"
    home.mkdir(exist_ok=True)
    token = home / "token"
    token.write_text(token_issuer.mint(sub="bob", groups=["dba"], lifetime=3600))
    env = {**broker.env, "JITCTL_HOME": str(home)}
    assert broker.jitctl("login", "--token-file", str(token), env=env).returncode == 0
    return env


@pytest.mark.parametrize("verdict", ["approve", "deny"])
def test_a_held_post_goes_upstream_only_once_approved(
    tunnels: dict[str, Tunnel],
    upstream: HttpUpstream,
    broker: BrokerProcess,
    token_issuer: TokenIssuer,
    tmp_path: Path,
    verdict: str,
) -> None:
    path = f"/deploy/{verdict}"
    before = {p["id"] for p in records(broker, "approval.requested")}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(httpx.post, tunnels["guarded"].url + path, json={"v": 1}, timeout=30)
        held: dict[str, Any] = wait_for(
            broker, "approval.requested", lambda p: p["id"] not in before
        )
        time.sleep(0.2)
        assert not [r for r in upstream.requests if r["path"] == path]  # held
        answer = broker.jitctl(
            "request",
            verdict,
            held["id"],
            "--reason",
            "ok",
            env=_approver(broker, token_issuer, tmp_path),
        )
        assert answer.returncode == 0, answer.stderr
        response = pending.result(timeout=30)
    reached = [r for r in upstream.requests if r["path"] == path]
    # approval.executed says the request went upstream: after its write-ahead http.request.
    steps = _steps(broker, held["id"], path)
    if verdict == "approve":
        assert response.status_code == 200 and len(reached) == 1
        assert steps == ["approval.granted", "http.request", "approval.executed"]
    else:
        assert response.status_code == 403 and not reached
        assert response.json()["rule"] == "rule 1"
        assert "denied" in response.json()["message"]
        assert steps == ["approval.denied"]


def _steps(broker: BrokerProcess, request_id: str, path: str) -> list[str]:
    """The trail's order of one held request's decision, its write-ahead record and its
    release (once the response is recorded, the exchange is over)."""
    from jitctl.audit.store import open_store

    wait_for(broker, "http.response", lambda p: p["path"] == path)
    with open_store(f"sqlite:///{broker.state_dir / 'audit.db'}", create=False) as store:
        return [
            r.kind
            for r in store.iter_records()
            if (r.kind == "http.request" and r.payload.get("path") == path)
            or (
                r.kind in ("approval.granted", "approval.denied", "approval.executed")
                and r.payload.get("id") == request_id
            )
        ]


def test_a_session_on_a_granted_target_names_its_grant_in_session_start(
    upstream: HttpUpstream, broker: BrokerProcess, token_issuer: TokenIssuer, tmp_path: Path
) -> None:
    asked = broker.jitctl("request", "create", "jit", "--reason", "INC-12", "--for", "5m")
    assert asked.returncode == 0, asked.stderr
    grant = asked.stdout.strip()
    approved = broker.jitctl(
        "request", "approve", grant, "--reason", "ok", env=_approver(broker, token_issuer, tmp_path)
    )
    assert approved.returncode == 0, approved.stderr
    with Tunnel(*broker.connect("jit")) as tunnel:
        assert httpx.get(tunnel.url + "/ping", timeout=15).status_code == 200
    (start,) = [r for r in broker.records("session.start") if r.target == "jit"]
    assert start.payload["grant"] == grant
    assert "upstream_tls" not in start.payload  # plain http: nothing to say
