"""The google-auth chain on its own: failures name the stage and carry the upstream's reason."""

from __future__ import annotations

import socket

import pytest

from jitctl.broker.gcp_chain import GcpError, exchange
from jitctl.config import GcpSection, GcpTarget

AUDIENCE = "//iam.googleapis.com/projects/7/locations/global/workloadIdentityPools/p/providers/b"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_sts_is_reported_with_its_url() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1/token"
    section = GcpSection(sts_endpoint=url, timeout=5)
    target = GcpTarget(name="t", audience=AUDIENCE)
    with pytest.raises(GcpError) as caught:
        exchange(section, target, "subject.jwt.token", ["scope"], 600, boundary=False)
    error = caught.value
    assert error.stage == "sts" and error.status == 502 and error.error == "upstream_unreachable"
    assert error.reason.startswith(f"cannot reach STS at {url}")
