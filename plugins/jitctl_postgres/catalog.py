"""jitctl's own catalog query on masked targets, run before the client's first ReadyForQuery.

Rules (notes §8; the brief's "mask more, never less"):
- One simple Query of three read-only catalog statements: table OIDs to `schema.table`, the
  attribute names of user tables (by attribute number: an alias of a masked column stays
  masked, and `COPY table TO STDOUT` gets its column list), and the OID of `citext` if the
  extension exists (its binary values are text).
- It is recorded like any statement (`internal: true`), its results never reach the client,
  and the client's first ReadyForQuery is held until its own ReadyForQuery arrives.
- If it fails, nothing is known: every table OID is unknown, so table-qualified masks match
  every column of that name.
- Tables created later in the session are unknown too (same rule).
"""

from __future__ import annotations

from jitctl.plugin import Direction, Forward

from .messages import data_row, error_fields, query
from .state import SessionState
from .statements import Expect, Pending

CATALOG_SQL = (
    "SELECT c.oid, n.nspname, c.relname FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','v','m','f','p');\n"
    "SELECT a.attrelid, a.attnum, a.attname FROM pg_attribute a "
    "JOIN pg_class c ON c.oid = a.attrelid WHERE c.relkind IN ('r','v','m','f','p') "
    "AND a.attnum > 0 AND NOT a.attisdropped "
    "AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace) "
    "ORDER BY a.attrelid, a.attnum;\n"
    "SELECT oid FROM pg_type WHERE typname = 'citext'"
)


def start(state: SessionState) -> None:
    """Queue the catalog query (the caller holds the client's first ReadyForQuery)."""
    pending = Pending(
        Expect.INTERNAL, seq=state.book.next_seq(), text=CATALOG_SQL, started=state.clock()
    )
    state.book.push(pending)
    state.record(
        "pg.statement",
        {
            "seq": pending.seq,
            "protocol": "simple",
            "text": CATALOG_SQL,
            "internal": True,
            "decision": "allow",
            "rule": None,
        },
        durable=True,
    )
    state.out.append(Forward(Direction.UP, query(CATALOG_SQL)))


def message(state: SessionState, pending: Pending, kind: int, body: bytes | None) -> None:
    """One message of the catalog query's answer; `pending.done` counts finished statements."""
    if kind == 0x44 and body is not None:  # D
        values = [v.decode("utf-8", "replace") if v is not None else "" for v in data_row(body)]
        if pending.done == 0 and len(values) == 3 and values[0].isdigit():
            state.tables[int(values[0])] = f"{values[1]}.{values[2]}"
        elif pending.done == 1 and len(values) == 3 and values[0].isdigit():
            attnum = int(values[1]) if values[1].isdigit() else 0
            state.attnames.setdefault(int(values[0]), {})[attnum] = values[2]
        elif pending.done == 2 and values and values[0].isdigit():
            state.text_types = state.text_types | {int(values[0])}
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
        state.record("pg.catalog", {"tables": len(state.tables)})
