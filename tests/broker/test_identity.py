"""Token verification, end to end: tokens from an independent issuer against the real broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jitctl.testing.broker import BrokerProcess
from jitctl.testing.issuer import TokenIssuer

CONFIG = """
[[identity.issuers]]
issuer = "{issuer}"
audience = "jitctl"
jwks_refetch_interval = "{refetch}"
leeway = "30s"

[[targets]]
name = "pg-prod"
protocol = "tcp"
address = "127.0.0.1:5432"
allow_groups = ["agents", "eng"]

[[targets]]
name = "billing"
protocol = "tcp"
address = "127.0.0.1:5433"
allow_groups = ["dba"]

[[targets]]
name = "nobody"
protocol = "tcp"
address = "127.0.0.1:5434"

[[targets]]
name = "gated"
protocol = "tcp"
address = "127.0.0.1:5435"
allow_groups = ["gated-team"]
access = {{ require_request = true, approvers = ["dba"], webhook = "https://hooks.example.com/T" }}
"""


@pytest.fixture(scope="module")
def issuer() -> Iterator[TokenIssuer]:
    with TokenIssuer() as iss:
        yield iss


@pytest.fixture(scope="module")
def broker(
    issuer: TokenIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerProcess]:
    config = CONFIG.format(issuer=issuer.url, refetch="0s")
    with BrokerProcess(config, state_dir=tmp_path_factory.mktemp("broker")) as process:
        yield process


def reason(response) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    return str(response.json()["reason"])


def test_valid_token_is_accepted_and_groups_come_from_the_claim(broker, issuer) -> None:
    token = issuer.mint(sub="ci-job-7", groups=["agents"], email="ci@example.com")
    body = broker.get("/v1/whoami", token).json()
    assert body["subject"] == "ci-job-7"
    assert body["groups"] == ["agents"]
    assert body["issuer"] == issuer.url
    assert body["email"] == "ci@example.com"


def test_targets_lists_exactly_those_whose_allow_groups_meet_the_callers(broker, issuer) -> None:
    names = lambda groups: [  # noqa: E731
        t["name"] for t in broker.get("/v1/targets", issuer.mint(groups=groups)).json()["targets"]
    ]
    assert names(["agents"]) == ["pg-prod"]
    assert names(["dba", "eng"]) == ["pg-prod", "billing"]
    assert names([]) == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("expired", "token expired"),
        ("not_yet_valid", "not yet valid"),
        ("issued_in_future", "not yet valid"),
        ("wrong_audience", "wrong audience"),
        ("wrong_issuer", "untrusted issuer"),
        ("alg_none", "algorithm 'none' is not allowed"),
        ("hs256_with_public_key", "algorithm 'HS256' is not allowed"),
        ("unknown_kid", "unknown signing key id"),
        ("tampered_payload", "bad signature"),
        ("missing_sub", "missing required claim 'sub'"),
        ("missing_exp", "missing required claim 'exp'"),
        ("not_a_jwt", "malformed token"),
        ("too_long_lived", "exceeds the issuer's limit"),
        ("oversized", "token too large"),
    ],
)
def test_bad_tokens_are_rejected_with_a_reason(broker, issuer, case: str, expected: str) -> None:
    import base64
    import json
    import time

    now = int(time.time())
    if case == "expired":
        token = issuer.mint(iat=now - 600, nbf=now - 600, exp=now - 120)
    elif case == "not_yet_valid":
        token = issuer.mint(nbf=now + 600, exp=now + 900)
    elif case == "issued_in_future":
        token = issuer.mint(iat=now + 600, exp=now + 900)
    elif case == "wrong_audience":
        token = issuer.mint(aud="someone-else")
    elif case == "wrong_issuer":
        token = issuer.mint(iss="https://evil.example.com")
    elif case == "alg_none":
        token = issuer.mint_unsigned()
    elif case == "hs256_with_public_key":
        token = issuer.mint_hs256_with_public_key()
    elif case == "unknown_kid":
        token = issuer.mint(kid=issuer.add_key(publish=False))
    elif case == "tampered_payload":
        header, payload, signature = issuer.mint(groups=["agents"]).split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
        claims["groups"] = ["dba"]
        forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        token = f"{header}.{forged}.{signature}"
    elif case == "missing_sub":
        claims = issuer.claims()
        del claims["sub"]
        token = issuer.mint(claims)
    elif case == "missing_exp":
        claims = issuer.claims()
        del claims["exp"]
        token = issuer.mint(claims)
    elif case == "not_a_jwt":
        token = "definitely-not-a-jwt"
    elif case == "oversized":  # refused before any parsing or key lookup
        token = issuer.mint(padding="x" * 20_000)
    else:  # too_long_lived: a 30-day token from an issuer limited to 24 h
        token = issuer.mint(lifetime=30 * 86400)
    assert expected in reason(broker.get("/v1/whoami", token))


def test_missing_bearer_token_is_401_with_a_hint(broker) -> None:
    response = broker.get("/v1/targets")
    assert response.status_code == 401
    assert "jitctl login" in response.json()["reason"]


def test_rotated_key_is_accepted_once_the_issuer_publishes_it(broker, issuer) -> None:
    new_kid = issuer.rotate(publish=False)
    assert "unknown signing key id" in reason(broker.get("/v1/whoami", issuer.mint()))
    issuer.publish(new_kid)
    response = broker.get("/v1/whoami", issuer.mint())
    assert response.status_code == 200, response.text


def test_unknown_kid_refetch_is_rate_limited(tmp_path: Path) -> None:
    """A flood of tokens with unknown kids causes one JWKS refetch per interval, not one each."""
    with TokenIssuer() as iss:
        config = CONFIG.format(issuer=iss.url, refetch="60s")
        with BrokerProcess(config, state_dir=tmp_path / "b") as broker:
            assert broker.get("/v1/whoami", iss.mint()).status_code == 200
            hits = iss.jwks_hits
            stray = iss.add_key(publish=False)
            for _ in range(5):
                assert broker.get("/v1/whoami", iss.mint(kid=stray)).status_code == 401
            assert iss.jwks_hits <= hits + 1


def test_targets_say_how_to_get_in_but_never_the_webhook(broker, issuer) -> None:
    listed = broker.get("/v1/targets", issuer.mint(groups=["gated-team"])).json()["targets"]
    assert [t["name"] for t in listed] == ["gated"]
    access = listed[0]["access"]
    assert access["require_request"] is True and access["approvers"] == ["dba"]
    assert "hooks.example.com" not in str(listed)  # a webhook URL is a secret
