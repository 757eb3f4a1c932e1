"""HTTP gateway: requests per second, added latency, a large streamed response.

    python benchmarks/bench_http.py            # 5 s load rounds, 1 GiB stream
    python benchmarks/bench_http.py --quick    # 2 s rounds, 200 MiB stream
    python benchmarks/bench_http.py --json     # the raw figures
    python benchmarks/bench_http.py --shell    # only the http shell in-process (JSON)

Real pieces only: the threaded HTTP/1.1 upstream of jitctl.testing.http_upstream in its own
process, `jitctl broker serve` (BrokerProcess) with an http target (a bearer token injected, a
deny rule, recording on), `jitctl connect api --no-client --json`. The peer of every figure is
the same client talking to the same upstream directly, in the same run; direct and gateway
rounds alternate so drift hits both.

- requests/s: `CONNECTIONS` keep-alive connections, each sending `GET /ping` and reading the
  4-byte answer in a loop for the round's length (an asyncio client of raw sockets, so the
  client is not what limits). Through the gateway every request and response is parsed by
  httptools (llhttp) and written again, the credential swapped, and the exchange recorded
  (`http.request` + `http.response`).
- added latency: one connection, `GET /ping` one after another, median of 500.
- POST latency: the same with `POST /echo` (with a small JSON body), median of 200.
- WebSocket: `WS_CONNECTIONS` WebSockets to the upstream's echo, each sending a small text
  message and reading its echo in a loop: messages/s direct, through `api` (its token is
  scrubbed from what the upstream sends, so every message is re-framed) and through `plain`
  (no credential, no masks: frames pass as sent), and the broker's CPU per message.
- stream: one `GET /stream?bytes=N` read to the end; MB/s, and how much the broker's resident
  memory grew meanwhile (sampled every 50 ms).
- CPU per request: the broker's and `jitctl connect`'s CPU time (user + system, all threads)
  over the gateway's load rounds, divided by the requests answered. On a shared machine wall
  time is noisy; CPU per request says what the gateway costs.
- the Python floor: the same load through two bare relays (benchmarks/pyrelay.py) on jitctl's
  event loop and TLS contexts, where `jitctl connect` and the broker stand, bytes only; and
  the write-ahead floor: the same relays, the far one appending each request to a file and
  fdatasyncing it before forwarding (requests waiting together share one fdatasync), which is
  the write-ahead promise with nothing else. Beside them, what one durable append (4 KiB write
  + fdatasync) costs on the file system of the broker's state.
- the native floor (where haproxy is installed): the same load through jitctl's topology built
  from native parts that record nothing, a local haproxy speaking TLS to a second one that
  sets the bearer token and forwards to the upstream, one thread each. On this machine's
  shared cores it says what any implementation of the design could reach.
- the shell alone (`--shell` runs only this): the http shell (`run_session`) in-process with
  the bench target's settings, an in-memory tunnel in front and an in-memory upstream behind
  that answers each request with the test upstream's `/ping` bytes, so nothing ever waits and
  no socket, TLS or other process is involved. Per request: the shell's CPU µs, the records
  it writes and their payload bytes, and what the audit writer's `prepare` (canonical JSON, on
  the event loop) and `link` (SHA-256 chaining, in its thread) spend on them. Best of three.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

from _util import CpuMeter, Row, Section, ratio, say, standalone_main

CONNECTIONS = 8
RPS_GOAL = 0.50  # gateway >= 50% of direct
STREAM_FULL = 1 << 30
STREAM_QUICK = 200 << 20
RSS_GOAL_MB = 64
WS_CONNECTIONS = 4
WS_MESSAGE = b'{"event": "tick", "n": 42, "note": "a small WebSocket message"}'
SHELL_REQUESTS = 20_000
SHELL_QUICK = 5_000
# What jitctl.testing.http_upstream answers to `GET /ping` (the --shell upstream replays it).
PONG = (
    b"HTTP/1.1 200 OK\r\nServer: BaseHTTP/0.6 Python/3.11.7\r\n"
    b"Date: Sun, 22 Nov 2026 18:00:00 GMT\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 4\r\n\r\npong"
)

CONFIG = """
[[identity.issuers]]
issuer = "{issuer}"

[[targets]]
name = "api"
protocol = "http"
address = "http://127.0.0.1:{port}"
allow_groups = ["bench"]
credential = {{ token_env = "BENCH_TOKEN" }}

[[targets.rules]]
name = "no-deletes"
match = {{ method = ["DELETE"] }}
action = "deny"

[[targets]]
name = "reads"
protocol = "http"
address = "http://127.0.0.1:{port}"
allow_groups = ["bench"]
credential = {{ token_env = "BENCH_TOKEN" }}
http = {{ write_ahead = "changes" }}

