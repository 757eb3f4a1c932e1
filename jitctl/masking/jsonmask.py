"""Masking a parsed JSON document (for the HTTP gateway's request and response bodies).

Rules:
- A member whose name is in `field_names` (case-insensitive) has its whole value replaced by
  the marker string `[MASKED]`, whatever its type (an object under `ssn` is hidden whole),
  counted as `FIELD:<name as it appears>`. The member itself stays, so the shape is readable.
- Every other string is scanned by the policy's detectors, and so are member names (an email
  used as a key is still an email) and numbers (a card number sent as a JSON number). A number
  with a finding becomes a string; booleans and null pass unchanged.
- Member names that collide after masking get `#2`, `#3`... so no member is silently dropped.
- Fail closed: a string that cannot be scanned becomes `[WITHHELD]`; a document too deeply
  nested to walk is withheld whole. The input document is never modified.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from jitctl.masking.rows import WITHHELD, WITHHELD_COUNT

if TYPE_CHECKING:
    from jitctl.masking.rules import MaskPolicy


def mask_json(
    document: Any, field_names: Iterable[str], policy: MaskPolicy
) -> tuple[Any, Counter[str]]:
    """A masked copy of `document` (as `json.loads` returns it) and what was masked."""
    walker = _Walker({name.casefold() for name in field_names}, policy)
    try:
        return walker.value(document), walker.counts
    except RecursionError:
        return WITHHELD.decode(), Counter({WITHHELD_COUNT: 1})


class _Walker:
    def __init__(self, names: set[str], policy: MaskPolicy) -> None:
        self.names = names
        self.policy = policy
        self.marker = policy.marker.decode("utf-8")
        self.counts: Counter[str] = Counter()

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return self.members(value)
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            masked, found = self.policy.mask_text(repr(value))
            if found:
                self.counts.update(found)
                return masked
            return value
        # Anything else json.loads can make (Decimal with parse_float): scan its text form.
        masked, found = self.policy.mask_text(str(value))
        if found:
            self.counts.update(found)
        return masked if found else value

    def text(self, text: str) -> str:
        masked, found = self.policy.mask_text(text)
        if found:  # Counter.update is Python code: not for every key and string found clean
            self.counts.update(found)
        return masked

    def members(self, obj: dict[Any, Any]) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key, value in obj.items():
            name = self.text(key) if isinstance(key, str) else key
            if name in out:
                n = 2
                while f"{name}#{n}" in out:
                    n += 1
                name = f"{name}#{n}"
            if isinstance(key, str) and key.casefold() in self.names:
                out[name] = self.marker
                self.counts[f"FIELD:{key}"] += 1
            else:
                out[name] = self.value(value)
        return out
