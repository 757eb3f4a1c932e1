"""Several OS processes appending to one store still make one contiguous, valid chain."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path

from jitctl.audit.chain import CHECKPOINT
from jitctl.audit.keys import load_or_create_signing_key
from jitctl.audit.store import open_store
from jitctl.audit.verify import verify_trail
from tests.audit.conftest import Backend

APPENDER = """
import asyncio, pathlib, sys, time
from jitctl.audit.keys import load_or_create_signing_key
from jitctl.audit.records import NewRecord
from jitctl.audit.store import open_store
from jitctl.audit.writer import AuditWriter

url, state_dir, name, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

async def main():
    store = open_store(url)
    writer = AuditWriter(store, load_or_create_signing_key(state_dir), None, checkpoint_every=64)
    await writer.start()
    go = pathlib.Path(state_dir, "go")
    while not go.exists():  # start together, so the two really interleave
        time.sleep(0.01)
    for start in range(0, count, 20):
        futures = [
            writer.append_nowait(NewRecord("tcp.data", name, "pg", payload={"n": n}))
            for n in range(start, min(start + 20, count))
        ]
        await asyncio.gather(*futures)
    await writer.close()
    store.close()

asyncio.run(main())
"""


def test_two_processes_append_one_valid_chain(backend: Backend, tmp_path: Path) -> None:
    count = 1500
    open_store(backend.url).close()  # schema first, so the race is about appends
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, backend.url, str(tmp_path), name, str(count)],
            stderr=subprocess.PIPE,
        )
        for name in ("proc-a", "proc-b")
    ]
    time.sleep(0.5)
    (tmp_path / "go").touch()
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()

    key = load_or_create_signing_key(tmp_path)  # both processes ended up with this one key
    with open_store(backend.url) as store:
        records = list(store.iter_records())
        report = verify_trail(store, key.trusted())
    assert report.ok, report.first_break
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    data = [r for r in records if r.kind != CHECKPOINT]
    for name in ("proc-a", "proc-b"):
        # every record of each process, in that process's own order
        assert [r.payload["n"] for r in data if r.session_id == name] == list(range(count))
    switches = sum(1 for a, b in itertools.pairwise(data) if a.session_id != b.session_id)
    if backend.name == "postgresql":
        # the head-row lock queues appenders fairly, so their batches interleave; SQLite's busy
        # handler backs off by sleeping, so one process may run ahead of the other for a while
        assert switches > 2, "the two processes never interleaved"
    # each process signs at the end of the batch in which its count reaches 64
    assert report.checkpoints_checked >= 2 * (count // (64 + 20))
