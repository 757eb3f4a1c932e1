"""A tiny threaded HTTP/1.1 upstream for the http plugin's tests and benchmark.

Every request is kept in `requests` (method, path, headers, body size). Routes:

- `/users...`: a JSON document with personal fields (`email`, `ssn`) to mask;
- `/text`: a text/plain body with an email address in it;
- `/stream?bytes=N`: N bytes of application/octet-stream, chunked, made as they are sent;
- `/drip?parts=N&pause=S`: N chunks `part 1\n`, `part 2\n`... of text/plain, S seconds apart
  (a stream whose bytes must reach the client as they come, e.g. server-sent events);
- `/ping`: a short text/plain "pong" (benchmark);
- `Upgrade: websocket`: a WebSocket echo (RFC 6455, wsproto): every message comes back as it
  was sent (and is kept in `ws_messages`, as the upstream got it), pings get pongs, a close is
  answered; on `/ws-bad` the server sends a frame the RFC forbids (masked) after its first
  echo; on `/ws-frag` a text echo comes in fragments of 8 characters, with a ping after the
  first;
- any other `Upgrade`: 101, then every byte echoed back raw; on `/upgrade-headers` the
  request's header lines (`name: value\r\n`) come first, each cut in the middle of its
  value with a pause (so a credential in one arrives in two reads); on `/upgrade-after-eof`,
  once the client ended its side, `bye ` and the request's credential (its `Authorization`
  or `X-Api-Key` value, cut in two writes with a pause), then the close; on
  `/upgrade-linger`, once the client ended its side, silence for 30 s before the close;
- anything else: a JSON echo of the method, path, headers and body size it got. Request bodies
  may be chunked; they are read and counted, never kept whole.

`HttpUpstream(tls_dir=DIR)` serves HTTPS with a certificate for 127.0.0.1 from a throwaway CA
made in DIR (`ca_file`); `client_ca=FILE` also demands a client certificate signed by FILE,
and each request then records the certificate's common name (`client_cn`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

USERS = {
    "users": [
        {"name": "Ada", "email": "ada@example.com", "ssn": "123-45-6789", "id": 1},
        {"name": "Bob", "email": "bob@example.org", "ssn": "987-65-4321", "id": 2},
    ]
}
CHUNK = b"x" * 65536
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §4.2.2


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    wbufsize = 1 << 16  # head and body in one write (handle_one_request flushes)
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:
        pass

    def _body_size(self) -> int:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            size = 0
            while True:
                line = self.rfile.readline()
                length = int(line.split(b";")[0].strip() or b"0", 16)
                if length == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return size
                left = length
                while left:
                    left -= len(self.rfile.read(min(left, 1 << 20)))
                self.rfile.readline()
                size += length
        left = size = int(self.headers.get("Content-Length") or 0)
        while left:
            got = self.rfile.read(min(left, 1 << 20))
            if not got:
                break
            left -= len(got)
        return size

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        size = self._body_size()
        url = urlsplit(self.path)
        seen = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body_size": size,
        }
        if self.server.tls:
            peer = self.connection.getpeercert() or {}
            names = dict(item[0] for item in peer.get("subject", ()))
            seen["client_cn"] = names.get("commonName")
        with self.server.lock:
            self.server.requests.append(seen)
        if self.headers.get("Upgrade"):
            self._upgraded()
        elif url.path == "/ping":
            self._send(200, b"pong", "text/plain")
        elif url.path.startswith("/users"):
            self._send(200, json.dumps(USERS).encode(), "application/json")
        elif url.path == "/text":
            self._send(200, b"contact ada@example.com for access\n", "text/plain; charset=utf-8")
        elif url.path == "/stream":
            total = int(parse_qs(url.query).get("bytes", ["0"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            left = total
            while left:
                piece = CHUNK[: min(left, len(CHUNK))]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                left -= len(piece)
            self.wfile.write(b"0\r\n\r\n")
        elif url.path == "/drip":
            query = parse_qs(url.query)
            parts, pause = int(query.get("parts", ["2"])[0]), float(query.get("pause", ["0"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for n in range(1, parts + 1):
                if n > 1:
                    time.sleep(pause)
                piece = b"part %d\n" % n
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        else:
            self._send(200, json.dumps(seen).encode(), "application/json")

    def _upgraded(self) -> None:
        """Accept any upgrade: a WebSocket echo, or raw bytes echoed until the client closes."""
        websocket = self.headers["Upgrade"].lower() == "websocket"
        self.send_response(101)
        self.send_header("Upgrade", self.headers["Upgrade"])
        self.send_header("Connection", "Upgrade")
        if websocket:
            key = self.headers.get("Sec-WebSocket-Key", "").encode()
            accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
            self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        if websocket:
            self._websocket_echo(
                bad=self.path.startswith("/ws-bad"), fragments=self.path.startswith("/ws-frag")
            )
            return
        if self.path.startswith("/upgrade-headers"):
            for name, value in self.headers.items():
                line = f"{name}: {value}\r\n".encode("latin-1")
                cut = len(name) + 2 + len(value) // 2
                self.connection.sendall(line[:cut])
                time.sleep(0.02)
                self.connection.sendall(line[cut:])
        while data := self.connection.recv(65536):
            self.connection.sendall(data)
        if self.path.startswith("/upgrade-linger"):
            time.sleep(30)  # a quiet upstream: only the client leaving can end the relay sooner
        if self.path.startswith("/upgrade-after-eof"):  # the client half-closed, still reads
            value = self.headers.get("Authorization") or self.headers.get("X-Api-Key") or ""
            secret = value.encode("latin-1")
            self.connection.sendall(b"bye " + secret[: len(secret) // 2])
            time.sleep(0.02)
            self.connection.sendall(secret[len(secret) // 2 :])

    def _websocket_echo(self, bad: bool, fragments: bool) -> None:
        from wsproto.connection import Connection, ConnectionType
        from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

        ws = Connection(ConnectionType.SERVER)
        parts: list[Any] = []
        while data := self.connection.recv(65536):
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, (TextMessage, BytesMessage)):
                    parts.append(event.data)
                    if event.message_finished:
                        whole = (
                            "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)
                        )
                        parts = []
                        with self.server.lock:
                            self.server.ws_messages.append((self.path, whole))
                        if fragments and isinstance(whole, str):
                            self.connection.sendall(self._fragmented(ws, whole))
                            continue
                        kind = TextMessage if isinstance(whole, str) else BytesMessage
                        self.connection.sendall(ws.send(kind(data=whole)))  # type: ignore[arg-type]
                        if bad:  # a masked frame from a server: RFC 6455 §5.1 forbids it
                            self.connection.sendall(b"\x81\x82abcd\x09\x0b")
                elif isinstance(event, Ping):
                    self.connection.sendall(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    self.connection.sendall(ws.send(event.response()))
                    return

    @staticmethod
    def _fragmented(ws: Any, text: str) -> bytes:
        """`text` as a fragmented message (RFC 6455 §5.4), a ping after its first fragment."""
        from wsproto.events import Ping, TextMessage

        parts = [text[i : i + 8] for i in range(0, len(text), 8)] or [""]
        out = b""
        for n, part in enumerate(parts):
            out += ws.send(TextMessage(data=part, message_finished=n == len(parts) - 1))
            if n == 0:
                out += ws.send(Ping(b"between"))
        return out

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # an upgraded connection may still be open at teardown
    lock: threading.Lock
    requests: list[dict[str, Any]]
    ws_messages: list[tuple[str, str | bytes]]
    tls = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not (self.tls and isinstance(sys.exc_info()[1], ssl.SSLError | ConnectionError)):
            super().handle_error(request, client_address)  # a refused TLS client is no error


class HttpUpstream:
    """`with HttpUpstream() as upstream:` serves on 127.0.0.1:`upstream.port`."""

    def __init__(self, tls_dir: Path | None = None, client_ca: Path | None = None) -> None:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.lock = threading.Lock()
        self.server.requests = []
        self.server.ws_messages = []
        self.server.tls = tls_dir is not None
        self.port = self.server.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        self.ca_file: Path | None = None
        if tls_dir is not None:
            from jitctl.broker.tlsfiles import ensure_tls_files

            self.ca_file, cert, key = ensure_tls_files(tls_dir, ["127.0.0.1"])
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            if client_ca is not None:
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(client_ca)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.url = f"https://{self.address}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self.server.lock:
            return list(self.server.requests)

    @property
    def ws_messages(self) -> list[tuple[str, str | bytes]]:
        """(path, message) of every WebSocket message the echo got, as it got it."""
        with self.server.lock:
            return list(self.server.ws_messages)

    def __enter__(self) -> HttpUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
