"""The timeline: one line per record (wall time, offset, tag, summary), drawn lazily.

A Line API widget: it renders only the rows on screen, asking the reader for their records
(a page at a time, cached), so a session of any length scrolls at the same cost.
Attributes down (`cursor`, `count`, `matches`), messages up (`Timeline.Moved`).
"""

from __future__ import annotations

from datetime import tzinfo
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from jitctl.replay.kinds import is_masked, summary, tag_and_category
from jitctl.replay.reader import SessionReader
from jitctl.replay.timefmt import offset, wall

CATEGORIES = (
    "session",
    "command",
    "blocked",
    "result",
    "error",
    "output",
    "input",
    "meta",
    "data",
    "credential",
    "approval",
    "other",
)


class Timeline(ScrollView, can_focus=True):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move(-1)", "Prev event", show=False),
        Binding("down,j", "move(1)", "Next event", show=False),
        Binding("pageup", "page(-1)", show=False),
        Binding("pagedown", "page(1)", show=False),
        Binding("home,g", "edge(0)", "Start", show=False),
        Binding("end,G", "edge(1)", "End", show=False),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "timeline--time",
        "timeline--offset",
        "timeline--cursor",
        "timeline--match",
        "timeline--masked",
        *(f"timeline--{name}" for name in CATEGORIES),
    }

    cursor: reactive[int] = reactive(0, always_update=True)
    count: reactive[int] = reactive(0)

    class Moved(Message):
        """The user moved the cursor (keys or mouse)."""

        def __init__(self, position: int) -> None:
            super().__init__()
            self.position = position

    def __init__(
        self, reader: SessionReader, tz: tzinfo | None = None, *, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.reader = reader
        self.tz = tz
        self.matches: set[int] = set()
        self._lines: LRUCache[tuple[int, int], list[Segment]] = LRUCache(1024)
        self.count = reader.count

    # -- attributes down --------------------------------------------------------------------------

    def watch_count(self, count: int) -> None:
        self.virtual_size = Size(self.size.width, count)
        self.refresh()

    def watch_cursor(self, old: int, new: int) -> None:
        self.scroll_to_region(
            Region(0, new, 1, 1), animate=False, immediate=True, force=True, top=False
        )
        self.refresh()

    def set_matches(self, matches: set[int]) -> None:
        self.matches = matches
        self.refresh()

    # -- user input, messages up ----------------------------------------------------------------

    def _request(self, position: int) -> None:
        if self.count:
            self.post_message(self.Moved(max(0, min(position, self.count - 1))))

    def action_move(self, step: int) -> None:
        self._request(self.cursor + step)

    def action_page(self, step: int) -> None:
        self._request(self.cursor + step * max(1, self.scrollable_content_region.height - 1))

    def action_edge(self, end: int) -> None:
        if end:
            self.post_message(self.Moved(-1))  # -1: the end, once the index is complete
        else:
            self._request(0)

    def on_click(self, event: events.Click) -> None:
        self._request(int(self.scroll_offset.y) + event.y)

    # -- drawing ------------------------------------------------------------------------------

    def _segments(self, row: int) -> list[Segment]:
        key = (row, self.reader.count)
        cached = self._lines.get(key)
        if cached is not None:
            return cached
        record = self.reader.record(row)
        tag, category = tag_and_category(record.kind, record.payload)
        style = self.get_component_rich_style
        masked = is_masked(record)
        segments = [
            Segment(wall(record.time_us, self.tz)[:12] + " ", style("timeline--time")),
            Segment(
                f"{offset(record.time_us - self.reader.start_us):>11} ", style("timeline--offset")
            ),
            Segment(f"{tag:<5}", style(f"timeline--{category}")),
            Segment("M" if masked else " ", style("timeline--masked")),
            Segment(" " + summary(record), style(f"timeline--{category}")),
        ]
        self._lines[key] = segments
        return segments

    def render_line(self, y: int) -> Strip:
        row = int(self.scroll_offset.y) + y
        width = self.scrollable_content_region.width
        if not 0 <= row < min(self.count, self.reader.count):
            return Strip.blank(width, self.rich_style)
        segments = self._segments(row)
        strip = Strip(segments).crop_extend(0, width, self.rich_style)
        extra: Style | None = None
        if row == self.cursor:
            extra = self.get_component_rich_style("timeline--cursor")
        elif row in self.matches:
            extra = self.get_component_rich_style("timeline--match")
        if extra is None:
            return strip
        return Strip(list(Segment.apply_style(strip, post_style=extra)), strip.cell_length)

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, self.count)
