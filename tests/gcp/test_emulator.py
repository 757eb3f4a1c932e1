"""The STS / IAM Credentials emulator speaks Google's documented wire format (notes §1-§2)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from jitctl.testing.gcp_emulator import GcpEmulator
from jitctl.testing.issuer import TokenIssuer

AUDIENCE = (
    "//iam.googleapis.com/projects/42/locations/global/workloadIdentityPools/ci/providers/idp"
)
SA = "deployer@ci-proj.iam.gserviceaccount.com"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
JWT = "urn:ietf:params:oauth:token-type:jwt"
IAM = "https://www.googleapis.com/auth/iam"


@pytest.fixture
def gcp(token_issuer: TokenIssuer) -> Iterator[GcpEmulator]:
    with GcpEmulator() as emulator:
        emulator.add_provider(
            AUDIENCE,
            issuer=token_issuer.url,
            jwks=token_issuer.jwks(),
            attribute_condition=lambda claims: claims.get("repo") != "evil/fork",
        )
        emulator.add_service_account(SA, members=[emulator.principal(AUDIENCE, "ci-job")])
        yield emulator


def _subject(issuer: TokenIssuer, **kw: Any) -> str:
    return issuer.mint(sub=kw.pop("sub", "ci-job"), aud=kw.pop("aud", "https:" + AUDIENCE), **kw)


def _form(subject_token: str, **overrides: str) -> dict[str, str]:
    return {
        "grant_type": EXCHANGE,
        "requested_token_type": ACCESS,
        "audience": AUDIENCE,
        "scope": IAM,
        "subject_token_type": JWT,
        "subject_token": subject_token,
        **overrides,
    }


def _federated(gcp: GcpEmulator, issuer: TokenIssuer) -> str:
    response = httpx.post(gcp.sts_endpoint, data=_form(_subject(issuer)))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_sts_accepts_camel_case_json_like_github_actions(
    gcp: GcpEmulator, token_issuer: TokenIssuer
) -> None:
    body = {
        "grantType": EXCHANGE,
        "requestedTokenType": ACCESS,
        "audience": AUDIENCE,
        "scope": IAM,
        "subjectTokenType": JWT,
        "subjectToken": _subject(token_issuer),
    }
    response = httpx.post(gcp.sts_endpoint, json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["issued_token_type"] == ACCESS and answer["token_type"] == "Bearer"
    assert answer["expires_in"] == 3600
    assert gcp.find(answer["access_token"]).subject == "ci-job"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "error", "description"),
    [
        (
            {"audience": "projects/42/pools/ci"},
            "invalid_request",
            'Invalid value for "audience". This value should be the full resource name of the '
            "Identity Provider.",
        ),
        (
            {"audience": AUDIENCE.replace("/idp", "/gone")},
            "invalid_target",
            'The target service indicated by the "audience" parameters is invalid.',
        ),
        ({"scope": ""}, "invalid_request", "Scope(s) must be provided."),
        ({"grant_type": "client_credentials"}, "unsupported_grant_type", "Unsupported grant type"),
    ],
)
def test_sts_refuses_bad_requests_with_rfc6749_errors(
    gcp: GcpEmulator,
    token_issuer: TokenIssuer,
    change: dict[str, str],
    error: str,
    description: str,
) -> None:
    response = httpx.post(gcp.sts_endpoint, data=_form(_subject(token_issuer), **change))
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert response.json()["error_description"].startswith(description)


@pytest.mark.parametrize(
    ("mint", "description"),
    [
        ({"iat": 1, "nbf": 1, "exp": 100}, "ID Token expired."),
        ({"aud": "jitctl"}, "The audience in ID Token [jitctl] does not match"),
        ({"lifetime": 50 * 3600}, "The lifetime of the ID Token is longer than 48 hours."),
        ({"sub": "x" * 128}, "The mapped attribute google.subject exceeds 127 bytes."),
    ],
)
def test_sts_checks_the_subject_token(
    gcp: GcpEmulator, token_issuer: TokenIssuer, mint: dict[str, Any], description: str
) -> None:
    response = httpx.post(gcp.sts_endpoint, data=_form(_subject(token_issuer, **mint)))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert response.json()["error_description"].startswith(description)


def test_sts_checks_issuer_and_signature(gcp: GcpEmulator, token_issuer: TokenIssuer) -> None:
    with TokenIssuer() as stranger:
        forged = stranger.mint(sub="ci-job", aud="https:" + AUDIENCE, iss=token_issuer.url)
        foreign = stranger.mint(sub="ci-job", aud="https:" + AUDIENCE)
    for token, description in [
        (forged, "The key ID"),
        (foreign, f"The issuer in ID Token {stranger.url} does not match"),
        (token_issuer.mint_unsigned(aud="https:" + AUDIENCE), "The ID Token is signed with an"),
    ]:
        answer = httpx.post(gcp.sts_endpoint, data=_form(token)).json()
        assert answer["error"] == "invalid_grant"
        assert answer["error_description"].startswith(description)


def test_sts_applies_the_attribute_condition_through_google_auth(
    gcp: GcpEmulator, token_issuer: TokenIssuer
) -> None:
    import google.auth.transport.requests
    from google.auth import exceptions
    from google.oauth2 import sts

    client = sts.Client(gcp.sts_endpoint)
    with pytest.raises(exceptions.OAuthError, match="rejected by the attribute condition"):
        client.exchange_token(
            request=google.auth.transport.requests.Request(),
            grant_type=EXCHANGE,
            subject_token=_subject(token_issuer, repo="evil/fork"),
            subject_token_type=JWT,
            audience=AUDIENCE,
            scopes=[IAM],
            requested_token_type=ACCESS,
        )


def test_sts_refuses_an_authorization_header(gcp: GcpEmulator, token_issuer: TokenIssuer) -> None:
    response = httpx.post(
        gcp.sts_endpoint, data=_form(_subject(token_issuer)), headers={"Authorization": "Bearer x"}
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def _generate(gcp: GcpEmulator, bearer: str, sa: str = SA, **body: Any) -> httpx.Response:
    url = f"{gcp.iam_endpoint}/v1/projects/-/serviceAccounts/{sa}:generateAccessToken"
    payload = {"scope": ["https://www.googleapis.com/auth/cloud-platform"], "delegates": None}
    return httpx.post(url, json={**payload, **body}, headers={"Authorization": f"Bearer {bearer}"})


def test_generate_access_token_answers_whole_second_expire_times(
    gcp: GcpEmulator, token_issuer: TokenIssuer
) -> None:
    response = _generate(gcp, _federated(gcp, token_issuer), lifetime="900s")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", answer["expireTime"])
    issued = gcp.find(answer["accessToken"])
    assert issued is not None and issued.lifetime == 900 and issued.subject == "ci-job"
    assert abs(issued.expires_at - (time.time() + 900)) < 5


def test_permission_denied_is_googles_exact_envelope_also_for_unknown_accounts(
    gcp: GcpEmulator, token_issuer: TokenIssuer
) -> None:
    bearer = _federated(gcp, token_issuer)
    gcp.add_service_account("other@ci-proj.iam.gserviceaccount.com", members=[])
    expected = {
        "error": {
            "code": 403,
            "message": "Permission 'iam.serviceAccounts.getAccessToken' denied on resource "
            "(or it may not exist).",
            "status": "PERMISSION_DENIED",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "IAM_PERMISSION_DENIED",
                    "domain": "iam.googleapis.com",
                    "metadata": {"permission": "iam.serviceAccounts.getAccessToken"},
                }
            ],
        }
    }
    for sa in ("other@ci-proj.iam.gserviceaccount.com", "ghost@ci-proj.iam.gserviceaccount.com"):
        response = _generate(gcp, bearer, sa)
        assert response.status_code == 403 and response.json() == expected


@pytest.mark.parametrize(
    ("body", "status", "google_status"),
    [
        ({"lifetime": "3601s"}, 400, "INVALID_ARGUMENT"),
        ({"scope": []}, 400, "INVALID_ARGUMENT"),
        ({"lifetime": "ten minutes"}, 400, "INVALID_ARGUMENT"),
    ],
)
def test_generate_access_token_validates_its_body(
    gcp: GcpEmulator,
    token_issuer: TokenIssuer,
    body: dict[str, Any],
    status: int,
    google_status: str,
) -> None:
    response = _generate(gcp, _federated(gcp, token_issuer), **body)
    assert response.status_code == status
    assert response.json()["error"]["status"] == google_status


def test_generate_access_token_needs_a_live_federated_bearer(gcp: GcpEmulator) -> None:
    response = _generate(gcp, "ya29.not-issued-here")
    assert response.status_code == 401
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"


def test_google_auth_identity_pool_credentials_run_the_whole_chain(
    gcp: GcpEmulator, token_issuer: TokenIssuer
) -> None:
    """The notes' [tested] path: identity_pool + impersonation URL on loopback, naive UTC expiry."""
    import google.auth.transport.requests
    from google.auth import identity_pool

    class Supplier(identity_pool.SubjectTokenSupplier):  # type: ignore[misc]
        def get_subject_token(self, context: Any, request: Any) -> str:
            assert context.audience == AUDIENCE
            return _subject(token_issuer)

    credentials = identity_pool.Credentials(
        audience=AUDIENCE,
        subject_token_type=JWT,
        token_url=gcp.sts_endpoint,
        subject_token_supplier=Supplier(),
        service_account_impersonation_url=(
            f"{gcp.iam_endpoint}/v1/projects/-/serviceAccounts/{SA}:generateAccessToken"
        ),
        service_account_impersonation_options={"token_lifetime_seconds": 600},
        scopes=["https://www.googleapis.com/auth/cloud-platform"],
    )
    credentials.refresh(google.auth.transport.requests.Request())
    issued = gcp.find(credentials.token)
    assert issued is not None and issued.service_account == SA and issued.lifetime == 600
    assert credentials.expiry.tzinfo is None  # google-auth keeps naive UTC
    sts_call = next(r for r in gcp.requests if r["path"] == "/v1/token")
    assert sts_call["content_type"] == "application/x-www-form-urlencoded"
    assert sts_call["fields"]["scope"] == IAM and not sts_call["authorization"]
