"""The broker's own OIDC subject tokens for GCP workload identity federation.

Why the broker mints a token instead of forwarding the caller's (docs/gcp.md, notes §0):
- the caller's token has the CLI's client id as `aud`, not the WIF provider: STS would refuse
  it, and an IdP token with a GCP audience would be replayable against GCP by anyone holding it;
- the broker adds what the provider's `attributeCondition` and GCP's audit logs should see
  (target, grant id, the caller's issuer) after *its* policy decision, and keeps the token
  short (`exp` <= the grant, <= 1 h);
- the provider trusts one issuer (the broker) with an uploaded `jwksJson`, whatever IdPs the
  broker accepts, and the broker's URL never has to be public.

Rules:
- One RSA-2048 key, `<state_dir>/gcp-subject-key.pem`, created 0600 on first use (O_EXCL, so
  two processes racing agree on one key). Its public half is the JWKS served at `/gcp/jwks`;
  `kid` is the RFC 7638 thumbprint. Rotation is manual (docs/gcp.md, limits).
- Claims: `iss`, `sub` (the caller's subject; google.subject must be <= 127 bytes), `aud`
  (`https:` + the provider's resource name, accepted by WIF when `allowedAudiences` is empty),
  `iat`, `nbf`, `exp`, `jti`, and `idp`, `email`, `groups`, `target`, `grant`, `act` for
  attribute mappings and conditions.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jitctl.jose import b64url, jwk_thumbprint

KEY_FILE = "gcp-subject-key.pem"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
MAX_SUBJECT_BYTES = 127  # google.subject limit


@dataclass(frozen=True)
class SubjectToken:
    token: str
    jti: str
    expires_at: int
    claims: dict[str, Any]


class SubjectTokenSigner:
    def __init__(self, state_dir: Path, issuer: str) -> None:
        self.path = Path(state_dir) / KEY_FILE
        self.issuer = issuer
        self._key: Any = None
        self._jwk: dict[str, Any] = {}

    def _load(self) -> Any:
        if self._key is not None:
            return self._key
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        try:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
        except FileExistsError:
            loaded = serialization.load_pem_private_key(self.path.read_bytes(), password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError(f"{self.path} does not hold an RSA key") from None
            key = loaded
        numbers = key.public_key().public_numbers()

        def _int(value: int) -> str:
            return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))

        public = {"e": _int(numbers.e), "kty": "RSA", "n": _int(numbers.n)}
        self._jwk = {**public, "kid": jwk_thumbprint(public), "alg": "RS256", "use": "sig"}
        self._key = key
        return key

    def jwks(self) -> dict[str, Any]:
        """The public keys, as served at /gcp/jwks and uploaded as the provider's jwksJson."""
        self._load()
        return {"keys": [dict(self._jwk)]}

    def mint(
        self,
        *,
        subject: str,
        audience: str,
        lifetime: float,
        extra: dict[str, Any],
    ) -> SubjectToken:
        import jwt

        if len(subject.encode()) > MAX_SUBJECT_BYTES:
            raise ValueError(
                f"the caller's subject is {len(subject.encode())} bytes; GCP's google.subject "
                f"holds at most {MAX_SUBJECT_BYTES}"
            )
        key = self._load()
        now = int(time.time())
        jti = uuid.uuid4().hex
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": "https:" + audience,
            "iat": now,
            "nbf": now,
            "exp": now + max(1, int(lifetime)),
            "jti": jti,
            **{k: v for k, v in extra.items() if v not in (None, "", [], ())},
        }
        token = jwt.encode(
            claims, key, algorithm="RS256", headers={"kid": self._jwk["kid"], "typ": "JWT"}
        )
        return SubjectToken(token=token, jti=jti, expires_at=claims["exp"], claims=claims)
