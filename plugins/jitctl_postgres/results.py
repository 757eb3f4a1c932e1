"""Masking what the server sends back: DataRows, COPY OUT lines, error and notice text.

Rules (notes §8, masking notes §6):
- A result's shape comes from its RowDescription (column name, table OID, attribute number,
  type OID, format). Table OIDs are named through the catalog read at session start
  (`schema.table`); an OID the catalog does not know (0 for expressions, or a table created
  later) is passed as `None`, which the mask policy treats as "any table": more masking, never
  less. A column that is a plain reference to a table column is matched under its real name
  too (table OID + attribute number), so an alias does not unmask it.
- Text-format values go to the mask policy's RowMasker as they are. Binary-format values of
  text-like types (text, varchar, bpchar, name, json, citext when the catalog found it; jsonb
  without its version byte) are UTF-8 on the wire, so they are masked the same way and
  re-encoded. Any other binary value in a masked column becomes NULL; binary values of other
  types in unmasked columns pass unscanned (detectors read text, not int8 or numeric bytes).
- A DataRow with no known shape on a masked target has every value replaced by the marker.
- Error and notice fields that carry values (M, D, H, W, q) and notification payloads are
  scanned as text. The caller records only what these functions return.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from .messages import Column, build_data_row, data_row, error_response

TEXT_TYPES = frozenset({25, 1043, 1042, 19, 114})  # text, varchar, bpchar, name, json
JSONB = 3802
MASKED_FIELDS = ("M", "D", "H", "W", "q")


def table_name(oid: int, tables: Mapping[int, str]) -> str | None:
    return tables.get(oid) if oid else None


class Shape:
    """One result's columns and formats, with the masker built for them."""

    def __init__(
        self,
        masks: Any,  # jitctl.masking.MaskPolicy, or None when the target masks nothing
        columns: Sequence[Column],
        formats: Sequence[int],
        tables: Mapping[int, str],
        text_types: frozenset[int] = TEXT_TYPES,
        attnames: Mapping[int, Mapping[int, str]] | None = None,
    ) -> None:
        self.columns = list(columns)
        self.names = [c.name for c in columns]
        self.formats = list(formats)
        self.types = [c.type_oid for c in columns]
        self.text_types = text_types
        self.masker = None
        self.masked: list[bool] = [False] * len(columns)
        # Every column in text format (the usual case): DataRow values go to the masker as
        # they are, without the per-value look at formats below.
        self.text_only = not any(self.formats)
        if masks is not None:
            cols = [self._column(masks, c, tables, attnames or {}) for c in columns]
            self.masker = masks.row_masker(cols)
            self.masked = list(masks.columns_masked(cols))

    @staticmethod
    def _column(
        masks: Any,
        column: Column,
        tables: Mapping[int, str],
        attnames: Mapping[int, Mapping[int, str]],
    ) -> tuple[str | None, str]:
        """(table, name) to match masks with: the real column name (from the catalog, by
        table OID and attribute number) when it is masked, so `email AS e` stays masked."""
        table = table_name(column.table_oid, tables)
        real = attnames.get(column.table_oid, {}).get(column.attnum) if column.attnum > 0 else None
        if real and real != column.name and masks.columns_masked([(table, real)])[0]:
            return table, real
        return table, column.name

    def mask(self, values: list[bytes | None]) -> tuple[list[bytes | None], Counter[str]]:
        """The masked values of one row (the shape's masker must exist)."""
        assert self.masker is not None
        if len(values) != len(self.formats):
            return [None if v is None else b"[WITHHELD]" for v in values], Counter(WITHHELD=1)
        if self.text_only:
            return self.masker.mask_row(values)  # type: ignore[no-any-return]
        counts: Counter[str] = Counter()
        scan: list[bytes | None] = list(values)
        kept: dict[int, bytes] = {}
        for i, fmt in enumerate(self.formats):
            value = values[i]
            if fmt == 0 or value is None:
                continue
            type_oid = self.types[i]
            if type_oid in self.text_types:
                continue
            if type_oid == JSONB and value[:1] == b"\x01":
                scan[i] = value[1:]
                continue
            scan[i] = None  # not text: the masker never sees it
            if self.masked[i]:
                counts[f"COLUMN:{self.names[i]}"] += 1
            else:
                kept[i] = value
        out, found = self.masker.mask_row(scan)
        counts.update(found)
        for i, fmt in enumerate(self.formats):
            masked_value = out[i]
            if fmt != 0 and masked_value is not None and self.types[i] == JSONB:
                out[i] = b"\x01" + masked_value  # jsonb's binary format: version 1, then text
        for i, value in kept.items():
            out[i] = value
        return out, counts


