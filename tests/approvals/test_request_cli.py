"""`jitctl request` as a user meets it in a script: no broker is needed to be told how to
use it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_request_watch_without_a_terminal_exits_2_and_points_at_request_ls(
    tmp_path: Path,
) -> None:
    """In a pipe the live view cannot draw or read keys; it says so at once instead of
    spinning until killed."""
    result = subprocess.run(
        [sys.executable, "-m", "jitctl", "request", "watch"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "JITCTL_HOME": str(tmp_path)},
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert "error: jitctl request watch needs a terminal" in result.stderr
    assert "jitctl request ls --pending" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
