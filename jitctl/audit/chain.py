"""Hash-chain and checkpoint arithmetic: pure functions, no I/O.

Rules (docs/audit-schema.md states them for third-party verifiers):
- A record's canonical encoding is UTF-8 JSON of the object
  {actor, data_sha256, kind, payload, prev_hash, seq, session_id, target, time_us}
  with sorted keys, separators (",", ":"), no ASCII escaping and no NaN/Infinity.
  `actor` is `Actor.to_dict()` or null; `data_sha256` is the hex SHA-256 of the raw data bytes.
- `hash` = lowercase hex SHA-256 of the canonical encoding; the first record links to GENESIS.
- A checkpoint is a record of kind `audit.checkpoint` sealed in the same transaction as the
  records it covers, so it always covers the record right before it (covers_seq = seq - 1).
  Its Ed25519 signature is over the canonical JSON of {covers_seq, head_hash, key_id, time_us}.
- A prune anchor (`audit.pruned`) signs {first_kept_seq, key_id, prev_hash_of_first_kept,
  pruned_before_us, time_us}; it lets a trail that starts above seq 1 still verify.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from jitctl.audit.records import Actor, NewRecord, Record

GENESIS = "0" * 64
CHECKPOINT = "audit.checkpoint"
PRUNED = "audit.pruned"

TrustedKeys = Mapping[str, bytes]  # key_id -> raw 32-byte Ed25519 public key


class Signer(Protocol):
    """What sealing a checkpoint needs from a key (see `jitctl.audit.keys.SigningKey`)."""

    @property
    def key_id(self) -> str: ...
    @property
    def public_raw(self) -> bytes: ...
    def sign(self, message: bytes) -> bytes: ...


_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


_string = json.encoder.encode_basestring  # a JSON string literal, as `dumps` writes it


def dumps(value: Any) -> str:
    """The canonical JSON text of `value`."""
    return _ENCODER.encode(value)


@functools.lru_cache(maxsize=1024)
def actor_json(actor: Actor) -> str:
    """Canonical JSON of an actor; cached because one session's records share one actor."""
    return dumps(actor.to_dict())


