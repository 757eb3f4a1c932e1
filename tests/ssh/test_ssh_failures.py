"""When something breaks the ssh gateway fails closed: a lost audit store stops the keystrokes,
a host whose key changed is refused, many sessions at once keep working."""

from __future__ import annotations

import concurrent.futures
import sys
import time
import uuid
from pathlib import Path

import pytest

from jitctl.testing.broker import BrokerProcess
from jitctl.testing.issuer import TokenIssuer
from jitctl.testing.postgres import PostgresServer, postgres_available
from jitctl.testing.sshd import SshdServer

from .conftest import Trail, Tunnel
from .terminal import Terminal

needs_postgres = pytest.mark.skipif(
    postgres_available() is not None, reason=f"no PostgreSQL here: {postgres_available()}"
)


def _config(issuer: TokenIssuer, sshd: SshdServer, store: str = "") -> str:
    broker = f'[broker]\nstore = "{store}"\n' if store else ""
    return (
        f'{broker}[[identity.issuers]]\nissuer = "{issuer.url}"\n'
        f'[[targets]]\nname = "web"\nprotocol = "ssh"\naddress = "{sshd.address}"\n'
        'allow_groups = ["agents"]\n'
        f'credential = {{ user = "{sshd.user}", key_file = "{sshd.client_key}" }}\n'
    )


@needs_postgres
def test_a_lost_audit_store_stops_keystrokes_before_they_reach_the_host(
    token_issuer: TokenIssuer, sshd: SshdServer, tmp_path: Path
) -> None:
    marker = tmp_path / "typed-after-the-store-died"
    with PostgresServer() as store_pg:
        config = _config(token_issuer, sshd, store=store_pg.create_database())
        with BrokerProcess(config, state_dir=tmp_path / "broker") as broker:
            broker.login_with_token(token_issuer.mint(groups=["agents"], lifetime=3600))
            argv = [sys.executable, "-m", "jitctl", "connect", "web", "--", "-tt"]
            with Terminal(argv, env=broker.env) as term:
                term.expect(r"[#$] ")
                term.sendline("echo still-$((1+1))")
                term.expect("still-2")
                store_pg.stop()
                term.sendline(f"touch {marker}")
                term.wait(timeout=20)  # the session is ended, not relayed
    seen = term.output
    assert "audit store unavailable" in seen, seen  # the actor is told why
    time.sleep(0.5)
    assert not marker.exists()
    assert sshd.ssh(f"test -e {marker} && echo present || echo absent").stdout.strip() == "absent"


def test_a_host_key_that_changed_after_first_use_is_refused(
    broker: BrokerProcess, tunnels: dict[str, Tunnel], trail: Trail
) -> None:
    assert tunnels["web"].ssh("true").returncode == 0  # learned (or trusted) by now
    known = broker.state_dir / "ssh_known_hosts"
    original = known.read_text()
    name, _, _ = original.splitlines()[0].split()
    try:
        other = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
        known.write_text(f"{name} ssh-ed25519 {other}\n")
        result = tunnels["web"].ssh("true")
        assert result.returncode == 255
    finally:
        known.write_text(original)
    denied = [r for r in trail.records(kinds=["session.denied"]) if "differs" in str(r.payload)]
    assert denied, "the refusal is in the trail"
    assert tunnels["web"].ssh("true").returncode == 0


def test_many_sessions_at_once_all_work_and_are_all_recorded(
    tunnels: dict[str, Tunnel], trail: Trail
) -> None:
    run = uuid.uuid4().hex[:8]

    def one(n: int) -> str:
        return tunnels["web"].ssh(f"echo {run}-{n}", timeout=60).stdout

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        outputs = list(pool.map(one, range(12)))
    assert outputs == [f"{run}-{n}\n" for n in range(12)]
    for n in range(12):
        trail.session_of("ssh.exec", lambda p, n=n: p["command"] == f"echo {run}-{n}")


def test_a_session_is_cut_at_max_session_and_says_so(
    tunnels: dict[str, Tunnel], trail: Trail
) -> None:
    command = f"sleep 20; echo never-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    result = tunnels["short"].ssh(command)
    assert time.monotonic() - started < 10
    assert "never" not in result.stdout and result.returncode != 0
    session = trail.session_of("ssh.exec", lambda p: p["command"] == command)
    end = next(r for r in session if r.kind == "session.end")
    assert "maximum length" in end.payload["reason"]


def test_only_locale_variables_reach_the_host(tunnels: dict[str, Tunnel], trail: Trail) -> None:
    import os
    import subprocess

    env = {**os.environ, "LC_JITCTL_TEST": "kept", "BASH_ENV": "/tmp/evil"}
    result = subprocess.run(
        ["ssh", "-F", tunnels["web"].config, "-o", "SendEnv=LC_JITCTL_TEST BASH_ENV",
         tunnels["web"].host, "echo ${LC_JITCTL_TEST:-none} ${BASH_ENV:-none}"],
        capture_output=True, text=True, timeout=30, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.stdout == "kept none\n"
    session = trail.session_of("ssh.exec", lambda p: "LC_JITCTL_TEST:-none" in p["command"])
    env_names = next(r.payload["env"] for r in session if r.kind == "ssh.exec")
    assert "LC_JITCTL_TEST" in env_names and "BASH_ENV (dropped)" in env_names
