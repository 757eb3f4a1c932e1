"""The session view's player bar: play state and speed, time into the session, record number,
search hits.

It shows what the screen hands it (`show`), on every move, so it reads only what is already in
memory: `▶ 2x · +00:12.000 / +03:04.000 · #120/4,512`, with `+` after the total while the
index is still being built, and the search's counter (hits.py) while there is one.
"""

from __future__ import annotations

from textual.widgets import Static

from jitctl.replay.hits import Hits
from jitctl.replay.player import Player
from jitctl.replay.reader import SessionReader
from jitctl.replay.timefmt import offset


class PlayerBar(Static):
    def show(self, player: Player, reader: SessionReader, position: int, hits: Hits) -> None:
        state = f"▶ {player.speed:g}x" if player.playing else f"⏸ {player.speed:g}x"
        total = f"{reader.count:,}" + ("" if reader.index.complete else "+")
        end = reader.index.times[reader.count - 1] - reader.start_us
        parts = [
            state,
            f"{offset(reader.offset_us(position))} / {offset(end)}",
            f"#{position + 1:,}/{total}",
        ]
        if hits.text:
            parts.append(hits.counter(position))
        self.update(" · ".join(parts))
