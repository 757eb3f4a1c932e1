"""Request and response headers across the proxy: pure functions on (name, value) lists.

Rules (RFC 9110 §7.6.1 for hop-by-hop fields):
- Toward the upstream: hop-by-hop fields go (`Connection` and every field it names,
  `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Upgrade` unless the request is an upgrade the
  shell lets through; an upgrade loses `Sec-WebSocket-Extensions`, so no extension such as
  permessage-deflate compresses the frames the trail reads), and so
  does every client credential: `Authorization`, `Proxy-Authorization`, the target's
  `auth_header`, its `drop_headers`, and `Cookie` when `drop_cookies`. `Host` becomes the
  upstream's. Then the broker's credential is added. `Expect` goes too: the gateway answers
  `100 Continue` itself. Framing (`Content-Length`, `Transfer-Encoding`) stays as sent: the
  shell's parser checks it and frames the body the same way.
- Toward the client: hop-by-hop fields go; framing stays unless the body was rewritten.
- In the trail: only the target's `record_headers`, and secrets (`Authorization`, cookies, the
  API-key header, anything named like a token, key, secret or password) as `[REDACTED]`.

`HeaderRules.of(options)` works these sets out once per connection: they depend on the target
only, and every request of a keep-alive connection would otherwise rebuild them.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"upgrade",
    b"expect",
}
HOP_AND_FRAMING = HOP_BY_HOP | {b"content-length", b"transfer-encoding"}  # body rewritten
ALWAYS_DROPPED = {b"authorization", b"proxy-authorization"}
SECRET_WORDS = ("auth", "token", "secret", "password", "api-key", "apikey", "cookie", "session")
REDACTED = "[REDACTED]"


def _names(values: Iterable[str]) -> set[bytes]:
    return {v.strip().lower().encode("latin-1") for v in values if v.strip()}


def _connection_tokens(headers: Sequence[tuple[bytes, bytes]]) -> set[bytes]:
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens |= {t.strip().lower() for t in value.split(b",") if t.strip()}
    return tokens


def is_upgrade(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    return b"upgrade" in _connection_tokens(headers) and any(
        n.lower() == b"upgrade" for n, _ in headers
    )


def credential_header(options: Any, credential: Mapping[str, str]) -> tuple[bytes, bytes] | None:
    """The header carrying the broker's credential, or None when it has none."""
    secret = credential.get("token") or credential.get("password") or ""
    scheme = options.auth_scheme.strip()
    if scheme.lower() == "basic" and credential.get("user"):
        secret = base64.b64encode(f"{credential['user']}:{secret}".encode()).decode()
    if not secret:
        return None
    value = f"{scheme} {secret}" if scheme else secret
    return options.auth_header.strip().encode("latin-1"), value.encode("latin-1")


