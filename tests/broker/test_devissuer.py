"""The development OIDC issuer, driven over HTTP through its FastAPI router (no broker)."""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
from fastapi import FastAPI

from jitctl.broker.devissuer import DEVICE_GRANT, WARNING, DevIssuer, s256
from jitctl.config import DevClient, DevSection, DevUser

ISSUER = "https://broker.test/dev/oidc"
REDIRECT = "http://127.0.0.1:51234/callback"


class IssuerClient:
    """A synchronous httpx client over ASGITransport: real HTTP semantics, no sockets."""

    def __init__(self, app: FastAPI) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://broker.test"
        )

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._loop.run_until_complete(self._client.get(url, **kwargs))

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self._loop.run_until_complete(self._client.post(url, **kwargs))

    def close(self) -> None:
        self._loop.run_until_complete(self._client.aclose())
        self._loop.close()


def _make(
    state_dir: Path, dev: DevSection | None = None, **kwargs: Any
) -> tuple[DevIssuer, IssuerClient]:
    issuer = DevIssuer(ISSUER, dev or DevSection(), state_dir, **kwargs)
    app = FastAPI()
    app.include_router(issuer.router(), prefix="/dev/oidc")
    return issuer, IssuerClient(app)


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    """Build an issuer with its own settings; its client is closed after the test."""
    clients: list[IssuerClient] = []

    def build(dev: DevSection | None = None, **kwargs: Any) -> tuple[DevIssuer, IssuerClient]:
        issuer, client = _make(tmp_path, dev, **kwargs)
        clients.append(client)
        return issuer, client

    yield build
    for client in clients:
        client.close()


@pytest.fixture
def dev(make: Any) -> tuple[DevIssuer, IssuerClient]:
    return make(
        DevSection(
            clients=[
                DevClient(client_id="ci", client_secret="s3cret", groups=["agents"]),
                DevClient(client_id="bot", client_secret="x", subject="robot", groups=[]),
            ]
        ),
    )


def _authorize(client: IssuerClient, **overrides: str) -> tuple[dict[str, str], str]:
    verifier = secrets.token_urlsafe(48)
    params = {
        "response_type": "code",
        "client_id": "jitctl",
        "redirect_uri": REDIRECT,
        "scope": "openid email profile offline_access",
        "state": "st-1",
        "nonce": "n-1",
        "code_challenge": s256(verifier),
        "code_challenge_method": "S256",
        "login_hint": "alice",
        **overrides,
    }
    response = client.get("/dev/oidc/authorize", params=params)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    return query, verifier


def _exchange(client: IssuerClient, code: str, verifier: str, redirect: str = REDIRECT) -> Any:
    return client.post(
        "/dev/oidc/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": redirect,
            "client_id": "jitctl",
        },
    )


def _verify_with_jwks(client: IssuerClient, token: str) -> dict[str, Any]:
    jwks = client.get("/dev/oidc/jwks").json()
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks["keys"] if k["kid"] == kid)
    return jwt.decode(
        token, jwt.PyJWK(key).key, algorithms=["RS256"], audience="jitctl", issuer=ISSUER
    )


def test_discovery_names_every_endpoint_under_the_issuer_and_warns(dev: Any) -> None:
    _, client = dev
    doc = client.get("/dev/oidc/.well-known/openid-configuration").json()
    assert doc["issuer"] == ISSUER
    for key in (
        "authorization_endpoint",
        "token_endpoint",
        "device_authorization_endpoint",
        "jwks_uri",
        "userinfo_endpoint",
    ):
        assert doc[key].startswith(ISSUER + "/")
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert DEVICE_GRANT in doc["grant_types_supported"]
    assert doc["warning"] == WARNING


