"""Run the benchmarks, print a summary, rewrite docs/performance.md.

    python benchmarks/run.py                 # everything (under 2 minutes on 2 CPUs)
    python benchmarks/run.py --quick         # smaller sizes, under a minute
    python benchmarks/run.py --only tunnel   # one benchmark; the doc keeps the others' sections
    python benchmarks/run.py --no-write      # print only

Each benchmarks/bench_NAME.py exposes `run(quick: bool) -> Section` (see _util.py); a module
that returns a plain mapping of figures gets them listed as they are. cli, tunnel and audit
come first (audit is the audit work's own module: until it exists, its section says
"pending"), then any other bench_*.py by name.
The doc is rewritten whole, except that with `--only` the sections of benchmarks not run are
carried over from the previous file, each still stamped with the date of its own run.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from _util import Section, machine, say, yes_no

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "performance.md"
FIRST = ["cli", "tunnel", "audit"]
TITLES = {
    "cli": "CLI start-up",
    "tunnel": "Tunnel throughput and added latency",
    "audit": "Audit appends",
}


# -- running ----------------------------------------------------------------------------------


def names() -> list[str]:
    """cli, tunnel, audit first, then any other benchmarks/bench_NAME.py, by name."""
    found = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    return [*FIRST, *(name for name in found if name not in FIRST)]


def run_one(key: str, quick: bool) -> Section:
    """`bench_<key>.run(quick)`: a Section, or a mapping of figures shown as it is."""
    if not (HERE / f"bench_{key}.py").exists():
        return _pending(key, f"benchmarks/bench_{key}.py does not exist yet.")
    module = importlib.import_module(f"bench_{key}")
    result = module.run(quick)
    if isinstance(result, Section):
        result.key, result.quick = key, quick
        return result
    return _from_mapping(key, module.__doc__ or "", result, quick)


def _from_mapping(key: str, doc: str, figures: Mapping[str, Any], quick: bool) -> Section:
    """A module that returns plain figures: list them; its own `met` is its verdict."""
    section = Section(key=key, title=_title(key, doc), quick=quick)
    section.intro = f"Figures as returned by `benchmarks/bench_{key}.py` (see its docstring)."
    section.details = ["| figure | value |", "|---|---:|"]
    section.details += [f"| {name} | {value} |" for name, value in figures.items()]
    if "met" in figures:
        section.details += ["", f"Goal met, as the module judges it: {yes_no(figures['met'])}."]
    return section


def _title(key: str, doc: str) -> str:
    return TITLES.get(key) or doc.split(":")[0].split("\n")[0].strip() or key


def _pending(key: str, why: str, label: str = "Pending") -> Section:
    return Section(key=key, title=_title(key, ""), details=[f"**{label}.** {why}"])


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
what this machine measured, goals met or not. A small shared VM is noisy (its fsync latency
above all): compare ratios rather than absolute figures across runs, and rerun before
concluding from a small difference.

Reproduce with `nox -s bench` (or `python benchmarks/run.py`; `--quick` for a smaller run,
`--only NAME` for one of: {", ".join(names())}). This file is rewritten by that command.

Last run: `{command}` on {info["date"]}: {info["cpus"]} CPUs ({info["cpu"]}), Python
{info["python"]}, {info["os"]}.
"""
    order = [*names(), *sorted(set(blocks) - set(names()))]
    return head + "\n" + "\n\n".join(blocks[key] for key in order if key in blocks) + "\n"


# -- main -------------------------------------------------------------------------------------


def summary(section: Section) -> str:
    lines = [f"{section.title}:"]
    if not section.rows:
        return "\n".join(lines + [f"  {line}" for line in section.details[:20] if line])
    for r in section.rows:
        verdict = "" if r.met is None else ("  [met]" if r.met else "  [MISSED]")
        lines.append(f"  {r.metric}: {r.measured} vs {r.peer} ({r.ratio}); goal {r.goal}{verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    known = names()
    parser.add_argument("--only", nargs="+", choices=known, metavar="NAME", help=", ".join(known))
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under a minute")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite the doc")
    args = parser.parse_args(argv)

    info = machine()
    say(f"{info['cpus']} CPUs, Python {info['python']}, {info['date']}")
    blocks = previous_sections(DOC.read_text()) if args.only and DOC.exists() else {}
    failed = False
    started = time.monotonic()
    for key in args.only or known:
        t0 = time.monotonic()
        try:
            section = run_one(key, args.quick)
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
