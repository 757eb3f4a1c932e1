"""Hashing a file that arrives in pieces: SHA-256 in offset order, whatever the order of the
pieces (pipelined SFTP reads answer out of order, and short reads are asked for again). Pure.
"""

from __future__ import annotations

import hashlib
from typing import Any

MAX_REORDER = 64 << 20  # bytes held to hash out-of-order pieces


class Hasher:
    """SHA-256 of a file's bytes in offset order, whatever order the pieces come in."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self.next = 0
        self.bytes = 0
        self._held: dict[int, bytes] = {}
        self._held_bytes = 0
        self.broken = ""

    def add(self, offset: int, data: bytes | memoryview) -> None:
        size = len(data)
        self.bytes += size
        if self.broken or not size:
            return
        if offset == self.next:
            self._sha.update(data)
            self.next += size
            while self.next in self._held:
                piece = self._held.pop(self.next)
                self._held_bytes -= len(piece)
                self._sha.update(piece)
                self.next += len(piece)
        elif offset > self.next:
            if offset in self._held or self._held_bytes + size > MAX_REORDER:
                self._break("pieces too far out of order to hash")
                return
            self._held[offset] = bytes(data)
            self._held_bytes += size
        else:
            self._break("a range was transferred twice")

    def _break(self, why: str) -> None:
        self.broken = why
        self._held.clear()
        self._held_bytes = 0

    def summary(self) -> dict[str, Any]:
        if self.broken:
            return {"bytes": self.bytes, "sha256": None, "hash_note": self.broken}
        if self._held:
            return {"bytes": self.bytes, "sha256": None, "hash_note": "gaps in the transfer"}
        return {"bytes": self.bytes, "size": self.next, "sha256": self._sha.hexdigest()}
