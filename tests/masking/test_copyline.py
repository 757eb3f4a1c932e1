"""COPY OUT rows in text and csv format: fields, escapes, quotes, NULLs, failing closed."""

from __future__ import annotations

from collections import Counter

import pytest

from jitctl.masking import MaskPolicy, Scanner
from jitctl.masking.detectors import DETECTORS, Detector

POLICY = MaskPolicy([], ["EMAIL_ADDRESS", "CREDIT_CARD_NUMBER"])

TEXT = [
    # (line, masked columns, expected line)
    (b"1\talice@example.com\tnote\n", [False, True, False], b"1\t[MASKED]\tnote\n"),
    (b"1\t\\N\t\\N\n", [False, True, False], b"1\t\\N\t\\N\n"),  # NULL stays NULL
    (b"x\\tbob@x.io\\n\n", [False], b"x\\t[EMAIL_ADDRESS]\\n\n"),  # re-escaped
    (b"a\\100b.co\n", [False], b"[EMAIL_ADDRESS]\n"),  # octal escapes hide nothing
    (b"a\\x40b.co\n", [False], b"[EMAIL_ADDRESS]\n"),  # nor hex ones
    (b"\\\\N\n", [True], b"[MASKED]\n"),  # an escaped backslash: the string \N, not NULL
    (b"\\101\t4111111111111111\n", [False, False], b"\\101\t[CREDIT_CARD_NUMBER]\n"),
    (b"a\\\tb@c.io\n", [False], b"a\\t[EMAIL_ADDRESS]\n"),  # escaped raw tab: one field
    (b"no newline a@b.co", [False], b"no newline [EMAIL_ADDRESS]"),
    (b"back\\\\slash a@b.co\n", [False], b"back\\\\slash [EMAIL_ADDRESS]\n"),
    (b"1\t2\n", [False, True, False], b"[WITHHELD]\t[MASKED]\t[WITHHELD]\n"),  # width
]

CSV = [
    (
        b'1,alice@example.com,"note, with comma"\n',
        [False, True, False],
        b'1,"[MASKED]","note, with comma"\n',
    ),
    (b'"he said ""a@b.co"""\n', [False], b'"he said ""[EMAIL_ADDRESS]"""\n'),
    (b',"",x\n', [True, True, False], b',"[MASKED]",x\n'),  # NULL stays; "" is a value
    (b'"line1\n4111111111111111"\n', [False], b'"line1\n[CREDIT_CARD_NUMBER]"\n'),
    (b"plain,a@b.co\n", [False, False], b'plain,"[EMAIL_ADDRESS]"\n'),
    (b'"unterminated,a@b.co\n', [False, False], b'"[WITHHELD]","[WITHHELD]"\n'),
    (b'"a"b,c\n', [False, False], b'"[WITHHELD]","[WITHHELD]"\n'),
]


@pytest.mark.parametrize(("line", "masked", "expected"), TEXT)
def test_text_format(line: bytes, masked: list[bool], expected: bytes) -> None:
    assert POLICY.mask_copy_line(line, "text", masked)[0] == expected


@pytest.mark.parametrize(("line", "masked", "expected"), CSV)
def test_csv_format(line: bytes, masked: list[bool], expected: bytes) -> None:
    assert POLICY.mask_copy_line(line, "csv", masked)[0] == expected


def test_text_with_another_delimiter_escapes_it() -> None:
    out, _ = POLICY.mask_copy_line(b"a\\,b@x.io,c\n", "text", [False, False], delimiter=b",")
    assert out == b"a\\,[EMAIL_ADDRESS],c\n"


def test_csv_with_another_null_string() -> None:
    out, _ = POLICY.mask_copy_line(b"NULL,\n", "csv", [True, True], null=b"NULL")
    assert out == b'NULL,"[MASKED]"\n'


def test_counts_name_columns_by_name_when_known_else_by_position() -> None:
    _, counts = POLICY.mask_copy_line(b"a@b.co\tx\n", "text", [False, True])
    assert counts == Counter({"EMAIL_ADDRESS": 1, "COLUMN:#2": 1})
    named = POLICY.mask_copy_line(b"a@b.co\tx\n", "text", [False, True], names=("note", "ssn"))
    assert named[1] == Counter({"EMAIL_ADDRESS": 1, "COLUMN:ssn": 1})


def test_withheld_line_is_counted_per_field() -> None:
    _, counts = POLICY.mask_copy_line(b"only one field\n", "text", [False, False])
    assert counts == Counter({"WITHHELD": 2})


def test_failing_detector_withholds_the_field() -> None:
    def boom(data: bytes, start: int, end: int) -> list[tuple[int, int]]:
        raise RuntimeError("validator bug")

    policy = MaskPolicy(
        [], scanner=Scanner([Detector("BOOM", "[0-9]+", boom), DETECTORS["EMAIL_ADDRESS"]])
    )
    out, counts = policy.mask_copy_line(b"id 7\ta@b.co\tok\n", "text", [False, False, False])
    assert out == b"[WITHHELD]\t[EMAIL_ADDRESS]\tok\n"
    assert counts == Counter({"WITHHELD": 1, "EMAIL_ADDRESS": 1})
