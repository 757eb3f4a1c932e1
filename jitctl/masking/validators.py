"""Validators that turn a pattern's candidate into confirmed spans (or none).

A detector's regular expression finds *candidates*; a validator decides which of them are real.
Every validator here has the same shape, `confirm(data, start, end) -> list of (start, end)`:
it sees the whole scanned buffer (so it can look at the neighbours of a candidate, and past its
end) and returns the spans to mask, possibly several, possibly none.

Rules:
- Pure functions over bytes: no I/O, no state kept between calls.
- A validator cuts false positives; it never widens a candidate except where it says why.
- Numbers embedded in longer digit runs are not what they look like: a 20-digit id is not a card,
  `1123-45-6789` is not an SSN. Validators check the neighbouring characters for that.
- The scanner resumes after the candidate's end, so a validator that must find a real value
  hiding inside a rejected candidate (a card followed by a year, an IBAN glued to other
  capitals) searches inside the candidate itself. Each validator does bounded work per byte of
  candidate, so scanning stays linear.
"""

from __future__ import annotations

import binascii
import json
import json.scanner
import re
from collections.abc import Callable

Span = tuple[int, int]

_DIGITS = frozenset(b"0123456789")
_ISSUERS = b"23456"  # first digits of payment cards (an int `in` bytes is a byte search)
_B64URL_TO_STD = bytes.maketrans(b"-_", b"+/")
# Luhn: what doubling adds to a digit's contribution (mod 10), as a bytes.translate table.
_LUHN_ADDED = bytes.maketrans(b"0123456789", bytes([0, 1, 2, 3, 4, 6, 7, 8, 9, 10]))
# The same, reduced mod 10 (9 adds 0), and each digit's own value: as bytes, at most 9 each.
_LUHN_ADDED_MOD10 = bytes.maketrans(b"0123456789", bytes([0, 1, 2, 3, 4, 6, 7, 8, 9, 0]))
_DIGIT_VALUE = bytes.maketrans(b"0123456789", bytes(range(10)))
# Up to this many digits the byte sum below stays under 255 (19 * 9 + 9 * 9 = 252).
_LUHN_BYTE_SUM_MAX = 19


def luhn_ok(digits: bytes) -> bool:
    """Luhn (mod 10) check over ASCII digits, rightmost digit undoubled.

    The Luhn sum is the digit sum plus, for each doubled digit d, what doubling adds: d for
    d < 5, d - 9 (congruent to d + 1 mod 10) from 5 on. Up to 19 digits (every card) those
    amounts, as bytes, are summed by reading them as one little-endian number mod 255
    (256 = 1 mod 255; the sum is below 255): one C call where `sum` iterates. Anything else
    (longer, or not all digits) is summed as it always was, and gets the answer it always got.
    """
    if len(digits) <= _LUHN_BYTE_SUM_MAX and digits.isdigit():
        amounts = digits.translate(_DIGIT_VALUE) + digits[-2::-2].translate(_LUHN_ADDED_MOD10)
        return int.from_bytes(amounts, "little") % 255 % 10 == 0
    added = digits[-2::-2].translate(_LUHN_ADDED)
    return (sum(digits) - 48 * len(digits) + sum(added)) % 10 == 0


def _digit_at(data: bytes, index: int) -> bool:
    return 0 <= index < len(data) and data[index] in _DIGITS


# -- payment cards -----------------------------------------------------------------------------


def card_spans(data: bytes, start: int, end: int) -> list[Span]:
    """Cards inside a run of digit groups (groups joined by single spaces or dashes).

    A window of whole consecutive groups is a card when it holds 13-19 digits, starts with an
    issuer digit 2-6 (Mastercard 2-series, Amex/Diners/JCB, Visa, Mastercard/Maestro,
    Discover/UnionPay) and passes Luhn. Windows let `4111 1111 1111 1111 2027` (a card and a
    year) find the card; a single 20-digit group is never a card.
    """
    run = data[start:end]
    if run.isdigit():  # one group: the whole run is a card, or nothing is
        # luhn_ok(run), inline: one call fewer on the commonest candidate
        if (
            13 <= len(run) <= 19
            and run[0] in _ISSUERS
            and int.from_bytes(
                run.translate(_DIGIT_VALUE) + run[-2::-2].translate(_LUHN_ADDED_MOD10), "little"
            )
            % 255
            % 10
            == 0
        ):
            return [(start, end)]
        return []
    digits = run.translate(None, b" -")
    if 13 <= len(digits) <= 19 and run[0] in _ISSUERS and luhn_ok(digits):
        return [(start, end)]  # the whole run: every window inside it is covered anyway
    if len(digits) < 13:
        return []  # no window can hold a card
    groups = run.replace(b"-", b" ").split(b" ")
    spans: list[Span] = []
    left = len(digits)  # digits in the groups from i on
    pos = start
    for i, first in enumerate(groups):
        if left < 13:
            break  # no window from here on can hold 13 digits
        if first and first[0] in _ISSUERS:
            total = 0
            window_end = pos
            for group in groups[i:]:
                total += len(group)
                window_end += len(group)
                if total > 19:
                    break
                if total >= 13 and luhn_ok(digits[len(digits) - left : len(digits) - left + total]):
                    spans.append((pos, window_end))
                window_end += 1  # the separator
        left -= len(first)
        pos += len(first) + 1
    return spans


