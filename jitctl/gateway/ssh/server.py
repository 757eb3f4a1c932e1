"""The client-facing SSH server: each request decided by the policy, recorded, then relayed.

One `Connection` per tunnel: the client's SSH (paramiko server transport, gateway host key)
on one side, the broker's SSH to the host (`upstream.py`) on the other. Every client channel
gets its own host channel; its requests are forwarded as they come (pty with the client's
modes, env, window changes) and the one that starts something (shell, exec, subsystem) is
decided first (jitctl_ssh.policy), recorded durably, and only then sent to the host.

- paramiko's callbacks are in interface.py; exec requests (and approvals) in execs.py;
  forwarding in forwarding.py. This module keeps the channels, their requests and refusals.
- A refused shell or exec is accepted at the SSH level and answered on the channel: a line on
  stderr ("jitctl: denied ...") and exit status 126, so `ssh host cmd` prints why and fails;
  a refused subsystem or forwarding request is refused at the SSH level.
- Anything started on a channel (a relay, a refusal) begins only after paramiko has sent the
  request's reply (`wire.GatewayTransport` runs `jitctl_after_request`), so the client never
  sees data before the answer to its request.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import paramiko

import jitctl_ssh.events as events
from jitctl.gateway.ssh.relay import Bridge, ChannelRelay, RecordingFailed
from jitctl.gateway.ssh.upstream import Upstream
from jitctl.gateway.ssh.wire import request_pty
from jitctl.plugin import Record
from jitctl_ssh.channel import ChannelRecorder
from jitctl_ssh.policy import Decision, SshPolicy
from jitctl_ssh.sftp import SftpRelay
from jitctl_ssh.streammask import Mask

log = logging.getLogger("jitctl.gateway.ssh")

DENIED_STATUS = 126
# paramiko is untyped: its constants, typed once here
OPEN_SUCCEEDED: int = paramiko.OPEN_SUCCEEDED
OPEN_PROHIBITED: int = paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
OPEN_CONNECT_FAILED: int = paramiko.OPEN_FAILED_CONNECT_FAILED
AUTH_SUCCESSFUL: int = paramiko.AUTH_SUCCESSFUL
OPEN_TIMEOUT = 15.0
ENV_PASSED = frozenset({"LANG", "LANGUAGE", "TZ", "COLORTERM", "TERM_PROGRAM"})


@dataclass
class ChannelState:
    kind: str
    upstream: Any = None  # the host-side paramiko Channel
    pty: dict[str, Any] | None = None
    env: list[str] = field(default_factory=list)
    started: bool = False
    relay: ChannelRelay | None = None
    forward: tuple[str, int, str] | None = None  # direct-tcpip: host, port, origin


def _env_passes(name: str) -> bool:
    """Only locale and display variables reach the host: others (BASH_ENV, LD_PRELOAD, ...)
    could change what an allowed command does, if the host's sshd accepted them."""
    return name in ENV_PASSED or name.startswith("LC_")


