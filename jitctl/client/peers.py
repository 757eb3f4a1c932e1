"""Which local user is on the other end of a connection to a tunnel's port.

A tunnel's local port is the credential while it is open: whoever connects to it acts as the
user who opened it. On a machine with other users (a shared bastion, a CI runner) that is
anyone. So the listener asks the kernel who owns the client's socket and turns away every
user but its own (and root, who could read the token anyway).

Rules:
- Linux: the kernel says which uid owns the client's socket, the one whose address is the
  accepted connection's peer and whose peer is the listener. Asked by netlink sock_diag (one
  exact lookup, ~20 µs: what `ss` uses); where netlink is refused, from the TCP tables
  (`/proc/net/tcp`, `/proc/net/tcp6`), which cost milliseconds to read whatever their size.
- A client socket the kernel does not know (it closed already, or another network namespace
  reached the port) is turned away: unknown is not "ours".
- Other systems (macOS, the BSDs) have neither: every local connection is accepted, as
  before; `supported()` says which case applies, and docs/security.md says so too.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import pwd
import socket
import struct
import sys
from pathlib import Path

TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))

Address = tuple[str, int]

NETLINK_SOCK_DIAG = 4  # linux/netlink.h
SOCK_DIAG_BY_FAMILY = 20  # linux/sock_diag.h
NLMSG_ERROR = 2
NO_COOKIE = 0xFFFFFFFF  # INET_DIAG_NOCOOKIE: match by address alone


def supported() -> bool:
    return sys.platform.startswith("linux") and TABLES[0].exists()


def netlink_uid(client: Address, server: Address) -> int | None:
    """The owner of the socket at `client` connected to `server`, asked of the kernel directly
    (sock_diag, one exact lookup: what `ss` uses); None if there is no such socket. Raises
    OSError where netlink is not available."""
    family = socket.AF_INET6 if ":" in client[0] else socket.AF_INET
    src = socket.inet_pton(family, client[0]).ljust(16, b"\0")
    dst = socket.inet_pton(family, server[0]).ljust(16, b"\0")
    sockid = struct.pack("!HH16s16s", client[1], server[1], src, dst) + struct.pack(
        "=III", 0, NO_COOKIE, NO_COOKIE
    )
    request = struct.pack("=BBBxI", family, socket.IPPROTO_TCP, 0, 0xFFFFFFFF) + sockid
    header = struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, 1, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as sock:
        sock.settimeout(2)
        sock.send(header + request)
        reply = sock.recv(8192)
    if len(reply) < 16:
        raise OSError("short sock_diag reply")
    kind = struct.unpack_from("=H", reply, 4)[0]
    if kind == NLMSG_ERROR:
        code = -struct.unpack_from("=i", reply, 16)[0]
        if code == errno.ENOENT:  # no such socket
            return None
        raise OSError(code, "sock_diag refused the lookup")
    if kind != SOCK_DIAG_BY_FAMILY or len(reply) < 16 + 72:
        raise OSError("unexpected sock_diag reply")
    return int(struct.unpack_from("=I", reply, 16 + 64)[0])


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


def _hex_words(packed: bytes) -> str:
    """An IP as the kernel prints it: its 32-bit words in host byte order (little endian on
    every Linux this runs on), in upper-case hex."""
    return "".join(
        int.from_bytes(packed[i : i + 4], "big").to_bytes(4, sys.byteorder).hex().upper()
        for i in range(0, len(packed), 4)
    )


def _packed(host: str) -> bytes:
    return ipaddress.ip_address(host).packed


def _mapped(host: str) -> bytes:
    return b"\x00" * 10 + b"\xff\xff" + ipaddress.ip_address(host).packed


def refusal(client: Address, server: Address) -> str | None:
    """Why a connection accepted at `server` from `client` is not this user's, or None."""
    if not supported():
        return None
    try:
        uid = netlink_uid(client, server)
    except OSError:  # no netlink here (a locked-down container): the slower table
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
