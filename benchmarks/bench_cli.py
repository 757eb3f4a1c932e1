"""CLI start-up: `jitctl --help` against `python -c "import typer"`, in the same run.

Typer is the floor any typer CLI pays, so the ratio says how much jitctl adds on top of its own
framework. Runs are interleaved (and their order alternated) so drift on the machine hits both
commands alike; a few warm-up runs fill the page cache first. When the goal is missed, the
module-level import profile (`python -X importtime`) says where the time goes.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _util import Row, Section, median, ratio, say

GOAL = 1.5  # jitctl --help may take at most 1.5x `import typer`
WARMUP = 3


def _jitctl() -> list[str]:
    """The console script a user runs (next to this interpreter if installed there)."""
    beside = Path(sys.executable).with_name("jitctl")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("jitctl")
    return [found] if found else [sys.executable, "-m", "jitctl"]


# Bytecode is cached as after any `pip install`; an environment that forbids writing it
# (PYTHONDONTWRITEBYTECODE, common in containers) would make jitctl's editable sources
# recompile on every run while typer's installed modules stay compiled.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, check=True)
    return time.perf_counter() - start


def measure(commands: dict[str, list[str]], runs: int) -> dict[str, list[float]]:
    """Wall time of each command, `runs` times, interleaved with alternating order."""
    names = list(commands)
    for _ in range(WARMUP):
        for name in names:
            _wall(commands[name])
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(runs):
        for name in names if i % 2 == 0 else reversed(names):
            times[name].append(_wall(commands[name]))
    return times


def import_profile(module: str = "jitctl.cli", repeat: int = 3, top: int = 12) -> list[str]:
    """Self time of `import module`, summed per top-level package (best of `repeat`), in ms."""
    best: dict[str, float] = {}
    for _ in range(repeat):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            env=ENV,
            check=True,
        )
        per_package: dict[str, float] = collections.defaultdict(float)
        for line in result.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            self_us, _cumulative, name = line.removeprefix("import time:").split("|")
            per_package[name.strip().split(".")[0]] += int(self_us) / 1000
        for package, ms in per_package.items():
            best[package] = min(ms, best.get(package, ms))
    ranked = sorted(best.items(), key=lambda item: item[1], reverse=True)
    total = sum(best.values())
    lines = [f"| `{package}` | {ms:.1f} |" for package, ms in ranked[:top]]
    return [
        f"`python -X importtime -c 'import {module}'`: self time per top-level package, "
        f"best of {repeat} (total {total:.0f} ms):",
        "",
        "| package | ms |",
        "|---|---:|",
        *lines,
    ]


def run(quick: bool = False) -> Section:
    runs = 15 if quick else 41
    jitctl = [*_jitctl(), "--help"]
    commands = {
        "jitctl": jitctl,
        "typer": [sys.executable, "-c", "import typer"],
        "python": [sys.executable, "-c", "pass"],
    }
    say(f"cli: {runs} interleaved runs each of {' / '.join(commands)}")
    times = measure(commands, runs)
    ours, peer, floor = (times[name] for name in ("jitctl", "typer", "python"))
    ours_med, peer_med = median(ours), median(peer)
    met = ours_med / peer_med <= GOAL
    section = Section(
        key="cli",
        title="CLI start-up",
        quick=quick,
        intro=(
            f"Wall time of `jitctl --help` (the installed console script) against "
            f'`python -c "import typer"`, {runs} runs each after {WARMUP} warm-up runs, '
            "interleaved with alternating order, stdout and stderr to /dev/null, bytecode cached "
            "(as after `pip install`). The median is judged; the best run and the bare "
            "interpreter are shown for reference."
        ),
        rows=[
            Row(
                "`jitctl --help`, median",
                f"{ours_med * 1000:.1f} ms",
                f"{peer_med * 1000:.1f} ms",
                ratio(ours_med, peer_med),
                f"≤ {GOAL}x",
                met,
            ),
            Row(
                "`jitctl --help`, best",
                f"{min(ours) * 1000:.1f} ms",
                f"{min(peer) * 1000:.1f} ms",
                ratio(min(ours), min(peer)),
                "(reference)",
                None,
            ),
            Row(
                '`python -c "pass"`, median (the floor)',
                f"{median(floor) * 1000:.1f} ms",
                f"{peer_med * 1000:.1f} ms",
                ratio(median(floor), peer_med),
                "(reference)",
                None,
            ),
        ],
    )
    if not met:
        say("cli: goal missed; profiling imports")
        section.details += ["Goal missed; where the import time goes:", "", *import_profile()]
    return section


if __name__ == "__main__":
    from run import main

    sys.exit(main(["--only", "cli", *sys.argv[1:]]))
