"""Hash-chain and checkpoint arithmetic: pure functions, no I/O.

Rules (docs/audit-schema.md states them for third-party verifiers):
- A record's `hash` is that of its canonical encoding (`canonical`); `prev_hash` is the hash
  of the record before it, and the first record links to GENESIS.
- `prepare` (the caller's side) and `link` (the writer's side, per record) build the same bytes
  as `canonical.canonical_bytes` without re-encoding: everything but `prev_hash` and `seq` is
  encoded once, in `prepare`.
- A checkpoint is a record of kind `audit.checkpoint` sealed in the same transaction as the
  records it covers, so it always covers the record right before it (covers_seq = seq - 1).
  Its Ed25519 signature is over the canonical JSON of {covers_seq, head_hash, key_id, time_us}.
- A prune anchor (`audit.pruned`) signs {first_kept_seq, key_id, prev_hash_of_first_kept,
  pruned_before_us, time_us}; it lets a trail that starts above seq 1 still verify.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from jitctl.audit.canonical import actor_json, dumps, escaped_record, json_string
from jitctl.audit.keys import key_id_of
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


def now_us() -> int:
    return time.time_ns() // 1000


class Prepared(NamedTuple):
    """A `NewRecord` with its time fixed and its JSON texts done, ready to be chained.

    Preparing happens on the caller's side so a bad payload fails its own append, not a batch.
    A payload that is plain JSON already is kept as the caller's object, not copied: what is
    hashed and stored is its text as of `prepare`, so a caller must not change it afterwards
    if it wants the returned `Record` to say the same.

    `head` and `tail` are the UTF-8 canonical encoding around `"prev_hash":…,"seq":…`, the only
    part that depends on where the record lands in the chain (see `link`).
    """

    kind: str
    session_id: str
    target: str
    actor: Actor | None
    payload: Mapping[str, Any]  # as a reader gets it back from the store
    data: bytes
    time_us: int
    actor_json: str | None
    payload_json: str
    data_sha256: str
    head: bytes
    tail: bytes

    @property
    def record(self) -> NewRecord:
        return NewRecord(
            kind=self.kind,
            session_id=self.session_id,
            target=self.target,
            actor=self.actor,
            payload=self.payload,
            data=self.data,
            time_us=self.time_us,
        )


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any) -> bool:
    """True for a tree of dicts with str keys, lists and JSON scalars, all of exact types.

    Its JSON text reads back as an equal tree that encodes to the same text, so that text can be
    hashed as it is. Anything else (tuples, non-string keys, subclasses) goes the long way.
    """
    kind = type(value)
    if kind is dict:
        for key in value:
            if type(key) is not str:
                return False
        children = value.values()
    elif kind is list:
        children = value
    else:
        return kind in _SCALARS
    for child in children:  # noqa: SIM110 - twice as fast as all() over a generator
        if type(child) not in _SCALARS and not _plain(child):
            return False
    return True


def prepare(record: NewRecord, at_us: int | None = None) -> Prepared:
    """Fix the time and normalise the payload to what a reader gets back from the store.

    Raises ValueError/TypeError for a payload that is not JSON (NaN, bytes, non-string keys...).
    Text that is not valid Unicode is escaped (`canonical` rules); only then is it copied.
    """
    try:
        return _prepare(record, at_us)
    except UnicodeEncodeError:
        return _prepare(escaped_record(record), at_us)


def _prepare(record: NewRecord, at_us: int | None) -> Prepared:
    payload: Any = record.payload
    if type(payload) is not dict:
        payload = dict(payload)
    payload_json = dumps(payload)
    if not _plain(payload):
        # The hashed text must be exactly what a reader re-encodes from the stored text:
        # tuples become lists, non-string keys become strings and sort as strings.
        payload = json.loads(payload_json)
        if not isinstance(payload, dict):
            raise TypeError("payload must be a JSON object")
        payload_json = dumps(payload)
    data = record.data if type(record.data) is bytes else bytes(record.data)
    time_us = record.time_us or (at_us if at_us is not None else now_us())
    actor = record.actor
    actor_text = actor_json(actor) if actor is not None else None
    data_sha256 = hashlib.sha256(data).hexdigest()
    kind, session_id, target = record.kind, record.session_id, record.target
    # The canonical encoding (keys sorted) up to the prev_hash value, and from session_id on.
    head = (
        f'{{"actor":{actor_text or "null"},"data_sha256":"{data_sha256}",'
        f'"kind":{json_string(kind)},"payload":{payload_json},"prev_hash":'
    ).encode()
    tail = (
        f',"session_id":{json_string(session_id)},"target":{json_string(target)},'
        f'"time_us":{time_us:d}}}'
    ).encode()
    return Prepared(
        kind,
        session_id,
        target,
        actor,
        payload,
        data,
        time_us,
        actor_text,
        payload_json,
        data_sha256,
        head,
        tail,
    )


def seal(
    items: Sequence[Prepared], head_seq: int, head_hash: str, signer: Signer | None = None
) -> tuple[list[Record], list[Prepared]]:
    """Chain `items` after (head_seq, head_hash); with `signer`, end with a checkpoint record.

    Returns the records and the prepared items they came from (the checkpoint's included).
    """
    records, _, checkpoint = _seal(items, head_seq, head_hash, signer)
    return records, [*items, checkpoint] if checkpoint is not None else list(items)


def seal_rows(
    items: Sequence[Prepared], head_seq: int, head_hash: str, signer: Signer | None = None
) -> tuple[list[Record], list[tuple[Any, ...]]]:
    """`seal`, with each record's row for the store (columns in `store.COLUMNS` order)."""
    records, rows, _ = _seal(items, head_seq, head_hash, signer)
    return records, rows


def _seal(
    items: Sequence[Prepared], seq: int, prev: str, signer: Signer | None
) -> tuple[list[Record], list[tuple[Any, ...]], Prepared | None]:
    records: list[Record] = []
    rows: list[tuple[Any, ...]] = []
    checkpoint = None
    for item in items:
        seq += 1
        record = link(item, seq, prev)
        records.append(record)
        rows.append(_row(item, seq, prev, record.hash))
        prev = record.hash
    if signer is not None:
        checkpoint = checkpoint_item(signer, seq, prev)
        record = link(checkpoint, seq + 1, prev)
        records.append(record)
        rows.append(_row(checkpoint, seq + 1, prev, record.hash))
    return records, rows, checkpoint


def _row(item: Prepared, seq: int, prev_hash: str, digest: str) -> tuple[Any, ...]:
    return (
        seq,
        item.time_us,
        item.session_id,
        item.kind,
        item.actor_json,
        item.target,
        item.payload_json,
        item.data,
        item.data_sha256,
        prev_hash,
        digest,
    )


def link(item: Prepared, seq: int, prev_hash: str) -> Record:
    """The record `item` becomes at `seq` after a record whose hash is `prev_hash`."""
    # The same bytes as canonical_bytes(): the prepared head and tail around the two fields
    # that depend on the place in the chain.
    text = b'%b%b,"seq":%d%b' % (item.head, json_string(prev_hash).encode(), seq, item.tail)
    return Record(
        kind=item.kind,
        session_id=item.session_id,
        target=item.target,
        actor=item.actor,
        payload=item.payload,
        data=item.data,
        time_us=item.time_us,
        seq=seq,
        prev_hash=prev_hash,
        hash=hashlib.sha256(text).hexdigest(),
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
