"""A bare byte relay in Python, for bench_http's "Python floor" row: jitctl's processes minus
jitctl.

    python benchmarks/pyrelay.py near PORT ONWARD_PORT TLS_DIR   # plain in, TLS out
    python benchmarks/pyrelay.py far PORT ONWARD_PORT TLS_DIR    # TLS in, plain out

Two of them stand where `jitctl connect` and the broker stand: the same event loop
(jitctl.eventloop: uvloop where installed), the same TLS contexts (jitctl.broker.tlsfiles),
asyncio protocols that hand every chunk straight to the other side's transport. Nothing is
parsed, framed, decided or recorded. What they cost per request is what Python, the loop and
TLS cost on this machine before jitctl does any of its work. Prints "ready" once listening.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from pathlib import Path


class _Side(asyncio.Protocol):
    """One accepted connection, or the connection it dialled onward (`peer` given)."""

    def __init__(self, onward: tuple[int, ssl.SSLContext | None], peer: _Side | None = None):
        self.onward = onward
        self.peer = peer
        self.transport: asyncio.Transport | None = None
        self.early: list[bytes] = []  # what arrived before the onward connection was up

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.peer is None:
            asyncio.get_running_loop().create_task(self._dial())

    async def _dial(self) -> None:
        port, context = self.onward
        loop = asyncio.get_running_loop()
        try:
            _, peer = await loop.create_connection(
                lambda: _Side(self.onward, self),
                "127.0.0.1",
                port,
                ssl=context,
                server_hostname="127.0.0.1" if context else None,
            )
        except OSError:
            if self.transport is not None:
                self.transport.close()
            return
        self.peer = peer
        for chunk in self.early:
            peer.send(chunk)
        self.early.clear()

    def send(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self.peer is None:
            self.early.append(data)
        else:
            self.peer.send(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


async def serve(role: str, port: int, onward: int, tls_dir: Path) -> None:
    from jitctl.broker.tlsfiles import client_context, ensure_tls_files, server_context

    ca, cert, key = ensure_tls_files(tls_dir, ["127.0.0.1"])
    listen = server_context(cert, key) if role == "far" else None
    dial = client_context(ca) if role == "near" else None
    loop = asyncio.get_running_loop()
    await loop.create_server(lambda: _Side((onward, dial)), "127.0.0.1", port, ssl=listen)
    print("ready", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str]) -> int:
    from jitctl import eventloop

    if len(argv) != 4 or argv[0] not in ("near", "far") or not all(a.isdigit() for a in argv[1:3]):
        print(__doc__, file=sys.stderr)
        return 2
    role, port, onward, tls_dir = argv
    eventloop.run(serve(role, int(port), int(onward), Path(tls_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
