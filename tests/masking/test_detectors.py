"""Each detector: what it must find (and exactly which span it masks) and near misses it must not.

Cases are (text, masked text). A near miss is a case whose masked text equals the input.
"""

from __future__ import annotations

import base64
import json

import pytest
import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from jitctl.errors import ConfigError
from jitctl.masking import DETECTORS, MaskPolicy, UnknownDetector, known_detectors
from jitctl.masking.detectors import Detector, get_detectors, shape_of
from jitctl.masking.validators import iban_ok, luhn_ok


def b64url(obj: object) -> str:
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


JWT = f"{b64url({'alg': 'HS256', 'typ': 'JWT'})}.{b64url({'sub': '42'})}.c2lnbmF0dXJl"
GCP_KEY = "AIza" + "SyD-0123456789abcdefghijklmnopqrst_"  # 35 after the prefix
assert len(GCP_KEY) == 39
KEY_ID = "0123456789abcdef" * 2 + "01234567"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nq3Zx\n-----END RSA PRIVATE KEY-----"

CASES: dict[str, list[tuple[str, str | None]]] = {
    "EMAIL_ADDRESS": [
        ("mail alice@example.com now", "mail [EMAIL_ADDRESS] now"),
        ("first.last+tag@sub.example.co.uk", "[EMAIL_ADDRESS]"),
        ("<Bob_99@EXAMPLE.ORG>", "<[EMAIL_ADDRESS]>"),
        ("alice@example.com.", "[EMAIL_ADDRESS]."),
        ("a@b.co,c@d.io", "[EMAIL_ADDRESS],[EMAIL_ADDRESS]"),
        ("alice@localhost", "alice@localhost"),
        ("@example.com", "@example.com"),
        ("user at example dot com", "user at example dot com"),
        ("a@b", "a@b"),
    ],
    "CREDIT_CARD_NUMBER": [
        ("4111111111111111", "[CREDIT_CARD_NUMBER]"),
        ("card 4111 1111 1111 1111 exp", "card [CREDIT_CARD_NUMBER] exp"),
        ("5500-0000-0000-0004", "[CREDIT_CARD_NUMBER]"),
        ("amex 3782 822463 10005", "amex [CREDIT_CARD_NUMBER]"),
        ("2223003122003222", "[CREDIT_CARD_NUMBER]"),  # Mastercard 2-series
        ("4222222222222", "[CREDIT_CARD_NUMBER]"),  # 13-digit Visa
        ("x4111111111111111y", "x[CREDIT_CARD_NUMBER]y"),
        ("4111 1111 1111 1111 2027", "[CREDIT_CARD_NUMBER] 2027"),  # a card, then a year
        ("order 12 4111 1111 1111 1111", "order 12 [CREDIT_CARD_NUMBER]"),
        ("4111111111111112", "4111111111111112"),  # Luhn fails
        ("4111 1111 1111 1112", "4111 1111 1111 1112"),
        ("1234567812345670", "1234567812345670"),  # Luhn-valid, but no issuer starts with 1
        ("9234567812345673", "9234567812345673"),
        ("41111111111111110000", "41111111111111110000"),  # 20 digits: an id, not a card
        ("411111111111", "411111111111"),  # 12 digits
        ("2025-05-01 12:34:56", "2025-05-01 12:34:56"),
    ],
    "US_SOCIAL_SECURITY_NUMBER": [
        ("ssn 536-22-1234.", "ssn [US_SOCIAL_SECURITY_NUMBER]."),
        ("536 22 1234", "[US_SOCIAL_SECURITY_NUMBER]"),
        ("ssn:536-22-1234", "ssn:[US_SOCIAL_SECURITY_NUMBER]"),
        ("000-12-3456", "000-12-3456"),  # area 000
        ("666-12-3456", "666-12-3456"),  # area 666
        ("912-12-3456", "912-12-3456"),  # area 9xx
        ("536-00-1234", "536-00-1234"),  # group 00
        ("536-22-0000", "536-22-0000"),  # serial 0000
        ("078-05-1120", "078-05-1120"),  # the Woolworth wallet card
        ("1536-22-1234", "1536-22-1234"),  # inside a longer number
        ("536-22-12345", "536-22-12345"),
        ("536221234", "536221234"),  # bare nine digits: mask the column instead
        ("536-22 1234", "536-22 1234"),  # mixed separators
    ],
    "PHONE_NUMBER": [
        ("call +1 415 555 0100 today", "call [PHONE_NUMBER] today"),
        ("+44 20 7946 0958", "[PHONE_NUMBER]"),
        ("+442079460958", "[PHONE_NUMBER]"),
        ("+49 (0) 30 1234567", "[PHONE_NUMBER]"),
        ("+1-415-555-0100", "[PHONE_NUMBER]"),
        ("(415) 555-0100", "[PHONE_NUMBER]"),
        ("415-555-0100", "[PHONE_NUMBER]"),
        ("415.555.0100", "[PHONE_NUMBER]"),
        ("1-415-555-0100", "[PHONE_NUMBER]"),
        ("tel:415 555 0100;", "tel:[PHONE_NUMBER];"),
        ("+1 415 555 0100 2024 7777", "[PHONE_NUMBER] 7777"),  # groups up to 15 digits
        ("4155550100", "4155550100"),  # bare digits: as likely an id
        ("+1234567.89", "+1234567.89"),  # a signed decimal
        ("+12 34", "+12 34"),  # too few digits
        ("123-456-7890", "123-456-7890"),  # NANP area codes do not start with 1
        ("415-555-01000", "415-555-01000"),  # glued to more digits
        ("192.168.100.200", "192.168.100.200"),
        ("2025-05-01", "2025-05-01"),
    ],
    "IBAN_CODE": [
        ("IBAN GB82 WEST 1234 5698 7654 32 ok", "IBAN [IBAN_CODE] ok"),
        ("GB82WEST12345698765432", "[IBAN_CODE]"),
        ("DE89370400440532013000", "[IBAN_CODE]"),
        ("FR1420041010050500013M02606", "[IBAN_CODE]"),
        ("NL91ABNA0417164300", "[IBAN_CODE]"),
        ("GB82WEST12345698765432 ABC1", "[IBAN_CODE] ABC1"),  # the length ends it
        ("GB12DE89370400440532013000", "GB12[IBAN_CODE]"),  # a bad head hides nothing
        ("GB83WEST12345698765432", "GB83WEST12345698765432"),  # checksum fails
        ("ZZ82WEST12345698765432", "ZZ82WEST12345698765432"),  # no such country
        ("GB82WEST1234569876543", "GB82WEST1234569876543"),  # one short
        ("gb82west12345698765432", "gb82west12345698765432"),  # lower case: not matched
    ],
    "GCP_API_KEY": [
        (f"key={GCP_KEY}&x=1", "key=[GCP_API_KEY]&x=1"),
        (GCP_KEY[:-1], GCP_KEY[:-1]),  # 34 characters after AIza
        ("aiza" + GCP_KEY[4:], "aiza" + GCP_KEY[4:]),
    ],
    "GCP_CREDENTIALS": [
        (f'{{"private_key_id": "{KEY_ID}"}}', '{"private_key_id": "[GCP_CREDENTIALS]"}'),
        (f'"private_key_id":"{KEY_ID}"', '"private_key_id":"[GCP_CREDENTIALS]"'),
        (f'"private_key_id": "{KEY_ID[:-1]}"', f'"private_key_id": "{KEY_ID[:-1]}"'),
        (f'"key_id": "{KEY_ID}"', f'"key_id": "{KEY_ID}"'),
    ],
    "AWS_ACCESS_KEY": [
        ("AKIAIOSFODNN7EXAMPLE", "[AWS_ACCESS_KEY]"),
        ("aws_access_key_id=ASIAY34FZKBOKMUTVV7A\n", "aws_access_key_id=[AWS_ACCESS_KEY]\n"),
        ("AKIAIOSFODNN7EXAMPL", "AKIAIOSFODNN7EXAMPL"),  # 15 after the prefix
        ("akiaiosfodnn7example", "akiaiosfodnn7example"),
        ("AKIDIOSFODNN7EXAMPLE", "AKIDIOSFODNN7EXAMPLE"),
    ],
    "PRIVATE_KEY": [
        (f"key:\n{PEM}\ndone", "key:\n[PRIVATE_KEY]\ndone"),
        (PEM.replace("RSA ", ""), "[PRIVATE_KEY]"),  # PKCS#8
        (PEM.replace("RSA", "OPENSSH"), "[PRIVATE_KEY]"),
        (PEM.replace("RSA", "ENCRYPTED"), "[PRIVATE_KEY]"),
        (PEM.replace("RSA PRIVATE KEY", "PGP PRIVATE KEY BLOCK"), "[PRIVATE_KEY]"),
        (PEM.replace("\n", "\\n"), "[PRIVATE_KEY]"),  # inside a JSON string
        ("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI", "[PRIVATE_KEY]"),  # cut off: to the end
        ("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----", None),
        ("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", None),
    ],
    "JSON_WEB_TOKEN": [
        (f"Bearer {JWT}", "Bearer [JSON_WEB_TOKEN]"),
        (f"{JWT.rsplit('.', 1)[0]}.", "[JSON_WEB_TOKEN]"),  # unsecured: empty signature
        (f"{b64url({'typ': 'JWT'})}.{b64url({'sub': '42'})}.c2ln", None),  # no alg
        (f"eyJub3QganNvbg.{b64url({'sub': '42'})}.c2ln", None),  # header is not JSON
        (JWT.rsplit(".", 1)[0], None),  # two parts
    ],
}

