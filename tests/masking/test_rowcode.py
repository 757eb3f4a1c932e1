"""The compiled per-shape row path: its source is what rowcode.py's docstring shows."""

from __future__ import annotations

import textwrap
from collections import Counter

import pytest

from jitctl.masking import MaskPolicy, known_detectors, rowcode


def test_the_documented_example_is_the_generated_source() -> None:
    doc = rowcode.__doc__ or ""
    shown = doc[doc.index("    def mask_row(values):") : doc.index("Rules:")].strip()
    source = rowcode._source(3, (1,), True)
    body = source[source.index("    def mask_row(values):") : source.index("    return mask_row")]
    assert textwrap.dedent(body).strip() == textwrap.dedent("    " + shown).strip()


@pytest.mark.parametrize(("width", "masked"), [(0, ()), (2, (2,)), (2, (-1,))])
def test_a_shape_without_columns_or_masking_another_is_refused(
    width: int, masked: tuple[int, ...]
) -> None:
    with pytest.raises(ValueError):
        rowcode.factory(width, masked, True)


def test_a_row_with_nothing_masked_gets_the_shared_read_only_counts() -> None:
    """One allocation fewer per clean row; a caller cannot change what other rows get."""
    masker = MaskPolicy([], known_detectors()).row_masker([(None, "a"), (None, "b")])
    _, counts = masker.mask_row([b"hello", None])
    assert counts is rowcode.NO_COUNTS and counts == Counter() and not counts
    with pytest.raises(TypeError):
        counts["EMAIL_ADDRESS"] += 1
    with pytest.raises(TypeError):
        counts.update({"EMAIL_ADDRESS": 1})
    mine = counts.copy()
    mine["EMAIL_ADDRESS"] += 1
    assert mine == Counter(EMAIL_ADDRESS=1) and not rowcode.NO_COUNTS
    total: Counter[str] = Counter()
    total.update(counts)
    assert total == Counter()


def test_a_row_with_findings_gets_its_own_counts() -> None:
    masker = MaskPolicy([], known_detectors()).row_masker([(None, "a"), (None, "b")])
    first = masker.mask_row([b"a@b.co", None])[1]
    second = masker.mask_row([b"c@d.io", None])[1]
    assert first == second == Counter(EMAIL_ADDRESS=1) and first is not second
