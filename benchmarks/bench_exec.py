"""`jitctl exec -- true` with a cached token against `true`, in the same run.

The agent workflow pays this on every wrapped command: interpreter start, the CLI, reading the
stored login, and for each target a TLS check with the broker and a local listener. Measured
with no target (the floor jitctl adds) and with one tcp target (what an agent with one tunnel
pays). A real broker runs as a subprocess; the token is a workload token in a file.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import Row, Section, median, say

from jitctl.testing.broker import BrokerProcess
from jitctl.testing.issuer import TokenIssuer
from jitctl.testing.servers import EchoServer

GOAL_MS = 300.0


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def run(quick: bool = False) -> Section:
    runs = 5 if quick else 15
    jitctl = [sys.executable, "-m", "jitctl"]
    true = ["/bin/true"]
    with tempfile.TemporaryDirectory() as tmp, TokenIssuer() as issuer, EchoServer() as echo:
        config = (
            f'[[identity.issuers]]\nissuer = "{issuer.url}"\n'
            f'[[targets]]\nname = "svc"\nprotocol = "tcp"\naddress = "{echo.address}"\n'
            'allow_groups = ["agents"]\n'
        )
        with BrokerProcess(config, state_dir=Path(tmp) / "broker") as broker:
            broker.login_with_token(issuer.mint(lifetime=3600))
            env = broker.env
            commands = {
                "true": true,
                "exec, no target": [*jitctl, "exec", "--", *true],
                "exec, one tcp target": [*jitctl, "exec", "-t", "svc", "--", *true],
            }
            for cmd in commands.values():  # warm the page cache
                _wall(cmd, env)
            times: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(runs):
                for name, cmd in commands.items():
                    times[name].append(_wall(cmd, env))
    say(f"exec: {runs} runs each")
    base = median(times["true"]) * 1000
    rows = []
    for name in ("exec, no target", "exec, one tcp target"):
        ms = median(times[name]) * 1000
        added = ms - base
        rows.append(
            Row(
                metric=f"{name}, median of {runs}",
                measured=f"{ms:.0f} ms",
                peer=f"{base:.1f} ms",
                ratio=f"+{added:.0f} ms",
                goal=f"added ≤ {GOAL_MS:.0f} ms",
                met=added <= GOAL_MS,
            )
        )
    return Section(
        key="exec",
        title="jitctl exec overhead",
        intro=(
            "Wall time of `jitctl exec [-t svc] -- /bin/true` against `/bin/true` itself, "
            "interleaved in the same run, with a stored (workload-token) login and a real "
            "broker subprocess; the tcp target adds the broker check over TLS and a local "
            "listener."
        ),
        rows=rows,
    )


def main() -> None:
    section = run()
    for row in section.rows:
        print(row)


if __name__ == "__main__":
    main()
