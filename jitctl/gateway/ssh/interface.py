"""paramiko's server callbacks (`ServerInterface`), each handed to the connection's handlers.

Authentication: the tunnel has already verified the caller's OIDC identity, so the client's
`none` (or any public key) is accepted; the user name it gives is only recorded.
"""

from __future__ import annotations

from typing import Any

import paramiko

from jitctl.gateway.ssh import execs, forwarding
from jitctl.gateway.ssh.server import AUTH_SUCCESSFUL, Connection


class GatewayServer(paramiko.ServerInterface):  # type: ignore[misc]
    """paramiko's server callbacks, each handed to the `Connection`."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def get_allowed_auths(self, username: str) -> str:
        return "none,publickey"

    def check_auth_none(self, username: str) -> int:
        self.conn.authenticated(username)
        return AUTH_SUCCESSFUL

    def check_auth_publickey(self, username: str, key: Any) -> int:
        self.conn.authenticated(username)
        return AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return self.conn.open_channel(kind, chanid)

    def check_channel_direct_tcpip_request(
        self, chanid: int, origin: tuple[str, int], destination: tuple[str, int]
    ) -> int:
        return forwarding.open_direct(self.conn, chanid, origin, destination)

    def check_channel_pty_request(
        self, channel: Any, term: bytes, width: int, height: int, wpx: int, hpx: int, modes: bytes
    ) -> bool:
        return self.conn.pty(channel, term, width, height, wpx, hpx, modes)

    def check_channel_env_request(self, channel: Any, name: bytes, value: bytes) -> bool:
        return self.conn.env(channel, name, value)

    def check_channel_shell_request(self, channel: Any) -> bool:
        return self.conn.shell(channel)

    def check_channel_exec_request(self, channel: Any, command: bytes) -> bool:
        return execs.exec_request(self.conn, channel, command)

    def check_channel_subsystem_request(self, channel: Any, name: str) -> bool:
        return self.conn.subsystem(channel, name)

    def check_channel_window_change_request(
        self, channel: Any, width: int, height: int, wpx: int, hpx: int
    ) -> bool:
        return self.conn.window_change(channel, width, height, wpx, hpx)

    def check_channel_x11_request(self, channel: Any, *args: Any) -> bool:
        return forwarding.refuse_forward(self.conn, "x11", channel)

    def check_channel_forward_agent_request(self, channel: Any) -> bool:
        return forwarding.refuse_forward(self.conn, "agent", channel)

    def check_port_forward_request(self, address: str, port: int) -> int | bool:
        return forwarding.remote_forward(self.conn, address, port)

    def cancel_port_forward_request(self, address: str, port: int) -> None:
        forwarding.cancel_remote_forward(self.conn, address, port)

    def check_global_request(self, kind: str, msg: Any) -> bool:
        if kind.startswith(("streamlocal-forward", "cancel-streamlocal-forward")):
            return forwarding.refuse_forward(self.conn, kind)
        return False