def test_jwks_publishes_only_the_public_key_with_an_rfc7638_kid(dev: Any, tmp_path: Path) -> None:
    _, client = dev
    (key,) = client.get("/dev/oidc/jwks").json()["keys"]
    assert set(key) == {"kty", "n", "e", "kid", "alg", "use"}
    # RFC 7638 §3.1's worked example shape: members e, kty, n in order, no spaces.
    digest = (
        __import__("hashlib")
        .sha256(f'{{"e":"{key["e"]}","kty":"RSA","n":"{key["n"]}"}}'.encode())
        .digest()
    )
    assert key["kid"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert (tmp_path / "dev-issuer-key.pem").stat().st_mode & 0o777 == 0o600


def test_the_signing_key_survives_a_restart(tmp_path: Path) -> None:
    first = DevIssuer(ISSUER, DevSection(), tmp_path)
    second = DevIssuer(ISSUER, DevSection(), tmp_path)
    assert first.kid == second.kid
    token = first.mint("alice", email="a@example.com", groups=["eng"])
    assert second.verify(token)["sub"] == "alice"


def test_pkce_login_returns_verifiable_tokens_with_nonce_groups_and_email(dev: Any) -> None:
    _, client = dev
    query, verifier = _authorize(client)
    assert query["state"] == "st-1" and query["iss"] == ISSUER
    response = _exchange(client, query["code"], verifier)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    id_claims = _verify_with_jwks(client, body["id_token"])
    access_claims = _verify_with_jwks(client, body["access_token"])
    assert id_claims["nonce"] == "n-1"
    assert id_claims["sub"] == access_claims["sub"] == "alice"
    assert id_claims["email"] == "alice@example.com" and id_claims["email_verified"] is True
    assert id_claims["groups"] == ["eng"]
    for claim in ("iat", "nbf", "exp", "jti", "name"):
        assert claim in id_claims
    assert body["refresh_token"] and body["token_type"] == "Bearer"


def test_a_wrong_code_verifier_is_refused(dev: Any) -> None:
    _, client = dev
    query, _ = _authorize(client)
    response = _exchange(client, query["code"], secrets.token_urlsafe(48))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert "PKCE" in response.json()["error_description"]


def test_an_authorization_code_works_only_once(dev: Any) -> None:
    _, client = dev
    query, verifier = _authorize(client)
    assert _exchange(client, query["code"], verifier).status_code == 200
    again = _exchange(client, query["code"], verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_a_redeemed_code_replayed_revokes_the_refresh_token_it_issued(dev: Any) -> None:
    _, client = dev
    query, verifier = _authorize(client)
    refresh_token = _exchange(client, query["code"], verifier).json()["refresh_token"]
    _exchange(client, query["code"], verifier)
    response = client.post(
        "/dev/oidc/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": "jitctl"},
    )
    assert response.json()["error"] == "invalid_grant"


def test_an_expired_code_is_refused(make: Any) -> None:
    _, client = make(code_lifetime=0)
    query, verifier = _authorize(client)
    time.sleep(0.01)
    response = _exchange(client, query["code"], verifier)
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "authorization code expired",
    }


def test_the_token_request_must_repeat_the_exact_redirect_uri(dev: Any) -> None:
    _, client = dev
    query, verifier = _authorize(client)
    response = _exchange(
        client, query["code"], verifier, redirect="http://127.0.0.1:51235/callback"
    )
    assert response.json()["error"] == "invalid_grant"


def test_any_loopback_port_and_localhost_are_accepted_as_redirect(dev: Any) -> None:
    _, client = dev
    for uri in ("http://127.0.0.1:1/cb", "http://localhost:65000/callback"):
        query, _ = _authorize(client, redirect_uri=uri)
        assert "code" in query


@pytest.mark.parametrize(
    "redirect",
    [
        "https://evil.example/callback",
        "http://192.168.1.5:8000/callback",
        "http://127.0.0.1.evil.example/",
    ],
)
def test_a_non_loopback_redirect_uri_gets_an_error_page_not_a_redirect(
    dev: Any, redirect: str
) -> None:
    _, client = dev
    response = client.get(
        "/dev/oidc/authorize",
        params={
            "client_id": "jitctl",
            "redirect_uri": redirect,
            "response_type": "code",
            "code_challenge": "x" * 43,
            "code_challenge_method": "S256",
            "login_hint": "alice",
        },
    )
    assert response.status_code == 400
    assert "loopback" in response.text and WARNING in response.text


@pytest.mark.parametrize("method", ["plain", ""])
def test_pkce_s256_is_required(dev: Any, method: str) -> None:
    _, client = dev
    query, _ = _authorize(client, code_challenge_method=method)
    assert query["error"] == "invalid_request" and "S256" in query["error_description"]
    assert query["state"] == "st-1"