# -- US social security numbers ----------------------------------------------------------------

_SAMPLE_SSNS = frozenset({b"078051120", b"219099999"})  # published sample numbers


def ssn_spans(data: bytes, start: int, end: int) -> list[Span]:
    """`AAA-GG-SSSS` (or spaces) not inside a longer digit run and not in an invalid range.

    SSA never issues area 000, 666 or 900-999, group 00 or serial 0000; the Woolworth wallet
    number 078-05-1120 and the 1960s ad number 219-09-9999 are samples, not people.
    """
    if (start and data[start - 1] in _DIGITS) or (end < len(data) and data[end] in _DIGITS):
        return []
    digits = data[start:end].translate(None, b" -")
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if area in (b"000", b"666") or area[:1] == b"9" or group == b"00" or serial == b"0000":
        return []
    return [] if digits in _SAMPLE_SSNS else [(start, end)]


# -- phone numbers -----------------------------------------------------------------------------

_DIGIT_RUN = re.compile(rb"[0-9]+")
_NOT_DIGITS = bytes(c for c in range(256) if c not in _DIGITS)


def phone_spans(data: bytes, start: int, end: int) -> list[Span]:
    """International (`+` then 8-15 digits) or NANP numbers written with separators.

    International: the longest prefix of whole digit groups holding at most 15 digits (E.164),
    at least 8; a single `.` is a decimal point (`+1234567.89`), not a separator. NANP
    (`(415) 555-0100`, `415.555.0100`, `1-415-555-0100`): must carry a separator or
    parentheses, since a bare 10-digit string is as likely an id as a phone. Neither may be
    glued to further digits.
    """
    if start and data[start - 1] in _DIGITS:
        return []
    text = data[start:end]
    glued = end < len(data) and data[end] in _DIGITS
    if text[:1] != b"+":
        if glued or text.isdigit():
            return []
        return [(start, end)]
    if text.count(b".") == 1:
        return []
    digits = len(text.translate(None, _NOT_DIGITS))
    if digits <= 15:  # every group fits, the usual case: it ends after the last digit
        last_end = start + len(text.rstrip(_NOT_DIGITS))
    else:
        digits = 0
        last_end = start
        for group in _DIGIT_RUN.finditer(data, start, end):
            group_start, group_end = group.span()
            if digits + group_end - group_start > 15:
                break
            digits += group_end - group_start
            last_end = group_end
    if digits < 8:
        return []
    if last_end == end and glued:
        return []
    return [(start, last_end)]


# -- IBAN --------------------------------------------------------------------------------------

# SWIFT IBAN registry lengths, plus the countries that publish IBANs outside the registry.
_IBAN_REGISTRY = (
    "AD:24 AE:23 AL:28 AO:25 AT:20 AZ:28 BA:20 BE:16 BF:28 BG:22 BH:22 BI:27 BJ:28 "
    "BR:29 BY:28 CF:27 CG:27 CH:21 CI:28 CM:27 CR:22 CV:25 CY:28 CZ:24 DE:22 DJ:27 "
    "DK:18 DO:28 DZ:26 EE:20 EG:29 ES:24 FI:18 FK:18 FO:18 FR:27 GA:27 GB:22 GE:22 "
    "GI:23 GL:18 GQ:27 GR:27 GT:28 GW:25 HN:28 HR:21 HU:28 IE:22 IL:23 IQ:23 IR:26 "
    "IS:26 IT:27 JO:30 KM:27 KW:30 KZ:20 LB:28 LC:32 LI:21 LT:20 LU:20 LV:21 LY:25 "
    "MA:28 MC:27 MD:24 ME:22 MG:27 MK:19 ML:28 MN:20 MR:27 MT:31 MU:30 MZ:25 NE:28 "
    "NI:28 NL:18 NO:15 OM:23 PK:24 PL:28 PS:29 PT:25 QA:29 RO:24 RS:22 RU:33 SA:24 "
    "SC:31 SD:18 SE:24 SI:19 SK:24 SM:27 SN:28 SO:23 ST:25 SV:28 TD:27 TG:28 TL:23 "
    "TN:24 TR:26 UA:29 VA:22 VG:24 XK:20 YE:30"
)
IBAN_LENGTHS: dict[bytes, int] = {
    item[:2].encode(): int(item[3:]) for item in _IBAN_REGISTRY.split()
}


