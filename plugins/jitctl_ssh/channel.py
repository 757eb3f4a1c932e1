"""Recording one SSH session channel's bytes: a terminal, or an exec command's streams.

A channel with a pty is a terminal: the client's keystrokes are `term.input`, everything the
host prints is `term.output` (sshd merges stderr into the pty), the window size (first with
the terminal type, then at every change) is `term.resize` and the end is `term.exit` — the
kinds `jitctl replay` reads (docs/replay.md). A channel without a pty (an
exec command, a shell fed by a script, a forwarded connection) carries plain streams:
`ssh.data` with `stream` = "stdin", "stdout" or "stderr" and the byte offset in that stream.

Rules (the tcp plugin's, applied per channel):
- client->host bytes are recorded durably before they are forwarded (write-ahead);
- host->client bytes are masked (when the target has masks) before they are recorded and
  before they reach the client; what was masked is counted in the record's `masked`;
- keystrokes are recorded masked (a pasted secret) but forwarded as typed;
- records hold at most `chunk_size` bytes each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jitctl.plugin import Direction, Forward, Record, Shutdown
from jitctl_ssh.streammask import Mask, StreamMasker

INPUT_KIND = "term.input"
OUTPUT_KIND = "term.output"
RESIZE_KIND = "term.resize"
DATA_KIND = "ssh.data"
EXIT_KIND = "ssh.exit"
TERM_EXIT_KIND = "term.exit"
EOF_KIND = "ssh.eof"


@dataclass(frozen=True, slots=True)
class SendStderr:
    """Send bytes to the client on the channel's stderr (extended data 1)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """Tell the client how the command ended (`exit-status`, or `exit-signal`)."""

    status: int | None
    signal: str = ""


Command = Record | Forward | Shutdown | SendStderr | ExitStatus


class ChannelRecorder:
    def __init__(
        self,
        channel: int,
        *,
        pty: bool,
        chunk_size: int = 16384,
        mask: Mask | None = None,
        data_kind: str = DATA_KIND,
    ) -> None:
        self.channel = channel
        self.pty = pty
        self.chunk = max(256, chunk_size)
        self.data_kind = data_kind
        self._mask = mask
        self._out = StreamMasker(mask) if mask else None
        self._err = StreamMasker(mask) if mask else None
        self.offsets = {"stdin": 0, "stdout": 0, "stderr": 0}

    # -- records --------------------------------------------------------------------------------

    def _records(
        self, stream: str, data: bytes, durable: bool, masked: Mapping[str, int] | None = None
    ) -> list[Command]:
        out: list[Command] = []
        for start in range(0, len(data), self.chunk):
            piece = data[start : start + self.chunk]
            if self.pty:
                kind = INPUT_KIND if stream == "stdin" else OUTPUT_KIND
                payload: dict[str, Any] = {"channel": self.channel, "len": len(piece)}
            else:
                kind = self.data_kind
                payload = {
                    "channel": self.channel,
                    "stream": stream,
                    "offset": self.offsets[stream],
                    "len": len(piece),
                }
            if masked and start == 0:
                payload["masked"] = dict(sorted(masked.items()))
            self.offsets[stream] += len(piece)
            out.append(Record(kind, payload, data=piece, durable=durable))
        return out

    # -- client -> host -------------------------------------------------------------------------

    def client_data(self, data: bytes) -> list[Command]:
        if not data:
            return []
        recorded, counts = data, Counter[str]()
        if self._mask is not None:
            try:
                recorded, found = self._mask(data)
                counts = Counter(found)
            except Exception:
                recorded, counts = b"[withheld]", Counter({"WITHHELD": 1})
        out = self._records("stdin", recorded, True, counts)
        out.append(Forward(Direction.UP, data))
        return out

    def client_eof(self) -> list[Command]:
        return [
            Record(EOF_KIND, {"channel": self.channel, "stream": "stdin"}),
            Shutdown(Direction.UP),
        ]

    # -- host -> client -------------------------------------------------------------------------

    def upstream_data(self, data: bytes, more: bool = False) -> list[Command]:
        return self._output("stdout", data, more)

    def upstream_stderr(self, data: bytes, more: bool = False) -> list[Command]:
        return self._output("stderr", data, more)

    def _output(self, stream: str, data: bytes, more: bool) -> list[Command]:
        masker = self._out if stream == "stdout" else self._err
        counts: Counter[str] = Counter()
        if masker is not None:
            data, counts = masker.feed(data, more)
        if not data:
            return []
        out = self._records(stream, data, False, counts)
        out.append(Forward(Direction.DOWN, data) if stream == "stdout" else SendStderr(data))
        return out

    def flush(self) -> list[Command]:
        """Whatever the masker held back waiting for the rest of a line."""
        out: list[Command] = []
        for stream, masker in (("stdout", self._out), ("stderr", self._err)):
            if masker is None:
                continue
            data, counts = masker.flush()
            if data:
                out += self._records(stream, data, False, counts)
                out.append(
                    Forward(Direction.DOWN, data) if stream == "stdout" else SendStderr(data)
                )
        return out

    def upstream_eof(self) -> list[Command]:
        return [
            *self.flush(),
            Record(EOF_KIND, {"channel": self.channel, "stream": "stdout"}),
            Shutdown(Direction.DOWN),
        ]

    # -- channel events -------------------------------------------------------------------------

    def resize(
        self, cols: int, rows: int, width_px: int = 0, height_px: int = 0, term: str = ""
    ) -> list[Command]:
        payload: dict[str, Any] = {"channel": self.channel, "cols": cols, "rows": rows}
        if term:
            payload["term"] = term
        if width_px or height_px:
            payload.update(width_px=width_px, height_px=height_px)
        return [Record(RESIZE_KIND, payload)]

    def exit(self, status: int | None, signal: str = "") -> list[Command]:
        return exit_commands(self.channel, status, signal, pty=self.pty)


def exit_commands(
    channel: int, status: int | None, signal: str = "", *, pty: bool = False
) -> list[Command]:
    """How a channel's command ended: recorded (`term.exit` for a terminal, else `ssh.exit`),
    then told to the client. `status` None: the host closed without saying."""
    payload: dict[str, Any] = {"channel": channel, "status": status}
    if signal:
        payload["signal"] = signal
    return [Record(TERM_EXIT_KIND if pty else EXIT_KIND, payload), ExitStatus(status, signal)]
