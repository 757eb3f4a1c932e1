"""The legacy scp (rcp) protocol core: `scp -O` transfers audited and checked per file.

`scp -O` (and OpenSSH before 9.0) runs `scp -t TARGET` (upload: the host is the sink) or
`scp -f PATH...` (download: the host is the source) as an exec command and speaks the rcp
protocol over the channel (OpenSSH scp.c): the source sends control lines — `C<mode> <size>
<name>` (a file, then `size` bytes and one status byte), `D<mode> 0 <name>` (enter a
directory), `E` (leave it), `T<mtime> 0 <atime> 0` (times of the next file) — and waits for the
sink's answer after each: `\\0` (ok), or `\\1`/`\\2` + message + `\\n` (error / fatal).

This core reads both directions and:
- checks every file and directory against the policy (upload = "write", download = "read");
  a refused one is answered with `\\1jitctl: …` on the sink's behalf, which makes OpenSSH's
  source skip it, and for downloads the client is told the same way;
- hashes each file's bytes and records one `ssh.scp` summary per file (operation, path, size,
  SHA-256, mode); an upload's summary is durable before the file's last status byte reaches
  the host, so the host does not finish a file the trail does not know about;
- anything that does not parse ends the channel (`RemoteProtocolError`).
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jitctl.plugin import Direction, Forward, Record, RemoteProtocolError, Shutdown
from jitctl_ssh.channel import ExitStatus, SendStderr, exit_commands
from jitctl_ssh.policy import SshPolicy, normalise_path

KIND = "ssh.scp"
MAX_LINE = 8192


@dataclass(frozen=True)
class ScpCommand:
    mode: str  # "upload" (scp -t: the host receives) or "download" (scp -f: the host sends)
    paths: tuple[str, ...]
    recursive: bool
    target_is_dir: bool


def parse_scp_command(argv: Sequence[str]) -> ScpCommand | None:
    """`scp -t/-f` as the remote end runs it, or None when `argv` is something else."""
    if not argv or posixpath.basename(argv[0]) != "scp":
        return None
    mode, recursive, target_dir, paths = "", False, False, []
    args = list(argv[1:])
    while args:
        arg = args.pop(0)
        if arg == "--":
            paths += args
            break
        if arg.startswith("-") and len(arg) > 1:
            for flag in arg[1:]:
                if flag == "t":
                    mode = "upload"
                elif flag == "f":
                    mode = "download"
                elif flag == "r":
                    recursive = True
                elif flag == "d":
                    target_dir = True
                elif flag in "pvqT":
                    continue
                else:
                    return None  # an option the remote end never gets: not a transfer
            continue
        paths.append(arg)
    if not mode or not paths or (mode == "upload" and len(paths) != 1):
        return None
    return ScpCommand(mode, tuple(paths), recursive, target_dir)


Command = Record | Forward | Shutdown | ExitStatus | SendStderr

# states of the source's stream
_LINE, _DATA, _STATUS = "line", "data", "status"


class ScpRelay:
    def __init__(
        self, channel: int, command: ScpCommand, policy: SshPolicy, *, home: str = ""
    ) -> None:
        self.channel = channel
        self.command = command
        self.policy = policy
        self.home = home
        self.upload = command.mode == "upload"
        self.state = _LINE
        self._line = bytearray()
        self._answer = bytearray()  # a sink answer being read
        self.awaiting: str = ""  # what the next sink answer is for: "file", "dir", "done", ""
        self.dirs: list[str] = []
        self._pending_dir = ""
        self.remaining = 0
        self.file: dict[str, Any] = {}
        self._sha = hashlib.sha256()
        self.files = 0

    # -- helpers --------------------------------------------------------------------------------

    @property
    def _source_dir(self) -> Direction:
        return Direction.UP if self.upload else Direction.DOWN

    @property
    def _sink_dir(self) -> Direction:
        return Direction.DOWN if self.upload else Direction.UP

    def _base(self) -> str:
        root = self.command.paths[0]
        return normalise_path(root, self.home) if (root.startswith("/") or self.home) else root

    def _path(self, name: str) -> str:
        if self.dirs:
            return posixpath.join(self.dirs[-1], name)
        base = self._base()
        if self.upload:
            into = self.command.target_is_dir or self.command.recursive  # TARGET exists (a guess)
            return posixpath.join(base, name) if into else base
        return base if len(self.command.paths) == 1 else name

    def _paths_to_check(self, name: str) -> list[str]:
        if self.upload and not self.dirs and not self.command.target_is_dir:
            # Whether TARGET is a directory on the host decides where this lands: check both.
            base = self._base()
            return [base, posixpath.join(base, name)]
        return [self._path(name)]

    # -- the source's stream ----------------------------------------------------------------------

    def _source(self, data: bytes) -> list[Command]:
        out: list[Command] = []
        passed = bytearray()
        view = memoryview(data)
        i = 0
        while i < len(view):
            if self.state == _DATA:
                take = min(self.remaining, len(view) - i)
                piece = view[i : i + take]
                self._sha.update(piece)
                passed += piece
                self.remaining -= take
                i += take
                if self.remaining == 0:
                    self.state = _STATUS
                continue
            if self.state == _STATUS:
                # the source's own status after the data: \0, or \1msg\n (read error)
                ok = view[i] == 0
                self.file["source_status"] = "ok" if ok else "error"
                self._summary(out, passed)
                passed = bytearray()
                self.state, self.awaiting = _LINE, "done"
                if ok:
                    passed.append(0)
                else:  # \1message\n: read (and passed on) as a control line
                    self._line = bytearray(view[i : i + 1])
                i += 1
                continue
            # _LINE
            end = data.find(b"\n", i)
            if end < 0:
                self._line += view[i:]
                if len(self._line) > MAX_LINE:
                    raise RemoteProtocolError("scp control line too long")
                break
            self._line += view[i : end + 1]
            i = end + 1
            line, self._line = bytes(self._line), bytearray()
            if self._control(line, out):
                passed += line
        if passed:
            out.append(Forward(self._source_dir, bytes(passed)))
        return out

    def _control(self, line: bytes, out: list[Command]) -> bool:
        """One control line from the source: True to pass it to the sink."""
        code, text = line[:1], line[1:-1].decode("utf-8", "surrogateescape")
        if code in (b"\x01", b"\x02"):
            out.append(
                Record(KIND, {"channel": self.channel, "op": "error", "message": text[:500]})
            )
            return True
        if code == b"T":
            return True
        if code == b"E":
            if self.dirs:
                self.dirs.pop()
            return True
        if code not in (b"C", b"D"):
            raise RemoteProtocolError(f"unexpected scp control line {line[:40]!r}")
        try:
            mode, size_text, name = text.split(" ", 2)
            size = int(size_text)
        except ValueError:
            raise RemoteProtocolError(f"bad scp control line {line[:80]!r}") from None
        if size < 0 or "/" in name or name in ("", ".", ".."):
            raise RemoteProtocolError(f"bad scp control line {line[:80]!r}")
        op = "upload" if self.upload else "download"
        kind = "write" if self.upload else "read"
        is_dir = code == b"D"
        for path in self._paths_to_check(name):
            decision = self.policy.check_file(kind, path)
            if not decision.allowed:
                out.append(
                    Record(
                        KIND,
                        {
                            "channel": self.channel,
                            "op": op,
                            "path": path,
                            "dir": is_dir,
                            **decision.payload(),
                        },
                    )
                )
                message = f"\x01jitctl: {op} of {path} refused: {decision.reason}\n".encode()
                out.append(Forward(_back(self), message))
                if not self.upload:
                    out.append(Forward(Direction.DOWN, message))
                return False
        if is_dir:
            self._pending_dir = self._path(name)
            self.awaiting = "dir"
            return True
        self.file = {"path": self._path(name), "mode": mode, "size": size, "name": name}
        self._sha = hashlib.sha256()
        self.remaining = size
        self.awaiting = "file"
        return True

    def _summary(self, out: list[Command], passed: bytearray) -> None:
        payload = {
            "channel": self.channel,
            "op": "upload" if self.upload else "download",
            "path": self.file["path"],
            "size": self.file["size"],
            "sha256": self._sha.hexdigest(),
            "mode": self.file["mode"],
        }
        if self.file.get("source_status") == "error":
            payload["result"] = "source error"
        if passed:
            # the file's bytes go on first; its last status byte waits for the record
            out.append(Forward(self._source_dir, bytes(passed)))
        out.append(Record(KIND, payload, durable=self.upload))
        self.files += 1

    # -- the sink's answers -----------------------------------------------------------------------

    def _sink(self, data: bytes) -> list[Command]:
        out: list[Command] = []
        for position in range(len(data)):
            byte = data[position]
            if self._answer:
                self._answer.append(byte)
                if byte == 0x0A:
                    self._answered(False, bytes(self._answer), out)
                    self._answer = bytearray()
                elif len(self._answer) > MAX_LINE:
                    raise RemoteProtocolError("scp answer too long")
                continue
            if byte == 0:
                self._answered(True, b"", out)
            elif byte in (1, 2):
                self._answer.append(byte)
            else:
                raise RemoteProtocolError(f"unexpected scp answer byte {byte}")
        out.append(Forward(self._sink_dir, data))
        return out

    def _answered(self, ok: bool, message: bytes, out: list[Command]) -> None:
        awaiting, self.awaiting = self.awaiting, ""
        if awaiting == "file":
            if ok:
                self.state = _DATA if self.remaining else _STATUS
            else:
                self._refused_by_host(message, out)
        elif awaiting == "dir":
            if ok:
                self.dirs.append(self._pending_dir)
            else:
                self._refused_by_host(message, out)
        elif awaiting == "done" and not ok:
            self._refused_by_host(message, out)

    def _refused_by_host(self, message: bytes, out: list[Command]) -> None:
        out.append(
            Record(
                KIND,
                {
                    "channel": self.channel,
                    "op": "error",
                    "path": self.file.get("path", self._pending_dir),
                    "message": message[1:-1].decode("utf-8", "replace")[:500],
                },
            )
        )

    # -- the core interface -----------------------------------------------------------------------

    def client_data(self, data: bytes) -> list[Command]:
        return self._source(data) if self.upload else self._sink(data)

    def upstream_data(self, data: bytes, more: bool = False) -> list[Command]:
        return self._sink(data) if self.upload else self._source(data)

    def client_eof(self) -> list[Command]:
        return [Shutdown(Direction.UP)]

    def upstream_eof(self) -> list[Command]:
        return [Shutdown(Direction.DOWN)]

    def upstream_stderr(self, data: bytes, more: bool = False) -> list[Command]:
        """The host's stderr on this channel (diagnostics, not protocol): recorded, passed."""
        return [
            Record(
                "ssh.data",
                {"channel": self.channel, "stream": "stderr", "len": len(data)},
                data=data,
            ),
            SendStderr(data),
        ]

    def exit(self, status: int | None, signal: str = "") -> list[Command]:
        return list(exit_commands(self.channel, status, signal))


def _back(relay: ScpRelay) -> Direction:
    """Toward the source: where a refusal goes, as if the sink had answered."""
    return Direction.DOWN if relay.upload else Direction.UP
