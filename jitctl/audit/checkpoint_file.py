"""The latest signed checkpoint, kept outside the store so a truncated store shows.

Rules:
- The file is JSON: the checkpoint record's own `seq` and `hash`, its `time_us` and its payload
  fields (covers_seq, head_hash, key_id, public_key, signature), plus a `format` marker.
- It is replaced atomically (temp file in the same directory, fsync, rename, fsync of the
  directory): a reader sees the old checkpoint or the new one, never half of one.
- A store whose head is below the file's `seq`, or whose record at `seq` has another hash, has
  lost or rewritten records after that checkpoint was taken.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jitctl.audit.chain import CHECKPOINT, TrustedKeys, check_signature, checkpoint_statement
from jitctl.audit.records import Record

FORMAT = "jitctl-audit-checkpoint/1"
DEFAULT_NAME = "audit-checkpoint.json"


@dataclass(frozen=True, slots=True)
class CheckpointFile:
    seq: int  # the checkpoint record's own seq
    hash: str  # ... and its hash
    time_us: int
    payload: dict[str, Any]

    @property
    def covers_seq(self) -> int:
        return int(self.payload["covers_seq"])

    def problem(self, trusted: TrustedKeys) -> str | None:
        """None when the signature is good and trusted, else what is wrong."""
        try:
            statement = checkpoint_statement(
                self.covers_seq,
                str(self.payload["head_hash"]),
                self.time_us,
                str(self.payload["key_id"]),
            )
        except (KeyError, TypeError, ValueError):
            return "its payload is incomplete"
        return check_signature(self.payload, statement, trusted)


def write_checkpoint_file(path: str | Path, record: Record) -> None:
    if record.kind != CHECKPOINT:
        raise ValueError(f"record {record.seq} is not a checkpoint")
    target = Path(path)
    document = {
        "format": FORMAT,
        "seq": record.seq,
        "hash": record.hash,
        "time_us": record.time_us,
        **dict(record.payload),
    }
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, sort_keys=True, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def read_checkpoint_file(path: str | Path) -> CheckpointFile | None:
    """The checkpoint in `path`, or None when there is no file; ValueError when it is garbled."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"checkpoint file {path} is unreadable: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"checkpoint file {path} is not a {FORMAT} document")
    try:
        payload = {
            key: document[key]
            for key in ("covers_seq", "head_hash", "key_id", "public_key", "signature")
        }
        return CheckpointFile(
            seq=int(document["seq"]),
            hash=str(document["hash"]),
            time_us=int(document["time_us"]),
            payload=payload,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint file {path} lacks a field: {exc}") from None
