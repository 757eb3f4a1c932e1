"""Playback arithmetic: where the cursor is after some wall-clock time at some speed. Pure.

Rules:
- Playback walks the session's positions in order; the wait between two records is the
  difference of their recorded times divided by the speed.
- Idle gaps are capped at `IDLE_LIMIT_S` (as asciinema's idle_time_limit): a session that
  sat idle for an hour plays on after two seconds. Times that go backwards count as no wait.
- Speeds are 0.5x to 16x, doubling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SPEEDS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
IDLE_LIMIT_S = 2.0
MAX_STEPS = 20_000  # records passed in one advance, so a tick never stalls the UI


@dataclass
class Player:
    times: Sequence[int]  # recorded time (µs) per position
    position: int = 0
    speed: float = 1.0
    playing: bool = False
    _credit_us: float = 0.0  # virtual time elapsed since the current position was reached

    def play(self) -> None:
        self.playing = True
        self._credit_us = 0.0

    def pause(self) -> None:
        self.playing = False

    def toggle(self) -> bool:
        self.pause() if self.playing else self.play()
        return self.playing

    def faster(self) -> float:
        bigger = [s for s in SPEEDS if s > self.speed]
        self.speed = bigger[0] if bigger else SPEEDS[-1]
        return self.speed

    def slower(self) -> float:
        smaller = [s for s in SPEEDS if s < self.speed]
        self.speed = smaller[-1] if smaller else SPEEDS[0]
        return self.speed

    def seek(self, position: int) -> None:
        self.position = position
        self._credit_us = 0.0

    def gap_us(self, position: int) -> float:
        """The (capped) wait before `position + 1` is shown."""
        gap = self.times[position + 1] - self.times[position]
        return float(min(max(gap, 0), IDLE_LIMIT_S * 1_000_000))

    def advance(self, seconds: float, count: int) -> int:
        """Move on by `seconds` of wall time among `count` positions; returns the position.
        Stops playing at the last position."""
        if not self.playing:
            return self.position
        self._credit_us += seconds * self.speed * 1_000_000
        steps = 0
        while self.position + 1 < count and steps < MAX_STEPS:
            gap = self.gap_us(self.position)
            if gap > self._credit_us:
                break
            self._credit_us -= gap
            self.position += 1
            steps += 1
        if self.position + 1 >= count:
            self.playing = False
            self._credit_us = 0.0
        return self.position
