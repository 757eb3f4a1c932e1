"""Decide allow / deny / approve for classified SQL, from a target's `[[targets.rules]]`.

Rules (DESIGN §4; notes/postgres-wire.md §9):
- Built-in guards run first and cannot be overridden, because the rules are only as good as the
  parse they read (see BUILTIN_GUARDS for each reason). Unparseable text is denied unless the
  first rule that matches it lists statement "unknown" explicitly and allows or approves it.
- Then the rules, per statement, in order: the first rule whose `match` fits wins; none fits →
  the target's `default_action`. Every key given in `match` must fit (AND); an empty match fits
  everything. For a multi-statement text the most severe decision wins (deny > approve > allow),
  the earliest statement on a tie.
- Ambiguity resolves toward the stricter outcome, so a rule fits differently by what it does:
  - deny and approve rules fit when ANYTHING in the statement is listed: any of its `kinds` (a
    DELETE hidden in a CTE, DO body, EXPLAIN ANALYZE or PREPARE fits "delete"), any table it
    reads or writes, any function it calls. Kind "unknown" (dynamic SQL, opaque bodies) could be
    anything, so it fits every `statement`, `tables` and `functions` list. Flag
    "unnamed_tables" (a CASCADE reaches tables the text does not name: TRUNCATE orders
    CASCADE empties the tables whose foreign keys reference orders) fits every `tables`
    list.
  - allow rules fit only when EVERYTHING is listed: all its kinds (so `allow ["select"]` does not
    let `WITH d AS (DELETE …) SELECT` through), all its tables, all its functions; a `tables` or
    `functions` list needs at least one to check; "unknown" must be listed by name; a `tables`
    list never fits a statement flagged "unnamed_tables". (A rule whose match has only
    `groups`, or nothing, still fits everything.)
- Names: `*` wildcards (fnmatch), case-folded. An unqualified pattern ("accounts") fits any
  schema. A qualified pattern ("public.accounts") fits an unqualified name in the SQL only for
  deny/approve, since `search_path` decides where that name resolves.
- Inheritance (families.py): a deny or approve rule's `tables` list also fits a statement that
  names a table in the family of a listed one, its ancestors and descendants (a rule on
  `payments` fits `SELECT * FROM payments_2024`, a partition; a rule on the partition fits
  `DELETE FROM payments`), with the same name rules. A table the statement names only with
  `ONLY` (`tables_only`: `SELECT * FROM ONLY payments`) brings its ancestors alone: its own
  rows are its ancestors' rows too, and none of its descendants' are read or written. When
  the session could not read the catalog's links (`families.UNKNOWN`) every table named may
  be in the family, ONLY or not, so such a rule fits every statement that names a table.
  Allow rules never read families: every table the text names must still be listed, so a
  family never makes anything more allowed.
- `groups` is about the caller: the rule applies only to members of one of the listed groups.
- Decisions are cached per (classification, groups, families); classifications are themselves
  cached by exact text, so this is a cache per (exact text, groups, families), and families
  are interned objects shared by sessions that found the same links. A classification copied from a
  template (templates.py) is decided by its template's cached decision: decisions depend on
  kinds, tables, functions, flags and groups, never on the text (which only names the
  statement that decided).
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jitctl.errors import ConfigError

from . import families as fam
from .classify import STATEMENT_KINDS, Classification, StatementInfo
from .families import Families

if TYPE_CHECKING:
    from jitctl.config import Rule

ACTIONS = ("allow", "approve", "deny")
_SEVERITY = {action: rank for rank, action in enumerate(ACTIONS)}
CACHE_SIZE = 4096

# (flag, reason): any statement carrying the flag is denied before the rules are read.
BUILTIN_GUARDS: tuple[tuple[str, str], ...] = (
    (
        "fastpath_function_call",
        "calls a function by OID with no SQL text to check (libpq's large-object calls use it)",
    ),
    (
        "lexing_change",
        "changes how SQL text is lexed; jitctl must read text exactly as the server does "
        "(standard_conforming_strings, client_encoding, escape_string_warning, backslash_quote)",
    ),
    (
        "set_role",
        "changes the session's role; the broker's upstream identity must stay what the grant says",
    ),
    (
        "session_authorization",
        "changes the session's authorization; the broker's upstream identity must stay what the "
        "grant says",
    ),
    ("copy_program", "runs a shell command on the database server (COPY … PROGRAM)"),
    ("copy_file", "reads or writes a file on the database server's disk (COPY with a file name)"),
    (
        "shadows_builtin_type",
        "names a type like a built-in type (a table or view names its row type too); a temporary "
        "one would change what later casts run, such as 'x'::text",
    ),
)
UNPARSEABLE_REASON = (
    'jitctl cannot tell what it does (only a rule listing statement "unknown" can let it through)'
)


@dataclass(frozen=True)
class Decision:
    action: str  # "allow" | "deny" | "approve"
    rule: str  # rule name, "rule N" when unnamed, "default", or "builtin: …"
    reason: str
    statement: str = ""  # the text of the statement that decided


class Policy:
    """A target's rules, compiled once; `decide` is safe to call from any thread."""

    def __init__(self, rules: Sequence[Rule], default_action: str = "allow") -> None:
        if default_action not in ACTIONS:
            raise ConfigError(f"default_action must be one of {', '.join(ACTIONS)}")
        self.default_action = default_action
        self._rules = [_Compiled(i, rule) for i, rule in enumerate(rules)]
        # Only deny and approve rules with a `tables` list read families (module docstring).
        self.needs_families = any(rule.tables and not rule.strict for rule in self._rules)
        self._cached: Callable[[Classification, frozenset[str], Families], Decision] = (
            functools.lru_cache(maxsize=CACHE_SIZE)(self._decide)
        )

    def decide(
        self,
        classification: Classification,
        groups: Sequence[str],
        families: Families = fam.NONE,
    ) -> Decision:
        """`families`: the session's inheritance links (families.py); none by default."""
        if not self.needs_families:
            families = fam.NONE  # one cache entry per text, whatever the session found
        template = classification.template
        if template is None:
            return self._cached(classification, frozenset(groups), families)
        # A copy of `template` for a text whose tree differs only in constants (templates.py):
        # the same single statement but for its text, and decisions never read the text except
        # to name the statement that decided. So: the template's decision, naming this text.
        decision = self._cached(template, frozenset(groups), families)
        return Decision(
            decision.action, decision.rule, decision.reason, classification.statements[0].text
        )

    def _decide(
        self, classification: Classification, groups: frozenset[str], families: Families
    ) -> Decision:
        if not classification.statements:
            return Decision("allow", "builtin: empty", "no statement to run")
        worst: Decision | None = None
        for info in classification.statements:
            decision = self._statement(info, groups, families, classification.error)
            if worst is None or _SEVERITY[decision.action] > _SEVERITY[worst.action]:
                worst = decision
            if decision.action == "deny":
                break
        assert worst is not None
        return worst

    def _statement(
        self, info: StatementInfo, groups: frozenset[str], families: Families, error: str | None
    ) -> Decision:
        for flag, reason in BUILTIN_GUARDS:
            if flag in info.flags:
                return Decision("deny", f"builtin: {flag}", f"{_what(info)} {reason}", info.text)
        hit = next((rule for rule in self._rules if rule.fits(info, groups, families)), None)
        if "unparseable" in info.flags and (
            hit is None or hit.action == "deny" or "unknown" not in hit.statement
        ):
            reason = f"the statement could not be parsed ({error}); {UNPARSEABLE_REASON}"
            return Decision("deny", "builtin: unparseable", reason, info.text)
        if hit is None:
            verb = _VERBS[self.default_action]
            reason = f"{_what(info)} {verb} by default (no rule matched)"
            return Decision(self.default_action, "default", reason, info.text)
        return Decision(hit.action, hit.name, hit.reason(info, families), info.text)


