"""The signing key on disk and the trusted-key files verifiers read."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from jitctl.audit import AuditUnavailable
from jitctl.audit.checkpoint_file import read_checkpoint_file, write_checkpoint_file
from jitctl.audit.keys import (
    SigningKey,
    load_or_create_signing_key,
    load_signing_key,
    trusted_keys_from,
)
from jitctl.audit.records import NewRecord
from jitctl.audit.store import open_store


def test_key_is_created_once_private_and_reused(tmp_path: Path) -> None:
    first = load_or_create_signing_key(tmp_path / "state")
    again = load_or_create_signing_key(tmp_path / "state")
    assert first.key_id == again.key_id and len(first.key_id) == 16
    assert stat.S_IMODE((tmp_path / "state" / "audit-signing.key").stat().st_mode) == 0o600
    assert (tmp_path / "state" / "audit-signing.pub").read_bytes() == first.public_pem()
    assert load_signing_key(tmp_path / "state").key_id == first.key_id


def test_a_missing_or_garbled_key_is_an_error_never_a_new_key(tmp_path: Path) -> None:
    with pytest.raises(AuditUnavailable, match="no audit signing key"):
        load_signing_key(tmp_path)
    (tmp_path / "audit-signing.key").write_text("not a key")
    with pytest.raises(AuditUnavailable, match="cannot read the audit signing key"):
        load_or_create_signing_key(tmp_path)
    assert (tmp_path / "audit-signing.key").read_text() == "not a key"


def test_trusted_key_files_accept_pem_public_private_and_base64(tmp_path: Path) -> None:
    a, b = SigningKey.generate(), SigningKey.generate()
    c = load_or_create_signing_key(tmp_path / "c")  # its private key file is used below
    keys = tmp_path / "keys.txt"
    keys.write_text(
        a.public_pem().decode()
        + "# a comment\n"
        + base64.b64encode(b.public_raw).decode()
        + "\n"
        + (tmp_path / "c" / "audit-signing.key").read_text()
    )
    assert trusted_keys_from([keys]) == {**a.trusted(), **b.trusted(), **c.trusted()}
    keys.write_text("bm90IGEga2V5\n")
    with pytest.raises(AuditUnavailable, match="is not a base64 Ed25519 public key"):
        trusted_keys_from([keys])


def test_checkpoint_file_round_trips_and_checks_its_signature(tmp_path: Path) -> None:
    key = SigningKey.generate()
    with open_store(f"sqlite://{tmp_path / 'a.db'}") as store:
        store.append_batch([NewRecord("x")])
        checkpoint = store.append_prepared([], key)[-1]
    path = tmp_path / "audit-checkpoint.json"
    write_checkpoint_file(path, checkpoint)
    saved = read_checkpoint_file(path)
    assert saved is not None and (saved.seq, saved.hash, saved.covers_seq) == (
        2,
        checkpoint.hash,
        1,
    )
    assert saved.problem(key.trusted()) is None
    assert "not a trusted audit key" in (saved.problem(SigningKey.generate().trusted()) or "")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
    document = json.loads(path.read_text())
    path.write_text(json.dumps({**document, "covers_seq": 0}))
    assert read_checkpoint_file(path).problem(key.trusted()) == "signature does not verify"  # type: ignore[union-attr]
    assert read_checkpoint_file(tmp_path / "absent.json") is None
    path.write_text("{")
    with pytest.raises(ValueError, match="unreadable"):
        read_checkpoint_file(path)
