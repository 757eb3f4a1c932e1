"""The scanning engine: find and replace every confirmed finding of a set of detectors.

Rules:
- One pass answers "is there anything here at all": every pattern goes into one `re2.Set`, so
  bytes with no candidate cost a single linear scan, whatever the number of detectors. Only the
  detectors the set reports are run again, one by one, to find their spans and confirm them.
- Findings that overlap or touch merge into one replacement; the leftmost (then longest)
  finding names it and is the one counted. Every byte of every confirmed span is replaced.
- A finding is replaced by `[NAME]`: a reader (a person, an audit reviewer, an LLM agent) learns
  what kind of value was there, which keeps the output useful, and nothing of the value itself
  (no last four digits, no domain: those are format-preserving options for later).
- Scanning is over bytes (UTF-8 text; callers check the encoding). The scanner raises on any
  internal error; the callers (rows.py, jsonmask.py) turn errors into withheld values.
- RE2 runs in Latin-1 mode: the patterns are ASCII, and every byte is one character, so a
  negated class such as `[^\\x00]` also covers bytes of multibyte characters.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from jitctl.masking.detectors import Detector, get_detectors, token

try:
    import re2
except ImportError:  # pragma: no cover - exercised only where google-re2 is missing
    re2 = None

# Which regular-expression engine scans: "re2" (google-re2: linear time, the supported engine)
# or "re" (the standard library, used only when google-re2 is not installed: slower, and
# backtracking makes some inputs quadratic).
ENGINE = "re2" if re2 is not None else "re"

Finding = tuple[int, int, int]  # start, end, detector index
# Long NUL-joined buffers (batches of rows) are scanned in chunks of about this many bytes.
CHUNK = 2048  # measured: 1-2 KiB is best for 130-byte rows; far larger rescans more
# A pass can only uncover a finding next to one it just masked; 8 passes and it is withheld.
MAX_PASSES = 8
Spans = list[tuple[int, int]]  # the match, then group 1 if the pattern has one; (-1, -1): none


_UNANCHORED = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)


def _re2_options() -> Any:
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1
    return options


class _Searcher:
    """`match(anchor, data, pos, endpos)` -> spans, with RE2's binding signature.

    With google-re2 this is the binding's own method: no wrapper Match objects, half the cost
    per call. Otherwise a stand-in over the fallback engine.
    """

    def __init__(self, pattern: str) -> None:
        encoded = pattern.encode("ascii")
        self._rx: Any = re.compile(encoded) if re2 is None else re2.compile(encoded, _re2_options())
        raw = getattr(self._rx, "_regexp", None)
        self.match: Callable[[Any, bytes, int, int], Spans] = (
            raw.Match if raw is not None and _UNANCHORED is not None else self._match
        )

    def _match(self, anchor: Any, data: bytes, pos: int, endpos: int) -> Spans:
        found = self._rx.search(data, pos, endpos)
        if found is None:
            return [(-1, -1)]
        return [found.span(i) for i in range(self._rx.groups + 1)]


def _compile_set(patterns: Sequence[str]) -> Callable[[bytes], Sequence[int] | None]:
    """Which patterns have a match anywhere in the bytes (falsy: none)."""
    if re2 is None:
        compiled = [re.compile(p.encode("ascii")) for p in patterns]
        return lambda data: [i for i, rx in enumerate(compiled) if rx.search(data)]
    pattern_set = re2.Set.SearchSet(_re2_options())
    for pattern in patterns:
        pattern_set.Add(pattern.encode("ascii"))
    pattern_set.Compile()
    # The binding's set returns a (possibly empty) list; the wrapper only adds `or None`.
    match: Callable[[bytes], Sequence[int] | None] = getattr(pattern_set, "_set", pattern_set).Match
    return match


class Scanner:
    """The compiled form of a set of detectors."""

    def __init__(self, detectors: Sequence[Detector]) -> None:
        self.detectors = tuple(detectors)
        self.names = tuple(d.name for d in self.detectors)
        self._tokens = tuple(token(name) for name in self.names)
        self._match = tuple(_Searcher(d.pattern).match for d in self.detectors)
        self._confirms = tuple(d.confirm for d in self.detectors)
        self.candidates = _compile_set([d.pattern for d in self.detectors])

    def findings(self, data: bytes, hits: Sequence[int]) -> list[Finding]:
        """Confirmed findings of the detectors in `hits`, sorted by start, longest first."""
        return self._findings(data, hits)[0]

    def _findings(self, data: bytes, hits: Sequence[int]) -> tuple[list[Finding], bool]:
        """`findings`, and whether each candidate was confirmed whole (see `redact_hits`)."""
        found: list[Finding] = []
        append = found.append
        size = len(data)
        whole = True
        for index in hits:
            match, confirm = self._match[index], self._confirms[index]
            pos = 0
            while pos < size:
                spans = match(_UNANCHORED, data, pos, size)
                start, end = spans[0]
                if end < 0:
                    break
                mask_start, mask_end = spans[-1]  # group 1 if the pattern has one
                if confirm is None:
                    append((mask_start, mask_end, index))
                    whole = whole and mask_start == start and mask_end == end
                else:
                    confirmed = confirm(data, mask_start, mask_end)
                    for span_start, span_end in confirmed:
                        append((span_start, span_end, index))
                    whole = whole and confirmed == [(start, end)]
                pos = end if end > pos else pos + 1
        if len(found) > 1:
            found.sort(key=lambda f: (f[0], -f[1]))
        return found, whole

    def redact(self, data: bytes) -> tuple[bytes, Counter[str]]:
        """`data` with every finding replaced by its token, and the count per detector.

        Returns `data` itself (the same object) when nothing was found.
        """
        counts: Counter[str] = Counter()
        hits = self.candidates(data)
        return (self.redact_hits(data, hits, counts) if hits else data), counts

    def redact_hits(self, data: bytes, hits: Sequence[int], counts: Counter[str]) -> bytes:
        """`redact` once `candidates(data)` has said which detectors to run; adds to `counts`.

        The result is a fixed point: masking it again changes nothing. When some candidate was
        rejected or only partly masked, the output is scanned again and masked again until a
        pass changes nothing: a validator that rejected a candidate because of its neighbour
        (an SSN glued to the digits of an IBAN) must see the neighbour's token too. When every
        candidate was masked whole, no pattern can match the output (the scan would have found
        that match first), so the second scan is skipped.
        """
        for _ in range(MAX_PASSES):
            masked, whole = self._redact_once(data, hits, counts)
            if masked is data or whole:
                return masked
            data = masked
            again = self.candidates(data)
            if not again:
                return data
            hits = again
        raise RuntimeError("masking did not settle")  # callers withhold the value

    def _redact_once(
        self, data: bytes, hits: Sequence[int], counts: Counter[str]
    ) -> tuple[bytes, bool]:
        merged, whole = self._merged(data, hits)
        if not merged:
            return data, whole
        pieces: list[bytes] = []
        pos = 0
        for start, end, index in merged:
            pieces += (data[pos:start], self._tokens[index])
            counts[self.names[index]] = counts.get(self.names[index], 0) + 1
            pos = end
        pieces.append(data[pos:])
        return b"".join(pieces), whole

    def redact_parts(
        self, joined: bytes, parts: int, counts: Counter[str], hits: Sequence[int] | None = None
    ) -> dict[int, bytes]:
        """For `parts` NUL-separated parts: {part number: redacted part}, the changed ones only.

        Work is proportional to the findings, not to the number of parts: a batch of rows with
        a few findings does not pay for splitting every value. A long buffer is scanned in
        chunks of about CHUNK bytes (cut at NULs), so the detectors the set reports rescan only
        the chunks that hold their candidates. `hits` is `candidates(joined)` if the caller
        already has it. Raises ValueError if a part holds NUL itself.
        """
        changed: dict[int, bytes] = {}
        size, start, base, checked = len(joined), 0, 0, False
        while start <= size:
            stop = joined.find(0, start + CHUNK) if size - start > CHUNK else -1
            stop = size if stop < 0 else stop
            chunk = joined if stop - start == size else joined[start:stop]
            found = hits if chunk is joined and hits is not None else self.candidates(chunk)
            if found:
                if not checked and joined.count(0) != parts - 1:
                    raise ValueError("a value holds NUL")
                checked = True
                redacted, whole = self._redact_each_part(chunk, found, counts)
                for part, piece in redacted:
                    again = None if whole else self.candidates(piece)  # see redact_hits
                    changed[base + part] = (
                        self.redact_hits(piece, again, counts) if again else piece
                    )
            base += chunk.count(0) + 1
            start = stop + 1
        return changed

    def _redact_each_part(
        self, chunk: bytes, hits: Sequence[int], counts: Counter[str]
    ) -> tuple[list[tuple[int, bytes]], bool]:
        """(part number, redacted part) for each part of `chunk` holding a finding."""
        changed: list[tuple[int, bytes]] = []
        names, tokens, size = self.names, self._tokens, len(chunk)
        current = part = counted_to = pos = 0
        part_end = -1
        pieces: list[bytes] = []
        merged, whole = self._merged(chunk, hits)
        for start, end, index in merged:
            if start > part_end:  # a finding in a later part: finish the current one
                if part_end >= 0:
                    pieces.append(chunk[pos:part_end])
                    changed.append((current, b"".join(pieces)))
                part += chunk.count(0, counted_to, start)
                counted_to = start
                current = part
                pos = chunk.rfind(0, 0, start) + 1
                part_end = chunk.find(0, start)
                part_end = size if part_end < 0 else part_end
                pieces = []
            if end > part_end:
                raise ValueError("a finding crosses a part boundary")
            pieces.append(chunk[pos:start])
            pieces.append(tokens[index])
            counts[names[index]] = counts.get(names[index], 0) + 1
            pos = end
        if part_end >= 0:
            pieces.append(chunk[pos:part_end])
            changed.append((current, b"".join(pieces)))
        return changed, whole

    def _merged(self, data: bytes, hits: Sequence[int]) -> tuple[list[Finding], bool]:
        """Findings with overlapping or touching ones merged; the leftmost names the merge."""
        found, whole = self._findings(data, hits)
        if len(found) < 2:
            return found, whole
        merged = [found[0]]
        for finding in found[1:]:
            start, end, _ = merged[-1]
            if finding[0] <= end:
                if finding[1] > end:
                    merged[-1] = (start, finding[1], merged[-1][2])
            else:
                merged.append(finding)
        return merged, whole


@lru_cache(maxsize=64)
def scanner_for(names: tuple[str, ...]) -> Scanner:
    """A shared scanner for these detector names (compiling a set costs milliseconds)."""
    return Scanner(get_detectors(names))
