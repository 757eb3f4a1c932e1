"""`jitctl login/logout/whoami/targets` as a user runs them: subprocesses against a real
`jitctl broker serve --dev`, with the test playing the browser or approving the device."""

from __future__ import annotations

import json
import os
import queue
import re
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jitctl.broker.devissuer import DevIssuer
from jitctl.config import DevSection
from jitctl.testing.broker import BrokerProcess

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """
[[targets]]
name = "pg-prod"
protocol = "postgres"
address = "127.0.0.1:9"
allow_groups = ["eng"]
max_session = "30m"
description = "orders database, read-mostly"
[[targets.rules]]
match = { statement = ["drop", "truncate"] }
action = "deny"

[[targets]]
name = "billing"
protocol = "http"
address = "http://127.0.0.1:9"
allow_groups = ["dba"]
"""


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with BrokerProcess(CONFIG, state_dir=tmp_path_factory.mktemp("idb"), dev=True) as process:
        yield process


@pytest.fixture
def env(broker: BrokerProcess, tmp_path: Path) -> dict[str, str]:
    """A private JITCTL_HOME and a keyring shared by this test's CLI runs (a file-backed
    stand-in for the OS keyring)."""
    return {
        "JITCTL_HOME": str(tmp_path / "home"),
        "PYTHON_KEYRING_BACKEND": "tests.keyring_backends.MemoryKeyring",
        "JITCTL_TEST_KEYRING_FILE": str(tmp_path / "keyring.json"),
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }


def _tls(broker: BrokerProcess) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=broker.ca_file)


