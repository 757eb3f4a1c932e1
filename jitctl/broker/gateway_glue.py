"""Wiring between the broker runtime, the audit writer and the tunnel gateway."""

from __future__ import annotations

import hashlib
import logging
import socket
from pathlib import Path
from typing import Any

from jitctl.config import BrokerConfig
from jitctl.errors import ConfigError

log = logging.getLogger("jitctl.broker")


def store_url(config: BrokerConfig, state_dir: Path) -> str:
    return config.broker.store or f"sqlite:///{state_dir / 'audit.db'}"


def broker_id(state_dir: Path) -> str:
    """Stable name of this broker instance: several brokers may share one store."""
    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}:{digest}"


async def open_audit(config: BrokerConfig, state_dir: Path) -> Any:
    """Open the store and start the group-commit writer; no store, no broker."""
    from jitctl.audit import AuditUnavailable
    from jitctl.audit.keys import load_or_create_signing_key
    from jitctl.audit.store import open_store
    from jitctl.audit.writer import AuditWriter

    url = store_url(config, state_dir)
    try:
        store = open_store(url)
    except AuditUnavailable as exc:
        raise ConfigError(
            str(exc), "check broker.store and that the database is reachable"
        ) from None
    writer = AuditWriter(
        store,
        load_or_create_signing_key(state_dir),
        state_dir / "audit-checkpoint.json",
        checkpoint_every=config.audit.checkpoint_every,
        checkpoint_interval=config.audit.checkpoint_interval,
    )
    await writer.start()
    await _close_interrupted(store, writer, broker_id(state_dir), config)
    return writer


async def _close_interrupted(store: Any, writer: Any, me: str, config: BrokerConfig) -> None:
    """Sessions this broker started and never ended (it was killed) get a session.end.

    Only recent sessions can still be open: none outlives its target's max_session, so the scan
    looks back twice the longest one (config may have changed since), not over the whole trail.
    """
    import asyncio
    import time

    from jitctl.audit import NewRecord

    longest = max((t.max_session for t in config.targets), default=3600.0)
    since_us = time.time_ns() // 1000 - int(2 * max(longest, 3600.0) * 1_000_000)

    def find() -> list[Any]:
        found = []
        for summary in store.sessions(since_us=since_us):
            if summary.status != "open":
                continue
            start = next(
                iter(store.iter_records(session_id=summary.id, kinds=["session.start"])), None
            )
            if start is not None and start.payload.get("broker") == me:
                found.append(start)
        return found

    for start in await asyncio.to_thread(find):
        await writer.append(
            NewRecord(
                kind="session.end",
                session_id=start.session_id,
                target=start.target,
                actor=start.actor,
                payload={
                    "status": "interrupted",
                    "reason": "the broker stopped before the session ended",
                    "bytes_up": -1,
                    "bytes_down": -1,
                },
            )
        )
        log.warning(
            "closed interrupted session",
            extra={"event": "session.interrupted", "session_id": start.session_id},
        )


def attach_gateway(runtime: Any) -> Any:
    from jitctl.gateway.tunnel import TunnelGateway

    gateway = TunnelGateway(runtime)
    runtime.gateway = gateway
    return gateway.handle
