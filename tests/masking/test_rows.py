"""RowMasker: column masks, detectors, NULLs, counts, batches, and failing closed."""

from __future__ import annotations

from collections import Counter

import pytest

from jitctl.masking import MASKED, WITHHELD, MaskPolicy, RowMasker, Scanner, known_detectors
from jitctl.masking.detectors import DETECTORS, Detector
from jitctl.masking.rules import ColumnRule

COLUMNS = [("customers", "id"), ("customers", "email"), ("customers", "note"), (None, "extra")]


@pytest.fixture
def masker() -> RowMasker:
    policy = MaskPolicy([ColumnRule.parse("email")], known_detectors())
    return policy.row_masker(COLUMNS)


def test_masked_column_becomes_the_marker_and_is_counted(masker: RowMasker) -> None:
    out, counts = masker.mask_row([b"1", b"alice@example.com", b"hello", b"x"])
    assert out == [b"1", MASKED, b"hello", b"x"]
    assert counts == Counter({"COLUMN:email": 1})


def test_detectors_scan_every_other_column(masker: RowMasker) -> None:
    out, counts = masker.mask_row([b"4111111111111111", None, b"bob@example.org said hi", None])
    assert out == [b"[CREDIT_CARD_NUMBER]", None, b"[EMAIL_ADDRESS] said hi", None]
    assert counts == Counter({"CREDIT_CARD_NUMBER": 1, "EMAIL_ADDRESS": 1})


def test_null_stays_null_in_masked_and_scanned_columns(masker: RowMasker) -> None:
    assert masker.mask_row([None, None, None, None]) == ([None, None, None, None], Counter())


def test_clean_row_comes_back_unchanged(masker: RowMasker) -> None:
    row = [b"42", None, b"2025-05-01 12:00:00+00", b""]
    assert masker.mask_row(row) == (row, Counter())


def test_findings_never_cross_values(masker: RowMasker) -> None:
    """Two halves of a card in adjacent columns are two values, not one card."""
    out, _ = masker.mask_row([b"41111111", b"x", b"11111111", b"a@b.co"])
    assert out == [b"41111111", MASKED, b"11111111", b"[EMAIL_ADDRESS]"]


def test_values_holding_nul_are_scanned_one_by_one(masker: RowMasker) -> None:
    out, counts = masker.mask_row([b"a\x00a@b.co", None, b"\x00\x00", b"x"])
    assert out == [b"a\x00[EMAIL_ADDRESS]", None, b"\x00\x00", b"x"]
    assert counts == Counter({"EMAIL_ADDRESS": 1})


def test_invalid_utf8_is_withheld_and_the_rest_still_masked(masker: RowMasker) -> None:
    out, counts = masker.mask_row([b"\xff\xfe a@b.co", b"x", b"ok a@b.co", b"caf\xc3\xa9"])
    assert out == [WITHHELD, MASKED, b"ok [EMAIL_ADDRESS]", "café".encode()]
    assert counts == Counter({"WITHHELD": 1, "COLUMN:email": 1, "EMAIL_ADDRESS": 1})


def test_row_of_the_wrong_width_is_withheld_whole(masker: RowMasker) -> None:
    out, counts = masker.mask_row([b"1", None, b"a@b.co"])
    assert out == [WITHHELD, None, WITHHELD]
    assert counts == Counter({"WITHHELD": 2})


def test_memoryview_values_are_accepted(masker: RowMasker) -> None:
    out, _ = masker.mask_row([memoryview(b"a@b.co"), None, b"x", None])  # type: ignore[list-item]
    assert out[0] == b"[EMAIL_ADDRESS]"


def test_mask_rows_matches_mask_row(masker: RowMasker) -> None:
    rows: list[list[bytes | None]] = [
        [b"1", b"a@b.co", b"card 4111111111111111", None],
        [b"2", None, None, b"clean"],
        [b"3", b"x", b"\xff", b"c@d.io"],
        [b"4", b"short row"],
        [b"5", b"y", b"ssn 536-22-1234 and 536-22-1234", b"z"],
    ]
    batch, batch_counts = masker.mask_rows(rows)
    singles = [masker.mask_row(row) for row in rows]
    assert batch == [out for out, _ in singles]
    assert batch_counts == sum((c for _, c in singles), Counter())


def test_without_detectors_only_columns_are_masked() -> None:
    masker = MaskPolicy([ColumnRule.parse("email")]).row_masker(COLUMNS)
    out, counts = masker.mask_row([b"1", b"a@b.co", b"a@b.co \xff", None])
    assert out == [b"1", MASKED, b"a@b.co \xff", None]
    assert counts == Counter({"COLUMN:email": 1})


def test_marker_is_configurable() -> None:
    policy = MaskPolicy([ColumnRule.parse("email")], marker=b"***")
    assert policy.row_masker([(None, "email")]).mask_row([b"a"])[0] == [b"***"]


# -- failing closed -----------------------------------------------------------------------------


def _boom(data: bytes, start: int, end: int) -> list[tuple[int, int]]:
    raise RuntimeError("validator bug")


BOOM = Scanner([DETECTORS["EMAIL_ADDRESS"], Detector("BOOM", "[0-9]{3,}", _boom)])


def test_a_failing_detector_withholds_the_value_not_the_row() -> None:
    masker = RowMasker(BOOM, [False, False, True])
    out, counts = masker.mask_row([b"order 12345 for a@b.co", b"a@b.co", b"secret"])
    assert out == [WITHHELD, b"[EMAIL_ADDRESS]", MASKED]
    assert counts == Counter({"WITHHELD": 1, "EMAIL_ADDRESS": 1, "COLUMN:#3": 1})


def test_a_failing_detector_withholds_text() -> None:
    masker = RowMasker(BOOM, [])
    assert masker.mask_text("error at row 12345") == ("[WITHHELD]", Counter({"WITHHELD": 1}))
    assert masker.mask_text("no digits, a@b.co") == (
        "no digits, [EMAIL_ADDRESS]",
        {"EMAIL_ADDRESS": 1},
    )


def test_a_failing_detector_in_a_batch_withholds_only_its_values() -> None:
    masker = RowMasker(BOOM, [False])
    out, counts = masker.mask_rows([[b"id 123"], [b"a@b.co"], [None]])
    assert out == [[WITHHELD], [b"[EMAIL_ADDRESS]"], [None]]
    assert counts == Counter({"WITHHELD": 1, "EMAIL_ADDRESS": 1})


def test_text_that_cannot_be_encoded_is_withheld() -> None:
    policy = MaskPolicy([], ["EMAIL_ADDRESS"])
    assert policy.mask_text("lone \ud800 surrogate")[0] == "[WITHHELD]"


def test_a_large_batch_matches_row_by_row(masker: RowMasker) -> None:
    """Batches longer than a scan chunk are cut at value boundaries without losing findings."""
    rows: list[list[bytes | None]] = [
        [
            str(i).encode(),
            b"x" if i % 3 else None,
            f"row {i} mail user{i}@example.com card 4111 1111 1111 1111".encode()
            if i % 7 == 0
            else b"nothing to see in this row at all",
            f"536-22-{1000 + i}".encode() if i % 5 == 0 else None,
        ]
        for i in range(400)
    ]
    batch, counts = masker.mask_rows(rows)
    assert batch == [masker.mask_row(row)[0] for row in rows]
    assert counts["EMAIL_ADDRESS"] == counts["CREDIT_CARD_NUMBER"] == 58
    assert counts["US_SOCIAL_SECURITY_NUMBER"] == 80
