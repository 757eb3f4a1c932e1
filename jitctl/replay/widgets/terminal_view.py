"""The terminal pane: a pyte screen drawn cell by cell at its recorded size.

Attributes down: the session screen calls `show(model)` after moving the `TerminalModel`; the
pane scrolls when the recorded size is larger than the space it has.
"""

from __future__ import annotations

from functools import lru_cache

import pyte
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from jitctl.replay.terminal import TerminalModel

# pyte's names for the 16 ANSI colours ("brown" is its name for yellow).
_NAMES = {
    "black": "black",
    "red": "red",
    "green": "green",
    "brown": "yellow",
    "yellow": "yellow",
    "blue": "blue",
    "magenta": "magenta",
    "cyan": "cyan",
    "white": "white",
}


def _color(name: str) -> Color | None:
    if name == "default":
        return None
    if name.startswith("bright"):
        base = _NAMES.get(name[len("bright") :])
        return Color.parse(f"bright_{base}") if base else None
    if name in _NAMES:
        return Color.parse(_NAMES[name])
    try:
        return Color.parse(f"#{name}")
    except Exception:  # an unexpected colour name: show the default colour
        return None


@lru_cache(maxsize=4096)
def cell_style(
    fg: str, bg: str, bold: bool, italics: bool, underscore: bool, strike: bool, reverse: bool
) -> Style:
    return Style(
        color=_color(fg),
        bgcolor=_color(bg),
        bold=bold or None,
        italic=italics or None,
        underline=underscore or None,
        strike=strike or None,
        reverse=reverse or None,
    )


def row_segments(screen: pyte.Screen, y: int, cursor: bool) -> list[Segment]:
    """One screen row as segments of equal style."""
    line = screen.buffer[y]
    cols = screen.columns
    segments: list[Segment] = []
    text: list[str] = []
    current: Style | None = None
    show_cursor = cursor and not screen.cursor.hidden and screen.cursor.y == y
    for x in range(cols):
        char = line[x]
        style = cell_style(
            char.fg,
            char.bg,
            char.bold,
            char.italics,
            char.underscore,
            char.strikethrough,
            char.reverse,
        )
        if show_cursor and x == screen.cursor.x:
            style = style + Style(reverse=not char.reverse)
        if style != current and text:
            segments.append(Segment("".join(text), current))
            text = []
        current = style
        text.append(char.data if char.data else "")  # "" after a wide character
    if text:
        segments.append(Segment("".join(text), current))
    return segments


class TerminalView(ScrollView, can_focus=False):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model: TerminalModel | None = None
        self.border_title = "terminal"

    def show(self, model: TerminalModel) -> None:
        self.model = model
        cols, rows = model.size
        self.virtual_size = Size(cols, rows)
        exact = "" if model.exact else " · ≈ rebuilt from recent output"
        self.border_title = f"terminal {cols}x{rows}{exact}"
        cursor = model.screen.cursor
        # A recorded screen taller or wider than the pane scrolls to keep the cursor in view.
        self.scroll_to_region(
            Region(cursor.x, cursor.y, 1, 1), animate=False, immediate=True, force=True
        )
        self.refresh()

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        model = self.model
        scroll_x, scroll_y = self.scroll_offset
        row = scroll_y + y
        if model is None or row >= model.screen.lines:
            return Strip.blank(width, self.rich_style)
        strip = Strip(row_segments(model.screen, row, cursor=True))
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style)
