"""`jitctl audit ...` and `jitctl sessions ...` as a user runs them: real subprocesses."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from jitctl.audit.export import verify_jsonl
from jitctl.audit.keys import load_or_create_signing_key
from jitctl.audit.records import NewRecord
from jitctl.audit.store import open_store
from tests.audit.conftest import make_trail, session_records


def jitctl(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="80")  # piped tables must not be cut to a terminal's width
    if home is not None:
        env["JITCTL_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "jitctl", *args], capture_output=True, text=True, env=env, timeout=60
    )


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A broker state dir as a broker leaves it: store, key pair, checkpoint file."""
    directory = tmp_path / "state"
    key = load_or_create_signing_key(directory)
    with open_store(f"sqlite://{directory / 'audit.db'}") as store:
        make_trail(store, key, directory / "audit-checkpoint.json")
        store.append_batch(session_records("s-open")[:2])  # a session still running
    return directory


def test_verify_an_intact_trail_exits_zero(state_dir: Path) -> None:
    result = jitctl("audit", "verify", "--state-dir", str(state_dir))
    assert result.returncode == 0, result.stderr
    assert "audit trail verified: 23 records (seq 1-23), 3 signed checkpoints" in result.stdout


def test_verify_names_the_first_break_and_exits_7(state_dir: Path) -> None:
    db = sqlite3.connect(state_dir / "audit.db")
    db.execute(
        "UPDATE audit_records SET payload = replace(payload, 'closed', 'clozed') WHERE seq = 12"
    )
    db.commit()
    db.close()
    result = jitctl("audit", "verify", "--state-dir", str(state_dir))
    assert result.returncode == 7
    assert "the audit trail is broken at seq 12: hash does not match contents" in result.stderr
    assert result.stdout == ""
    as_json = jitctl("audit", "verify", "--json", "--state-dir", str(state_dir))
    assert as_json.returncode == 7
    document = json.loads(as_json.stdout)
    assert document["ok"] is False and document["records"] == 11
    assert document["break"]["seq"] == 12 and "record modified" in document["break"]["problem"]


def test_verify_json_of_a_whole_trail(state_dir: Path) -> None:
    result = jitctl("audit", "verify", "--json", "--state-dir", str(state_dir))
    assert result.returncode == 0
    assert json.loads(result.stdout) == {
        "ok": True,
        "records": 23,
        "checkpoints": 3,
        "head": 23,
        "first_seq": 1,
        "signed_through": 21,
        "break": None,
    }


