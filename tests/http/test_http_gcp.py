"""An http target whose credential names a GCP target: each caller's own access token upstream.

The GCP emulator plays STS and IAM Credentials; the local upstream stands in for a GCP API.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from jitctl.testing.broker import BrokerProcess
from jitctl.testing.gcp_emulator import GcpEmulator
from jitctl.testing.http_upstream import HttpUpstream
from jitctl.testing.issuer import TokenIssuer
from tests.gcp.support import AUDIENCE, READER, SUBJECT, audit_records

CONFIG = """
[[identity.issuers]]
issuer = "{issuer}"

[gcp]
sts_endpoint = "{sts}"
iam_endpoint = "{iam}"

[[gcp.targets]]
name = "reader"
audience = "{audience}"
service_account = "{reader}"
scopes = ["https://www.googleapis.com/auth/bigquery.readonly"]
lifetime = "10m"
allow_groups = ["agents"]

[[targets]]
name = "bigquery"
protocol = "http"
address = "{upstream}"
allow_groups = ["agents"]
credential = {{ gcp = "reader" }}
"""


@pytest.fixture(scope="module")
def setup(
    token_issuer: TokenIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[BrokerProcess, GcpEmulator, HttpUpstream]]:
    with GcpEmulator() as emulator, HttpUpstream() as upstream:
        config = CONFIG.format(
            issuer=token_issuer.url,
            sts=emulator.sts_endpoint,
            iam=emulator.iam_endpoint,
            audience=AUDIENCE,
            reader=READER,
            upstream=upstream.url,
        )
        with BrokerProcess(config, state_dir=tmp_path_factory.mktemp("http-gcp")) as broker:
            jwks = httpx.get(broker.url + "/gcp/jwks", verify=broker.verify(), timeout=10).json()
            emulator.add_provider(AUDIENCE, issuer=broker.url + "/gcp", jwks=jwks)
            emulator.add_service_account(READER, members=[emulator.principal(AUDIENCE, SUBJECT)])
            broker.login_with_token(
                token_issuer.mint(sub=SUBJECT, groups=["agents"], lifetime=3600)
            )
            yield broker, emulator, upstream


def test_the_callers_minted_gcp_token_reaches_the_api_and_is_recorded(
    setup: tuple[BrokerProcess, GcpEmulator, HttpUpstream],
) -> None:
    broker, emulator, upstream = setup
    process, address = broker.connect("bigquery")
    try:
        assert address["url"] == f"http://127.0.0.1:{address['port']}"
        response = httpx.get(
            address["url"] + "/bigquery/v2/projects/p/datasets",
            headers={"Authorization": "Bearer the-clients-own-token"},
        )
    finally:
        process.terminate()
        process.communicate(timeout=10)
    assert response.status_code == 200
    seen = upstream.requests[-1]["headers"]["authorization"]
    scheme, token = seen.split(" ", 1)
    assert scheme == "Bearer" and token != "the-clients-own-token"
    issued = emulator.find(token)
    assert issued is not None and issued.subject == SUBJECT
    assert issued.service_account == READER
    assert token not in response.text  # the echo is scrubbed
    minted = audit_records(broker, "gcp.credential")[-1]
    assert minted.target == "bigquery" and minted.payload["purpose"] == "http-proxy"
    assert token not in json.dumps([dict(r.payload) for r in audit_records(broker)])