def test_an_unknown_login_hint_is_denied_back_to_the_client(dev: Any) -> None:
    _, client = dev
    query, _ = _authorize(client, login_hint="mallory")
    assert query["error"] == "access_denied" and query["state"] == "st-1"
    assert "code" not in query


def test_without_a_hint_the_issuer_shows_a_user_picker_that_completes_on_post(dev: Any) -> None:
    _, client = dev
    verifier = secrets.token_urlsafe(48)
    params = {
        "response_type": "code",
        "client_id": "jitctl",
        "redirect_uri": REDIRECT,
        "scope": "openid",
        "state": "s",
        "nonce": "n",
        "code_challenge": s256(verifier),
        "code_challenge_method": "S256",
    }
    form = client.get("/dev/oidc/authorize", params=params)
    assert form.status_code == 200
    assert WARNING in form.text and "alice" in form.text and "carol" in form.text
    answer = client.post("/dev/oidc/authorize", data={**params, "user": "bob"})
    assert answer.status_code == 302
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    claims = jwt.decode(
        _exchange(client, code, verifier).json()["id_token"], options={"verify_signature": False}
    )
    assert claims["sub"] == "bob" and claims["groups"] == ["dba", "approvers"]
    denied = client.post("/dev/oidc/authorize", data={**params, "action": "deny"})
    assert "error=access_denied" in denied.headers["location"]


def test_auto_approve_user_completes_without_a_form(make: Any) -> None:
    _, client = make(DevSection(auto_approve_user="carol"))
    query, verifier = _authorize(client, login_hint="")
    body = _exchange(client, query["code"], verifier).json()
    assert jwt.decode(body["id_token"], options={"verify_signature": False})["sub"] == "carol"


def test_configured_users_replace_the_defaults(make: Any) -> None:
    issuer, client = make(DevSection(users=[DevUser(name="dana", groups=["ops"])]))
    assert [u.name for u in issuer.users()] == ["dana"]
    assert _authorize(client, login_hint="alice")[0]["error"] == "access_denied"
    assert "code" in _authorize(client, login_hint="dana")[0]


def test_token_lifetime_comes_from_the_dev_section(make: Any) -> None:
    _, client = make(DevSection(token_lifetime="5m"))
    query, verifier = _authorize(client)
    body = _exchange(client, query["code"], verifier).json()
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 300 and body["expires_in"] == 300


def _refresh(client: IssuerClient, token: str) -> Any:
    return client.post(
        "/dev/oidc/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": "jitctl"},
    )


def test_refresh_rotates_the_refresh_token(dev: Any) -> None:
    _, client = dev
    query, verifier = _authorize(client)
    first = _exchange(client, query["code"], verifier).json()["refresh_token"]
    response = _refresh(client, first)
    assert response.status_code == 200
    second = response.json()["refresh_token"]
    assert second != first and response.json()["id_token"]
    assert _refresh(client, second).status_code == 200


def test_reusing_a_rotated_refresh_token_revokes_the_whole_session(dev: Any) -> None:
    _, client = dev
    query, verifier = _authorize(client)
    first = _exchange(client, query["code"], verifier).json()["refresh_token"]
    second = _refresh(client, first).json()["refresh_token"]
    reuse = _refresh(client, first)
    assert reuse.status_code == 400 and "reuse" in reuse.json()["error_description"]
    assert _refresh(client, second).json()["error"] == "invalid_grant"


def test_device_flow_pends_slows_down_and_then_issues_tokens(make: Any) -> None:
    issuer, client = make(device_interval=1)
    grant = client.post(
        "/dev/oidc/device_authorization",
        data={"client_id": "jitctl", "scope": "openid offline_access"},
    ).json()
    assert len(grant["user_code"]) == 9 and grant["user_code"][4] == "-"
    assert grant["verification_uri"] == ISSUER + "/device"
    assert grant["verification_uri_complete"].endswith("user_code=" + grant["user_code"])
    assert grant["interval"] == 1 and grant["expires_in"] > 0
    poll = {"grant_type": DEVICE_GRANT, "device_code": grant["device_code"], "client_id": "jitctl"}
    assert client.post("/dev/oidc/token", data=poll).json()["error"] == "authorization_pending"
    fast = client.post("/dev/oidc/token", data=poll).json()
    assert fast["error"] == "slow_down" and "6 s" in fast["error_description"]
    page = client.get("/dev/oidc/device", params={"user_code": grant["user_code"]})
    assert WARNING in page.text and grant["user_code"] in page.text
    approved = client.post(
        "/dev/oidc/device",
        data={"user_code": grant["user_code"].lower(), "user": "carol", "action": "approve"},
    )
    assert approved.status_code == 200 and "carol" in approved.text
    tokens = client.post("/dev/oidc/token", data=poll).json()
    assert issuer.verify(tokens["id_token"])["groups"] == ["eng", "agents"]
    assert tokens["refresh_token"]
    assert client.post("/dev/oidc/token", data=poll).json()["error"] == "invalid_grant"


