"""Bytes that are not UTF-8 in what a client sends (a command, a file name) are recorded
faithfully and never take the trail down: the audit trail's canonical form is UTF-8 JSON."""

from __future__ import annotations

import subprocess
import uuid

from jitctl.testing.broker import BrokerProcess

from .conftest import Trail, Tunnel, payloads


def test_a_command_that_is_not_utf8_runs_and_is_recorded_escaped(
    tunnels: dict[str, Tunnel], trail: Trail, broker: BrokerProcess
) -> None:
    marker = uuid.uuid4().hex
    tunnel = tunnels["web"]
    command = b"echo " + marker.encode() + b"-\xff\xfe-end"
    result = subprocess.run(
        ["ssh", "-F", tunnel.config, tunnel.host, command],
        capture_output=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == marker.encode() + b"-\xff\xfe-end\n"
    session = trail.session_of("ssh.exec", lambda p: marker in p["command"])
    (exec_,) = payloads(session, "ssh.exec")
    assert exec_["command"] == f"echo {marker}-\\xff\\xfe-end"
    verify = broker.jitctl("audit", "verify", "--state-dir", str(broker.state_dir))
    assert verify.returncode == 0, verify.stdout + verify.stderr
