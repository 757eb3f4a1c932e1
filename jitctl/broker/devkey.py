"""The development issuer's signing key, and the JWTs it signs and verifies.

Rules:
- One RSA-2048 key, kept in a PEM file (`<state_dir>/dev-issuer-key.pem`) so tokens survive a
  restart: created 0600 in a 0700 directory, written to a temporary file and renamed into
  place, so a reader never sees half a key. A file that holds another kind of key is an error.
- `kid` is the key's RFC 7638 thumbprint; the JWKS holds the public half only (kty, n, e, kid,
  alg RS256, use sig).
- Tokens are RS256 with `kid` and `typ` in the header ("at+jwt" marks an access token, RFC
  9068). Claims: iss, sub, aud, iat, nbf, exp, jti, name (the subject), groups, and email with
  email_verified when there is one; `extra` claims are added last and may override.
- `verify` accepts only this key's tokens for this issuer and audience, and requires exp,
  iat, iss, aud and sub.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from jitctl.jose import jwk_thumbprint


class DevKey:
    """The issuer's RSA key: JWKS, signing, verification."""

    def __init__(self, path: Path, issuer_url: str, audience: str) -> None:
        self.issuer_url, self.audience = issuer_url, audience
        self._key = _load_or_create_key(path)
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        self.kid = jwk_thumbprint(public)
        self._public_jwk = {
            "kty": "RSA",
            "n": public["n"],
            "e": public["e"],
            "kid": self.kid,
            "alg": "RS256",
            "use": "sig",
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(self._public_jwk)]}

    def mint(
        self,
        subject: str,
        *,
        email: str | None,
        groups: list[str],
        audience: str,
        lifetime: float,
        extra: dict[str, Any] | None,
        typ: str,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer_url,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + int(lifetime),
            "jti": uuid.uuid4().hex,
            "name": subject,
            "groups": list(groups),
        }
        if email:
            claims["email"] = email
            claims["email_verified"] = True
        claims.update(extra or {})
        return jwt.encode(
            claims, self._key, algorithm="RS256", headers={"kid": self.kid, "typ": typ}
        )

    def verify(self, token: str) -> dict[str, Any]:
        return jwt.decode(
            token,
            self._key.public_key(),
            algorithms=["RS256"],
            audience=self.audience,
            issuer=self.issuer_url,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )


def _load_or_create_key(path: Path) -> rsa.RSAPrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{path} does not hold an RSA key")
        return key
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    os.replace(tmp, path)
    return key
