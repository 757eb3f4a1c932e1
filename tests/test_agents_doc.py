"""docs/agents.md's GitHub Actions example, run for real: the config checks, the workflow's
`jitctl exec` line runs an agent through a real broker with a GitHub-shaped OIDC token."""

from __future__ import annotations

import json
import re
import shlex
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from jitctl.testing.broker import BrokerProcess, check_config
from jitctl.testing.issuer import TokenIssuer
from jitctl.testing.servers import EchoServer

DOC = Path(__file__).resolve().parent.parent / "docs" / "agents.md"
GITHUB = "https://token.actions.githubusercontent.com"
AUDIENCE = "https://jitctl.internal:8443"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


class FakeGitHubTokenEndpoint:
    """ACTIONS_ID_TOKEN_REQUEST_URL: GET …&audience=AUD, bearer request token → {"value": JWT}"""

    def __init__(self, issuer: TokenIssuer) -> None:
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                outer.requests.append(
                    {
                        "audience": query.get("audience", [""])[0],
                        "auth": self.headers.get("Authorization", ""),
                    }
                )
                if self.headers.get("Authorization") != "Bearer runner-request-token":
                    self.send_error(401)
                    return
                token = issuer.mint(
                    sub="repo:acme/agents:ref:refs/heads/main",
                    aud=query["audience"][0],
                    groups=[],  # GitHub tokens have no groups claim
                    repository="acme/agents",
                    repository_owner="acme",
                    workflow="nightly triage",
                    run_id="4242",
                    ref_protected=True,
                )
                body = json.dumps({"value": token}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token?api-version=2.0"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def github(token_issuer: TokenIssuer) -> Iterator[FakeGitHubTokenEndpoint]:
    endpoint = FakeGitHubTokenEndpoint(token_issuer)
    yield endpoint
    endpoint.close()


def test_the_documented_configs_are_valid(tmp_path: Path) -> None:
    for index, config in enumerate(blocks("toml")):
        path = tmp_path / f"example-{index}.toml"
        path.write_text(config)
        result = check_config(path)
        assert result.returncode == 0, f"example {index}: {result.stderr}"


def test_the_workflow_asks_for_an_oidc_token_and_runs_jitctl_exec() -> None:
    workflow = blocks("yaml")[0]
    assert "id-token: write" in workflow
    assert f"JITCTL_OIDC_AUDIENCE: {AUDIENCE}" in workflow
    assert "- run: jitctl exec -t pg-prod --agent triage-bot" in workflow


def test_the_github_actions_example_runs_an_agent_end_to_end(
    token_issuer: TokenIssuer, github: FakeGitHubTokenEndpoint, tmp_path: Path
) -> None:
    # The documented broker config, with GitHub's issuer and the database swapped for local
    # stand-ins (the target becomes tcp: this test is about identity, not SQL).
    config = blocks("toml")[0].replace(GITHUB, token_issuer.url)
    with EchoServer() as echo:
        config = config.replace('address = "10.0.0.5:5432"', f'address = "{echo.address}"')
        config = config.replace('protocol = "postgres"', 'protocol = "tcp"')
        # The documented target's password lives in the broker's environment (unused by tcp).
        secret = {"PG_PROD_AGENT_PASSWORD": "stand-in"}
        with BrokerProcess(config, state_dir=tmp_path / "broker", env=secret) as broker:
            line = next(
                raw.strip().removeprefix("- run: ")
                for raw in blocks("yaml")[0].splitlines()
                if "jitctl exec" in raw
            )
            argv = shlex.split(line.replace("${{ github.run_id }}", "4242"))
            assert argv[:2] == ["jitctl", "exec"]
            separator = argv.index("--")
            agent = tmp_path / "agent.py"
            agent.write_text(
                "import os, json, socket\n"
                "port = int(os.environ['PG_PROD_PORT'])\n"
                "with socket.create_connection(('127.0.0.1', port)) as s:\n"
                "    s.sendall(b'SELECT 1')\n"
                "    s.shutdown(socket.SHUT_WR)\n"
                "    print(s.recv(99).decode())\n"
                f"json.dump(dict(os.environ), open({str(tmp_path / 'env.json')!r}, 'w'))\n"
            )
            command = [*argv[2:separator], "--", sys.executable, str(agent)]
            env = {
                "JITCTL_HOME": str(tmp_path / "runner-home"),  # a fresh runner: no login
                "ACTIONS_ID_TOKEN_REQUEST_URL": github.url,
                "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "runner-request-token",
                "JITCTL_OIDC_AUDIENCE": AUDIENCE,
            }
            result = broker.jitctl("exec", *command, env=env)
            assert result.returncode == 0, result.stderr
            assert result.stdout.strip() == "SELECT 1"
            assert github.requests and github.requests[0]["audience"] == AUDIENCE
            child_env = json.loads((tmp_path / "env.json").read_text())
            assert not any("PASSWORD" in key for key in child_env)
            shown = broker.jitctl(
                "sessions", "ls", "--json", "--state-dir", str(broker.state_dir)
            ).stdout
            sessions = json.loads(shown)
            sessions = sessions["sessions"] if isinstance(sessions, dict) else sessions
            detail = broker.jitctl(
                "sessions",
                "show",
                sessions[0]["id"],
                "--json",
                "--state-dir",
                str(broker.state_dir),
            ).stdout
            assert "repo:acme/agents:ref:refs/heads/main" in detail
            assert "triage-bot" in detail and child_env["JITCTL_CORRELATION_ID"] in detail
