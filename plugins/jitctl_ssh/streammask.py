"""Masking a byte stream (terminal output) whose secrets may straddle two reads.

The masker itself is injected (`mask(data) -> (masked, counts)`, jitctl.masking's scanner in
the broker), so this module stays pure. Detectors match within a line, so a stream is cut only
after a line end (`\\n` or `\\r`): when the shell says more bytes are already waiting
(`more=True`), the unfinished last line is held back (up to `HOLD` bytes) and masked with what
follows. When nothing more is waiting everything goes out at once, so an interactive prompt is
never delayed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping

Mask = Callable[[bytes], tuple[bytes, Mapping[str, int]]]
HOLD = 4096


class StreamMasker:
    def __init__(self, mask: Mask, hold: int = HOLD) -> None:
        self._mask = mask
        self._hold = hold
        self._pending = b""

    def feed(self, data: bytes, more: bool = False) -> tuple[bytes, Counter[str]]:
        """Masked bytes that can go out now, and what was masked in them."""
        data = self._pending + data if self._pending else data
        self._pending = b""
        if more:
            cut = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
            tail = len(data) - cut
            if 0 < tail <= self._hold:
                data, self._pending = data[:cut], data[cut:]
        return self._run(data)

    def flush(self) -> tuple[bytes, Counter[str]]:
        data, self._pending = self._pending, b""
        return self._run(data)

    def _run(self, data: bytes) -> tuple[bytes, Counter[str]]:
        if not data:
            return b"", Counter()
        try:
            masked, counts = self._mask(data)
        except Exception:  # fail closed: a masker error withholds the bytes
            return b"[withheld]", Counter({"WITHHELD": 1})
        return masked, Counter(counts)
