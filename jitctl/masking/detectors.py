"""Content detectors, named like Google Sensitive Data Protection (DLP) infoTypes.

A detector is a name, an RE2 pattern that finds candidates, and an optional validator that
confirms them (see validators.py). docs/masking.md describes each one for users.

Rules:
- Patterns are RE2 syntax (linear time, no backreferences or lookaround), ASCII only, matched
  against UTF-8 bytes. A pattern never matches the empty string and never matches NUL: the
  scanner joins the values of a row with NUL and relies on no match crossing it.
- A pattern has no capture group, or exactly one: the part to mask (`"private_key_id": "…"`
  masks the id, not the key name).
- The replacement tokens (`[EMAIL_ADDRESS]`) and markers (`[MASKED]`, `[WITHHELD]`) contain no
  match of any pattern, so masking already-masked text changes nothing.
- `needs`, where given, is a string that every match of `pattern` contains; `shape`, where
  given, holds strings one of which occurs in the shape (see `shape_of`) of every match. Where
  they are absent from the rest of a buffer, the detector cannot match there either, and the
  scanner skips an RE2 search (a `bytes.find` costs a fraction of one). They must never be
  absent where the pattern matches: that would let a value through (tests/masking/
  test_detectors.py checks it on random input).
- Names are fixed once published: the config refers to them and audit counts carry them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from jitctl.errors import ConfigError
from jitctl.masking import validators

Confirm = Callable[[bytes, int, int], list[validators.Span]]


class UnknownDetector(ConfigError):
    """A mask names a detector jitctl does not have."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"unknown detector {name!r}",
            hint="known detectors: " + ", ".join(known_detectors()),
        )
        self.name = name


@dataclass(frozen=True)
class Detector:
    """One kind of sensitive value: what finds it, what confirms it, what it is called."""

    name: str  # DLP infoType id; also the replacement token `[NAME]` and the count key
    pattern: str  # RE2 syntax; at most one capture group (the span to mask)
    confirm: Confirm | None = None  # None: every candidate is a finding
    summary: str = ""
    needs: bytes = b""  # contained in every match (module rules); b"": no shortcut
    shape: tuple[bytes, ...] = ()  # one of these is in the shape of every match (module rules)
    shape_drops: bytes = b""  # bytes the shape leaves out (`shape_of`)


# The shape of text: digits read as `9`, capitals as `A`, the punctuation numbers are written
# with kept, anything else `_`. It is one `bytes.translate`, and tells digit-shaped detectors
# whether the rest of a buffer could still hold a match.
SHAPE = bytes(
    57 if 48 <= c <= 57 else 65 if 65 <= c <= 90 else c if c in b" +-.()" else 95
    for c in range(256)
)


def shape_of(data: bytes, drops: bytes = b"") -> bytes:
    """The shape of `data` (see `SHAPE`), without the bytes in `drops`."""
    return data.translate(SHAPE, drops)


_B64URL = "[A-Za-z0-9_-]"
_PEM_LABEL = "[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"

_ALL = (
    Detector(
        "EMAIL_ADDRESS",
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
        summary="local@domain.tld; the whole local part and domain are masked",
        needs=b"@",
    ),
    Detector(
        "CREDIT_CARD_NUMBER",
        r"[0-9](?:[ -]?[0-9]){12,}",
        validators.card_spans,
        summary="13-19 digits, optional single spaces or dashes, issuer digit 2-6, Luhn-valid",
        shape=(b"9" * 13,),  # 13 digits, once the separators are gone
        shape_drops=b" -",
    ),
    Detector(
        "US_SOCIAL_SECURITY_NUMBER",
        r"[0-9]{3}-[0-9]{2}-[0-9]{4}|[0-9]{3} [0-9]{2} [0-9]{4}",
        validators.ssn_spans,
        summary="AAA-GG-SSSS or AAA GG SSSS outside the ranges SSA never issues",
        shape=(b"999-99-9999", b"999 99 9999"),  # the pattern's two shapes
    ),
    Detector(
        "PHONE_NUMBER",
        r"\+[1-9][0-9]*(?:(?:[ .-]|[ .-]?\(|\)[ .-]?)[0-9]+)*"
        r"|(?:1[ .-])?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .-]?)[2-9][0-9]{2}[ .-]?[0-9]{4}",
        validators.phone_spans,
        summary="+ and 8-15 digits, or a NANP number written with separators",
    ),
    Detector(
        "IBAN_CODE",
        r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}",
        validators.iban_spans,
        summary="registered country length and ISO 13616 mod-97 check digits",
        shape=(b"AA99",),  # the country code and check digits
    ),
    Detector(
        "GCP_API_KEY",
        r"AIza[0-9A-Za-z_-]{35}",
        summary="Google API key: AIza and 35 URL-safe characters",
        needs=b"AIza",
    ),
    Detector(
        "GCP_CREDENTIALS",
        r'"private_key_id"\s*:\s*"([0-9a-f]{40})"',
        summary="the private_key_id of a service-account key file (the key is PRIVATE_KEY)",
        needs=b'"private_key_id"',
    ),
    Detector(
        "AWS_ACCESS_KEY",
        r"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}",
        summary="AWS access key id: AKIA/ASIA (and ABIA, ACCA, A3T*) and 16 characters",
        needs=b"A",
    ),
    Detector(
        "PRIVATE_KEY",
        rf"-----BEGIN{_PEM_LABEL}(?:[^\x00]*?-----END{_PEM_LABEL}|[^\x00]*)",
        summary="PEM private-key block, BEGIN to END (to the end of the value if cut off)",
        needs=b"-----BEGIN",
    ),
    Detector(
        "JSON_WEB_TOKEN",
        rf"ey{_B64URL}+(?:\.{_B64URL}*){{2,4}}",
        validators.jwt_spans,
        summary="compact JWS/JWE whose header decodes to a JSON object with alg",
        needs=b"ey",
    ),
)

DETECTORS: dict[str, Detector] = {detector.name: detector for detector in _ALL}


def known_detectors() -> tuple[str, ...]:
    """Every detector name a mask may list, in a stable order."""
    return tuple(DETECTORS)


def get_detectors(names: Iterable[str]) -> list[Detector]:
    """The detectors for `names`, each once, in registry order; `UnknownDetector` if any is not.

    Names are matched exactly (they are identifiers, as in DLP), but a lower-case spelling is
    accepted and folded, since config authors type them by hand.
    """
    wanted = set()
    for name in names:
        folded = name.strip().upper()
        if folded not in DETECTORS:
            raise UnknownDetector(name)
        wanted.add(folded)
    return [detector for detector in _ALL if detector.name in wanted]


def token(name: str) -> bytes:
    """What replaces a finding: the detector's name in brackets, never any of the value."""
    return f"[{name}]".encode("ascii")
