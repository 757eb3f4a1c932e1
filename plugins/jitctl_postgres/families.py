"""Inheritance families: which tables a statement on a parent or a partition also reaches.

DML, TRUNCATE and ALTER TABLE on an inheritance parent or a partitioned table reach its children
and partitions (unless `ONLY` is written), DROP TABLE on a partitioned table drops its partitions
without CASCADE, and a statement on a partition or a child reaches rows that are also its
parent's. The classifier sees no catalog, so policy.py asks this module for a table's family:
its ancestors and descendants, transitively (not its siblings: `payments_2023` holds none of
`payments_2024`'s rows); for a table named with `ONLY`, its ancestors alone (`ancestors`).

Rules (docs/postgres.md, "Table rules and inheritance"):
- Learned per session, in band: jitctl's catalog query (catalog.py) reads `pg_inherits` joined
  to `pg_class`/`pg_namespace` on the session's own upstream connection, before the client's
  first ReadyForQuery, whenever the target has a deny or approve rule with a `tables` list. So
  it runs with the exact login, database and TLS of the session (a per-caller Cloud SQL IAM
  login included) and is recorded in the trail like the rest of that query. Client bytes sent
  before its answer wait for it (core.py).
- Names are schema-qualified and case-folded (`public.payments`), as the classifier folds them.
  An unqualified name in SQL (`payments`) may resolve to any schema (`search_path`), so it
  stands for the families of every `*.payments`; a qualified one for exactly its own.
- If the query fails (the role cannot read the catalog) or has not answered, nothing is known:
  `UNKNOWN`, and every table the statement names may belong to any rule's family, so every deny
  or approve rule with a `tables` list fits every statement that names a table (fail closed).
- Allow rules never use families: they fit only when every table the text names is listed, as
  before (policy.py). A family only ever makes deny and approve rules fit more.
- Links the session itself makes or breaks (CREATE TABLE … PARTITION OF / INHERITS, ALTER TABLE
  … ATTACH/DETACH PARTITION, INHERIT/NO INHERIT: flag `inheritance`) join all the tables that
  statement names, from when it is forwarded (`linked`): detaching keeps them joined, since the
  rows moved either way. Links other sessions make while this one runs are seen by the next
  session.
- Immutable and interned (`families_of`): policy.py caches decisions per Families object, so
  sessions that found the same links share one object and one cache.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

# Direct parent links of tables, partitioned tables and foreign tables (not of partitioned
# indexes, which pg_inherits lists too). One statement of catalog.py's query.
FAMILIES_SQL = (
    "SELECT cn.nspname, c.relname, pn.nspname, p.relname FROM pg_inherits i "
    "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace "
    "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace "
    "WHERE p.relkind IN ('r','p','f')"
)


class Families:
    """Child → parent links between tables (lower-case names); `known` is False when the
    catalog could not be read, and every table may then be in any family."""

    __slots__ = (
        "_ancestors", "_by_base", "_children", "_parents", "_relatives", "known", "links",
    )  # fmt: skip

    def __init__(self, links: frozenset[tuple[str, str]], known: bool = True) -> None:
        self.links, self.known = links, known
        self._parents: dict[str, set[str]] = {}
        self._children: dict[str, set[str]] = {}
        self._by_base: dict[str, set[str]] = {}
        for child, parent in links:
            self._parents.setdefault(child, set()).add(parent)
            self._children.setdefault(parent, set()).add(child)
            for name in (child, parent):
                self._by_base.setdefault(name.rpartition(".")[2], set()).add(name)
        self._relatives: dict[str, frozenset[str]] = {}
        self._ancestors: dict[str, frozenset[str]] = {}

    def __bool__(self) -> bool:
        return bool(self.links) or not self.known

    def __repr__(self) -> str:
        return f"Families({len(self.links)} links{'' if self.known else ', unknown'})"

    def relatives(self, name: str) -> frozenset[str]:
        """The ancestors and descendants of every table `name` can be (an unqualified name:
        that table in every schema), as the catalog and this session's links name them."""
        if not self.links:
            return frozenset()
        return self._family(name)

    def ancestors(self, name: str) -> frozenset[str]:
        """The ancestors of every table `name` can be: those whose rows `ONLY name` still
        reaches (a child's rows are its parents' too), not its descendants. A link made in
        this session goes both ways (`linked`), so its tables are each other's ancestors."""
        if not self.links:
            return frozenset()
        cached = self._ancestors.get(name)
        if cached is None:
            cached = self._ancestors[name] = frozenset(
                self._reach(name, self._parents) - self._aliases(name)
            )
        return cached

    def linked(self, names: Iterable[str]) -> Families:
        """These families with every one of `names` joined to every other (both ways: which
        is the parent does not matter to a deny rule, and more never fits less)."""
        names = sorted(set(names))
        extra = {(a, b) for a in names for b in names if a != b}
        if not self.known or extra <= self.links:
            return self
        return families_of(self.links | extra)

    def _family(self, name: str) -> frozenset[str]:
        cached = self._relatives.get(name)
        if cached is None:
            cached = frozenset(self._reach(name, self._parents) | self._reach(name, self._children))
            self._relatives[name] = cached - self._aliases(name)
        return self._relatives[name]

    def _aliases(self, name: str) -> set[str]:
        """The nodes that may be the same table: a link made in this session under `t` and
        the catalog's `s.t` (an unqualified name resolves by `search_path`)."""
        _, dot, base = name.rpartition(".")
        if dot:
            return {name, base} if base in self._by_base.get(base, ()) else {name}
        return self._by_base.get(name, set()) | {name}

    def _reach(self, start: str, edges: dict[str, set[str]]) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for alias in self._aliases(todo.pop()):
                for nxt in edges.get(alias, ()):
                    if nxt not in seen:
                        seen.add(nxt)
                        todo.append(nxt)
        return seen


@functools.lru_cache(maxsize=64)
def families_of(links: frozenset[tuple[str, str]]) -> Families:
    """One shared object per set of links (see the module docstring)."""
    return Families(links)


def from_rows(rows: Iterable[tuple[str, str, str, str]]) -> Families:
    """The families of FAMILIES_SQL's rows (child schema, child, parent schema, parent)."""
    links = frozenset((f"{cs}.{c}".lower(), f"{ps}.{p}".lower()) for cs, c, ps, p in rows)
    return families_of(links)


NONE = families_of(frozenset())
UNKNOWN = Families(frozenset(), known=False)
