"""The plain-Python side: the lazy reader, the terminal model, playback, search, the picker's
filters and the chain verdict — synchronous, no Textual."""

from __future__ import annotations

import pyte
import pytest

from jitctl.audit.records import NewRecord
from jitctl.audit.store import AuditStore
from jitctl.replay import reader as reader_module
from jitctl.replay import terminal as terminal_module
from jitctl.replay.catalog import Filter, find_sessions, parse_filter
from jitctl.replay.chain import verify_session
from jitctl.replay.player import IDLE_LIMIT_S, Player
from jitctl.replay.reader import SessionNotFound, SessionReader
from jitctl.replay.samples import T0, big_terminal_session
from jitctl.replay.search import search
from jitctl.replay.terminal import Keyframes, TerminalModel, build_keyframes
from jitctl.replay.timefmt import offset, parse_seek

from .conftest import KEY, UTC, Trail


def big(store: AuditStore, records: int) -> list[NewRecord]:
    out: list[NewRecord] = []
    for batch in big_terminal_session(records):
        store.append_batch(batch)
        out += batch
    return out


def test_reader_indexes_in_chunks_and_reads_pages(
    trail: Trail, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader_module, "CHUNK", 7)
    reader = SessionReader(trail.store, "ssh-demo", page=10, cache_pages=2, up_front=5)
    assert reader.count == 5 and not reader.index.complete
    reader.build()
    expected = trail.records["terminal"]
    assert reader.count == len(expected) and reader.index.complete
    assert [r.seq for _, r in reader.records(0, reader.count)] == [r.seq for r in expected]
    assert reader.record(37) == expected[37]
    assert len(reader._cache) <= 2  # never more than the LRU holds
    assert reader.position_of_seq(expected[12].seq) == 12
    assert reader.position_at(expected[40].time_us) == 40
    assert reader.position_at(0) == 0


def test_reader_follows_a_live_session(trail: Trail) -> None:
    records = [NewRecord("session.start", "live", "db", None, {"protocol": "tcp"}, b"", T0)]
    trail.store.append_batch(records)
    reader = SessionReader(trail.store, "live")
    reader.build()
    assert reader.count == 1 and reader.summary is not None and reader.summary.status == "open"
    trail.store.append_batch(
        [NewRecord("tcp.data", "live", "db", None, {"dir": "up", "len": 1}, b"x", T0 + 5)]
    )
    assert reader.refresh() == 1
    assert reader.record(1).kind == "tcp.data"


def test_reader_refuses_unknown_sessions_and_reads_denials(trail: Trail) -> None:
    with pytest.raises(SessionNotFound):
        SessionReader(trail.store, "nope")
    [denied] = trail.store.append_batch(
        [NewRecord("session.denied", "", "db", None, {"code": "denied", "error": "no"}, b"", T0)]
    )
    reader = SessionReader(trail.store, f"denied-{denied.seq}")
    assert reader.count == 1 and reader.record(0) == denied


def test_next_command_finds_statements_and_typed_lines(trail: Trail) -> None:
    reader = SessionReader(trail.store, "pg-demo")
    kinds = []
    position: int | None = 0
    while (position := reader.next_command(position)) is not None:
        kinds.append(reader.record(position).kind)
    assert kinds == ["pg.statement", "pg.blocked", "pg.statement", "pg.statement"]
    ssh = SessionReader(trail.store, "ssh-demo")
    first = ssh.next_command(0)
    assert first is not None and ssh.record(first).data == b"\r"
    assert ssh.next_command(first, -1) is None


def test_next_command_stops_once_per_http_exchange(trail: Trail) -> None:
    """write_ahead="changes" records a GET only as its response; a DELETE has both records."""

    def http(kind: str, method: str, at: int) -> NewRecord:
        return NewRecord(kind, "http-wa", "api", None, {"method": method}, b"", T0 + at)

    trail.store.append_batch(
        [
            NewRecord("session.start", "http-wa", "api", None, {"protocol": "http"}, b"", T0),
            http("http.response", "GET", 1),
            http("http.request", "DELETE", 2),
            http("http.response", "DELETE", 3),
            http("http.response", "GET", 4),
            http("http.response", "GET", 5),
        ]
    )
    reader = SessionReader(trail.store, "http-wa")
    stops, position = [], 0
    while (position := reader.next_command(position)) is not None:
        stops.append(position)
    assert stops == [1, 2, 4, 5]
    assert reader.next_command(5, -1) == 4 and reader.next_command(2, -1) == 1


def straight_replay(trail: Trail, upto: int) -> list[str]:
    records = trail.records["terminal"]
    screen = pyte.Screen(80, 24)
    stream = pyte.ByteStream(screen)
    for record in records[: upto + 1]:
        if record.kind == "term.resize":
            screen.resize(record.payload["rows"], record.payload["cols"])
        elif record.kind == "term.output":
            stream.feed(record.data)
    return list(screen.display)


def test_terminal_model_matches_a_straight_replay_forwards_and_backwards(trail: Trail) -> None:
    model = TerminalModel(SessionReader(trail.store, "ssh-demo"))
    count = len(trail.records["terminal"])
    for position in [*range(count), *range(count - 1, -1, -9), 60, 3, count - 1]:
        model.seek(position)
        assert model.exact
        assert model.lines() == straight_replay(trail, position), position


