"""How a broker learns that a request changed, wherever the change was made.

Rules:
- A change made by this broker pokes its waiters at once (`poke`).
- On a PostgreSQL store a listener connection runs `LISTEN approval_changes`; every broker's
  changes arrive as notifications naming the request id (store.py sends them), so an approval
  given through broker B releases a statement held on broker A within milliseconds. A lost
  listener connection is logged and retried with backoff; meanwhile polling covers.
- Waiters never rely on a poke alone: they re-read the store at least every `interval`
  (`poll_interval` from the config; five times that while the listener is up), so SQLite
  brokers sharing one file, and missed notifications, still converge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from jitctl.approvals.store import CHANNEL, ApprovalStore

log = logging.getLogger("jitctl.approvals")


class Wakeups:
    def __init__(self, store: ApprovalStore, poll_interval: float) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self.listening = False
        self._events: dict[str, set[asyncio.Event]] = {}
        self._observers: list[Callable[[str], None]] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def interval(self) -> float:
        return self.poll_interval * (5 if self.listening else 1)

    async def start(self) -> None:
        dsn = getattr(self.store, "dsn", "")
        if self.store.notifies and dsn:
            self._task = asyncio.ensure_future(self._listen(dsn))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def observe(self, callback: Callable[[str], None]) -> None:
        """Call `callback(request_id)` on every change heard of (grant watchers)."""
        self._observers.append(callback)

    def poke(self, request_id: str) -> None:
        for event in self._events.get(request_id, ()):
            event.set()
        for callback in self._observers:
            try:
                callback(request_id)
            except Exception:
                log.exception("approval observer failed")

    async def wait(self, request_id: str, timeout: float) -> None:
        """Return when `request_id` may have changed, or after `timeout` (capped at the poll
        interval): the caller re-reads the store either way."""
        event = asyncio.Event()
        self._events.setdefault(request_id, set()).add(event)
        try:
            await asyncio.wait_for(event.wait(), max(0.0, min(timeout, self.interval)))
        except TimeoutError:
            pass
        finally:
            waiting = self._events.get(request_id)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._events[request_id]

    async def _listen(self, dsn: str) -> None:
        import psycopg

        delay = 0.5
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    dsn, autocommit=True, connect_timeout=10
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening, delay = True, 0.5
                    log.info("listening for approvals", extra={"event": "approvals.listen"})
                    while True:
                        async for note in conn.notifies(timeout=30):
                            self.poke(note.payload)
                        await conn.execute("SELECT 1")  # a silently dead link raises here
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "approval notifications lost; polling until they are back",
                    extra={"event": "approvals.listen_failed", "error": str(exc)},
                )
            finally:
                self.listening = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