@dataclass(frozen=True, slots=True)
class HeaderRules:
    """One target's header rules, as sets of lower-case names (see the module docstring)."""

    drop: frozenset[bytes]  # client credentials: dropped, their names recorded
    record: frozenset[bytes]  # kept in the trail ...
    redact: frozenset[bytes]  # ... with their values as [REDACTED]

    @classmethod
    def of(cls, options: Any, secret_names: Iterable[str] = ()) -> HeaderRules:
        drop = ALWAYS_DROPPED | _names([options.auth_header, *options.drop_headers])
        if options.drop_cookies:
            drop |= {b"cookie"}
        record = _names(options.record_headers)
        secrets = _names([options.auth_header, *options.drop_headers, *secret_names])
        redact = {
            name
            for name in record
            if name in secrets
            or name in ALWAYS_DROPPED
            or any(w in name.decode("latin-1") for w in SECRET_WORDS)
        }
        return cls(frozenset(drop), frozenset(record), frozenset(redact))

    def to_upstream(
        self,
        headers: Sequence[tuple[bytes, bytes]],
        host: bytes,
        injected: tuple[bytes, bytes] | None,
        *,
        identity_encoding: bool = False,
        upgrade_allowed: bool = True,
    ) -> tuple[Headers, list[str]]:
        """The upstream request's headers, and the names of the client credentials dropped.
        `upgrade_allowed=False`: an upgrade request goes as a plain one (its `Upgrade` and the
        fields its `Connection` names dropped), so the upstream cannot switch protocols."""
        hop = HOP_BY_HOP
        upgrade = False
        for name, _ in headers:  # a loop, not any(): this runs for every request
            if name.lower() == b"connection":
                upgrade = upgrade_allowed and is_upgrade(headers)
                hop = HOP_BY_HOP | _connection_tokens(headers)
                if upgrade:  # no WebSocket extension: frames must arrive as the trail reads them
                    hop = (hop - {b"upgrade"}) | {b"sec-websocket-extensions"}
                break
        drop = self.drop
        out: Headers = [(b"host", host)]
        dropped: list[str] = []
        for field in headers:
            lower = field[0].lower()
            if lower in drop:
                dropped.append(lower.decode("latin-1"))
            elif lower in hop or lower == b"host" or lower.startswith(b"proxy-"):
                continue
            elif identity_encoding and lower == b"accept-encoding":
                continue  # bodies the gateway masks must arrive readable
            else:
                out.append(field)
        if upgrade:
            out.append((b"connection", b"upgrade"))
        if injected is not None:
            out.append(injected)
        return out, sorted(set(dropped)) if dropped else dropped

    def for_record(self, headers: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
        """The headers the trail keeps, secrets redacted; repeated fields joined with ", "."""
        out: dict[str, str] = {}
        for name, value in headers:
            lower = name.lower()
            if lower not in self.record:
                continue
            key = lower.decode("latin-1")
            text = REDACTED if lower in self.redact else value.decode("latin-1")
            out[key] = f"{out[key]}, {text}" if key in out else text
        return out


def to_upstream(
    headers: Sequence[tuple[bytes, bytes]],
    options: Any,
    host: bytes,
    injected: tuple[bytes, bytes] | None,
    *,
    identity_encoding: bool = False,
) -> tuple[Headers, list[str]]:
    """The upstream request's headers, and the names of the client credentials dropped."""
    return HeaderRules.of(options).to_upstream(
        headers, host, injected, identity_encoding=identity_encoding
    )


def to_client(headers: Sequence[tuple[bytes, bytes]], *, reframe: bool = False) -> Headers:
    """The response's headers for the client; `reframe`: the body changed, drop framing."""
    drop = HOP_AND_FRAMING if reframe else HOP_BY_HOP
    out: Headers = []
    for field in headers:
        lower = field[0].lower()
        if lower not in drop:
            out.append(field)
        elif lower == b"connection":  # the fields it names go too, those before it as well
            drop = drop | _connection_tokens(headers)
            return [item for item in headers if item[0].lower() not in drop]
    return out


def for_record(
    headers: Sequence[tuple[bytes, bytes]], options: Any, secret_names: Iterable[str] = ()
) -> dict[str, str]:
    """The headers the trail keeps, secrets redacted; repeated fields joined with ", "."""
    return HeaderRules.of(options, secret_names).for_record(headers)


def header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes:
    for key, value in headers:
        if key.lower() == name:
            return value
    return b""


def query_for_record(query: str) -> str:
    """The query string the trail keeps: parameters named like a credential (`access_token`,
    `key`, `api_key`, `password`, ...) have their values redacted; the rest stay as sent."""
    if not query:
        return query
    kept = []
    for part in query.split("&"):
        name, sep, _ = part.partition("=")
        lower = name.lower()
        if sep and (lower in ("key", "sig", "signature") or any(w in lower for w in SECRET_WORDS)):
            part = f"{name}={REDACTED}"
        kept.append(part)
    return "&".join(kept)
