"""What passes through one SFTP handle, and the records that sum it up when it closes. Pure.

Rules:
- A handle is a file, opened to read, to write or both, or a directory being listed.
- File contents are never recorded, only hashed (SHA-256 in offset order, hashing.py): written
  bytes as the client sends them, read bytes as the host returns them; a write the host
  refuses is counted as a write error.
- At close a file handle sums up as an `upload` (bytes and hash; durable, so it is on record
  before the close reaches the host) when it was opened to write and either bytes were written
  or it was not also opened to read (an empty or truncated file is still an upload), and as a
  `download` (bytes and hash) when bytes were read. A directory sums up as `list` with the
  number of entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jitctl_ssh.hashing import Hasher


@dataclass
class Handle:
    path: str
    kind: str  # "file" or "dir"
    read: bool = False
    write: bool = False
    reads: Hasher = field(default_factory=Hasher)
    writes: Hasher = field(default_factory=Hasher)
    entries: int = 0
    errors: int = 0

    def summaries(self) -> list[tuple[str, bool, dict[str, Any]]]:
        """The records that sum up this handle at close: (op, durable, payload extras)."""
        if self.kind == "dir":
            return [("list", False, {"entries": self.entries})]
        out: list[tuple[str, bool, dict[str, Any]]] = []
        if self.write and (self.writes.bytes or not self.read):
            extra = self.writes.summary()
            if self.errors:
                extra["write_errors"] = self.errors
            out.append(("upload", True, extra))
        if self.read and self.reads.bytes:
            out.append(("download", False, self.reads.summary()))
        return out
