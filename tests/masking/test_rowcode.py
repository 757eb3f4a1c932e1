"""The compiled per-shape row path: its source is what rowcode.py's docstring shows."""

from __future__ import annotations

import textwrap

import pytest

from jitctl.masking import rowcode


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
