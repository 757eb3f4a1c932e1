"""`jitctl exec`: an "agent" runs with tunnels, its status and stdout unchanged, signals passed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from jitctl.testing.broker import BrokerProcess
from jitctl.testing.issuer import TokenIssuer
from jitctl.testing.servers import EchoServer

SECRET = "upstream-secret-never-for-the-agent"


@pytest.fixture(scope="module")
def broker(
    token_issuer: TokenIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerProcess]:
    with EchoServer() as echo:
        config = (
            f'[[identity.issuers]]\nissuer = "{token_issuer.url}"\n'
            f'[[targets]]\nname = "echo-svc"\nprotocol = "tcp"\naddress = "{echo.address}"\n'
            'allow_groups = ["agents"]\n'
            'credential = { user = "svc", password_env = "ECHO_SECRET" }\n'
        )
        process = BrokerProcess(
            config, state_dir=tmp_path_factory.mktemp("exec"), env={"ECHO_SECRET": SECRET}
        )
        with process:
            process.login_with_token(token_issuer.mint(sub="ci-job", lifetime=3600))
            yield process


AGENT = textwrap.dedent(
    """
    import json, os, socket, sys
    host, port = os.environ["ECHO_SVC_HOST"], int(os.environ["ECHO_SVC_PORT"])
    with socket.create_connection((host, port)) as sock:
        sock.sendall(b"ping from the agent")
        sock.shutdown(socket.SHUT_WR)
        print(sock.recv(100).decode())
    json.dump(dict(os.environ), open(sys.argv[1], "w"))
    sys.exit(7)
    """
)


def test_agent_output_and_exit_status_come_back_unchanged(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    env_dump = tmp_path / "env.json"
    result = broker.jitctl(
        "exec",
        "-t",
        "echo-svc",
        "--agent",
        "triage-bot",
        "--reason",
        "INC-9",
        "--",
        sys.executable,
        str(script),
        str(env_dump),
    )
    assert result.returncode == 7, result.stderr
    assert result.stdout == "ping from the agent\n"
    child_env = json.loads(env_dump.read_text())
    assert SECRET not in json.dumps(child_env), "an upstream credential reached the agent"
    correlation = child_env["JITCTL_CORRELATION_ID"]

    sessions = json.loads(
        broker.jitctl("sessions", "ls", "--json", "--state-dir", str(broker.state_dir)).stdout
    )
    sessions = sessions["sessions"] if isinstance(sessions, dict) else sessions
    ours = [s for s in sessions if s.get("target") == "echo-svc"]
    assert ours
    shown = json.loads(
        broker.jitctl(
            "sessions", "show", ours[0]["id"], "--json", "--state-dir", str(broker.state_dir)
        ).stdout
    )
    text = json.dumps(shown)
    assert "triage-bot" in text and correlation in text and "INC-9" in text
    assert "agent.py" in text  # the command line is recorded


def test_sigterm_to_jitctl_reaches_the_child(broker: BrokerProcess, tmp_path: Path) -> None:
    marker = tmp_path / "got-sigterm"
    script = tmp_path / "sleeper.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import signal, sys, time
            def bye(*_):
                open({str(marker)!r}, "w").write("yes")
                sys.exit(42)
            signal.signal(signal.SIGTERM, bye)
            print("ready", flush=True)
            time.sleep(60)
            """
        )
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jitctl",
            "exec",
            "-t",
            "echo-svc",
            "--",
            sys.executable,
            str(script),
        ],
        env=broker.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 42
    assert marker.read_text() == "yes"


def test_a_command_that_cannot_start_exits_127_or_126_as_shells_do(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    result = broker.jitctl("exec", "-t", "echo-svc", "--", "no-such-program-xyz")
    assert result.returncode == 127
    assert "error: command not found: no-such-program-xyz" in result.stderr
    not_executable = tmp_path / "script.sh"
    not_executable.write_text("#!/bin/sh\necho hi\n")
    result = broker.jitctl("exec", "-t", "echo-svc", "--", str(not_executable))
    assert result.returncode == 126
    assert "permission denied running" in result.stderr and "Traceback" not in result.stderr


def test_token_file_is_used_for_the_run_without_being_stored(
    broker: BrokerProcess, token_issuer: TokenIssuer, tmp_path: Path
) -> None:
    token_file = tmp_path / "job-token"
    token_file.write_text(token_issuer.mint(sub="k8s-pod", lifetime=600))
    home = tmp_path / "fresh-home"  # no stored login at all
    result = broker.jitctl(
        "exec",
        "--token-file",
        str(token_file),
        "-t",
        "echo-svc",
        "--",
        sys.executable,
        "-c",
        "import os; print(os.environ['ECHO_SVC_PORT'].isdigit())",
        env={"JITCTL_HOME": str(home)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
    assert not (home / "credentials.json").exists()

    # A token the broker rejects: the hint names the file, not `jitctl login` (there is none).
    token_file.write_text(token_issuer.mint(sub="k8s-pod", lifetime=-60))
    refused = broker.jitctl(
        "exec", "--token-file", str(token_file), "-t", "echo-svc", "--", "true",
        env={"JITCTL_HOME": str(home)},
    )  # fmt: skip
    assert refused.returncode == 3
    assert f"hint: check the workload token in {token_file}" in refused.stderr


def test_local_tls_is_refused_when_no_target_is_postgres(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    touch = f"open({str(marker)!r}, 'w')"
    result = broker.jitctl(
        "exec", "-t", "echo-svc", "--local-tls", "--", sys.executable, "-c", touch
    )
    assert result.returncode == 2
    assert "error: --local-tls is for postgres targets; echo-svc is tcp\n" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists(), "the command ran although the flag was refused"