FLAT = [(name, text, masked) for name, cases in CASES.items() for text, masked in cases]


@pytest.mark.parametrize(("name", "text", "masked"), FLAT)
def test_detector_alone(name: str, text: str, masked: str | None) -> None:
    """The detector masks exactly the expected span, or leaves a near miss alone."""
    policy = MaskPolicy([], [name])
    expected = text if masked is None else masked
    out, counts = policy.mask_text(text)
    assert out == expected
    assert counts[name] == expected.count(f"[{name}]")


@pytest.mark.parametrize(("name", "text", "masked"), FLAT)
def test_detector_among_all(name: str, text: str, masked: str | None) -> None:
    """With every detector on, the token is the same and near misses stay clear of this one."""
    out, _ = MaskPolicy([], known_detectors()).mask_text(text)
    assert out.count(f"[{name}]") == (text if masked is None else masked).count(f"[{name}]")


def test_every_detector_has_cases() -> None:
    assert set(CASES) == set(known_detectors()) == set(DETECTORS)


def test_unknown_detector_is_a_config_error() -> None:
    with pytest.raises(UnknownDetector) as err:
        MaskPolicy([], ["EMAIL_ADDRESS", "CREDIT_CARD"])
    assert isinstance(err.value, ConfigError)
    assert "CREDIT_CARD" in err.value.message and "CREDIT_CARD_NUMBER" in (err.value.hint or "")