# Letters become two digits (A = 10 .. Z = 35), digits stay one. Each character is translated
# to the byte whose hex form is its digits (a letter's value read as hex: A -> 0x10; a digit d
# -> 0xFd), hexlified, and the `f`s deleted: three C calls. Any other byte becomes 0xEE, which
# `int` rejects (ValueError), as it rejected such a byte before.
_IBAN_HEX = bytes(
    0xF0 + c - 48
    if 48 <= c <= 57
    else (c - 55) // 10 * 16 + (c - 55) % 10
    if 65 <= c <= 90
    else 0xEE
    for c in range(256)
)


def iban_ok(iban: bytes) -> bool:
    """ISO 13616 mod-97: move the first four characters to the end, letters become 10..35."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum() or not iban.isascii():
        return False
    spread = binascii.hexlify((iban[4:] + iban[:4]).translate(_IBAN_HEX)).translate(None, b"f")
    return int(spread) % 97 == 1


# Where an IBAN may start: two capitals and two digits. Two such heads cannot overlap (a head's
# digits are not capitals), so searching on after each one sees every one. The standard
# library's `re` is fine for these patterns: no nested repetition, so no backtracking blow-up.
_IBAN_HEAD = re.compile(rb"[A-Z]{2}[0-9]{2}")
# Per registered length: that many IBAN characters, single spaces allowed between them.
_IBAN_BODY = {
    length: re.compile(rb"[A-Z0-9](?: ?[A-Z0-9]){%d}" % (length - 1))
    for length in set(IBAN_LENGTHS.values())
}


def iban_spans(data: bytes, start: int, end: int) -> list[Span]:
    """IBANs starting anywhere in the candidate, printed (groups of four) or electronic.

    The country's registered length says where the IBAN ends, so trailing capitals or digits
    (`GB82WEST12345698765432 ABC1`) are not swallowed and a rejected prefix
    (`GB12DE89...`) does not hide the real IBAN after it.
    """
    spans: list[Span] = []
    pos = start
    while pos < end:
        length = IBAN_LENGTHS.get(data[pos : pos + 2])
        if length is not None and end - pos >= 4 and data[pos + 2 : pos + 4].isdigit():
            i = pos  # a head right here: the usual case, a candidate starts with one
        else:
            head = _IBAN_HEAD.search(data, pos, end)
            if head is None:
                break
            i = head.start()
            length = IBAN_LENGTHS.get(data[i : i + 2])
        pos = i + 4
        if length is None:
            continue
        # Inside the candidate, characters are capitals and digits with single spaces between
        # them (the pattern says so): the body's end is `length` characters on, plus one for
        # each space passed. Past the candidate's end the regular expression decides.
        # The usual case: the IBAN fills the rest of the candidate, which ends on a character.
        compact = data[i:end].replace(b" ", b"")
        if len(compact) == length:
            if iban_ok(compact):
                spans.append((i, end))
                pos = end
            continue
        body_end = i + length
        spaces = data.count(b" ", i, body_end)
        while spaces and body_end <= end:
            spaces, body_end = data.count(b" ", body_end, body_end + spaces), body_end + spaces
        if body_end <= end:
            if iban_ok(data[i:body_end].replace(b" ", b"")):
                spans.append((i, body_end))
                pos = body_end
            continue
        body = _IBAN_BODY[length].match(data, i)
        if body is not None and iban_ok(body.group().replace(b" ", b"")):
            spans.append(body.span())
            pos = body.end()
    return spans


# -- JSON Web Tokens ---------------------------------------------------------------------------

# json.loads, less its Python layers: JSON text is one value between optional whitespace
# (RFC 8259 §2: space, tab, LF, CR), and the scanner raises StopIteration where it finds none.
# (typeshed types make_scanner's context as the scanner class; a JSONDecoder is what it reads.)
_json_value: Callable[[str, int], tuple[object, int]] = json.scanner.make_scanner(
    json.JSONDecoder()  # type: ignore[arg-type]
)
_JSON_SPACE = " \t\n\r"


def _json_loads(text: str) -> object:
    """`json.loads(text)`; ValueError where it would raise."""
    text = text.strip(_JSON_SPACE)
    try:
        value, end = _json_value(text, 0)
    except StopIteration:
        raise ValueError("not JSON") from None
    if end != len(text):
        raise ValueError("data after the JSON value")
    return value


def jwt_spans(data: bytes, start: int, end: int) -> list[Span]:
    """Compact JWS/JWE whose first segment base64url-decodes to a JSON object with `alg`."""
    header = data[start : data.index(b".", start, end)]
    if len(header) % 4 == 1:
        return []
    try:
        raw = binascii.a2b_base64(header.translate(_B64URL_TO_STD) + b"=" * (-len(header) % 4))
        if raw.find(b'"alg"') < 0:  # cheap reject before parsing
            return []
        decoded = _json_loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError):  # UnicodeDecodeError and JSONDecodeError included
        return []
    return [(start, end)] if isinstance(decoded, dict) and "alg" in decoded else []
