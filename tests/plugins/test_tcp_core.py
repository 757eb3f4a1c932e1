"""The tcp plugin's sans-I/O core: what it records and forwards, in which order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jitctl.config import Target
from jitctl.plugin import (
    Direction,
    Forward,
    Record,
    SessionContext,
    Shutdown,
    UnknownProtocol,
    load_plugin,
)
from jitctl_tcp import TcpCore

TARGET = Target(name="t", protocol="tcp", address="127.0.0.1:1")


def core(chunk: int = 4) -> TcpCore:
    return TcpCore(SessionContext(session_id="s", target=TARGET, chunk_size=chunk))


def test_the_tcp_plugin_is_found_through_its_entry_point() -> None:
    assert load_plugin("tcp").name == "tcp"


def test_a_plugin_is_looked_up_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker asks at every session start, on its event loop: reading every installed
    distribution's metadata again each time cost ~5 ms per session."""
    import importlib.metadata

    first = load_plugin("tcp")
    calls: list[str] = []
    real = importlib.metadata.entry_points

    def counted(**kwargs: str) -> object:
        calls.append(kwargs.get("group", ""))
        return real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", counted)
    assert load_plugin("tcp") is first
    assert calls == []
    with pytest.raises(UnknownProtocol):  # a name not found is looked up again, not cached
        load_plugin("no-such-protocol")
    with pytest.raises(UnknownProtocol):
        load_plugin("no-such-protocol")
    assert len(calls) == 2


def test_client_bytes_are_recorded_durably_in_bounded_chunks_before_they_are_forwarded() -> None:
    tcp = TcpCore(SessionContext(session_id="s", target=TARGET, chunk_size=256))
    commands = tcp.client_data(b"x" * 600)
    records = [c for c in commands if isinstance(c, Record)]
    assert [r.payload["len"] for r in records] == [256, 256, 88]
    assert [r.payload["offset"] for r in records] == [0, 256, 512]
    assert all(r.durable and r.payload["dir"] == "up" for r in records)
    assert commands[-1] == Forward(Direction.UP, b"x" * 600)  # forwarded after every record


def test_upstream_bytes_are_recorded_without_waiting_for_the_disk() -> None:
    commands = core(256).upstream_data(b"reply")
    assert commands[0] == Record("tcp.data", {"dir": "down", "offset": 0, "len": 5}, b"reply")
    assert commands[1] == Forward(Direction.DOWN, b"reply")


def test_offsets_continue_across_reads_and_end_of_data_is_a_half_close() -> None:
    tcp = core(256)
    tcp.client_data(b"abc")
    second = tcp.client_data(b"de")
    assert second[0].payload["offset"] == 3  # type: ignore[union-attr]
    eof = tcp.client_eof()
    assert eof[0] == Record("tcp.eof", {"dir": "up", "offset": 5})
    assert eof[1] == Shutdown(Direction.UP)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=1000), max_size=10))
def test_recorded_chunks_always_reassemble_the_stream(reads: list[bytes]) -> None:
    tcp = core(256)
    recorded = b""
    forwarded = b""
    for read in reads:
        for command in tcp.client_data(read):
            if isinstance(command, Record):
                assert len(command.data) <= 256
                recorded += command.data
            elif isinstance(command, Forward):
                forwarded += command.data
    assert recorded == forwarded == b"".join(reads)
