"""results.Shape: how DataRow values reach the masker, by column format."""

from __future__ import annotations

from collections import Counter

from jitctl.masking import MaskPolicy, known_detectors
from jitctl.masking.rules import ColumnRule
from jitctl_postgres.messages import Column
from jitctl_postgres.results import JSONB, Shape

POLICY = MaskPolicy([ColumnRule.parse("email")], known_detectors())
COLUMNS = [
    Column(name="email", table_oid=0, attnum=0, type_oid=25, typlen=-1, typmod=-1, format=0),
    Column(name="note", table_oid=0, attnum=0, type_oid=25, typlen=-1, typmod=-1, format=0),
    Column(name="doc", table_oid=0, attnum=0, type_oid=JSONB, typlen=-1, typmod=-1, format=0),
]
ROW: list[bytes | None] = [b"a@b.co", b"card 4111 1111 1111 1111", None]


def test_a_text_format_row_is_masked_as_the_row_masker_masks_it() -> None:
    shape = Shape(POLICY, COLUMNS, [0, 0, 0], {})
    assert shape.mask(list(ROW)) == (
        [b"[MASKED]", b"card [CREDIT_CARD_NUMBER]", None],
        Counter({"COLUMN:email": 1, "CREDIT_CARD_NUMBER": 1}),
    )


def test_binary_jsonb_is_masked_behind_its_version_byte() -> None:
    shape = Shape(POLICY, COLUMNS, [0, 0, 1], {})
    out, counts = shape.mask([b"x", b"y", b'\x01{"k": "a@b.co"}'])
    assert out == [b"[MASKED]", b"y", b'\x01{"k": "[EMAIL_ADDRESS]"}']
    assert counts == Counter({"COLUMN:email": 1, "EMAIL_ADDRESS": 1})


def test_a_row_of_another_width_is_withheld() -> None:
    shape = Shape(POLICY, COLUMNS, [0, 0, 0], {})
    assert shape.mask([b"a", None]) == ([b"[WITHHELD]", None], Counter(WITHHELD=1))
