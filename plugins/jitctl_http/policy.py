"""Which rule decides an HTTP request: pure, built from the target's configuration.

Rules are tried in order and the first that matches decides; no match means the target's
`default_action`. Within a rule every key that is set must match:

- `method`: the request method, case-insensitive (`*` matches any);
- `path`: fnmatch patterns (case-sensitive) against the request's *canonical* path: percent-
  decoded, without the query. A path whose decoded form has `.`/`..` segments, empty segments
  or backslashes is ambiguous (upstreams disagree on what it names) and is refused before any
  rule is tried, so `/api/%2e%2e/admin` cannot slip past a rule on `/admin*`;
- `groups`: the caller is in one of them;
- `body`: JSON body fields, `{"a.b": ["glob", ...]}`, dotted paths into the request's JSON
  object; the field's value (as text) must match one of the globs. A rule with `body` matches
  only a request whose JSON body the gateway has read whole (`needs_body` says when to read it,
  up to the target's `mask_limit`); a body that is not JSON, or too large, never matches, and
  then a *deny* or *approve* rule with `body` is applied anyway (fail closed).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote


@dataclass(frozen=True, slots=True)
class HttpRule:
    name: str
    action: str  # "allow" | "deny" | "approve"
    methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    body: tuple[tuple[str, tuple[str, ...]], ...] = ()
    message: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    action: str  # "allow" | "deny" | "approve"
    rule: str  # the rule's name ("rule 3" when unnamed; "default_action"; "path")
    message: str = ""


class AmbiguousPath(ValueError):
    pass


def canonical_path(target: str) -> tuple[str, str]:
    """(decoded path, raw query) of a request target; AmbiguousPath if it could name two
    things."""
    path, _, query = target.partition("?")
    if not path.startswith("/"):
        if path == "*":  # OPTIONS *
            return path, query
        raise AmbiguousPath("only origin-form request targets (/path) are accepted")
    decoded = unquote(path, errors="strict")
    if "\\" in decoded or "\x00" in decoded:
        raise AmbiguousPath(f"the path {path!r} has a backslash or NUL")
    # Every segment of `decoded + "/"` stands between two slashes: an empty one before the
    # last is "//", a dot segment "/./" or "/../" (substring tests, not a loop per segment).
    ended = decoded + "/"
    if "//" in decoded or "/./" in ended or "/../" in ended:
        raise AmbiguousPath(f"the path {path!r} has dot or empty segments")
    return decoded, query


@dataclass(frozen=True, slots=True)
class _Head:
    """A rule's method and path tests, compiled once per policy (once per connection): a
    request tries them in `needs_body` and again in `decide`."""

    rule: HttpRule
    decision: Decision  # what the rule decides when it applies (frozen: one for all requests)
    methods: frozenset[str] | None  # None: any method
    path: Callable[[str], object] | None  # a match of any of the rule's patterns; None: any

    @classmethod
    def of(cls, rule: HttpRule) -> _Head:
        methods = None if not rule.methods or "*" in rule.methods else frozenset(rule.methods)
        path = None
        if rule.paths:
            # fnmatch.fnmatchcase(path, p) matches with re.compile(fnmatch.translate(p)): one
            # alternation of those matches if any of them does.
            either = "|".join(f"(?:{fnmatch.translate(p)})" for p in rule.paths)
            path = re.compile(either).match
        return cls(rule, Decision(rule.action, rule.name, rule.message), methods, path)

    def matches(self, method: str, path: str) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return self.path is None or self.path(path) is not None


@dataclass(frozen=True)
class HttpPolicy:
    rules: tuple[HttpRule, ...]
    default_action: str
    groups: tuple[str, ...] = ()
    # The rules this caller's groups let apply, their tests compiled (`_Head`).
    _heads: tuple[_Head, ...] = field(init=False, repr=False, compare=False)
    _default: Decision = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        groups = set(self.groups)
        heads = tuple(
            _Head.of(rule) for rule in self.rules if not rule.groups or groups & set(rule.groups)
        )
        # frozen: set once, here
        object.__setattr__(self, "_heads", heads)
        object.__setattr__(self, "_default", Decision(self.default_action, "default_action"))

    @classmethod
    def from_target(cls, target: Any, groups: Sequence[str] = ()) -> HttpPolicy:
        rules = []
        for index, rule in enumerate(target.rules):
            match = rule.match
            rules.append(
                HttpRule(
                    name=rule.name or f"rule {index + 1}",  # as approvals name it
                    action=rule.action,
                    methods=tuple(m.upper() for m in match.method),
                    paths=tuple(match.path),
                    groups=tuple(match.groups),
                    body=tuple((k, tuple(v)) for k, v in match.body.items()),
                    message=rule.message,
                )
            )
        return cls(tuple(rules), target.default_action, tuple(groups))

    def needs_body(self, method: str, path: str) -> bool:
        """Whether some rule that could decide this request looks into its JSON body."""
        method = method.upper()  # as `decide` sees it
        for head in self._heads:
            if head.matches(method, path):
                return bool(head.rule.body)  # the first rule that could match decides
        return False

    def decide(self, method: str, path: str, body: bytes | None = None) -> Decision:
        """`body`: the whole request body when `needs_body` asked for it and it fitted."""
        method = method.upper()
        document = _json_object(body) if body is not None else None
        for head in self._heads:
            if not head.matches(method, path):
                continue
            rule = head.rule
            if rule.body:
                if document is None:
                    if rule.action == "allow":
                        continue  # an allow never applies to what it could not check
                    return head.decision
                if not all(_field_matches(document, k, v) for k, v in rule.body):
                    continue
            return head.decision
        return self._default


def _json_object(body: bytes) -> Mapping[str, Any] | None:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def _field_matches(document: Mapping[str, Any], dotted: str, globs: Sequence[str]) -> bool:
    value: Any = document
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, dict | list):
        text = json.dumps(value, separators=(",", ":"))
    else:
        text = str(value)
    return any(fnmatch.fnmatchcase(text, glob) for glob in globs)
