"""Run the benchmarks, print a summary, rewrite docs/performance.md.

    python benchmarks/run.py                 # everything (a few minutes)
    python benchmarks/run.py --quick         # smaller sizes, under a minute
    python benchmarks/run.py --only tunnel   # one benchmark; the doc keeps the others' sections
    python benchmarks/run.py --no-write      # print only

Each benchmark module exposes `run(quick: bool) -> Section` (see _util.py). The audit benchmark
belongs to its own module (bench_audit.py); until it exists its section says "pending".
The doc is rewritten whole, except that with `--only` the sections of benchmarks not run are
carried over from the previous file, each still stamped with the date of its own run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import re
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from _util import Row, Section, machine, say, yes_no

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "performance.md"
ORDER = ["cli", "tunnel", "audit"]
TITLES = {
    "cli": "CLI start-up",
    "tunnel": "Tunnel throughput and added latency",
    "audit": "Audit appends",
}
AUDIT_GOAL = 20_000  # durable records/s with group commit


# -- running ----------------------------------------------------------------------------------


def _cli(quick: bool) -> Section:
    import bench_cli

    return bench_cli.run(quick)


def _tunnel(quick: bool) -> Section:
    import bench_tunnel

    return bench_tunnel.run(quick)


def _audit(quick: bool) -> Section:
    """Adapt bench_audit.py (another module's own benchmark) to a Section."""
    if not (HERE / "bench_audit.py").exists():
        return _pending("audit", "benchmarks/bench_audit.py does not exist yet.")
    module = importlib.import_module("bench_audit")
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        if hasattr(module, "run"):
            result = _call(module.run, quick)
        elif hasattr(module, "main"):
            result = _call(module.main, quick)
        else:
            return _pending("audit", "benchmarks/bench_audit.py has neither `run` nor `main`.")
    printed = output.getvalue()
    sys.stdout.write(printed)
    if isinstance(result, Section):
        result.key, result.quick = "audit", quick
        return result
    section = Section(key="audit", title=TITLES["audit"], quick=quick)
    section.intro = (
        "Durable audit appends with group commit, measured by benchmarks/bench_audit.py; "
        f"the goal is ≥ {AUDIT_GOAL:,} durable records/s."
    )
    if isinstance(result, Mapping):
        section.rows = _rows_from_mapping(result)
    if printed.strip():
        section.details += ["As printed by `bench_audit`:", "", "```", printed.rstrip(), "```"]
    if not section.rows:
        section.details.insert(0, "bench_audit returned no figures the harness can judge.")
    return section


def _call(fn: Callable[..., Any], quick: bool) -> Any:
    """Pass `quick` if the function takes it, and no argv either way."""
    import inspect

    params = inspect.signature(fn).parameters
    if "quick" in params:
        return fn(quick=quick)
    if "argv" in params:
        return fn(["--quick"] if quick else [])
    return fn()


def _rows_from_mapping(result: Mapping[str, Any]) -> list[Row]:
    """Best effort for a dict of figures: judge the records/s figure against the goal."""
    rows = []
    for name, value in result.items():
        judged = isinstance(value, int | float) and re.search(r"per_?s|/s|rate", name)
        peer = result.get("peer") or result.get("baseline") or "—"
        rows.append(
            Row(
                str(name),
                f"{value:,.0f}" if isinstance(value, int | float) else str(value),
                str(peer) if judged else "—",
                "—",
                f"≥ {AUDIT_GOAL:,}/s" if judged else "(reference)",
                bool(value >= AUDIT_GOAL) if judged else None,
            )
        )
    return rows


def _pending(key: str, why: str, label: str = "Pending") -> Section:
    return Section(key=key, title=TITLES[key], details=[f"**{label}.** {why}"])


BENCHMARKS: dict[str, Callable[[bool], Section]] = {
    "cli": _cli,
    "tunnel": _tunnel,
    "audit": _audit,
}


# -- the document -----------------------------------------------------------------------------


def render_section(section: Section, stamp: str) -> str:
    lines = [f"<!-- bench:{section.key} -->", f"## {section.title}", ""]
    if section.rows or section.intro:
        mode = "quick run" if section.quick else "full run"
        lines += [f"_Measured {stamp} ({mode})._", ""]
    if section.intro:
        lines += [section.intro, ""]
    if section.rows:
        lines += [
            "| metric | jitctl | peer | ratio | goal | met |",
            "|---|---:|---:|---:|---|---|",
            *(
                f"| {r.metric} | {r.measured} | {r.peer} | {r.ratio} | {r.goal} | {yes_no(r.met)} |"
                for r in section.rows
            ),
            "",
        ]
    if section.details:
        lines += [*section.details, ""]
    lines.append(f"<!-- /bench:{section.key} -->")
    return "\n".join(lines)


def previous_sections(text: str) -> dict[str, str]:
    pattern = re.compile(r"<!-- bench:(\w+) -->.*?<!-- /bench:\1 -->", re.S)
    return {m.group(1): m.group(0) for m in pattern.finditer(text)}


def render_doc(blocks: dict[str, str], info: dict[str, str], argv: list[str]) -> str:
    command = " ".join(["python benchmarks/run.py", *argv]).strip()
    head = f"""# Performance

Every figure here is measured against a peer **in the same run on the same machine**, and the
goal is stated as a ratio to that peer; speed is never asserted by timed tests. The numbers are
what this machine measured, goals met or not.

Reproduce with `nox -s bench` (or `python benchmarks/run.py`; `--quick` for a smaller run,
`--only NAME` for one of: {", ".join(ORDER)}). This file is rewritten by that command.

Last run: `{command}` on {info["date"]}: {info["cpus"]} CPUs ({info["cpu"]}), Python
{info["python"]}, {info["os"]}.
"""
    return head + "\n" + "\n\n".join(blocks[key] for key in ORDER if key in blocks) + "\n"


# -- main -------------------------------------------------------------------------------------


def summary(section: Section) -> str:
    if not section.rows:
        return f"{section.title}: " + " ".join(section.details)[:200]
    lines = [f"{section.title}:"]
    for r in section.rows:
        verdict = "" if r.met is None else ("  [met]" if r.met else "  [MISSED]")
        lines.append(f"  {r.metric}: {r.measured} vs {r.peer} ({r.ratio}); goal {r.goal}{verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=ORDER, metavar="NAME", help=", ".join(ORDER))
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under a minute")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite the doc")
    args = parser.parse_args(argv)

    info = machine()
    say(f"{info['cpus']} CPUs, Python {info['python']}, {info['date']}")
    blocks = previous_sections(DOC.read_text()) if args.only and DOC.exists() else {}
    failed = False
    started = time.monotonic()
    for key in args.only or ORDER:
        t0 = time.monotonic()
        try:
            section = BENCHMARKS[key](args.quick)
        except Exception:  # one broken benchmark must not hide the others
            failed = True
            traceback.print_exc()
            section = _pending(key, "the benchmark raised an error on its last run.", "Failed")
        say(f"{key}: {time.monotonic() - t0:.0f} s")
        blocks[key] = render_section(section, info["date"])
        print(summary(section), flush=True)
    say(f"all: {time.monotonic() - started:.0f} s")
    if not args.no_write:
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(render_doc(blocks, info, argv))
        say(f"wrote {DOC}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
