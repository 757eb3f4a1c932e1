"""The validators' fast paths confirm exactly what the plain versions below confirm.

The plain versions are the validators as first written (one obvious loop each, copied as they
were before the fast paths); the shipped
ones skip work (a run of digits without separators, windows that cannot reach 13 digits, one
search per IBAN head, digit groups found by a regex). Both are fed every candidate their
detector's pattern finds in random and adversarial text, and must return the same spans.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Callable

import pytest
import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from jitctl.masking import DETECTORS, validators
from jitctl.masking.validators import IBAN_LENGTHS, Span, luhn_ok

from .test_scanner import FRAGMENTS

# -- the plain versions ---------------------------------------------------------------------------

_DIGITS = frozenset(b"0123456789")


def _digit_at(data: bytes, index: int) -> bool:
    return 0 <= index < len(data) and data[index] in _DIGITS


def plain_card_spans(data: bytes, start: int, end: int) -> list[Span]:
    run = data[start:end]
    digits = run.replace(b"-", b"").replace(b" ", b"")
    if 13 <= len(digits) <= 19 and run[0] in b"23456" and luhn_ok(digits):
        return [(start, end)]
    if len(digits) == len(run):
        return []
    groups = run.replace(b"-", b" ").split(b" ")
    offsets = []
    pos = start
    for group in groups:
        offsets.append(pos)
        pos += len(group) + 1
    spans: list[Span] = []
    for i, first in enumerate(groups):
        if first[:1] not in (b"2", b"3", b"4", b"5", b"6"):
            continue
        total = 0
        for j in range(i, len(groups)):
            total += len(groups[j])
            if total > 19:
                break
            if total >= 13 and luhn_ok(b"".join(groups[i : j + 1])):
                spans.append((offsets[i], offsets[j] + len(groups[j])))
    return spans


def plain_ssn_spans(data: bytes, start: int, end: int) -> list[Span]:
    if _digit_at(data, start - 1) or _digit_at(data, end):
        return []
    digits = data[start:end].replace(b"-", b"").replace(b" ", b"")
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if area in (b"000", b"666") or area[:1] == b"9" or group == b"00" or serial == b"0000":
        return []
    return [] if digits in (b"078051120", b"219099999") else [(start, end)]


def plain_phone_spans(data: bytes, start: int, end: int) -> list[Span]:
    if _digit_at(data, start - 1):
        return []
    text = data[start:end]
    if text[:1] != b"+":
        if _digit_at(data, end) or text.isdigit():
            return []
        return [(start, end)]
    if text.count(b".") == 1:
        return []
    digits = 0
    last_end = start
    i = start
    while i < end:
        if data[i] in _DIGITS:
            j = i
            while j < end and data[j] in _DIGITS:
                j += 1
            if digits + (j - i) > 15:
                break
            digits += j - i
            last_end = j
            i = j
        else:
            i += 1
    if digits < 8:
        return []
    if last_end == end and _digit_at(data, end):
        return []
    return [(start, last_end)]


_LETTERS = {ord(ch): str(ord(ch) - 55) for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}


def plain_iban_ok(iban: bytes) -> bool:
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum() or not iban.isascii():
        return False
    return int((iban[4:] + iban[:4]).decode("ascii").translate(_LETTERS)) % 97 == 1


_HEAD = re.compile(rb"[A-Z]{2}[0-9]{2}")
_BODY = {
    n: re.compile(rb"[A-Z0-9](?: ?[A-Z0-9]){%d}" % (n - 1)) for n in set(IBAN_LENGTHS.values())
}


def plain_iban_spans(data: bytes, start: int, end: int) -> list[Span]:
    spans: list[Span] = []
    after = start
    for head in _HEAD.finditer(data, start, end):
        i = head.start()
        length = IBAN_LENGTHS.get(data[i : i + 2])
        if length is None or i < after:
            continue
        body = _BODY[length].match(data, i)
        if body is not None and plain_iban_ok(body.group().replace(b" ", b"")):
            spans.append(body.span())
            after = body.end()
    return spans


def plain_jwt_spans(data: bytes, start: int, end: int) -> list[Span]:
    header = data[start : data.index(b".", start, end)]
    if len(header) % 4 == 1:
        return []
    try:
        raw = binascii.a2b_base64(
            header.translate(bytes.maketrans(b"-_", b"+/")) + b"=" * (-len(header) % 4)
        )
        if b'"alg"' not in raw:
            return []
        decoded = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError):
        return []
    return [(start, end)] if isinstance(decoded, dict) and "alg" in decoded else []


PAIRS: dict[str, tuple[Callable[[bytes, int, int], list[Span]], Callable[..., list[Span]]]] = {
    "CREDIT_CARD_NUMBER": (validators.card_spans, plain_card_spans),
    "US_SOCIAL_SECURITY_NUMBER": (validators.ssn_spans, plain_ssn_spans),
    "PHONE_NUMBER": (validators.phone_spans, plain_phone_spans),
    "IBAN_CODE": (validators.iban_spans, plain_iban_spans),
    "JSON_WEB_TOKEN": (validators.jwt_spans, plain_jwt_spans),
}


def _rx(name: str) -> re2._Regexp:
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1
    return re2.compile(DETECTORS[name].pattern.encode(), options)


PATTERNS = {name: _rx(name) for name in PAIRS}


def candidates(name: str, data: bytes) -> list[Span]:
    """Every span the pattern matches starting anywhere (not only where a scan would stop)."""
    rx = PATTERNS[name]
    spans = []
    for pos in range(len(data)):
        found = rx.match(data, pos)
        if found is not None:
            spans.append(found.span())
    return spans


# -- inputs ---------------------------------------------------------------------------------------

_shapes = st.text(alphabet="0123456789 -.+()ABGEWSTKZey", max_size=50)
texts = st.lists(st.one_of(st.sampled_from(FRAGMENTS), _shapes), max_size=6).map("".join)


def _check(name: str, data: bytes) -> None:
    fast, plain = PAIRS[name]
    for start, end in candidates(name, data):
        assert fast(data, start, end) == plain(data, start, end), (data, start, end)


@pytest.mark.parametrize("name", sorted(PAIRS))
@settings(max_examples=300)
@given(texts)
def test_fast_validator_equals_the_plain_one(name: str, text: str) -> None:
    _check(name, text.encode())


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_fast_validator_equals_the_plain_one_on_the_hard_cases(name: str) -> None:
    cases = [
        "4111 1111 1111 1111 2027",
        "12 4111 1111 1111 1111 3 4111-1111-1111-1111",
        "1234 5698 7654 32",
        "9 9 9 9 9 9 9 9 9 9 9 9 9 4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
        "555 5555 5555 5555 4444 5555",
        "+1 415 555 0100 2024 7777 1234",
        "+1234567.89 +12 34 (415) 555-0100 415.555.01000",
        "GB82WEST12345698765432GB82WEST12345698765432",
        "GB12DE89370400440532013000 ZZ00 XX99 GB82 WEST 1234 5698 7654 32 ABC1",
        "1536-22-1234 536-22-1234 078-05-1120 536 22 12345",
        *FRAGMENTS,
    ]
    for text in cases:
        _check(name, text.encode())


def textbook_luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


@given(st.text(alphabet="0123456789", min_size=1, max_size=25))
def test_luhn_is_the_textbook_luhn(digits: str) -> None:
    assert luhn_ok(digits.encode()) is textbook_luhn(digits)


@settings(max_examples=500)
@given(st.text(alphabet=' \t\n\r\x0b\ufeff{}[]":,0123456789.eE+-aglntrufs\\', max_size=24))
def test_jwt_headers_are_read_as_json_loads_reads_them(text: str) -> None:
    def outcome(loads: Callable[[str], object]) -> str:
        try:
            return repr(loads(text))
        except ValueError:
            return "refused"

    assert outcome(validators._json_loads) == outcome(json.loads)
