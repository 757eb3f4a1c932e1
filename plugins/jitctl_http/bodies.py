"""Bodies: what the trail keeps of them and how a response body is masked. Pure.

- `Capture` keeps the first `limit` bytes of a body and counts the rest, so recording costs
  bounded memory whatever the body's size.
- `maskable(content_type)`: JSON (`application/json`, `*+json`), text (`text/*`, XML, form
  data, JavaScript) or no content type at all are masked when the target has masks; other
  types (images, archives, octet streams) pass through untouched and unbuffered.
- `mask_body`: a JSON document is masked by field name (the masks' column names) and by
  detectors (`jitctl.masking.mask_json`); text, and JSON that does not parse, by detectors.
  A body that is not UTF-8 is withheld (fail closed). Without detectors, a body in which no
  field name occurs (and no JSON escape could spell one) has nothing to mask and is returned
  as it is, without being parsed.
- `for_record`: the recorded form of a captured body, masked the same way; binary bodies are
  recorded by size only.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

TEXT_TYPES = (
    "text/",
    "application/xml",
    "application/x-www-form-urlencoded",
    "application/javascript",
    "application/x-ndjson",
)


class Capture:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.kept = bytearray()
        self.size = 0

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        room = self.limit - len(self.kept)
        if room > 0:
            self.kept += data[:room]

    @property
    def truncated(self) -> bool:
        return self.size > len(self.kept)


def media_type(content_type: bytes) -> str:
    return content_type.split(b";")[0].strip().lower().decode("latin-1")


def is_json(content_type: bytes) -> bool:
    return _is_json(media_type(content_type))


def maskable(content_type: bytes) -> bool:
    return _maskable(media_type(content_type))


# The tests on a media type already worked out: a body's type is parsed once per decision.
def _is_json(kind: str) -> bool:
    return kind == "application/json" or kind.endswith("+json")


def _maskable(kind: str) -> bool:
    return not kind or _is_json(kind) or kind.startswith(TEXT_TYPES)


def _no_counts() -> Counter[str]:
    """A new empty Counter without `Counter.__init__` (a generic `update` in Python, a third
    of a microsecond): the trail asks for two of them per request."""
    return Counter.__new__(Counter)


def field_names(masks: Iterable[Any]) -> set[str]:
    """Mask column patterns as JSON field names (`users.email` -> `email`)."""
    names: set[str] = set()
    for mask in masks:
        for column in mask.columns:
            names.add(column.rsplit(".", 1)[-1])
    names.discard("*")
    return names


def mask_body(
    body: bytes, content_type: bytes, policy: Any, fields: Iterable[str]
) -> tuple[bytes, Counter[str]]:
    """The masked body and what was masked."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return policy.marker, Counter({"WITHHELD": 1})
    if not policy.detectors and not _may_name(text, fields):
        return body, Counter()
    kind = media_type(content_type)
    if _is_json(kind) or (not kind and text.lstrip()[:1] in "{["):
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            document = _NOT_JSON
        if document is not _NOT_JSON:
            from jitctl.masking import mask_json

            masked, counts = mask_json(document, fields, policy)
            if not counts:
                return body, counts
            return json.dumps(masked, ensure_ascii=False).encode("utf-8"), counts
    masked_text, counts = policy.mask_text(text)
    return (masked_text.encode("utf-8") if counts else body), counts


_NOT_JSON = object()


def _may_name(text: str, fields: Iterable[str]) -> bool:
    """Whether a JSON member in `text` could be named like one of `fields` (case-insensitive,
    as `mask_json` compares). A backslash could hide a name behind escapes (`\\u0073sn`)."""
    if "\\" in text:
        return True
    folded = text.casefold()
    return any(name.casefold() in folded for name in fields)


def for_record(
    capture: Capture, content_type: bytes, policy: Any, fields: Iterable[str]
) -> tuple[str | None, Counter[str]]:
    """The text the trail keeps of a body (None when there is none or it is binary)."""
    if not capture.kept:
        return None, _no_counts()
    kind = media_type(content_type)
    if not _maskable(kind):
        return None, _no_counts()
    if policy is None or not policy.active:
        return capture.kept.decode("utf-8", "replace"), _no_counts()
    if capture.truncated and _is_json(kind) and set(fields):
        # A cut document does not parse, so field names cannot be found: keep nothing.
        return "[WITHHELD]", Counter({"WITHHELD": 1})
    if capture.truncated:  # detectors only
        text, counts = policy.mask_text(capture.kept.decode("utf-8", "replace"))
        return text, counts
    masked, counts = mask_body(bytes(capture.kept), content_type, policy, fields)
    return masked.decode("utf-8", "replace"), counts


# The `masked` count of a body (or WebSocket message) in which the broker's secret was replaced.
SECRET_FOUND = "BROKER_SECRET"


class Scrub:
    """Replaces the broker's own secrets in a response stream with `*` of the same length (so
    framing stays right): an upstream that echoes its request headers (a debug endpoint, an
    error page) must not hand the injected credential to the client or the trail. A secret cut
    by a chunk boundary is caught: a chunk's end that a secret starts with waits for the next
    chunk. Only such an end waits, so a stream of small events (server-sent events, a long
    poll) reaches the client as it comes."""

    __slots__ = ("found", "held", "keep", "secrets")

    def __init__(self, secrets: Iterable[bytes]) -> None:
        unique = {s for s in secrets if len(s) >= 8}
        # A secret that holds another (`Bearer <token>` holds the token) is hidden once the
        # shorter is replaced; kept, every read ending in its first byte ("B") would wait.
        kept = {s for s in unique if not any(o != s and o in s for o in unique)}
        self.secrets = sorted(kept, key=len, reverse=True)
        self.keep = max((len(s) for s in self.secrets), default=1) - 1
        self.held = b""
        self.found = 0

    def fresh(self) -> Scrub:
        """A scrubber for the next stream, with the same secrets (worked out once per
        connection, not once per response)."""
        scrub = Scrub.__new__(Scrub)
        scrub.secrets, scrub.keep, scrub.held, scrub.found = self.secrets, self.keep, b"", 0
        return scrub

    def _replace(self, data: bytes) -> bytes:
        for secret in self.secrets:
            if secret in data:
                self.found += data.count(secret)
                data = data.replace(secret, b"*" * len(secret))
        return data

    def feed(self, data: bytes) -> bytes:
        if not self.secrets:
            return data
        if self.held or type(data) is not bytes:
            data = self.held + bytes(data)
        data = self._replace(data)
        waits = self._partial(data)
        if not waits:  # the usual case
            self.held = b""
            return data
        self.held = data[-waits:]
        return data[:-waits]

    def _partial(self, data: bytes) -> int:
        """The length of the longest end of `data` that some secret starts with (a secret
        that a chunk boundary cuts starts in such an end); 0 if there is none."""
        longest = 0
        start = max(len(data) - self.keep, 0)
        for secret in self.secrets:
            first = secret[0]
            at = data.find(first, start)
            while at != -1:
                if secret.startswith(data[at:]):  # the earliest such start is the longest end
                    longest = max(longest, len(data) - at)
                    break
                at = data.find(first, at + 1)
        return longest

    def flush(self) -> bytes:
        if not self.held:
            return b""
        held, self.held = self._replace(self.held), b""
        return held
