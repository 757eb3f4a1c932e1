"""Server-side TLS fed by hand: bytes in, (plaintext, bytes to send) out.

`jitctl connect --local-tls` takes TLS with a local Postgres client in one of two ways. After
an SSLRequest the client waits for our `S`, so the transport can be handed to the event loop's
own TLS (`start_tls`) before the handshake's first byte. A client with PostgreSQL 17's
`sslnegotiation=direct` opens with its ClientHello instead: by the time we know it is TLS,
those bytes are read, and `start_tls` cannot be given bytes already read. So that case runs
OpenSSL on memory buffers (`ssl.SSLObject`), which takes the bytes we hold.

Sans-I/O: `receive` takes what the client sent, `send` what is to reach it; both return the
bytes to write to the client. An `ssl.SSLError` (a bad handshake, a bad record) ends the
connection; the caller says why.
"""

from __future__ import annotations

import ssl

READ_SIZE = 64 * 1024


class MemoryTLS:
    __slots__ = ("_in", "_out", "_tls", "closed", "handshaken")

    def __init__(self, context: ssl.SSLContext) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._in, self._out, server_side=True)
        self.handshaken = False
        self.closed = False  # the client sent close_notify: no more plaintext comes

    def receive(self, data: bytes) -> tuple[bytes, bytes]:
        """(plaintext the client sent, bytes to write back to it) after `data`."""
        self._in.write(data)
        if not self.handshaken:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                return b"", self._out.read()
            self.handshaken = True
        plain: list[bytes] = []
        while not self.closed:
            try:
                chunk = self._tls.read(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                chunk = b""
            if not chunk:  # CPython returns b"" for a close_notify (no data raises WantRead)
                self.closed = True
                break
            plain.append(chunk)
        return b"".join(plain), self._out.read()

    def send(self, data: bytes) -> bytes:
        """The records that carry `data` to the client (only once the handshake is done)."""
        self._tls.write(data)
        return self._out.read()
