"""`jitctl demo` is the README's first command: it must pass on this machine and show the story."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from jitctl.testing.postgres import postgres_available


def test_demo_runs_shows_the_story_and_cleans_up(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path), "COLUMNS": "120"}
    result = subprocess.run(
        [sys.executable, "-m", "jitctl", "demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "audit trail verified" in output
    assert "Traceback" not in output
    if postgres_available() is None:
        assert "[MASKED]" in output  # the agent's SELECT came back masked
        assert "ada@example.com" not in output.split("agent> SELECT", 1)[1]
        assert "blocked: 42501" in output  # its DROP was blocked by parsing
        assert "done: the ALTER ran after approval" in output  # bob approved the held ALTER
        # The agent's session ends as it did: cleanly (not a race read as an upstream failure).
        assert "closed (both sides closed)" in output and "upstream write failed" not in output
    else:
        assert "falls back to a tcp target" in output
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith("jitctl-demo-")]
    assert leftovers == [], "the demo left its temporary directory behind"
