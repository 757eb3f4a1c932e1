"""Which local user is on the other end of a connection to a tunnel's port.

A tunnel's local port is the credential while it is open: whoever connects to it acts as the
user who opened it. On a machine with other users (a shared bastion, a CI runner) that is
anyone. So the listener asks the kernel who owns the client's socket and turns away every
user but its own (and root, who could read the token anyway).

Rules:
- Linux: the kernel's TCP table (`/proc/net/tcp`, `/proc/net/tcp6`) lists each socket with
  the uid that owns it. The client's socket is the row whose local address is the peer of the
  accepted connection and whose remote address is the listener's.
- A client socket that is not in the table (it closed already, or another network namespace
  reached the port) is turned away: unknown is not "ours".
- Other systems (macOS, the BSDs) have no such table: every local connection is accepted, as
  before; `supported()` says which case applies, and docs/security.md says so too.
- The table is read once per accepted connection, not per byte: a busy host's table of a few
  thousand sockets parses in about a millisecond.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import sys
from pathlib import Path

TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))

Address = tuple[str, int]


def supported() -> bool:
    return sys.platform.startswith("linux") and TABLES[0].exists()


def _hex_words(packed: bytes) -> str:
    """An IP as the kernel prints it: its 32-bit words in host byte order (little endian on
    every Linux this runs on), in upper-case hex."""
    return "".join(
        int.from_bytes(packed[i : i + 4], "big").to_bytes(4, sys.byteorder).hex().upper()
        for i in range(0, len(packed), 4)
    )


def owner_uid(client: Address, server: Address, tables: tuple[Path, ...] = TABLES) -> int | None:
    """The uid owning the socket at `client` that is connected to `server`, or None."""
    wanted = {(_entry(_packed(client[0]), client[1]), _entry(_packed(server[0]), server[1]))}
    if ipaddress.ip_address(client[0]).version == 4:  # as a dual-stack socket shows it
        wanted.add((_entry(_mapped(client[0]), client[1]), _entry(_mapped(server[0]), server[1])))
    for table in tables:
        try:
            text = table.read_text()
        except OSError:
            continue
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) > 7 and (fields[1], fields[2]) in wanted:
                return int(fields[7])
    return None


def _entry(packed: bytes, port: int) -> str:
    return f"{_hex_words(packed)}:{port:04X}"


def _packed(host: str) -> bytes:
    return ipaddress.ip_address(host).packed


def _mapped(host: str) -> bytes:
    return b"\x00" * 10 + b"\xff\xff" + ipaddress.ip_address(host).packed


def refusal(client: Address, server: Address) -> str | None:
    """Why a connection accepted at `server` from `client` is not this user's, or None."""
    if not supported():
        return None
    uid = owner_uid(client, server)
    if uid is not None and uid in (os.getuid(), 0):
        return None
    me = _name(os.getuid())
    who = "a socket the kernel does not list" if uid is None else f"user {_name(uid)}"
    return (
        f"turned away a local connection from {who}: this tunnel acts as {me}, so only "
        f"{me}'s programs may use it (`jitctl connect --any-local-user` lets other users in)"
    )


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