def test_a_denied_device_request_answers_access_denied(dev: Any) -> None:
    _, client = dev
    grant = client.post("/dev/oidc/device_authorization", data={"client_id": "jitctl"}).json()
    client.post("/dev/oidc/device", data={"user_code": grant["user_code"], "action": "deny"})
    poll = {"grant_type": DEVICE_GRANT, "device_code": grant["device_code"], "client_id": "jitctl"}
    assert client.post("/dev/oidc/token", data=poll).json()["error"] == "access_denied"


def test_an_expired_device_code_answers_expired_token(make: Any) -> None:
    _, client = make(device_lifetime=0)
    grant = client.post("/dev/oidc/device_authorization", data={"client_id": "jitctl"}).json()
    time.sleep(0.01)
    poll = {"grant_type": DEVICE_GRANT, "device_code": grant["device_code"], "client_id": "jitctl"}
    assert client.post("/dev/oidc/token", data=poll).json()["error"] == "expired_token"
    late = client.post("/dev/oidc/device", data={"user_code": grant["user_code"], "user": "alice"})
    assert late.status_code == 400


def test_an_unknown_user_code_is_refused_on_the_device_page(dev: Any) -> None:
    _, client = dev
    response = client.post("/dev/oidc/device", data={"user_code": "BCDF-GHJK", "user": "alice"})
    assert response.status_code == 400 and "unknown" in response.text


def test_client_credentials_with_basic_auth_mint_a_token_for_the_client(dev: Any) -> None:
    issuer, client = dev
    basic = base64.b64encode(b"ci:s3cret").decode()
    response = client.post(
        "/dev/oidc/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 200
    claims = issuer.verify(response.json()["access_token"])
    assert claims["sub"] == "client:ci" and claims["groups"] == ["agents"]
    assert "refresh_token" not in response.json()


def test_client_credentials_in_the_body_use_the_configured_subject(dev: Any) -> None:
    issuer, client = dev
    response = client.post(
        "/dev/oidc/token",
        data={"grant_type": "client_credentials", "client_id": "bot", "client_secret": "x"},
    )
    assert issuer.verify(response.json()["access_token"])["sub"] == "robot"


def test_a_wrong_client_secret_is_invalid_client_401(dev: Any) -> None:
    _, client = dev
    basic = base64.b64encode(b"ci:nope").decode()
    response = client.post(
        "/dev/oidc/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")


def test_unsupported_grants_and_json_bodies_get_rfc6749_errors(dev: Any) -> None:
    _, client = dev
    response = client.post(
        "/dev/oidc/token", data={"grant_type": "password", "client_id": "jitctl"}
    )
    assert response.json()["error"] == "unsupported_grant_type"
    response = client.post("/dev/oidc/token", json={"grant_type": "authorization_code"})
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_userinfo_answers_for_a_valid_access_token_only(dev: Any) -> None:
    _, client = dev
    query, verifier = _authorize(client, login_hint="bob@example.com")
    access = _exchange(client, query["code"], verifier).json()["access_token"]
    info = client.get("/dev/oidc/userinfo", headers={"Authorization": f"Bearer {access}"}).json()
    assert info["sub"] == "bob" and info["groups"] == ["dba", "approvers"]
    assert client.get("/dev/oidc/userinfo").status_code == 401


def test_query_strings_with_urlencode_reach_the_form_parser(dev: Any) -> None:
    """Form bodies are parsed without python-multipart: '+' and %-escapes decode."""
    _, client = dev
    body = urlencode({"grant_type": "client_credentials", "client_id": "bot", "client_secret": "x"})
    response = client.post(
        "/dev/oidc/token",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    assert response.status_code == 200
