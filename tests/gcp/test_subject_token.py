"""The broker's subject tokens: one private key, a published JWKS, short tokens naming you."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from jitctl.broker.gcp_chain import federated_principal
from jitctl.broker.gcp_subject import KEY_FILE, SubjectTokenSigner

AUDIENCE = "//iam.googleapis.com/projects/7/locations/global/workloadIdentityPools/p/providers/b"


def test_the_key_is_private_and_kept_across_restarts(tmp_path: Path) -> None:
    first = SubjectTokenSigner(tmp_path, "https://broker/gcp").jwks()
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600
    again = SubjectTokenSigner(tmp_path, "https://broker/gcp").jwks()
    assert first == again and len(first["keys"]) == 1
    (key,) = first["keys"]
    assert set(key) == {"kty", "n", "e", "kid", "alg", "use"}  # public parts only
    assert key["alg"] == "RS256" and key["use"] == "sig"


def test_a_token_verifies_against_the_jwks_and_names_the_caller(tmp_path: Path) -> None:
    signer = SubjectTokenSigner(tmp_path, "https://broker/gcp")
    minted = signer.mint(
        subject="alice",
        audience=AUDIENCE,
        lifetime=300,
        extra={"target": "t", "grant": "g1", "groups": ["eng"], "email": "", "act": None},
    )
    (jwk,) = signer.jwks()["keys"]
    header = jwt.get_unverified_header(minted.token)
    assert header["kid"] == jwk["kid"] and header["alg"] == "RS256"
    claims = jwt.decode(
        minted.token,
        jwt.PyJWK(jwk).key,
        algorithms=["RS256"],
        audience="https:" + AUDIENCE,
        issuer="https://broker/gcp",
    )
    assert claims["sub"] == "alice" and claims["target"] == "t" and claims["grant"] == "g1"
    assert claims["exp"] - claims["iat"] == 300 and claims["jti"] == minted.jti
    assert "email" not in claims and "act" not in claims  # empty claims are left out


def test_a_subject_too_long_for_google_subject_is_refused(tmp_path: Path) -> None:
    signer = SubjectTokenSigner(tmp_path, "https://broker/gcp")
    with pytest.raises(ValueError, match="holds at most 127"):
        signer.mint(subject="é" * 64, audience=AUDIENCE, lifetime=60, extra={})


def test_federated_principal_is_derived_from_the_provider() -> None:
    assert federated_principal(AUDIENCE, "alice") == (
        "principal://iam.googleapis.com/projects/7/locations/global/workloadIdentityPools/p/"
        "subject/alice"
    )
