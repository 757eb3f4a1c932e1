"""The sftp relay core: requests checked and recorded, contents hashed, refusals answered."""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jitctl.config import Target
from jitctl.plugin import Direction, Forward, Record, RemoteProtocolError
from jitctl_ssh import sftp
from jitctl_ssh.policy import SshPolicy


def u32(n: int) -> bytes:
    return struct.pack(">I", n)


def u64(n: int) -> bytes:
    return struct.pack(">Q", n)


def s(value: bytes | str) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return u32(len(raw)) + raw


def pkt(ptype: int, *parts: bytes) -> bytes:
    body = bytes([ptype]) + b"".join(parts)
    return u32(len(body)) + body


def relay(rules: list[dict[str, Any]] = (), home: str = "/home/u", **ssh: Any) -> sftp.SftpRelay:  # type: ignore[assignment]
    target = Target.model_validate(
        {"name": "web", "protocol": "ssh", "address": "h:22", "rules": list(rules), "ssh": ssh}
    )
    return sftp.SftpRelay(0, SshPolicy.from_target(target), home=home)


def forwarded(commands: list[Any], direction: Direction) -> bytes:
    return b"".join(c.data for c in commands if isinstance(c, Forward) and c.direction is direction)


def sftp_records(commands: list[Any]) -> list[dict[str, Any]]:
    return [dict(c.payload) for c in commands if isinstance(c, Record) and c.kind == "ssh.sftp"]


def open_file(
    r: sftp.SftpRelay, path: str, flags: int, handle: bytes = b"h1", rid: int = 1
) -> list[Any]:
    out = list(r.client_data(pkt(sftp.OPEN, u32(rid), s(path), u32(flags), u32(0))))
    out += r.upstream_data(pkt(sftp.HANDLE, u32(rid), s(handle)))
    return out


def test_version_reply_keeps_only_relayed_extensions() -> None:
    r = relay()
    assert forwarded(r.client_data(pkt(sftp.INIT, u32(3))), Direction.UP) == pkt(sftp.INIT, u32(3))
    reply = pkt(sftp.VERSION, u32(3), s("posix-rename@openssh.com"), s("1"), s("copy-data"), s("1"))
    down = forwarded(r.upstream_data(reply), Direction.DOWN)
    assert down == pkt(sftp.VERSION, u32(3), s("posix-rename@openssh.com"), s("1"))


def test_an_upload_is_recorded_with_size_and_hash_before_the_close_reaches_the_host() -> None:
    r = relay()
    out = open_file(r, "/srv/f", sftp.FXF_WRITE | sftp.FXF_CREAT | sftp.FXF_TRUNC)
    opened = sftp_records(out)[0]
    assert opened["op"] == "open" and opened["mode"] == "write" and opened["path"] == "/srv/f"
    assert next(c for c in out if isinstance(c, Record)).durable  # write intent is write-ahead
    content = b"hello " * 1000
    r.client_data(pkt(sftp.WRITE, u32(2), s(b"h1"), u64(0), s(content[:4000])))
    r.client_data(pkt(sftp.WRITE, u32(3), s(b"h1"), u64(4000), s(content[4000:])))
    close = r.client_data(pkt(sftp.CLOSE, u32(4), s(b"h1")))
    summary = close[0]
    assert isinstance(summary, Record) and summary.durable
    assert summary.payload["op"] == "upload"
    assert summary.payload["size"] == len(content)
    assert summary.payload["sha256"] == hashlib.sha256(content).hexdigest()
    assert isinstance(close[-1], Forward)  # the close goes after its record


def test_a_download_hashes_the_data_replies_in_offset_order() -> None:
    r = relay()
    open_file(r, "f.txt", sftp.FXF_READ)
    r.client_data(pkt(sftp.READ, u32(5), s(b"h1"), u64(0), u32(4)))
    r.client_data(pkt(sftp.READ, u32(6), s(b"h1"), u64(4), u32(4)))
    r.upstream_data(pkt(sftp.DATA, u32(6), s(b"5678")))  # out of order
    r.upstream_data(pkt(sftp.DATA, u32(5), s(b"1234")))
    summary = sftp_records(r.client_data(pkt(sftp.CLOSE, u32(7), s(b"h1"))))[0]
    assert summary["op"] == "download" and summary["path"] == "/home/u/f.txt"
    assert summary["sha256"] == hashlib.sha256(b"12345678").hexdigest()


def test_a_refused_open_is_answered_here_and_never_reaches_the_host() -> None:
    r = relay([{"name": "etc", "match": {"path": ["/etc/*"]}, "action": "deny"}])
    out = r.client_data(pkt(sftp.OPEN, u32(9), s("/etc/shadow"), u32(sftp.FXF_READ), u32(0)))
    assert forwarded(out, Direction.UP) == b""
    reply = forwarded(out, Direction.DOWN)
    assert reply[4] == sftp.STATUS and struct.unpack(">II", reply[5:13]) == (9, 3)
    record = sftp_records(out)[0]
    assert record["decision"] == "deny" and record["rule"] == "etc"