def key_id_of(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def data_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def now_us() -> int:
    return time.time_ns() // 1000


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


def hash_of(record: Record, *, seq: int | None = None) -> str:
    """Recompute a stored record's hash (optionally as if it sat at another `seq`)."""
    return record_hash(
        seq=record.seq if seq is None else seq,
        time_us=record.time_us,
        session_id=record.session_id,
        kind=record.kind,
        actor=record.actor,
        target=record.target,
        payload=record.payload,
        data_sha256=data_digest(record.data),
        prev_hash=record.prev_hash,
    )


@dataclass(frozen=True, slots=True)
class Prepared:
    """A `NewRecord` with its time fixed and its JSON texts done, ready to be chained.

    Preparing happens on the caller's side so a bad payload fails its own append, not a batch.
    """

    record: NewRecord
    actor_json: str | None
    payload_json: str
    data_sha256: str


def prepare(record: NewRecord, at_us: int | None = None) -> Prepared:
    """Fix the time and normalise the payload to what a reader gets back from the store.

    Raises ValueError/TypeError for a payload that is not JSON (NaN, bytes, non-string keys...).
    """
    # Encode, decode, encode: the hashed text must be exactly what a reader re-encodes from the
    # stored text (tuples become lists; non-string keys become strings and sort as strings).
    payload = json.loads(
        dumps(record.payload if isinstance(record.payload, dict) else dict(record.payload))
    )
    if not isinstance(payload, dict):
        raise TypeError("payload must be a JSON object")
    payload_json = dumps(payload)
    data = bytes(record.data)
    fixed = NewRecord(
        kind=record.kind,
        session_id=record.session_id,
        target=record.target,
        actor=record.actor,
        payload=payload,
        data=data,
        time_us=record.time_us or (at_us if at_us is not None else now_us()),
    )
    return Prepared(
        record=fixed,
        actor_json=actor_json(record.actor) if record.actor is not None else None,
        payload_json=payload_json,
        data_sha256=data_digest(data),
    )


def seal(
    items: Sequence[Prepared], head_seq: int, head_hash: str, signer: Signer | None = None
) -> tuple[list[Record], list[Prepared]]:
    """Chain `items` after (head_seq, head_hash); with `signer`, end with a checkpoint record.

    Returns the records and the prepared items they came from (the checkpoint's included).
    """
    prepared = list(items)
    records: list[Record] = []
    seq, prev = head_seq, head_hash
    for item in items:
        seq += 1
        records.append(link(item, seq, prev))
        prev = records[-1].hash
    if signer is not None:
        item = checkpoint_item(signer, seq, prev)
        records.append(link(item, seq + 1, prev))
        prepared.append(item)
    return records, prepared


def link(item: Prepared, seq: int, prev_hash: str) -> Record:
    """The record `item` becomes at `seq` after a record whose hash is `prev_hash`."""
    rec = item.record
    # The same bytes as canonical_bytes() (keys in sorted order, nested texts already
    # canonical), assembled from the prepared texts instead of encoding the payload again.
    text = (
        f'{{"actor":{item.actor_json or "null"},"data_sha256":"{item.data_sha256}",'
        f'"kind":{_string(rec.kind)},"payload":{item.payload_json},'
        f'"prev_hash":{_string(prev_hash)},"seq":{seq},"session_id":{_string(rec.session_id)},'
        f'"target":{_string(rec.target)},"time_us":{rec.time_us}}}'
    )
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Record(
        kind=rec.kind,
        session_id=rec.session_id,
        target=rec.target,
        actor=rec.actor,
        payload=rec.payload,
        data=rec.data,
        time_us=rec.time_us,
        seq=seq,
        prev_hash=prev_hash,
        hash=digest,
    )


def checkpoint_item(signer: Signer, covers_seq: int, head_hash: str) -> Prepared:
    """A signed `audit.checkpoint` for the head (covers_seq, head_hash), ready to chain."""
    time_us = now_us()
    statement = checkpoint_statement(covers_seq, head_hash, time_us, signer.key_id)
    payload = {
        "covers_seq": covers_seq,
        "head_hash": head_hash,
        "key_id": signer.key_id,
        "public_key": base64.b64encode(signer.public_raw).decode("ascii"),
        "signature": base64.b64encode(signer.sign(statement)).decode("ascii"),
    }
    return prepare(NewRecord(kind=CHECKPOINT, payload=payload, time_us=time_us))


def checkpoint_statement(covers_seq: int, head_hash: str, time_us: int, key_id: str) -> bytes:
    document = {
        "covers_seq": covers_seq,
        "head_hash": head_hash,
        "key_id": key_id,
        "time_us": time_us,
    }
    return dumps(document).encode("utf-8")


def anchor_statement(
    first_kept_seq: int, prev_hash: str, pruned_before_us: int, time_us: int, key_id: str
) -> bytes:
    document = {
        "first_kept_seq": first_kept_seq,
        "key_id": key_id,
        "prev_hash_of_first_kept": prev_hash,
        "pruned_before_us": pruned_before_us,
        "time_us": time_us,
    }
    return dumps(document).encode("utf-8")


def anchor_record(
    signer: Signer, first_kept_seq: int, prev_hash: str, pruned_before_us: int
) -> NewRecord:
    """The signed `audit.pruned` record that vouches for where the kept trail starts."""
    time_us = now_us()
    statement = anchor_statement(
        first_kept_seq, prev_hash, pruned_before_us, time_us, signer.key_id
    )
    payload = {
        "first_kept_seq": first_kept_seq,
        "prev_hash_of_first_kept": prev_hash,
        "pruned_before_us": pruned_before_us,
        "key_id": signer.key_id,
        "public_key": base64.b64encode(signer.public_raw).decode("ascii"),
        "signature": base64.b64encode(signer.sign(statement)).decode("ascii"),
    }
    return NewRecord(kind=PRUNED, payload=payload, time_us=time_us)


def check_signature(
    payload: Mapping[str, Any], statement: bytes, trusted: TrustedKeys
) -> str | None:
    """None when `payload`'s signature over `statement` is good and its key trusted, else why."""
    try:
        public_raw = base64.b64decode(str(payload["public_key"]), validate=True)
        signature = base64.b64decode(str(payload["signature"]), validate=True)
        key_id = str(payload["key_id"])
    except (KeyError, ValueError):
        return "signature fields are missing or not base64"
    if key_id_of(public_raw) != key_id:
        return f"key_id {key_id} does not match its public key"
    if trusted.get(key_id) != public_raw:
        return f"signed by key {key_id}, which is not a trusted audit key"
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, statement)
    except (InvalidSignature, ValueError):
        return "signature does not verify"
    return None
