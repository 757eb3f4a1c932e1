"""Exec requests: decided, recorded, then run on the host — or held for approval first.

The decision comes from the policy (jitctl_ssh.policy; `scp -f` paths are checked as
downloads) and is recorded (`ssh.exec`) durably before the host sees anything. A refused
command is answered on the channel (server.py, `Connection.refuse`). An `approve` decision is
held: the request is accepted, stderr says what the command waits for, and a thread files the
approval request and waits (`ShellIO.hold`); the outcome is recorded (`ssh.exec.decided`)
before exactly the held command runs, or is refused; once the host has accepted the approved
command, `ShellIO.released` records `approval.executed`. `scp -t`/`scp -f` run through the scp
core, anything else through the channel recorder.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import jitctl_ssh.events as events
from jitctl.approvals.models import new_id
from jitctl.gateway.ssh.relay import RecordingFailed
from jitctl.gateway.ssh.server import ChannelState, Connection
from jitctl.plugin import Hold
from jitctl_ssh.policy import Decision
from jitctl_ssh.scp import ScpRelay, parse_scp_command

log = logging.getLogger("jitctl.gateway.ssh")


def exec_request(conn: Connection, channel: Any, command_bytes: bytes) -> bool:
    state = conn.state(channel)
    if state is None or state.started:
        return False
    state.started = True
    command = command_bytes.decode("utf-8", "surrogateescape")
    decision, analysis = conn.policy.check_command(command)
    scp = None
    if decision.action != "deny" and len(analysis.commands) == 1 and not analysis.opaque:
        scp = parse_scp_command(analysis.commands[0])
    if scp is not None and scp.mode == "download":
        home = conn.home() if conn.policy.has_path_rules else ""
        for path in scp.paths:
            full = path if path.startswith("/") or not home else f"{home}/{path}"
            checked = conn.policy.check_file("read", full)
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
        conn.record(record, wait=True)
    except RecordingFailed:
        return False
    if held is not None:
        conn.after_reply(
            channel, lambda: _await_approval(conn, channel, state, command_bytes, held, scp)
        )
        return True
    if not decision.allowed:
        conn.after_reply(channel, lambda: conn.refuse(channel, state, decision))
        return True
    if not _run_on_host(conn, channel, state, command_bytes):
        return False
    conn.after_reply(channel, lambda: _start_exec_relay(conn, channel, state, scp))
    return True


def _run_on_host(conn: Connection, channel: Any, state: ChannelState, command_bytes: bytes) -> bool:
    try:
        state.upstream.exec_command(command_bytes)
    except Exception as exc:
        conn.record_quietly(events.channel_error(channel.get_id(), f"host: {exc}"))
        return False
    return True


def _start_exec_relay(conn: Connection, channel: Any, state: ChannelState, scp: Any) -> None:
    if scp is None:
        conn.start_session_relay(channel, state)()
        return
    absolute = scp.paths[0].startswith("/")
    home = conn.home() if (conn.policy.has_path_rules or not absolute) else ""
    core = ScpRelay(channel.get_id(), scp, conn.policy, home=home)
    conn.relay(channel, state, core, stderr=True)


def _await_approval(
    conn: Connection, channel: Any, state: ChannelState, command_bytes: bytes, held: Hold, scp: Any
) -> None:
    """An exec held for approval (after the request's reply): say so on stderr, wait for
    the decision, then run exactly the held command or refuse it."""
    chanid = channel.get_id()
    reason = str(held.details.get("reason") or "")
    waiting = (
        f"jitctl: {reason}; waiting up to {conn.approval_timeout:g}s for an approval "
        f"(an approver runs: jitctl request approve {held.hold_id})\r\n"
    )
    with contextlib.suppress(Exception):
        channel.sendall_stderr(waiting.encode())
    try:
        review = conn.bridge.run(conn.hold(held)) if conn.hold else None
    except Exception as exc:
        log.warning("approval wait failed", extra={"error": str(exc)})
        review = None
    rule = str(held.details.get("rule") or "")
    if review is None or not review.approved:
        outcome = review.outcome if review is not None else "unavailable"
        if review is not None and review.by:  # who said no, as the Postgres refusal names them
            outcome += f" by {', '.join(review.by)}"
        why = f"not approved ({outcome}" + (
            f": {review.reason})" if review and review.reason else ")"
        )
        decision = Decision("deny", rule, why, wanted="approve")
    else:
        by = ", ".join(review.by) or "an approver"
        decision = Decision("allow", rule, f"approved by {by}")
    try:
        conn.record(events.approved_exec(chanid, held.hold_id, decision), wait=True)
    except RecordingFailed:
        conn.refuse(channel, state, Decision("deny", rule, "audit store unavailable"))
        return
    if not decision.allowed:
        conn.refuse(channel, state, decision)
        return
    if not _run_on_host(conn, channel, state, command_bytes):
        conn.refuse(channel, state, Decision("deny", rule, "the host refused the command"))
        return
    if conn.released is not None:  # the host runs it now: approval.executed, not before
        try:
            conn.bridge.run(conn.released(held))
        except Exception as exc:  # the command runs either way; the trail has ssh.exec.decided
            log.warning("cannot record an approved command's release", extra={"error": str(exc)})
    _start_exec_relay(conn, channel, state, scp)
