"""What the benchmarks share: result rows, statistics, the machine, subprocess hygiene.

Rules (docs/performance.md repeats them for readers):
- A figure is never judged alone: every row has a peer measured in the same run, on the same
  machine, and the goal is stated against that peer.
- A benchmark module exposes `run(quick: bool) -> Section`; `benchmarks/run.py` renders it.
- Figures are reported as measured. A missed goal says "no" and gives the figure.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as _dt
import linecache
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Row:
    """One judged figure: ours, the peer's, their ratio, and the goal."""

    metric: str
    measured: str
    peer: str
    ratio: str
    goal: str
    met: bool | None  # None: reported for context, not judged


@dataclass
class Section:
    key: str  # the name `--only` takes
    title: str
    intro: str = ""  # markdown: what is measured against what, and how
    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)  # markdown paragraphs after the table
    quick: bool = False

    @property
    def met(self) -> bool | None:
        judged = [row.met for row in self.rows if row.met is not None]
        return all(judged) if judged else None


# -- statistics -------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100): a value that was actually observed."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def ratio(measured: float, peer: float) -> str:
    return f"{measured / peer:.2f}x" if peer else "n/a"


def yes_no(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "—"}[met]


# -- the machine ------------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict[str, str]:
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu_model(),
        "python": platform.python_version() + f" ({platform.python_implementation()})",
        "os": f"{platform.system()} {platform.release()}",
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


# -- CPU time -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all its threads (Linux /proc)."""
    if pid == os.getpid():
        times = os.times()
        return times.user, times.system
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()  # the name may hold spaces and ')'
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


class CpuMeter:
    """`with meter:` adds each process's CPU time (and the wall time) spent inside the block.

    The measuring client is this process and is counted as "client"."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {**pids, "client": os.getpid()}
        self.user = dict.fromkeys(self.pids, 0.0)
        self.system = dict.fromkeys(self.pids, 0.0)
        self.wall = 0.0
        self._start: tuple[float, dict[str, tuple[float, float]]] = (0.0, {})

    def cpu(self, name: str) -> float:
        return self.user[name] + self.system[name]

    def __enter__(self) -> CpuMeter:
        self._start = (time.perf_counter(), {k: cpu_seconds(p) for k, p in self.pids.items()})
        return self

    def __exit__(self, *exc: object) -> None:
        wall, before = self._start
        self.wall += time.perf_counter() - wall
        for name, pid in self.pids.items():
            user, system = cpu_seconds(pid)
            self.user[name] += user - before[name][0]
            self.system[name] += system - before[name][1]


# -- processes --------------------------------------------------------------------------------


def say(message: str) -> None:
    """Progress goes to stderr; the summary goes to stdout."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def child(proc: subprocess.Popen[bytes], name: str) -> Iterator[subprocess.Popen[bytes]]:
    """Stop `proc` on the way out, whatever happened: SIGTERM, then SIGKILL after 10 s."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                say(f"{name} (pid {proc.pid}) ignored SIGTERM; killing it")
                proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


# -- diagnosis: only when a goal is missed, only with the tools installed -------------------


def _repeat(load: Callable[[], object], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        load()


def py_spy(
    what: str, pids: dict[str, int], load: Callable[[], object], seconds: float
) -> list[str]:
    """Markdown: where `pids` spend their samples while `load()` repeats for `seconds`."""
    spy = shutil.which("py-spy")
    if spy is None:
        return ["", f"Install py-spy (`pip install py-spy`) for a profile under {what}."]
    lines = [
        "",
        f"Profile under {what}: py-spy at 250 Hz for {seconds:.0f} s after the timed runs "
        "(non-blocking; samples of threads py-spy sees as idle are left out).",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        outs = {name: Path(tmp) / f"{pid}.txt" for name, pid in pids.items()}
        options = ["-d", str(max(1, round(seconds))), "-r", "250", "-f", "raw"]
        options += ["--nonblocking", "--threads"]
        spies = [
            subprocess.Popen(
                [spy, "record", "-p", str(pid), "-o", str(outs[name]), *options],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, pid in pids.items()
        ]
        time.sleep(0.5)  # let py-spy attach
        _repeat(load, seconds)
        for proc in spies:
            proc.wait(60)
        for name, out in outs.items():
            lines += ["", f"*{name}*", ""]
            lines += _summarise(out) if out.exists() else ["(py-spy could not attach)"]
    return lines


def _summarise(raw: Path, top: int = 8) -> list[str]:
    """py-spy's raw (collapsed) stacks -> share of samples per thread and per innermost line."""
    threads: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if len(frames) < 2:
            continue
        thread = frames[0].partition(": ")[2] or frames[0]  # "thread (123): MainThread"
        name, _, where = frames[-1].partition(" (")  # "fn (path/file.py:42)"
        where = where.rstrip(")")
        threads[thread] += int(count)
        leaves[f"{thread}: `{name}` ({Path(where).name}){_source(where)}"] += int(count)
    total = sum(threads.values())
    if not total:
        return ["(no samples)"]
    lines = ["| thread | share of samples |", "|---|---:|"]
    lines += [f"| {name} | {n / total:.0%} |" for name, n in threads.most_common()]
    lines += ["", "| where (innermost frame, file:line) | share |", "|---|---:|"]
    lines += [f"| {where} | {n / total:.1%} |" for where, n in leaves.most_common(top)]
    return lines


def _source(where: str) -> str:
    """The source line at "path/file.py:42" as a markdown snippet, if the file is found."""
    path, _, line = where.rpartition(":")
    if not line.isdigit():
        return ""
    for base in (Path(__file__).resolve().parent.parent, *map(Path, sys.path)):
        if (base / path).is_file():
            text = linecache.getline(str(base / path), int(line)).strip()
            text = text.replace("|", "\\|").replace("`", "'")
            return f": `{text[:70]}`" if text else ""
    return ""


def syscalls(pid: int, names: Sequence[str], load: Callable[[], object]) -> dict[str, int] | None:
    """How many times process `pid` (all threads) made each syscall while `load()` ran once;
    None without strace or when it cannot attach."""
    tracer = shutil.which("strace")
    if tracer is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "strace.txt"
        proc = subprocess.Popen(
            [tracer, "-f", "-c", "-e", "trace=" + ",".join(names), "-p", str(pid), "-o", str(out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # let strace attach
        if proc.poll() is not None:
            return None
        try:
            load()
        finally:
            proc.send_signal(signal.SIGINT)  # detach and write the summary
            proc.wait(30)
        counts = dict.fromkeys(names, 0)
        for line in out.read_text().splitlines():
            fields = line.split()
            if fields and fields[-1] in counts and fields[3].isdigit():
                counts[fields[-1]] = int(fields[3])
        return counts


# -- running one benchmark on its own ---------------------------------------------------------


def standalone_main(
    doc: str | None,
    collect: Callable[[bool], Any],
    rows: Callable[[Any], Sequence[Row]],
    quick_help: str = "smaller sizes",
    argv: list[str] | None = None,
) -> int:
    """`python benchmarks/bench_X.py [--quick] [--json]`: figures as JSON or a markdown table."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    results = collect(args.quick)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print("| metric | jitctl | peer | ratio | goal | met |\n|---|---:|---:|---:|---|---|")
    for row in rows(results):
        cells = (row.metric, row.measured, row.peer, row.ratio, row.goal, yes_no(row.met))
        print("| " + " | ".join(cells) + " |")
    return 0
