"""`jitctl request watch`: pending requests as they arrive; a approves, d denies (with a reason).

The source is read every `interval` seconds in a worker thread (a slow broker never freezes
the screen); a decision also runs in a worker and refreshes the list when it returns. Errors
(not an approver, your own request, already decided) show in the status line.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Static

from jitctl.review.screens.reason import ReasonScreen
from jitctl.review.source import Source
from jitctl.review.widgets.detail import Detail
from jitctl.review.widgets.pending import PendingTable


class ReviewApp(App[None]):
    CSS_PATH = "review.tcss"
    TITLE = "jitctl request watch"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "decide('approve')", "Approve"),
        Binding("d", "decide('deny')", "Deny"),
        Binding("r", "refresh", "Refresh"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, source: Source, *, interval: float = 1.0) -> None:
        super().__init__()
        self.source, self.interval = source, interval
        self.requests: dict[str, dict[str, Any]] = {}
        # Held here, not queried: App.query_one searches the *active* screen, which is the
        # reason prompt while one is open, and the list refreshes underneath it.
        self._table = PendingTable(id="pending")
        self._detail = Detail(id="detail")
        self._status = Static("", id="status")

    def compose(self) -> ComposeResult:
        yield Static("jitctl request watch · pending approvals", id="title")
        yield self._table
        yield self._detail
        yield self._status
        yield Footer()

    def on_mount(self) -> None:
        self.action_refresh()
        self.set_interval(self.interval, self.action_refresh)

    @property
    def table(self) -> PendingTable:
        return self._table

    def say(self, text: str, error: bool = False) -> None:
        status = self._status
        status.update(text)
        status.set_class(error, "-error")

    # -- reading ----------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="load")
    def action_refresh(self) -> None:
        try:
            found = self.source.pending()
        except Exception as exc:
            self.call_from_thread(self.say, f"cannot list requests: {exc}", True)
            return
        self.call_from_thread(self.show, found)

    def show(self, found: list[dict[str, Any]]) -> None:
        self.requests = {r["id"]: r for r in found if r.get("status") == "pending"}
        self.table.show(list(self.requests.values()))
        self.on_data_table_row_highlighted()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted | None = None) -> None:
        selected = self.table.selected()
        self._detail.show(self.requests.get(selected or ""))

    # -- deciding ---------------------------------------------------------------------------------

    def action_decide(self, action: str) -> None:
        request_id = self.table.selected()
        if request_id is None:
            self.say("nothing selected")
            return

        def then(reason: str | None) -> None:
            if reason is not None:
                self.send(request_id, action, reason)

        self.push_screen(ReasonScreen(action, request_id, required=action == "deny"), then)

    @work(thread=True, group="decide")
    def send(self, request_id: str, action: str, reason: str) -> None:
        try:
            after = self.source.decide(request_id, action, reason)
        except Exception as exc:
            message = getattr(exc, "message", None) or str(exc)
            self.call_from_thread(self.say, f"{action} {request_id}: {message}", True)
            return
        from jitctl.approvals.text import status_line

        self.call_from_thread(self.say, status_line(after))
        self.call_from_thread(self.action_refresh)
