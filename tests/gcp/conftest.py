"""One GCP emulator and one broker for the package: real processes, real google-auth.

Hygiene (notes §9): google-auth must never reach Google or a metadata server from here. The
variables it reads at import are set in tests/conftest.py; the rest are set per test below.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jitctl.testing.broker import BrokerProcess
from jitctl.testing.gcp_emulator import GcpEmulator
from jitctl.testing.issuer import TokenIssuer
from jitctl.testing.servers import EchoServer
from tests.gcp.support import AUDIENCE, CONDITIONED, FORBIDDEN, READER, SQL_SA, SUBJECT, UNTRUSTED

CONFIG = """
[[identity.issuers]]
issuer = "{issuer}"

[gcp]
sts_endpoint = "{sts}"
iam_endpoint = "{iam}"

[[gcp.targets]]
name = "federated"
audience = "{audience}"
allow_groups = ["agents"]

[[gcp.targets]]
name = "reader"
audience = "{audience}"
service_account = "{reader}"
scopes = ["https://www.googleapis.com/auth/bigquery.readonly"]
lifetime = "10m"
allow_groups = ["agents"]

[[gcp.targets]]
name = "bucket"
audience = "{audience}"
service_account = "{reader}"
allow_groups = ["agents"]

[[gcp.targets.boundary]]
resource = "//storage.googleapis.com/projects/_/buckets/reports"
permissions = ["inRole:roles/storage.objectViewer"]
condition = "resource.name.startsWith('projects/_/buckets/reports/objects/2026')"

[[gcp.targets]]
name = "short"
audience = "{audience}"
service_account = "{reader}"
lifetime = "228s"
allow_groups = ["agents"]

[[gcp.targets]]
name = "untrusted"
audience = "{untrusted}"
allow_groups = ["agents"]

[[gcp.targets]]
name = "forbidden"
audience = "{audience}"
service_account = "{forbidden}"
allow_groups = ["agents"]

[[gcp.targets]]
name = "conditioned"
audience = "{conditioned}"
allow_groups = ["agents"]

[[gcp.targets]]
name = "deleted-provider"
audience = "{deleted}"
allow_groups = ["agents"]

[[gcp.targets]]
name = "dba-only"
audience = "{audience}"
allow_groups = ["dba"]

[[gcp.targets]]
name = "sql"
audience = "{audience}"
service_account = "{sql}"
lifetime = "5m"

[[targets]]
name = "pg-iam"
protocol = "tcp"
address = "{echo}"
allow_groups = ["agents"]
credential = {{ gcp = "sql", database = "app" }}

[[targets]]
name = "pg-iam-denied"
protocol = "tcp"
address = "{echo}"
allow_groups = ["agents"]
credential = {{ gcp = "forbidden" }}
"""


@pytest.fixture(autouse=True)
def _google_auth_hygiene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ADC file, no gcloud config, no trust-boundary lookups, a fixed project (notes §9)."""
    for var in (
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GOOGLE_AUTH_TRUST_BOUNDARY_ENABLED",
        "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test-proj")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process, a name lookup or connection beyond loopback fails the test."""
    import socket

    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in _LOOPBACK and host not in (None, ""):
            raise AssertionError(f"test tried to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[0] not in _LOOPBACK:
            raise AssertionError(f"test tried to connect to {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture(scope="package")
def emulator() -> Iterator[GcpEmulator]:
    with GcpEmulator() as gcp:
        yield gcp


@pytest.fixture(scope="package")
def echo() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server


@pytest.fixture(scope="package")
def broker(
    token_issuer: TokenIssuer,
    emulator: GcpEmulator,
    echo: EchoServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BrokerProcess]:
    config = CONFIG.format(
        issuer=token_issuer.url,
        sts=emulator.sts_endpoint,
        iam=emulator.iam_endpoint,
        audience=AUDIENCE,
        untrusted=UNTRUSTED,
        conditioned=CONDITIONED,
        deleted=AUDIENCE.replace("/providers/broker", "/providers/deleted"),
        reader=READER,
        forbidden=FORBIDDEN,
        sql=SQL_SA,
        echo=echo.address,
    )
    with BrokerProcess(config, state_dir=tmp_path_factory.mktemp("gcp-broker")) as process:
        jwks = httpx.get(process.url + "/gcp/jwks", verify=process.verify(), timeout=10).json()
        # As in production: the provider trusts the broker's issuer with an uploaded jwksJson.
        emulator.add_provider(AUDIENCE, issuer=process.url + "/gcp", jwks=jwks)
        with TokenIssuer() as other:  # a provider whose uploaded keys are stale
            emulator.add_provider(UNTRUSTED, issuer=process.url + "/gcp", jwks=other.jwks())
        # A provider whose attribute condition admits only one IdP, which is not ours.
        emulator.add_provider(
            CONDITIONED,
            issuer=process.url + "/gcp",
            jwks=jwks,
            attribute_condition=lambda claims: claims.get("idp") == "https://idp.example.com",
        )
        emulator.add_service_account(READER, members=[emulator.principal(AUDIENCE, SUBJECT)])
        emulator.add_service_account(FORBIDDEN, members=[])
        emulator.add_service_account(
            SQL_SA, members=[emulator.principal_set(AUDIENCE, "group/agents")]
        )
        process.login_with_token(
            token_issuer.mint(sub=SUBJECT, groups=["agents"], email="a7@example.com", lifetime=3600)
        )
        yield process
