"""jitctl.jose against the RFCs' own worked examples."""

from __future__ import annotations

import pytest

from jitctl.jose import b64url, jwk_thumbprint, s256

# RFC 7638 §3.1: the example RSA key and its thumbprint.
_RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
    "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
    "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM"
    "4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)


def test_s256_matches_rfc7636_appendix_b() -> None:
    assert s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == (
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )


def test_thumbprint_matches_rfc7638_and_ignores_optional_members() -> None:
    jwk = {"kty": "RSA", "n": _RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize(
    ("data", "text"),
    [(b"", ""), (b"\xfb", "-w"), (b"\xff\xfe", "__4"), (b"\x00\x01\x02", "AAEC")],
)
def test_b64url_is_urlsafe_and_unpadded(data: bytes, text: str) -> None:
    assert b64url(data) == text
