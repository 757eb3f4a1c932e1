"""The per-DataRow hot path of `RowMasker.mask_row`, compiled once per result shape.

A result shape (how many columns, which are masked by a column rule) is known when its
RowDescription arrives, and every row of the result then takes the same steps. Written for any
shape, those steps loop over the values in Python several times per row (copy, drop NULLs to
join, put them back after the split), which costs more than the scan itself. Written for one
shape, as `dataclasses` and `namedtuple` write `__init__`, they become straight-line code with
one variable per column: unpack, join, one `re2.Set` scan, and on findings split and pick. For
three columns, the middle one masked, the function reads:

    def mask_row(values):
        try:
            v0, v1, v2, = values
            counts = new_counter()
            if v1 is not None:
                v1 = marker
                counts[labels[1]] = counts.get(labels[1], 0) + 1
            joined = b"\\0".join((v0 or b"", v1 or b"", v2 or b"",))
            if not joined.isascii():
                joined.decode("utf-8")
            hits = candidates(joined)
            if not hits:
                return [v0, v1, v2], counts
            found = {}
            masked = redact_hits(joined, hits, found)
            if masked is joined:
                return [v0, v1, v2], counts
            update(counts, found)
            q0, q1, q2, = masked.split(b"\\0")
            return [v0 and q0, v1 and q1, v2 and q2], counts
        except Exception:
            return slowly(values)

Rules:
- The result equals the per-value path's (`slowly`, RowMasker._mask_row_slowly) for every row;
  anything out of the ordinary raises inside and is handed to it: a row of another width (the
  unpack), a value that is not UTF-8 (the decode), a value holding NUL (the split has more
  parts than columns), any error while scanning. NULL joins as b"" and comes back as None
  (`v and q`); no pattern matches NUL or the empty string, so findings stay inside values.
- A shape with no masked column makes its Counter only once the set has found candidates; a
  row with nothing to count gets NO_COUNTS, one shared empty Counter that refuses changes (an
  allocation per row is a few percent of the clean path; no caller changes the counts it gets).
- The source is built from column numbers and fixed text only; names, markers and the scanner
  come in as arguments, never as text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

Value = bytes | None
MaskRow = Callable[[Sequence[Value]], tuple[list[Value], Counter[str]]]
Factory = Callable[..., MaskRow]


class _NoCounts(Counter[str]):
    """An empty Counter that cannot be changed (see NO_COUNTS)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("these counts are shared and read-only: copy them to change them")

    __setitem__ = __delitem__ = update = subtract = clear = _refuse
    pop = popitem = setdefault = _refuse
    __iadd__ = __isub__ = __ior__ = __iand__ = _refuse

    def copy(self) -> Counter[str]:  # type: ignore[override]  # a copy is a plain Counter
        return Counter()

    def __reduce__(self) -> tuple[type[Counter[str]], tuple[()]]:
        return Counter, ()

    def __repr__(self) -> str:
        return "Counter()"


# Counter.__init__ calls update(), refused here: make it as rows.py makes its counters.
NO_COUNTS: Counter[str] = Counter.__new__(_NoCounts)  # the counts of a row with nothing masked


def _source(width: int, masked: tuple[int, ...], scan: bool) -> str:
    values = ", ".join(f"v{i}" for i in range(width))  # trailing commas below: one column too
    lines = [
        "def make(candidates, redact_hits, slowly, marker, labels, new_counter):",
        "    def mask_row(values):",
        "        try:",
        f"            {values}, = values",
    ]
    # Without masked columns nothing is counted before the scan (rules: NO_COUNTS).
    early = bool(masked) or not scan
    if early:
        lines.append("            counts = new_counter()")
    for i in masked:
        lines += [
            f"            if v{i} is not None:",
            f"                v{i} = marker",
            f"                counts[labels[{i}]] = counts.get(labels[{i}], 0) + 1",
        ]
    if scan:
        parts = ", ".join(f'v{i} or b""' for i in range(width))
        pieces = ", ".join(f"q{i}" for i in range(width)) + ","
        picked = ", ".join(f"v{i} and q{i}" for i in range(width))
        lines += [
            f'            joined = b"\\0".join(({parts},))',
            "            if not joined.isascii():",
            '                joined.decode("utf-8")',
            "            hits = candidates(joined)",
            "            if not hits:",
            f"                return [{values}], {'counts' if early else 'NO_COUNTS'}",
        ]
        lines += [
            "            found = {}",
            "            masked = redact_hits(joined, hits, found)",
            "            if masked is joined:",
            f"                return [{values}], {'counts' if early else 'new_counter()'}",
        ]
        if not early:
            lines.append("            counts = new_counter()")
        lines += [
            "            update(counts, found)",
            f'            {pieces} = masked.split(b"\\0")',
            f"            return [{picked}], counts",
        ]
    else:
        lines.append(f"            return [{values}], counts")
    lines += [
        "        except Exception:",
        "            return slowly(values)",
        "    return mask_row",
    ]
    return "\n".join(lines) + "\n"


@lru_cache(maxsize=256)
def factory(width: int, masked: tuple[int, ...], scan: bool) -> Factory:
    """`make(candidates, redact_hits, slowly, marker, labels, new_counter) -> mask_row` for
    rows of `width` columns (at least one), the columns `masked` replaced by the marker, the
    others scanned if `scan`. Compiled once per shape; each RowMasker binds its own."""
    if width < 1 or any(not 0 <= i < width for i in masked):
        raise ValueError("a row shape has at least one column, and masks only its own")
    namespace: dict[str, Any] = {"NO_COUNTS": NO_COUNTS, "update": dict.update}
    exec(compile(_source(width, masked, scan), f"<mask_row {width}>", "exec"), namespace)
    make: Factory = namespace["make"]
    return make
