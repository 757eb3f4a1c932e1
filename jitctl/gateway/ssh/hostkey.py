"""Host keys: the gateway's own (what clients pin) and the hosts' (what the gateway checks).

- The gateway presents one Ed25519 host key to every ssh client, kept in the broker's state
  dir as `ssh_host_ed25519_key` (OpenSSH format, 0600) and made on first use. Clients learn
  its public half from the tunnel check (`jitctl connect` writes it to a known_hosts file) and
  refuse anything else, so a man in the middle between `ssh` and the local tunnel port would
  have to hold the broker's key.
- A host is checked against, in order: the target's `ssh.host_keys`, its `ssh.known_hosts`
  file (hashed entries too), else trust on first use in `<state_dir>/ssh_known_hosts`: the
  first key seen is kept (and the session records it as `ssh.host_key`), a different key later
  is refused.

Making or reading the gateway key needs only `cryptography`; paramiko objects are built in
`load_gateway_key`, which the ssh shell calls.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KEY_NAME = "ssh_host_ed25519_key"
TOFU_NAME = "ssh_known_hosts"
_lock = threading.Lock()


def _key_path(state_dir: Path | str) -> Path:
    return Path(state_dir) / KEY_NAME


def _ensure_key(state_dir: Path | str) -> bytes:
    """The gateway key's PEM, made (atomically, race-free across sessions) if missing."""
    path = _key_path(state_dir)
    with contextlib.suppress(FileNotFoundError):
        return path.read_bytes()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{KEY_NAME}.{os.getpid()}.{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # fails if another session made it first: theirs wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes()


def gateway_public_key(state_dir: Path | str) -> str:
    """ "ssh-ed25519 AAAA..." of the gateway's host key (made if missing)."""
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_ssh_private_key(_ensure_key(state_dir), password=None)
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def load_gateway_key(state_dir: Path | str) -> Any:
    """The gateway's host key as a paramiko key."""
    import io

    import paramiko

    return paramiko.Ed25519Key.from_private_key(io.StringIO(_ensure_key(state_dir).decode()))


def fingerprint(key_type: str, key_b64: str) -> str:
    digest = hashlib.sha256(base64.b64decode(key_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class HostKeyVerdict:
    ok: bool
    how: str  # "pinned", "known_hosts", "first use", "trusted before"
    reason: str = ""


def _host_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def check_host_key(
    target: Any, state_dir: Path | str, host: str, port: int, key_type: str, key_b64: str
) -> HostKeyVerdict:
    """Is `key_type key_b64` the key of `host:port` for this target? (module docstring)."""
    ssh = getattr(target, "ssh", None)
    pinned = list(getattr(ssh, "host_keys", []) or [])
    seen = f"{key_type} {fingerprint(key_type, key_b64)}"
    if pinned:
        for line in pinned:
            parts = line.split()
            if parts[0] == key_type and parts[1] == key_b64:
                return HostKeyVerdict(True, "pinned")
        return HostKeyVerdict(False, "pinned", f"the host presented {seen}, not a pinned key")
    known_hosts = getattr(ssh, "known_hosts", "") or ""
    if known_hosts:
        return _check_file(Path(known_hosts), host, port, key_type, key_b64, seen, learn=False)
    return _check_file(Path(state_dir) / TOFU_NAME, host, port, key_type, key_b64, seen, learn=True)


def _check_file(
    path: Path, host: str, port: int, key_type: str, key_b64: str, seen: str, *, learn: bool
) -> HostKeyVerdict:
    import paramiko

    name = _host_name(host, port)
    with _lock, _file_lock(path, learn):
        keys = paramiko.HostKeys()
        with contextlib.suppress(FileNotFoundError):
            keys.load(str(path))
        entry = keys.lookup(name)
        if entry:
            if key_type in entry:
                if entry[key_type].get_base64() == key_b64:
                    return HostKeyVerdict(True, "trusted before" if learn else "known_hosts")
                return HostKeyVerdict(
                    False,
                    "known_hosts",
                    f"the host presented {seen}, which differs from the key in {path}",
                )
            if not learn:
                return HostKeyVerdict(
                    False, "known_hosts", f"{path} has no {key_type} key for {name}"
                )
        elif not learn:
            return HostKeyVerdict(False, "known_hosts", f"{path} has no entry for {name}")
        if entry and learn:
            return HostKeyVerdict(
                False,
                "first use",
                f"the host presented {seen}, but a key of another type was kept for it in {path}",
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="ascii") as f:
            f.write(f"{name} {key_type} {key_b64}\n")
        os.chmod(path, 0o600)
        return HostKeyVerdict(True, "first use")


@contextlib.contextmanager
def _file_lock(path: Path, needed: bool) -> Any:
    """Serialise learners across broker processes sharing a state dir."""
    if not needed:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
