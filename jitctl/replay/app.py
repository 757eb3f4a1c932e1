"""`jitctl replay`: the Textual app. Short on purpose: screens do the work.

Opened with a session id it shows that session (q quits); without, the picker (Enter opens a
session, q goes back). Styles live in replay.tcss, shipped as package data.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import TYPE_CHECKING

from textual.app import App

from jitctl.replay.screens.picker import PickerScreen
from jitctl.replay.screens.session import SessionScreen

if TYPE_CHECKING:
    from jitctl.audit.store import AuditStore


class ReplayApp(App[None]):
    CSS_PATH = "replay.tcss"
    TITLE = "jitctl replay"
    ENABLE_COMMAND_PALETTE = False

    def __init__(
        self,
        store: AuditStore,
        trusted: dict[str, bytes] | None,
        *,
        session_id: str | None = None,
        filters: str = "",
        tz: tzinfo | None = None,
    ) -> None:
        super().__init__()
        self.store, self.trusted, self.tz = store, trusted, tz
        self.session_id, self.filters = session_id, filters

    def on_mount(self) -> None:
        if self.session_id is not None:
            self.push_screen(self.session_screen(self.session_id, standalone=True))
        else:
            self.push_screen(PickerScreen(self.store, self.filters, self.tz))

    def session_screen(self, session_id: str, *, standalone: bool = False) -> SessionScreen:
        return SessionScreen(
            self.store, self.trusted, session_id, tz=self.tz, standalone=standalone
        )

    def on_picker_screen_open(self, message: PickerScreen.Open) -> None:
        self.push_screen(self.session_screen(message.session_id))
