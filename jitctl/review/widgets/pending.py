"""The table of pending requests, one row per request, keyed by id; the cursor stays on the
same request across refreshes (it moves only when that request is gone)."""

from __future__ import annotations

from typing import Any

from textual.widgets import DataTable

COLUMNS = ("id", "target", "requester", "agent", "what", "ok", "waits until")


def _row(request: dict[str, Any]) -> tuple[str, ...]:
    from jitctl.approvals.text import clock, describe

    requester = request.get("requester") or {}
    return (
        request["id"],
        request["target"],
        str(requester.get("email") or requester.get("subject") or ""),
        str(requester.get("agent") or ""),
        describe(request),
        f"{request.get('approvals', 0)}/{request.get('min_approvals', 1)}",
        clock(request.get("deadline")),
    )


class PendingTable(DataTable[str]):
    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for column in COLUMNS:
            self.add_column(column, key=column)

    @property
    def ids(self) -> list[str]:
        return [str(key.value) for key in self.rows]

    def selected(self) -> str | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return str(key.value)

    def show(self, requests: list[dict[str, Any]]) -> None:
        keep = self.selected()
        wanted = {r["id"]: r for r in requests}
        for rid in self.ids:
            if rid not in wanted:
                self.remove_row(rid)
        for rid, request in wanted.items():
            cells = _row(request)
            if rid in self.ids:
                for column, value in zip(COLUMNS, cells, strict=True):
                    self.update_cell(rid, column, value)
            else:
                self.add_row(*cells, key=rid)
        if keep is not None and keep in wanted:
            self.move_cursor(row=self.get_row_index(keep))
