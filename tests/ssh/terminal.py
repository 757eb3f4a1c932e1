"""A program on a pseudo-terminal, driven like a person would (standard library only).

with Terminal([sys.executable, "-m", "jitctl", "connect", "web"], env=env) as term:
    term.expect(r"[#$] ")
    term.sendline("echo hi")
    term.resize(40, 120)        # the window changed: SIGWINCH for the program
    term.wait()                 # exit status
term.output                     # everything it printed
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import struct
import termios
import time
from collections.abc import Sequence


class Terminal:
    def __init__(
        self, argv: Sequence[str], *, env: dict[str, str], rows: int = 24, cols: int = 80
    ) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: the pty is its controlling terminal
            try:
                os.execvpe(argv[0], list(argv), env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.output = ""
        self._seen = 0
        self.status: int | None = None
        self.resize(rows, cols)

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def sendline(self, text: str) -> None:
        self.send(text + "\r")

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: every process on the terminal is gone
            return False
        if not chunk:
            return False
        self.output += chunk.decode("utf-8", "replace")
        return True

    def expect(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Wait for `pattern` in output not matched before; the match moves past it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = regex.search(self.output, self._seen)
            if found:
                self._seen = found.end()
                return found
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(min(left, 0.2)):
                if (found := regex.search(self.output, self._seen)) is not None:
                    self._seen = found.end()
                    return found
                if left <= 0:
                    raise TimeoutError(f"{pattern!r} not seen; output so far:\n{self.output}")
                raise EOFError(f"{pattern!r} not seen before the end; output:\n{self.output}")

    def wait(self, timeout: float = 20.0) -> int:
        """Read until the program exits; its exit status (or -signal)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            open_ = self._read(0.1)
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                for _ in range(10):  # what it printed last
                    if not self._read(0.05):
                        break
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
            if not open_:
                time.sleep(0.05)
        raise TimeoutError(f"still running after {timeout}s; output:\n{self.output}")

    def close(self) -> None:
        if self.status is None:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            self.status = -signal.SIGKILL
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