class Running:
    """A CLI process whose stderr is read line by line as it comes."""

    def __init__(self, broker: BrokerProcess, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jitctl", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**broker.env, **env},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        while True:
            line = self.lines.get(timeout=timeout)
            self.err.append(line)
            if match := re.search(pattern, line):
                return match

    def finish(self, timeout: float = 30) -> tuple[int, str, str]:
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        self.proc.wait(timeout)
        self.pump.join(timeout)
        self.proc.stdout.close()
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        while not self.lines.empty():
            self.err.append(self.lines.get())
        return self.proc.returncode, out, "".join(self.err)


def test_pkce_login_then_whoami_targets_and_logout(
    broker: BrokerProcess, env: dict[str, str], tmp_path: Path
) -> None:
    login = Running(broker, env, "login", "--no-browser")
    url = login.wait_for(r"(https://\S+/authorize\?\S+)").group(1)
    with httpx.Client(verify=_tls(broker), timeout=10) as browser:
        consent = browser.get(url + "&login_hint=alice")
        assert consent.status_code == 302
        assert "close this tab" in browser.get(consent.headers["location"]).text
    code, _, err = login.finish()
    assert code == 0, err
    assert f"Logged in to {broker.url} as alice <alice@example.com>; groups: eng" in err
    assert "warning" not in err  # the keyring took it: no file, no warning
    assert not (tmp_path / "home" / "credentials.json").exists()

    who = broker.jitctl("whoami", "--json", env=env)
    assert who.returncode == 0, who.stderr
    document = json.loads(who.stdout)
    assert document["subject"] == "alice" and document["groups"] == ["eng"]
    assert document["issuer"] == broker.url + "/dev/oidc" and document["broker"] == broker.url
    assert isinstance(document["expires_at"], int)
    human = broker.jitctl("whoami", env=env).stdout
    assert re.search(r"^subject\s+alice$", human, re.M) and "expires" in human

    listed = json.loads(broker.jitctl("targets", "--json", env=env).stdout)
    assert [t["name"] for t in listed["targets"]] == ["pg-prod"]  # billing is for dba
    table = broker.jitctl("targets", env=env).stdout
    assert "pg-prod" in table and "deny drop,truncate" in table and "30m" in table
    assert "orders database, read-mostly" in table  # the config's description is shown

    out = broker.jitctl("logout", env=env)
    assert out.returncode == 0 and "Logged out" in out.stderr
    after = broker.jitctl("whoami", env=env)
    assert after.returncode == 3 and "not logged in" in after.stderr


def test_device_login_is_approved_by_posting_the_device_form(
    broker: BrokerProcess, env: dict[str, str], tmp_path: Path
) -> None:
    env = {**env, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    login = Running(broker, env, "login", "--device")
    user_code = login.wait_for(r"\b([A-Z]{4}-[A-Z]{4})\b").group(1)
    with httpx.Client(verify=_tls(broker), timeout=10) as browser:
        answer = browser.post(
            broker.url + "/dev/oidc/device",
            data={"user_code": user_code, "user": "carol", "action": "approve"},
        )
    assert answer.status_code == 200
    code, _, err = login.finish()
    assert code == 0, err
    assert "as carol" in err and "groups: eng, agents" in err
    # No keyring on this "headless box": one warning, a 0600 file.
    assert err.count("warning:") == 1 and "no system keyring" in err
    creds = tmp_path / "home" / "credentials.json"
    assert creds.stat().st_mode & 0o777 == 0o600
    assert json.loads(broker.jitctl("whoami", "--json", env=env).stdout)["subject"] == "carol"


def test_the_dev_banner_login_command_with_device_added_logs_in(
    broker: BrokerProcess, env: dict[str, str]
) -> None:
    """The broker's banner says how to log in; followed as written (its login line plus
    --device) it works for a broker with a state dir of its own, from a fresh home."""
    banner = broker.log_text()
    assert "(add --device for the device grant)" in banner
    assert "`jitctl login --device`" not in banner  # bare, it would find no broker here
    line = re.search(r"^\s+jitctl (login --broker \S+.*)$", banner, re.M)
    assert line is not None, banner
    login = Running(broker, env, *line.group(1).split(), "--device")
    user_code = login.wait_for(r"\b([A-Z]{4}-[A-Z]{4})\b").group(1)
    with httpx.Client(verify=_tls(broker), timeout=10) as browser:
        browser.post(
            broker.url + "/dev/oidc/device",
            data={"user_code": user_code, "user": "alice", "action": "approve"},
        )
    code, _, err = login.finish()
    assert code == 0, err
    assert "as alice" in err


def test_a_denied_device_login_exits_3_with_a_clear_error(
    broker: BrokerProcess, env: dict[str, str]
) -> None:
    login = Running(broker, env, "login", "--device")
    user_code = login.wait_for(r"\b([A-Z]{4}-[A-Z]{4})\b").group(1)
    with httpx.Client(verify=_tls(broker), timeout=10) as browser:
        browser.post(
            broker.url + "/dev/oidc/device", data={"user_code": user_code, "action": "deny"}
        )
    code, _, err = login.finish()
    assert code == 3
    assert "error: the device login was denied" in err and "Traceback" not in err


def _issuer(broker: BrokerProcess) -> DevIssuer:
    """The dev issuer's own key (same state dir), to mint workload-style tokens."""
    return DevIssuer(broker.url + "/dev/oidc", DevSection(), broker.state_dir)


def test_token_file_login_checks_the_token_and_follows_rotation(
    broker: BrokerProcess, env: dict[str, str], tmp_path: Path
) -> None:
    issuer = _issuer(broker)
    token_file = tmp_path / "token"
    token_file.write_text(issuer.mint("ci-job", email=None, groups=["eng"], lifetime=-120))
    # Name the broker by flag only, as on a fresh machine.
    env = {**env, "JITCTL_BROKER": "", "JITCTL_CA_FILE": ""}
    flags = ["--broker", broker.url, "--ca-file", broker.ca_file]
    bad = broker.jitctl("login", *flags, "--token-file", str(token_file), env=env)
    assert bad.returncode == 3 and "token expired" in bad.stderr

    token_file.write_text(issuer.mint("ci-job", email=None, groups=["eng"]))
    good = broker.jitctl("login", *flags, "--token-file", str(token_file), env=env)
    assert good.returncode == 0 and "as ci-job" in good.stderr
    token_file.write_text(issuer.mint("ci-job-2", email=None, groups=["agents"]))
    who = json.loads(broker.jitctl("whoami", "--json", env=env).stdout)  # remembered broker
    assert who["subject"] == "ci-job-2"


def test_token_env_login_reads_the_variable_at_each_use(
    broker: BrokerProcess, env: dict[str, str]
) -> None:
    issuer = _issuer(broker)
    first = {**env, "JOB_TOKEN": issuer.mint("job-a", email=None, groups=[])}
    assert broker.jitctl("login", "--token-env", "JOB_TOKEN", env=first).returncode == 0
    second = {**env, "JOB_TOKEN": issuer.mint("job-b", email=None, groups=[])}
    assert json.loads(broker.jitctl("whoami", "--json", env=second).stdout)["subject"] == "job-b"
    missing = broker.jitctl("whoami", env={**env, "JOB_TOKEN": ""})
    assert missing.returncode == 3 and "JOB_TOKEN holds no token" in missing.stderr


def test_an_unreachable_broker_exits_6_naming_it(env: dict[str, str]) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"https://127.0.0.1:{sock.getsockname()[1]}"
    result = subprocess.run(
        [sys.executable, "-m", "jitctl", "login", "--broker", url, "--device"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=30,
    )
    assert result.returncode == 6
    assert f"cannot reach the broker at {url}" in result.stderr


def test_whoami_without_a_login_exits_3_and_says_to_log_in(
    broker: BrokerProcess, env: dict[str, str]
) -> None:
    result = broker.jitctl("whoami", env=env)
    assert result.returncode == 3
    assert "not logged in" in result.stderr and "jitctl login" in result.stderr


def test_choosing_two_login_methods_is_a_usage_error(
    broker: BrokerProcess, env: dict[str, str]
) -> None:
    result = broker.jitctl("login", "--device", "--token-env", "X", env=env)
    assert result.returncode == 2
