"""Small real TCP servers for tests: an echo server and a sink that keeps what it received."""

from __future__ import annotations

import socket
import threading
from typing import Any


class _Server:
    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.port: int = self._sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.connections: list[bytearray] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            buffer = bytearray()
            with self._lock:
                self.connections.append(buffer)
            threading.Thread(target=self._serve, args=(conn, buffer), daemon=True).start()

    def _serve(self, conn: socket.socket, buffer: bytearray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._closed = True
        self._sock.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EchoServer(_Server):
    """Sends back every byte; closes after the client's end of data."""

    def _serve(self, conn: socket.socket, buffer: bytearray) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    buffer += data
                    conn.sendall(data)
            except OSError:
                pass


class SinkServer(_Server):
    """Keeps every byte; at the client's end of data answers with the byte count."""

    def _serve(self, conn: socket.socket, buffer: bytearray) -> None:
        with conn:
            try:
                while data := conn.recv(262144):
                    buffer += data
                conn.sendall(str(len(buffer)).encode())
            except OSError:
                pass


def roundtrip(port: int, payload: bytes, timeout: float = 10) -> bytes:
    """Send `payload` to 127.0.0.1:`port`, end the sending side, and return all that comes
    back until the other side closes (through an echo target: `payload` again)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received
