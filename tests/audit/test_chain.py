"""The pure chain: canonical encoding, hashes, checkpoint and anchor signatures."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jitctl.audit.canonical import canonical_bytes, data_digest, hash_of, record_hash
from jitctl.audit.chain import (
    CHECKPOINT,
    GENESIS,
    anchor_record,
    check_signature,
    checkpoint_statement,
    link,
    prepare,
    seal,
)
from jitctl.audit.keys import SigningKey
from jitctl.audit.records import Actor, NewRecord

FIELDS = dict(
    seq=7,
    time_us=1_700_000_000_000_000,
    session_id="s1",
    kind="tcp.data",
    actor=Actor(subject="alice", email="a@example.com", groups=("eng",)),
    target="pg-prod",
    payload={"len": 3, "dir": "up", "note": "é"},
    data_sha256=hashlib.sha256(b"abc").hexdigest(),
    prev_hash=GENESIS,
)


def test_canonical_bytes_are_sorted_compact_utf8_json() -> None:
    expected = (
        '{"actor":{"email":"a@example.com","groups":["eng"],"subject":"alice"},'
        f'"data_sha256":"{hashlib.sha256(b"abc").hexdigest()}","kind":"tcp.data",'
        '"payload":{"dir":"up","len":3,"note":"é"},'
        f'"prev_hash":"{GENESIS}","seq":7,"session_id":"s1","target":"pg-prod",'
        '"time_us":1700000000000000}'
    ).encode()
    assert canonical_bytes(**FIELDS) == expected
    assert record_hash(**FIELDS) == hashlib.sha256(expected).hexdigest()


@pytest.mark.parametrize(
    ("actor", "encoded"),
    [
        (None, "null"),
        (Actor(subject="bob"), '{"subject":"bob"}'),
        (Actor(subject="bob", agent="ci", reason=""), '{"agent":"ci","subject":"bob"}'),
    ],
)
def test_actor_encoding_leaves_out_empty_fields(actor: Actor | None, encoded: str) -> None:
    text = canonical_bytes(**{**FIELDS, "actor": actor}).decode()
    assert text.startswith('{"actor":' + encoded + ",")


def test_first_record_links_to_genesis_and_seq_starts_at_one() -> None:
    records, _ = seal([prepare(NewRecord("x"))], 0, GENESIS)
    assert (records[0].seq, records[0].prev_hash) == (1, "0" * 64)
    assert records[0].hash == hash_of(records[0])


def test_seal_links_each_record_to_the_previous_hash() -> None:
    items = [prepare(NewRecord("x", payload={"i": i})) for i in range(5)]
    records, _ = seal(items, 41, "ab" * 32)
    assert [r.seq for r in records] == [42, 43, 44, 45, 46]
    assert records[0].prev_hash == "ab" * 32
    for before, after in itertools.pairwise(records):
        assert after.prev_hash == before.hash


def test_seal_with_signer_ends_with_a_checkpoint_over_the_batch() -> None:
    key = SigningKey.generate()
    records, prepared = seal([prepare(NewRecord("x")), prepare(NewRecord("y"))], 0, GENESIS, key)
    checkpoint = records[-1]
    assert checkpoint.kind == CHECKPOINT and len(prepared) == 3
    assert checkpoint.payload["covers_seq"] == 2
    assert checkpoint.payload["head_hash"] == records[1].hash
    assert checkpoint.payload["key_id"] == hashlib.sha256(key.public_raw).hexdigest()[:16]
    statement = checkpoint_statement(2, records[1].hash, checkpoint.time_us, key.key_id)
    assert check_signature(checkpoint.payload, statement, key.trusted()) is None


def test_checkpoint_signature_rejects_untrusted_keys_and_altered_statements() -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    records, _ = seal([prepare(NewRecord("x"))], 0, GENESIS, key)
    cp = records[-1]
    good = checkpoint_statement(1, records[0].hash, cp.time_us, key.key_id)
    assert "not a trusted audit key" in (check_signature(cp.payload, good, other.trusted()) or "")
    bad = checkpoint_statement(2, records[0].hash, cp.time_us, key.key_id)
    assert check_signature(cp.payload, bad, key.trusted()) == "signature does not verify"
    swapped = {**cp.payload, "public_key": base64.b64encode(other.public_raw).decode()}
    assert "does not match its public key" in (check_signature(swapped, good, key.trusted()) or "")


def test_anchor_record_is_signed_over_its_statement() -> None:
    key = SigningKey.generate()
    anchor = anchor_record(key, 10, "cd" * 32, 123)
    assert anchor.payload["first_kept_seq"] == 10
    assert anchor.payload["prev_hash_of_first_kept"] == "cd" * 32


def test_prepare_normalises_payload_to_what_the_store_returns() -> None:
    item = prepare(NewRecord("x", payload={"t": (1, 2), "n": None}, data=bytearray(b"z")))
    assert item.record.payload == {"t": [1, 2], "n": None}
    assert item.payload_json == '{"n":null,"t":[1,2]}'
    assert item.data_sha256 == data_digest(b"z") and item.record.time_us > 0


@pytest.mark.parametrize(
    "payload", [{"x": math.nan}, {"x": math.inf}, {"x": b"raw"}, {"x": object()}]
)
def test_prepare_refuses_payloads_that_are_not_json(payload: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        prepare(NewRecord("x", payload=payload))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
    ),
    max_leaves=10,
)
records = st.builds(
    NewRecord,
    kind=st.text(min_size=1),
    session_id=st.text(),
    target=st.text(),
    actor=st.none() | st.builds(Actor, subject=st.text(), groups=st.lists(st.text()).map(tuple)),
    payload=st.dictionaries(st.text(), json_values, max_size=4),
    data=st.binary(),
    time_us=st.integers(min_value=1, max_value=2**62),
)


@settings(max_examples=150, deadline=None)
@given(records, st.integers(min_value=0, max_value=2**40))
def test_encoding_is_deterministic_and_matches_the_documented_recipe(
    record: NewRecord, head: int
) -> None:
    item = prepare(record)
    sealed = link(item, head + 1, GENESIS)
    again = link(prepare(record), head + 1, GENESIS)
    assert sealed.hash == again.hash == hash_of(sealed)
    # The documented recipe, from the exported JSON form alone.
    document = json.loads(item.payload_json)
    assert (
        record_hash(
            seq=head + 1,
            time_us=record.time_us,
            session_id=record.session_id,
            kind=record.kind,
            actor=record.actor,
            target=record.target,
            payload=document,
            data_sha256=hashlib.sha256(record.data).hexdigest(),
            prev_hash=GENESIS,
        )
        == sealed.hash
    )


@settings(max_examples=150, deadline=None)
@given(
    records,
    st.sampled_from(
        ["seq", "time_us", "session_id", "kind", "actor", "target", "payload", "data", "prev_hash"]
    ),
)
def test_changing_any_single_field_changes_the_hash(record: NewRecord, field: str) -> None:
    item = prepare(record)
    fields = dict(
        seq=5,
        time_us=item.record.time_us,
        session_id=record.session_id,
        kind=record.kind,
        actor=record.actor,
        target=record.target,
        payload=item.record.payload,
        data_sha256=item.data_sha256,
        prev_hash=GENESIS,
    )
    original = record_hash(**fields)
    changed = {
        "seq": lambda: {"seq": 6},
        "time_us": lambda: {"time_us": fields["time_us"] + 1},
        "session_id": lambda: {"session_id": record.session_id + "x"},
        "kind": lambda: {"kind": record.kind + "x"},
        "actor": lambda: {
            "actor": Actor(subject="mallory")
            if record.actor is None or record.actor.subject != "mallory"
            else None
        },
        "target": lambda: {"target": record.target + "x"},
        "payload": lambda: {"payload": {**item.record.payload, "\x00extra": 1}},
        "data": lambda: {"data_sha256": data_digest(record.data + b"\x00")},
        "prev_hash": lambda: {"prev_hash": "f" * 64},
    }[field]()
    assert record_hash(**{**fields, **changed}) != original


def _hash_as_before(record: NewRecord, seq: int, prev_hash: str) -> tuple[str, str]:
    """The hash and payload text as the first implementation made them: encode, decode and
    encode the payload again, then `canonical_bytes` of the whole document."""
    payload = json.loads(json.dumps(dict(record.payload), **CANON))  # type: ignore[arg-type]
    digest = record_hash(
        seq=seq,
        time_us=record.time_us,
        session_id=record.session_id,
        kind=record.kind,
        actor=record.actor,
        target=record.target,
        payload=payload,
        data_sha256=hashlib.sha256(record.data).hexdigest(),
        prev_hash=prev_hash,
    )
    return digest, json.dumps(payload, **CANON)  # type: ignore[arg-type]


CANON: dict[str, object] = dict(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
# Payloads the fast path must not take as they are: tuples, keys that JSON turns into strings
# (and that then sort as strings), subclasses of the JSON types.
odd_keys = st.integers(-20, 20) | st.floats(allow_nan=False, allow_infinity=False)
odd_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=3)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=3), children, max_size=3)
        | st.dictionaries(odd_keys, children, max_size=3)
        | st.dictionaries(st.booleans() | st.none(), children, max_size=2)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.text(max_size=4), odd_values, max_size=4)
    | st.dictionaries(odd_keys, odd_values, max_size=3),
    st.integers(min_value=1, max_value=2**40),
)
def test_hashes_are_those_of_the_encode_decode_encode_recipe(
    payload: dict[object, object], seq: int
) -> None:
    record = NewRecord("k", "s", "t", Actor("a"), payload, b"d", 1_700_000_000_000_000)
    try:
        expected: object = _hash_as_before(record, seq, "ab" * 32)
    except (TypeError, ValueError) as exc:
        expected = type(exc)
    try:
        item = prepare(record)
        got: object = (link(item, seq, "ab" * 32).hash, item.payload_json)
    except (TypeError, ValueError) as exc:
        got = type(exc)
    assert got == expected
    if isinstance(got, tuple):
        # What the record carries is what a reader decodes from the stored text.
        assert item.payload == json.loads(item.payload_json)


class _Int(int):
    def __repr__(self) -> str:
        return "not json"


class _Text(str):
    pass


def test_subclasses_and_tuples_are_normalised_before_hashing() -> None:
    payload = {"n": _Int(5), "s": _Text("x"), "t": (1, (2,)), "d": {10: 1, 9: 2, 1.5: None}}
    item = prepare(NewRecord("x", payload=payload))
    assert item.payload_json == '{"d":{"1.5":null,"10":1,"9":2},"n":5,"s":"x","t":[1,[2]]}'
    assert item.payload == json.loads(item.payload_json)
    assert type(item.payload["n"]) is int and type(item.payload["s"]) is str


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (
            NewRecord("x", payload={"text": "lone \ud800 surrogate"}),
            {"text": "lone \\ud800 surrogate"},
        ),
        (NewRecord("x", payload={"\udfff": 1}), {"\\udfff": 1}),
        (
            NewRecord("x", payload={"cmd": b"ls \xff\xfe".decode("utf-8", "surrogateescape")}),
            {"cmd": "ls \\xff\\xfe"},
        ),
        (
            NewRecord("x", payload={"t": ("\udc80", {"k": ["\udc81"]})}),
            {"t": ["\\x80", {"k": ["\\x81"]}]},
        ),
        (NewRecord("x\ud800"), {}),
        (NewRecord("x", session_id="\ud800"), {}),
        (NewRecord("x", target="\udc80"), {}),
        (NewRecord("x", actor=Actor("s", command="cat \udcff")), {}),
    ],
)
def test_text_that_is_not_unicode_is_recorded_escaped(
    record: NewRecord, expected: dict[str, object]
) -> None:
    """Escaped, never an error: an error would refuse the client's session for its bytes (or,
    raised in the writer, fail its whole batch)."""
    item = prepare(record)
    assert item.payload == expected == json.loads(item.payload_json)
    sealed = link(item, 1, GENESIS)
    assert sealed.hash == hash_of(sealed)  # the documented recipe, from what a reader gets
    assert "\\" in sealed.kind + sealed.session_id + sealed.target + json.dumps(
        [sealed.payload, sealed.actor.to_dict() if sealed.actor else None]
    )
    assert item.head.decode("utf-8") and item.tail.decode("utf-8")  # valid UTF-8 throughout
