"""relay.Bridge: records from paramiko threads reach the audit trail in call order, a durable
one is waited for before bytes move on (write-ahead), and a failure stops everything after it."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from jitctl.gateway.ssh.relay import Bridge, RecordingFailed
from jitctl.plugin import Record


class FakeIO:
    """The gateway's ShellIO as the bridge sees it; `appended` is the writer's queue order.
    Durable records stay pending until `commit()` (the writer's fsync)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.appended: list[str] = []
        self.pending: list[tuple[Callable[[], object] | None, asyncio.Future[Any]]] = []
        self.fail: Exception | None = None

    def record(
        self, record: Record, time_us: int = 0, on_durable: Callable[[], object] | None = None
    ) -> asyncio.Future[Any]:
        return self._append(record, on_durable)

    def record_threadsafe(
        self,
        record: Record,
        time_us: int,
        on_durable: Callable[[], object],
        on_settled: Callable[[asyncio.Future[Any]], object],
    ) -> None:
        future = self._append(record, on_durable)
        self.loop.call_soon_threadsafe(future.add_done_callback, on_settled)

    def _append(
        self, record: Record, on_durable: Callable[[], object] | None
    ) -> asyncio.Future[Any]:
        if self.fail is not None:
            raise self.fail
        self.appended.append(record.kind)
        future: asyncio.Future[Any] = self.loop.create_future()
        self.pending.append((on_durable, future))
        return future

    def commit(self) -> None:
        for on_durable, future in self.pending:
            if on_durable is not None:
                on_durable()
            future.set_result(None)
        self.pending.clear()


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()  # not running: what a thread queues waits for a turn
    yield loop
    loop.close()


def turn(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0))


def test_a_durable_record_does_not_overtake_an_earlier_one_still_on_the_loop(
    loop: asyncio.AbstractEventLoop,
) -> None:
    io = FakeIO(loop)
    bridge = Bridge(io, loop)
    bridge.record(Record("term.resize", {}))
    bridge.record(Record("term.input", {}, data=b"a", durable=True))
    assert io.appended == []  # both wait for the loop, in order
    turn(loop)
    assert io.appended == ["term.resize", "term.input"]
    bridge.record(Record("term.input", {}, data=b"b", durable=True))  # nothing queued: direct
    assert io.appended == ["term.resize", "term.input", "term.input"]


def test_a_durable_record_is_waited_for_until_it_is_on_disk(
    loop: asyncio.AbstractEventLoop,
) -> None:
    io = FakeIO(loop)
    bridge = Bridge(io, loop)
    done = bridge.record(Record("term.input", {}, data=b"a", durable=True))
    assert done is not None and not done.done()
    with pytest.raises(concurrent.futures.TimeoutError):
        done.result(0.01)
    io.commit()  # the writer's thread: the waiting thread is woken without the loop
    assert done.done()
    bridge.wait(done)
    turn(loop)  # the loop's settlement later changes nothing
    assert done.result() is None and bridge.failed is None


def test_a_failed_append_stops_every_record_after_it(loop: asyncio.AbstractEventLoop) -> None:
    io = FakeIO(loop)
    bridge = Bridge(io, loop)
    io.fail = RuntimeError("disk gone")
    with pytest.raises(RecordingFailed):
        bridge.record(Record("term.input", {}, data=b"a", durable=True))
    with pytest.raises(RecordingFailed):
        bridge.record(Record("term.output", {}, data=b"b"))
    assert io.appended == []


def test_a_record_that_fails_on_disk_fails_its_waiter(loop: asyncio.AbstractEventLoop) -> None:
    io = FakeIO(loop)
    bridge = Bridge(io, loop)
    done = bridge.record(Record("term.input", {}, data=b"a", durable=True))
    turn(loop)  # the callbacks are attached on the loop
    io.pending[0][1].set_exception(RuntimeError("fsync failed"))
    turn(loop)
    with pytest.raises(RecordingFailed):
        bridge.wait(done)
    with pytest.raises(RecordingFailed):
        bridge.record(Record("term.input", {}, data=b"b", durable=True))
