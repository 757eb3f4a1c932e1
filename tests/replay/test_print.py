"""`jitctl replay --print` / `--json`: transcripts for pipes and agents, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import Trail


def jitctl(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"TZ": "UTC", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "jitctl", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_print_postgres_session_reads_as_a_transcript(trail: Trail) -> None:
    result = jitctl("replay", "--print", "pg-demo", "--state-dir", str(trail.state_dir))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("session pg-demo: postgres to pg-prod by ci@example.com (agent claude)")
    assert "01:00:00.120   +00:00.120  SQL" in out
    assert "│  WHERE created_at > now() - interval '1 day'" in out
    assert "RES    SELECT 3 · 3 rows · 1.9 ms · masked email=3" in out
    assert "BLOCK  deny by no-ddl (DDL is not allowed for agents): DROP TABLE customers" in out
    assert "ERROR 42P01" in out


def test_print_terminal_session_gathers_commands_and_output(trail: Trail) -> None:
    result = jitctl("replay", "--print", "ssh-demo", "--state-dir", str(trail.state_dir))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    commands = [line.split("CMD", 1)[1].strip() for line in lines if "  CMD  " in line]
    assert commands == ["ls --color", "cat notes.txt", "top", "sudo systemctl restart app", "exit"]
    assert any(line.endswith("│ app  logs  notes.txt  run.sh") for line in lines)
    assert not any("\x1b" in line for line in lines)  # escape sequences are gone
    assert any("APPR" in line and "approver=bob@example.com" in line for line in lines)


def test_json_is_one_document_with_every_record_and_the_chain_state(trail: Trail) -> None:
    result = jitctl("replay", "--json", "ssh-demo", "--state-dir", str(trail.state_dir))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    events = document["events"]
    assert len(events) == len(trail.records["terminal"])
    assert [e["seq"] for e in events] == [r.seq for r in trail.records["terminal"]]
    assert document["session"]["id"] == "ssh-demo"
    assert document["chain"]["status"] == "verified"
    output = next(e for e in events if e["kind"] == "term.output")
    assert output["data"].startswith("Welcome to web-1")


def test_binary_data_is_base64_in_json(trail: Trail) -> None:
    result = jitctl("replay", "--json", "tcp-demo", "--state-dir", str(trail.state_dir))
    events = json.loads(result.stdout)["events"]
    assert any("data_base64" in e for e in events)
    assert any(e.get("data") == "+PONG\r\n" for e in events)


def test_usage_errors(trail: Trail) -> None:
    state = ["--state-dir", str(trail.state_dir)]
    result = jitctl("replay", "--print", *state)
    assert result.returncode == 2 and "needs a session id" in result.stderr
    result = jitctl("replay", "--print", "nope", *state)
    assert result.returncode == 2 and "no session 'nope'" in result.stderr
    result = jitctl("replay", "ssh-demo", *state)  # no terminal here
    assert result.returncode == 2 and "--print" in result.stderr
    result = jitctl("replay", "--has", "bogus", *state)
    assert result.returncode == 2


def test_help_does_not_import_textual() -> None:
    code = "import sys, jitctl.cli; print('textual' in sys.modules, 'pyte' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False False"
