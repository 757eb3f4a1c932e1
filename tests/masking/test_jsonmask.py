"""JSON documents: masked field names anywhere, detectors on every string, key and number."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

from jitctl.masking import MaskPolicy, Scanner, mask_json
from jitctl.masking.detectors import DETECTORS, Detector

POLICY = MaskPolicy([], ["EMAIL_ADDRESS", "CREDIT_CARD_NUMBER"])


def test_named_fields_are_masked_wherever_they_appear() -> None:
    doc = {"ssn": "536-22-1234", "people": [{"SSN": {"raw": 1}}, {"name": "x", "Ssn": None}]}
    out, counts = mask_json(doc, {"ssn"}, POLICY)
    assert out == {
        "ssn": "[MASKED]",
        "people": [{"SSN": "[MASKED]"}, {"name": "x", "Ssn": "[MASKED]"}],
    }
    assert counts == Counter({"FIELD:ssn": 1, "FIELD:SSN": 1, "FIELD:Ssn": 1})


def test_detectors_scan_strings_keys_and_numbers() -> None:
    doc = {"note": "mail a@b.co", "a@b.co": True, "card": 4111111111111111, "n": 3, "ok": None}
    out, counts = mask_json(doc, set(), POLICY)
    assert out == {
        "note": "mail [EMAIL_ADDRESS]",
        "[EMAIL_ADDRESS]": True,
        "card": "[CREDIT_CARD_NUMBER]",
        "n": 3,
        "ok": None,
    }
    assert counts == Counter({"EMAIL_ADDRESS": 2, "CREDIT_CARD_NUMBER": 1})


def test_keys_that_collide_after_masking_are_all_kept() -> None:
    out, _ = mask_json({"a@b.co": 1, "c@d.io": 2, "[EMAIL_ADDRESS]#2": 3}, set(), POLICY)
    assert out == {"[EMAIL_ADDRESS]": 1, "[EMAIL_ADDRESS]#2": 2, "[EMAIL_ADDRESS]#2#2": 3}


def test_the_input_is_not_modified() -> None:
    doc: Any = {"list": [{"email": "a@b.co"}], "s": "c@d.io"}
    before = copy.deepcopy(doc)
    mask_json(doc, {"email"}, POLICY)
    assert doc == before


def test_scalars_and_clean_documents_pass_through() -> None:
    assert mask_json("a@b.co", set(), POLICY) == ("[EMAIL_ADDRESS]", Counter({"EMAIL_ADDRESS": 1}))
    assert mask_json([1, 2.5, True, None, "x"], set(), POLICY) == (
        [1, 2.5, True, None, "x"],
        Counter(),
    )


def test_too_deep_a_document_is_withheld_whole() -> None:
    doc: Any = "a@b.co"
    for _ in range(5000):
        doc = [doc]
    assert mask_json(doc, set(), POLICY) == ("[WITHHELD]", Counter({"WITHHELD": 1}))


def test_a_failing_detector_withholds_only_that_string() -> None:
    def boom(data: bytes, start: int, end: int) -> list[tuple[int, int]]:
        raise RuntimeError("validator bug")

    policy = MaskPolicy(
        [], scanner=Scanner([Detector("BOOM", "[0-9]+", boom), DETECTORS["EMAIL_ADDRESS"]])
    )
    out, counts = mask_json({"a": "id 7", "b": "a@b.co", "c": 7}, set(), policy)
    assert out == {"a": "[WITHHELD]", "b": "[EMAIL_ADDRESS]", "c": "[WITHHELD]"}
    assert counts == Counter({"WITHHELD": 2, "EMAIL_ADDRESS": 1})