def test_detector_names_fold_case_and_repeat_once() -> None:
    assert [d.name for d in get_detectors(["email_address", "EMAIL_ADDRESS"])] == ["EMAIL_ADDRESS"]


def test_tokens_and_markers_hold_no_candidates() -> None:
    """Masked output never feeds a later scan: no token or marker matches any pattern."""
    policy = MaskPolicy([], known_detectors())
    text = " ".join(f"[{name}]" for name in known_detectors()) + " [MASKED] [WITHHELD]"
    assert not policy.scanner.candidates(text.encode())


@pytest.mark.parametrize(
    ("digits", "valid"),
    [("4111111111111111", True), ("79927398713", True), ("79927398710", False), ("0", True)],
)
def test_luhn(digits: str, valid: bool) -> None:
    assert luhn_ok(digits.encode()) is valid


def test_iban_mod97() -> None:
    assert iban_ok(b"GB82WEST12345698765432")
    assert not iban_ok(b"GB82WEST12345698765433")
    assert not iban_ok(b"GB82WEST1234569876543!")


def test_masking_settles_when_a_token_changes_a_neighbour() -> None:
    """An SSN rejected for its neighbouring digit is found once that digit is masked."""
    policy = MaskPolicy([], known_detectors())
    once, _ = policy.mask_text("GB82WEST12345698765432536-22-1234")
    assert once == "[IBAN_CODE][US_SOCIAL_SECURITY_NUMBER]"
    assert policy.mask_text(once) == (once, {})


# -- the scanner's shortcuts: what every match must contain --------------------------------------

_SHORTCUT = [d for d in DETECTORS.values() if d.needs or d.shape]
_ALPHABET = '0123456789 -.+()@:_"AIKSTBCEGWZaiyzkebcdfx\n\\'
_PIECES = [
    "alice@example.com",
    "4111 1111 1111 1111",
    "536-22-1234",
    "+1 (415) 555-0100",
    "GB82 WEST 1234 5698 7654 32",
    "AKIAIOSFODNN7EXAMPLE",
    "A3TX" + "7" * 16,
    GCP_KEY,
    JWT,
    PEM,
    f'"private_key_id" : "{KEY_ID}"',
]


def _matches(pattern: str, data: bytes) -> list[bytes]:
    """Every match of `pattern` starting anywhere in `data` (RE2, as the scanner runs it)."""
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1
    rx = re2.compile(pattern.encode(), options)
    found = (rx.match(data, pos) for pos in range(len(data)))
    return [m.group() for m in found if m is not None]


@pytest.mark.parametrize("detector", _SHORTCUT, ids=lambda d: d.name)
@settings(max_examples=300)
@given(
    st.lists(st.one_of(st.text(alphabet=_ALPHABET, max_size=40), st.sampled_from(_PIECES))).map(
        "".join
    )
)
def test_every_match_holds_what_the_scanner_looks_for(detector: Detector, text: str) -> None:
    """`needs` and `shape` let the scanner skip a search; a match without them would be missed."""
    for match in _matches(detector.pattern, text.encode()):
        if detector.needs:
            assert detector.needs in match
        if detector.shape:
            shape = shape_of(match, detector.shape_drops)
            assert any(needle in shape for needle in detector.shape), (match, shape)


@pytest.mark.parametrize("detector", _SHORTCUT, ids=lambda d: d.name)
def test_the_shortcuts_hold_on_the_cases(detector: Detector) -> None:
    for text, _ in CASES[detector.name]:
        for match in _matches(detector.pattern, text.encode()):
            assert not detector.needs or detector.needs in match
            shape = shape_of(match, detector.shape_drops)
            assert not detector.shape or any(needle in shape for needle in detector.shape)
