"""Event loop: the broker and `jitctl connect` on uvloop against asyncio's own loop, same run.

    python benchmarks/bench_eventloop.py [--quick] [--json]

Two brokers from the same code and configuration run side by side, one started with
`JITCTL_EVENT_LOOP=asyncio`, the other with `uvloop`, each with `jitctl connect` on the same loop
as itself; for the tunnel a third pairing, the asyncio broker with `jitctl connect` on uvloop,
shows what the client side alone gains. Every measurement alternates between the pairings in
blocks, so drift on the machine (other processes, the disk's fsync latency) hits both alike.

- tunnel (bench_tunnel's servers and client): 64-byte ping-pong round trips through a `tcp`
  target, p50/p99 and CPU µs per trip of the broker and of `jitctl connect`; bulk upload, MB/s
  and CPU ms per MB.
- postgres (bench_postgres's setup, if PostgreSQL and pgbench are here): `pgbench -S -c 10`,
  `-M simple` and `-M prepared`, TPS and CPU µs per transaction (broker + `jitctl connect`).
- http (bench_http's upstream and load): `GET /ping` on 8 keep-alive connections, requests/s
  and CPU µs per request (broker + `jitctl connect`).

CPU time (user + system, all threads, from /proc) is the steadier figure on a small shared
machine; wall-clock figures are reported beside it. The judged rows ask one thing: does uvloop
cost less CPU than asyncio for the same work, where the loop is a real share of it (per round
trip, transaction, request). Bulk upload is reported, not judged: its CPU goes to the audit
trail (hashing, SQLite), which costs the same on both loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _util import CpuMeter, Row, Section, child, percentile, ratio, say, standalone_main

LOOPS = ("asyncio", "uvloop")
PAIRINGS = {  # name: (broker's loop, `jitctl connect`'s loop)
    "asyncio": ("asyncio", "asyncio"),
    "connect on uvloop": ("asyncio", "uvloop"),
    "uvloop": ("uvloop", "uvloop"),
}


def _have_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _brokers(config: str, tmp: Path, env: dict[str, str], token: Any) -> Iterator[dict[str, Any]]:
    """One logged-in broker per loop: {loop: BrokerProcess}."""
    from jitctl.testing.broker import BrokerProcess

    with contextlib.ExitStack() as stack:
        brokers = {}
        for loop in LOOPS:
            broker = BrokerProcess(
                config, state_dir=tmp / loop, env={**env, "JITCTL_EVENT_LOOP": loop}
            )
            stack.enter_context(broker)
            broker.login_with_token(token())
            brokers[loop] = broker
        yield brokers


def _connect(stack: contextlib.ExitStack, broker: Any, target: str, loop: str) -> tuple[int, int]:
    """`jitctl connect TARGET` on `loop`, stopped with SIGINT on the way out: (port, pid)."""
    process, address = broker.connect(target, env={"JITCTL_EVENT_LOOP": loop})

    def stop() -> None:
        process.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.communicate(timeout=15)

    stack.callback(stop)
    return int(address["port"]), process.pid


def _order(n: int) -> tuple[str, ...]:
    """asyncio first in even rounds, uvloop first in odd ones: whatever the order costs (a
    warmer cache, a neighbour's burst) falls on both alike."""
    return LOOPS if n % 2 == 0 else LOOPS[::-1]


def _medians(runs: dict[str, list[float]]) -> dict[str, Any]:
    """The median of each figure, and the runs themselves (`<figure>_runs`)."""
    out: dict[str, Any] = {k: statistics.median(v) for k, v in runs.items()}
    out.update({f"{k}_runs": v for k, v in runs.items()})
    return out


# -- tunnel ------------------------------------------------------------------------------------


def _tunnel(quick: bool) -> dict[str, Any]:
    import bench_tunnel as bt

    from jitctl.testing.issuer import TokenIssuer

    blocks, block = (3, 200) if quick else (8, 300)
    mb, reps = (16, 2) if quick else (64, 3)
    out: dict[str, Any] = {"trips": blocks * block, "bulk_mb": mb * reps}
    with (
        tempfile.TemporaryDirectory(prefix="jitctl-bench-loop-") as tmp,
        child(bt._start_servers(), "servers") as servers,
        TokenIssuer() as issuer,
        contextlib.ExitStack() as stack,
    ):
        assert servers.stdout is not None
        direct = json.loads(servers.stdout.readline())
        token = lambda: issuer.mint(lifetime=3600, groups=["agents"])  # noqa: E731
        brokers = stack.enter_context(
            _brokers(bt._config(issuer.url, direct), Path(tmp), {}, token)
        )
        echo = {
            name: (brokers[b].proc.pid, *_connect(stack, brokers[b], "echo", c))
            for name, (b, c) in PAIRINGS.items()
        }
        socks = {
            name: stack.enter_context(bt._connect_echo(port)) for name, (_, port, _) in echo.items()
        }
        meters = {name: CpuMeter({"broker": b, "connect": c}) for name, (b, _, c) in echo.items()}
        samples: dict[str, list[float]] = {name: [] for name in echo}
        say(f"eventloop: {blocks} x {block} round trips per pairing, alternating")
        for sock in socks.values():
            bt.round_trips(sock, 200)  # warm-up
        for n in range(blocks):
            for name in list(socks) if n % 2 == 0 else list(socks)[::-1]:
                with meters[name]:
                    samples[name] += bt.round_trips(socks[name], block)
        trips = blocks * block
        out["rtt"] = {
            name: {
                "p50_us": percentile(values, 50) * 1e6,
                "p99_us": percentile(values, 99) * 1e6,
                "broker_us": meters[name].cpu("broker") * 1e6 / trips,
                "connect_us": meters[name].cpu("connect") * 1e6 / trips,
            }
            for name, values in samples.items()
        }
        say(f"eventloop: bulk {mb} MB x {reps} per loop, alternating")
        sinks = {
            loop: (brokers[loop].proc.pid, *_connect(stack, brokers[loop], "sink", loop))
            for loop in LOOPS
        }
        bulk_meters = {
            loop: CpuMeter({"broker": b, "connect": c}) for loop, (b, _, c) in sinks.items()
        }
        seconds: dict[str, list[float]] = {loop: [] for loop in LOOPS}
        for _, port, _ in sinks.values():
            bt.bulk(port, 1 << 20)
        for n in range(reps):
            for loop in _order(n):
                port = sinks[loop][1]
                with bulk_meters[loop]:
                    seconds[loop].append(bt.bulk(port, mb << 20))
        out["bulk"] = {
            loop: {
                "mb_s": mb / statistics.median(seconds[loop]),
                "broker_ms_per_mb": bulk_meters[loop].cpu("broker") * 1e3 / (mb * reps),
                "connect_ms_per_mb": bulk_meters[loop].cpu("connect") * 1e3 / (mb * reps),
            }
            for loop in LOOPS
        }
    return out


# -- postgres ----------------------------------------------------------------------------------


def _postgres(quick: bool) -> dict[str, Any]:
    import bench_postgres as bp

    from jitctl.testing.issuer import TokenIssuer
    from jitctl.testing.postgres import PostgresServer, postgres_available

    reason = postgres_available() or (None if shutil.which("pgbench") else "pgbench is missing")
    if reason:
        return {"skipped": reason}
    seconds, rounds = (3.0, 2) if quick else (5.0, 4)
    runs: dict[str, dict[str, list[float]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="jitctl-bench-loop-pg-") as tmp,
        PostgresServer(settings={"max_connections": "100"}) as pg,
        TokenIssuer() as issuer,
        contextlib.ExitStack() as stack,
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        subprocess.run(
            ["pgbench", "-i", "-q", "-s", "1" if quick else "10", bp._dsn(pg.port, pg)],
            env={**env, "PGPASSWORD": pg.password},
            check=True,
            capture_output=True,
        )
        config = bp.CONFIG.format(issuer=issuer.url, port=pg.port, user=pg.user)
        token = lambda: issuer.mint(sub="bench", groups=["agents"], lifetime=7200)  # noqa: E731
        brokers = stack.enter_context(
            _brokers(config, Path(tmp), {"PG_BENCH_PASSWORD": pg.password}, token)
        )
        paths = {}
        for loop in LOOPS:
            port, pid = _connect(stack, brokers[loop], "bench", loop)
            paths[loop] = (bp._dsn(port, pg), [brokers[loop].proc.pid, pid])
        for mode in ("simple", "prepared"):
            for dsn, _ in paths.values():
                bp._pgbench(dsn, mode, bp.CLIENTS, 1, env)  # warm-up
        for n in range(rounds):
            for mode in ("simple", "prepared"):
                for loop in _order(n):
                    dsn, pids = paths[loop]
                    say(f"eventloop: pgbench -S -M {mode} on {loop}, round {n + 1}")
                    done = bp._measured(dsn, mode, bp.CLIENTS, seconds, env, pids)
                    figures = runs.setdefault(f"{mode} {loop}", {"tps": [], "cpu_us": []})
                    figures["tps"].append(done["tps"])
                    figures["cpu_us"].append(done["cpu_us_per_txn"])
    return {key: _medians(value) for key, value in runs.items()}


# -- http --------------------------------------------------------------------------------------


def _http(quick: bool) -> dict[str, Any]:
    import bench_http as bh

    from jitctl.testing.issuer import TokenIssuer

    seconds, rounds = (2.0, 2) if quick else (3.0, 6)
    upstream = subprocess.Popen(
        [sys.executable, "-c", bh.UPSTREAM],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    results: dict[str, dict[str, list[float]]] = {k: {"rps": [], "cpu_us": []} for k in LOOPS}
    try:
        assert upstream.stdout is not None
        up_port = int(upstream.stdout.readline())
        with (
            TokenIssuer() as issuer,
            tempfile.TemporaryDirectory(prefix="jitctl-bench-loop-http-") as tmp,
            contextlib.ExitStack() as stack,
        ):
            config = bh.CONFIG.format(issuer=issuer.url, port=up_port)
            token = lambda: issuer.mint(sub="bench", groups=["bench"], lifetime=3600)  # noqa: E731
            brokers = stack.enter_context(
                _brokers(config, Path(tmp), {"BENCH_TOKEN": "bench-secret"}, token)
            )
            ports = {}
            for loop in LOOPS:
                port, pid = _connect(stack, brokers[loop], "api", loop)
                ports[loop] = (port, CpuMeter({"broker": brokers[loop].proc.pid, "connect": pid}))
                asyncio.run(bh._load(port, 0.5))  # warm-up
            for n in range(rounds):
                for loop in _order(n):
                    port, meter = ports[loop]
                    say(f"eventloop: http requests/s on {loop}, round {n + 1}")
                    before = meter.cpu("broker") + meter.cpu("connect")
                    with meter:
                        rate, count = asyncio.run(bh._load(port, seconds))
                    used = meter.cpu("broker") + meter.cpu("connect") - before
                    results[loop]["rps"].append(rate)
                    results[loop]["cpu_us"].append(used * 1e6 / max(count, 1))
    finally:
        if upstream.stdin:
            upstream.stdin.close()
        upstream.wait(10)
    return {loop: _medians(value) for loop, value in results.items()}


# -- the section -------------------------------------------------------------------------------


def collect(quick: bool = False) -> dict[str, Any]:
    if not _have_uvloop():
        return {"skipped": "uvloop is not installed here"}
    return {"tunnel": _tunnel(quick), "postgres": _postgres(quick), "http": _http(quick)}


def _cpu_row(metric: str, uv: float, aio: float, unit: str, digits: int = 0) -> Row:
    return Row(
        metric,
        f"{uv:.{digits}f} {unit}",
        f"{aio:.{digits}f} {unit}",
        ratio(uv, aio),
        "< asyncio",
        uv < aio,
    )


def _ref_row(metric: str, uv: float, aio: float, unit: str, digits: int = 0) -> Row:
    return Row(
        metric,
        f"{uv:.{digits}f} {unit}",
        f"{aio:.{digits}f} {unit}",
        ratio(uv, aio),
        "(reference)",
        None,
    )


def rows(results: dict[str, Any]) -> list[Row]:
    if "skipped" in results:
        return []
    out: list[Row] = []
    rtt = results["tunnel"]["rtt"]
    uv, aio, half = rtt["uvloop"], rtt["asyncio"], rtt["connect on uvloop"]
    trips = results["tunnel"]["trips"]
    out += [
        _cpu_row(
            f"tunnel ping-pong: broker CPU per trip ({trips} trips)",
            uv["broker_us"],
            aio["broker_us"],
            "µs",
        ),
        _cpu_row(
            "tunnel ping-pong: `jitctl connect` CPU per trip",
            uv["connect_us"],
            aio["connect_us"],
            "µs",
        ),
        _cpu_row(
            "tunnel ping-pong: `jitctl connect` CPU per trip, only it on uvloop",
            half["connect_us"],
            aio["connect_us"],
            "µs",
        ),
        _ref_row("tunnel round trip p50", uv["p50_us"], aio["p50_us"], "µs"),
        _ref_row("tunnel round trip p99", uv["p99_us"], aio["p99_us"], "µs"),
    ]
    bulk = results["tunnel"]["bulk"]
    out += [
        _ref_row(
            f"tunnel bulk upload: broker CPU per MB ({results['tunnel']['bulk_mb']} MB)",
            bulk["uvloop"]["broker_ms_per_mb"],
            bulk["asyncio"]["broker_ms_per_mb"],
            "ms",
            2,
        ),
        _ref_row("tunnel bulk upload", bulk["uvloop"]["mb_s"], bulk["asyncio"]["mb_s"], "MB/s"),
    ]
    pg = results["postgres"]
    if "skipped" not in pg:
        for mode in ("simple", "prepared"):
            u, a = pg[f"{mode} uvloop"], pg[f"{mode} asyncio"]
            out += [
                _cpu_row(
                    f"pgbench -S -M {mode}: CPU per transaction (broker + connect)",
                    u["cpu_us"],
                    a["cpu_us"],
                    "µs",
                ),
                _ref_row(f"pgbench -S -M {mode}, 10 clients", u["tps"], a["tps"], "TPS"),
            ]
    http = results["http"]
    out += [
        _cpu_row(
            "http GET: CPU per request (broker + connect)",
            http["uvloop"]["cpu_us"],
            http["asyncio"]["cpu_us"],
            "µs",
        ),
        _ref_row(
            "http GET, 8 keep-alive connections",
            http["uvloop"]["rps"],
            http["asyncio"]["rps"],
            "req/s",
        ),
    ]
    return out


def run(quick: bool = False) -> Section:
    results = collect(quick)
    section = Section(key="eventloop", title="Event loop: uvloop against asyncio", quick=quick)
    section.intro = INTRO
    if "skipped" in results:
        section.details = [f"Not run: {results['skipped']}."]
        return section
    section.rows = rows(results)
    section.details = details(results)
    return section


def details(results: dict[str, Any]) -> list[str]:
    """Each run's figure beside its median, so the spread shows."""

    def runs(values: list[float]) -> str:
        return ", ".join(f"{v:.0f}" for v in values)

    lines = ["Each run, uvloop / asyncio (the table gives their medians):", ""]
    pg = results["postgres"]
    if "skipped" in pg:
        lines.append(f"- pgbench: not run ({pg['skipped']}).")
    else:
        for mode in ("simple", "prepared"):
            u, a = pg[f"{mode} uvloop"], pg[f"{mode} asyncio"]
            lines.append(
                f"- pgbench -M {mode}, CPU µs per transaction: {runs(u['cpu_us_runs'])} / "
                f"{runs(a['cpu_us_runs'])}; TPS: {runs(u['tps_runs'])} / {runs(a['tps_runs'])}"
            )
    u, a = results["http"]["uvloop"], results["http"]["asyncio"]
    lines.append(
        f"- http GET, CPU µs per request: {runs(u['cpu_us_runs'])} / {runs(a['cpu_us_runs'])}; "
        f"req/s: {runs(u['rps_runs'])} / {runs(a['rps_runs'])}"
    )
    lines += [
        "",
        "The tunnel's round trips run in blocks that alternate between the pairings (their order "
        "reversed every other block); pgbench and the http load alternate the two loops the "
        "same way, one run each per round. Everything shares this machine's CPUs with the "
        "servers and load generators, and with whatever else runs on it: a run that lands on "
        "a neighbour's burst shows as an outlier above.",
    ]
    return lines


INTRO = (
    "Two brokers built from the same code and configuration run side by side, one on asyncio's "
    "own event loop (`JITCTL_EVENT_LOOP=asyncio`), one on uvloop (the default where it is "
    "installed), each with `jitctl connect` on the same loop as itself; measurements alternate "
    "between them in blocks, so drift on the machine hits both. *jitctl* is the uvloop pair, "
    "*peer* the asyncio pair. One tunnel row keeps the broker on asyncio and puts only "
    "`jitctl connect` on uvloop. CPU is user + system time of the process, all its threads "
    "(the audit writer's too), per unit of work: on a small shared machine it is steadier than "
    "wall-clock figures, which are reported for reference. What uvloop takes over is the event "
    "loop itself and the TLS record layer around OpenSSL (CPython's `sslproto` is Python code); "
    "the plugins, the audit trail and its fsyncs cost the same on both."
)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return standalone_main(__doc__, collect, rows, "shorter rounds", args)


if __name__ == "__main__":
    sys.exit(main())
