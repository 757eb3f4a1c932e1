"""Threads that move one channel's bytes through a pure core, and the bridge to the audit log.

paramiko is thread-per-transport and blocking, so each relayed channel gets reader threads:
client->host (`client_data`), host->client (`upstream_data`) and, without a pty, the host's
stderr. Core calls are serialised by a lock (a core is not thread-safe); the commands they
return run outside it, so a full SSH window in one direction never stalls the other (an sftp
core answers the client while the host is busy). Sends in one direction are serialised by that
direction's lock, so a core's messages never interleave mid-packet.

Write-ahead: a durable record's future is waited for before the bytes after it go to the host.
Fail closed: when a record cannot be written (`RecordingFailed`) or the session ends, relaying
stops and both channels close.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import jitctl_ssh.events as events
from jitctl.gateway.ssh.wire import send_exit_signal
from jitctl.plugin import Close, Direction, Forward, Record, RemoteProtocolError, Shutdown
from jitctl_ssh.channel import ExitStatus, SendStderr

log = logging.getLogger("jitctl.gateway.ssh")

READ_SIZE = 256 * 1024
DURABLE_TIMEOUT = 60.0
STOPPED_MESSAGE = (
    b"\r\njitctl: audit store unavailable: this session is stopped, nothing more is relayed\r\n"
)


class RecordingFailed(Exception):
    pass


class Bridge:
    """Records from paramiko threads into the gateway's audit writer, in call order."""

    def __init__(self, io: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.io = io
        self.loop = loop
        self.failed: BaseException | None = None
        # Durable records go straight to the audit writer when nothing appended before them
        # is still on its way through the loop (`_via_loop` counts those): call order holds.
        self._direct = getattr(io, "record_threadsafe", None)
        self._lock = threading.Lock()
        self._via_loop = 0

    def record(self, record: Record) -> concurrent.futures.Future[Any] | None:
        """Append `record` (from any thread); for a durable one, a future done once it is on
        disk. Raises `RecordingFailed` once recording has failed or the session has ended."""
        self.check()
        time_us = time.time_ns() // 1000
        done: concurrent.futures.Future[Any] | None = (
            concurrent.futures.Future() if record.durable else None
        )

        def on_loop() -> None:
            try:
                if done is None:
                    future = self.io.record(record, time_us)
                else:  # the writer wakes the waiting thread itself, not through the loop
                    future = self.io.record(record, time_us, on_durable=lambda: _resolve(done))
            except BaseException as exc:
                self._failed(exc, done)
                return
            finally:
                with self._lock:
                    self._via_loop -= 1
            future.add_done_callback(lambda f: self._settled(f, done))

        with self._lock:
            if done is not None and self._direct is not None and self._via_loop == 0:
                try:
                    self._direct(
                        record,
                        time_us,
                        lambda: _resolve(done),
                        lambda f: self._settled(f, done),
                    )
                except BaseException as exc:
                    self._failed(exc, done)
                    raise RecordingFailed(str(exc)) from None
                return done
            self._via_loop += 1
            try:
                self.loop.call_soon_threadsafe(on_loop)
            except RuntimeError as exc:  # the loop is closed: the session is over
                self._via_loop -= 1
                self._failed(exc, done)
                raise RecordingFailed(str(exc)) from None
        return done

    def check(self) -> None:
        """Raise `RecordingFailed` once recording has failed or the session has ended."""
        if self.failed is not None:
            raise RecordingFailed(str(self.failed))

    def _settled(
        self, future: asyncio.Future[Any], done: concurrent.futures.Future[Any] | None
    ) -> None:
        if future.cancelled():
            self._failed(RecordingFailed("record cancelled"), done)
        elif future.exception() is not None:
            self._failed(future.exception() or RecordingFailed("?"), done)
        elif done is not None:
            _resolve(done)

    def _failed(self, exc: BaseException, done: concurrent.futures.Future[Any] | None) -> None:
        if self.failed is None:
            self.failed = exc
        if done is not None and not done.done():
            with contextlib.suppress(concurrent.futures.InvalidStateError):  # on disk already
                done.set_exception(RecordingFailed(str(exc)))

    def run(self, coroutine: Any, timeout: float | None = None) -> Any:
        """Run a coroutine on the event loop from a paramiko thread and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def wait(self, future: concurrent.futures.Future[Any] | None) -> None:
        if future is None:
            return
        try:
            future.result(DURABLE_TIMEOUT)
        except Exception as exc:
            raise RecordingFailed(str(exc)) from None


def _resolve(done: concurrent.futures.Future[Any]) -> None:
    """Mark `done` as on disk, from the writer thread or the loop, whichever comes first."""
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        done.set_result(None)


class ChannelRelay:
    """One client channel <-> one host channel through `core`."""

    def __init__(
        self,
        bridge: Bridge,
        client: Any,
        upstream: Any,
        core: Any,
        *,
        stderr: bool,
        exit_status: bool = True,
        on_done: Callable[[ChannelRelay], None] | None = None,
    ) -> None:
        self.bridge = bridge
        self.client, self.upstream, self.core = client, upstream, core
        self.channel = client.get_id()
        self.stderr = stderr
        self.exit_status = exit_status
        self.on_done = on_done
        self.core_lock = threading.Lock()
        self.up_lock = threading.Lock()
        self.down_lock = threading.Lock()
        self.finished = threading.Event()
        self._done: set[str] = set()
        self._readers: list[threading.Thread] = []

    def start(self) -> None:
        name = f"ssh-ch{self.channel}"
        targets = [(self._client_reader, "up"), (self._host_reader, "down")]
        if self.stderr:
            targets.append((self._host_stderr_reader, "err"))
        for target, label in targets:
            thread = threading.Thread(target=target, name=f"{name}-{label}", daemon=True)
            self._readers.append(thread)
            thread.start()

    # -- running the core ---------------------------------------------------------------------

    def call(self, method: Callable[..., Sequence[Any]], *args: Any) -> bool:
        """Run a core method and its commands; False once the channel is being torn down."""
        if self.finished.is_set():
            return False
        try:
            with self.core_lock:
                commands = method(*args)
            self.execute(commands)
            return True
        except RemoteProtocolError as exc:
            self._record_quietly(events.channel_error(self.channel, f"protocol error: {exc}"))
            self.abort()
        except RecordingFailed as exc:
            log.warning("recording failed, channel closed", extra={"error": str(exc)})
            with contextlib.suppress(Exception), self.down_lock:  # say why, in the session itself
                self.client.settimeout(2.0)
                self.client.sendall_stderr(STOPPED_MESSAGE)
            self.abort()
        except (OSError, EOFError) as exc:  # a channel went away under us
            log.debug("channel send failed", extra={"error": str(exc)})
            self.abort()
        return False

    def execute(self, commands: Sequence[Any]) -> None:
        barrier: concurrent.futures.Future[Any] | None = None
        # A non-durable record (host output) waits until the bytes after it have gone to the
        # client: handing it to the loop wakes the loop, which then competes for the GIL with
        # this thread's send. It is still handed over before any later durable record or
        # upstream send, so the trail keeps call order.
        later: list[Record] = []
        for command in commands:
            if isinstance(command, Record):
                if not command.durable:
                    self.bridge.check()  # fail closed: nothing more reaches the client
                    later.append(command)
                    continue
                self._record_later(later)
                barrier = self.bridge.record(command)
            elif isinstance(command, Forward):
                if command.direction is Direction.UP:
                    self._record_later(later)
                    self.bridge.wait(barrier)  # write-ahead
                    barrier = None
                    with self.up_lock:
                        self.upstream.sendall(command.data)
                else:
                    with self.down_lock:
                        self.client.sendall(command.data)
            elif isinstance(command, SendStderr):
                with self.down_lock:
                    self.client.sendall_stderr(command.data)
            elif isinstance(command, Shutdown):
                if command.direction is Direction.UP:
                    self.bridge.wait(barrier)
                    barrier = None
                    with self.up_lock:
                        self.upstream.shutdown_write()
                else:
                    with self.down_lock:
                        self.client.shutdown_write()
            elif isinstance(command, ExitStatus):
                self.bridge.wait(barrier)
                barrier = None
                with self.down_lock:
                    if command.signal:
                        send_exit_signal(self.client, command.signal)
                    elif command.status is not None and command.status >= 0:
                        self.client.send_exit_status(command.status)
            elif isinstance(command, Close):
                self._record_later(later)
                self.abort()
        self._record_later(later)
        self.bridge.wait(barrier)

    def _record_later(self, records: list[Record]) -> None:
        for record in records:
            self.bridge.record(record)
        records.clear()

    def _record_quietly(self, record: Record) -> None:
        with contextlib.suppress(RecordingFailed):
            self.bridge.record(record)

    # -- the reader threads ---------------------------------------------------------------------

    def _client_reader(self) -> None:
        core = self.core
        try:
            while not self.finished.is_set():
                data = self.client.recv(READ_SIZE)
                if not data:
                    break
                if not self.call(core.client_data, data):
                    return
            if self.finished.is_set():
                return
            if self.client.closed:  # gone, not just done sending: stop the host side too
                self.upstream.close()
                return
            self.call(core.client_eof)
            self._half_closed("up")
        except (OSError, EOFError):
            self.abort()

    def _host_reader(self) -> None:
        core, up = self.core, self.upstream
        try:
            while not self.finished.is_set():
                data = up.recv(READ_SIZE)
                if not data:
                    break
                if not self.call(core.upstream_data, data, up.recv_ready()):
                    return
            for thread in self._readers[2:]:  # the stderr reader drains first
                thread.join()
            if self.finished.is_set():
                return
            self.call(core.upstream_eof)
            if self.exit_status:
                self._exit()
                self.finish()  # a session channel ends with its command
            else:
                self._half_closed("down")
        except (OSError, EOFError):
            self.abort()

    def _host_stderr_reader(self) -> None:
        core, up = self.core, self.upstream
        try:
            while not self.finished.is_set():
                data = up.recv_stderr(READ_SIZE)
                if not data:
                    return
                if not self.call(core.upstream_stderr, data, up.recv_stderr_ready()):
                    return
        except (OSError, EOFError):
            self.abort()

    def _exit(self) -> None:
        up = self.upstream
        while not up.status_event.wait(0.5):
            if self.finished.is_set() or self.bridge.failed is not None:
                return
        signal = getattr(up, "jitctl_exit_signal", "")
        status = None if (up.exit_status < 0 and not signal) else up.exit_status
        self.call(self.core.exit, None if signal else status, signal)

    # -- ending -----------------------------------------------------------------------------------

    def _half_closed(self, direction: str) -> None:
        """A forwarded connection ends when both directions have (TCP half-close semantics)."""
        with self.core_lock:
            self._done.add(direction)
            both = self._done == {"up", "down"}
        if both and not self.exit_status:
            self.finish()

    def finish(self) -> None:
        """Both directions are done: close both channels."""
        if self.finished.is_set():
            return
        self.finished.set()
        for chan in (self.client, self.upstream):
            with contextlib.suppress(Exception):  # already gone
                chan.close()
        if self.on_done is not None:
            self.on_done(self)

    def abort(self) -> None:
        self.finish()
