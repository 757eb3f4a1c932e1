"""The tcp plugin: byte-level recording of both directions, for any protocol.

Sans-I/O (STYLE.md): the core turns bytes into commands and knows nothing of sockets.
Rules:
- client->upstream bytes are recorded *durably* before they are forwarded (write-ahead), in
  chunks of at most `context.chunk_size` bytes, each with its stream offset;
- upstream->client bytes are recorded in order but do not wait for the disk;
- end of data in either direction is recorded and passed on as a half-close.
"""

from __future__ import annotations

from collections.abc import Sequence

from jitctl.plugin import Command, Direction, Forward, Record, SessionContext, Shutdown

RECORD_KIND = "tcp.data"
EOF_KIND = "tcp.eof"
_UP, _DOWN = Direction.UP.value, Direction.DOWN.value  # enum lookups cost a Python call each


class TcpCore:
    def __init__(self, context: SessionContext) -> None:
        self._chunk = max(256, context.chunk_size)
        self.offsets = {_UP: 0, _DOWN: 0}  # by direction value: bytes seen so far

    def _data(self, direction: Direction, name: str, data: bytes) -> list[Command]:
        if not data:
            return []
        durable = direction is Direction.UP
        offset, chunk = self.offsets[name], self._chunk
        if len(data) <= chunk:  # one record: its data is the bytes themselves, not a copy
            pieces: Sequence[bytes] = (data if type(data) is bytes else bytes(data),)
        else:
            view = memoryview(data)
            pieces = [bytes(view[start : start + chunk]) for start in range(0, len(data), chunk)]
        commands: list[Command] = []
        for piece in pieces:
            commands.append(
                Record(
                    RECORD_KIND,
                    {"dir": name, "offset": offset, "len": len(piece)},
                    data=piece,
                    durable=durable,
                )
            )
            offset += len(piece)
        self.offsets[name] = offset
        commands.append(Forward(direction, data))
        return commands

    def client_data(self, data: bytes) -> Sequence[Command]:
        return self._data(Direction.UP, _UP, data)

    def upstream_data(self, data: bytes) -> Sequence[Command]:
        return self._data(Direction.DOWN, _DOWN, data)

    def _eof(self, direction: Direction) -> list[Command]:
        return [
            Record(EOF_KIND, {"dir": direction.value, "offset": self.offsets[direction.value]}),
            Shutdown(direction),
        ]

    def client_eof(self) -> Sequence[Command]:
        return self._eof(Direction.UP)

    def upstream_eof(self) -> Sequence[Command]:
        return self._eof(Direction.DOWN)


class TcpPlugin:
    name = "tcp"

    def new_core(self, context: SessionContext) -> TcpCore:
        return TcpCore(context)


plugin = TcpPlugin()
