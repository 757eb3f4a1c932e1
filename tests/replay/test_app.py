"""The session view driven with Textual's pilot: open, step, play, seek, search, export."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jitctl.replay.app import ReplayApp
from jitctl.replay.screens.session import SessionScreen
from jitctl.replay.widgets.detail import DetailView
from jitctl.replay.widgets.terminal_view import TerminalView
from jitctl.replay.widgets.timeline import Timeline

from .conftest import KEY, UTC, Trail, run_app, screen_text, settle


def app_for(trail: Trail, session_id: str | None = None, filters: str = "") -> ReplayApp:
    return ReplayApp(trail.store, KEY.trusted(), session_id=session_id, filters=filters, tz=UTC)


def session(pilot: Any) -> SessionScreen:
    screen = pilot.app.screen
    assert isinstance(screen, SessionScreen)
    return screen


def kind_at(screen: SessionScreen) -> str:
    return screen.reader.record(screen.position).kind


async def until(pilot: Any, condition: Callable[[], bool], timeout: float = 3.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not met in time")


async def typed(pilot: Any, text: str) -> None:
    for char in text:
        await pilot.press(char if char != " " else "space")
    await pilot.press("enter")
    await settle(pilot)


def test_opens_a_session_with_its_chain_verified(trail: Trail) -> None:
    async def scenario(pilot: Any) -> None:
        screen = session(pilot)
        assert screen.position == 0 and kind_at(screen) == "session.start"
        assert screen.chain.status == "verified", screen.chain.text
        assert screen_text(pilot.app).startswith(" chain ✓ · ssh-demo")
        assert screen.query_one(Timeline).count == len(trail.records["terminal"])

    run_app(app_for(trail, "ssh-demo"), scenario)


def test_steps_through_events_and_commands(trail: Trail) -> None:
    async def scenario(pilot: Any) -> None:
        screen = session(pilot)
        await pilot.press("down", "down")
        assert screen.position == 2 and kind_at(screen) == "term.output"
        assert "Welcome to web-1" in screen.model.lines()[0]
        await pilot.press("c")  # the Enter of the first command line
        record = screen.reader.record(screen.position)
        assert record.kind == "term.input" and record.data == b"\r"
        await pilot.press("c", "c")
        lines = "\n".join(screen.model.lines())
        assert "alice@web-1:~$ top" in lines
        await pilot.press("C")
        assert "top" not in "\n".join(screen.model.lines())
        await pilot.press("G")
        assert kind_at(screen) == "session.end"
        await pilot.press("g")
        assert screen.position == 0

    run_app(app_for(trail, "ssh-demo"), scenario)


def test_terminal_pane_follows_resizes(trail: Trail) -> None:
    async def scenario(pilot: Any) -> None:
        screen = session(pilot)
        view = screen.query_one(TerminalView)
        await pilot.press("down")
        assert screen.model.size == (80, 24) and "80x24" in str(view.border_title)
        resize = next(
            i for i, r in enumerate(trail.records["terminal"]) if r.payload.get("cols") == 100
        )
        for _ in range(resize - 1):
            await pilot.press("down")
        assert screen.model.size == (100, 30) and "100x30" in str(view.border_title)
        await pilot.press("up")
        assert screen.model.size == (80, 24)

    run_app(app_for(trail, "ssh-demo"), scenario)


def test_plays_at_a_speed_and_pauses(trail: Trail) -> None:
    """Space plays and pauses; `+` and `-` set the speed, and the bar shows it. Played at 2x,
    the sample session lasts ~7 s, so a busy machine cannot reach its end before the checks
    (at 16x it played whole in under a second, and CI once stalled that long between the
    key and the check). What the speed does to the clock is Player's own test (test_reader)."""

    async def scenario(pilot: Any) -> None:
        screen = session(pilot)
        await pilot.press("plus")
        assert screen.player.speed == 2
        await pilot.press("space")
        assert screen.player.playing
        await until(pilot, lambda: screen.position > 10)
        await pilot.press("space")
        await until(pilot, lambda: not screen.player.playing)  # the ticks keep the app busy
        moved = screen.position
        assert moved < screen.reader.count - 1  # paused, not played to the end
        await pilot.pause(0.2)
        assert screen.position == moved
        for _ in range(4):
            await pilot.press("plus")
        assert screen.player.speed == 16
        await pilot.press("minus")
        assert screen.player.speed == 8
        bar = str(screen.query_one("#player-bar").render())
        assert "8x" in bar and f"#{moved + 1}/" in bar

    run_app(app_for(trail, "ssh-demo"), scenario)


