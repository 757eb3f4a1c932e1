"""The client-facing SSH server: each request decided by the policy, recorded, then relayed.

One `Connection` per tunnel: the client's SSH (paramiko server transport, gateway host key)
on one side, the broker's SSH to the host (`upstream.py`) on the other. Every client channel
gets its own host channel; its requests are forwarded as they come (pty with the client's
modes, env, window changes) and the one that starts something (shell, exec, subsystem) is
decided first (jitctl_ssh.policy), recorded durably, and only then sent to the host.

- Authentication: the tunnel has already verified the caller's OIDC identity, so the client's
  `none` (or any public key) is accepted and the user name it gives is only recorded.
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
from jitctl.approvals.models import new_id
from jitctl.gateway.ssh.relay import Bridge, ChannelRelay, RecordingFailed
from jitctl.gateway.ssh.upstream import Upstream
from jitctl.gateway.ssh.wire import request_pty
from jitctl.plugin import Hold, Record
from jitctl_ssh.channel import ChannelRecorder
from jitctl_ssh.policy import Decision, SshPolicy
from jitctl_ssh.scp import ScpRelay, parse_scp_command
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
FORWARD_DATA_KIND = "ssh.forward.data"
ENV_PASSED = frozenset({"LANG", "LANGUAGE", "TZ", "COLORTERM", "TERM_PROGRAM"})


@dataclass
class _Chan:
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
        approval_timeout: float = 0.0,
    ) -> None:
        self.hold = hold  # ShellIO.hold, when the broker offers approvals
        self.approval_timeout = approval_timeout
        self.bridge = bridge
        self.policy = policy
        self.upstream = upstream
        self.chunk_size = chunk_size
        self.mask = mask
        self.client_user = ""
        self.transport: Any = None  # the client-facing (server) transport, set by the shell
        self.channels: dict[int, _Chan] = {}
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
        self._record_quietly(
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

    def _state(self, channel: Any) -> _Chan | None:
        with self.lock:
            return self.channels.get(channel.get_id())

    def _after_reply(self, channel: Any, action: Any) -> None:
        channel.jitctl_after_request = action

    # -- channels ---------------------------------------------------------------------------------

    def open_channel(self, kind: str, chanid: int) -> int:
        if kind != "session":
            decision = Decision("deny", "ssh.forward", f"{kind} channels are not relayed")
            self._record_quietly(events.forward(kind, decision, channel=chanid))
            return OPEN_PROHIBITED
        try:
            upstream = self.upstream.transport.open_session(timeout=OPEN_TIMEOUT)
        except Exception as exc:
            log.warning("host refused a session channel", extra={"error": str(exc)})
            return OPEN_CONNECT_FAILED
        with self.lock:
            self.channels[chanid] = _Chan("session", upstream)
        return OPEN_SUCCEEDED

    def open_direct(
        self, chanid: int, origin: tuple[str, int], destination: tuple[str, int]
    ) -> int:
        host, port = str(destination[0]), int(destination[1])
        where = f"{origin[0]}:{origin[1]}"
        decision = self.policy.check_forward("direct-tcpip", host, port)
        try:
            self.record(
                events.forward(
                    "direct-tcpip", decision, host=host, port=port, origin=where, channel=chanid
                ),
                wait=True,
            )
        except RecordingFailed:
            return OPEN_PROHIBITED
        if not decision.allowed:
            return OPEN_PROHIBITED
        try:
            upstream = self.upstream.transport.open_channel(
                "direct-tcpip", (host, port), (str(origin[0]), int(origin[1])), timeout=OPEN_TIMEOUT
            )
        except Exception as exc:
            log.info("forward refused by the host", extra={"error": str(exc)})
            return OPEN_CONNECT_FAILED
        with self.lock:
            self.channels[chanid] = _Chan("direct-tcpip", upstream, forward=(host, port, where))
        return OPEN_SUCCEEDED

    def accepted(self, channel: Any) -> None:
        """A channel the client opened (paramiko's accept queue): forwards start relaying."""
        state = self._state(channel)
        if state is None or state.kind != "direct-tcpip" or state.started:
            return
        state.started = True
        core = ChannelRecorder(
            channel.get_id(), pty=False, chunk_size=self.chunk_size, data_kind=FORWARD_DATA_KIND
        )
        self._relay(channel, state, core, stderr=False, exit_status=False)

    def _relay(
        self, channel: Any, state: _Chan, core: Any, *, stderr: bool, exit_status: bool = True
    ) -> None:
        relay = ChannelRelay(
            self.bridge,
            channel,
            state.upstream,
            core,
            stderr=stderr,
            exit_status=exit_status,
            on_done=lambda r: self._forget(r.channel),
        )
        state.relay = relay
        relay.start()

    def _forget(self, chanid: int) -> None:
        with self.lock:
            self.channels.pop(chanid, None)

    def _record_quietly(self, record: Any) -> None:
        with contextlib.suppress(RecordingFailed):
            self.record(record)

    # -- session channel requests ---------------------------------------------------------------

    def pty(
        self, channel: Any, term: bytes, cols: int, rows: int, wpx: int, hpx: int, modes: bytes
    ) -> bool:
        state = self._state(channel)
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
        state = self._state(channel)
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
        state = self._state(channel)
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
        state = self._state(channel)
        if state is None or state.started:
            return False
        state.started = True
        decision = self.policy.check_shell()
        try:
            self.record(events.shell(channel.get_id(), decision, state.pty, state.env), wait=True)
        except RecordingFailed:
            return False
        if not decision.allowed:
            self._after_reply(channel, lambda: self._refuse(channel, state, decision))
            return True
        try:
            state.upstream.invoke_shell()
        except Exception as exc:
            self._record_quietly(events.channel_error(channel.get_id(), f"host: {exc}"))
            return False
        self._after_reply(channel, self._start_session_relay(channel, state))
        return True

    def exec(self, channel: Any, command_bytes: bytes) -> bool:
        state = self._state(channel)
        if state is None or state.started:
            return False
        state.started = True
        command = command_bytes.decode("utf-8", "surrogateescape")
        decision, analysis = self.policy.check_command(command)
        scp = None
        if decision.action != "deny" and len(analysis.commands) == 1 and not analysis.opaque:
            scp = parse_scp_command(analysis.commands[0])
        if scp is not None and scp.mode == "download":
            home = self.home() if self.policy.has_path_rules else ""
            for path in scp.paths:
                full = path if path.startswith("/") or not home else f"{home}/{path}"
                checked = self.policy.check_file("read", full)
                if not checked.allowed:
                    decision = checked
                    break
        held = None
        if decision.action == "approve":
            held = Hold(new_id(), command, {"kind": "ssh.exec", "rule": decision.rule,
                                             "reason": decision.reason})  # fmt: skip
        record = events.exec_(
            channel.get_id(), command, decision, analysis, state.pty, state.env,
            f"scp {scp.mode}" if scp else "", hold=held.hold_id if held else "",
        )  # fmt: skip
        try:
            self.record(record, wait=True)
        except RecordingFailed:
            return False
        if held is not None:
            self._after_reply(
                channel, lambda: self._await_approval(channel, state, command_bytes, held, scp)
            )
            return True
        if not decision.allowed:
            self._after_reply(channel, lambda: self._refuse(channel, state, decision))
            return True
        if not self._run_on_host(channel, state, command_bytes):
            return False
        self._after_reply(channel, lambda: self._start_exec_relay(channel, state, scp))
        return True

    def _run_on_host(self, channel: Any, state: _Chan, command_bytes: bytes) -> bool:
        try:
            state.upstream.exec_command(command_bytes)
        except Exception as exc:
            self._record_quietly(events.channel_error(channel.get_id(), f"host: {exc}"))
            return False
        return True

    def _start_exec_relay(self, channel: Any, state: _Chan, scp: Any) -> None:
        if scp is None:
            self._start_session_relay(channel, state)()
            return
        absolute = scp.paths[0].startswith("/")
        home = self.home() if (self.policy.has_path_rules or not absolute) else ""
        core = ScpRelay(channel.get_id(), scp, self.policy, home=home)
        self._relay(channel, state, core, stderr=True)

    def _await_approval(
        self, channel: Any, state: _Chan, command_bytes: bytes, held: Hold, scp: Any
    ) -> None:
        """An exec held for approval (after the request's reply): say so on stderr, wait for
        the decision, then run exactly the held command or refuse it."""
        chanid = channel.get_id()
        reason = str(held.details.get("reason") or "")
        waiting = (
            f"jitctl: {reason}; waiting up to {self.approval_timeout:g}s for an approval "
            f"(an approver runs: jitctl request approve {held.hold_id})\r\n"
        )
        with contextlib.suppress(Exception):
            channel.sendall_stderr(waiting.encode())
        try:
            review = self.bridge.run(self.hold(held)) if self.hold else None
        except Exception as exc:
            log.warning("approval wait failed", extra={"error": str(exc)})
            review = None
        rule = str(held.details.get("rule") or "")
        if review is None or not review.approved:
            outcome = review.outcome if review is not None else "unavailable"
            why = f"not approved ({outcome}" + (
                f": {review.reason})" if review and review.reason else ")"
            )
            decision = Decision("deny", rule, why, wanted="approve")
        else:
            by = ", ".join(review.by) or "an approver"
            decision = Decision("allow", rule, f"approved by {by}")
        try:
            self.record(events.approved_exec(chanid, held.hold_id, decision), wait=True)
        except RecordingFailed:
            self._refuse(channel, state, Decision("deny", rule, "audit store unavailable"))
            return
        if not decision.allowed:
            self._refuse(channel, state, decision)
            return
        if not self._run_on_host(channel, state, command_bytes):
            self._refuse(channel, state, Decision("deny", rule, "the host refused the command"))
            return
        self._start_exec_relay(channel, state, scp)

    def subsystem(self, channel: Any, name: str) -> bool:
        state = self._state(channel)
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
            self._record_quietly(events.channel_error(channel.get_id(), f"host: {exc}"))
            return False
        core = SftpRelay(channel.get_id(), self.policy, home=home)
        self._after_reply(channel, lambda: self._relay(channel, state, core, stderr=True))
        return True

    def _start_session_relay(self, channel: Any, state: _Chan) -> Any:
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
            self._relay(channel, state, core, stderr=not pty)

        return start

    def _refuse(self, channel: Any, state: _Chan, decision: Decision) -> None:
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
            self._forget(channel.get_id())

    # -- forwarding requests --------------------------------------------------------------------

    def refuse_forward(self, kind: str, channel: Any = None, **where: Any) -> bool:
        decision = Decision("deny", "ssh.forward", f"{kind} is not relayed by the gateway")
        chanid = channel.get_id() if channel is not None else None
        self._record_quietly(events.forward(kind, decision, channel=chanid, **where))
        return False

    def remote_forward(self, address: str, port: int) -> int | bool:
        decision = self.policy.check_forward("tcpip-forward", address, port)
        try:
            self.record(
                events.forward("tcpip-forward", decision, host=address, port=port), wait=True
            )
        except RecordingFailed:
            return False
        if not decision.allowed:
            return False
        try:
            bound = self.upstream.transport.request_port_forward(
                address, port, handler=self._forwarded
            )
        except Exception as exc:
            log.info("host refused a remote forward", extra={"error": str(exc)})
            return False
        return int(bound)

    def cancel_remote_forward(self, address: str, port: int) -> None:
        with contextlib.suppress(Exception):
            self.upstream.transport.cancel_port_forward(address, port)

    def _forwarded(
        self, upstream_chan: Any, origin: tuple[str, int], server: tuple[str, int]
    ) -> None:
        """The host opened a connection on a remote-forwarded port (upstream transport thread)."""

        def open_to_client() -> None:
            where = f"{origin[0]}:{origin[1]}"
            allowed = Decision("allow", "ssh.forward")
            try:
                self.record(
                    events.forward(
                        "forwarded-tcpip", allowed, host=str(server[0]), port=int(server[1]),
                        origin=where,
                    ),
                    wait=True,
                )  # fmt: skip
                client_chan = self.transport.open_forwarded_tcpip_channel(origin, server)
            except Exception:
                upstream_chan.close()
                return
            state = _Chan("forwarded-tcpip", upstream_chan, started=True)
            with self.lock:
                self.channels[client_chan.get_id()] = state
            core = ChannelRecorder(
                client_chan.get_id(), pty=False, chunk_size=self.chunk_size,
                data_kind=FORWARD_DATA_KIND,
            )  # fmt: skip
            self._relay(client_chan, state, core, stderr=False, exit_status=False)

        threading.Thread(target=open_to_client, name="ssh-forwarded", daemon=True).start()

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
        return self.conn.open_direct(chanid, origin, destination)

    def check_channel_pty_request(
        self, channel: Any, term: bytes, width: int, height: int, wpx: int, hpx: int, modes: bytes
    ) -> bool:
        return self.conn.pty(channel, term, width, height, wpx, hpx, modes)

    def check_channel_env_request(self, channel: Any, name: bytes, value: bytes) -> bool:
        return self.conn.env(channel, name, value)

    def check_channel_shell_request(self, channel: Any) -> bool:
        return self.conn.shell(channel)

    def check_channel_exec_request(self, channel: Any, command: bytes) -> bool:
        return self.conn.exec(channel, command)

    def check_channel_subsystem_request(self, channel: Any, name: str) -> bool:
        return self.conn.subsystem(channel, name)

    def check_channel_window_change_request(
        self, channel: Any, width: int, height: int, wpx: int, hpx: int
    ) -> bool:
        return self.conn.window_change(channel, width, height, wpx, hpx)

    def check_channel_x11_request(self, channel: Any, *args: Any) -> bool:
        return self.conn.refuse_forward("x11", channel)

    def check_channel_forward_agent_request(self, channel: Any) -> bool:
        return self.conn.refuse_forward("agent", channel)

    def check_port_forward_request(self, address: str, port: int) -> int | bool:
        return self.conn.remote_forward(address, port)

    def cancel_port_forward_request(self, address: str, port: int) -> None:
        self.conn.cancel_remote_forward(address, port)

    def check_global_request(self, kind: str, msg: Any) -> bool:
        if kind.startswith(("streamlocal-forward", "cancel-streamlocal-forward")):
            return self.conn.refuse_forward(kind)
        return False
