"""The sftp relay core: every SFTP request checked and audited, file contents hashed.

The gateway does not run an SFTP server of its own: it relays the client's SFTP packets to the
host's sftp subsystem, packet by packet, after reading each one (draft-ietf-secsh-filexfer-02,
version 3, what OpenSSH speaks). That keeps the host's exact semantics (and its speed) while
the gateway sees every operation:

- a request the policy refuses never reaches the host: the core answers it itself with
  `SSH_FX_PERMISSION_DENIED` and the reason;
- `open` for writing, and every change (remove, rename, mkdir, rmdir, setstat, symlink,
  hardlink) is recorded durably before it is forwarded (write-ahead);
- file contents are not recorded; they are hashed (SHA-256) as they pass, in offset order, and
  the transfer is summarised when the handle is closed: operation (`upload` / `download`),
  path, bytes and hash. An upload's summary is durable before the close reaches the host.
  (sftp_transfers.py states when each summary is written.)
- extensions are relayed only from an allow-list (below), and the server's `version` reply is
  filtered to that list so clients do not try others; `copy-data` (a server-side copy the
  gateway could not hash) is never relayed;
- a packet that does not parse ends the channel (`RemoteProtocolError`): the host only ever
  sees packets the gateway has read completely (sftp_framing.py splits the stream).

Paths are recorded and checked absolute: a relative path is taken from `home` (the upstream
user's home directory, when the shell knows it).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jitctl.plugin import Direction, Forward, Record, Shutdown
from jitctl_ssh.channel import ExitStatus, SendStderr, exit_commands
from jitctl_ssh.policy import Decision, SshPolicy, normalise_path
from jitctl_ssh.sftp_framing import relay
from jitctl_ssh.sftp_transfers import Handle
from jitctl_ssh.sftp_wire import (
    CLOSE,
    DATA,
    EXTENDED,
    FSETSTAT,
    FSTAT,
    FX_EOF,
    FX_FAILURE,
    FX_OK,
    FX_OP_UNSUPPORTED,
    FX_PERMISSION_DENIED,
    FXF_APPEND,
    FXF_CREAT,
    FXF_EXCL,
    FXF_READ,
    FXF_TRUNC,
    FXF_WRITE,
    HANDLE,
    INIT,
    LSTAT,
    MKDIR,
    NAME,
    OPEN,
    OPENDIR,
    READ,
    READDIR,
    READLINK,
    REALPATH,
    REMOVE,
    RENAME,
    RMDIR,
    SETSTAT,
    STAT,
    STATUS,
    STATUS_NAMES,
    SYMLINK,
    VERSION,
    WRITE,
    Reader,
    status_packet,
    string,
)

KIND = "ssh.sftp"

# name -> (the op it is recorded as, what its paths are checked as, how many path strings
# follow the request id)
EXTENSIONS: dict[str, tuple[str, str, int]] = {
    "posix-rename@openssh.com": ("rename", "write", 2),
    "hardlink@openssh.com": ("hardlink", "write", 2),
    "lsetstat@openssh.com": ("setstat", "write", 1),
    "statvfs@openssh.com": ("statvfs", "browse", 1),
    "expand-path@openssh.com": ("realpath", "browse", 1),
    "fstatvfs@openssh.com": ("statvfs", "handle", 0),
    "fsync@openssh.com": ("fsync", "handle", 0),
    "limits@openssh.com": ("limits", "none", 0),
    "home-directory": ("home-directory", "browse", 1),
    "users-groups-by-id@openssh.com": ("users-groups", "none", 0),
}
_PATH_OPS = {
    LSTAT: ("lstat", "browse"), STAT: ("stat", "browse"), REALPATH: ("realpath", "browse"),
    READLINK: ("readlink", "browse"), OPENDIR: ("list", "browse"), REMOVE: ("remove", "write"),
    MKDIR: ("mkdir", "write"), RMDIR: ("rmdir", "write"), SETSTAT: ("setstat", "write"),
}  # fmt: skip
_QUIET = {"list"}  # recorded when the handle closes, with the number of entries


@dataclass
class _Pending:
    op: str
    path: str = ""
    handle: bytes = b""
    offset: int = 0
    opening: Handle | None = None
    recorded: bool = False


Command = Record | Forward | Shutdown | ExitStatus | SendStderr


class SftpRelay:
    def __init__(
        self,
        channel: int,
        policy: SshPolicy,
        *,
        home: str = "",
        on_denied: Callable[[Decision], None] | None = None,
    ) -> None:
        self.channel = channel
        self.policy = policy
        self.home = home
        self.on_denied = on_denied
        self._up = bytearray()
        self._down = bytearray()
        self.handles: dict[bytes, Handle] = {}
        self.pending: dict[int, _Pending] = {}
        self.version: int | None = None

    # -- client -> host -------------------------------------------------------------------------

    def client_data(self, data: bytes) -> list[Command]:
        commands, passed = relay(self._up, data, self._request)
        out: list[Command] = []
        # Records and denials come in packet order; forwards wait behind durable records.
        out += commands
        if passed:
            out.append(Forward(Direction.UP, b"".join(passed)))
        return out

    def _deny(
        self, request_id: int, op: str, paths: list[str], decision: Decision, out: list[Command]
    ) -> bool:
        self._record(op, paths, out, False, **decision.payload())
        out.append(
            Forward(
                Direction.DOWN,
                status_packet(request_id, FX_PERMISSION_DENIED, f"jitctl: {decision.reason}"),
            )
        )
        if self.on_denied is not None:
            self.on_denied(decision)
        return False

    def _record(
        self, op: str, paths: list[str], out: list[Command], durable: bool, **extra: Any
    ) -> None:
        payload: dict[str, Any] = {"channel": self.channel, "op": op}
        if paths:
            payload["path"] = paths[0]
        if len(paths) > 1:
            payload["path2"] = paths[1]
        payload.update(extra)
        out.append(Record(KIND, payload, durable=durable))

    def _abs(self, path: str) -> str:
        return normalise_path(path, self.home) if (path.startswith("/") or self.home) else path

    def _check(self, kind: str, paths: list[str]) -> Decision:
        for path in paths:
            if not path.startswith("/") and self.policy.has_path_rules:
                return Decision(
                    "deny", "path", f"{path!r} is relative and the home directory is unknown"
                )
            decision = self.policy.check_file(kind, path)
            if not decision.allowed:
                return decision
        return Decision("allow", "default")

    def _request(self, packet: memoryview, out: list[Command]) -> bool | bytes:
        """One client packet: True to forward it, False when answered here."""
        ptype = packet[4]
        if ptype == INIT:
            return True
        r = Reader(packet, 5)
        request_id = r.u32()
        if ptype in (READ, WRITE, FSTAT, FSETSTAT, READDIR, CLOSE):
            handle_id = bytes(r.string())
            handle = self.handles.get(handle_id)
            if handle is None:
                out.append(
                    Forward(
                        Direction.DOWN,
                        status_packet(request_id, FX_FAILURE, "jitctl: unknown handle"),
                    )
                )
                return False
            if ptype == READ:
                offset = r.u64()
                self.pending[request_id] = _Pending("read", handle=handle_id, offset=offset)
            elif ptype == WRITE:
                offset = r.u64()
                handle.writes.add(offset, r.string())
                self.pending[request_id] = _Pending("write", handle=handle_id)
            elif ptype == FSETSTAT:
                decision = self._check("write", [handle.path])
                if not decision.allowed:
                    return self._deny(request_id, "setstat", [handle.path], decision, out)
                self._record("setstat", [handle.path], out, True)
                self.pending[request_id] = _Pending("setstat", handle.path, recorded=True)
            elif ptype == READDIR:
                self.pending[request_id] = _Pending("readdir", handle=handle_id)
            elif ptype == CLOSE:
                self._closing(handle_id, handle, out)
                self.pending[request_id] = _Pending("close", handle=handle_id)
            else:
                self.pending[request_id] = _Pending("fstat")
            return True
        if ptype == OPEN:
            path = self._abs(r.text())
            flags = r.u32()
            writing = bool(flags & (FXF_WRITE | FXF_APPEND | FXF_CREAT | FXF_TRUNC))
            reading = bool(flags & FXF_READ) or not writing  # no flags: the host opens to read
            mode = "read-write" if reading and writing else "write" if writing else "read"
            for kind, wanted in (("read", reading), ("write", writing)):
                if wanted:
                    decision = self._check(kind, [path])
                    if not decision.allowed:
                        return self._deny(request_id, "open", [path], decision, out)
            self._record("open", [path], out, writing, mode=mode, flags=_flag_names(flags))
            handle = Handle(path, "file", read=reading, write=writing)
            self.pending[request_id] = _Pending("open", path, opening=handle, recorded=True)
            return True
        if ptype in _PATH_OPS:
            op, kind = _PATH_OPS[ptype]
            path = self._abs(r.text())
            decision = self._check(kind, [path])
            if not decision.allowed:
                return self._deny(request_id, op, [path], decision, out)
            opening = Handle(path, "dir") if ptype == OPENDIR else None
            recorded = op not in _QUIET
            if recorded:
                self._record(op, [path], out, kind == "write")
            self.pending[request_id] = _Pending(op, path, opening=opening, recorded=recorded)
            return True
        if ptype in (RENAME, SYMLINK):
            op = "rename" if ptype == RENAME else "symlink"
            paths = [self._abs(r.text()), self._abs(r.text())]
            decision = self._check("write", paths)
            if not decision.allowed:
                return self._deny(request_id, op, paths, decision, out)
            self._record(op, paths, out, True)
            self.pending[request_id] = _Pending(op, paths[0], recorded=True)
            return True
        if ptype == EXTENDED:
            name = r.text()
            spec = EXTENSIONS.get(name)
            if spec is None:
                why = "relayed" if name != "copy-data" else "relayed (the copy could not be hashed)"
                return self._deny(
                    request_id, "extension", [], Decision("deny", "sftp", f"{name} is not {why}"),
                    out,
                )  # fmt: skip
            op, kind, count = spec
            if kind == "handle":
                if bytes(r.string()) not in self.handles:
                    return self._deny(
                        request_id, op, [], Decision("deny", "sftp", "unknown handle"), out
                    )
                self.pending[request_id] = _Pending(op)
                return True
            if op in ("limits", "users-groups"):
                self.pending[request_id] = _Pending(op)  # nothing about files: not recorded
                return True
            paths = [self._abs(r.text()) for _ in range(count)]
            if kind != "none":
                decision = self._check(kind, paths)
                if not decision.allowed:
                    return self._deny(request_id, op, paths, decision, out)
            self._record(op, paths, out, kind == "write", extension=name)
            self.pending[request_id] = _Pending(op, paths[0] if paths else "", recorded=True)
            return True
        out.append(
            Forward(
                Direction.DOWN,
                status_packet(request_id, FX_OP_UNSUPPORTED, f"jitctl: sftp request {ptype}"),
            )
        )
        self._record("unsupported", [], out, False, type=ptype)
        return False

    def _closing(self, handle_id: bytes, handle: Handle, out: list[Command]) -> None:
        del self.handles[handle_id]
        for op, durable, extra in handle.summaries():
            self._record(op, [handle.path], out, durable, **extra)

    def client_eof(self) -> list[Command]:
        return [Shutdown(Direction.UP)]

    # -- host -> client -------------------------------------------------------------------------

    def upstream_data(self, data: bytes, more: bool = False) -> list[Command]:
        commands, passed = relay(self._down, data, self._response)
        if passed:
            commands.append(Forward(Direction.DOWN, b"".join(passed)))
        return commands

    def _response(self, packet: memoryview, out: list[Command]) -> bool | bytes:
        ptype = packet[4]
        r = Reader(packet, 5)
        if ptype == VERSION:
            self.version = r.u32()
            kept: list[bytes] = []
            while r.pos < len(packet):
                name, value = r.string(), r.string()
                if bytes(name).decode("utf-8", "replace") in EXTENSIONS:
                    kept.append(string(bytes(name)) + string(bytes(value)))
            body = struct.pack(">BI", VERSION, self.version) + b"".join(kept)
            return struct.pack(">I", len(body)) + body
        request_id = r.u32()
        pending = self.pending.pop(request_id, None)
        if pending is None:
            return True
        if ptype == DATA and pending.op == "read":
            handle = self.handles.get(pending.handle)
            if handle is not None:
                handle.reads.add(pending.offset, r.string())
        elif ptype == HANDLE and pending.opening is not None:
            self.handles[bytes(r.string())] = pending.opening
        elif ptype == NAME and pending.op == "readdir":
            handle = self.handles.get(pending.handle)
            if handle is not None:
                handle.entries += r.u32()
        elif ptype == STATUS:
            code = r.u32()
            if code not in (FX_OK, FX_EOF):
                if pending.op == "write":
                    handle = self.handles.get(pending.handle)
                    if handle is not None:
                        handle.errors += 1
                elif pending.recorded or pending.opening is not None:
                    message = r.text() if r.pos + 4 <= len(packet) else ""
                    self._record(
                        pending.op,
                        [pending.path] if pending.path else [],
                        out,
                        False,
                        result=STATUS_NAMES.get(code, str(code)),
                        message=message[:200],
                    )
        return True

    def upstream_eof(self) -> list[Command]:
        out: list[Command] = []
        for handle_id, handle in list(self.handles.items()):
            self._closing(handle_id, handle, out)  # the host went away with files open
        return [*out, Shutdown(Direction.DOWN)]

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


def _flag_names(flags: int) -> list[str]:
    names = [("read", FXF_READ), ("write", FXF_WRITE), ("append", FXF_APPEND),
             ("create", FXF_CREAT), ("truncate", FXF_TRUNC), ("exclusive", FXF_EXCL)]  # fmt: skip
    return [name for name, bit in names if flags & bit]
