"""The fast path finds exactly what the straightforward per-detector path finds.

The scanner takes shortcuts for speed: one `re2.Set` pass over a whole row (or a chunk of a
batch) joined with NUL, searches only for the detectors the set reports, cheap exact checks
before searching again after a match, and no second pass when every candidate was masked
whole. `reference_row` below is the obvious implementation with none of that: each value on its
own, each detector's pattern with the re2 module's own `finditer`, its validator on every
candidate, findings merged, and passes repeated until nothing more is found. On random and
adversarial input the two must agree exactly: the masked values and the counts.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Sequence

import pytest
import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from jitctl.masking import (
    DETECTORS,
    MASKED,
    WITHHELD,
    MaskPolicy,
    RowMasker,
    known_detectors,
    scanner,
)
from jitctl.masking.detectors import Detector, get_detectors, token

# -- the straightforward path -------------------------------------------------------------------


def _compile(pattern: str) -> re2._Regexp:
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1
    return re2.compile(pattern.encode("ascii"), options)


PATTERNS = {name: _compile(d.pattern) for name, d in DETECTORS.items()}


def reference_redact(data: bytes, detectors: Sequence[Detector]) -> tuple[bytes, Counter[str]]:
    """Every detector over `data` on its own, merged, repeated until a pass finds nothing."""
    counts: Counter[str] = Counter()
    for _ in range(scanner.MAX_PASSES):
        found = []
        for index, detector in enumerate(detectors):
            rx = PATTERNS[detector.name]
            for match in rx.finditer(data):
                start, end = match.span(1 if rx.groups else 0)
                spans = detector.confirm(data, start, end) if detector.confirm else [(start, end)]
                found += [(s, e, index) for s, e in spans]
        if not found:
            return data, counts
        # Leftmost first, then longest, then registry order; overlapping or touching findings
        # merge into one, named (and counted) by the first.
        found.sort(key=lambda f: (f[0], -f[1], f[2]))
        merged = [list(found[0])]
        for start, end, index in found[1:]:
            if start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end, index])
        pieces, pos = [], 0
        for start, end, index in merged:
            pieces += [data[pos:start], token(detectors[index].name)]
            counts[detectors[index].name] += 1
            pos = end
        data = b"".join(pieces) + data[pos:]
    raise RuntimeError("did not settle")


def reference_value(value: bytes, detectors: Sequence[Detector]) -> tuple[bytes, Counter[str]]:
    try:
        value.decode("utf-8")
        return reference_redact(value, detectors)
    except Exception:
        return WITHHELD, Counter({"WITHHELD": 1})


def reference_row(
    row: Sequence[bytes | None], masked: Sequence[bool], detectors: Sequence[Detector]
) -> tuple[list[bytes | None], Counter[str]]:
    counts: Counter[str] = Counter()
    if len(row) != len(masked):
        counts["WITHHELD"] = sum(v is not None for v in row)
        return [None if v is None else WITHHELD for v in row], counts
    out: list[bytes | None] = []
    for i, value in enumerate(row):
        if value is None:
            out.append(None)
        elif masked[i]:
            out.append(MASKED)
            counts[f"COLUMN:#{i + 1}"] += 1
        elif not detectors:
            out.append(value)
        else:
            new, found = reference_value(value, detectors)
            out.append(new)
            counts.update(found)
    return out, counts


# -- inputs ---------------------------------------------------------------------------------------


def _b64url(obj: object) -> str:
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


_JWT = f"{_b64url({'alg': 'HS256'})}.{_b64url({'sub': '42'})}.c2ln"
_PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----"

# Whole findings, near misses and pieces of them: glued together they make neighbours that
# validators look at (digits next to an SSN, capitals after an IBAN, a card then a year).
FRAGMENTS = [
    "alice@example.com",
    "a.b+c@sub.example.co.uk",
    "x@y",
    "@",
    "@example.com",
    "user@localhost",
    "4111111111111111",
    "4111 1111 1111 1111",
    "5500-0000-0000-0004",
    "3782 822463 10005",
    "4111111111111112",
    "41111111111111110000",
    " 2027",
    "536-22-1234",
    "536 22 1234",
    "078-05-1120",
    "666-12-3456",
    "+1 415 555 0100",
    "+44 20 7946 0958",
    "+49 (0) 30 1234567",
    "(415) 555-0100",
    "415.555.0100",
    "1-415-555-0100",
    "+1234567.89",
    "GB82 WEST 1234 5698 7654 32",
    "GB82WEST12345698765432",
    "DE89370400440532013000",
    "GB12",
    "AIzaSyD-0123456789abcdefghijklmnopqrst_",
    "AIza",
    "AKIAIOSFODNN7EXAMPLE",
    "ASIAY34FZKBOKMUTVV7A",
    "A3TX",
    "AKIA",
    _PEM,
    _PEM.replace("\n", "\\n"),
    "-----BEGIN EC PRIVATE KEY-----\nMHc",
    "-----END RSA PRIVATE KEY-----",
    _JWT,
    _JWT[:20],
    "eyJ",
    "ey",
    '"private_key_id": "' + "0123456789abcdef" * 2 + '01234567"',
    '"private_key_id"',
    "[EMAIL_ADDRESS]",
    "[MASKED]",
    "2025-05-01 12:00:00.123+00",
    "0",
    "9",
    "12",
    " ",
    "-",
    ".",
    "+",
    "(",
    ")",
    "\n",
    "é",
    "\x00",
]

_fragment = st.sampled_from(FRAGMENTS)
_piece = st.builds(
    lambda f, i, j: f[min(i, j) : max(i, j)], _fragment, st.integers(0, 60), st.integers(0, 60)
)
_dense = st.text(alphabet='0123456789 -.+()@abcAKIZGBDEWSTey\t\n\\"', max_size=40)
adversarial = st.lists(st.one_of(_fragment, _fragment, _piece, _dense), max_size=8).map("".join)
texts = st.one_of(adversarial, st.text(max_size=80))
values = st.one_of(
    st.none(),
    texts.map(str.encode),
    st.binary(max_size=40),
    st.builds(bytes.__add__, adversarial.map(str.encode), st.binary(max_size=3)),
)
detector_sets = st.one_of(
    st.just(known_detectors()),
    st.sets(st.sampled_from(known_detectors()), min_size=1).map(lambda s: tuple(sorted(s))),
)


# -- the properties -------------------------------------------------------------------------------


@settings(max_examples=400)
@given(
    detector_sets,
    st.lists(values, min_size=4, max_size=4),
    st.lists(st.booleans(), min_size=4, max_size=4),
)
def test_mask_row_equals_the_straightforward_path(
    names: tuple[str, ...], row: list[bytes | None], masked: list[bool]
) -> None:
    masker = RowMasker(MaskPolicy([], names).scanner, masked)
    assert masker.mask_row(row) == reference_row(row, masked, get_detectors(names))


@settings(max_examples=200)
@given(
    detector_sets,
    st.lists(st.lists(values, min_size=3, max_size=3), max_size=12),
    st.sampled_from([16, 64, 2048]),
)
def test_mask_rows_equals_the_straightforward_path(
    names: tuple[str, ...], rows: list[list[bytes | None]], chunk: int
) -> None:
    masker = MaskPolicy([], names).row_masker([(None, f"#{i + 1}") for i in range(3)])
    expected = [reference_row(row, [False] * 3, get_detectors(names)) for row in rows]
    saved, scanner.CHUNK = scanner.CHUNK, chunk
    try:
        out, counts = masker.mask_rows(rows)
    finally:
        scanner.CHUNK = saved
    assert out == [row for row, _ in expected]
    assert counts == sum((c for _, c in expected), Counter())


@settings(max_examples=400)
@given(detector_sets, texts)
def test_mask_text_equals_the_straightforward_path(names: tuple[str, ...], text: str) -> None:
    out, counts = MaskPolicy([], names).mask_text(text)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        assert (out, counts) == (WITHHELD.decode(), Counter({"WITHHELD": 1}))
        return
    expected, found = reference_redact(data, get_detectors(names))
    assert (out.encode(), counts) == (expected, found)


@pytest.mark.parametrize("fragment", FRAGMENTS)
def test_every_fragment_alone_and_among_others(fragment: str) -> None:
    """Each fragment, alone, repeated, and between the others, as a row and as text."""
    detectors = get_detectors(known_detectors())
    masker = MaskPolicy([], known_detectors()).row_masker([(None, "a"), (None, "b")])
    for text in (fragment, fragment * 3, "|".join(FRAGMENTS), fragment.join(FRAGMENTS)):
        data = text.encode()
        assert masker.mask_row([data, data[::-1]]) == reference_row(
            [data, data[::-1]], [False, False], detectors
        )


def test_the_reference_is_not_trivial() -> None:
    """The straightforward path does mask: the equality above is not two no-ops agreeing."""
    out, counts = reference_redact(" ".join(FRAGMENTS).encode(), get_detectors(known_detectors()))
    assert set(counts) == set(known_detectors())
    assert b"alice@example.com" not in out
