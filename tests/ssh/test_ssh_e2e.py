"""OpenSSH clients through `jitctl connect` and the broker to a real sshd: it works, it is
recorded, and what policy refuses never reaches the host."""

from __future__ import annotations

import hashlib
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from jitctl.errors import ExitCode
from jitctl.testing.broker import BrokerProcess
from jitctl.testing.sshd import SshdServer

from .conftest import Trail, Tunnel, dumps, kinds, payloads
from .terminal import Terminal


def test_a_command_runs_and_its_output_and_status_are_recorded(
    tunnels: dict[str, Tunnel], trail: Trail
) -> None:
    marker = uuid.uuid4().hex
    result = tunnels["web"].ssh(f"echo {marker}; echo oops >&2; exit 3")
    assert result.returncode == 3
    assert result.stdout == f"{marker}\n" and result.stderr == "oops\n"
    session = trail.session_of("ssh.exec", lambda p: marker in p["command"])
    exec_ = payloads(session, "ssh.exec")[0]
    assert exec_["decision"] == "allow" and exec_["programs"] == ["echo", "echo", "exit"]
    streams = {(r.payload["stream"], r.data) for r in session if r.kind == "ssh.data"}
    assert ("stdout", f"{marker}\n".encode()) in streams
    assert ("stderr", b"oops\n") in streams
    assert payloads(session, "ssh.exit")[0]["status"] == 3
    start = next(r for r in session if r.kind == "session.start")
    assert start.actor is not None and start.actor.subject == "agent-7"


