"""https:// upstreams with a private CA and a client certificate (`http.tls_*`).

A real HTTPS upstream (jitctl.testing.http_upstream with TLS) that demands a client
certificate: what it saw of the certificate is the ground truth that the broker presented it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jitctl.testing.broker import BrokerProcess, check_config
from jitctl.testing.certs import client_certificate
from jitctl.testing.http_upstream import HttpUpstream
from jitctl.testing.issuer import TokenIssuer

TOKEN = "token-only-the-broker-knows"

TARGET = """
[[targets]]
name = "{name}"
protocol = "http"
address = "{url}"
allow_groups = ["agents"]
credential = {{ token_env = "API_TOKEN" }}
{options}
"""


@pytest.fixture(scope="module")
def client_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return client_certificate(tmp_path_factory.mktemp("client"), "jitctl-broker")


@pytest.fixture(scope="module")
def upstream(
    tmp_path_factory: pytest.TempPathFactory, client_cert: tuple[Path, Path, Path]
) -> Iterator[HttpUpstream]:
    with HttpUpstream(tls_dir=tmp_path_factory.mktemp("upstream"), client_ca=client_cert[0]) as up:
        yield up


@pytest.fixture(scope="module")
def broker(
    token_issuer: TokenIssuer,
    upstream: HttpUpstream,
    client_cert: tuple[Path, Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BrokerProcess]:
    _, cert, key = client_cert
    targets = {
        "mtls": f'http = {{ tls_ca_file = "{upstream.ca_file}", tls_cert_file = "{cert}", '
        f'tls_key_file = "{key}" }}',
        "untrusted": "",  # the system's CAs do not know the upstream's
    }
    config = f'[[identity.issuers]]\nissuer = "{token_issuer.url}"\n' + "".join(
        TARGET.format(name=name, url=upstream.url, options=options)
        for name, options in targets.items()
    )
    with BrokerProcess(
        config, state_dir=tmp_path_factory.mktemp("httptls"), env={"API_TOKEN": TOKEN}
    ) as process:
        process.login_with_token(token_issuer.mint(sub="agent-3", groups=["agents"], lifetime=3600))
        yield process


def get(broker: BrokerProcess, target: str, path: str) -> tuple[httpx.Response | None, str]:
    """GET `path` through `jitctl connect TARGET`: (the response or None, connect's stderr)."""
    process, address = broker.connect(target)
    try:
        try:
            response: httpx.Response | None = httpx.get(
                f"http://127.0.0.1:{address['port']}{path}",
                headers={"Authorization": "Bearer the-client-s-own"},
                timeout=15,
            )
        except httpx.HTTPError:
            response = None
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=15)
    return response, err


def test_the_broker_presents_its_client_certificate_and_checks_the_private_ca(
    broker: BrokerProcess, upstream: HttpUpstream
) -> None:
    response, err = get(broker, "mtls", "/echo?x=1")
    assert response is not None and response.status_code == 200, err
    seen = upstream.requests[-1]
    assert seen["client_cn"] == "jitctl-broker"
    assert seen["headers"]["authorization"] == f"Bearer {TOKEN}"  # injected, the client's gone
    # The trail says the upstream leg was TLS, verified, and which version.
    start = broker.records("session.start")[-1]
    assert start.target == "mtls"
    assert start.payload["upstream_tls"]["mode"] == "verify-full"
    assert start.payload["upstream_tls"]["version"] in ("TLSv1.2", "TLSv1.3")


def test_an_upstream_certificate_nobody_vouches_for_refuses_the_session(
    broker: BrokerProcess,
) -> None:
    before = len(broker.records("session.denied"))
    response, err = get(broker, "untrusted", "/echo")
    assert response is None or response.status_code >= 500
    assert "certificate did not verify: self-signed certificate" in err, err
    assert "Traceback" not in err
    denied = broker.records("session.denied")[before:]
    assert [r.target for r in denied] == ["untrusted"]
    assert "certificate did not verify" in str(denied[0].payload["error"])


@pytest.mark.parametrize(
    ("address", "options", "expected"),
    [
        ("https://127.0.0.1:1", 'http = {{ tls_ca_file = "{missing}" }}', "do not load"),
        ("http://127.0.0.1:1", 'http = {{ tls_ca_file = "{ca}" }}', "is not https://"),
        ("https://127.0.0.1:1", 'http = {{ tls_cert_file = "{ca}" }}', "go together"),
    ],
)
def test_check_config_rejects_unusable_tls_settings(
    tmp_path: Path, upstream: HttpUpstream, address: str, options: str, expected: str
) -> None:
    config = tmp_path / "broker.toml"
    config.write_text(
        '[[identity.issuers]]\nissuer = "https://issuer.example"\n'
        + TARGET.format(
            name="api",
            url=address,
            options=options.format(missing=tmp_path / "nothing.pem", ca=upstream.ca_file),
        )
    )
    result = check_config(config)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
