"""The regular-expression engine under the scanner: google-re2, else the standard library.

Rules:
- google-re2 is the supported engine (linear time). Without it the standard library's `re`
  stands in, slower, and backtracking makes some inputs quadratic; `ENGINE` says which runs.
- RE2 runs in Latin-1 mode: the patterns are ASCII, and every byte is one character, so a
  negated class such as `[^\\x00]` also covers bytes of multibyte characters.
- Both engines answer through the same two shapes: `Searcher.match` (the binding's own
  signature, spans out) and `compile_set` (which patterns match anywhere).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

try:
    import re2
except ImportError:  # pragma: no cover - exercised only where google-re2 is missing
    re2 = None

ENGINE = "re2" if re2 is not None else "re"

Span = tuple[int, int]
Spans = list[Span]  # the match, then group 1 if the pattern has one; (-1, -1): none


UNANCHORED = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)


def _re2_options() -> Any:
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1
    return options


class Searcher:
    """`match(anchor, data, pos, endpos)` -> spans, with RE2's binding signature.

    With google-re2 this is the binding's own method: no wrapper Match objects, half the cost
    per call. Otherwise a stand-in over the fallback engine.
    """

    def __init__(self, pattern: str) -> None:
        encoded = pattern.encode("ascii")
        self._rx: Any = re.compile(encoded) if re2 is None else re2.compile(encoded, _re2_options())
        self.groups: int = self._rx.groups
        raw = getattr(self._rx, "_regexp", None)
        self.match: Callable[[Any, bytes, int, int], Spans] = (
            raw.Match if raw is not None and UNANCHORED is not None else self._match
        )

    def _match(self, anchor: Any, data: bytes, pos: int, endpos: int) -> Spans:
        found = self._rx.search(data, pos, endpos)
        if found is None:
            return [(-1, -1)]
        return [found.span(i) for i in range(self._rx.groups + 1)]


def compile_set(patterns: Sequence[str]) -> Callable[[bytes], Sequence[int] | None]:
    """Which patterns have a match anywhere in the bytes (falsy: none)."""
    if re2 is None:
        compiled = [re.compile(p.encode("ascii")) for p in patterns]
        return lambda data: [i for i, rx in enumerate(compiled) if rx.search(data)]
    pattern_set = re2.Set.SearchSet(_re2_options())
    for pattern in patterns:
        pattern_set.Add(pattern.encode("ascii"))
    pattern_set.Compile()
    # The binding's set returns a (possibly empty) list; the wrapper only adds `or None`.
    # It drops RE2::Set's error result, which is safe, not fail-open: the only error is a DFA
    # out of memory, and RE2 rules that out when compiling (CompileSet runs the DFA once and
    # Compile fails, which raises above, if it cannot; the DFA then keeps room for 20 states
    # and a many-match search resets its cache rather than giving up).
    match: Callable[[bytes], Sequence[int] | None] = getattr(pattern_set, "_set", pattern_set).Match
    return match