class Connection:
    def __init__(
        self,
        bridge: Bridge,
        policy: SshPolicy,
        upstream: Upstream,
        *,
        chunk_size: int,
        mask: Mask | None,
        hold: Any = None,
        released: Any = None,
        approval_timeout: float = 0.0,
    ) -> None:
        self.hold = hold  # ShellIO.hold, when the broker offers approvals
        self.released = released  # ShellIO.released: an approved command went to the host
        self.approval_timeout = approval_timeout
        self.bridge = bridge
        self.policy = policy
        self.upstream = upstream
        self.chunk_size = chunk_size
        self.mask = mask
        self.client_user = ""
        self.transport: Any = None  # the client-facing (server) transport, set by the shell
        self.channels: dict[int, ChannelState] = {}
        self.lock = threading.Lock()
        self._home: str | None = None
        self.closed = threading.Event()

    # -- helpers ----------------------------------------------------------------------------------

    def authenticated(self, username: str) -> None:
        if self.client_user:
            return
        self.client_user = username or "-"
        version = str(getattr(self.transport, "remote_version", "") or "")
        up = self.upstream
        self.record_quietly(
            events.connection(up.user, up.host_key, up.verdict.how, version, username)
        )

    def record(self, record: Any, wait: bool = False) -> None:
        future = self.bridge.record(record)
        if wait:
            self.bridge.wait(future)

    def home(self) -> str:
        """The upstream user's home directory (relative sftp/scp paths start there)."""
        if self._home is None:
            try:
                sftp = paramiko.SFTPClient.from_transport(self.upstream.transport)
                try:
                    self._home = str(sftp.normalize("."))
                finally:
                    sftp.close()
            except Exception:
                self._home = ""
        return self._home

    def state(self, channel: Any) -> ChannelState | None:
        with self.lock:
            return self.channels.get(channel.get_id())

    def after_reply(self, channel: Any, action: Any) -> None:
        channel.jitctl_after_request = action

    # -- channels ---------------------------------------------------------------------------------

    def open_channel(self, kind: str, chanid: int) -> int:
        if kind != "session":
            decision = Decision("deny", "ssh.forward", f"{kind} channels are not relayed")
            self.record_quietly(events.forward(kind, decision, channel=chanid))
            return OPEN_PROHIBITED
        try:
            upstream = self.upstream.transport.open_session(timeout=OPEN_TIMEOUT)
        except Exception as exc:
            log.warning("host refused a session channel", extra={"error": str(exc)})
            return OPEN_CONNECT_FAILED
        with self.lock:
            self.channels[chanid] = ChannelState("session", upstream)
        return OPEN_SUCCEEDED

    def relay(
        self,
        channel: Any,
        state: ChannelState,
        core: Any,
        *,
        stderr: bool,
        exit_status: bool = True,
    ) -> None:
        relay = ChannelRelay(
            self.bridge,
            channel,
            state.upstream,
            core,
            stderr=stderr,
            exit_status=exit_status,
            on_done=lambda r: self.forget(r.channel),
        )
        state.relay = relay
        relay.start()

    def forget(self, chanid: int) -> None:
        with self.lock:
            self.channels.pop(chanid, None)

    def record_quietly(self, record: Any) -> None:
        with contextlib.suppress(RecordingFailed):
            self.record(record)

    # -- session channel requests ---------------------------------------------------------------

    def pty(
        self, channel: Any, term: bytes, cols: int, rows: int, wpx: int, hpx: int, modes: bytes
    ) -> bool:
        state = self.state(channel)
        if state is None or state.started:
            return False
        try:
            request_pty(state.upstream, term, cols, rows, wpx, hpx, modes)
        except Exception:
            return False
        state.pty = {
            "term": term.decode("ascii", "replace")[:64],
            "cols": cols,
            "rows": rows,
        }
        if wpx or hpx:
            state.pty.update(width_px=wpx, height_px=hpx)
        return True

    def env(self, channel: Any, name: bytes, value: bytes) -> bool:
        state = self.state(channel)
        if state is None or state.started:
            return False
        text = name.decode("utf-8", "replace")[:100]  # names only: values may be secret
        if not _env_passes(text):
            state.env.append(f"{text} (dropped)")
            return False
        try:
            state.upstream.set_environment_variable(name, value)
        except Exception:
            return False
        state.env.append(text)
        return True

    def window_change(self, channel: Any, cols: int, rows: int, wpx: int, hpx: int) -> bool:
        state = self.state(channel)
        if state is None:
            return False
        if state.pty is not None:
            state.pty.update(cols=cols, rows=rows)
        try:
            state.upstream.resize_pty(cols, rows, wpx, hpx)
        except Exception:
            return False
        relay = state.relay
        if relay is not None and isinstance(relay.core, ChannelRecorder):
            relay.call(relay.core.resize, cols, rows, wpx, hpx)
        return True

    def shell(self, channel: Any) -> bool:
        state = self.state(channel)
        if state is None or state.started:
            return False
        state.started = True
        decision = self.policy.check_shell()
        try:
            self.record(events.shell(channel.get_id(), decision, state.pty, state.env), wait=True)
        except RecordingFailed:
            return False
        if not decision.allowed:
            self.after_reply(channel, lambda: self.refuse(channel, state, decision))
            return True
        try:
            state.upstream.invoke_shell()
        except Exception as exc:
            self.record_quietly(events.channel_error(channel.get_id(), f"host: {exc}"))
            return False
        self.after_reply(channel, self.start_session_relay(channel, state))
        return True

    def subsystem(self, channel: Any, name: str) -> bool:
        state = self.state(channel)
        if state is None or state.started:
            return False
        state.started = True
        decision = self.policy.check_subsystem(name)
        home = self.home() if decision.allowed else ""
        try:
            self.record(events.subsystem(channel.get_id(), name, decision, home), wait=True)
        except RecordingFailed:
            return False
        if not decision.allowed:
            return False
        try:
            state.upstream.invoke_subsystem(name)
        except Exception as exc:
            self.record_quietly(events.channel_error(channel.get_id(), f"host: {exc}"))
            return False
        core = SftpRelay(channel.get_id(), self.policy, home=home)
        self.after_reply(channel, lambda: self.relay(channel, state, core, stderr=True))
        return True

    def start_session_relay(self, channel: Any, state: ChannelState) -> Any:
        """What starts recording a shell or command channel (run it after the reply)."""
        pty = state.pty is not None
        core = ChannelRecorder(
            channel.get_id(), pty=pty, chunk_size=self.chunk_size, mask=self.mask
        )

        def start() -> None:
            if state.pty is not None:  # the first term.resize: the replay's screen size
                pty_info = state.pty
                with contextlib.suppress(RecordingFailed):
                    for command in core.resize(
                        pty_info["cols"], pty_info["rows"], term=pty_info["term"]
                    ):
                        if isinstance(command, Record):
                            self.bridge.record(command)
            self.relay(channel, state, core, stderr=not pty)

        return start

    def refuse(self, channel: Any, state: ChannelState, decision: Decision) -> None:
        try:
            channel.sendall_stderr(f"jitctl: denied: {decision.reason}\r\n".encode())
            channel.send_exit_status(DENIED_STATUS)
            channel.shutdown_write()
        except Exception:
            pass
        finally:
            channel.close()
            with contextlib.suppress(Exception):
                state.upstream.close()
            self.forget(channel.get_id())

    def close(self) -> None:
        self.closed.set()
        with self.lock:
            states = list(self.channels.values())
            self.channels.clear()
        for state in states:
            if state.relay is not None:
                state.relay.finish()
            elif state.upstream is not None:
                with contextlib.suppress(Exception):
                    state.upstream.close()
