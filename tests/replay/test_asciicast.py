"""`jitctl audit export --format asciicast`, read back by the asciinema package's own parser:
its frames match what the terminal pane shows at the same records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyte
import pytest

from jitctl.replay.app import ReplayApp
from jitctl.replay.reader import SessionReader
from jitctl.replay.screens.session import SessionScreen
from jitctl.replay.terminal import TerminalModel
from jitctl.replay.widgets.terminal_view import TerminalView

from .conftest import KEY, UTC, Trail, run_app

asciicast = pytest.importorskip("asciinema.asciicast", reason="asciinema (test dependency)")


def jitctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jitctl", *args], capture_output=True, text=True, timeout=60
    )


def export(trail: Trail, tmp_path: Path) -> Path:
    out = tmp_path / "session.cast"
    args = ["--session", "ssh-demo", "--state-dir", str(trail.state_dir), "--output", str(out)]
    result = jitctl("audit", "export", "--format", "asciicast", *args)
    assert result.returncode == 0, result.stderr
    assert "asciicast events" in result.stderr
    return out


def frames(path: Path) -> tuple[dict[str, Any], list[tuple[float, list[str]]]]:
    """Play the cast with pyte the way a player would: the screen after every "o" event."""
    with asciicast.open_from_url(str(path)) as cast:
        header = cast.v2_header
        screen = pyte.Screen(header["width"], header["height"])
        stream = pyte.Stream(screen)
        shown: list[tuple[float, list[str]]] = []
        for at, code, data in cast.events():
            if code == "r":
                cols, rows = (int(n) for n in data.split("x"))
                screen.resize(rows, cols)
            elif code == "o":
                stream.feed(data)
                shown.append((at, list(screen.display)))
    return header, shown


def test_header_and_events_parse_with_asciinema(trail: Trail, tmp_path: Path) -> None:
    path = export(trail, tmp_path)
    with asciicast.open_from_url(str(path)) as cast:
        header = cast.v2_header
        events = list(cast.events())
    assert header["version"] == 2
    assert (header["width"], header["height"]) == (80, 24)
    assert header["env"] == {"TERM": "xterm-256color"}
    assert header["jitctl"]["session_id"] == "ssh-demo"
    assert header["timestamp"] == trail.records["terminal"][0].time_us // 1_000_000
    codes = {code for _, code, _ in events}
    assert codes == {"o", "i", "r", "m"}
    assert [data for _, code, data in events if code == "r"] == ["100x30"]
    times = [at for at, _, _ in events]
    assert times == sorted(times)
    markers = [data for _, code, data in events if code == "m"]
    assert any("approval.granted by bob@example.com" in m for m in markers)
    assert markers[-1].startswith("session end")
    typed = "".join(data for _, code, data in events if code == "i")
    assert "sudo systemctl restart app\r" in typed


def test_frames_match_the_terminal_pane(trail: Trail, tmp_path: Path) -> None:
    path = export(trail, tmp_path)
    _, shown = frames(path)
    outputs = [i for i, r in enumerate(trail.records["terminal"]) if r.kind == "term.output"]
    assert len(shown) == len(outputs)
    start = trail.records["terminal"][0].time_us

    # The model the pane draws from, record by record ...
    model = TerminalModel(SessionReader(trail.store, "ssh-demo"))
    for (at, lines), position in zip(shown, outputs, strict=True):
        model.seek(position)
        record = trail.records["terminal"][position]
        assert at == pytest.approx((record.time_us - start) / 1e6)
        assert model.lines() == lines, f"frame at {at}s differs"

    # ... and the pane itself, drawn by Textual at a few of those records.
    checked = [*outputs[::7], outputs[-1]]

    async def scenario(pilot: Any) -> None:
        screen = pilot.app.screen
        assert isinstance(screen, SessionScreen)
        view = screen.query_one(TerminalView)
        for position in checked:
            screen.go(position)
            await pilot.pause()
            cols, rows = screen.model.size
            drawn = [
                "".join(seg.text for seg in view.render_line(y).crop(0, cols)) for y in range(rows)
            ]
            expected = shown[outputs.index(position)][1]
            visible = min(rows, view.scrollable_content_region.height)
            assert drawn[:visible] == expected[:visible]

    app = ReplayApp(trail.store, KEY.trusted(), session_id="ssh-demo", tz=UTC)
    run_app(app, scenario, size=(120, 50))


def test_asciicast_needs_one_session_with_terminal_records(trail: Trail) -> None:
    base = ["audit", "export", "--format", "asciicast", "--state-dir", str(trail.state_dir)]
    result = jitctl(*base)
    assert result.returncode == 2 and "--session" in result.stderr
    result = jitctl(*base, "--session", "pg-demo")
    assert result.returncode == 2 and "--format jsonl" in result.stderr
    result = jitctl(*base, "--session", "nope")
    assert result.returncode == 2 and "no session 'nope'" in result.stderr


def test_asciicast_to_stdout(trail: Trail) -> None:
    args = ["--session", "ssh-demo", "--state-dir", str(trail.state_dir)]
    result = jitctl("audit", "export", "--format", "asciicast", *args)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert json.loads(lines[0])["version"] == 2
    assert all(isinstance(json.loads(line), list) for line in lines[1:])
