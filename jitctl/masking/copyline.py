"""Masking one COPY OUT row, in text or csv format (PostgreSQL docs, "COPY" → File Formats).

Rules:
- One call masks one CopyData payload; the backend sends exactly one row per CopyData, ending
  in `\\n` (COPY TO STDOUT always uses `\\n`, on every platform). The terminator is kept.
- Text format: fields split on the delimiter (tab) where it is not backslash-escaped; a field
  whose raw bytes equal the null string (`\\N`) is NULL; other fields are de-escaped (`\\n`,
  `\\t`, octal `\\123`, hex `\\x41`, `\\c` = c) before they are scanned, so a value cannot hide a
  finding behind escapes, and re-escaped the way the server would when they change.
- CSV format: `"`-quoted fields with doubled quotes; an unquoted field equal to the null string
  (default: empty) is NULL, `""` is the empty string; a changed field is written quoted. Other
  QUOTE or ESCAPE characters are not supported: the gateway should refuse them on masked
  targets.
- Fields that did not change are written back byte for byte as received.
- Fail closed: a line that cannot be parsed, or holds another number of fields than the result
  has columns, is replaced by a stand-in line with one field per column: the marker in masked
  columns, `[WITHHELD]` in the others.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Literal

from jitctl.masking.rows import WITHHELD, WITHHELD_COUNT, RowMasker

_TEXT_ESCAPE = re.compile(rb"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|(.))", re.S)
_LETTERS = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}
_CONTROLS = [(v, b"\\" + k) for k, v in _LETTERS.items()]


def _unescape_char(match: re.Match[bytes]) -> bytes:
    octal, hexa, other = match.groups()
    if octal is not None:
        return bytes([int(octal, 8) & 0xFF])
    if hexa is not None:
        return bytes([int(hexa, 16)])
    return _LETTERS.get(other, other)


def split_text(body: bytes, delimiter: bytes) -> list[bytes]:
    """Raw (still escaped) fields of a text-format row; an escaped delimiter does not split."""
    if b"\\" not in body:
        return body.split(delimiter)
    fields = []
    start = pos = 0
    while True:
        cut = body.find(delimiter, pos)
        slash = body.find(b"\\", pos)
        if slash != -1 and (cut == -1 or slash < cut):
            pos = slash + 2  # the escaped byte is data, whatever it is
            continue
        if cut == -1:
            fields.append(body[start:])
            return fields
        fields.append(body[start:cut])
        start = pos = cut + 1


def unescape_text(field: bytes) -> bytes:
    return _TEXT_ESCAPE.sub(_unescape_char, field) if b"\\" in field else field


def escape_text(value: bytes, delimiter: bytes) -> bytes:
    """Escape as the server's COPY TO does (backslash, control letters, the delimiter)."""
    value = value.replace(b"\\", b"\\\\")
    for raw, escaped in _CONTROLS:
        value = value.replace(raw, escaped)
    if delimiter not in (b"\\", *_LETTERS.values()):
        value = value.replace(delimiter, b"\\" + delimiter)
    return value


def split_csv(body: bytes, delimiter: int, quote: int = 0x22) -> list[tuple[bytes, bool, bytes]]:
    """(value, quoted, raw bytes) per field of a csv row; ValueError if the row is malformed."""
    fields: list[tuple[bytes, bool, bytes]] = []
    q = bytes([quote])
    pos, size = 0, len(body)
    while True:
        start = pos
        quoted = pos < size and body[pos] == quote
        if quoted:
            pieces = []
            pos += 1
            while True:
                close = body.find(q, pos)
                if close == -1:
                    raise ValueError("unterminated quoted field")
                pieces.append(body[pos:close])
                if body[close + 1 : close + 2] == q:  # doubled quote: a literal quote
                    pieces.append(q)
                    pos = close + 2
                    continue
                pos = close + 1
                break
            value = b"".join(pieces)
        else:
            cut = body.find(bytes([delimiter]), pos)
            pos = size if cut == -1 else cut
            value = body[start:pos]
        fields.append((value, quoted, body[start:pos]))
        if pos == size:
            return fields
        if body[pos] != delimiter:
            raise ValueError("data after a closing quote")
        pos += 1


def quote_csv(value: bytes, quote: bytes) -> bytes:
    return quote + value.replace(quote, quote + quote) + quote


def mask_copy_line(
    line: bytes,
    fmt: Literal["text", "csv"],
    masker: RowMasker,
    *,
    delimiter: bytes | None = None,
    null: bytes | None = None,
) -> tuple[bytes, Counter[str]]:
    """Mask one COPY OUT row with `masker` (whose column flags say which fields to mask)."""
    delim = delimiter or (b"\t" if fmt == "text" else b",")
    terminator = b"\n" if line.endswith(b"\n") else b""
    body = line[: len(line) - len(terminator)]
    try:
        if len(delim) != 1 or fmt not in ("text", "csv"):
            raise ValueError("unsupported COPY options")
        if fmt == "text":
            out = _mask_text_row(body, delim, b"\\N" if null is None else null, masker)
        else:
            out = _mask_csv_row(body, delim, b"" if null is None else null, masker)
        return out[0] + terminator, out[1]
    except Exception:
        values, counts = masker.withheld_row()
        if not values:
            values, counts = [WITHHELD], Counter({WITHHELD_COUNT: 1})
        quote = (lambda v: quote_csv(v, b'"')) if fmt == "csv" else (lambda v: v)
        return delim.join(quote(v) for v in values if v is not None) + terminator, counts


def _mask_text_row(
    body: bytes, delim: bytes, null: bytes, masker: RowMasker
) -> tuple[bytes, Counter[str]]:
    raw = split_text(body, delim)
    if len(raw) != len(masker.masked_columns):
        raise ValueError("the row has another number of fields than the result has columns")
    values = [None if field == null else unescape_text(field) for field in raw]
    masked, counts = masker.mask_row(values)
    if not counts:
        return body, counts
    fields = [
        r if m == v else escape_text(m, delim)  # type: ignore[arg-type]  # m is None iff v is
        for r, v, m in zip(raw, values, masked, strict=True)
    ]
    return delim.join(fields), counts


def _mask_csv_row(
    body: bytes, delim: bytes, null: bytes, masker: RowMasker
) -> tuple[bytes, Counter[str]]:
    parsed = split_csv(body, delim[0])
    if len(parsed) != len(masker.masked_columns):
        raise ValueError("the row has another number of fields than the result has columns")
    # Only an unquoted field equal to the NULL string is NULL; "" is the empty string.
    values = [None if not quoted and raw == null else value for value, quoted, raw in parsed]
    masked, counts = masker.mask_row(values)
    if not counts:
        return body, counts
    fields = [
        raw if m == v else quote_csv(m, b'"')  # type: ignore[arg-type]  # m is None iff v is
        for (_, _, raw), v, m in zip(parsed, values, masked, strict=True)
    ]
    return delim.join(fields), counts
