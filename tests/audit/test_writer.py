"""The async writer: group commit, order, checkpoints, and failing closed."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from jitctl.audit import AuditUnavailable
from jitctl.audit.chain import CHECKPOINT
from jitctl.audit.keys import SigningKey
from jitctl.audit.records import NewRecord, Record
from jitctl.audit.store import AuditStore, open_store
from jitctl.audit.verify import verify_trail
from jitctl.audit.writer import AuditWriter
from jitctl.testing.postgres import PostgresServer
from tests.audit.conftest import ALICE

T = TypeVar("T")


def run(body: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(body())  # type: ignore[arg-type]


def chunk(i: int, session: str = "s1") -> NewRecord:
    return NewRecord(
        "tcp.data", session, "pg-prod", ALICE, {"dir": "up", "offset": i, "len": 3}, b"abc"
    )


def kinds(store: AuditStore) -> list[str]:
    return [r.kind for r in store.iter_records()]


def test_append_returns_the_durable_record(
    store: AuditStore, key: SigningKey, tmp_path: Path
) -> None:
    async def body() -> Record:
        writer = AuditWriter(store, key, tmp_path / "cp.json")
        await writer.start()
        record = await writer.append(chunk(0))
        await writer.close()
        return record

    record = run(body)
    assert record.seq == 1 and store.get(1) == record


def test_concurrent_appenders_share_commits_and_keep_append_order(
    store: AuditStore, key: SigningKey, tmp_path: Path
) -> None:
    async def body() -> tuple[AuditWriter, list[Record]]:
        writer = AuditWriter(store, key, tmp_path / "cp.json", checkpoint_every=10**6)
        await writer.start()
        futures = [writer.append_nowait(chunk(i, f"s{i % 7}")) for i in range(2000)]
        records = await asyncio.gather(*futures)
        await writer.close()
        return writer, records

    writer, records = run(body)
    assert [r.seq for r in records] == list(range(1, 2001))  # append order = seq order
    assert [r.payload["offset"] for r in records] == list(range(2000))
    assert writer.commits <= 200, f"{writer.commits} commits for 2000 records: no group commit"
    assert verify_trail(store, key.trusted(), tmp_path / "cp.json").ok


def test_checkpoint_every_n_records(store: AuditStore, key: SigningKey, tmp_path: Path) -> None:
    async def body() -> None:
        writer = AuditWriter(store, key, tmp_path / "cp.json", checkpoint_every=10)
        await writer.start()
        for i in range(35):
            await writer.append(chunk(i))  # one at a time: one batch each
        await writer.close()

    run(body)
    got = kinds(store)
    positions = [i + 1 for i, kind in enumerate(got) if kind == CHECKPOINT]
    assert positions == [11, 22, 33, 39]  # every 10 records, plus the final one on close
    assert verify_trail(store, key.trusted(), tmp_path / "cp.json").ok


def test_checkpoint_after_interval_while_records_arrive(
    store: AuditStore, key: SigningKey, tmp_path: Path
) -> None:
    async def body() -> list[str]:
        writer = AuditWriter(store, key, tmp_path / "cp.json", checkpoint_interval=0.2)
        await writer.start()
        await writer.append(chunk(0))
        await asyncio.sleep(0.6)
        seen = kinds(store)
        await asyncio.sleep(0.3)  # no new records: no further checkpoints
        assert kinds(store) == seen
        await writer.close()
        return seen

    assert run(body) == ["tcp.data", CHECKPOINT]


def test_forced_checkpoint_updates_the_checkpoint_file(
    store: AuditStore, key: SigningKey, tmp_path: Path
) -> None:
    async def body() -> tuple[Record, Record]:
        writer = AuditWriter(store, key, tmp_path / "cp.json")
        await writer.start()
        await writer.append(chunk(0))
        first = await writer.checkpoint()
        again = await writer.checkpoint()  # nothing new: the same checkpoint
        await writer.close()
        return first, again

    first, again = run(body)
    assert first.kind == CHECKPOINT and first.seq == 2 and again == first
    saved = json.loads((tmp_path / "cp.json").read_text())
    assert (saved["seq"], saved["hash"], saved["covers_seq"]) == (2, first.hash, 1)
    assert kinds(store) == ["tcp.data", CHECKPOINT]  # close adds none: nothing new


def test_a_bad_payload_fails_only_its_own_append(
    store: AuditStore, key: SigningKey, tmp_path: Path
) -> None:
    async def body() -> None:
        writer = AuditWriter(store, key, tmp_path / "cp.json")
        await writer.start()
        with pytest.raises(ValueError):
            writer.append_nowait(NewRecord("x", payload={"bad": float("nan")}))
        assert (await writer.append(chunk(1))).seq == 1
        assert writer.healthy
        await writer.close()

    run(body)


def test_writer_refuses_to_start_on_a_store_behind_its_checkpoint_file(
    backend: Any, key: SigningKey, tmp_path: Path
) -> None:
    async def fill() -> None:
        with open_store(backend.url) as store:
            writer = AuditWriter(store, key, tmp_path / "cp.json")
            await writer.start()
            for i in range(5):
                await writer.append(chunk(i))
            await writer.close()

    run(fill)
    backend.raw("DELETE FROM audit_records WHERE seq > 2")
    backend.raw("UPDATE audit_head SET seq = 2")

    async def restart() -> None:
        with open_store(backend.url) as store:
            await AuditWriter(store, key, tmp_path / "cp.json").start()

    with pytest.raises(AuditUnavailable, match="does not contain checkpoint seq 6"):
        run(restart)


def _fail_closed(
    store: AuditStore, key: SigningKey, tmp_path: Path, breaker: Callable[[], None]
) -> None:
    async def body() -> None:
        failures: list[AuditUnavailable] = []
        writer = AuditWriter(store, key, tmp_path / "cp.json", on_failure=failures.append)
        await writer.start()
        await writer.append(chunk(0))
        breaker()
        pending = [writer.append_nowait(chunk(i)) for i in range(1, 50)]
        results = await asyncio.gather(*pending, return_exceptions=True)
        assert all(isinstance(r, AuditUnavailable) for r in results), results
        assert not writer.healthy and isinstance(writer.failed, AuditUnavailable)
        assert "append failed" in writer.failed.message
        with pytest.raises(AuditUnavailable):
            writer.append_nowait(chunk(99))  # later appends are refused at once
        with pytest.raises(AuditUnavailable):
            await writer.checkpoint()
        await asyncio.sleep(0)
        assert failures == [writer.failed]
        await writer.close()

    run(body)


def test_sqlite_writer_fails_closed_when_its_database_file_disappears(
    key: SigningKey, tmp_path: Path
) -> None:
    path = tmp_path / "audit.db"
    with open_store(f"sqlite://{path}") as store:
        # (chmod would not stop root, which these tests may run as; a deleted file stops anyone)
        _fail_closed(store, key, tmp_path, lambda: os.unlink(path))


def test_postgres_writer_fails_closed_when_its_connection_dies(
    postgres_server: PostgresServer, pg_url: str, key: SigningKey, tmp_path: Path
) -> None:
    dbname = pg_url.rsplit("/", 1)[1]

    def kill_backends() -> None:
        postgres_server.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [dbname]
        )

    with open_store(pg_url) as store:
        _fail_closed(store, key, tmp_path, kill_backends)


def test_verify_while_the_writer_appends_sees_no_false_break(
    backend: Any, key: SigningKey, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "cp.json"

    async def body() -> list[bool]:
        with open_store(backend.url) as store, open_store(backend.url) as reader:
            writer = AuditWriter(store, key, checkpoint, checkpoint_every=50)
            await writer.start()
            stop = asyncio.Event()

            async def keep_appending() -> None:
                n = 0
                while not stop.is_set():
                    await asyncio.gather(*(writer.append_nowait(chunk(n + i)) for i in range(10)))
                    n += 10

            appender = asyncio.create_task(keep_appending())
            results = []
            for _ in range(5):
                report = await asyncio.to_thread(verify_trail, reader, key.trusted(), checkpoint)
                results.append(report.ok or str(report.first_break))
            stop.set()
            await appender
            await writer.close()
            return results

    assert run(body) == [True] * 5


def test_a_lazy_record_shares_the_commit_of_the_urgent_one_that_follows(
    store: AuditStore, key: SigningKey, tmp_path: Path
) -> None:
    """A reply's record (lazy) and the next request's record (urgent) cost one fsync."""

    async def body() -> tuple[AuditWriter, list[Record]]:
        writer = AuditWriter(store, key, None, checkpoint_every=10**6, lazy_delay=0.5)
        await writer.start()
        lazy = writer.append_nowait(chunk(0), lazy=True)
        await asyncio.sleep(0.05)  # well inside lazy_delay: nothing committed yet
        assert not lazy.done()
        urgent = writer.append_nowait(chunk(1))
        records = await asyncio.gather(lazy, urgent)
        await writer.close()
        return writer, records

    writer, records = run(body)
    assert [r.seq for r in records] == [1, 2]
    assert writer.commits == 2  # the shared commit, then close()'s final checkpoint


def test_in_a_ping_pong_every_reply_rides_the_next_request(
    store: AuditStore, key: SigningKey, tmp_path: Path
) -> None:
    """The delay counts from the oldest lazy record still queued, not from the first one ever:
    requests that keep coming within it leave no reply to a commit of its own."""

    async def body() -> AuditWriter:
        writer = AuditWriter(store, key, None, checkpoint_every=10**6, lazy_delay=0.3)
        await writer.start()
        for n in range(12):  # 12 trips of 0.1 s: four times the delay in all
            await writer.append(chunk(2 * n))  # the request: urgent
            writer.append_nowait(chunk(2 * n + 1), lazy=True)  # its reply
            await asyncio.sleep(0.1)
        await writer.append(chunk(99))
        await writer.close()
        return writer

    # 13 urgent commits, each taking the reply before it along, and close()'s checkpoint.
    assert run(body).commits == 14


def test_lazy_records_alone_are_committed_after_the_delay(
    store: AuditStore, key: SigningKey, tmp_path: Path
) -> None:
    async def body() -> Record:
        writer = AuditWriter(store, key, None, lazy_delay=0.05)
        await writer.start()
        record = await asyncio.wait_for(writer.append_nowait(chunk(0), lazy=True), 5)
        await writer.close()
        return record

    assert run(body).seq == 1
