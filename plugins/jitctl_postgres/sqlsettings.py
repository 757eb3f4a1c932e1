"""Session settings a statement changes, flagged for the policy and the gateway.

The walker (sqlwalk.py) calls these for `SET`/`RESET` (also `ALTER ROLE/DATABASE/SYSTEM … SET`,
whose `setstmt` is stored unwrapped) and for calls of `set_config(name, value, is_local)`.

Rules (notes/postgres-wire.md §9):
- A change of a setting that alters how the server lexes SQL (`LEXING_SETTINGS`:
  standard_conforming_strings, client_encoding, escape_string_warning, backslash_quote) is
  flagged "lexing_change": the gateway refuses it, because pglast always lexes as if
  standard_conforming_strings were on. `client_encoding` to UTF8 is the exception (libpq's
  PQsetClientEncoding sends it); encoding names compare like the server's
  clean_encoding_name ("UTF-8" is "utf8").
- `role` → "set_role", `session_authorization` → "session_authorization", `search_path` →
  "search_path", `session_replication_role` → "replication_role" (replica disables triggers and
  FK checks).
- A name we cannot read (not a constant) is any name: "lexing_change" and "set_role" both.
- RESET ALL is left alone: it restores the values the session started with (which the gateway
  checked), and it skips role and session_authorization (GUC_NO_RESET_ALL).
- Values are constants, read through `walker.read_constant`, so these results are never shared
  with other literal values (templates.py). Writes to `pg_settings` (SET in disguise) are
  flagged by the walker itself, from the tables a statement writes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .sqlkinds import LEXING_SETTINGS, UTF8_NAMES

if TYPE_CHECKING:
    from .sqlwalk import StatementWalker


def variable_set(walker: StatementWalker, body: dict[str, Any]) -> None:
    """A VariableSetStmt: SET, SET LOCAL, RESET, RESET ALL (also inside ALTER … SET)."""
    action = body.get("kind", "")
    walker.add_kind("reset" if action.startswith("VAR_RESET") else "set")
    if action != "VAR_RESET_ALL":
        args = body.get("args") or [None]
        value = walker.read_constant(args[0]) if len(args) == 1 else None
        setting(walker, body.get("name", ""), value)


def set_config(walker: StatementWalker, args: list[dict[str, Any]]) -> None:
    """set_config(setting_name, new_value, is_local): a name we cannot read is any name."""
    name = walker.read_constant(args[0]) if args else None
    value = walker.read_constant(args[1]) if len(args) > 1 else None
    setting(walker, name, value)


def setting(walker: StatementWalker, name: str | None, value: str | None) -> None:
    """Flag a change of setting `name` (None: cannot be known, so assume the worst)."""
    if name is None:
        walker.flags |= {"lexing_change", "set_role"}
        return
    name = name.lower()
    if name in LEXING_SETTINGS:
        encoding = re.sub(r"[^a-z0-9]", "", (value or "").lower())
        if not (name == "client_encoding" and encoding in UTF8_NAMES):
            walker.flags.add("lexing_change")
    elif name == "role":
        walker.flags.add("set_role")
    elif name == "session_authorization":
        walker.flags.add("session_authorization")
    elif name == "search_path":
        walker.flags.add("search_path")
    elif name == "session_replication_role":
        walker.flags.add("replication_role")
