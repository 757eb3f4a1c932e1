"""Which event loop jitctl's long-lived processes run on: uvloop where it is installed, else
asyncio's own.

The broker and the tunnels of `jitctl connect` / `jitctl exec` spend a real share of their CPU
in the event loop and in CPython's TLS protocol (sslproto); uvloop does both in C
(docs/performance.md has the figures). It is a dependency everywhere but Windows; where it is
missing, or `JITCTL_EVENT_LOOP=asyncio` (or the broker's `event_loop = "asyncio"`) says so,
asyncio's loop runs instead, with the same code.

Children (`jitctl exec`'s command, psql, ssh) are started by CPython's subprocess on either
loop, not by the loop: libuv, under uvloop, resets every signal disposition in a child, so a
signal jitctl was started with ignored (nohup's SIGHUP, a script's background job's SIGINT)
would no longer be ignored by the command, as it is with asyncio's loop and as POSIX says.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Literal, TypeVar

T = TypeVar("T")

ENV = "JITCTL_EVENT_LOOP"
Choice = Literal["auto", "uvloop", "asyncio"]
CHOICES: tuple[str, ...] = ("auto", "uvloop", "asyncio")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def _warn(message: str) -> None:
    """One plain line on stderr, as the CLI words its warnings (not Python's warning format,
    which names this file and line)."""
    print(f"warning: {message}", file=sys.stderr)


def choice(configured: str | None = None) -> str:
    """The environment variable wins over a configured value, so one run can be switched."""
    value = (os.environ.get(ENV) or configured or "auto").strip().lower()
    if value not in CHOICES:
        _warn(f"{ENV}={value!r} is not one of {', '.join(CHOICES)}; using auto")
        return "auto"
    return value


def loop_factory(configured: str | None = None) -> LoopFactory | None:
    """uvloop's loop factory, or None for asyncio's default loop."""
    wanted = choice(configured)
    if wanted == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if wanted == "uvloop":
            _warn("uvloop was asked for but is not installed; using asyncio's event loop")
        return None
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def name(loop: asyncio.AbstractEventLoop) -> str:
    """`uvloop` or `asyncio`: what a running loop is, for logs and tests."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def run(main: Coroutine[Any, Any, T], configured: str | None = None) -> T:
    """`asyncio.run(main)` on the chosen loop (Ctrl-C and cleanup as asyncio.run does them)."""
    with asyncio.Runner(loop_factory=loop_factory(configured)) as runner:
        return runner.run(main)


def spawn(args: Sequence[str], env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a child as `subprocess` does, whatever the loop (module docstring: signals).
    Raises FileNotFoundError / PermissionError as `asyncio.create_subprocess_exec` would."""
    return subprocess.Popen(list(args), env=None if env is None else dict(env))


async def wait(process: subprocess.Popen[bytes]) -> int:
    """The child's exit status (negative: the signal that ended it), without blocking the loop.

    A daemon thread waits, as asyncio's own child watcher does; it is not the loop's default
    executor, so a loop that closes before the child ends does not wait for it."""
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[int] = loop.create_future()

    def settle(code: int) -> None:
        if not ended.done():
            ended.set_result(code)

    def waiter() -> None:
        code = process.wait()
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, code)

    threading.Thread(target=waiter, name=f"wait-{process.pid}", daemon=True).start()
    return await ended
