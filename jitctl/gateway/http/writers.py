"""HTTP/1.1 messages as the http shell writes them: heads and body framing. Pure.

- Heads are written as given, fields in order. Names and values come from messages llhttp
  parsed (it checked the tokens and field values) or from the shell itself; what neither
  checked, the broker's injected credential, goes through `safe_field` once per connection
  (a CR or LF in it would split the head: RFC 9110 §5.5).
- A request goes upstream with its client's framing (RFC 9112 §6): a `Content-Length` body as
  it is, a chunked one re-chunked as it arrives (trailer fields are dropped).
- A response goes to the client by h11's rules for a server (`for_client`): 1xx, 204 and 304
  have no body and keep their head; a body of unknown length (chunked, or until the upstream
  closes) is chunked for an HTTP/1.1 client and delimited by closing the connection for an
  HTTP/1.0 one, which cannot read chunks (RFC 9112 §6.1, §7.1); the answer to HEAD has no body
  but the head a GET would have had (RFC 9110 §9.3.2); a connection that closes after the
  response says `Connection: close` (RFC 9112 §9.6).
"""

from __future__ import annotations

from collections.abc import Sequence

from jitctl.gateway.http.events import Framing, Headers

LAST_CHUNK = b"0\r\n\r\n"
_FRAMING = (b"content-length", b"transfer-encoding")
_CLOSE = (b"connection", b"close")


def _fields(parts: list[bytes], headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def request_head(method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    return _fields([method, b" ", target, b" HTTP/1.1\r\n"], headers)


def response_head(status: int, reason: bytes, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    return _fields([b"HTTP/1.1 %d %s\r\n" % (status, reason)], headers)


def chunk(data: bytes) -> bytes:
    """One chunk (never an empty one: that would end the body)."""
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


def safe_field(name: bytes, value: bytes) -> bool:
    """Whether the field can be written as it is: a token name, no CR, LF or NUL in the value."""
    token = name and not any(c <= 32 or c > 126 or c in b'"(),/:;<=>?@[\\]{}' for c in name)
    return bool(token) and not any(c in value for c in (13, 10, 0))


def for_client(
    status: int,
    headers: Headers,
    declared: Framing,
    *,
    head: bool,
    http11: bool,
    close: bool,
) -> tuple[Headers, Framing, bool]:
    """(the fields to send, how the body is framed, whether the connection closes after it)
    for a response whose fields declare `declared`; `head`: it answers HEAD; `close`: the
    request or the shell ends the connection after this response."""
    if status < 200 or status in (204, 304):
        body = Framing.NONE
    else:
        body = declared
        if declared is Framing.CHUNKED or declared is Framing.CLOSE:
            headers = [(n, v) for n, v in headers if n.lower() not in _FRAMING]
            if http11:
                headers.append((b"transfer-encoding", b"chunked"))
                body = Framing.CHUNKED
            else:
                body = Framing.CLOSE
                close = close or not head
        if head:
            body = Framing.NONE
    if close:
        headers = [*headers, _CLOSE]
    return headers, body, close
