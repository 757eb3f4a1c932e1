"""Recorded sessions made up for tests, benchmarks and the docs, with fixed times.

They use exactly the record kinds docs/replay.md defines (and docs/audit-schema.md), so a
replay that shows these shows what the broker records. `append_samples` writes them into any
store through the public `append_batch`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jitctl.audit.records import Actor, NewRecord

T0 = 1_767_225_600_000_000  # 2026-01-01 00:00:00 UTC
ALICE = Actor(
    subject="alice",
    email="alice@example.com",
    groups=("eng",),
    issuer="https://idp.example.com",
    reason="INC-42 slow checkout",
)
AGENT = Actor(
    subject="ci-bot",
    email="ci@example.com",
    groups=("agents",),
    agent="claude",
    command="python agent.py",
    reason="nightly cleanup",
)


class _Session:
    def __init__(self, session_id: str, target: str, actor: Actor, start_us: int) -> None:
        self.session_id, self.target, self.actor, self.now = session_id, target, actor, start_us
        self.records: list[NewRecord] = []
        self.offsets: dict[tuple[str, int], int] = {}

    def add(
        self, kind: str, payload: dict[str, Any], data: bytes = b"", after_ms: float = 0
    ) -> None:
        self.now += int(after_ms * 1000)
        self.records.append(
            NewRecord(kind, self.session_id, self.target, self.actor, payload, data, self.now)
        )

    def term(self, kind: str, data: bytes, after_ms: float = 0, channel: int = 0) -> None:
        key = (kind, channel)
        offset = self.offsets.get(key, 0)
        self.offsets[key] = offset + len(data)
        self.add(kind, {"channel": channel, "offset": offset, "len": len(data)}, data, after_ms)

    def typed(
        self, text: str, after_ms: float = 300, per_key_ms: float = 120, echo: bool = True
    ) -> None:
        for n, char in enumerate(text):
            self.term("term.input", char.encode(), after_ms if n == 0 else per_key_ms)
            if echo:
                self.term("term.output", b"\r\n" if char == "\r" else char.encode(), 2)


def terminal_session(session_id: str = "ssh-demo", start_us: int = T0) -> list[NewRecord]:
    """An SSH shell: a prompt, `ls --color`, a resize, a full-screen redraw, an approval, a
    command typed and answered, exit."""
    s = _Session(session_id, "web-1", ALICE, start_us)
    s.add("session.start", {"protocol": "ssh", "upstream": "10.0.0.7:22", "broker": "b1"})
    s.add("term.resize", {"channel": 0, "cols": 80, "rows": 24, "term": "xterm-256color"})
    s.term("term.output", b"Welcome to web-1\r\n\x1b[1;32malice@web-1\x1b[0m:~$ ", 40)
    s.typed("ls --color\r")
    s.term(
        "term.output",
        b"\x1b[0m\x1b[01;34mapp\x1b[0m  \x1b[01;34mlogs\x1b[0m  notes.txt  "
        b"\x1b[01;32mrun.sh\x1b[0m\r\n\x1b[1;32malice@web-1\x1b[0m:~$ ",
        30,
    )
    s.add("term.resize", {"channel": 0, "cols": 100, "rows": 30}, after_ms=900)
    s.typed("cat notes.txt\r")
    s.term(
        "term.output", b"deploy: friday\r\ncontact: \xe2\x96\x88\xe2\x96\x88\xe2\x96\x88\r\n", 15
    )
    s.term("term.output", b"\x1b[1;32malice@web-1\x1b[0m:~$ ", 1)
    s.typed("top\r")
    s.term("term.output", b"\x1b[?1049h\x1b[2J\x1b[H", 20)
    s.term(
        "term.output",
        b"\x1b[7m  PID USER   %CPU COMMAND              \x1b[0m\r\n"
        b"  101 app    93.0 gunicorn\r\n  102 app     4.1 nginx\r\n",
        5,
    )
    s.typed("q", after_ms=3_000, echo=False)
    s.term("term.output", b"\x1b[?1049l\r\n\x1b[1;32malice@web-1\x1b[0m:~$ ", 5)
    s.add(
        "approval.granted",
        {
            "approver": "bob@example.com",
            "reason": "restart during incident",
            "request": "sudo systemctl restart app",
        },
        after_ms=4_000,
    )
    s.typed("sudo systemctl restart app\r")
    s.term("term.output", b"[sudo] restarted app.service\r\n\x1b[1;32malice@web-1\x1b[0m:~$ ", 800)
    s.add("ssh.sftp", {"op": "read", "path": "/etc/app.conf", "size": 512}, after_ms=500)
    s.typed("exit\r")
    s.term("term.output", b"logout\r\n", 5)
    s.add("term.exit", {"channel": 0, "status": 0}, after_ms=2)
    s.add(
        "session.end",
        {"bytes_up": 60, "bytes_down": 600, "status": "closed", "reason": "client closed"},
        after_ms=3,
    )
    return s.records


def postgres_session(
    session_id: str = "pg-demo", start_us: int = T0 + 3_600_000_000
) -> list[NewRecord]:
    """An agent on Postgres: a masked SELECT, a blocked DROP, an UPDATE, an error."""
    s = _Session(session_id, "pg-prod", AGENT, start_us)
    s.add("session.start", {"protocol": "postgres", "upstream": "10.0.0.5:5432", "broker": "b1"})
    select = (
        "SELECT id, email, plan\n  FROM customers\n"
        " WHERE created_at > now() - interval '1 day'\n ORDER BY id\n LIMIT 3"
    )
    s.add(
        "pg.statement",
        {
            "seq": 1,
            "protocol": "simple",
            "text": select,
            "kind": "select",
            "tables": ["public.customers"],
            "decision": "allow",
            "rule": None,
            "reason": "",
        },
        after_ms=120,
    )
    s.add(
        "pg.result",
        {
            "statement": 1,
            "index": 0,
            "tag": "SELECT 3",
            "rows": 3,
            "columns": ["id", "email", "plan"],
            "duration_ms": 1.9,
            "masked": {"email": 3},
            "rows_sample": [
                ["17", "***@***", "pro"],
                ["18", "***@***", "free"],
                ["19", "***@***", "pro"],
            ],
        },
        after_ms=2,
    )
    s.add(
        "pg.blocked",
        {
            "seq": 2,
            "protocol": "simple",
            "text": "DROP TABLE customers",
            "kind": "drop",
            "tables": ["public.customers"],
            "decision": "deny",
            "rule": "no-ddl",
            "reason": "DDL is not allowed for agents",
            "decided_by": "DROP TABLE customers",
        },
        after_ms=1_500,
    )
    s.add(
        "pg.result",
        {
            "statement": 2,
            "index": 0,
            "tag": "",
            "rows": 0,
            "columns": [],
            "duration_ms": 0.4,
            "blocked": True,
            "error": {
                "sqlstate": "42501",
                "message": "jitctl: statement denied by policy: DDL is not allowed",
            },
        },
        after_ms=1,
    )
    s.add(
        "pg.statement",
        {
            "seq": 3,
            "protocol": "extended",
            "text": "UPDATE orders SET status = $1 WHERE id = $2",
            "params": ["shipped", "1042"],
            "kind": "update",
            "tables": ["public.orders"],
            "decision": "allow",
            "rule": None,
            "reason": "",
        },
        after_ms=800,
    )
    s.add(
        "pg.result",
        {
            "statement": 3,
            "index": 0,
            "tag": "UPDATE 1",
            "rows": 0,
            "columns": [],
            "duration_ms": 3.2,
        },
        after_ms=3,
    )
    s.add(
        "pg.statement",
        {
            "seq": 4,
            "protocol": "simple",
            "text": "SELECT * FROM nope",
            "kind": "select",
            "tables": ["public.nope"],
            "decision": "allow",
            "rule": None,
            "reason": "",
        },
        after_ms=400,
    )
    s.add(
        "pg.result",
        {
            "statement": 4,
            "index": 0,
            "tag": "",
            "rows": 0,
            "columns": [],
            "duration_ms": 0.8,
            "error": {"sqlstate": "42P01", "message": 'relation "nope" does not exist'},
        },
        after_ms=1,
    )
    s.add(
        "session.end",
        {"bytes_up": 400, "bytes_down": 900, "status": "closed", "reason": "client closed"},
        after_ms=200,
    )
    return s.records


def tcp_session(
    session_id: str = "tcp-demo", start_us: int = T0 + 7_200_000_000
) -> list[NewRecord]:
    s = _Session(session_id, "redis-1", ALICE, start_us)
    s.add("session.start", {"protocol": "tcp", "upstream": "10.0.0.9:6379", "broker": "b1"})
    chunks = [
        ("up", b"*1\r\n$4\r\nPING\r\n"),
        ("down", b"+PONG\r\n"),
        ("up", b"*2\r\n$3\r\nGET\r\n$7\r\nsession\r\n"),
        ("down", b"$4\r\n\x00\x01\xfe\xff\r\n"),
    ]
    offsets = {"up": 0, "down": 0}
    for direction, data in chunks:
        s.add(
            "tcp.data",
            {"dir": direction, "offset": offsets[direction], "len": len(data)},
            data,
            after_ms=50,
        )
        offsets[direction] += len(data)
    s.add(
        "session.end",
        {
            "bytes_up": offsets["up"],
            "bytes_down": offsets["down"],
            "status": "closed",
            "reason": "client closed",
        },
        after_ms=10,
    )
    return s.records


def big_terminal_session(
    records: int, session_id: str = "ssh-big", start_us: int = T0
) -> Iterator[list[NewRecord]]:
    """A long shell session of `records` records (batches of 5,000): lines of coloured
    output, a keystroke every tenth record, a resize every 10,000."""
    s = _Session(session_id, "web-1", ALICE, start_us)
    s.add("session.start", {"protocol": "ssh", "upstream": "10.0.0.7:22"})
    s.add("term.resize", {"channel": 0, "cols": 80, "rows": 24, "term": "xterm-256color"})
    for n in range(records - 3):
        if n % 10_000 == 9_999:
            cols = 80 if (n // 10_000) % 2 else 120
            s.add("term.resize", {"channel": 0, "cols": cols, "rows": 24}, after_ms=1)
        elif n % 10 == 9:
            s.term("term.input", b"\r" if n % 50 == 49 else b"l", after_ms=1)
        else:
            line = f"\x1b[32m{n:>8}\x1b[0m drwxr-xr-x 2 app app 4096 Jan 1 file-{n}.log\r\n"
            s.term("term.output", line.encode(), after_ms=1)
        if len(s.records) >= 5_000:
            yield s.records
            s.records = []
    s.add("session.end", {"bytes_up": -1, "bytes_down": -1, "status": "closed"}, after_ms=1)
    yield s.records


def big_postgres_session(
    records: int, session_id: str = "pg-big", start_us: int = T0
) -> Iterator[list[NewRecord]]:
    """An agent's long Postgres session: statement/result pairs, a blocked one now and then."""
    s = _Session(session_id, "pg-prod", AGENT, start_us)
    s.add("session.start", {"protocol": "postgres", "upstream": "10.0.0.5:5432"})
    for n in range((records - 2) // 2):
        text = f"SELECT id, status FROM orders WHERE customer_id = {n} AND region = 'eu-west'"
        blocked = n % 97 == 96
        s.add(
            "pg.blocked" if blocked else "pg.statement",
            {
                "seq": n,
                "protocol": "simple",
                "text": text,
                "kind": "select",
                "decision": "deny" if blocked else "allow",
                "rule": "no-eu" if blocked else None,
                "reason": "",
            },
            after_ms=2,
        )
        s.add(
            "pg.result",
            {
                "statement": n,
                "index": 0,
                "tag": "SELECT 2",
                "rows": 2,
                "columns": ["id", "status"],
                "duration_ms": 0.7,
            },
            after_ms=1,
        )
        if len(s.records) >= 5_000:
            yield s.records
            s.records = []
    s.add("session.end", {"bytes_up": -1, "bytes_down": -1, "status": "closed"}, after_ms=1)
    yield s.records


def append_samples(store: Any) -> dict[str, list[Any]]:
    """The three small sample sessions, appended to `store`; returns their sealed records."""
    return {
        name: store.append_batch(records)
        for name, records in (
            ("terminal", terminal_session()),
            ("postgres", postgres_session()),
            ("tcp", tcp_session()),
        )
    }
