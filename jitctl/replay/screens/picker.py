"""The session picker: a filter line over a table of sessions, newest first.

The list is read in a worker thread (`catalog.find_sessions`); Enter on a row opens it.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from jitctl.replay.catalog import Filter, Row, find_sessions, parse_filter
from jitctl.replay.timefmt import wall

if TYPE_CHECKING:
    from jitctl.audit.store import AuditStore

FILTER_HINT = "user:alice target:pg-prod agent:claude since:1h until:… has:blocks,masks words"


def _when(text: str) -> int:
    from jitctl.cli._store import parse_when
    from jitctl.errors import UsageError

    try:
        return parse_when(text)
    except UsageError as exc:
        raise ValueError(exc.message) from None


class PickerScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash,f", "focus_filter", "Filter", key_display="/"),
        Binding("r", "reload", "Reload"),
        Binding("q", "app.quit", "Quit"),
        Binding("escape", "focus_table", "Table", show=False),
        Binding("question_mark", "app.show_help_panel", "Keys", key_display="?", show=False),
    ]

    class Open(Message):
        def __init__(self, session_id: str) -> None:
            super().__init__()
            self.session_id = session_id

    def __init__(self, store: AuditStore, filters: str = "", tz: tzinfo | None = None) -> None:
        super().__init__()
        self.store, self.filters, self.tz = store, filters, tz
        self.rows: list[Row] = []

    def compose(self) -> ComposeResult:
        yield Static("jitctl replay · pick a session (Enter opens it)", id="picker-title")
        yield Input(self.filters, placeholder=FILTER_HINT, id="filter")
        yield DataTable(id="sessions", cursor_type="row", zebra_stripes=True)
        yield Static("", id="picker-status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, key in (
            ("id", "id"),
            ("started", "start"),
            ("user", "user"),
            ("target", "target"),
            ("dur", "dur"),
            ("status", "status"),
            ("BAM", "flags"),
            ("records", "records"),
        ):
            table.add_column(label, key=key)
        table.focus()
        self.load(self.filters)

    def load(self, text: str) -> None:
        try:
            wanted = parse_filter(text, _when)
        except ValueError as exc:
            self.query_one("#picker-status", Static).update(f"filter: {exc}")
            return
        self.query_one("#picker-status", Static).update("reading sessions…")
        self._load(wanted)

    @work(thread=True, exclusive=True, group="sessions")
    def _load(self, wanted: Filter) -> None:
        rows = find_sessions(self.store, wanted)
        self.app.call_from_thread(self._show, rows)

    def _show(self, rows: list[Row]) -> None:
        from jitctl.durations import format_duration

        self.rows = rows
        table = self.query_one(DataTable)
        table.clear()
        for row in rows:
            s = row.summary
            user = row.who + (f" ({row.agent})" if row.agent else "")
            duration = "open" if s.duration_s is None else format_duration(s.duration_s)
            table.add_row(
                s.id[:14],
                wall(s.start_us, self.tz, date=True)[5:16],
                user[:22],
                s.target[:14],
                duration,
                s.status,
                row.flag_text(),
                str(s.record_count),
                key=s.id,
            )
        flags = "B: blocks · A: approvals · M: masks"
        self.query_one("#picker-status", Static).update(f"{len(rows)} sessions · {flags}")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.filters = event.value
        self.load(event.value)
        self.query_one(DataTable).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.post_message(self.Open(str(event.row_key.value)))

    def action_focus_filter(self) -> None:
        self.query_one(Input).focus()

    def action_focus_table(self) -> None:
        self.query_one(DataTable).focus()

    def action_reload(self) -> None:
        self.load(self.filters)
