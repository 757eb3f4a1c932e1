"""The screen of a recorded terminal at any position, re-rendered with pyte.

Rules (docs/replay.md, "Terminal records"):
- One channel is shown: the channel of the session's first `term.*` record. Its `term.resize`
  records set the screen size (80x24 until the first one) and its `term.output` bytes are fed
  to a pyte `ByteStream` (UTF-8, decoded incrementally with replacement, as asciinema does).
  `term.input` is not fed: a terminal shows what the host echoed, not what was typed.
- pyte is slow (under 1 MB/s), so a seek never replays the whole session: it resumes from the
  current screen or from a keyframe (a copy of the screen, taken every `KEYFRAME_BYTES` of
  output on any exact replay) when at most `BUDGET` bytes remain to feed. Otherwise the screen
  is rebuilt from the last `WINDOW` bytes of output before the target and marked approximate
  (`exact=False`) until a keyframe pass (`build_keyframes`, in a worker) catches up.
- A keyframe restores the screen, not the parser: keyframes are taken at record boundaries,
  where an escape sequence split across two records (rare) is the only thing lost.
"""

from __future__ import annotations

import bisect
import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pyte

from jitctl.audit.records import Record
from jitctl.replay.kinds import TERM_KINDS, TERM_OUTPUT, TERM_RESIZE
from jitctl.replay.reader import SessionReader

KEYFRAME_BYTES = 64 * 1024
BUDGET = 96 * 1024
WINDOW = 32 * 1024
DEFAULT_SIZE = (80, 24)


@dataclass
class Keyframes:
    """Screens by position, shared between the UI's model and the keyframe worker."""

    positions: list[int]
    screens: dict[int, pyte.Screen]
    lock: threading.Lock
    done_through: int = -1  # every keyframe up to this position exists

    @classmethod
    def empty(cls) -> Keyframes:
        return cls([], {}, threading.Lock())

    def add(self, position: int, screen: pyte.Screen) -> None:
        with self.lock:
            if position not in self.screens:
                self.screens[position] = copy.deepcopy(screen)
                bisect.insort(self.positions, position)

    def best(self, position: int) -> int:
        """The position of the last keyframe at or before `position` (-1: none)."""
        with self.lock:
            at = bisect.bisect_right(self.positions, position) - 1
            return self.positions[at] if at >= 0 else -1

    def screen_at(self, position: int) -> pyte.Screen:
        with self.lock:
            return copy.deepcopy(self.screens[position])


def _size(record: Record) -> tuple[int, int]:
    p = record.payload
    try:
        cols, rows = int(p["cols"]), int(p["rows"])
    except (KeyError, TypeError, ValueError):
        return DEFAULT_SIZE
    return (cols, rows) if cols > 0 and rows > 0 else DEFAULT_SIZE


def _channel(record: Record) -> int:
    try:
        return int(record.payload.get("channel", 0))
    except (TypeError, ValueError):
        return 0


