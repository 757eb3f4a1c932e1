"""The byte-stream pane of a tcp session (or of SSH channels without a terminal, `ssh.data`):
the chunks up to the cursor, as text or hex.

Client→upstream chunks and upstream→client chunks are told apart by an arrow and a style; the
chunk under the cursor is the last one shown. At most `CHUNKS` chunks are drawn.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from jitctl.replay.kinds import hexdump
from jitctl.replay.reader import SessionReader

CHUNKS = 24
LOOK_BACK = 400  # records searched backwards for data chunks


def render_stream(reader: SessionReader, position: int, hex_view: bool) -> Group:
    chunks = [
        (pos, record)
        for pos, record in reader.records(max(0, position - LOOK_BACK), position + 1)
        if record.kind in ("tcp.data", "ssh.data")
    ][-CHUNKS:]
    parts: list[RenderableType] = []
    for pos, record in chunks:
        p = record.payload
        up = p.get("dir") == "up" or p.get("stream") == "stdin"
        style = "bold green" if up else ("bold red" if p.get("stream") == "stderr" else "bold cyan")
        arrow = "→ client to upstream" if up else "← upstream to client"
        if p.get("stream"):
            arrow += f" ({p['stream']})"
        mark = " ◀" if pos == position else ""
        parts.append(
            Text(
                f"{arrow} · {len(record.data)} B @{record.payload.get('offset')}{mark}", style=style
            )
        )
        if hex_view:
            parts.append(Text(hexdump(record.data, limit=1024)))
        else:
            text = record.data.decode("utf-8", "replace")
            parts.append(Text("".join(c if c >= " " or c in "\n\t" else "·" for c in text)))
    if not parts:
        parts.append(Text("(no data chunks up to here)", style="dim"))
    return Group(*parts)


class StreamView(VerticalScroll, can_focus=False):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.border_title = "bytes"
        self._body = Static("", id="stream-body")

    def compose(self):  # type: ignore[no-untyped-def]
        yield self._body

    def show(self, reader: SessionReader, position: int, hex_view: bool) -> None:
        self.border_title = "bytes · hex" if hex_view else "bytes · text"
        self._body.update(render_stream(reader, position, hex_view))
        self.scroll_end(animate=False)
