"""The scanning engine: find and replace every confirmed finding of a set of detectors.

Rules:
- One pass answers "is there anything here at all": every pattern goes into one `re2.Set`, so
  bytes with no candidate cost a single linear scan, whatever the number of detectors. Only the
  detectors the set reports are run again, one by one, to find their spans and confirm them.
- After a match, the next search runs only if the detector's `needs` (a string every match
  contains, such as the `@` of an email) occurs after it, or its `shape` (thirteen digits for a
  card) occurs in the shape of what follows: a `bytes.find` or `translate` costs a fraction of
  an RE2 call, and most values hold one finding of a kind. The RE2 search still decides what
  matches; these only skip a search that could not find anything. The `shape` check is left
  out where more than SHAPE_REST bytes follow (a chunk of rows): there another candidate is
  likely, and translating the rest after every match costs more than the search it saves.
- Findings that overlap or touch merge into one replacement; the leftmost (then longest)
  finding names it and is the one counted. Every byte of every confirmed span is replaced.
- A finding is replaced by `[NAME]`: a reader (a person, an audit reviewer, an LLM agent) learns
  what kind of value was there, which keeps the output useful, and nothing of the value itself
  (no last four digits, no domain: those are format-preserving options for later).
- Scanning is over bytes (UTF-8 text; callers check the encoding). The scanner raises on any
  internal error; the callers (rows.py, jsonmask.py) turn errors into withheld values.
- The regular-expression engine (google-re2 in Latin-1 mode, else `re`) is engine.py's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

from jitctl.masking.detectors import SHAPE, Detector, get_detectors, token
from jitctl.masking.engine import ENGINE as ENGINE  # re-exported: jitctl.masking names it
from jitctl.masking.engine import UNANCHORED, Searcher, Span, compile_set

Finding = tuple[int, int, int]  # start, end, detector index
# Long NUL-joined buffers (batches of rows) are scanned in chunks of about this many bytes.
CHUNK = 2048  # measured: 1-2 KiB is best for 130-byte rows; far larger rescans more
# The `shape` check reads the rest of the buffer after each match; past this many bytes (a
# chunk of rows) the next RE2 search costs less than the check, so it runs unchecked.
SHAPE_REST = 256  # measured: callgrind instructions per row of mask_rows
# A pass can only uncover a finding next to one it just masked; 8 passes and it is withheld.
MAX_PASSES = 8


class Scanner:
    """The compiled form of a set of detectors."""

    def __init__(self, detectors: Sequence[Detector]) -> None:
        self.detectors = tuple(detectors)
        self.names = tuple(d.name for d in self.detectors)
        self._tokens = tuple(token(name) for name in self.names)
        # Per detector, everything the search loop needs, unpacked once per detector hit. `plain`:
        # no validator and no group, so the match is the finding.
        searchers = [Searcher(d.pattern) for d in self.detectors]
        self._plan = tuple(
            (
                searcher.match,
                d.confirm,
                d.confirm is None and not searcher.groups,
                d.needs or None,
                (d.shape, d.shape_drops) if d.shape else None,
            )
            for searcher, d in zip(searchers, self.detectors, strict=True)
        )
        self.candidates = compile_set([d.pattern for d in self.detectors])

    def findings(self, data: bytes, hits: Sequence[int]) -> list[Finding]:
        """Confirmed findings of the detectors in `hits`, sorted by start, longest first."""
        return [(start, -neg_end, index) for start, neg_end, index in self._findings(data, hits)[0]]

    def _findings(
        self, data: bytes, hits: Sequence[int]
    ) -> tuple[list[Finding], list[Span] | None]:
        """Findings as (start, -end, index), sorted: leftmost, then longest, then registry order;
        and the loose candidates, those not confirmed whole, as (start, end) (None: none)."""
        found: list[Finding] = []
        loose: list[Span] | None = None
        size = len(data)
        plan = self._plan
        anchor = UNANCHORED
        for index in hits:
            match, confirm, plain, needs, shape = plan[index]
            pos = 0
            while True:
                spans = match(anchor, data, pos, size)
                start, end = spans[0]
                if end < 0:
                    break
                if plain:
                    found.append((start, -end, index))
                else:
                    mask_start, mask_end = spans[-1]  # group 1 if the pattern has one
                    confirmed = (
                        [(mask_start, mask_end)]
                        if confirm is None
                        else confirm(data, mask_start, mask_end)
                    )
                    if len(confirmed) == 1:  # the usual case, without the loop
                        span_start, span_end = confirmed[0]
                        found.append((span_start, -span_end, index))
                        if span_start != start or span_end != end:
                            loose = [(start, end)] if loose is None else [*loose, (start, end)]
                    else:
                        for span_start, span_end in confirmed:
                            found.append((span_start, -span_end, index))
                        loose = [(start, end)] if loose is None else [*loose, (start, end)]
                # Patterns never match the empty string, so end > pos; the guard is for
                # detectors from elsewhere (MaskPolicy's `scanner` argument).
                pos = end if end > pos else pos + 1
                # No further match can exist without `needs` or `shape` (detectors.py rules).
                if needs is not None:
                    if data.find(needs, pos) < 0:
                        break
                elif shape is not None and size - pos <= SHAPE_REST:
                    needles, drops = shape
                    rest = data[pos:].translate(SHAPE, drops)
                    if len(needles) == 1:  # most shapes: one check, without the loop
                        if rest.find(needles[0]) < 0:
                            break
                    else:
                        for needle in needles:
                            if rest.find(needle) >= 0:
                                break
                        else:
                            break
        if len(found) > 1:
            found.sort()
        return found, loose

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
        (an SSN glued to the digits of an IBAN) must see the neighbour's token too. The second
        scan is skipped when every candidate was masked whole, or lies inside what was masked
        (the digits of an IBAN are a rejected card candidate): then no pattern can match the
        output. A match there would not touch a token (no pattern runs into `[` or `]`), so it
        is text of the input; the search for its detector, resuming after each match, would
        have come to a candidate overlapping it, and every candidate was masked.
        """
        passes = 0
        while True:
            found, loose = self._findings(data, hits)
            if not found:
                return data
            if len(found) == 1:  # the usual case, without merging
                start, neg_end, index = found[0]
                name = self.names[index]
                counts[name] = counts.get(name, 0) + 1
                masked = data[:start] + self._tokens[index] + data[-neg_end:]
            elif len(found) == 2 and found[1][0] > -found[0][1]:  # two apart: no merging
                (start, neg_end, index), (second, second_neg_end, second_index) = found
                name, second_name = self.names[index], self.names[second_index]
                counts[name] = counts.get(name, 0) + 1
                counts[second_name] = counts.get(second_name, 0) + 1
                masked = b"".join(
                    (
                        data[:start],
                        self._tokens[index],
                        data[-neg_end:second],
                        self._tokens[second_index],
                        data[-second_neg_end:],
                    )
                )
            else:
                masked = self._replace(data, found, counts)
            if loose is None or _covered(loose, found):
                return masked
            data = masked
            again = self.candidates(data)
            if not again:
                return data
            hits = again
            passes += 1
            if passes == MAX_PASSES:
                raise RuntimeError("masking did not settle")  # callers withhold the value

    def _replace(self, data: bytes, found: list[Finding], counts: Counter[str]) -> bytes:
        """`data` with the sorted (start, -end, index) findings replaced by their tokens;
        overlapping or touching ones merge into one, named by the first."""
        names, tokens = self.names, self._tokens
        start, neg_end, index = found[0]
        counts[names[index]] = counts.get(names[index], 0) + 1
        pieces = [data[:start], tokens[index]]
        end = -neg_end
        for start, neg_end, index in found:  # found[0] again: it overlaps itself, a no-op
            if start <= end:
                if -neg_end > end:
                    end = -neg_end
                continue
            pieces += (data[end:start], tokens[index])
            counts[names[index]] = counts.get(names[index], 0) + 1
            end = -neg_end
        pieces.append(data[end:])
        return b"".join(pieces)

    def redact_parts(
        self, joined: bytes, parts: int, counts: Counter[str], hits: Sequence[int] | None = None
    ) -> dict[int, bytes]:
        """For `parts` NUL-separated parts: {part number: redacted part}, the changed ones only.

        Work is proportional to the findings, not to the number of parts: a row or a batch of
        rows with a few findings does not pay for splitting every value. A long buffer is
        scanned in chunks of about CHUNK bytes (cut at NULs), so the detectors the set reports
        rescan only the chunks that hold their candidates. `hits` is `candidates(joined)` if
        the caller already has it. Raises ValueError if a part holds NUL itself.
        """
        changed: dict[int, bytes] = {}
        size = len(joined)
        if size <= CHUNK:  # a row: one chunk
            if hits is None:
                hits = self.candidates(joined)
            if hits:
                if joined.count(0) != parts - 1:
                    raise ValueError("a value holds NUL")
                self._redact_chunk(joined, hits, counts, 0, changed)
            return changed
        start, base, checked = 0, 0, False
        while start <= size:
            stop = joined.find(0, start + CHUNK) if size - start > CHUNK else -1
            stop = size if stop < 0 else stop
            chunk = joined[start:stop]
            found = self.candidates(chunk)
            if found:
                if not checked and joined.count(0) != parts - 1:
                    raise ValueError("a value holds NUL")
                checked = True
                self._redact_chunk(chunk, found, counts, base, changed)
            base += chunk.count(0) + 1
            start = stop + 1
        return changed

    def _redact_chunk(
        self,
        chunk: bytes,
        hits: Sequence[int],
        counts: Counter[str],
        base: int,
        changed: dict[int, bytes],
    ) -> None:
        """Add {base + part number: redacted part} to `changed` for each part of `chunk` (NUL
        separated, none holding NUL) with a finding."""
        found, loose = self._findings(chunk, hits)
        if not found:
            return
        names, tokens = self.names, self._tokens
        if len(found) == 1:  # the common case, without the merging
            start, neg_end, index = found[0]
            end = -neg_end
            part_end = chunk.find(0, start)
            if 0 <= part_end < end:
                raise ValueError("a finding crosses a part boundary")
            piece = chunk[chunk.rfind(0, 0, start) + 1 : start] + tokens[index]
            piece += chunk[end:part_end] if part_end >= 0 else chunk[end:]
            counts[names[index]] = counts.get(names[index], 0) + 1
            settled = loose is None or _covered(loose, found)
            part = base + chunk.count(0, 0, start)
            changed[part] = piece if settled else self._settle(piece, counts)
            return
        settled = loose is None or _covered(loose, found)
        merged = _merge(found)
        size = len(chunk)
        part = base
        counted_to = pos = 0
        part_end = -1
        pieces: list[bytes] = []
        for start, end, index in merged:
            if start > part_end:  # a finding in a later part: finish the current one
                if part_end >= 0:
                    pieces.append(chunk[pos:part_end])
                    piece = b"".join(pieces)
                    changed[part] = piece if settled else self._settle(piece, counts)
                part += chunk.count(0, counted_to, start)
                counted_to = start
                pos = chunk.rfind(0, 0, start) + 1
                part_end = chunk.find(0, start)
                part_end = size if part_end < 0 else part_end
                pieces = []
            if end > part_end:
                raise ValueError("a finding crosses a part boundary")
            pieces += (chunk[pos:start], tokens[index])
            counts[names[index]] = counts.get(names[index], 0) + 1
            pos = end
        pieces.append(chunk[pos:part_end])
        piece = b"".join(pieces)
        changed[part] = piece if settled else self._settle(piece, counts)

    def _settle(self, piece: bytes, counts: Counter[str]) -> bytes:
        """A changed part scanned again (see `redact_hits`). Only changed parts can need it: a
        part without findings scans the same alone as inside the chunk."""
        again = self.candidates(piece)
        return self.redact_hits(piece, again, counts) if again else piece