def test_uploads_and_downloads_can_be_switched_off() -> None:
    no_up = relay(upload=False)
    out = no_up.client_data(pkt(sftp.REMOVE, u32(1), s("/tmp/x")))
    assert forwarded(out, Direction.UP) == b"" and sftp_records(out)[0]["decision"] == "deny"
    no_down = relay(download=False)
    out = no_down.client_data(pkt(sftp.OPEN, u32(1), s("/tmp/x"), u32(sftp.FXF_READ), u32(0)))
    assert forwarded(out, Direction.UP) == b""
    out = no_down.client_data(pkt(sftp.OPENDIR, u32(2), s("/tmp")))
    assert forwarded(out, Direction.UP)  # listing is not downloading


def test_changes_are_recorded_durably_and_their_failures_too() -> None:
    r = relay()
    out = r.client_data(pkt(sftp.RENAME, u32(1), s("a"), s("/tmp/b")))
    record = next(c for c in out if isinstance(c, Record))
    assert record.durable and record.payload["path"] == "/home/u/a"
    assert record.payload["path2"] == "/tmp/b"
    failed = r.upstream_data(pkt(sftp.STATUS, u32(1), u32(2), s("No such file"), s("")))
    assert sftp_records(failed)[0]["result"] == "NO_SUCH_FILE"


def test_unknown_requests_and_unrelayed_extensions_are_refused() -> None:
    r = relay()
    out = r.client_data(pkt(sftp.EXTENDED, u32(1), s("copy-data"), s(b"h"), u64(0), u64(0)))
    assert forwarded(out, Direction.UP) == b"" and forwarded(out, Direction.DOWN)
    out = r.client_data(pkt(99, u32(2)))
    assert forwarded(out, Direction.UP) == b""
    out = r.client_data(pkt(sftp.READ, u32(3), s(b"nohandle"), u64(0), u32(1)))
    assert forwarded(out, Direction.UP) == b""


def test_a_listing_is_summarised_when_its_handle_closes() -> None:
    r = relay()
    r.client_data(pkt(sftp.OPENDIR, u32(1), s("/srv")))
    r.upstream_data(pkt(sftp.HANDLE, u32(1), s(b"d")))
    r.client_data(pkt(sftp.READDIR, u32(2), s(b"d")))
    r.upstream_data(pkt(sftp.NAME, u32(2), u32(3)))
    summary = sftp_records(r.client_data(pkt(sftp.CLOSE, u32(3), s(b"d"))))[0]
    assert summary == {"channel": 0, "op": "list", "path": "/srv", "entries": 3}


def test_packets_split_anywhere_are_relayed_whole_and_unchanged() -> None:
    r = relay()
    stream = (
        pkt(sftp.INIT, u32(3))
        + pkt(sftp.STAT, u32(1), s("/x"))
        + pkt(sftp.MKDIR, u32(2), s("/y"), u32(0))
    )
    up = b"".join(
        forwarded(r.client_data(stream[i : i + 1]), Direction.UP) for i in range(len(stream))
    )
    assert up == stream


def test_a_huge_length_is_a_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError):
        relay().client_data(u32(1 << 30) + b"\x03")
    with pytest.raises(RemoteProtocolError):
        relay().client_data(pkt(sftp.OPEN, u32(1)))  # fields missing


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=80), max_size=8), st.lists(st.binary(max_size=80), max_size=8))
def test_any_bytes_give_commands_or_a_protocol_error(ups: list[bytes], downs: list[bytes]) -> None:
    r = relay()
    try:
        for up, down in zip(ups, downs, strict=False):
            r.client_data(up)
            r.upstream_data(down)
    except RemoteProtocolError:
        pass


packet_types = st.sampled_from(
    [sftp.OPEN, sftp.CLOSE, sftp.READ, sftp.WRITE, sftp.STAT, sftp.OPENDIR, sftp.READDIR,
     sftp.REMOVE, sftp.RENAME, sftp.EXTENDED, sftp.HANDLE, sftp.DATA, sftp.STATUS, sftp.NAME]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(packet_types, st.integers(0, 3), st.binary(max_size=40)), max_size=20))
def test_well_framed_packets_of_any_content_never_crash_the_core(
    packets: list[tuple[int, int, bytes]],
) -> None:
    r = relay()
    for ptype, rid, body in packets:
        data = pkt(ptype, u32(rid), body)
        try:
            if ptype >= 100:
                r.upstream_data(data)
            else:
                r.client_data(data)
        except RemoteProtocolError:
            r = relay()
