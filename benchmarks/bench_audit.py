"""Durable audit appends: the group-commit writer against one commit per record.

    python benchmarks/bench_audit.py            # full run, prints a markdown table
    python benchmarks/bench_audit.py --quick    # smaller sizes
    python benchmarks/bench_audit.py --json     # one JSON document instead

What is measured (each figure beside its peer from the same run):
- `AuditWriter` with 20 concurrent asyncio appenders, each awaiting every append (so each record
  is durable before the appender's next one, as the gateway's write-ahead path does), on SQLite
  (WAL, synchronous=FULL: an fsync per commit) and, when its binaries exist, on a durable
  throwaway PostgreSQL (fsync=on, synchronous_commit=on). The peer: the same store appending one
  record per transaction, the durability a writer without group commit pays.
- Records carry a ~200-byte JSON payload, a session id, a target and a full actor.
- CPU time per durable record (user + system, this whole process: the appenders, the writer
  thread, SQLite or psycopg), against the same figure for one commit per record.
- Verification speed of the resulting trail (records/s), for reference.
The goal (≥ 20,000 durable records/s on SQLite) comes from the audit design.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _util import Row, Section, ratio, standalone_main

from jitctl.audit.keys import SigningKey
from jitctl.audit.records import Actor, NewRecord
from jitctl.audit.store import AuditStore, open_store
from jitctl.audit.verify import verify_trail
from jitctl.audit.writer import AuditWriter

GOAL = 20_000
APPENDERS = 20
ACTOR = Actor(
    subject="agent-7",
    email="ci@example.com",
    groups=("agents",),
    issuer="https://token.actions.example.com",
    agent="claude",
    command="python agent.py",
)


def record(appender: int, n: int) -> NewRecord:
    text = f"SELECT id, status FROM orders WHERE customer_id = {n} AND region = 'eu-west' "
    payload = {"statement": (text * 3)[:170], "appender": appender, "n": n}  # ~200 bytes of JSON
    return NewRecord("tcp.data", f"session-{appender}", "pg-prod", ACTOR, payload)


async def grouped(store: AuditStore, key: SigningKey, per_appender: int) -> dict[str, float]:
    writer = AuditWriter(store, key, None, checkpoint_every=1000, checkpoint_interval=1.0)
    await writer.start()
    latencies: list[float] = []

    async def appender(index: int) -> None:
        for n in range(per_appender):
            began = time.perf_counter()
            await writer.append(record(index, n))
            latencies.append(time.perf_counter() - began)

    cpu = _cpu()
    began = time.perf_counter()
    await asyncio.gather(*(appender(i) for i in range(APPENDERS)))
    elapsed = time.perf_counter() - began
    cpu = _cpu() - cpu
    commits = writer.commits
    await writer.close()
    total = APPENDERS * per_appender
    latencies.sort()
    return {
        "records_per_s": total / elapsed,
        "records_per_commit": total / max(commits, 1),
        "cpu_us_per_record": cpu / total * 1e6,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def _cpu() -> float:
    """CPU seconds (user + system) of this process so far, all its threads."""
    times = os.times()
    return times.user + times.system


def one_per_commit(store: AuditStore, count: int) -> tuple[float, float]:
    """(records/s, CPU µs per record) committing each record on its own."""
    cpu = _cpu()
    began = time.perf_counter()
    for n in range(count):
        store.append_batch([record(0, n)])
    elapsed = time.perf_counter() - began
    return count / elapsed, (_cpu() - cpu) / count * 1e6


def verify_rate(store: AuditStore, key: SigningKey) -> float:
    began = time.perf_counter()
    report = verify_trail(store, key.trusted())
    assert report.ok, report.first_break
    return report.records_checked / (time.perf_counter() - began)


def measure(url: str, key: SigningKey, quick: bool) -> dict[str, float]:
    per_appender = 1000 if quick else 5000
    with open_store(url) as store:
        figures = asyncio.run(grouped(store, key, per_appender))
        single = one_per_commit(store, 300 if quick else 1500)
        figures["single_per_s"], figures["single_cpu_us_per_record"] = single
        figures["verify_per_s"] = verify_rate(store, key)
    return figures


def collect(quick: bool) -> dict[str, Any]:
    key = SigningKey.generate()
    results: dict[str, Any] = {"appenders": APPENDERS, "quick": quick}
    directory = Path(tempfile.mkdtemp(prefix="jitctl-bench-audit-"))
    try:
        results["sqlite"] = measure(f"sqlite://{directory / 'audit.db'}", key, quick)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    from jitctl.testing.postgres import PostgresServer, postgres_available

    reason = postgres_available()
    if reason is None:
        with PostgresServer(durable=True) as server:
            results["postgresql"] = measure(server.create_database(), key, quick)
    else:
        results["postgresql"] = {"skipped": reason}
    return results


def rows(results: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for name, label in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):
        figures = results[name]
        if "skipped" in figures:
            continue
        grouped_rate, single = figures["records_per_s"], figures["single_per_s"]
        judged = name == "sqlite"
        out += [
            Row(
                f"{label}: durable records/s, {APPENDERS} appenders, group commit "
                "(peer: one commit per record)",
                f"{grouped_rate:,.0f}",
                f"{single:,.0f}",
                f"{grouped_rate / single:.1f}x",
                f"≥ {GOAL:,}/s" if judged else "(reference)",
                grouped_rate >= GOAL if judged else None,
            ),
            Row(
                f"{label}: records per commit; append latency p50 / p99",
                f"{figures['records_per_commit']:.0f}; "
                f"{figures['p50_ms']:.2f} / {figures['p99_ms']:.2f} ms",
                "1",
                "—",
                "(reference)",
                None,
            ),
            Row(
                f"{label}: CPU µs per durable record, this process (user + system) "
                "(peer: one commit per record)",
                f"{figures['cpu_us_per_record']:.1f}",
                f"{figures['single_cpu_us_per_record']:.1f}",
                ratio(figures["cpu_us_per_record"], figures["single_cpu_us_per_record"]),
                "(reference)",
                None,
            ),
            Row(
                f"{label}: verify, records/s",
                f"{figures['verify_per_s']:,.0f}",
                "—",
                "—",
                "(reference)",
                None,
            ),
        ]
    return out


def run(quick: bool) -> Section:
    """For benchmarks/run.py."""
    results = collect(quick)
    section = Section(key="audit", title="Audit appends", quick=quick, rows=rows(results))
    section.intro = (
        f"{APPENDERS} asyncio appenders each await every append through `AuditWriter` (group "
        "commit), so a record is durable before its appender sends the next; the peer is the same "
        "store committing one record per transaction. SQLite: WAL with synchronous=FULL. "
        "PostgreSQL: a throwaway server with fsync=on and synchronous_commit=on. Records carry a "
        "~200-byte JSON payload and a full actor; checkpoints are signed every 1,000 records."
    )
    if "skipped" in results["postgresql"]:
        section.details.append(f"PostgreSQL skipped: {results['postgresql']['skipped']}.")
    return section


def main(argv: list[str] | None = None) -> int:
    return standalone_main(__doc__, collect, rows, "smaller sizes", argv)


if __name__ == "__main__":
    sys.exit(main())