[[targets]]
name = "plain"
protocol = "http"
address = "http://127.0.0.1:{port}"
allow_groups = ["bench"]

[[targets]]
name = "raw"
protocol = "tcp"
address = "127.0.0.1:{port}"
allow_groups = ["bench"]
"""

UPSTREAM = (
    "import sys, time\n"
    "from jitctl.testing.http_upstream import HttpUpstream\n"
    "with HttpUpstream() as u:\n"
    "    print(u.port, flush=True)\n"
    "    sys.stdin.read()\n"
)


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> None:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)


def _request(method: str, path: str, body: bytes = b"") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


async def _load(port: int, seconds: float) -> tuple[float, int]:
    """(requests/s, requests answered)."""
    request = _request("GET", "/ping")
    deadline = time.perf_counter() + seconds
    counts = [0] * CONNECTIONS

    async def one(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                await _exchange(reader, writer, request)
                counts[index] += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(CONNECTIONS)))
    return sum(counts) / (time.perf_counter() - started), sum(counts)


def _ws_frame(text: bytes) -> bytes:
    """A client's text frame (masked, RFC 6455 §5.3), made once and sent again and again: the
    echo and the gateway unmask it whatever the key is."""
    assert len(text) < 126
    key = os.urandom(4)
    return bytes([0x81, 0x80 | len(text)]) + key + bytes(b ^ key[i % 4] for i, b in enumerate(text))


async def _ws_load(port: int, seconds: float) -> tuple[float, int]:
    """(messages/s, messages echoed): `WS_CONNECTIONS` WebSockets to the upstream's echo, each
    sending a `WS_MESSAGE` text message and reading its echo in a loop."""
    frame = _ws_frame(WS_MESSAGE)
    deadline = time.perf_counter() + seconds
    counts = [0] * WS_CONNECTIONS

    async def one(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            key = base64.b64encode(os.urandom(16))
            writer.write(
                b"GET /ws HTTP/1.1\r\nHost: bench\r\nConnection: Upgrade\r\n"
                b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
                + key
                + b"\r\n\r\n"
            )
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101"), head
            while time.perf_counter() < deadline:
                writer.write(frame)
                first, second = await reader.readexactly(2)
                assert first == 0x81 and second == len(WS_MESSAGE), (first, second)
                await reader.readexactly(second)
                counts[index] += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(WS_CONNECTIONS)))
    return sum(counts) / (time.perf_counter() - started), sum(counts)


async def _latency(port: int, request: bytes, count: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    times = []
    try:
        await _exchange(reader, writer, request)  # warm: the tunnel's session is set up
        for _ in range(count):
            started = time.perf_counter()
            await _exchange(reader, writer, request)
            times.append(time.perf_counter() - started)
    finally:
        writer.close()
    return statistics.median(times) * 1000


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _stream(port: int, size: int, pid: int | None) -> dict[str, float]:
    import httpx

    before = _rss_mb(pid) if pid else 0.0
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while pid and not done.is_set():
            peak[0] = max(peak[0], _rss_mb(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    got = 0
    started = time.perf_counter()
    try:
        url = f"http://127.0.0.1:{port}/stream?bytes={size}"
        with httpx.stream("GET", url, timeout=600) as response:
            for chunk in response.iter_raw(1 << 20):
                got += len(chunk)
    finally:
        done.set()
        sampler.join()
    elapsed = time.perf_counter() - started
    if got != size:
        raise RuntimeError(f"stream: got {got} of {size} bytes")
    return {"mb_s": size / 1e6 / elapsed, "rss_growth_mb": peak[0] - before}


HAPROXY = """
global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend listen
  bind 127.0.0.1:{port}{bind_tls}
{inject}  default_backend onward
backend onward
  http-reuse always
  server next 127.0.0.1:{onward}{server_tls}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _native_chain(up_port: int) -> Iterator[tuple[int, dict[str, int]] | None]:
    """jitctl's topology built from native parts, recording nothing: a local haproxy (where
    `jitctl connect` sits) speaking TLS to a second haproxy (where the broker sits: it sets
    the bearer token and forwards to the upstream), one thread each, as jitctl's processes
    have one event loop each. (port, pids), or None where haproxy is not installed."""
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(binary).exists():
        yield None
        return
    from jitctl.broker.tlsfiles import ensure_tls_files

    with tempfile.TemporaryDirectory(prefix="jitctl-bench-haproxy-") as tmp:
        folder = Path(tmp)
        ca, cert, key = ensure_tls_files(folder, ["127.0.0.1"])
        (folder / "both.pem").write_bytes(cert.read_bytes() + key.read_bytes())
        far, near = _free_port(), _free_port()
        configs = {
            "far": HAPROXY.format(
                port=far,
                bind_tls=f" ssl crt {folder / 'both.pem'}",
                inject='  http-request set-header Authorization "Bearer bench-secret"\n',
                onward=up_port,
                server_tls="",
            ),
            "near": HAPROXY.format(
                port=near,
                bind_tls="",
                inject="",
                onward=far,
                server_tls=f" ssl verify required ca-file {ca}",
            ),
        }
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for name, text in configs.items():
                (folder / f"{name}.cfg").write_text(text)
                procs[name] = subprocess.Popen(
                    [binary, "-f", str(folder / f"{name}.cfg")],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            deadline = time.monotonic() + 10
            for port in (far, near):
                while True:
                    try:
                        socket.create_connection(("127.0.0.1", port), 1).close()
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise RuntimeError("haproxy did not start") from None
                        time.sleep(0.05)
            yield near, {f"haproxy {name}": proc.pid for name, proc in procs.items()}
        finally:
            for proc in procs.values():
                proc.terminate()
                proc.wait(10)


@contextlib.contextmanager
def _python_chain(up_port: int, durable: bool = False) -> Iterator[tuple[int, dict[str, int]]]:
    """The same topology from two bare Python relays (benchmarks/pyrelay.py): jitctl's event
    loop and TLS contexts, nothing parsed or recorded. (port, pids). `durable`: the far relay
    writes each request ahead to a file and fdatasyncs it (group commit) before forwarding."""
    script = Path(__file__).resolve().parent / "pyrelay.py"
    with tempfile.TemporaryDirectory(prefix="jitctl-bench-pyrelay-") as tmp:
        far, near = _free_port(), _free_port()
        procs: dict[str, subprocess.Popen[str]] = {}
        extra = ["--durable", str(Path(tmp) / "ahead.log")] if durable else []
        try:
            for name, port, onward in (("far", far, up_port), ("near", near, far)):
                procs[name] = subprocess.Popen(
                    [sys.executable, str(script), name, str(port), str(onward), tmp]
                    + (extra if name == "far" else []),
                    stdout=subprocess.PIPE,
                    text=True,
                )
                stdout = procs[name].stdout
                assert stdout is not None
                if stdout.readline().strip() != "ready":
                    raise RuntimeError(f"benchmarks/pyrelay.py {name} did not start")
            yield near, {f"relay {name}": proc.pid for name, proc in procs.items()}
        finally:
            for proc in procs.values():
                proc.terminate()
                proc.wait(10)


def collect(quick: bool = False) -> dict[str, Any]:
    from jitctl.testing.broker import BrokerProcess
    from jitctl.testing.issuer import TokenIssuer

    seconds = 2.0 if quick else 5.0
    rounds = 1 if quick else 3
    size = STREAM_QUICK if quick else STREAM_FULL
    results: dict[str, Any] = {"seconds": seconds, "rounds": rounds, "size": size}
    upstream = subprocess.Popen(
        [sys.executable, "-c", UPSTREAM], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert upstream.stdout is not None
        up_port = int(upstream.stdout.readline())
        with TokenIssuer() as issuer, tempfile.TemporaryDirectory() as tmp:
            config = CONFIG.format(issuer=issuer.url, port=up_port)
            broker = BrokerProcess(
                config, state_dir=Path(tmp) / "broker", env={"BENCH_TOKEN": "bench-secret"}
            )
            with broker:
                broker.login_with_token(issuer.mint(sub="bench", groups=["bench"], lifetime=3600))
                process, address = broker.connect("api")
                gw_port = int(address["port"])
                assert broker.proc is not None
                pids = {"broker": broker.proc.pid, "upstream": upstream.pid}
                cpu: dict[str, dict[str, float]] = {}
                try:
                    # The goal's rounds, with the write-ahead floor in the same alternation:
                    # the floor is what says whether the goal is reachable at all, so it is
                    # measured as often as the goal, against the same direct rounds.
                    paths = ("direct", "gateway", "python_durable")
                    rps: dict[str, list[float]] = {via: [] for via in paths}
                    with _python_chain(up_port, durable=True) as (floor_port, floor_pids):
                        meters = {
                            "direct": CpuMeter(pids),
                            "gateway": CpuMeter({**pids, "connect": process.pid}),
                            "python_durable": CpuMeter(floor_pids),
                        }
                        ports = dict(zip(paths, (up_port, gw_port, floor_port), strict=True))
                        answered = _alternate(
                            "requests/s", _load, ports, meters, rps, seconds, rounds
                        )
                    results["rps"] = {k: statistics.median(v) for k, v in rps.items()}
                    results["rounds_rps"] = rps
                    for via, meter in meters.items():
                        cpu[via] = _per_request(meter, answered[via])
                    # For context: reads not written ahead, and the tunnel alone (tcp target).
                    for name, key in (("reads", "changes_only"), ("raw", "tcp_tunnel")):
                        other, other_address = broker.connect(name)
                        try:
                            say(f"http: requests/s through {name}")
                            meter = CpuMeter({**pids, "connect": other.pid})
                            with meter:
                                rate, count = asyncio.run(
                                    _load(int(other_address["port"]), seconds)
                                )
                            results["rps"][key] = rate
                            cpu[key] = _per_request(meter, count)
                        finally:
                            other.send_signal(signal.SIGINT)
                            other.communicate(timeout=15)
                    with _native_chain(up_port) as chain:
                        if chain is not None:
                            say("http: requests/s through two haproxies, TLS between")
                            meter = CpuMeter(chain[1])
                            with meter:
                                rate, count = asyncio.run(_load(chain[0], seconds))
                            results["rps"]["native_chain"] = rate
                            cpu["native_chain"] = _per_request(meter, count)
                    with _python_chain(up_port) as (port, relay_pids):
                        say("http: requests/s through two bare Python relays, TLS between")
                        meter = CpuMeter(relay_pids)
                        with meter:
                            rate, count = asyncio.run(_load(port, seconds))
                        results["rps"]["python_chain"] = rate
                        cpu["python_chain"] = _per_request(meter, count)
                    results["durable_write"] = _durable_write_cost(Path(tmp))
                    results["cpu_us_per_request"] = cpu
                    say("http: latency")
                    get, post = _request("GET", "/ping"), _request("POST", "/echo", b"{}")
                    results["latency_ms"] = {
                        via: asyncio.run(_latency(port, get, 500))
                        for via, port in (("direct", up_port), ("gateway", gw_port))
                    }
                    results["post_latency_ms"] = {
                        via: asyncio.run(_latency(port, post, 200))
                        for via, port in (("direct", up_port), ("gateway", gw_port))
                    }
                    results["ws"] = _ws_rounds(broker, up_port, gw_port, seconds, rounds)
                    say(f"http: {size >> 20} MiB streamed response")
                    results["stream"] = {
                        "direct": _stream(up_port, size, None),
                        "gateway": _stream(gw_port, size, broker.proc.pid),
                    }
                finally:
                    process.send_signal(signal.SIGINT)
                    process.communicate(timeout=15)
    finally:
        if upstream.stdin:
            upstream.stdin.close()
        upstream.wait(10)
    results["cpus"] = os.cpu_count()
    say("http: the shell alone")
    results["shell"] = shell_run(SHELL_QUICK if quick else SHELL_REQUESTS)
    return results


def _alternate(
    what: str,
    load: Callable[[int, float], Coroutine[Any, Any, tuple[float, int]]],
    ports: dict[str, int],
    meters: dict[str, CpuMeter],
    rates: dict[str, list[float]],
    seconds: float,
    rounds: int,
) -> dict[str, int]:
    """`rounds` times `load` on each of `ports` in turn (drift hits every path alike), each
    under its meter; each round's rate goes into `rates`. The count answered per path."""
    answered = dict.fromkeys(ports, 0)
    for n in range(rounds):
        for via, port in ports.items():
            say(f"http: {what} {via} round {n + 1}")
            with meters[via]:
                rate, count = asyncio.run(load(port, seconds))
            rates[via].append(rate)
            answered[via] += count
    return answered


def _ws_rounds(
    broker: Any, up_port: int, gw_port: int, seconds: float, rounds: int
) -> dict[str, Any]:
    """WebSocket echo messages/s: direct, through `api` (its token is scrubbed from what the
    upstream sends, so every message is re-framed: plugins/jitctl_http/reframe.py) and through
    `plain` (no credential, no masks: the frames pass as they are), alternating; the broker's
    CPU per message on each gateway path."""
    plain, plain_address = broker.connect("plain")
    try:
        ports = {"direct": up_port, "reframed": gw_port, "passthrough": int(plain_address["port"])}
        rates: dict[str, list[float]] = {via: [] for via in ports}
        meters = {via: CpuMeter({"broker": broker.proc.pid}) for via in ports}
        echoed = _alternate("WebSocket messages/s", _ws_load, ports, meters, rates, seconds, rounds)
        return {
            "rate": {via: statistics.median(r) for via, r in rates.items()},
            "broker_us": {
                via: round(meters[via].cpu("broker") / max(echoed[via], 1) * 1e6, 1)
                for via in ("reframed", "passthrough")
            },
        }
    finally:
        plain.send_signal(signal.SIGINT)
        plain.communicate(timeout=15)


def _durable_write_cost(directory: Path, count: int = 500) -> dict[str, float]:
    """What one durable append costs on the file system the broker's state is on: a 4 KiB
    write and fdatasync, as an audit commit ends. CPU µs (user + system of this thread, which
    on a virtual machine includes the exits to the host the flush takes) and wall µs."""
    path = directory / "durable-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        page = b"x" * 4096
        cpu, wall = time.thread_time(), time.perf_counter()
        for _ in range(count):
            os.write(fd, page)
            os.fdatasync(fd)
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    finally:
        os.close(fd)
        path.unlink()
    return {"cpu_us": round(cpu / count * 1e6, 1), "wall_us": round(wall / count * 1e6, 1)}


def _per_request(meter: CpuMeter, requests: int) -> dict[str, float]:
    """CPU µs per request of each measured process (not the load client)."""
    return {
        name: round(meter.cpu(name) / max(requests, 1) * 1e6, 1)
        for name in meter.pids
        if name != "client"
    }


# -- the http shell alone ------------------------------------------------------------------------


class _ShellIO:
    """The tunnel in front of the shell: `count` keep-alive `GET /ping`s, one after the other
    (each once the previous answer is out), then the client goes away. Records are kept for
    the audit figures; their futures are done at once, as if the disk were infinitely fast."""

    def __init__(self, target: Any, count: int) -> None:
        from jitctl.plugin import SessionContext

        self.context = SessionContext(
            session_id="bench",
            target=target,
            subject="bench",
            groups=("bench",),
            settings={"credential": {"token": "bench-secret"}},
        )
        self.upstream = target.address
        self.ended = asyncio.Event()
        self.left = count
        self.request = _request("GET", "/ping")
        self.records: list[Any] = []
        self.answered = 0
        self.reason = ""

    async def start(self, details: Any = None) -> None:
        pass

    async def refuse(self, code: str, error: str, hint: str = "") -> None:
        raise RuntimeError(f"shell refused: {code}: {error}")

    async def read(self) -> bytes:
        if not self.left:
            return b""
        self.left -= 1
        return self.request

    async def write(self, data: bytes) -> None:
        if not data.startswith(b"HTTP/1.1 200 ") or not data.endswith(b"pong"):
            raise RuntimeError(f"unexpected answer through the shell: {data[:200]!r}")
        self.answered += 1

    def record(self, record: Any, time_us: int = 0) -> Any:
        self.records.append(record)
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    def end(self, reason: str, error: bool = False) -> None:
        self.reason = reason


class _Upstream:
    """Both ends of an in-memory upstream: each request written gets `PONG` to read."""

    def __init__(self) -> None:
        self.answers: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data.startswith(b"GET /ping "):
            raise RuntimeError(f"unexpected request through the shell: {data[:200]!r}")
        self.answers.append(PONG)

    async def drain(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default  # plain TCP: no "ssl_object"

    async def read(self, size: int) -> bytes:
        return self.answers.pop() if self.answers else b""

    def close(self) -> None:
        pass


def shell_run(count: int = SHELL_REQUESTS) -> dict[str, Any]:
    """The http shell alone, per request (module docstring): best of three runs each for
    `write_ahead = "all"` (the default) and `"changes"`."""
    import gc
    from unittest import mock

    from jitctl.audit.chain import link, prepare
    from jitctl.audit.records import Actor, NewRecord
    from jitctl.config import Target
    from jitctl.gateway.http import run_session
    from jitctl.gateway.http.upstream import UpstreamConnection

    async def dial(cls: Any, upstream: Any) -> UpstreamConnection:
        end = _Upstream()
        return UpstreamConnection(end, end)  # type: ignore[arg-type]

    actor = Actor("bench", groups=("bench",), client_addr="127.0.0.1:1")
    figures: dict[str, Any] = {"requests": count}
    for write_ahead in ("all", "changes"):
        target = Target.model_validate(
            {
                "name": "api",
                "protocol": "http",
                "address": "http://127.0.0.1:9",
                "allow_groups": ["bench"],
                "credential": {"token_env": "BENCH_TOKEN"},
                "rules": [
                    {"name": "no-deletes", "match": {"method": ["DELETE"]}, "action": "deny"}
                ],
                "http": {"write_ahead": write_ahead},
            }
        )
        best: tuple[float, float, int, int] | None = None
        for _ in range(3):
            io = _ShellIO(target, count)
            gc.collect()
            with mock.patch.object(UpstreamConnection, "open", classmethod(dial)):
                start = time.process_time()
                asyncio.run(run_session(io))
                shell_s = time.process_time() - start
            if io.answered != count:
                raise RuntimeError(f"the shell answered {io.answered} of {count}: {io.reason}")
            gc.collect()
            start = time.process_time()
            prepared = [
                prepare(NewRecord(r.kind, "bench", "api", actor, dict(r.payload), r.data))
                for r in io.records
            ]
            previous = "0" * 64
            for seq, item in enumerate(prepared, 1):
                previous = link(item, seq, previous).hash
            audit_s = time.process_time() - start
            payload = sum(len(item.payload_json) for item in prepared)
            run = (shell_s, audit_s, len(prepared), payload)
            best = run if best is None or run[0] < best[0] else best
        assert best is not None
        shell_s, audit_s, records, payload = best
        figures[write_ahead] = {
            "shell_us": round(shell_s / count * 1e6, 1),
            "records": round(records / count, 2),
            "payload_bytes": round(payload / count),
            "audit_prepare_link_us": round(audit_s / count * 1e6, 1),
        }
    return figures


def rows(results: dict[str, Any]) -> list[Row]:
    rps, lat, post = results["rps"], results["latency_ms"], results["post_latency_ms"]
    stream = results["stream"]
    return [
        Row(
            f"GET requests/s, {CONNECTIONS} keep-alive connections",
            f"{rps['gateway']:.0f}",
            f"{rps['direct']:.0f} direct",
            ratio(rps["gateway"], rps["direct"]),
            f">= {RPS_GOAL:.0%} of direct",
            rps["gateway"] >= RPS_GOAL * rps["direct"],
        ),
        Row(
            'the same, `write_ahead = "changes"` (reads recorded when they end)',
            f"{rps['changes_only']:.0f}",
            f"{rps['direct']:.0f} direct",
            ratio(rps["changes_only"], rps["direct"]),
            "context",
            None,
        ),
        Row(
            "the same load through a `tcp` target (the tunnel alone)",
            f"{rps['tcp_tunnel']:.0f}",
            f"{rps['direct']:.0f} direct",
            ratio(rps["tcp_tunnel"], rps["direct"]),
            "context",
            None,
        ),
        *_floor_rows(results),
        *_cpu_rows(results),
        Row(
            "GET latency (median, one connection)",
            f"{lat['gateway']:.2f} ms",
            f"{lat['direct']:.2f} ms direct",
            f"+{lat['gateway'] - lat['direct']:.2f} ms",
            "reported",
            None,
        ),
        Row(
            "POST latency (median, one connection)",
            f"{post['gateway']:.2f} ms",
            f"{post['direct']:.2f} ms direct",
            f"+{post['gateway'] - post['direct']:.2f} ms",
            "reported",
            None,
        ),
        *_ws_rows(results),
        Row(
            f"{results['size'] >> 20} MiB streamed response",
            f"{stream['gateway']['mb_s']:.0f} MB/s",
            f"{stream['direct']['mb_s']:.0f} MB/s direct",
            ratio(stream["gateway"]["mb_s"], stream["direct"]["mb_s"]),
            "reported",
            None,
        ),
        Row(
            "broker memory growth while streaming",
            f"{stream['gateway']['rss_growth_mb']:.1f} MB",
            f"{results['size'] >> 20} MiB body",
            "",
            f"< {RSS_GOAL_MB} MB",
            stream["gateway"]["rss_growth_mb"] < RSS_GOAL_MB,
        ),
    ]


def _ws_rows(results: dict[str, Any]) -> list[Row]:
    ws = results["ws"]
    rate, cpu = ws["rate"], ws["broker_us"]
    size = len(WS_MESSAGE)
    return [
        Row(
            f"WebSocket echo, {size}-byte text messages, {WS_CONNECTIONS} connections: "
            "messages/s, re-framed (the token scrubbed from each message)",
            f"{rate['reframed']:.0f}",
            f"{rate['direct']:.0f} direct",
            ratio(rate["reframed"], rate["direct"]),
            f"reported: broker {cpu['reframed']:.0f} µs per message",
            None,
        ),
        Row(
            "the same through a target with no credential and no masks (frames pass as sent)",
            f"{rate['passthrough']:.0f}",
            f"{rate['direct']:.0f} direct",
            ratio(rate["passthrough"], rate["direct"]),
            f"reported: broker {cpu['passthrough']:.0f} µs per message",
            None,
        ),
    ]


def _python_rows(results: dict[str, Any]) -> list[Row]:
    rps, cpu = results["rps"], results["cpu_us_per_request"]
    relay_cpu = sum(cpu["python_chain"].values())
    durable_cpu = sum(cpu["python_durable"].values())
    write = results["durable_write"]
    return [
        Row(
            "the same load through two bare Python relays (jitctl's loop and TLS, bytes only, "
            "nothing recorded: Python floor)",
            f"{rps['python_chain']:.0f}",
            f"{rps['direct']:.0f} direct",
            ratio(rps["python_chain"], rps["direct"]),
            f"context: {relay_cpu:.0f} µs CPU per GET for both",
            None,
        ),
        Row(
            "the same relays, the far one writing each request ahead (one write + fdatasync "
            "per group of waiting requests, then forward; nothing else: write-ahead floor)",
            f"{rps['python_durable']:.0f}",
            f"{rps['direct']:.0f} direct",
            ratio(rps["python_durable"], rps["direct"]),
            f"context: {durable_cpu:.0f} µs CPU per GET for both",
            None,
        ),
        Row(
            "one durable append on the state's file system (4 KiB write + fdatasync)",
            f"{write['cpu_us']:.0f} µs CPU",
            f"{write['wall_us']:.0f} µs wall",
            "",
            "reported",
            None,
        ),
    ]


def _floor_rows(results: dict[str, Any]) -> list[Row]:
    """The design's topology from two bare Python relays (`_python_chain`) and from native
    parts (`_native_chain`, where haproxy is installed)."""
    rps = results["rps"]
    if "native_chain" not in rps:
        return [
            *_python_rows(results),
            Row(
                "the same load through two haproxies, TLS between (native floor)",
                "not run",
                "haproxy is not installed (Debian: apt-get install haproxy)",
                "",
                "context",
                None,
            ),
        ]
    chain_cpu = sum(results["cpu_us_per_request"]["native_chain"].values())
    return [
        *_python_rows(results),
        Row(
            "the same load through two haproxies, TLS between, token set, nothing recorded "
            "(native floor)",
            f"{rps['native_chain']:.0f}",
            f"{rps['direct']:.0f} direct",
            ratio(rps["native_chain"], rps["direct"]),
            f"context: {chain_cpu:.0f} µs CPU per GET for both",
            None,
        ),
    ]


def _cpu_rows(results: dict[str, Any]) -> list[Row]:
    cpu, shell = results["cpu_us_per_request"], results["shell"]
    tunnel = cpu["tcp_tunnel"]
    return [
        Row(
            "broker CPU per GET (all threads)",
            f"{cpu['gateway']['broker']:.0f} µs",
            f"{tunnel['broker']:.0f} µs through the `tcp` target",
            ratio(cpu["gateway"]["broker"], tunnel["broker"]),
            "reported",
            None,
        ),
        Row(
            'the same, `write_ahead = "changes"`',
            f"{cpu['changes_only']['broker']:.0f} µs",
            f"{tunnel['broker']:.0f} µs through the `tcp` target",
            ratio(cpu["changes_only"]["broker"], tunnel["broker"]),
            "reported",
            None,
        ),
        Row(
            "`jitctl connect` CPU per GET",
            f"{cpu['gateway']['connect']:.0f} µs",
            f"{tunnel['connect']:.0f} µs through the `tcp` target",
            ratio(cpu["gateway"]["connect"], tunnel["connect"]),
            "reported",
            None,
        ),
        Row(
            "the http shell alone: CPU per GET (in-process, no I/O; `--shell`)",
            f"{shell['all']['shell_us']:.0f} µs",
            f"{shell['all']['audit_prepare_link_us']:.0f} µs to prepare and chain its "
            f"{shell['all']['records']:g} records ({shell['all']['payload_bytes']} B)",
            "",
            "reported",
            None,
        ),
    ]


def run(quick: bool = False) -> Section:
    """For benchmarks/run.py."""
    results = collect(quick)
    section = Section(key="http", title="HTTP gateway", quick=quick, rows=rows(results))
    section.intro = (
        "A threaded Python HTTP/1.1 upstream (jitctl.testing.http_upstream, its own process) on "
        "loopback, directly and through `jitctl connect` + the broker (httptools on both legs, the "
        "client's credential dropped and a bearer token injected, one rule checked, "
        "a durable `http.request` before each request is forwarded, an `http.response` after). "
        "An asyncio raw-socket client; "
        f"{CONNECTIONS} keep-alive connections for {results['seconds']:.0f} s, median of "
        f"{results['rounds']} round(s), direct, gateway and the write-ahead floor (below) "
        "alternating. The client, the local "
        "`jitctl connect`, the broker and the upstream share the machine's "
        f"{results['cpus']} CPUs."
    )
    rps, cpu, shell = results["rps"], results["cpu_us_per_request"], results["shell"]
    met = rps["gateway"] >= RPS_GOAL * rps["direct"]
    section.details.append(
        f"The goal of half the direct request rate is {'met' if met else 'not met'}. Per GET, "
        f"the broker spent {cpu['gateway']['broker']:.0f} µs of CPU (all threads; "
        f"{cpu['tcp_tunnel']['broker']:.0f} µs for the same bytes through a `tcp` target), "
        f"`jitctl connect` {cpu['gateway']['connect']:.0f} µs and the upstream "
        f"{cpu['gateway']['upstream']:.0f} µs ({cpu['direct']['upstream']:.0f} µs direct); "
        "they and the load client share the machine's CPUs, so the request rate follows the "
        "sum. Of the broker's share, the http shell's own work (parsing and writing both legs, "
        "the rules, header rewriting, the record payloads) measured alone is "
        f"{shell['all']['shell_us']:.0f} µs and preparing and chaining its "
        f"{shell['all']['records']:g} audit records {shell['all']['audit_prepare_link_us']:.0f} "
        "µs; the rest is the audit writer's thread, which commits each `http.request` before "
        "the request is forwarded (the write-ahead promise, docs/security.md) and each "
        "`http.response` after, the event loop's wake-ups, and the tunnel's TLS and framing. "
        "Without "
        f'that wait for reads (`write_ahead = "changes"`) the rate was '
        f"{rps['changes_only']:.0f} requests/s. A streamed response is relayed chunk by chunk, "
        "so the broker's memory does not grow with its size."
    )
    python = sum(cpu["python_chain"].values())
    spent = cpu["gateway"]["broker"] + cpu["gateway"]["connect"]
    floor = (
        "The floor rows are jitctl's topology without jitctl's work. Two bare Python relays on "
        "jitctl's own event loop and TLS contexts (benchmarks/pyrelay.py) reach "
        f"{rps['python_chain'] / rps['direct']:.2f}x direct at {python:.0f} µs of CPU per GET "
        "for both"
    )
    if "native_chain" in rps:
        chain = sum(cpu["native_chain"].values())
        floor += (
            f"; two single-threaded haproxies, the far one setting the token, "
            f"{rps['native_chain'] / rps['direct']:.2f}x at {chain:.0f} µs"
        )
    durable, write = sum(cpu["python_durable"].values()), results["durable_write"]
    floor += (
        ". With the write-ahead promise as their only work (the far relay appends each request "
        "to a file and fdatasyncs it before forwarding, requests that wait together sharing "
        f"one fdatasync), the same relays reach {rps['python_durable'] / rps['direct']:.2f}x at "
        f"{durable:.0f} µs: one durable append costs {write['cpu_us']:.0f} µs of CPU on this "
        f"machine's file system ({write['wall_us']:.0f} µs wall; the upstream spends "
        f"{cpu['direct']['upstream']:.0f} µs on a whole direct GET), so once a request's own "
        "durable record is paid for, half the direct rate leaves little for any other work"
    )
    rounds = results["rounds_rps"]
    paired = [d / r for d, r in zip(rounds["python_durable"], rounds["direct"], strict=True)]
    if len(paired) > 1:
        above = sum(p >= RPS_GOAL for p in paired)
        verdict = (
            "misses the goal in every round"
            if not above
            else "reaches the goal in every round"
            if above == len(paired)
            else f"reaches the goal in {above} of {len(paired)} rounds"
        )
        floor += (
            ". The write-ahead floor ran in the goal's rounds, each against the direct round "
            f"before it: {', '.join(f'{p:.2f}x' for p in paired)}. With nothing of jitctl's "
            f"work, the write-ahead promise alone {verdict} on this machine"
        )
    section.details.append(
        floor + ". So Python, its event loop and TLS are not what holds the rate down: "
        f"jitctl's broker and `jitctl connect` spend {spent:.0f} µs, and the difference is "
        "jitctl's own work per request: the shell's parsing, rules and record payloads "
        f"({shell['all']['shell_us']:.0f} µs alone), the write-ahead commit every request "
        "waits for and the audit writer thread's hand-offs with the event loop (the "
        f'`write_ahead = "changes"` row spends {cpu["changes_only"]["broker"]:.0f} µs in the '
        "broker instead), and the coroutines the shell waits in."
    )
    return section


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--shell" in args:
        import json

        count = SHELL_QUICK if "--quick" in args else SHELL_REQUESTS
        print(json.dumps(shell_run(count), indent=2))
        return 0
    return standalone_main(__doc__, collect, rows, "shorter rounds, 200 MiB stream", args)


if __name__ == "__main__":
    sys.exit(main())