def test_seeks_by_time_and_by_event(trail: Trail) -> None:
    records = trail.records["terminal"]
    start = records[0].time_us

    async def scenario(pilot: Any) -> None:
        screen = session(pilot)
        await pilot.press("t")
        await typed(pilot, "+5")
        at = screen.reader.record(screen.position)
        assert at.time_us - start <= 5_000_000
        assert screen.reader.record(screen.position + 1).time_us - start > 5_000_000
        await pilot.press("t")
        await typed(pilot, "00:00:12.1")  # a wall time (UTC here) on the session's day
        assert screen.reader.record(screen.position).kind == "approval.granted"
        await pilot.press("t")
        await typed(pilot, "#10")
        assert screen.position == 9
        assert "#10/" in str(screen.query_one("#player-bar").render())

    run_app(app_for(trail, "ssh-demo"), scenario)


def test_search_jumps_to_each_match(trail: Trail) -> None:
    async def scenario(pilot: Any) -> None:
        screen = session(pilot)
        await pilot.press("slash")
        await typed(pilot, "alice@web-1")
        hits = [m.position for m in screen.matches]
        assert len(hits) >= 4
        assert screen.position == hits[0]
        await pilot.press("n")
        assert screen.position == hits[1]
        await pilot.press("N")
        assert screen.position == hits[0]
        await pilot.press("N")  # wraps to the last
        assert screen.position == hits[-1]
        assert f"/alice@web-1: {len(hits)}/{len(hits)}" in str(
            screen.query_one("#player-bar").render()
        )
        await pilot.press("slash")
        await typed(pilot, "systemctl restart")  # typed key by key: found as a command line
        record = screen.reader.record(screen.position)
        assert record.kind in ("term.input", "approval.granted")
        assert any(screen.reader.record(m.position).kind == "term.input" for m in screen.matches)

    run_app(app_for(trail, "ssh-demo"), scenario)


def test_postgres_detail_shows_sql_decision_and_masked_rows(trail: Trail) -> None:
    async def scenario(pilot: Any) -> None:
        screen = session(pilot)
        await pilot.press("down", "down")
        text = screen_text(pilot.app)
        assert "masked" in text and "email=3" in text
        assert "***@***" in text  # the masked rows, as recorded
        await pilot.press("c")
        text = screen_text(pilot.app)
        assert "deny by no-ddl" in text and "DROP TABLE customers" in text
        detail = screen.query_one(DetailView)
        assert detail.border_title == "detail"

    run_app(app_for(trail, "pg-demo"), scenario, size=(100, 40))


def test_exports_asciicast_and_jsonl(trail: Trail, tmp_path: Path) -> None:
    cast, jsonl = tmp_path / "out.cast", tmp_path / "out.jsonl"

    async def scenario(pilot: Any) -> None:
        for path in (cast, jsonl):
            await pilot.press("e")
            field = pilot.app.screen.query_one("#prompt-input")
            field.value = str(path)
            await pilot.press("enter")
            await settle(pilot)
            assert path.exists()

    run_app(app_for(trail, "ssh-demo"), scenario)
    header = json.loads(cast.read_text().splitlines()[0])
    assert header["version"] == 2 and (header["width"], header["height"]) == (80, 24)
    lines = jsonl.read_text().splitlines()
    assert len(lines) == len(trail.records["terminal"])
    assert json.loads(lines[0])["kind"] == "session.start"


def test_picker_filters_and_opens_a_session(trail: Trail) -> None:
    async def scenario(pilot: Any) -> None:
        from textual.widgets import DataTable

        table = pilot.app.screen.query_one(DataTable)
        assert table.row_count == 3
        await pilot.press("slash")
        field = pilot.app.screen.query_one("#filter")
        field.value = "has:masks"
        await pilot.press("enter")
        await settle(pilot)
        assert table.row_count == 1
        await pilot.press("enter")
        await settle(pilot)
        screen = session(pilot)
        assert screen.reader.session_id == "pg-demo"
        await pilot.press("q")
        await settle(pilot)
        assert not isinstance(pilot.app.screen, SessionScreen)

    run_app(app_for(trail), scenario)


def test_tcp_session_shows_the_byte_stream_as_text_and_hex(trail: Trail) -> None:
    async def scenario(pilot: Any) -> None:
        await pilot.press("down", "down")
        assert "+PONG" in screen_text(pilot.app)
        await pilot.press("x")
        text = screen_text(pilot.app)
        assert "2b 50 4f 4e 47" in text  # "+PONG" in hex

    run_app(app_for(trail, "tcp-demo"), scenario)


def test_keys_panel_and_view_switch_at_80x24(trail: Trail) -> None:
    async def scenario(pilot: Any) -> None:
        screen = session(pilot)
        assert screen.has_class("-view-pane")
        await pilot.press("v")
        assert screen.has_class("-view-detail")
        assert screen.query_one(DetailView).display
        await pilot.press("question_mark")
        await settle(pilot)
        assert "Next cmd" in screen_text(pilot.app) or "next" in screen_text(pilot.app).lower()
        assert pilot.app.screen.query("HelpPanel")

    run_app(app_for(trail, "ssh-demo"), scenario)
