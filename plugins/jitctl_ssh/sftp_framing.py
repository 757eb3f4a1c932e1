"""SFTP packet framing for the relay: a byte stream in, whole packets judged one at a time.

Rules (draft-ietf-secsh-filexfer-02 §3: `uint32 length`, then `length` bytes):
- Only complete packets are judged; a partial packet waits in the direction's buffer for the
  next read. A length of 0 or over `MAX_PACKET` is a `RemoteProtocolError` (the host only ever
  sees packets the gateway has read completely).
- The judge sees each packet as a memoryview (no copy) and answers True (pass it on as it
  is), False (drop it: it was answered or refused here) or bytes (send these instead).
- Passed packets that follow each other go on as one piece, so relaying is a few copies per
  read, not one per packet; when the whole read passes unchanged, the read itself goes on.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TypeVar

from jitctl.plugin import RemoteProtocolError
from jitctl_ssh.sftp_wire import MAX_PACKET

C = TypeVar("C")
Judge = Callable[[memoryview, list[C]], bool | bytes]


def packets(buffer: bytes | bytearray) -> tuple[list[tuple[int, int]], int]:
    """(start, end) of each complete packet in `buffer`, and the bytes they take."""
    spans, pos, size = [], 0, len(buffer)
    while pos + 4 <= size:
        (length,) = struct.unpack_from(">I", buffer, pos)
        if length < 1 or length > MAX_PACKET:
            raise RemoteProtocolError(f"sftp packet of {length} bytes")
        if pos + 4 + length > size:
            break
        spans.append((pos, pos + 4 + length))
        pos += 4 + length
    return spans, pos


def relay(buffer: bytearray, data: bytes, judge: Judge[C]) -> tuple[list[C], list[bytes]]:
    """Feed `data`; each complete packet is passed on as it is (True), dropped (False) or
    replaced (bytes). Returns the judge's commands and the pieces to forward."""
    if buffer:
        buffer += data
        source: bytes | bytearray = buffer
    else:
        source = data  # the usual case: no partial packet waiting, no copy
    spans, used = packets(source)
    commands: list[C] = []
    passed: list[bytes] = []
    view = memoryview(source)
    try:
        run_start = -1
        for start, end in spans:
            verdict = judge(view[start:end], commands)
            if verdict is True:
                if run_start < 0:
                    run_start = start
                continue
            if run_start >= 0:
                passed.append(bytes(view[run_start:start]))
                run_start = -1
            if isinstance(verdict, bytes):
                passed.append(verdict)
        if run_start >= 0:
            passed.append(
                source
                if run_start == 0 and used == len(source) and isinstance(source, bytes)
                else bytes(view[run_start:used])
            )
    finally:
        view.release()
    if source is buffer:
        del buffer[:used]
    else:
        buffer += memoryview(data)[used:]
    return commands, passed
