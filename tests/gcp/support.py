"""Names and helpers the GCP tests share."""

from __future__ import annotations

import json
from typing import Any

from jitctl.testing.broker import BrokerProcess

POOL = "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/jitctl"
AUDIENCE = POOL + "/providers/broker"
UNTRUSTED = POOL + "/providers/stale-keys"  # its uploaded JWKS is not the broker's key
CONDITIONED = POOL + "/providers/one-idp-only"  # its attribute condition refuses us
READER = "reader@analytics-prod.iam.gserviceaccount.com"
FORBIDDEN = "admin@analytics-prod.iam.gserviceaccount.com"
SQL_SA = "sql-login@analytics-prod.iam.gserviceaccount.com"
SUBJECT = "agent-7"


def audit_records(broker: BrokerProcess, *kinds: str) -> list[Any]:
    """The broker's trail, read from its SQLite store (WAL: safe while it writes)."""
    from jitctl.audit.store import open_store

    store = open_store(f"sqlite:///{broker.state_dir / 'audit.db'}", create=False)
    try:
        return list(store.iter_records(kinds=list(kinds) or None))
    finally:
        close = getattr(store, "close", None)
        if close:
            close()


def run_json(
    broker: BrokerProcess, *args: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    result = broker.jitctl(*args, env=env)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))
