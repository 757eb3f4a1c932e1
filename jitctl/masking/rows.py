"""Masking the values of result rows, and free text, for one result shape.

Rules:
- A value in a masked column becomes the column marker (`[MASKED]`), counted as
  `COLUMN:<column name>`. Every other non-NULL value is scanned by the detectors, and each
  finding is replaced by its `[DETECTOR_NAME]` token, counted under the detector's name.
- SQL NULL (None) stays None in every column: NULL carries no value to hide, and turning it
  into a marker would tell the reader less than the NULL does.
- Values are text-format bytes in UTF-8. With detectors on, a value that is not valid UTF-8
  cannot be scanned reliably, so it is withheld.
- **Fail closed**: any exception while masking a value (bad UTF-8, a validator bug, anything)
  replaces that value with `[WITHHELD]`, counted as `WITHHELD`. No path returns a raw value that
  was not scanned. A row whose length differs from the result shape is withheld whole.
- Fast path: the values of a row (or a batch of rows, `mask_rows`, in chunks of about
  `scanner.CHUNK` bytes) are joined with NUL and scanned together; no pattern matches NUL, so
  findings never cross values. `mask_row` is compiled per result shape (rowcode.py). A row
  with a value holding NUL, or not UTF-8, takes the per-value path.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from functools import partial

from jitctl.masking import rowcode
from jitctl.masking.scanner import Scanner

MASKED = b"[MASKED]"  # a value of a masked column
WITHHELD = b"[WITHHELD]"  # a value masking failed on; never the raw value
WITHHELD_COUNT = "WITHHELD"

Value = bytes | None

# An empty Counter without Counter.__init__ (which runs update() in Python): 50 ns, not 280,
# and one is made per row. Counter adds no instance state, so this is a complete Counter.
_new_counter = partial(Counter.__new__, Counter)


class RowMasker:
    """Masks rows of one result shape (which columns are masked) and free text."""

    mask_row: rowcode.MaskRow
    """`mask_row(values) -> (masked values, counts)`: the row with masked columns replaced and
    findings redacted, and what was masked. The per-DataRow hot path: compiled for this shape
    (rowcode.py); a row it cannot take as it is goes to the per-value path. A row with nothing
    masked may get `rowcode.NO_COUNTS`, a shared empty Counter that refuses changes."""

    def __init__(
        self,
        scanner: Scanner | None,
        masked: Sequence[bool],
        names: Sequence[str] = (),
        *,
        marker: bytes = MASKED,
    ) -> None:
        self._scanner = scanner if scanner is not None and scanner.detectors else None
        self._masked = tuple(bool(m) for m in masked)
        names = tuple(names) or tuple(f"#{i + 1}" for i in range(len(self._masked)))
        self._labels = tuple(f"COLUMN:{name}" for name in names)
        self._mask_idx = tuple(i for i, m in enumerate(self._masked) if m)
        self._width = len(self._masked)
        self._marker = marker
        self._candidates = None if self._scanner is None else self._scanner.candidates
        if self._width:
            make = rowcode.factory(self._width, self._mask_idx, self._scanner is not None)
            self.mask_row = make(
                self._candidates,
                None if self._scanner is None else self._scanner.redact_hits,
                self._mask_row_slowly,
                self._marker,
                self._labels,
                _new_counter,
            )
        else:
            self.mask_row = self._mask_row_slowly

    @property
    def masked_columns(self) -> tuple[bool, ...]:
        return self._masked

    def mask_rows(self, rows: Sequence[Sequence[Value]]) -> tuple[list[list[Value]], Counter[str]]:
        """`mask_row` over a batch scanned together (one `re2.Set` pass per chunk of about
        `scanner.CHUNK` bytes): the same result. Cheaper than `mask_row` per row only when few
        rows hold candidates; `mask_row` is the compiled per-row path (rowcode.py)."""
        try:
            return self._mask_rows(rows)
        except Exception:
            counts = _new_counter()
            out = []
            for row in rows:
                masked, found = self.mask_row(row)
                out.append(masked)
                counts.update(found)
            return out, counts

    def mask_text(self, text: str) -> tuple[str, Counter[str]]:
        """Detectors only, for text that is not a row: errors, notices, output, bodies."""
        if self._scanner is None:
            return text, Counter()
        try:
            data = text.encode("utf-8")  # strict: a lone surrogate is withheld, not guessed at
            masked, counts = self._scanner.redact(data)
            return (text if masked is data else masked.decode("utf-8")), counts
        except Exception:
            return WITHHELD.decode(), Counter({WITHHELD_COUNT: 1})

    def withheld_row(self) -> tuple[list[Value], Counter[str]]:
        """A stand-in for a row that could not be read: markers for masked columns, else
        `[WITHHELD]` (so masking the stand-in again changes nothing)."""
        counts = _new_counter()
        out: list[Value] = []
        for i, masked in enumerate(self._masked):
            label = self._labels[i] if masked else WITHHELD_COUNT
            counts[label] = counts.get(label, 0) + 1
            out.append(self._marker if masked else WITHHELD)
        return out, counts

    # -- internals ----------------------------------------------------------------------------

    def _mask_rows(self, rows: Sequence[Sequence[Value]]) -> tuple[list[list[Value]], Counter[str]]:
        counts = _new_counter()
        out = [list(row) for row in rows]
        width, marker, labels = self._width, self._marker, self._labels
        good = []
        for row in out:
            if len(row) != width:
                self._withhold_all(row, counts)
                continue
            for i in self._mask_idx:
                if row[i] is not None:
                    row[i] = marker
                    counts[labels[i]] = counts.get(labels[i], 0) + 1
            good.append(row)
        candidates = self._candidates
        if candidates is None or not good:
            return out, counts
        flat = [b"" if v is None else v for row in good for v in row]
        joined = b"\0".join(flat)
        if not joined.isascii():
            joined.decode("utf-8")
        for k, piece in self._scanner.redact_parts(joined, len(flat), counts).items():  # type: ignore[union-attr]
            good[k // width][k % width] = piece
        return out, counts

    def _mask_row_slowly(self, values: Sequence[Value]) -> tuple[list[Value], Counter[str]]:
        counts = _new_counter()
        out: list[Value] = list(values)
        if len(out) != len(self._masked):
            return self._withhold_all(out, counts), counts
        for i, value in enumerate(out):
            if value is None:
                continue
            if self._masked[i]:
                out[i] = self._marker
                counts[self._labels[i]] = counts.get(self._labels[i], 0) + 1
            elif self._scanner is not None:
                out[i] = self._scan_one(value, counts)
        return out, counts

    def _scan_one(self, value: bytes, counts: Counter[str]) -> bytes:
        if self._scanner is None:
            return value
        try:
            data = bytes(value)
            if not data.isascii():
                data.decode("utf-8")
            masked, found = self._scanner.redact(data)
        except Exception:
            counts[WITHHELD_COUNT] += 1
            return WITHHELD
        counts.update(found)
        return masked

    @staticmethod
    def _withhold_all(out: list[Value], counts: Counter[str]) -> list[Value]:
        for i, value in enumerate(out):
            if value is not None:
                out[i] = WITHHELD
                counts[WITHHELD_COUNT] += 1
        return out