def _merge(found: list[Finding]) -> list[Finding]:
    """(start, end, index) from sorted (start, -end, index): overlapping or touching findings
    merge into one, named by the first (leftmost, then longest)."""
    merged: list[Finding] = []
    cur_start, cur_end, cur_index = -1, -1, -1
    for start, neg_end, index in found:
        if start <= cur_end:
            if -neg_end > cur_end:
                cur_end = -neg_end
            continue
        if cur_index >= 0:
            merged.append((cur_start, cur_end, cur_index))
        cur_start, cur_end, cur_index = start, -neg_end, index
    if cur_index >= 0:
        merged.append((cur_start, cur_end, cur_index))
    return merged


def _covered(loose: list[Span], found: list[Finding]) -> bool:
    """Whether each loose candidate lies inside one finding of the sorted (start, -end, index)
    `found` once merged (merged findings neither overlap nor touch, so a candidate inside
    their union is inside one of them)."""
    merged = _merge(found)
    for start, end in loose:
        for merged_start, merged_end, _ in merged:
            if merged_start <= start and end <= merged_end:
                break
        else:
            return False
    return True


@lru_cache(maxsize=64)
def scanner_for(names: tuple[str, ...]) -> Scanner:
    """A shared scanner for these detector names (compiling a set costs milliseconds)."""
    return Scanner(get_detectors(names))
