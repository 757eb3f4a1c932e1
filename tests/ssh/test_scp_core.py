"""The legacy scp protocol core: each file checked, hashed and recorded; refusals skip it."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jitctl.config import Target
from jitctl.plugin import Direction, Forward, Record, RemoteProtocolError
from jitctl_ssh.policy import SshPolicy
from jitctl_ssh.scp import ScpRelay, parse_scp_command


def relay(argv: list[str], rules: list[dict[str, Any]] = ()) -> ScpRelay:  # type: ignore[assignment]
    target = Target.model_validate(
        {"name": "web", "protocol": "ssh", "address": "h:22", "rules": list(rules)}
    )
    command = parse_scp_command(argv)
    assert command is not None
    return ScpRelay(0, command, SshPolicy.from_target(target), home="/home/u")


def sent(commands: list[Any], direction: Direction) -> bytes:
    return b"".join(c.data for c in commands if isinstance(c, Forward) and c.direction is direction)


def scp_records(commands: list[Any]) -> list[Record]:
    return [c for c in commands if isinstance(c, Record) and c.kind == "ssh.scp"]


def test_the_remote_ends_of_scp_are_recognised() -> None:
    up = parse_scp_command(["scp", "-v", "-t", "--", "/tmp/x"])
    assert up is not None and up.mode == "upload" and up.paths == ("/tmp/x",)
    down = parse_scp_command(["scp", "-r", "-p", "-f", "a", "b"])
    assert down is not None and down.mode == "download" and down.recursive
    assert parse_scp_command(["scp", "a", "host:b"]) is None  # a local scp, not a transfer end
    assert parse_scp_command(["ls", "-t"]) is None


def test_an_upload_is_recorded_with_its_hash_before_the_last_status_byte() -> None:
    r = relay(["scp", "-t", "/srv/app.tgz"])
    assert sent(r.upstream_data(b"\0"), Direction.DOWN) == b"\0"  # sink ready
    out = r.client_data(b"C0644 10 app.tgz\n")
    assert sent(out, Direction.UP) == b"C0644 10 app.tgz\n"
    r.upstream_data(b"\0")
    out = r.client_data(b"0123456789\0")
    record = scp_records(out)[0]
    assert record.durable and record.payload["path"] == "/srv/app.tgz"
    assert record.payload["sha256"] == hashlib.sha256(b"0123456789").hexdigest()
    assert record.payload["size"] == 10
    forwards = [c for c in out if isinstance(c, Forward)]
    assert forwards[0].data == b"0123456789" and forwards[-1].data == b"\0"
    assert out.index(record) < out.index(forwards[-1])


def test_a_refused_upload_is_answered_as_the_sink_would_and_never_reaches_the_host() -> None:
    r = relay(["scp", "-d", "-t", "/etc"], [{"match": {"path": ["/etc/*"]}, "action": "deny"}])
    r.upstream_data(b"\0")
    out = r.client_data(b"C0644 3 passwd\n")
    assert sent(out, Direction.UP) == b""
    answer = sent(out, Direction.DOWN)
    assert answer.startswith(b"\x01jitctl:") and answer.endswith(b"\n")
    assert scp_records(out)[0].payload["decision"] == "deny"
    # the source skips the file and goes on with the next line
    out = r.client_data(b"C0644 2 ok\n")
    assert sent(out, Direction.UP) == b""  # /etc/ok is under /etc too


def test_a_download_tells_the_client_and_the_source_when_a_file_is_refused() -> None:
    r = relay(["scp", "-f", "/etc/shadow"], [{"match": {"path": ["/etc/*"]}, "action": "deny"}])
    r.client_data(b"\0")
    out = r.upstream_data(b"C0600 5 shadow\n")
    assert sent(out, Direction.UP).startswith(b"\x01")  # to the host's scp: skip it
    assert sent(out, Direction.DOWN).startswith(b"\x01")  # to the client: why


def test_directories_nest_paths_for_recursive_transfers() -> None:
    r = relay(["scp", "-r", "-t", "/srv"])
    r.upstream_data(b"\0")
    r.client_data(b"D0755 0 site\n")
    r.upstream_data(b"\0")
    r.client_data(b"C0644 2 a.txt\n")
    r.upstream_data(b"\0")
    out = r.client_data(b"hi\0")
    assert scp_records(out)[0].payload["path"] == "/srv/site/a.txt"
    r.upstream_data(b"\0")
    r.client_data(b"E\n")
    r.upstream_data(b"\0")
    r.client_data(b"C0644 1 b\n")
    r.upstream_data(b"\0")
    assert scp_records(r.client_data(b"x\0"))[0].payload["path"] == "/srv/b"


def test_a_transfer_fed_one_byte_at_a_time_is_relayed_unchanged() -> None:
    r = relay(["scp", "-f", "/srv/f"])
    host = b"T1 0 1 0\nC0644 4 f\ndata\0"
    client = b"\0\0\0\0"
    got_down = b""
    got_up = sent(r.client_data(client[:1]), Direction.UP)
    for i in range(len(host)):
        out = r.upstream_data(host[i : i + 1])
        got_down += sent(out, Direction.DOWN)
        if host[i : i + 1] == b"\n":
            got_up += sent(r.client_data(b"\0"), Direction.UP)
    assert got_down == host
    assert got_up == b"\0\0\0"


def test_garbage_in_place_of_a_control_line_is_a_protocol_error() -> None:
    r = relay(["scp", "-t", "/tmp"])
    with pytest.raises(RemoteProtocolError):
        r.client_data(b"Xwhat\n")
    with pytest.raises(RemoteProtocolError):
        relay(["scp", "-t", "/tmp"]).client_data(b"C0644 -1 f\n")
    with pytest.raises(RemoteProtocolError):
        relay(["scp", "-t", "/tmp"]).client_data(b"C0644 1 ../x\n")


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=40)), max_size=12))
def test_any_bytes_give_commands_or_a_protocol_error(reads: list[tuple[bool, bytes]]) -> None:
    r = relay(["scp", "-r", "-t", "/srv"])
    try:
        for from_client, data in reads:
            (r.client_data if from_client else r.upstream_data)(data)
    except RemoteProtocolError:
        pass