def test_long_terminal_seeks_are_approximate_until_keyframes_cover_them(
    trail: Trail, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(terminal_module, "KEYFRAME_BYTES", 2048)
    monkeypatch.setattr(terminal_module, "BUDGET", 4096)
    monkeypatch.setattr(terminal_module, "WINDOW", 3000)
    big(trail.store, 3000)
    reader = SessionReader(trail.store, "ssh-big")
    reader.build()
    end = reader.count - 2
    model = TerminalModel(reader, Keyframes.empty())
    model.seek(end)
    assert not model.exact  # rebuilt from the last WINDOW bytes
    rough = model.lines()
    build_keyframes(reader, model.keyframes, pause=0)
    assert model.refine() and model.exact
    exact = model.lines()
    # Scrolling output: the rebuilt screen already showed the same last lines.
    assert rough[-5:] == exact[-5:]
    reference = TerminalModel(reader.fork(), Keyframes.empty())
    for step in range(0, end, 40):
        reference.seek(step)
    reference.seek(end)
    assert reference.exact and reference.lines() == exact
    model.seek(end // 2)  # backwards: from a keyframe, exactly
    reference2 = TerminalModel(reader.fork(), Keyframes.empty())
    for step in range(0, end // 2 + 1, 40):
        reference2.seek(step)
    reference2.seek(end // 2)
    assert model.exact and model.lines() == reference2.lines()


def test_player_speeds_and_idle_cap() -> None:
    times = [0, 1_000_000, 2_000_000, 3_600_000_000, 3_605_000_000]
    player = Player(times)
    player.play()
    assert player.advance(0.5, len(times)) == 0
    assert player.advance(0.6, len(times)) == 1
    player.speed = 16
    assert player.advance(0.1, len(times)) == 2
    # An hour idle plays as IDLE_LIMIT_S.
    assert player.advance(IDLE_LIMIT_S / 16 + 0.01, len(times)) == 3
    assert player.advance(1, len(times)) == 4 and not player.playing
    assert [Player([0], speed=s).faster() for s in (0.5, 16)] == [1, 16]
    assert [Player([0], speed=s).slower() for s in (0.5, 16)] == [0.5, 8]


def test_search_finds_output_split_across_records_and_typed_lines(trail: Trail) -> None:
    reader = SessionReader(trail.store, "ssh-demo")
    hits = list(search(reader.stream(), "NOTES.TXT"))
    kinds = [reader.record(h.position).kind for h in hits]
    assert "term.input" in kinds  # "cat notes.txt" typed key by key
    assert "term.output" in kinds  # echoed one key per record, and listed by ls
    pg = SessionReader(trail.store, "pg-demo")
    assert [pg.record(h.position).kind for h in search(pg.stream(), "no-ddl")] == ["pg.blocked"]
    assert "***@***" in next(h.snippet for h in search(pg.stream(), "***@***"))


def test_seek_input_and_offsets() -> None:
    start = T0
    assert parse_seek("+5", start) == start + 5_000_000
    assert parse_seek("1:23.5", start) == start + 83_500_000
    assert parse_seek("+90s", start) == start + 90_000_000
    assert parse_seek("00:00:12", start, UTC) == start + 12_000_000
    assert parse_seek("2026-01-01T00:01:00+00:00", start) == start + 60_000_000
    with pytest.raises(ValueError):
        parse_seek("soon", start)
    assert offset(83_500_000) == "+01:23.500" and offset(3_723_000_000) == "+1:02:03.000"


def test_picker_filters(trail: Trail) -> None:
    def when(text: str) -> int:
        return int(text)

    assert parse_filter("user:alice has:blocks,masks web", when) == Filter(
        user="alice", has={"blocks", "masks"}, words=["web"]
    )
    with pytest.raises(ValueError):
        parse_filter("has:everything", when)
    ids = [row.summary.id for row in find_sessions(trail.store, Filter())]
    assert ids == ["tcp-demo", "pg-demo", "ssh-demo"]
    flags = {r.summary.id: r.flag_text() for r in find_sessions(trail.store, Filter())}
    assert flags == {"tcp-demo": "···", "pg-demo": "B·M", "ssh-demo": "·A·"}
    assert [r.summary.id for r in find_sessions(trail.store, Filter(agent="claude"))] == ["pg-demo"]
    assert [r.summary.id for r in find_sessions(trail.store, Filter(words=["redis"]))] == [
        "tcp-demo"
    ]
    until = Filter(until_us=T0 + 1)
    assert [r.summary.id for r in find_sessions(trail.store, until)] == ["ssh-demo"]


def test_chain_verdict_for_a_session(trail: Trail) -> None:
    records = trail.records["postgres"]
    state = verify_session(trail.store, KEY.trusted(), records[0].seq, records[-1].seq)
    assert state.status == "verified" and state.signed_seq == records[-1].seq + 1
    assert verify_session(trail.store, None, 1, 2).status == "unknown"
    import sqlite3

    db = sqlite3.connect(str(trail.state_dir / "audit.db"))
    db.execute("UPDATE audit_records SET payload = '{}' WHERE seq = ?", (records[3].seq,))
    db.commit()
    db.close()
    broken = verify_session(trail.store, KEY.trusted(), records[0].seq, records[-1].seq)
    assert broken.status == "broken" and broken.first_break is not None
    assert broken.first_break.seq == records[3].seq and "BROKEN" in broken.badge
