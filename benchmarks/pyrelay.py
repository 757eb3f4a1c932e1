"""A bare byte relay in Python, for bench_http's "Python floor" row: jitctl's processes minus
jitctl.

    python benchmarks/pyrelay.py near PORT ONWARD_PORT TLS_DIR   # plain in, TLS out
    python benchmarks/pyrelay.py far PORT ONWARD_PORT TLS_DIR    # TLS in, plain out
    python benchmarks/pyrelay.py far PORT ONWARD_PORT TLS_DIR --durable FILE

Two of them stand where `jitctl connect` and the broker stand: the same event loop
(jitctl.eventloop: uvloop where installed), the same TLS contexts (jitctl.broker.tlsfiles),
asyncio protocols that hand every chunk straight to the other side's transport. Nothing is
parsed, framed, decided or recorded. What they cost per request is what Python, the loop and
TLS cost on this machine before jitctl does any of its work. Prints "ready" once listening.
"""

from __future__ import annotations

import asyncio
import collections
import os
import ssl
import sys
import threading
from pathlib import Path


class _Durable:
    """Write-ahead and nothing else: each client->upstream chunk is appended to a file and
    fdatasync'd (group commit: one thread writes whatever is pending in one write and one
    fdatasync) before it is forwarded. jitctl's audit writer minus records, SQLite and the
    hash chain: what the write-ahead promise alone costs on this machine."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.queue: collections.deque[tuple[_Side, bytes]] = collections.deque()
        self.cond = threading.Condition()
        self.loop = asyncio.get_running_loop()
        threading.Thread(target=self._run, daemon=True).start()

    def append(self, side: _Side, data: bytes) -> None:
        with self.cond:
            self.queue.append((side, data))
            if len(self.queue) == 1:
                self.cond.notify()

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.queue:
                    self.cond.wait()
                batch = list(self.queue)
                self.queue.clear()
            os.write(self.fd, b"".join(data for _, data in batch))
            os.fdatasync(self.fd)
            self.loop.call_soon_threadsafe(self._deliver, batch)

    @staticmethod
    def _deliver(batch: list[tuple[_Side, bytes]]) -> None:
        for side, data in batch:
            if side.peer is not None:
                side.peer.send(data)


DURABLE: _Durable | None = None


class _Side(asyncio.Protocol):
    """One accepted connection, or the connection it dialled onward (`peer` given)."""

    def __init__(self, onward: tuple[int, ssl.SSLContext | None], peer: _Side | None = None):
        self.onward = onward
        self.peer = peer
        self.accepted = peer is None  # the client's side of this relay, not the onward one
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
        elif DURABLE is not None and self.accepted:
            DURABLE.append(self, data)  # the far relay's client side: write-ahead
        else:
            self.peer.send(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


async def serve(
    role: str, port: int, onward: int, tls_dir: Path, durable: Path | None = None
) -> None:
    from jitctl.broker.tlsfiles import client_context, ensure_tls_files, server_context

    global DURABLE
    if durable is not None:
        DURABLE = _Durable(durable)

    ca, cert, key = ensure_tls_files(tls_dir, ["127.0.0.1"])
    listen = server_context(cert, key) if role == "far" else None
    dial = client_context(ca) if role == "near" else None
    loop = asyncio.get_running_loop()
    await loop.create_server(lambda: _Side((onward, dial)), "127.0.0.1", port, ssl=listen)
    print("ready", flush=True)
    await asyncio.Event().wait()


def main(argv: list[str]) -> int:
    from jitctl import eventloop

    durable = None
    if len(argv) == 6 and argv[4] == "--durable" and argv[0] == "far":
        durable = Path(argv[5])
        argv = argv[:4]
    if len(argv) != 4 or argv[0] not in ("near", "far") or not all(a.isdigit() for a in argv[1:3]):
        print(__doc__, file=sys.stderr)
        return 2
    role, port, onward, tls_dir = argv
    eventloop.run(serve(role, int(port), int(onward), Path(tls_dir), durable))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