_VERBS = {"allow": "is allowed", "deny": "is denied", "approve": "needs approval"}


class _Compiled:
    """One rule with its lists case-folded and its matching mode fixed by its action."""

    def __init__(self, index: int, rule: Rule) -> None:
        match = rule.match
        self.name = rule.name or f"rule {index + 1}"
        self.action = rule.action
        self.message = rule.message
        foreign = [key for key in ("command", "method", "path") if getattr(match, key)]
        if foreign:  # ignored, they would turn the rule into one that fits every statement
            raise ConfigError(f"{self.name}: {', '.join(foreign)} do not apply to postgres rules")
        self.statement = frozenset(word.lower() for word in match.statement)
        unknown_words = self.statement - STATEMENT_KINDS
        if unknown_words:
            raise ConfigError(
                f"{self.name}: unknown statement kind(s) {', '.join(sorted(unknown_words))}; "
                f"expected some of: {', '.join(sorted(STATEMENT_KINDS))}"
            )
        self.tables = tuple(p.lower() for p in match.tables)
        self.functions = tuple(p.lower() for p in match.functions)
        self.groups = frozenset(match.groups)
        self.strict = rule.action == "allow"

    def fits(self, info: StatementInfo, groups: frozenset[str], families: Families) -> bool:
        if self.groups and not self.groups & groups:
            return False
        unknown = "unknown" in info.kinds
        if self.statement:
            if self.strict:
                if not info.kinds <= self.statement:
                    return False
            elif not (info.kinds & self.statement or unknown):
                return False
        elif self.strict and unknown and (self.tables or self.functions):
            return False  # a content-restricted allow cannot vouch for code it cannot read
        anything = unknown and not self.strict  # unreadable code may touch any table or function
        if self.tables:
            unnamed = "unnamed_tables" in info.flags  # tables the text does not name
            if unnamed and self.strict:
                return False  # an allow cannot vouch for tables it cannot see
            tables = info.tables_read | info.tables_written
            if not (
                anything
                or unnamed
                or self._names(tables, self.tables)
                or self._family(info, families) is not None
            ):
                return False
        return not self.functions or anything or self._names(info.functions, self.functions)

    def _names(self, names: Iterable[str], patterns: tuple[str, ...]) -> bool:
        """ALL names fit (allow; at least one name) or ANY name fits (deny, approve)."""
        if self.strict:
            names = tuple(names)
            return bool(names) and all(_fits(n, patterns, lenient=False) for n in names)
        return any(_fits(n, patterns, lenient=True) for n in names)

    def _family(self, info: StatementInfo, families: Families) -> str | None:
        """Why a deny or approve rule's tables fit through inheritance (families.py), or
        None: a table the statement names is in the family of one the rule lists (in its
        ancestors, for a table named only with ONLY)."""
        if self.strict or not families:
            return None
        for name in sorted(info.tables):
            if not families.known:  # ONLY too: any table may be any table's child
                return (
                    f"{name} may be a partition, child or parent of a table the rule lists: "
                    "jitctl could not read which tables inherit from which"
                )
            only = name in info.tables_only
            relatives = families.ancestors(name) if only else families.relatives(name)
            for relative in sorted(relatives):
                if _fits(relative, self.tables, lenient=True):
                    return f"{name} is in the inheritance family of {relative}"
        return None

    def reason(self, info: StatementInfo, families: Families = fam.NONE) -> str:
        if self.message:
            return f"{self.message} (rule '{self.name}')"
        if self.statement:
            listed = info.kinds & self.statement or info.kinds
            what = " and ".join(kind.upper() for kind in sorted(listed))
            if "unparseable" in info.flags:
                what = "unparseable text"  # only an allow/approve naming "unknown" gets here
            elif "unknown" in info.kinds and not info.kinds & self.statement:
                what = "dynamic SQL (it may do anything)"
        else:
            what = _what(info)
        if self.tables and "unnamed_tables" in info.flags:
            what += " (it changes tables its text does not name, such as those a CASCADE reaches)"
        elif self.tables and not ("unknown" in info.kinds or self._names(info.tables, self.tables)):
            why = self._family(info, families)
            if why is not None:
                what += f" ({why})"
        return f"{what} {_VERBS[self.action]} by rule '{self.name}'"


def _fits(name: str, patterns: tuple[str, ...], lenient: bool) -> bool:
    _, dot, base = name.rpartition(".")
    for pattern in patterns:
        if "." not in pattern:
            if fnmatch.fnmatchcase(base, pattern):
                return True
        elif dot:
            if fnmatch.fnmatchcase(name, pattern):
                return True
        elif lenient and fnmatch.fnmatchcase(base, pattern.rpartition(".")[2]):
            return True
    return False


def _what(info: StatementInfo) -> str:
    if info.kind == "function_call":
        return "the FunctionCall message"
    return info.kind.upper() if info.kind != "unknown" else "the statement"
