"""Sessions named for what they do; each takes `session.posargs` for overrides.

nox -s tests            # the full suite (README's test command)
nox -s tests -- -k tunnel -x
nox -s lint typing      # ruff, mypy
nox -s bench            # benchmarks; rewrites docs/performance.md
nox -s demo             # jitctl demo in a fresh virtualenv
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["lint", "typing", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("pytest", *(session.posargs or ["-q", "-p", "no:cacheprovider"]))


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    session.run("ruff", "check", "jitctl", "plugins", "tests", "benchmarks", *session.posargs)
    session.run("ruff", "format", "--check", "jitctl", "plugins", "tests", "benchmarks")


@nox.session
def typing(session: nox.Session) -> None:
    session.install("-e", ".[test]", "mypy>=1.10")
    # The plugins are packages of their own (plugins/jitctl_*): checked strictly too.
    plugins = [str(path) for path in sorted(Path("plugins").glob("jitctl_*"))]
    session.run("mypy", *(session.posargs or ["--strict", "jitctl", *plugins]))


@nox.session
def bench(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    session.install(".")
    session.run("jitctl", "demo", *session.posargs)
