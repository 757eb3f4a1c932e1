"""Snapshots of the picker and the session view at 80x24 (and one wide), fixed times and keys.

Each snapshot is the SVG screenshot Textual exports (`app.export_screenshot()`) plus the same
screen as plain text. The text is compared always; the SVG, which also pins colours and styles,
is compared when the installed Textual is the one that wrote it (its rendering details change
between releases). `JITCTL_UPDATE_SNAPSHOTS=1 pytest tests/replay/test_snapshots.py` rewrites
them; look at the SVGs before committing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import textual

from jitctl.replay.app import ReplayApp

from .conftest import KEY, UTC, Trail, run_app, screen_text, settle

HERE = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("JITCTL_UPDATE_SNAPSHOTS") == "1"
VERSION_FILE = HERE / "textual-version.txt"


def snapshot(
    trail: Trail,
    name: str,
    session_id: str | None,
    keys: Sequence[str],
    size: tuple[int, int] = (80, 24),
) -> None:
    shot: dict[str, str] = {}

    async def scenario(pilot: Any) -> None:
        for key in keys:
            await pilot.press(key)
            await settle(pilot)
        await settle(pilot)
        shot["svg"] = pilot.app.export_screenshot(title=name)
        shot["text"] = screen_text(pilot.app)

    app = ReplayApp(trail.store, KEY.trusted(), session_id=session_id, tz=UTC)
    run_app(app, scenario, size=size)
    svg_path, text_path = HERE / f"{name}.svg", HERE / f"{name}.txt"
    if UPDATE:
        HERE.mkdir(exist_ok=True)
        svg_path.write_text(shot["svg"])
        text_path.write_text(shot["text"])
        VERSION_FILE.write_text(textual.__version__ + "\n")
        return
    if not text_path.exists():
        pytest.fail(f"no snapshot {text_path.name}: run with JITCTL_UPDATE_SNAPSHOTS=1")
    assert shot["text"] == text_path.read_text(), f"{name}: the screen differs from {text_path}"
    if VERSION_FILE.read_text().strip() == textual.__version__:
        assert shot["svg"] == svg_path.read_text(), f"{name}: colours or styles differ"


def test_picker(trail: Trail) -> None:
    snapshot(trail, "picker", None, [])


def test_postgres_session_on_a_blocked_statement(trail: Trail) -> None:
    snapshot(trail, "postgres-blocked", "pg-demo", ["c", "c"])


def test_postgres_session_on_a_masked_result(trail: Trail) -> None:
    snapshot(trail, "postgres-masked", "pg-demo", ["down", "down"])


def test_terminal_session_in_top(trail: Trail) -> None:
    snapshot(trail, "terminal-top", "ssh-demo", ["c", "c", "c", "down", "down", "down"])


def test_terminal_session_wide_with_detail(trail: Trail) -> None:
    snapshot(trail, "terminal-wide", "ssh-demo", ["c", "c"], size=(170, 40))