def test_a_denied_command_never_runs_on_the_host(
    tunnels: dict[str, Tunnel], trail: Trail, sshd: SshdServer, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    for line in (
        f"touch {marker}; rm -rf /nonexistent",
        f"sh -c 'touch {marker} && rm x'",
        f"echo $(rm x) > {marker}",
        f"sudo -n rm x || touch {marker}",
    ):
        result = tunnels["web"].ssh(line)
        assert result.returncode == 126, result.stderr
        assert "jitctl: denied" in result.stderr and "ask the on-call engineer" in result.stderr
        session = trail.session_of("ssh.exec", lambda p, line=line: p["command"] == line)
        decision = payloads(session, "ssh.exec")[0]
        assert decision["decision"] == "deny" and decision["rule"] == "no-rm"
        assert "ssh.data" not in kinds(session)
    check = sshd.ssh(f"test -e {marker} && echo present || echo absent")
    assert check.stdout.strip() == "absent"


def test_an_interactive_shell_through_jitctl_connect_is_recorded_with_timing_and_size(
    broker: BrokerProcess, trail: Trail
) -> None:
    marker = uuid.uuid4().hex[:12]
    argv = [sys.executable, "-m", "jitctl", "connect", "web", "--", "-tt"]
    with Terminal(argv, env=broker.env, rows=30, cols=100) as term:
        term.expect(r"[#$] ")
        term.sendline(f"echo {marker}-$((6*7)); stty size")
        term.expect(f"{marker}-42")
        term.expect("30 100")
        term.resize(40, 120)
        term.sendline("sleep 0.3; stty size")
        term.expect("40 120")
        term.expect(r"[#$] ")
        term.sendline("exit 7")
        assert term.wait() == 7
    session = trail.session_of("term.input", lambda p: True)
    typed = b"".join(r.data for r in session if r.kind == "term.input")
    shown = b"".join(r.data for r in session if r.kind == "term.output")
    assert f"echo {marker}".encode() in typed and f"{marker}-42".encode() in shown
    sizes = [(p["cols"], p["rows"]) for p in payloads(session, "term.resize")]
    assert sizes[0] == (100, 30) and (120, 40) in sizes
    assert payloads(session, "ssh.shell")[0]["pty"]["term"]
    assert payloads(session, "term.exit") == [{"channel": 0, "status": 7}]
    times = [r.time_us for r in session if r.kind.startswith("term.")]
    assert times == sorted(times) and times[-1] - times[0] > 300_000  # the sleep is in the timing
    replay = broker.jitctl(
        "replay", session[0].session_id, "--print", "--state-dir", str(broker.state_dir)
    )
    assert replay.returncode == 0, replay.stderr
    assert f"{marker}-42" in replay.stdout


@pytest.mark.parametrize("legacy", [False, True], ids=["scp-sftp", "scp-legacy"])
def test_scp_both_ways_is_recorded_with_sizes_and_hashes(
    tunnels: dict[str, Tunnel], trail: Trail, tmp_path: Path, legacy: bool
) -> None:
    data = os.urandom(3_000_000)
    digest = hashlib.sha256(data).hexdigest()
    local, back = tmp_path / "up.bin", tmp_path / "down.bin"
    local.write_bytes(data)
    remote = f"{tmp_path}/remote-{uuid.uuid4().hex}.bin"
    flags = ["-O"] if legacy else []
    web = tunnels["web"]
    up = web.run("scp", *flags, str(local), f"HOST:{remote}")
    assert up.returncode == 0, up.stderr
    assert Path(remote).read_bytes() == data  # the host is this machine
    down = web.run("scp", *flags, f"HOST:{remote}", str(back))
    assert down.returncode == 0, down.stderr
    assert back.read_bytes() == data
    kind = "ssh.scp" if legacy else "ssh.sftp"
    for op in ("upload", "download"):
        session = trail.session_of(
            kind, lambda p, op=op: p.get("op") == op and p.get("path") == remote
        )
        summary = next(p for p in payloads(session, kind) if p.get("op") == op)
        assert summary["sha256"] == digest and summary["size"] == len(data), dumps(session)


def test_sftp_put_get_ls_and_rm_are_each_recorded(
    tunnels: dict[str, Tunnel], trail: Trail, tmp_path: Path
) -> None:
    (tmp_path / "a.txt").write_text("alpha\n")
    remote_dir = tmp_path / f"remote-{uuid.uuid4().hex}"
    remote_dir.mkdir()
    batch = tmp_path / "batch"
    batch.write_text(
        f"put {tmp_path}/a.txt {remote_dir}/a.txt\n"
        f"ls {remote_dir}\n"
        f"get {remote_dir}/a.txt {tmp_path}/b.txt\n"
        f"rename {remote_dir}/a.txt {remote_dir}/c.txt\n"
        f"rm {remote_dir}/c.txt\n"
    )
    result = tunnels["web"].run("sftp", "-b", str(batch), "HOST")
    assert result.returncode == 0, result.stderr
    assert "a.txt" in result.stdout
    assert (tmp_path / "b.txt").read_text() == "alpha\n"
    session = trail.session_of(
        "ssh.sftp", lambda p: p.get("op") == "remove" and str(remote_dir) in p.get("path", "")
    )
    ops = [
        (p["op"], p.get("path", "").replace(str(remote_dir), "R"))
        for p in payloads(session, "ssh.sftp")
    ]
    for expected in (("upload", "R/a.txt"), ("list", "R"), ("download", "R/a.txt"),
                     ("rename", "R/a.txt"), ("remove", "R/c.txt")):  # fmt: skip
        assert expected in ops, ops
    assert payloads(session, "ssh.subsystem")[0]["name"] == "sftp"


def test_refused_file_operations_fail_for_the_client_and_touch_nothing(
    tunnels: dict[str, Tunnel], trail: Trail, tmp_path: Path
) -> None:
    denied = tunnels["web"].run("scp", "HOST:/etc/shadow", str(tmp_path / "shadow"))
    assert denied.returncode != 0 and not (tmp_path / "shadow").exists()
    session = trail.session_of(
        "ssh.sftp", lambda p: p.get("path") == "/etc/shadow" and p.get("decision") == "deny"
    )
    assert any(p.get("rule") == "no-shadow" for p in payloads(session, "ssh.sftp"))
    source = tmp_path / "up.txt"
    source.write_text("x")
    target = tmp_path / "never.txt"
    for flags in ([], ["-O"]):
        result = tunnels["locked"].run("scp", *flags, str(source), f"HOST:{target}")
        assert result.returncode != 0
    assert not target.exists()
    locked = tunnels["locked"].run("scp", f"HOST:{source}", str(tmp_path / "copy.txt"))
    assert locked.returncode == 0  # downloads stay allowed there


def test_a_shell_can_be_refused_with_a_reason(tunnels: dict[str, Tunnel], trail: Trail) -> None:
    result = tunnels["locked"].ssh(None, "-tt", input="echo hi\nexit\n")
    assert result.returncode == 126
    assert "interactive shells are off" in result.stdout + result.stderr


def test_forwarding_is_refused_and_recorded_unless_listed(
    tunnels: dict[str, Tunnel], trail: Trail, sshd: SshdServer, echo: object
) -> None:
    web = tunnels["web"]
    stdio = web.ssh(None, "-W", sshd.address)
    assert stdio.returncode == 255 and "prohibited" in stdio.stderr
    remote = web.ssh("true", "-R", "0:127.0.0.1:9", "-o", "ExitOnForwardFailure=yes")
    assert remote.returncode == 255
    records = trail.records(kinds=["ssh.forward"])
    seen = {(r.payload["kind"], r.payload["decision"]) for r in records}
    assert ("direct-tcpip", "deny") in seen and ("tcpip-forward", "deny") in seen
    # the locked target lists the echo server: a forward there works and is recorded
    allowed = tunnels["locked"].ssh(None, "-W", echo.address, input="ping through\n")  # type: ignore[attr-defined]
    assert allowed.stdout == "ping through\n"
    data = [r for r in trail.records(kinds=["ssh.forward.data"]) if b"ping through" in r.data]
    assert data


def test_agent_forwarding_is_refused_and_recorded(
    tunnels: dict[str, Tunnel], trail: Trail, tmp_path: Path
) -> None:
    import subprocess

    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(50):
            if sock.exists():
                break
            import time

            time.sleep(0.05)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        result = subprocess.run(
            ["ssh", "-F", tunnels["web"].config, "-o", "ForwardAgent=yes", tunnels["web"].host,
             "echo $SSH_AUTH_SOCK"],
            capture_output=True, text=True, timeout=30, env=env, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        agent.terminate()
        agent.wait()
    assert result.returncode == 0 and result.stdout.strip() == ""  # no agent on the host
    records = trail.records(kinds=["ssh.forward"])
    assert any(r.payload["kind"] == "agent" and r.payload["decision"] == "deny" for r in records)


def test_secrets_in_output_are_masked_for_the_client_and_the_trail(
    tunnels: dict[str, Tunnel], trail: Trail
) -> None:
    marker = uuid.uuid4().hex[:8]
    result = tunnels["masked"].ssh(f"echo {marker} contact bob@example.com")
    assert result.stdout == f"{marker} contact [EMAIL_ADDRESS]\n"
    session = trail.session_of("ssh.exec", lambda p: marker in p["command"])
    out = [r for r in session if r.kind == "ssh.data" and r.payload["stream"] == "stdout"]
    assert b"bob@example.com" not in b"".join(r.data for r in out)
    assert out[0].payload["masked"] == {"EMAIL_ADDRESS": 1}


def test_a_host_whose_key_does_not_match_the_pin_is_refused(
    broker: BrokerProcess, trail: Trail
) -> None:
    process = broker.jitctl("connect", "impostor", "--", "true")
    assert process.returncode == 255  # ssh: the tunnel closed before the handshake
    assert "host key check failed" in process.stderr
    denied = trail.records(kinds=["session.denied"])
    assert any("host key check failed" in str(r.payload) for r in denied)


def test_connect_with_a_command_leaves_stdout_to_the_command(broker: BrokerProcess) -> None:
    """`jitctl connect web -- CMD > file` gets CMD's output only: no port line in front."""
    marker = uuid.uuid4().hex[:8]
    process = broker.jitctl("connect", "web", "--", f"echo {marker}")
    assert process.returncode == 0, process.stderr
    assert process.stdout == f"{marker}\n"
    assert "opened to web" in process.stderr


def test_connect_no_client_says_how_to_use_the_tunnel(broker: BrokerProcess) -> None:
    with broker.tunnel("web") as tunnel:
        address = tunnel.address
        config = Path(address["ssh_config"]).read_text()
        assert "StrictHostKeyChecking yes" in config and f"Port {address['port']}" in config
        assert address["ssh_host"] == "jitctl.web"
        known = (broker.home / "ssh" / "known_hosts").read_text()
        assert any(line.startswith("jitctl.web ssh-ed25519 ") for line in known.splitlines())
    assert f"ssh -F {address['ssh_config']} jitctl.web" in tunnel.stderr
    assert not Path(address["ssh_config"]).exists()  # removed with the tunnel (Ctrl-C)


def test_the_trail_verifies_after_the_ssh_sessions(broker: BrokerProcess) -> None:
    result = broker.jitctl("audit", "verify", "--state-dir", str(broker.state_dir))
    assert result.returncode == ExitCode.OK, result.stdout + result.stderr


def _approver(broker: BrokerProcess, token_issuer: Any, tmp_path: Path) -> dict[str, str]:
    """An environment for the CLI logged in as bob (group dba), in his own JITCTL_HOME."""
    home = tmp_path / "bob-home"
    home.mkdir()
    token = home / "token"
    token.write_text(token_issuer.mint(sub="bob", groups=["dba"], lifetime=3600))
    env = {**broker.env, "JITCTL_HOME": str(home)}
    assert broker.jitctl("login", "--token-file", str(token), env=env).returncode == 0
    return env


@pytest.mark.parametrize("verdict", ["approve", "deny"])
def test_a_held_command_runs_only_once_an_approver_says_yes(
    broker: BrokerProcess,
    tunnels: dict[str, Tunnel],
    trail: Trail,
    token_issuer: Any,
    tmp_path: Path,
    verdict: str,
) -> None:
    import re
    import subprocess

    marker = tmp_path / "touched"
    tunnel = tunnels["guarded"]
    run = subprocess.Popen(
        ["ssh", "-F", tunnel.config, tunnel.host, f"touch {marker}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert run.stderr is not None
        line = run.stderr.readline()
        found = re.search(r"jitctl request approve ([0-9a-f]{12})", line)
        assert found, line
        assert not marker.exists()  # held: nothing ran yet
        bob = _approver(broker, token_issuer, tmp_path)
        answer = broker.jitctl("request", verdict, found.group(1), "--reason", "ok", env=bob)
        assert answer.returncode == 0, answer.stderr
        _, err = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    session = trail.session_of("ssh.exec", lambda p: p["command"] == f"touch {marker}")
    held = payloads(session, "ssh.exec")[0]
    decided = payloads(session, "ssh.exec.decided")[0]
    assert held["decision"] == "approve" and held["hold"] == found.group(1)
    # approval.executed says the host got the command: after the decision that let it run.
    steps = [r.kind for r in session if r.kind in ("ssh.exec.decided", "approval.executed")]
    if verdict == "approve":
        assert run.returncode == 0 and marker.exists()
        assert decided["decision"] == "allow" and "bob" in decided["reason"]
        assert steps == ["ssh.exec.decided", "approval.executed"]
    else:
        assert run.returncode == 126 and not marker.exists()
        assert re.search(r"not approved \(denied by \S*bob\S*: ok\)", err), err
        assert decided["decision"] == "deny"
        assert steps == ["ssh.exec.decided"]


def test_jitctl_exec_gives_the_agent_an_ssh_config_with_the_gateway_key_pinned(
    broker: BrokerProcess,
) -> None:
    script = 'ssh -F "$WEB_SSH_CONFIG" "$WEB_SSH_HOST" echo hello-from-exec'
    result = broker.jitctl("exec", "-t", "web", "--agent", "ssh-bot", "--", "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello-from-exec"
