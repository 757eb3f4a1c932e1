"""A real OIDC issuer for tests: discovery + JWKS over HTTP on 127.0.0.1, and a JWT minter.

It is deliberately able to mint bad tokens (expired, wrong audience, `alg: none`, HS256 keyed
with its own RSA public key, unknown `kid`, missing claims) so tests can prove the broker
refuses them.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from jitctl.jose import b64url


class TokenIssuer:
    def __init__(self) -> None:
        self._keys: dict[str, tuple[str, Any]] = {}  # kid -> (alg, private key)
        self._published: list[str] = []
        self.current_kid = ""
        self.jwks_hits = 0
        self.discovery_hits = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    issuer.discovery_hits += 1
                    body = {
                        "issuer": issuer.url,
                        "jwks_uri": issuer.url + "/jwks",
                        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                    }
                elif self.path == "/jwks":
                    issuer.jwks_hits += 1
                    body = issuer.jwks()
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.current_kid = self.add_key()

    # -- keys -------------------------------------------------------------------------------

    def add_key(self, kind: str = "RSA", publish: bool = True) -> str:
        if kind == "RSA":
            key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            alg = "RS256"
        else:
            key = ec.generate_private_key(ec.SECP256R1())
            alg = "ES256"
        kid = uuid.uuid4().hex[:12]
        self._keys[kid] = (alg, key)
        if publish:
            self._published.append(kid)
        return kid

    def publish(self, kid: str) -> None:
        if kid not in self._published:
            self._published.append(kid)

    def rotate(self, publish: bool = True) -> str:
        """A new signing key becomes current (published unless told otherwise)."""
        self.current_kid = self.add_key(publish=publish)
        return self.current_kid

    def public_pem(self, kid: str | None = None) -> bytes:
        _, key = self._keys[kid or self.current_kid]
        pem: bytes = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid in self._published:
            alg, key = self._keys[kid]
            jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
            jwk.update({"kid": kid, "alg": alg, "use": "sig"})
            keys.append(jwk)
        return {"keys": keys}

    # -- tokens -----------------------------------------------------------------------------

    def claims(
        self,
        *,
        sub: str = "agent-1",
        aud: str | list[str] = "jitctl",
        groups: list[str] | None = None,
        email: str = "",
        lifetime: int = 300,
        **extra: Any,
    ) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "sub": sub,
            "aud": aud,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "groups": groups if groups is not None else ["agents"],
        }
        if email:
            claims["email"] = email
        claims.update(extra)
        return {k: v for k, v in claims.items() if v is not None}

    def mint(
        self, claims: dict[str, Any] | None = None, *, kid: str | None = None, **kw: Any
    ) -> str:
        """A properly signed token; `claims` replaces the defaults, `kw` tweaks them."""
        body = claims if claims is not None else self.claims(**kw)
        kid = kid or self.current_kid
        alg, key = self._keys[kid]
        return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})

    def mint_unsigned(self, **kw: Any) -> str:
        """`alg: none` — must always be refused."""
        header = b64url(json.dumps({"alg": "none", "typ": "JWT", "kid": self.current_kid}).encode())
        return f"{header}.{b64url(json.dumps(self.claims(**kw)).encode())}."

    def mint_hs256_with_public_key(self, **kw: Any) -> str:
        """The RS→HS confusion attack: HMAC keyed with the issuer's public key PEM."""
        import hashlib
        import hmac

        header = b64url(
            json.dumps({"alg": "HS256", "typ": "JWT", "kid": self.current_kid}).encode()
        )
        payload = b64url(json.dumps(self.claims(**kw)).encode())
        signing_input = f"{header}.{payload}".encode()
        signature = hmac.new(self.public_pem(), signing_input, hashlib.sha256).digest()
        return f"{header}.{payload}.{b64url(signature)}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> TokenIssuer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
