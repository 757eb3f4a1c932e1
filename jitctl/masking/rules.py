"""A target's masks, compiled: which result columns are masked, which detectors scan the rest.

Column patterns (from `[[targets.masks]] columns`), matched case-insensitively:
- `email`, `*.email`: a column named `email` in any table, or with no table at all;
- `customers.card_number`: that column of a table named `customers`, in any schema;
- `public.customers.ssn`: only in schema `public` when the table's schema is known;
- `*` inside a part matches any run of characters: `*_ssn`, `customers.*`, `pii_*.*`.

Rules:
- Fail closed on what the gateway cannot know: a table-qualified pattern also masks a column
  of that name whose table is unknown (an expression, a function, a view the gateway could not
  resolve), and a schema-qualified pattern matches a table given without its schema.
- Every mask of a target applies to every result: columns and detectors are the union of all
  its `[[targets.masks]]` entries.
- A bad pattern or an unknown detector is a `ConfigError` at load, never a silent no-op.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from jitctl.errors import ConfigError
from jitctl.masking import copyline
from jitctl.masking.rows import MASKED, RowMasker
from jitctl.masking.scanner import Scanner, scanner_for

if TYPE_CHECKING:
    from jitctl.config import Mask

Column = tuple[str | None, str]  # (table, possibly "schema.table", or None; column name)


class BadColumnPattern(ConfigError):
    """A mask's column pattern cannot be parsed."""

    def __init__(self, pattern: str, why: str) -> None:
        super().__init__(
            f"bad column pattern {pattern!r}: {why}",
            hint="use column, table.column or schema.table.column; * matches any characters",
        )


def _part(text: str) -> re.Pattern[str] | None:
    """A compiled glob for one dotted part; None for `*` (anything)."""
    if text == "*":
        return None
    return re.compile(".*".join(re.escape(piece) for piece in text.split("*")), re.S)


@dataclass(frozen=True)
class ColumnRule:
    """One column pattern, compiled."""

    pattern: str
    schema: re.Pattern[str] | None
    table: re.Pattern[str] | None
    column: re.Pattern[str] | None

    @classmethod
    def parse(cls, pattern: str) -> ColumnRule:
        parts = pattern.strip().casefold().split(".")
        if len(parts) > 3:
            raise BadColumnPattern(pattern, "more than three dotted parts")
        if any(not part.strip() for part in parts):
            raise BadColumnPattern(pattern, "an empty part")
        schema, table, column = [None] * (3 - len(parts)) + [_part(p.strip()) for p in parts]
        return cls(pattern, schema, table, column)

    def matches(self, table: str | None, column: str) -> bool:
        if self.column is not None and not self.column.fullmatch(column.casefold()):
            return False
        if self.table is None or table is None:
            return True  # no table in the pattern, or unknown table: fail closed (module doc)
        schema, _, name = table.casefold().rpartition(".")
        if not self.table.fullmatch(name):
            return False
        return self.schema is None or not schema or bool(self.schema.fullmatch(schema))


class MaskPolicy:
    """Everything a gateway needs to mask one target's results, text, COPY and JSON."""

    def __init__(
        self,
        rules: Sequence[ColumnRule],
        detectors: Sequence[str] = (),
        *,
        marker: bytes = MASKED,
        scanner: Scanner | None = None,
    ) -> None:
        """`scanner` replaces the named detectors with any compiled set (tests, custom ones)."""
        self.rules = tuple(rules)
        self.scanner = scanner_for(tuple(detectors)) if scanner is None else scanner
        self.detectors = self.scanner.names
        self.marker = marker
        self._text = RowMasker(self.scanner, ())
        self._by_shape: dict[tuple[tuple[bool, ...], tuple[str, ...]], RowMasker] = {}

    @classmethod
    def from_config(cls, masks: Sequence[Mask], *, marker: bytes = MASKED) -> MaskPolicy:
        """Compile a target's `masks`; `UnknownDetector` / `BadColumnPattern` if invalid."""
        rules = [ColumnRule.parse(p) for mask in masks for p in mask.columns]
        return cls(rules, [name for mask in masks for name in mask.detectors], marker=marker)

    @property
    def active(self) -> bool:
        """Whether there is anything to mask at all (if not, pass results through untouched)."""
        return bool(self.rules or self.detectors)

    def columns_masked(self, columns: Sequence[Column]) -> list[bool]:
        """Per result column (table or None, column name): does a column rule mask it?"""
        return [any(rule.matches(t, c) for rule in self.rules) for t, c in columns]

    def row_masker(self, columns: Sequence[Column]) -> RowMasker:
        """A masker for rows of this shape (build it once per RowDescription)."""
        flags = self.columns_masked(columns)
        return RowMasker(self.scanner, flags, [c for _, c in columns], marker=self.marker)

    def mask_text(self, text: str) -> tuple[str, Counter[str]]:
        """Detectors only: error and notice fields, terminal output, HTTP bodies."""
        return self._text.mask_text(text)

    def mask_copy_line(
        self,
        line: bytes,
        fmt: Literal["text", "csv"],
        masked_columns: Sequence[bool],
        *,
        names: Sequence[str] = (),
        delimiter: bytes | None = None,
        null: bytes | None = None,
    ) -> tuple[bytes, Counter[str]]:
        """One COPY OUT row (one CopyData payload): column masks per field, detectors on all.

        `delimiter` and `null` default to COPY's (tab and `\\N` for text, comma and the
        unquoted empty string for csv); a HEADER line is passed with no column masked.
        `names` (the fields' column names, when known) name the counts: `COLUMN:email`, else
        `COLUMN:#3`.
        """
        shape = (tuple(masked_columns), tuple(names))
        masker = self._by_shape.get(shape)
        if masker is None:
            masker = RowMasker(self.scanner, shape[0], shape[1], marker=self.marker)
            if len(self._by_shape) < 64:
                self._by_shape[shape] = masker
        return copyline.mask_copy_line(line, fmt, masker, delimiter=delimiter, null=null)