class TerminalModel:
    def __init__(self, reader: SessionReader, keyframes: Keyframes | None = None) -> None:
        self.reader = reader
        self.keyframes = keyframes or Keyframes.empty()
        first = reader.first_of(TERM_KINDS)
        self.channel = _channel(reader.record(first)) if first is not None else 0
        self.position = -1  # the last position applied
        self.exact = True
        self._fresh(DEFAULT_SIZE)

    # -- screen state -------------------------------------------------------------------------

    def _fresh(self, size: tuple[int, int]) -> None:
        self.screen = pyte.Screen(*size)
        self.stream = pyte.ByteStream(self.screen)

    def _restore(self, screen: pyte.Screen) -> None:
        self.screen = screen
        self.stream = pyte.ByteStream(screen)

    @property
    def size(self) -> tuple[int, int]:
        return self.screen.columns, self.screen.lines

    def _apply(self, record: Record) -> None:
        if record.kind not in (TERM_OUTPUT, TERM_RESIZE) or _channel(record) != self.channel:
            return
        if record.kind == TERM_RESIZE:
            cols, rows = _size(record)
            if (cols, rows) != self.size:
                self.screen.resize(rows, cols)
        else:
            self.stream.feed(record.data)

    def _feed(self, start: int, stop: int, keyframes: bool) -> None:
        """Apply positions start..stop-1 to the current screen."""
        out = self.reader.index.out_bytes
        mark = (out[start - 1] if start > 0 else 0) // KEYFRAME_BYTES
        for position, record in self.reader.records(start, stop):
            self._apply(record)
            if keyframes and out[position] // KEYFRAME_BYTES > mark:
                mark = out[position] // KEYFRAME_BYTES
                self.keyframes.add(position, self.screen)
        self.position = stop - 1

    def _bytes(self, after: int, through: int) -> int:
        out = self.reader.index.out_bytes
        return out[through] - (out[after] if after >= 0 else 0)

    # -- seeking ------------------------------------------------------------------------------

    def seek(self, target: int) -> None:
        """Make the screen show the terminal as it was after the record at `target`."""
        target = min(max(target, -1), self.reader.count - 1)
        if target == self.position:
            return
        key = self.keyframes.best(target)
        covered = self.keyframes.done_through >= target
        ahead = self.position <= target and self._bytes(self.position, target) <= BUDGET
        if ahead and self.position >= key and (self.exact or not covered):
            self._feed(self.position + 1, target + 1, self.exact)
        elif covered or self._bytes(key, target) <= BUDGET:
            if key >= 0:
                self._restore(self.keyframes.screen_at(key))
            else:
                self._fresh(DEFAULT_SIZE)  # the session's first term.resize sets the size
            self.exact = True
            self._feed(key + 1, target + 1, True)
        elif ahead:
            self._feed(self.position + 1, target + 1, False)
        else:
            self._approximate(target)

    def refine(self) -> bool:
        """Replace an approximate screen by the exact one once keyframes cover it."""
        if self.exact or self.keyframes.done_through < self.position:
            return False
        target, self.position = self.position, -1
        self.seek(target)
        return True

    def _approximate(self, target: int) -> None:
        out = self.reader.index.out_bytes
        goal = out[target] - WINDOW
        start = bisect.bisect_left(out, goal, 0, target + 1)
        resize = self.reader.last_resize(start)
        self._fresh(_size(resize) if resize is not None else DEFAULT_SIZE)
        self.exact = False
        self._feed(start, target + 1, False)

    # -- rendering ------------------------------------------------------------------------------

    def lines(self) -> list[str]:
        """The screen as plain text, one string per row (trailing spaces kept)."""
        return list(self.screen.display)


def build_keyframes(
    reader: SessionReader,
    keyframes: Keyframes,
    stop: Callable[[], bool] = lambda: False,
    progress: Callable[[int], None] | None = None,
    pause: float = 0.001,
    between: Callable[[], None] | None = None,
) -> None:
    """Replay the whole terminal once, leaving a keyframe every KEYFRAME_BYTES (a worker).
    `between` is called between steps of about 16 KiB of output (a few ms of pyte)."""
    reader.build(stop, between)
    model = TerminalModel(reader.fork(), keyframes)
    out = reader.index.out_bytes
    position, told = 0, time.monotonic()
    while position < reader.count and not stop():
        if between is not None:
            between()
        limit = min(position + 2_000, reader.count)
        goal = (out[position - 1] if position else 0) + 16 * 1024
        end = max(position + 1, bisect.bisect_left(out, goal, position, limit))
        model._feed(position, end, True)
        position = end
        with keyframes.lock:
            keyframes.done_through = position - 1
        if progress is not None and (time.monotonic() - told > 0.25 or position == reader.count):
            told = time.monotonic()
            progress(position)
        if pause:
            time.sleep(pause)  # let the UI thread have the interpreter
