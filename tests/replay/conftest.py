"""Fixtures for the replay tests: a broker state dir holding the sample sessions (a terminal,
a Postgres and a tcp session, fixed times), each sealed by a signed checkpoint, and helpers to
drive the app headless."""

from __future__ import annotations

import asyncio
import datetime
import io
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

pytest.importorskip("textual", reason="the replay TUI needs textual (pyproject dependency)")
pytest.importorskip("pyte", reason="the terminal pane needs pyte (pyproject dependency)")

from jitctl.audit.keys import SigningKey
from jitctl.audit.records import Record
from jitctl.audit.store import AuditStore, open_store
from jitctl.replay.samples import postgres_session, tcp_session, terminal_session

UTC = datetime.UTC
# One key for every test: signatures are deterministic (Ed25519), so snapshots are too.
KEY = SigningKey.from_private(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))


@dataclass
class Trail:
    state_dir: Path
    store: AuditStore
    records: dict[str, list[Record]]

    @property
    def url(self) -> str:
        return f"sqlite://{self.state_dir / 'audit.db'}"


def fill(store: AuditStore) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for name, records in (
        ("terminal", terminal_session()),
        ("postgres", postgres_session()),
        ("tcp", tcp_session()),
    ):
        out[name] = store.append_batch(records)
        store.append_prepared([], KEY)  # a checkpoint at each session end, as the gateway does
    return out


@pytest.fixture
def trail(tmp_path: Path) -> Iterator[Trail]:
    state = tmp_path / "state"
    state.mkdir()
    (state / "audit-signing.pub").write_bytes(KEY.public_pem())
    store = open_store(f"sqlite://{state / 'audit.db'}")
    records = fill(store)
    yield Trail(state, store, records)
    store.close()


def screen_text(app: Any) -> str:
    """The app's screen as plain text, as an SVG screenshot would draw it."""
    from rich.console import Console

    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
        record=True,
        legacy_windows=False,
        safe_box=False,
    )
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    console.print(update)
    return console.export_text()


def run_app(
    app: Any,
    scenario: Callable[[Any], Awaitable[None]],
    size: tuple[int, int] = (80, 24),
) -> None:
    """Run `scenario(pilot)` against `app` headless, at `size`."""

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            await scenario(pilot)

    asyncio.run(main())


async def settle(pilot: Any) -> None:
    """Let workers finish and the screen catch up."""
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
