"""Upstream authentication with the broker's credential (the client's password is never used).

Rules (protocol-flow #PROTOCOL-FLOW-START-UP, sasl-authentication; notes §2):
- The server drives: each AuthenticationXXX (`R`) body goes to `UpstreamAuth.request`, which
  answers the message to send upstream, `None` when there is nothing to send (SASLFinal), or
  raises `AuthFailed` with a cause the client may read (never the password).
- Supported: AuthenticationOk (0), CleartextPassword (3), MD5Password (5, with its 4-byte salt),
  SASL (10) with SCRAM-SHA-256 through scramp's `ScramClient`, SASLContinue (11), SASLFinal
  (12: the server's signature is verified, so a server that does not know the password cannot
  pass). Kerberos, GSS and SSPI (2, 7, 8, 9) and SCRAM-SHA-256-PLUS alone are refused: the
  upstream leg is plain TCP, so there is no channel to bind.
- `done` is True once the server said AuthenticationOk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from jitctl.plugin import RemoteProtocolError

from .messages import Reader, cstr, password_message, sasl_initial_response

AUTH_OK, AUTH_CLEARTEXT, AUTH_MD5, AUTH_SASL, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL = (
    0,
    3,
    5,
    10,
    11,
    12,
)
SCRAM = "SCRAM-SHA-256"


class AuthFailed(Exception):
    """The broker could not authenticate upstream; `str()` is safe to show the client."""


def md5_password(user: str, password: str, salt: bytes) -> bytes:
    """`md5` + md5(md5(password + user) hex + salt) hex (message formats: MD5Password).
    MD5 because the server asks for it; jitctl never offers it on its own leg."""
    inner = hashlib.md5((password + user).encode()).hexdigest()
    return b"md5" + hashlib.md5(inner.encode() + salt).hexdigest().encode()


class UpstreamAuth:
    def __init__(self, credential: Mapping[str, str], user: str) -> None:
        self.user = user
        self.password = credential.get("password", "")
        self.method = ""
        self.done = False
        self._scram: object | None = None

    def _need_password(self, method: str) -> None:
        self.method = method
        if not self.password:
            raise AuthFailed(
                f"the server asks for a password ({method}) and the target's credential has none"
            )

    def request(self, body: bytes) -> bytes | None:
        reader = Reader(body)
        code = reader.int32()
        if code == AUTH_OK:
            if self._scram is not None and self.method == SCRAM and not self._final_seen:
                raise AuthFailed("the server skipped the SCRAM server signature")
            self.done = True
            return None
        if code == AUTH_CLEARTEXT:
            self._need_password("password")
            return password_message(cstr(self.password))
        if code == AUTH_MD5:
            self._need_password("md5")
            return password_message(md5_password(self.user, self.password, reader.raw(4)) + b"\0")
        if code == AUTH_SASL:
            return self._sasl_start(reader)
        if code == AUTH_SASL_CONTINUE:
            return self._sasl_continue(reader.rest())
        if code == AUTH_SASL_FINAL:
            self._sasl_final(reader.rest())
            return None
        raise AuthFailed(f"the server asks for an unsupported authentication method (code {code})")

    _final_seen = False

    def _client(self) -> object:
        if self._scram is None:
            raise RemoteProtocolError("SASL message before AuthenticationSASL")
        return self._scram

    def _sasl_start(self, reader: Reader) -> bytes:
        mechanisms = []
        while True:
            name = reader.cstring()
            if not name:
                break
            mechanisms.append(name.decode("ascii", "replace"))
        if SCRAM not in mechanisms:
            raise AuthFailed(
                f"the server offers no supported SASL mechanism ({', '.join(mechanisms)})"
            )
        self._need_password(SCRAM)
        from scramp import ScramClient

        client = ScramClient([SCRAM], self.user, self.password)
        self._scram = client
        return sasl_initial_response(SCRAM, client.get_client_first().encode())

    def _sasl_continue(self, data: bytes) -> bytes:
        client = self._client()
        try:
            client.set_server_first(data.decode("utf-8"))  # type: ignore[attr-defined]
            final: str = client.get_client_final()  # type: ignore[attr-defined]
        except Exception as exc:  # ScramException, or anything a malformed message trips
            raise AuthFailed(f"SCRAM exchange failed: {exc}") from None
        return password_message(final.encode())

    def _sasl_final(self, data: bytes) -> None:
        client = self._client()
        try:
            client.set_server_final(data.decode("utf-8"))  # type: ignore[attr-defined]
        except Exception as exc:  # ScramException, or anything a malformed message trips
            raise AuthFailed(f"the server's SCRAM signature does not verify: {exc}") from None
        self._final_seen = True
