"""A record's canonical encoding and hash: the recipe a third-party verifier follows.

Pure functions, no I/O. Rules (docs/audit-schema.md states them for third-party verifiers):
- A record's canonical encoding is UTF-8 JSON of the object
  {actor, data_sha256, kind, payload, prev_hash, seq, session_id, target, time_us}
  with sorted keys, separators (",", ":"), no ASCII escaping and no NaN/Infinity.
  `actor` is `Actor.to_dict()` or null; `data_sha256` is the hex SHA-256 of the raw data bytes.
- `hash` = lowercase hex SHA-256 of the canonical encoding.
- Text that is not Unicode (lone surrogates: a client's undecodable bytes kept with Python's
  `surrogateescape`, as ssh commands and file names are) is recorded escaped, `\\xff` for the
  byte 0xff (`\\ud800` for any other lone surrogate), so the trail holds valid UTF-8 and the
  client's append never fails for its bytes (a literal backslash sequence reads the same).
- Everything else that is signed or exported as canonical JSON (checkpoint and anchor
  statements, OCSF events) goes through the same `dumps`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from jitctl.audit.records import Actor, NewRecord, Record

_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


json_string = json.encoder.encode_basestring  # a JSON string literal, as `dumps` writes it


# The C encoder behind `_ENCODER.encode`, made once: without the per-call set-up the Python
# wrapper does. No `markers` (the circular-reference check): a circular value recurses until
# RecursionError, turned into the ValueError the check would have raised. It holds no state
# between calls, so threads may share it.
_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODER = (
    _make_encoder(None, _ENCODER.default, json_string, None, ":", ",", True, False, False)
    if _make_encoder is not None
    else None
)


def dumps(value: Any) -> str:
    """The canonical JSON text of `value`."""
    if _C_ENCODER is None:
        return _ENCODER.encode(value)
    try:
        return "".join(_C_ENCODER(value, 0))
    except RecursionError:
        raise ValueError("circular reference, or nesting too deep to encode") from None


_ACTORS: dict[int, tuple[Actor, str]] = {}  # id -> (the actor, kept so its id stays its own; JSON)


def actor_json(actor: Actor) -> str:
    """Canonical JSON of an actor; cached because one session's records share one actor
    object (looked up by identity: hashing a dataclass of nine fields costs more than this)."""
    known = _ACTORS.get(id(actor))
    if known is not None and known[0] is actor:
        return known[1]
    text = dumps(actor.to_dict())
    if len(_ACTORS) >= 1024:
        _ACTORS.clear()
    _ACTORS[id(actor)] = (actor, text)
    return text


def data_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_bytes(
    *,
    seq: int,
    time_us: int,
    session_id: str,
    kind: str,
    actor: Actor | None,
    target: str,
    payload: Mapping[str, Any],
    data_sha256: str,
    prev_hash: str,
) -> bytes:
    document = {
        "actor": actor.to_dict() if actor is not None else None,
        "data_sha256": data_sha256,
        "kind": kind,
        "payload": payload,
        "prev_hash": prev_hash,
        "seq": seq,
        "session_id": session_id,
        "target": target,
        "time_us": time_us,
    }
    return dumps(document).encode("utf-8")


def record_hash(**fields: Any) -> str:
    """SHA-256 (hex) of `canonical_bytes(**fields)`."""
    return hashlib.sha256(canonical_bytes(**fields)).hexdigest()


def hash_of(record: Record, *, seq: int | None = None, prev_hash: str | None = None) -> str:
    """Recompute a stored record's hash (optionally as if it sat at another `seq`, after
    another `prev_hash`: what a forger would have to write)."""
    return record_hash(
        seq=record.seq if seq is None else seq,
        time_us=record.time_us,
        session_id=record.session_id,
        kind=record.kind,
        actor=record.actor,
        target=record.target,
        payload=record.payload,
        data_sha256=data_digest(record.data),
        prev_hash=record.prev_hash if prev_hash is None else prev_hash,
    )


def _escaped_text(text: str) -> str:
    try:  # undecodable bytes kept by surrogateescape: back to the bytes, then \xNN
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # other lone surrogates: \uNNNN
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return _escaped_text(value)
    if isinstance(value, Mapping):
        return {_escaped(k): _escaped(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_escaped(v) for v in value]
    return value


def escaped_record(record: NewRecord) -> NewRecord:
    """`record` with its text that is not Unicode escaped (module rules), as a copy."""
    actor = record.actor
    return dataclasses.replace(
        record,
        kind=_escaped_text(record.kind),
        session_id=_escaped_text(record.session_id),
        target=_escaped_text(record.target),
        actor=None if actor is None else Actor.from_dict(_escaped(actor.to_dict())),
        payload=_escaped(dict(record.payload)),
    )
