"""The client's first packets, and the upstream StartupMessage rebuilt from an allow-list.

Rules (protocol-flow #PROTOCOL-FLOW-START-UP, #PROTOCOL-FLOW-SSL, #PROTOCOL-FLOW-GSSAPI; notes §1):
- First packets have no type byte: int32 length + int32 code. SSLRequest and GSSENCRequest are
  answered `N` (the client leg is loopback and the tunnel is TLS already), each at most once;
  CancelRequest (3.0: 16 bytes) starts the cancel path; StartupMessage 3.x starts a session;
  anything else is a `RemoteProtocolError`.
- The upstream StartupMessage is built, never copied: `user`/`database` come from the broker's
  credential (database: the credential's, else the client's), `client_encoding` is forced to
  UTF8 (notes §9: the classifier must read text as the server does), `application_name` and a
  few harmless settings pass. `replication` is refused (replication commands bypass SQL policy),
  and so is any `options` switch other than `-c name=value` for `OPTION_ALLOW`; `_pq_.*` and
  unknown parameters are stripped and reported.
- Protocol 3.x with x > 0 is pinned to 3.0 on both legs: the client is told with
  NegotiateProtocolVersion, like the server would (cancel keys then stay 4 bytes, notes §3).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from jitctl.plugin import RemoteProtocolError

from .messages import (
    CANCEL_REQUEST,
    GSSENC_REQUEST,
    MAX_STARTUP_PACKET,
    SSL_REQUEST,
    Reader,
)

# Settings a client may set at startup, in `options` or as parameters of their own (JDBC sends
# DateStyle, TimeZone, extra_float_digits that way). None of them changes lexing, roles or
# search_path. Lower-cased; the server is case-insensitive about GUC names.
OPTION_ALLOW = {
    "statement_timeout": "statement_timeout",
    "lock_timeout": "lock_timeout",
    "idle_in_transaction_session_timeout": "idle_in_transaction_session_timeout",
    "application_name": "application_name",
    "datestyle": "DateStyle",
    "timezone": "TimeZone",
    "intervalstyle": "IntervalStyle",
    "extra_float_digits": "extra_float_digits",
}
FALSE_WORDS = {"", "0", "false", "off", "no", "f", "n"}


@dataclass(frozen=True, slots=True)
class Negotiation:
    """SSLRequest or GSSENCRequest."""

    code: int


@dataclass(frozen=True, slots=True)
class Cancel:
    key: bytes  # pid (4) + secret (4)


@dataclass(frozen=True, slots=True)
class Startup:
    minor: int
    params: dict[str, str]


Packet = Negotiation | Cancel | Startup


class Refused(Exception):
    """The startup asks for something jitctl does not allow; the client gets a FATAL."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate, self.message = sqlstate, message


def packet_length(buf: bytes | bytearray) -> int | None:
    """The whole first packet's length, once its 4-byte header is there."""
    if len(buf) < 4:
        return None
    if buf[0] == 0x16 and buf[1] == 0x03:  # a TLS handshake record, not a length
        raise RemoteProtocolError(
            "the client opened with a TLS handshake (PostgreSQL 17's sslnegotiation=direct), "
            "which reaches the broker only as bytes: run `jitctl connect` (or `jitctl exec`) "
            "with --local-tls, or connect with sslnegotiation=postgres"
        )
    length = int.from_bytes(buf[:4], "big")
    if length < 8 or length > MAX_STARTUP_PACKET:
        raise RemoteProtocolError(f"invalid startup packet length {length}")
    return length


def parse_packet(packet: bytes) -> Packet:
    reader = Reader(packet[4:])
    code = reader.uint32()
    if code in (SSL_REQUEST, GSSENC_REQUEST):
        if len(packet) != 8:
            raise RemoteProtocolError("SSLRequest/GSSENCRequest with a body")
        return Negotiation(code)
    if code == CANCEL_REQUEST:
        if len(packet) != 16:
            raise RemoteProtocolError("CancelRequest is not 16 bytes (protocol 3.0 keys)")
        return Cancel(packet[8:16])
    if code >> 16 != 3:
        raise RemoteProtocolError(f"unsupported protocol or request code {code}")
    params: dict[str, str] = {}
    while True:
        name = reader.text()
        if not name:
            break
        params[name] = reader.text()
    if not reader.at_end():
        raise RemoteProtocolError("bytes after the StartupMessage's terminator")
    if "user" not in params:
        raise RemoteProtocolError("StartupMessage without a user")
    return Startup(code & 0xFFFF, params)


def split_options(options: str) -> list[str]:
    """The server's pg_split_opts: whitespace separates, a backslash escapes the next char."""
    words: list[str] = []
    current: list[str] = []
    escaped = False
    for char in options:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char.isspace():
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        words.append("".join(current))
    return words


def allowed_options(options: str) -> dict[str, str]:
    """`-c name=value` / `--name=value` switches for OPTION_ALLOW; any other switch is refused."""
    out: dict[str, str] = {}
    words = split_options(options)
    index = 0
    while index < len(words):
        word = words[index]
        if word == "-c" and index + 1 < len(words):
            setting = words[index + 1]
            index += 2
        elif (word.startswith("-c") and len(word) > 2) or (word.startswith("--") and "=" in word):
            setting, index = word[2:], index + 1
        else:
            raise Refused("0A000", f'jitctl: startup option "{word}" is not allowed')
        name, sep, value = setting.partition("=")
        canonical = OPTION_ALLOW.get(name.strip().lower().replace("-", "_"))
        if not sep or canonical is None:
            raise Refused("0A000", f'jitctl: startup option "-c {name}" is not allowed')
        out[canonical] = value
    return out


@dataclass(frozen=True, slots=True)
class UpstreamStartup:
    params: dict[str, str]  # what the upstream StartupMessage carries, in order
    client: dict[str, str]  # what the client asked for (recorded; never the password)
    stripped: list[str] = field(default_factory=list)  # parameter names not passed on
    unknown_pq: list[str] = field(
        default_factory=list
    )  # `_pq_.*` names, for NegotiateProtocolVersion


def rebuild(startup: Startup, credential: Mapping[str, str]) -> UpstreamStartup:
    """The upstream StartupMessage's parameters (see the module rules); raises `Refused`."""
    client = dict(startup.params)
    replication = client.get("replication")
    if replication is not None and replication.strip().lower() not in FALSE_WORDS:
        raise Refused("28000", 'jitctl: startup parameter "replication" is not allowed')
    settings: dict[str, str] = {}
    stripped: list[str] = []
    unknown_pq: list[str] = []
    for name, value in client.items():
        canonical = OPTION_ALLOW.get(name.lower())
        if name in ("user", "database", "client_encoding", "replication"):
            continue
        if name == "options":
            settings.update(allowed_options(value))
        elif canonical is not None:
            settings[canonical] = value
        elif name.startswith("_pq_."):
            unknown_pq.append(name)
        else:
            stripped.append(name)
    user = credential.get("user") or client["user"]
    database = credential.get("database") or client.get("database") or client["user"]
    params = {"user": user, "database": database, "client_encoding": "UTF8", **settings}
    return UpstreamStartup(params, client, stripped, unknown_pq)
