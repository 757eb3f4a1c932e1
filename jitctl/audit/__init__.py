"""The audit trail: one append-only, hash-chained sequence of records with signed checkpoints.

Layout (imports flow downwards only):
- `records`: the record model (`Actor`, `NewRecord`, `Record`, `SessionSummary`);
- `canonical`: a record's canonical encoding and hash, the recipe verifiers follow;
- `chain`: pure hash-chain and checkpoint arithmetic, no I/O;
- `keys`: the Ed25519 signing key on disk and the trusted public keys;
- `store`, `sqlite_store`, `pg_store`: storage behind one interface (`open_store(url)`);
- `writer`: the async group-commit writer that fails closed;
- `verify`, `prune`, `export`: reading the trail back, shrinking it, handing it on.

This module stays light (no cryptography, no psycopg) so importing it costs nothing.
"""

from __future__ import annotations

from jitctl.audit.errors import AuditUnavailable
from jitctl.audit.records import Actor, NewRecord, Record, SessionSummary

__all__ = ["Actor", "AuditUnavailable", "NewRecord", "Record", "SessionSummary"]