def test_verify_reads_the_store_named_by_a_broker_config(state_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "broker.toml"
    config.write_text(f'[broker]\nstate_dir = "{state_dir}"\n')
    assert jitctl("audit", "verify", "--config", str(config)).returncode == 0


def test_without_options_the_dev_broker_state_dir_is_used(state_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    state_dir.rename(home / "dev-broker")
    assert jitctl("audit", "verify", home=home).returncode == 0


def test_a_missing_trail_is_an_error_not_an_empty_success(tmp_path: Path) -> None:
    for command in (["verify"], ["prune", "--before", "2001-01-01"]):
        result = jitctl("audit", *command, "--state-dir", str(tmp_path / "nothing"))
        assert result.returncode == 1
        # The missing trail is named, not the key that would have verified it.
        assert "error: no audit store at" in result.stderr, command
        assert "--state-dir or --config" in result.stderr


def test_export_jsonl_to_a_file_verifies_offline(state_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "trail.jsonl"
    result = jitctl(
        "audit", "export", "--format", "jsonl", "--output", str(out), "--state-dir", str(state_dir)
    )
    assert result.returncode == 0 and "wrote 23 records" in result.stderr
    key = load_or_create_signing_key(state_dir)
    assert verify_jsonl(out, key.trusted(), checkpoint_file=state_dir / "audit-checkpoint.json").ok


def test_export_ocsf_of_one_session_to_stdout(state_dir: Path) -> None:
    result = jitctl(
        "audit", "export", "--format", "ocsf", "--session", "s1", "--state-dir", str(state_dir)
    )
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["activity_name"] for e in events] == [
        "Open",
        "Traffic",
        "Traffic",
        "Traffic",
        "Close",
    ]
    assert {e["actor"]["session"]["uid"] for e in events} == {"s1"}
    since = jitctl("audit", "export", "--since", "1h", "--state-dir", str(state_dir))
    assert len(since.stdout.splitlines()) == 23


def test_export_asciicast_needs_a_session(state_dir: Path) -> None:
    """asciicast is one terminal session, not a whole trail: without --session it says so."""
    result = jitctl("audit", "export", "--format", "asciicast", "--state-dir", str(state_dir))
    assert result.returncode == 2 and "--session" in result.stderr


def test_prune_refuses_a_trail_that_does_not_verify(state_dir: Path) -> None:
    db = sqlite3.connect(state_dir / "audit.db")
    db.execute("UPDATE audit_records SET time_us = 1000 WHERE seq <= 7")  # seq 1-7 from 1970
    db.commit()
    db.close()
    # (the tampering above breaks the chain, so prune must refuse...)
    refused = jitctl("audit", "prune", "--before", "30d", "--state-dir", str(state_dir))
    assert refused.returncode == 7 and "refusing to prune" in refused.stderr


def test_prune_old_sessions_from_the_cli(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    key = load_or_create_signing_key(directory)
    with open_store(f"sqlite://{directory / 'audit.db'}") as store:
        store.append_batch(
            [
                NewRecord(r.kind, r.session_id, r.target, r.actor, r.payload, r.data, 1_000 + i)
                for i, r in enumerate(session_records("ancient"))
            ]
        )
        make_trail(store, key, directory / "audit-checkpoint.json", sessions=1)
    result = jitctl("audit", "prune", "--before", "2001-01-01", "--state-dir", str(directory))
    assert result.returncode == 0, result.stderr
    assert "pruned 5 records" in result.stderr and "now starts at seq 6" in result.stderr
    assert jitctl("audit", "verify", "--state-dir", str(directory)).returncode == 0
    again = jitctl("audit", "prune", "--before", "2001-01-01", "--state-dir", str(directory))
    assert "nothing to prune" in again.stderr


def test_sessions_ls_lists_newest_first_with_filters(state_dir: Path) -> None:
    listed = json.loads(jitctl("sessions", "ls", "--json", "--state-dir", str(state_dir)).stdout)
    assert [s["id"] for s in listed] == ["s-open", "s2", "s1", "s0"]
    assert listed[0]["status"] == "open" and listed[1]["bytes_up"] == 16
    assert (
        json.loads(
            jitctl(
                "sessions", "ls", "--json", "--user", "nobody", "--state-dir", str(state_dir)
            ).stdout
        )
        == []
    )
    # No match: a sentence on stderr, not an empty table's frame on stdout.
    none = jitctl("sessions", "ls", "--user", "nobody", "--state-dir", str(state_dir))
    assert none.returncode == 0 and none.stdout == ""
    assert "No sessions match these filters." in none.stderr
    table = jitctl(
        "sessions", "ls", "--target", "pg-prod", "--since", "1d", "--state-dir", str(state_dir)
    )
    assert table.returncode == 0
    assert (
        "s-open" in table.stdout
        and "alice@example.com" in table.stdout
        and "16 B / 5 B" in table.stdout
    )
    # Piped, the whole table is printed uncut, however wide (its helper sets COLUMNS=80).
    wide = jitctl("sessions", "ls", "--state-dir", str(state_dir)).stdout
    assert "…" not in wide
    for session in listed:
        assert session["id"] in wide and session["target"] in wide


def test_a_session_is_named_by_a_unique_start_of_its_id(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    load_or_create_signing_key(directory)
    with open_store(f"sqlite://{directory / 'audit.db'}") as store:
        for session_id in ("abcd1234", "abcd5678", "ffff0000"):
            store.append_batch(session_records(session_id))
    where = ["--state-dir", str(directory)]
    shown = jitctl("sessions", "show", "ffff", "--json", *where)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["id"] == "ffff0000"
    printed = jitctl("replay", "--print", "ffff", *where)
    assert printed.returncode == 0 and "ffff0000" in printed.stdout, printed.stderr
    exported = jitctl("audit", "export", "--format", "jsonl", "--session", "ffff", *where)
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert lines and {line["session_id"] for line in lines} == {"ffff0000"}
    ambiguous = jitctl("sessions", "show", "abcd", *where)
    assert ambiguous.returncode == 2
    assert "ambiguous: abcd1234, abcd5678" in ambiguous.stderr
    assert "Traceback" not in ambiguous.stderr
    too_short = jitctl("sessions", "show", "ff", *where)  # under 4 characters: not a prefix
    assert too_short.returncode == 2 and "no session 'ff'" in too_short.stderr


def test_sessions_show_tells_who_what_when_and_how_much(state_dir: Path) -> None:
    shown = jitctl("sessions", "show", "s1", "--state-dir", str(state_dir))
    assert shown.returncode == 0
    for text in (
        "alice@example.com",
        "eng, dba",
        "claude",
        "python agent.py --fix",
        "INC-42",
        "corr-1",
        "127.0.0.1:50000",
        "closed (client closed)",
        "tcp.data",
        "pg-prod",
    ):
        assert text in shown.stdout, text
    document = json.loads(
        jitctl("sessions", "show", "s1", "--json", "--state-dir", str(state_dir)).stdout
    )
    assert document["kind_counts"] == {"session.end": 1, "session.start": 1, "tcp.data": 3}
    missing = jitctl("sessions", "show", "nope", "--state-dir", str(state_dir))
    assert missing.returncode == 2 and "no session 'nope'" in missing.stderr
