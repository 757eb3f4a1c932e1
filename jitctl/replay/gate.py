"""Background work yields to the screen: a gate the UI closes while it moves and draws.

The reader's workers (indexing, the chain check, the keyframe pass, search) are CPU-bound
Python threads; under the GIL every one of them slows the UI thread down. They call `wait()`
between small steps (a few milliseconds each) and so stand still while the UI holds `busy()`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class Gate:
    def __init__(self) -> None:
        self._open = threading.Event()
        self._open.set()
        self._holders = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._holders += 1
            self._open.clear()

    def open(self) -> None:
        with self._lock:
            self._holders = max(0, self._holders - 1)
            if self._holders == 0:
                self._open.set()

    def wait(self, timeout: float = 1.0) -> None:
        """Called by workers between steps: returns at once unless the UI is busy (and then
        after `timeout` at the latest, so a worker never hangs on a forgotten gate)."""
        self._open.wait(timeout)

    @contextlib.contextmanager
    def lifted(self) -> Iterator[None]:
        """Open the gate while the UI thread itself waits for a worker (say, for the rest of
        the index): a worker must never wait for a UI that waits for it."""
        self._open.set()
        try:
            yield
        finally:
            with self._lock:
                if self._holders:
                    self._open.clear()
