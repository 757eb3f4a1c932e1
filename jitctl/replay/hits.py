"""Search hits in the session view: where to jump as they arrive, n/N, the bar's count. Pure.

Rules:
- A new search forgets the old hits. Hits arrive in session order, in growing batches, while
  the search runs (search.py; the screen's worker reads the stream).
- The view jumps once per search: to the first hit after the cursor as soon as there is one,
  or, once the search is done, to the first hit overall (all of them are before the cursor).
- `n`/`N` go to the next/previous hit from the cursor and wrap around at either end.
- The bar shows `/text: i/total`, `i` the hit the cursor is on (0 when it is on none), with
  `…` while the search still runs.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from jitctl.replay.search import Match


@dataclass
class Hits:
    text: str = ""
    matches: list[Match] = field(default_factory=list)
    searching: bool = False
    jumped: bool = False

    def start(self, text: str) -> None:
        self.text, self.matches, self.searching, self.jumped = text, [], True, False

    def arrived(self, matches: list[Match], done: bool, position: int) -> int | None:
        """Take the hits so far; the position to jump to, if the view should jump now."""
        self.matches, self.searching = matches, not done
        if not self.jumped and matches:
            after = [m for m in matches if m.position > position]
            if after or done:
                self.jumped = True
                return (after or matches)[0].position
        return None

    def step(self, position: int, step: int) -> int | None:
        """The next (`step` > 0) or previous hit from `position`, wrapping; None: no hits."""
        hits = [m.position for m in self.matches]
        if not hits:
            return None
        if step > 0:
            at = bisect.bisect_right(hits, position)
            return hits[at] if at < len(hits) else hits[0]
        at = bisect.bisect_left(hits, position) - 1
        return hits[at] if at >= 0 else hits[-1]

    def counter(self, position: int) -> str:
        hits = [m.position for m in self.matches]
        at = bisect.bisect_right(hits, position)
        current = at if at and hits[at - 1] == position else 0
        more = "…" if self.searching else ""
        return f"/{self.text}: {current}/{len(hits)}{more}"
