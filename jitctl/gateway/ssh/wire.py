"""The few SSH messages paramiko does not send or parse for us (RFC 4254).

- `pty-req` with the client's terminal modes (paramiko's `get_pty` always sends none, which
  would lose the client's erase character and the like) — §6.2;
- `exit-signal` to the client, and parsing it from the host (paramiko's client ignores it and
  reports exit status -1) — §6.10;
- a Transport subclass whose channel requests go through `_channel_request` first, which also
  runs a channel's `jitctl_after_request` action once paramiko has sent the reply.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import paramiko
from paramiko.common import MSG_CHANNEL_REQUEST, cMSG_CHANNEL_REQUEST
from paramiko.message import Message

# Ciphers: AES-GCM first (one pass, no separate MAC: the cheapest paramiko offers), then CTR.
CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
    "aes192-ctr",
)


def _channel_request(chan: Any, m: Message) -> None:
    start = m.packet.tell()
    key = m.get_text()
    if key == "exit-signal" and chan.transport is not None and not chan.transport.server_mode:
        m.get_boolean()  # want_reply (always false for exit-signal)
        name = m.get_text()
        chan.jitctl_exit_signal = name
        chan.exit_status = -1
        chan.status_event.set()
        return
    m.packet.seek(start)
    paramiko.Channel._handle_request(chan, m)  # decides and sends the reply
    action = getattr(chan, "jitctl_after_request", None)
    if action is not None:  # what the request started: only now, after the reply went out
        chan.jitctl_after_request = None
        threading.Thread(target=action, name="ssh-after-request", daemon=True).start()


class GatewayTransport(paramiko.Transport):  # type: ignore[misc]
    """paramiko's Transport with the channel requests above understood."""

    _channel_handler_table: ClassVar[dict[int, Any]] = {
        **paramiko.Transport._channel_handler_table,
        MSG_CHANNEL_REQUEST: _channel_request,
    }

    def __init__(self, sock: Any, **kwargs: Any) -> None:
        super().__init__(sock, **kwargs)
        options = self.get_security_options()
        options.ciphers = tuple(c for c in CIPHERS if c in options.ciphers) + tuple(
            c for c in options.ciphers if c not in CIPHERS and "cbc" not in c
        )


def request_pty(
    chan: Any, term: bytes, width: int, height: int, width_px: int, height_px: int, modes: bytes
) -> None:
    """`pty-req` with the modes as the client sent them; raises SSHException if refused."""
    m = Message()
    m.add_byte(cMSG_CHANNEL_REQUEST)
    m.add_int(chan.remote_chanid)
    m.add_string("pty-req")
    m.add_boolean(True)
    m.add_string(term)
    m.add_int(width)
    m.add_int(height)
    m.add_int(width_px)
    m.add_int(height_px)
    m.add_string(modes)
    chan._event_pending()
    chan.transport._send_user_message(m)
    chan._wait_for_event()


def send_exit_signal(chan: Any, name: str, message: str = "") -> None:
    m = Message()
    m.add_byte(cMSG_CHANNEL_REQUEST)
    m.add_int(chan.remote_chanid)
    m.add_string("exit-signal")
    m.add_boolean(False)
    m.add_string(name)
    m.add_boolean(False)  # core dumped
    m.add_string(message)
    m.add_string("")
    chan.transport._send_user_message(m)
