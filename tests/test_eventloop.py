"""Which event loop jitctl runs on (jitctl.eventloop), and how its children are started."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jitctl import eventloop

try:
    import uvloop  # noqa: F401

    HAVE_UVLOOP = True
except ImportError:
    HAVE_UVLOOP = False

needs_uvloop = pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed here")


async def _running() -> str:
    return eventloop.name(asyncio.get_running_loop())


@pytest.fixture(autouse=True)
def _no_choice_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.ENV, raising=False)


@needs_uvloop
def test_uvloop_by_default_where_it_is_installed() -> None:
    assert eventloop.run(_running()) == "uvloop"


def test_asyncio_when_the_config_says_so() -> None:
    assert eventloop.run(_running(), "asyncio") == "asyncio"


def test_the_environment_variable_overrides_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(eventloop.ENV, "asyncio")
    assert eventloop.run(_running(), "uvloop") == "asyncio"
    monkeypatch.setenv(eventloop.ENV, " AsyncIO ")
    assert eventloop.choice() == "asyncio"


def test_an_unknown_choice_warns_and_means_auto(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(eventloop.ENV, "trio")
    assert eventloop.choice() == "auto"
    assert capsys.readouterr().err == (
        "warning: JITCTL_EVENT_LOOP='trio' is not one of auto, uvloop, asyncio; using auto\n"
    )


def test_without_uvloop_asyncio_runs_and_only_an_explicit_ask_warns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    assert eventloop.loop_factory("auto") is None
    assert eventloop.run(_running()) == "asyncio"
    assert capsys.readouterr().err == ""
    assert eventloop.loop_factory("uvloop") is None
    assert "uvloop was asked for but is not installed" in capsys.readouterr().err


@pytest.mark.parametrize("loop", ["asyncio", pytest.param("uvloop", marks=needs_uvloop)])
def test_a_child_exit_status_and_the_signal_that_killed_it(loop: str) -> None:
    async def main() -> tuple[int, int]:
        ok = await eventloop.wait(eventloop.spawn(["sh", "-c", "exit 3"]))
        child = eventloop.spawn(["sleep", "30"])
        child.send_signal(signal.SIGTERM)
        return ok, await eventloop.wait(child)

    assert eventloop.run(main(), loop) == (3, -signal.SIGTERM)


@pytest.mark.parametrize("loop", ["asyncio", pytest.param("uvloop", marks=needs_uvloop)])
def test_waiting_for_a_child_does_not_block_the_loop(loop: str) -> None:
    async def main() -> int:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.ensure_future(tick())
        await eventloop.wait(eventloop.spawn(["sleep", "0.3"]))
        ticker.cancel()
        return ticks

    assert eventloop.run(main(), loop) >= 5


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("loop", ["asyncio", pytest.param("uvloop", marks=needs_uvloop)])
def test_a_signal_jitctl_was_started_ignoring_stays_ignored_in_its_child(
    loop: str, tmp_path: Path
) -> None:
    """nohup's SIGHUP, a background job's SIGINT: libuv would reset them in the child."""
    out = tmp_path / "status"

    async def main() -> None:
        code = await eventloop.wait(
            eventloop.spawn(["sh", "-c", f"grep SigIgn /proc/self/status > {out}"])
        )
        assert code == 0

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        eventloop.run(main(), loop)
    finally:
        signal.signal(signal.SIGHUP, previous)
    ignored = int(out.read_text().split()[1], 16)
    assert ignored & (1 << (signal.SIGHUP - 1))


def test_a_loop_closed_before_its_child_ends_does_not_wait_for_it() -> None:
    started = time.monotonic()

    async def main() -> subprocess.Popen[bytes]:
        child = eventloop.spawn(["sleep", "5"])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(eventloop.wait(child), 0.1)
        return child

    child = eventloop.run(main())
    try:
        assert time.monotonic() - started < 3
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()
