"""Tunnel throughput, added latency and set-up, against a direct connection in the same run.

Real pieces only: a `TokenIssuer`, `jitctl broker serve` (BrokerProcess), `jitctl login
--token-file`, and `jitctl connect sink --json` as a subprocess. The servers run in their own
subprocess (one thread per connection, blocking sockets), so neither the broker, the CLI nor
the measuring client shares a GIL with them; the measuring client is this process's main
thread (the issuer's HTTP thread is idle once the broker has its JWKS).

- sink: answers one byte `R` on accept (through the tunnel: once the session is open), counts
  bytes until EOF, then replies with the count. Throughput is timed from `R` to the count, so it
  is the steady state; opening a session is measured on its own.
- echo: sends back whatever it reads (TCP_NODELAY).

Direct and tunnelled measurements alternate, so drift on the machine hits both alike.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from _util import (
    CpuMeter,
    Row,
    Section,
    child,
    median,
    percentile,
    py_spy,
    ratio,
    say,
    syscalls,
)

THROUGHPUT_GOAL = 0.5  # tunnel MB/s >= 50% of direct
ADDED_LATENCY_GOAL_MS = 0.3  # per round trip, tunnel - direct
CHUNK = 256 * 1024
PING = 64  # bytes per round trip

# -- the servers (run in their own process) ---------------------------------------------------


def _sink(conn: socket.socket) -> None:
    with conn:
        conn.sendall(b"R")
        buffer = bytearray(1 << 20)
        count = 0
        while n := conn.recv_into(buffer):
            count += n
        conn.sendall(f"{count}\n".encode())


def _echo(conn: socket.socket) -> None:
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := conn.recv(65536):
            conn.sendall(data)


def _listen(handler: Callable[[socket.socket], None]) -> int:
    server = socket.create_server(("127.0.0.1", 0), backlog=64)

    def accept() -> None:
        while True:
            conn, _ = server.accept()
            threading.Thread(target=handler, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return int(server.getsockname()[1])


def serve() -> None:
    """Entry point of the server process: print the ports, serve until stdin closes."""
    ports = {"sink": _listen(_sink), "echo": _listen(_echo)}
    print(json.dumps(ports), flush=True)
    sys.stdin.read()


def _start_servers() -> subprocess.Popen[bytes]:
    here = str(Path(__file__).parent)
    code = f"import sys; sys.path.insert(0, {here!r}); import bench_tunnel; bench_tunnel.serve()"
    return subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )


# -- the measuring client ---------------------------------------------------------------------


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def bulk(port: int, total: int) -> float:
    """Send `total` bytes to the sink; seconds from its ready byte to its count."""
    payload = os.urandom(CHUNK)
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        if _recv_exactly(sock, 1) != b"R":
            raise ConnectionError("the sink did not say ready")
        start = time.perf_counter()
        sent = 0
        while sent < total:
            piece = payload[: min(CHUNK, total - sent)]
            sock.sendall(piece)
            sent += len(piece)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(64):
            reply += chunk
        elapsed = time.perf_counter() - start
    if int(reply) != total:
        raise AssertionError(f"the sink counted {reply!r}, {total} were sent")
    return elapsed


def _connect_echo(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def round_trips(sock: socket.socket, count: int) -> list[float]:
    """Seconds per PING-byte round trip through the echo server, `count` times."""
    message = b"x" * PING
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        sock.sendall(message)
        _recv_exactly(sock, PING)
        samples.append(time.perf_counter() - start)
    return samples


def setup(port: int) -> float:
    """Connect and complete the first PING round trip: what opening a session costs."""
    start = time.perf_counter()
    with _connect_echo(port) as sock:
        round_trips(sock, 1)
        return time.perf_counter() - start


# -- the tunnel -------------------------------------------------------------------------------


def _config(issuer_url: str, ports: dict[str, int]) -> str:
    lines = [f'[[identity.issuers]]\nissuer = "{issuer_url}"']
    for name, port in ports.items():
        lines.append(
            f'[[targets]]\nname = "{name}"\nprotocol = "tcp"\n'
            f'address = "127.0.0.1:{port}"\nallow_groups = ["agents"]'
        )
    return "\n".join(lines) + "\n"


def _connect(env: dict[str, str], target: str) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "jitctl", "connect", target, "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        raise RuntimeError(f"`jitctl connect {target}` exited with {proc.returncode}")
    return proc, int(json.loads(line)["port"])


# -- the benchmark ----------------------------------------------------------------------------


@dataclass
class Figures:
    quick: bool
    mb: int = 0
    bulk_secs: dict[str, list[float]] = field(default_factory=lambda: {"direct": [], "tunnel": []})
    bulk_cpu: CpuMeter | None = None
    warmup: int = 200
    rtt: dict[str, list[float]] = field(default_factory=lambda: {"direct": [], "tunnel": []})
    rtt_cpu: CpuMeter | None = None
    opened: dict[str, list[float]] = field(default_factory=lambda: {"direct": [], "tunnel": []})
    commits: list[float] = field(default_factory=list)
    disk_mbps: float = 0.0
    records: int = 0
    diagnosis: list[str] = field(default_factory=list)

    def mbps(self, path: str) -> float:
        return self.mb / median(self.bulk_secs[path])

    def added_ms(self, pct: float) -> float:
        """Tunnel minus direct, per round trip, at percentile `pct`."""
        return (percentile(self.rtt["tunnel"], pct) - percentile(self.rtt["direct"], pct)) * 1000

    @property
    def latency_met(self) -> bool:
        return max(self.added_ms(50), self.added_ms(99)) <= ADDED_LATENCY_GOAL_MS

    @property
    def throughput_met(self) -> bool:
        return self.mbps("tunnel") >= THROUGHPUT_GOAL * self.mbps("direct")


def run(quick: bool = False) -> Section:
    from jitctl.testing.broker import BrokerProcess
    from jitctl.testing.issuer import TokenIssuer

    fig = Figures(quick, mb=32 if quick else 256)
    bulk_reps = 2 if quick else 5
    blocks, block = (2, 250) if quick else (4, 500)
    setups = 10 if quick else 30

    with (
        tempfile.TemporaryDirectory(prefix="jitctl-bench-") as tmp,
        child(_start_servers(), "servers") as servers,
        TokenIssuer() as issuer,
    ):
        assert servers.stdout is not None
        direct = json.loads(servers.stdout.readline())
        # Before the broker writes hundreds of MB: their writeback would slow these fsyncs.
        say("tunnel: durable SQLite commits on the disk the broker will use")
        fig.commits = commit_latency(Path(tmp), 200 if quick else 500)
        say("tunnel: durable sequential write rate of that disk")
        fig.disk_mbps = disk_write_rate(Path(tmp), 256 if quick else 1024)
        state = Path(tmp) / "broker"
        with BrokerProcess(_config(issuer.url, direct), state_dir=state) as broker:
            assert broker.proc is not None
            token_file = Path(tmp) / "token"
            token_file.write_text(issuer.mint(lifetime=3600, groups=["agents"]))
            login = broker.jitctl("login", "--token-file", str(token_file))
            if login.returncode != 0:
                raise RuntimeError(f"jitctl login failed: {login.stderr}")
            sink_proc, sink_port = _connect(broker.env, "sink")
            echo_proc, echo_port = _connect(broker.env, "echo")
            with child(sink_proc, "connect sink"), child(echo_proc, "connect echo"):
                tunnel = {"sink": sink_port, "echo": echo_port}
                pids = {"broker": broker.proc.pid, "servers": servers.pid}

                say(f"tunnel: bulk {fig.mb} MB x {bulk_reps}, direct and tunnel alternating")
                fig.bulk_cpu = CpuMeter({**pids, "`jitctl connect`": sink_proc.pid})
                bulk(tunnel["sink"], 1 << 20)  # warm-up: session, JWKS, SQLite file
                for _ in range(bulk_reps):
                    fig.bulk_secs["direct"].append(bulk(direct["sink"], fig.mb << 20))
                    with fig.bulk_cpu:
                        fig.bulk_secs["tunnel"].append(bulk(tunnel["sink"], fig.mb << 20))

                say(f"tunnel: {blocks} x {block} round trips of {PING} bytes each way")
                fig.rtt_cpu = CpuMeter({**pids, "`jitctl connect`": echo_proc.pid})
                with _connect_echo(direct["echo"]) as d, _connect_echo(tunnel["echo"]) as t:
                    round_trips(d, fig.warmup)
                    round_trips(t, fig.warmup)
                    for _ in range(blocks):
                        fig.rtt["direct"] += round_trips(d, block)
                        with fig.rtt_cpu:
                            fig.rtt["tunnel"] += round_trips(t, block)

                say(f"tunnel: {setups} session set-ups")
                for _ in range(setups):
                    fig.opened["direct"].append(setup(direct["echo"]))
                    fig.opened["tunnel"].append(setup(tunnel["echo"]))

                if not (fig.throughput_met and fig.latency_met):
                    fig.diagnosis = diagnose(fig, broker.proc.pid, sink_proc, echo_proc, tunnel)
            fig.records = _count_records(state)
    return _section(fig)


def diagnose(
    fig: Figures,
    broker: int,
    sink: subprocess.Popen[bytes],
    echo: subprocess.Popen[bytes],
    tunnel: dict[str, int],
) -> list[str]:
    """Untimed runs under strace (durable commits per unit of work) and py-spy (where the
    samples go) for each missed goal."""
    seconds = 6 if fig.quick else 12
    lines: list[str] = []
    fsyncs = ("fsync", "fdatasync")
    if not fig.throughput_met:
        say("tunnel: throughput goal missed; counting commits and profiling under bulk load")
        mb = min(fig.mb, 64)
        counts = syscalls(broker, fsyncs, lambda: bulk(tunnel["sink"], mb << 20))
        if counts is not None:
            per_mb = sum(counts.values()) / mb
            lines += [
                "",
                f"Durable commits under bulk load (strace, {mb} MB untimed): the broker called "
                f"fsync/fdatasync {per_mb:.1f} times per tunnelled MB, i.e. one commit per "
                f"{1024 / per_mb if per_mb else float('inf'):.0f} KiB of client data.",
            ]
        pids = {"broker": broker, "`jitctl connect`": sink.pid}
        lines += py_spy("bulk load", pids, lambda: bulk(tunnel["sink"], mb << 20), seconds)
    if not fig.latency_met:
        say("tunnel: latency goal missed; counting commits and profiling under ping-pong")
        with _connect_echo(tunnel["echo"]) as sock:
            trips = 500
            counts = syscalls(broker, fsyncs, lambda: round_trips(sock, trips))
            if counts is not None:
                per_trip = sum(counts.values()) / trips
                lines += [
                    "",
                    f"Durable commits under ping-pong (strace, {trips} round trips untimed): the "
                    f"broker called fsync/fdatasync {per_trip:.2f} times per round trip.",
                ]
                if per_trip >= 1.5:
                    lines[-1] += (
                        " The request's record is committed before it is forwarded; the "
                        "reply's record gets a commit of its own, which nobody waits for but "
                        "which holds the single writer when the next request's record arrives, "
                        "so in a ping-pong each round trip waits for about two commits."
                    )
            pids = {"broker": broker, "`jitctl connect`": echo.pid}
            lines += py_spy("ping-pong load", pids, lambda: round_trips(sock, 100), seconds)
    return lines


def commit_latency(directory: Path, count: int) -> list[float]:
    """Seconds per durable one-row SQLite commit (WAL, synchronous=FULL) on this disk: the
    floor under the write-ahead wait that each client->upstream chunk pays."""
    import sqlite3

    db = sqlite3.connect(directory / "commit-latency.db", isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, data BLOB)")
        samples = []
        for n in range(count):
            start = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t VALUES (?, ?)", (n, b"x" * PING))
            db.execute("COMMIT")
            samples.append(time.perf_counter() - start)
        return samples
    finally:
        db.close()


def disk_write_rate(directory: Path, mb: int) -> float:
    """MB/s of durable sequential writes on this disk (1 MiB writes, an fdatasync every 2 MiB,
    as the broker's group commits come under bulk load): the most any write-ahead recorder can
    tunnel here, since every client->upstream byte must be on disk before it is forwarded."""
    path = directory / "disk-rate.bin"
    block = os.urandom(1 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        start = time.perf_counter()
        for n in range(mb):
            os.write(fd, block)
            if n % 2:
                os.fdatasync(fd)
        os.fdatasync(fd)
        return mb / (time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()


def _count_records(state: Path) -> int:
    import sqlite3

    with contextlib.closing(sqlite3.connect(state / "audit.db")) as db:
        return int(db.execute("SELECT count(*) FROM audit_records").fetchone()[0])


def _section(fig: Figures) -> Section:
    us = {k: (percentile(v, 50) * 1e6, percentile(v, 99) * 1e6) for k, v in fig.rtt.items()}
    added_med, added_p99 = fig.added_ms(50), fig.added_ms(99)
    goal = ADDED_LATENCY_GOAL_MS
    ms_open = {k: median(v) * 1000 for k, v in fig.opened.items()}
    trips, setups = len(fig.rtt["tunnel"]), len(fig.opened["tunnel"])
    reps = len(fig.bulk_secs["tunnel"])
    load, pong = fig.bulk_cpu, fig.rtt_cpu
    assert load is not None and pong is not None
    section = Section(
        key="tunnel",
        title="Tunnel throughput and added latency",
        quick=fig.quick,
        intro=INTRO,
        rows=[
            Row(
                f"bulk upload, {fig.mb} MB, median of {reps}",
                f"{fig.mbps('tunnel'):.0f} MB/s",
                f"{fig.mbps('direct'):.0f} MB/s",
                f"{fig.mbps('tunnel') / fig.mbps('direct'):.1%}",
                f"≥ {THROUGHPUT_GOAL:.0%} of direct",
                fig.throughput_met,
            ),
            Row(
                "bulk upload against this disk's durable write rate (the write-ahead ceiling)",
                f"{fig.mbps('tunnel'):.0f} MB/s",
                f"{fig.disk_mbps:.0f} MB/s",
                f"{fig.mbps('tunnel') / fig.disk_mbps:.1%}",
                "(reference)",
                None,
            ),
            Row(
                f"round trip ({PING} B), median of {trips}",
                f"{us['tunnel'][0]:.0f} µs",
                f"{us['direct'][0]:.0f} µs",
                ratio(us["tunnel"][0], us["direct"][0]),
                f"added ≤ {goal} ms (added {added_med:.3f} ms)",
                added_med <= goal,
            ),
            Row(
                f"round trip ({PING} B), p99 of {trips}",
                f"{us['tunnel'][1]:.0f} µs",
                f"{us['direct'][1]:.0f} µs",
                ratio(us["tunnel"][1], us["direct"][1]),
                f"added ≤ {goal} ms (added {added_p99:.3f} ms)",
                added_p99 <= goal,
            ),
            Row(
                f"session set-up (connect + first round trip), median of {setups}",
                f"{ms_open['tunnel']:.1f} ms",
                f"{ms_open['direct']:.2f} ms",
                ratio(ms_open["tunnel"], ms_open["direct"]),
                "(reference)",
                None,
            ),
        ],
    )
    mb_total = fig.mb * reps
    section.details = [
        f"Bulk: {CHUNK // 1024} KiB `sendall`s of random bytes, timed from the sink's ready "
        "byte to its byte count, so every byte has reached the upstream (after its record was "
        f"durable). Seconds per run, direct: {_list(fig.bulk_secs['direct'])}; tunnel: "
        f"{_list(fig.bulk_secs['tunnel'])}. Round trips: {fig.warmup} warm-up trips per path, "
        "then alternating blocks of direct and tunnel trips, one connection each, TCP_NODELAY. "
        f"The audit store held {fig.records:,} records after the run.",
        "",
        "Where the CPU goes (user + system time of each process, all its threads, over the "
        f"tunnelled part only; {os.cpu_count()} CPUs):",
        "",
        "| process | bulk: CPU ms per MB (user + sys) | bulk: CPUs busy "
        "| ping-pong: CPU µs per trip (user + sys) | ping-pong: CPUs busy |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {load.cpu(name) * 1e3 / mb_total:.1f} "
            f"({load.user[name] * 1e3 / mb_total:.1f} + {load.system[name] * 1e3 / mb_total:.1f}) "
            f"| {load.cpu(name) / load.wall:.2f} "
            f"| {pong.cpu(name) * 1e6 / trips:.0f} "
            f"({pong.user[name] * 1e6 / trips:.0f} + {pong.system[name] * 1e6 / trips:.0f}) "
            f"| {pong.cpu(name) / pong.wall:.2f} |"
            for name in load.pids
        ),
        f"| *wall time* | {load.wall * 1000 / mb_total:.1f} | | {pong.wall * 1e6 / trips:.0f} | |",
        "",
        f"For scale, on the same disk earlier in the same run: one durable SQLite commit (WAL, "
        f"`synchronous=FULL`, one {PING}-byte row) takes {median(fig.commits) * 1e6:.0f} µs "
        f"median, {percentile(fig.commits, 99) * 1e6:.0f} µs p99 ({len(fig.commits)} commits). "
        "A ping-pong round trip pays at least one such commit (its client->upstream bytes are "
        "forwarded only once recorded), plus two extra TLS-and-asyncio hops each way.",
    ]
    section.details += fig.diagnosis
    return section


INTRO = (
    "A `tcp` target through the whole path — client → `jitctl connect` (local port) → TLS → "
    "`jitctl broker serve` → upstream — against a direct connection to the same upstream "
    "server, measured alternately in the same run. The measuring client (this benchmark's main "
    "thread), `jitctl connect`, the broker and the servers (their own process, a thread per "
    "connection) are separate processes, so none shares a GIL with another; on a 2-CPU machine "
    "the tunnel's processes do compete for the CPUs, as they would on a small VM.\n\n"
    "**What the tunnel pays for:** every client→upstream byte is recorded in the audit store "
    "(SQLite, WAL, `synchronous=FULL`: an fsync per commit) and is forwarded only once that "
    "record is durable (write-ahead; commits are grouped). Upstream→client bytes are recorded "
    "too, without waiting for the disk.\n\n"
    "**Why the throughput goal cannot be met on this machine:** write-ahead means no "
    "client→upstream byte leaves before it is on disk, so the tunnel can never move bytes "
    "faster than the disk makes them durable. The table shows that rate, measured in the same "
    "run (1 GiB in 1 MiB writes, an fdatasync every 2 MiB: long enough to get past the disk's "
    "write cache); loopback TCP is several times faster than it, "
    'so "≥ 50% of direct" would need a disk faster than half of loopback. SQLite\'s WAL also '
    "writes each byte twice (the WAL, then the checkpoint into the database file)."
)


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


if __name__ == "__main__":
    from run import main

    sys.exit(main(["--only", "tunnel", *sys.argv[1:]]))
