"""The few JOSE and OAuth encodings jitctl spells out itself (PyJWT does the signing).

Rules:
- base64url is RFC 4648 §5 without `=` padding (RFC 7515 §2); the text is ASCII.
- A JWK thumbprint (RFC 7638 §3) is the base64url SHA-256 of the key's required members only,
  in lexicographic order, as JSON with no whitespace; it is what our issuers use as `kid`.
- The PKCE S256 challenge (RFC 7636 §4.2) is the base64url SHA-256 of the ASCII verifier.

PyJWT has base64url helpers in `jwt.utils`, but that module is not part of its documented API
(nor of `jwt.__all__`), so they live here.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

# RFC 7638 §3.2 (RSA, EC, oct) and RFC 8037 §2 (OKP): the members a thumbprint hashes.
_REQUIRED_MEMBERS = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "oct": ("k", "kty"),
    "OKP": ("crv", "kty", "x"),
}


def b64url(data: bytes) -> str:
    """`data` as unpadded base64url text."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK (other members are ignored)."""
    members = {name: jwk[name] for name in _REQUIRED_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def s256(verifier: str) -> str:
    """The PKCE S256 code challenge of `verifier` (RFC 7636 §4.2)."""
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())