def mask_data_row(
    shape: Shape | None, body: bytes, marker: bytes
) -> tuple[bytes | None, Counter[str], list[bytes | None]]:
    """(replacement DataRow or None if unchanged, counts, the values as sent on)."""
    values = data_row(body)
    if shape is None or shape.masker is None:
        if shape is None:
            out: list[bytes | None] = [None if v is None else marker for v in values]
            return build_data_row(out), Counter(WITHHELD=sum(v is not None for v in values)), out
        return None, Counter(), values
    masked, counts = shape.mask(values)
    if masked == values:
        return None, counts, values
    return build_data_row(masked), counts, masked


def mask_fields(masks: Any, fields: dict[str, str]) -> tuple[dict[str, str], Counter[str]]:
    counts: Counter[str] = Counter()
    out = dict(fields)
    for code in MASKED_FIELDS:
        if code in out:
            out[code], found = masks.mask_text(out[code])
            counts.update(found)
    return out, counts


def masked_error(
    masks: Any, fields: dict[str, str], kind: bytes
) -> tuple[bytes, dict[str, str], Counter[str]]:
    out, counts = mask_fields(masks, fields)
    return error_response(out, kind), out, counts


def sample(
    values: Sequence[bytes | None],
    formats: Sequence[int],
    types: Sequence[int],
    text_types: frozenset[int] = TEXT_TYPES,
) -> list[str | None]:
    """A recorded row (already masked): text as text, binary text-like types too, other binary
    values as `\\x` hex."""
    row: list[str | None] = []
    for i, value in enumerate(values):
        binary = i < len(formats) and formats[i] == 1
        type_oid = types[i] if i < len(types) else 0
        if value is None:
            row.append(None)
        elif binary and type_oid == JSONB and value[:1] == b"\x01":
            row.append(value[1:].decode("utf-8", "replace"))
        elif binary and type_oid not in text_types:
            row.append("\\x" + value.hex())
        else:
            row.append(value.decode("utf-8", "replace"))
    return row


def result_formats(codes: Sequence[int], count: int) -> list[int]:
    """Bind's result-format codes for `count` columns (message formats: Bind): none = all text,
    one = all that, else one per column."""
    if not codes:
        return [0] * count
    if len(codes) == 1:
        return [codes[0]] * count
    return list(codes[:count]) + [0] * max(0, count - len(codes))


class CopyOut:
    """Masks one COPY OUT stream line by line (one CopyData per row, sql-copy)."""

    def __init__(
        self,
        masks: Any,
        fmt: str,
        flags: Sequence[bool],
        names: Sequence[str],
        delimiter: bytes | None,
        null: bytes | None,
        header: bool,
    ) -> None:
        self.masks, self.fmt, self.flags, self.names = masks, fmt, list(flags), tuple(names)
        self.delimiter, self.null, self.header = delimiter, null, header

    def line(self, data: bytes) -> tuple[bytes, Counter[str]]:
        flags = self.flags
        if self.header:
            self.header = False
            flags = [False] * len(flags)
        line: bytes
        line, counts = self.masks.mask_copy_line(
            data, self.fmt, flags, names=self.names, delimiter=self.delimiter, null=self.null
        )
        return line, counts
