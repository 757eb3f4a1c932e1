"""jitctl's own catalog query, run before the client's first ReadyForQuery.

Rules (notes §8; the brief's "mask more, never less"; families.py):
- One simple Query of read-only catalog statements. On masked targets three of them: table
  OIDs to `schema.table`, the attribute names of user tables (by attribute number: an alias
  of a masked column stays masked, and `COPY table TO STDOUT` gets its column list), and the
  OID of `citext` if the extension exists (its binary values are text). On targets whose
  policy has deny or approve rules with a `tables` list (`needs_families`), one more, last:
  the inheritance links (families.FAMILIES_SQL). Neither: no query at all.
- It is recorded like any statement (`internal: true`), its results never reach the client,
  and the client's first ReadyForQuery is held until its own ReadyForQuery arrives (and any
  client bytes sent before that wait too: core.py).
- If it fails, nothing is known: every table OID is unknown, so table-qualified masks match
  every column of that name; the families stay `families.UNKNOWN`, so every deny or approve
  table rule fits every statement that names a table (the error abandons the statements after
  it: protocol-flow §53.2.2, so the families statement goes last).
- Tables created later in the session are unknown too (same rule); links made later in the
  session are added as their statements go up (frontend.py).
"""

from __future__ import annotations

from jitctl.plugin import Direction, Forward

from . import families
from .messages import data_row, error_fields, query
from .state import SessionState
from .statements import Expect, Pending

MASKS_SQL = (
    "SELECT c.oid, n.nspname, c.relname FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','v','m','f','p');\n"
    "SELECT a.attrelid, a.attnum, a.attname FROM pg_attribute a "
    "JOIN pg_class c ON c.oid = a.attrelid WHERE c.relkind IN ('r','v','m','f','p') "
    "AND a.attnum > 0 AND NOT a.attisdropped "
    "AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace) "
    "ORDER BY a.attrelid, a.attnum;\n"
    "SELECT oid FROM pg_type WHERE typname = 'citext'"
)
MASKS_PARTS = ("tables", "attributes", "citext")


def parts(state: SessionState) -> tuple[str, ...]:
    """The statements this session's catalog query needs, in order (module docstring)."""
    masked = MASKS_PARTS if state.masks is not None else ()
    policy = state.services.policy
    return masked + (("families",) if getattr(policy, "needs_families", False) else ())


def start(state: SessionState, needed: tuple[str, ...]) -> None:
    """Queue the catalog query for `needed` (parts()); the caller holds the client's first
    ReadyForQuery. Families are UNKNOWN until the query's answer says otherwise."""
    state.catalog_parts = needed
    statements = [MASKS_SQL] if "tables" in needed else []
    if "families" in needed:
        statements.append(families.FAMILIES_SQL)
    sql = ";\n".join(statements)
    if "families" in needed:
        state.families = families.UNKNOWN
        state.family_rows = []
    pending = Pending(Expect.INTERNAL, seq=state.book.next_seq(), text=sql, started=state.clock())
    state.book.push(pending)
    state.record(
        "pg.statement",
        {
            "seq": pending.seq,
            "protocol": "simple",
            "text": sql,
            "internal": True,
            "decision": "allow",
            "rule": None,
        },
        durable=True,
    )
    state.out.append(Forward(Direction.UP, query(sql)))


def message(state: SessionState, pending: Pending, kind: int, body: bytes | None) -> None:
    """One message of the catalog query's answer; `pending.done` counts finished statements."""
    part = state.catalog_parts[pending.done] if pending.done < len(state.catalog_parts) else ""
    if kind == 0x44 and body is not None:  # D
        values = [v.decode("utf-8", "replace") if v is not None else "" for v in data_row(body)]
        if part == "tables" and len(values) == 3 and values[0].isdigit():
            state.tables[int(values[0])] = f"{values[1]}.{values[2]}"
        elif part == "attributes" and len(values) == 3 and values[0].isdigit():
            attnum = int(values[1]) if values[1].isdigit() else 0
            state.attnames.setdefault(int(values[0]), {})[attnum] = values[2]
        elif part == "citext" and values and values[0].isdigit():
            state.text_types = state.text_types | {int(values[0])}
        elif part == "families" and len(values) == 4:
            state.family_rows.append((values[0], values[1], values[2], values[3]))
    elif kind == 0x43 and part == "families":  # C: all the links are in
        state.families = families.from_rows(state.family_rows)
        state.family_rows = []
    elif kind == 0x45 and body is not None:  # E
        state.record("pg.catalog", {"error": error_fields(body).get("M", "")})
    elif kind == 0x5A:  # Z
        relations: dict[str, list[tuple[str, list[str]]]] = {}
        for oid, columns in state.attnames.items():
            name = state.tables.get(oid)
            if name is not None:
                ordered = [columns[n] for n in sorted(columns)]
                relations.setdefault(name.split(".", 1)[1].lower(), []).append((name, ordered))
        state.relations = relations
        done: dict[str, object] = {}
        if "tables" in state.catalog_parts:
            done["tables"] = len(state.tables)
        if "families" in state.catalog_parts:
            known = state.families.known
            done["inheritance_links"] = len(state.families.links) if known else None
        state.record("pg.catalog", done)
