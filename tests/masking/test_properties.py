"""Properties over arbitrary input: never raises, never lets a known value through, idempotent."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from jitctl.masking import MaskPolicy, known_detectors, mask_json, scanner
from jitctl.masking.rules import ColumnRule
from jitctl.masking.validators import luhn_ok

POLICY = MaskPolicy([ColumnRule.parse("secret")], known_detectors())
COLUMNS = [(None, "a"), (None, "secret"), (None, "b")]
MASKER = POLICY.row_masker(COLUMNS)

values = st.one_of(st.none(), st.binary(max_size=80), st.text(max_size=80).map(str.encode))
rows = st.lists(values, min_size=3, max_size=3)
emails = st.from_regex(
    r"[a-z0-9][a-z0-9._+-]{0,15}@[a-z0-9-]{1,10}\.(com|org|io|co\.uk)", fullmatch=True
)


@st.composite
def cards(draw: st.DrawFn) -> str:
    """A Luhn-valid 16-digit card with an issuer digit, printed plain, spaced or dashed."""
    body = draw(st.sampled_from("23456")) + "".join(
        draw(st.lists(st.sampled_from("0123456789"), min_size=14, max_size=14))
    )
    digits = next(body + d for d in "0123456789" if luhn_ok((body + d).encode()))
    sep = draw(st.sampled_from(["", " ", "-"]))
    return sep.join(digits[i : i + 4] for i in range(0, 16, 4))


json_docs = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(st.text())
def test_mask_text_never_raises_and_is_idempotent(text: str) -> None:
    once, _ = POLICY.mask_text(text)
    assert POLICY.mask_text(once)[0] == once


@given(rows)
def test_mask_row_never_raises_and_is_idempotent(row: list[bytes | None]) -> None:
    once, counts = MASKER.mask_row(row)
    assert [v is None for v in once] == [v is None for v in row]
    assert MASKER.mask_row(once)[0] == once
    assert all(n > 0 for n in counts.values())


@given(st.lists(values, max_size=5))
def test_rows_of_any_width_never_raise(row: list[bytes | None]) -> None:
    out, _ = MASKER.mask_row(row)
    assert len(out) == len(row)


@given(st.lists(rows, max_size=6))
def test_mask_rows_equals_mask_row_one_by_one(batch: list[list[bytes | None]]) -> None:
    assert MASKER.mask_rows(batch)[0] == [MASKER.mask_row(row)[0] for row in batch]


@given(st.text(), emails, st.text())
def test_an_embedded_email_never_survives(before: str, email: str, after: str) -> None:
    text = f"{before} | {email} | {after}"
    out, counts = POLICY.mask_text(text)
    assert email not in out or email in before + after
    assert counts["EMAIL_ADDRESS"] >= 1


@given(st.text(), cards(), st.text())
def test_an_embedded_card_never_survives(before: str, card: str, after: str) -> None:
    text = f"{before} | {card} | {after}"
    row, _ = MASKER.mask_row([text.encode(), None, b"x"])
    out = (row[0] or b"").decode()
    assert card not in out or card in before + after


@given(st.binary(max_size=120), st.sampled_from(["text", "csv"]))
def test_copy_lines_never_raise_and_settle(line: bytes, fmt: str) -> None:
    once, _ = POLICY.mask_copy_line(line, fmt, [False, True, False])  # type: ignore[arg-type]
    assert POLICY.mask_copy_line(once, fmt, [False, True, False])[0] == once  # type: ignore[arg-type]


@settings(max_examples=60)
@given(json_docs)
def test_mask_json_never_raises_and_is_idempotent(doc: Any) -> None:
    once, _ = mask_json(doc, {"secret"}, POLICY)
    json.dumps(once)  # still a JSON document
    assert mask_json(once, {"secret"}, POLICY)[0] == once


# Text from the characters the detectors care about, so runs of digits, groups, capitals, @
# and dots meet far more often than in arbitrary Unicode.
dense = st.text(alphabet='0123456789 -.+()@abcAKIZGBDE\t\n\\"', max_size=60)


@given(dense)
def test_dense_text_settles(text: str) -> None:
    once, _ = POLICY.mask_text(text)
    assert POLICY.mask_text(once)[0] == once


@given(st.lists(st.lists(st.one_of(st.none(), dense.map(str.encode)), min_size=3, max_size=3)))
def test_dense_rows_batch_equals_single(batch: list[list[bytes | None]]) -> None:
    singles = [MASKER.mask_row(row)[0] for row in batch]
    assert MASKER.mask_rows(batch)[0] == singles
    assert [MASKER.mask_row(row)[0] for row in singles] == singles


@given(st.lists(st.lists(st.one_of(st.none(), dense.map(str.encode)), min_size=3, max_size=3)))
def test_batches_scanned_in_small_chunks_equal_single_rows(batch: list[list[bytes | None]]) -> None:
    """Chunk boundaries (cut at value boundaries) change nothing."""
    saved, scanner.CHUNK = scanner.CHUNK, 16
    try:
        assert MASKER.mask_rows(batch)[0] == [MASKER.mask_row(row)[0] for row in batch]
    finally:
        scanner.CHUNK = saved
