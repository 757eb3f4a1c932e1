"""The async audit writer: group commit, write-ahead, fail closed.

Rules:
- Callers on the event loop `await append(record)`; it returns the sealed `Record` once it is
  durable in the store, so the gateway forwards client bytes only after their record is safe
  (write-ahead). `append_nowait` returns a future instead, for callers that pipeline.
- One writer thread drains the queue and writes everything pending in one `append_batch`
  transaction (group commit): one fsync for many records. Order of appends = order of seqs.
- A payload that is not JSON fails its own append (prepared on the caller's side), not the batch.
- Checkpoints: a signed `audit.checkpoint` is sealed into the batch in which the count since
  the last one reaches `checkpoint_every`, every `checkpoint_interval` seconds while records
  arrive, on `checkpoint()` (the gateway calls it at each session end) and on `close()`.
  Each one is also written to the checkpoint file outside the store.
- Lazy appends (`append_nowait(record, lazy=True)`: records nobody waits for, such as
  upstream->client bytes) do not trigger a commit of their own: they wait up to `lazy_delay`
  seconds for an urgent record to share its fsync. A request/reply round trip then pays one
  fsync instead of two. They do not even wake the writer thread: a timer on the loop does,
  if no urgent record came first (a thread wake-up and the GIL hand-off it brings cost more
  than the loop's timer, and a ping-pong would pay them on every reply).
- Urgent appends (`lazy=False`) may come from any thread (the queue is the condition's; only
  lazy ones touch the loop's timer). `on_durable` runs in the writer thread right after the
  commit, so a thread waiting for write-ahead is not woken through the loop.
- Fail closed: the first store (or checkpoint file) failure is kept in `failed`; every pending
  and later append raises `AuditUnavailable`, `healthy` turns False and `on_failure` is called.
  The writer never retries behind the operator's back: a restart re-checks the store.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from jitctl.audit.chain import CHECKPOINT, Prepared, Signer, prepare
from jitctl.audit.checkpoint_file import read_checkpoint_file, write_checkpoint_file
from jitctl.audit.errors import AuditUnavailable
from jitctl.audit.records import NewRecord, Record
from jitctl.audit.store import AuditStore

# (item, future, urgent, on_durable); item None: a checkpoint request
_Entry = tuple[Prepared | None, "asyncio.Future[Record]", bool, Callable[[], object] | None]


class AuditWriter:
    def __init__(
        self,
        store: AuditStore,
        signing_key: Signer,
        checkpoint_file: str | Path | None,
        checkpoint_every: int = 1000,
        checkpoint_interval: float = 10.0,
        *,
        max_batch: int = 8192,
        lazy_delay: float = 0.005,
        on_failure: Callable[[AuditUnavailable], None] | None = None,
    ) -> None:
        self.store = store
        self.key = signing_key
        self.checkpoint_file = Path(checkpoint_file) if checkpoint_file else None
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self.max_batch = max_batch
        self.lazy_delay = lazy_delay
        self._urgent = 0  # queued entries somebody waits for
        self._flush = False  # lazy_delay passed: write the queued lazy records now
        self._lazy_timer: asyncio.TimerHandle | None = None  # the loop's; only it touches this
        self._lazy_since: float | None = None  # when the oldest lazy record still queued came
        self.on_failure = on_failure
        self.failed: AuditUnavailable | None = None
        self.last_checkpoint: Record | None = None
        self.commits = 0  # transactions written: records / commits is the group-commit factor
        self._queue: collections.deque[_Entry] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._since_checkpoint = 0
        self._checkpoint_at = time.monotonic()

    @property
    def healthy(self) -> bool:
        return self._thread is not None and self.failed is None and not self._closing

    async def start(self) -> None:
        """Check the store against the checkpoint file, then start the writer thread."""
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._check_store)
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def _check_store(self) -> None:
        head_seq, _ = self.store.head()
        self.last_checkpoint = self.store.latest(CHECKPOINT)
        self._since_checkpoint = head_seq - (
            self.last_checkpoint.seq if self.last_checkpoint else 0
        )
        if self.checkpoint_file is None:
            return
        try:
            saved = read_checkpoint_file(self.checkpoint_file)
        except ValueError as exc:
            raise AuditUnavailable(
                str(exc), "restore the file or run `jitctl audit verify`"
            ) from None
        if saved is None:
            return
        record = self.store.get(saved.seq) if saved.seq <= head_seq else None
        if record is None or record.hash != saved.hash:
            raise AuditUnavailable(
                f"audit store {self.store.url} does not contain checkpoint seq {saved.seq} from "
                f"{self.checkpoint_file} (store head is seq {head_seq}): records were truncated "
                "or the store was replaced",
                "run `jitctl audit verify` and restore the store from a backup",
            )

    # -- the loop's side ------------------------------------------------------------------------

    def append_nowait(
        self,
        record: NewRecord,
        *,
        lazy: bool = False,
        on_durable: Callable[[], object] | None = None,
    ) -> asyncio.Future[Record]:
        """Queue `record`; the future resolves once it is durable. Raises AuditUnavailable at
        once when the writer has failed or is closed, ValueError/TypeError for a bad payload.

        `on_durable`, if given, is called in the writer thread right after the commit, before
        the future resolves on the loop: a caller waiting in another thread (the ssh relay's
        write-ahead) is woken without a hop through the loop. It must be quick and must not
        raise; on failure it is not called (the future carries the error)."""
        self._refuse_if_unhealthy()
        item = prepare(record)
        return self._enqueue(item, urgent=not lazy, on_durable=on_durable)

    async def append(self, record: NewRecord) -> Record:
        return await self.append_nowait(record)

    async def checkpoint(self) -> Record:
        """Seal a signed checkpoint over everything appended so far (and update the file)."""
        self._refuse_if_unhealthy()
        return await self._enqueue(None)

    async def close(self) -> None:
        """Flush what is queued, seal a final checkpoint, stop the thread (the store stays open)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    def _refuse_if_unhealthy(self) -> None:
        if self.failed is not None:
            raise self.failed
        if self._closing or self._thread is None:
            raise AuditUnavailable("the audit writer is not running")

    def _enqueue(
        self,
        item: Prepared | None,
        urgent: bool = True,
        on_durable: Callable[[], object] | None = None,
    ) -> asyncio.Future[Record]:
        assert self._loop is not None
        future: asyncio.Future[Record] = self._loop.create_future()
        with self._cond:
            # Checked again under the lock: the writer may have failed or closed since the
            # caller's first check, and then nobody would ever resolve this future.
            self._refuse_if_unhealthy()
            self._queue.append((item, future, urgent, on_durable))
            if not urgent and self._lazy_since is None:
                self._lazy_since = time.monotonic()
            if urgent:
                self._urgent += 1
                if self._urgent == 1:  # the writer waits (maybe with lazy records) for us
                    self._cond.notify()
            elif len(self._queue) >= self.max_batch:
                self._cond.notify()
        if not urgent and self._lazy_timer is None:
            self._lazy_timer = self._loop.call_later(self.lazy_delay, self._lazy_due)
        return future

    def _lazy_due(self) -> None:
        """On the loop: once the oldest queued lazy record has waited `lazy_delay`, have the
        writer write it (an urgent record usually took it along before)."""
        assert self._loop is not None
        self._lazy_timer = None
        with self._cond:
            if self._lazy_since is None:
                return
            wait = self._lazy_since + self.lazy_delay - time.monotonic()
            if wait <= 0:
                self._flush = True
                self._cond.notify()
                return
        self._lazy_timer = self._loop.call_later(wait, self._lazy_due)

    def _settle(self, entries: Sequence[_Entry], records: Sequence[Record] | None) -> None:
        """On the loop: resolve futures with their records, or fail them all."""
        checkpoint = records[-1] if records and records[-1].kind == CHECKPOINT else None
        it = iter(records or ())
        for item, future, _, _ in entries:
            if future.done():
                continue  # the caller gave up waiting; the record was still written
            if records is None:
                assert self.failed is not None
                future.set_exception(self.failed)
            elif item is None:
                assert self.last_checkpoint is not None
                future.set_result(checkpoint or self.last_checkpoint)
            else:
                future.set_result(next(it))

    # -- the writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (
                    self._urgent
                    or self._flush
                    or self._closing
                    or len(self._queue) >= self.max_batch
                    or self._interval_due()
                ):
                    self._cond.wait(timeout=self._wait_time())
                self._flush = False
                self._lazy_since = None
                batch = [
                    self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))
                ]
                self._urgent = sum(1 for entry in self._queue if entry[2])
                self._flush = bool(self._queue)  # a full batch left some: they go next
                last = self._closing and not self._queue
            if not batch and not last and not self._interval_due():
                continue
            if not self._write(batch, final=last) or last:
                return

    def _interval_due(self) -> bool:
        waited = time.monotonic() - self._checkpoint_at
        return self._since_checkpoint > 0 and waited >= self.checkpoint_interval

    def _wait_time(self) -> float | None:
        if self._since_checkpoint == 0:
            return None
        return max(0.0, self._checkpoint_at + self.checkpoint_interval - time.monotonic())

    def _write(self, batch: list[_Entry], *, final: bool) -> bool:
        items = [item for item, _, _, _ in batch if item is not None]
        pending = self._since_checkpoint + len(items)
        asked = any(item is None for item, _, _, _ in batch)
        due = pending >= self.checkpoint_every or self._interval_due() or final or asked
        # Nothing new since the last checkpoint: a requested one is that one (if there is one).
        sign = (pending > 0 and due) or (asked and self.last_checkpoint is None)
        try:
            records = self.store.append_prepared(items, self.key if sign else None)
            if sign:
                self.last_checkpoint = records[-1]
                if self.checkpoint_file is not None:
                    write_checkpoint_file(self.checkpoint_file, records[-1])
        except Exception as exc:
            self._fail(exc, batch)
            return False
        self.commits += 1 if records else 0
        if sign:
            self._since_checkpoint = 0
            self._checkpoint_at = time.monotonic()
        else:
            self._since_checkpoint = pending
        for entry in batch:
            if entry[3] is not None:
                with contextlib.suppress(Exception):  # a hook never stops the writer
                    entry[3]()
        if batch:
            self._call(self._settle, batch, records)
        return True

    def _fail(self, exc: Exception, batch: list[_Entry]) -> None:
        error = (
            exc
            if isinstance(exc, AuditUnavailable)
            else AuditUnavailable(f"audit writer for {self.store.url} failed: {exc}")
        )
        with self._cond:
            self.failed = error
            entries = batch + list(self._queue)
            self._queue.clear()
            self._urgent = 0
        # One loop callback, the failure hook first: whoever wakes from a failed append
        # finds the broker already told (two callbacks could land loop turns apart).
        self._call(self._report_failure, entries, error)

    def _report_failure(self, entries: list[_Entry], error: AuditUnavailable) -> None:
        try:
            if self.on_failure is not None:
                self.on_failure(error)
        finally:
            self._settle(entries, None)

    def _call(self, fn: Callable[..., object], *args: object) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            self._loop.call_soon_threadsafe(fn, *args)
