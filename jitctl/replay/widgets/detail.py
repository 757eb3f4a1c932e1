"""The detail pane: everything recorded about the record under the cursor.

SQL is syntax-highlighted, a recorded result sample is a table (masked values as recorded),
decisions name their rule, approvals their approver; unknown kinds show their payload.
"""

from __future__ import annotations

from datetime import tzinfo

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from jitctl.audit.records import Record
from jitctl.replay.kinds import details
from jitctl.replay.timefmt import offset, wall


def render_details(record: Record, start_us: int, tz: tzinfo | None, hex_view: bool) -> Group:
    info = details(record)
    parts: list[RenderableType] = [
        Text.assemble(
            (info.title, "bold"),
            f"  {wall(record.time_us, tz, date=True)}  {offset(record.time_us - start_us)}",
        )
    ]
    if info.fields:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        for name, value in info.fields:
            style = "bold red" if name == "decision" else ("magenta" if name == "masked" else "")
            grid.add_row(name, Text(value, style=style))
        parts.append(grid)
    if info.sql is not None:
        parts.append(Syntax(info.sql, "sql", word_wrap=True, theme="ansi_dark"))
    if info.columns or info.rows:
        table = Table(*info.columns, show_edge=False, header_style="bold")
        for row in info.rows:
            table.add_row(*(Text("NULL", "dim") if v is None else Text(str(v)) for v in row))
        parts.append(table)
    if hex_view and info.hexdump:
        parts.append(Text(info.hexdump))
    elif info.text is not None:
        parts.append(Text(info.text))
    elif info.hexdump:
        parts.append(Text(info.hexdump))
    return Group(*parts)


class DetailView(VerticalScroll, can_focus=False):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "detail"
        self._body = Static("", id="detail-body")

    def compose(self):  # type: ignore[no-untyped-def]
        yield self._body

    def show(self, record: Record, start_us: int, tz: tzinfo | None, hex_view: bool) -> None:
        self._body.update(render_details(record, start_us, tz, hex_view))
        self.scroll_home(animate=False)
