"""Approvals end to end: real clients (psycopg, psql, the jitctl CLI) -> `jitctl connect` /
`jitctl exec` -> the broker (a subprocess, SQLite store) -> a real PostgreSQL.

People: agent-7 (group agents) runs the statements; alice and dan (agents) ask for access;
bob and carol (dba) approve. Each has their own JITCTL_HOME, so every CLI call is another process.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jitctl.testing.broker import BrokerProcess
from jitctl.testing.issuer import TokenIssuer
from jitctl.testing.postgres import PostgresServer
from jitctl.testing.postgres_broker import NO_PASSFILE, postgres_broker, tunnel_dsn

from .conftest import Person

psycopg = pytest.importorskip("psycopg")
pytestmark = pytest.mark.skipif(shutil.which("psql") is None, reason="psql is needed")

WAITING = re.compile(r"jitctl: waiting for approval of request ([0-9a-f]{12})")

CONFIG = """
[approvals]
poll_interval = "200ms"

[[identity.issuers]]
issuer = "{issuer}"

[[targets]]
name = "pg"
protocol = "postgres"
address = "127.0.0.1:{port}"
allow_groups = ["agents"]
credential = {{ user = "{user}", password_env = "PG_TEST_PASSWORD", database = "{db}" }}

[targets.access]
approvers = ["dba"]
approval_timeout = "5s"  # room for two CLI calls on a loaded machine

[[targets.rules]]
name = "schema-changes"
match = {{ statement = ["alter"] }}
action = "approve"

[[targets]]
name = "pg-jit"
protocol = "postgres"
address = "127.0.0.1:{port}"
allow_groups = ["agents"]
credential = {{ user = "{user}", password_env = "PG_TEST_PASSWORD", database = "{db}" }}

[targets.access]
require_request = true
approvers = ["dba"]
min_approvals = 2

[[targets]]
name = "pg-one"
protocol = "postgres"
address = "127.0.0.1:{port}"
allow_groups = ["agents"]
credential = {{ user = "{user}", password_env = "PG_TEST_PASSWORD", database = "{db}" }}

[targets.access]
require_request = true
approvers = ["dba"]
"""

AGENT = """
import os, sys, psycopg
conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
conn.add_notice_handler(lambda n: print("notice:", n.message_primary, flush=True))
with conn.pipeline():
    alter = conn.execute("ALTER TABLE items ADD COLUMN tier text")
    after = conn.execute(
        "SELECT count(*) FROM information_schema.columns WHERE column_name = 'tier'"
    )
print("done:", alter.statusmessage, after.fetchone()[0], flush=True)
"""


@pytest.fixture(scope="module")
def db(pg_server: PostgresServer) -> str:
    url = pg_server.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int)")
    return url


@pytest.fixture(scope="module")
def broker(
    pg_server: PostgresServer,
    db: str,
    token_issuer: TokenIssuer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BrokerProcess]:
    state_dir = tmp_path_factory.mktemp("broker")
    name = db.rsplit("/", 1)[1]
    with postgres_broker(CONFIG, pg_server, token_issuer, state_dir=state_dir, db=name) as process:
        yield process


@pytest.fixture(scope="module")
def people(people_root: Path, token_issuer: TokenIssuer) -> dict[str, Person]:
    return {
        name: Person(people_root, token_issuer, name, groups)
        for name, groups in (
            ("agent-7", ["agents"]),
            ("alice", ["agents"]),
            ("dan", ["agents"]),
            ("bob", ["dba"]),
            ("carol", ["dba"]),
        )
    }


def dsn(port: int) -> str:
    return tunnel_dsn(port, "app")


def test_a_held_alter_is_released_by_an_approval_from_another_process(
    broker: BrokerProcess, people: dict[str, Person], db: str, tmp_path: Path
) -> None:
    agent, bob = people["agent-7"], people["bob"]
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    agent.jitctl(broker, "whoami")
    run = subprocess.Popen(
        [
            *(sys.executable, "-m", "jitctl", "exec", "-t", "pg", "--agent", "triage-bot"),
            *("--reason", "INC-7: add tier", "--", sys.executable, str(script)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=agent.env(broker),
    )
    try:
        assert run.stdout is not None
        line = run.stdout.readline()
        match = WAITING.search(line)
        assert match, line + (run.stderr.read() if run.stderr else "")
        request_id = match.group(1)
        # What the approver sees: the exact text, the caller, the agent, its command, the reason.
        listed = bob.json(broker, "request", "ls", "--pending")["requests"]
        (pending,) = [r for r in listed if r["id"] == request_id]
        assert pending["text"] == "ALTER TABLE items ADD COLUMN tier text"
        who = pending["requester"]
        assert who["subject"] == "agent-7" and who["agent"] == "triage-bot"
        assert str(script) in who["command"] and pending["reason"] == "INC-7: add tier"
        approve = bob.jitctl(broker, "request", "approve", request_id, "--reason", "additive")
        assert approve.returncode == 0, approve.stderr
        out, err = run.communicate(timeout=20)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    assert "done: ALTER TABLE 1" in out  # the SELECT behind it ran after it, in order
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM items WHERE tier IS NULL").fetchone() == (0,)
    steps = broker.wait_for_records(  # approval.executed follows the forwarded statement
        lambda found: any(
            r.kind == "approval.executed" and r.payload["id"] == request_id for r in found
        ),
        *("approval.requested", "approval.approved", "approval.granted", "approval.executed"),
    )
    kinds = [r.kind for r in steps if r.payload["id"] == request_id]
    assert kinds == [
        "approval.requested",
        "approval.approved",
        "approval.granted",
        "approval.executed",
    ]
    # psycopg sends Parse/Bind/Execute: the statement is recorded at its Execute.
    (statement,) = [
        r for r in broker.records("pg.statement") if "ADD COLUMN tier" in r.payload["text"]
    ]
    assert statement.payload["decision"] == "approved"
    assert statement.payload["reason"] == f"approved in request {request_id} by bob"
    (executed,) = [
        r for r in steps if r.kind == "approval.executed" and r.payload["id"] == request_id
    ]
    assert statement.seq < executed.seq  # recorded, forwarded, then approval.executed


def test_a_held_statement_nobody_approves_times_out_and_fails_like_a_block(
    broker: BrokerProcess, people: dict[str, Person], db: str
) -> None:
    notices: list[str] = []
    with (
        people["agent-7"].tunnel(broker, "pg") as tunnel,
        psycopg.connect(dsn(tunnel.port)) as conn,  # a transaction, as psycopg opens one
    ):
        conn.add_notice_handler(lambda n: notices.append(n.message_primary))
        conn.execute("INSERT INTO items VALUES (42)")
        started = time.monotonic()
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
            conn.execute("ALTER TABLE items ADD COLUMN nope int")
        assert 4.5 < time.monotonic() - started < 9
        message = caught.value.diag.message_primary or ""
        assert message.startswith("jitctl: statement not approved: approval request ")
        assert "timed out: nobody approved it within 5s" in message
        assert notices and WAITING.search(notices[0])
        # What Postgres gives after a failed statement inside a transaction:
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM items WHERE id = 42").fetchone() == (0,)
    with psycopg.connect(db) as conn:
        columns = conn.execute(
            "SELECT count(*) FROM information_schema.columns WHERE column_name = 'nope'"
        ).fetchone()
    assert columns == (0,)
    expired = broker.records("approval.expired")
    assert expired and expired[-1].payload["kind"] == "statement"
    blocked = broker.records("pg.blocked")[-1].payload
    assert blocked["decision"] == "unapproved" and "timed out" in blocked["reason"]


def test_access_requests_need_two_different_approvers_and_never_the_requester(
    broker: BrokerProcess, people: dict[str, Person]
) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    refused = alice.jitctl(broker, "connect", "pg-jit", "--no-client")
    assert refused.returncode == 4
    assert "pg-jit needs an approved access request" in refused.stderr
    assert 'jitctl request create pg-jit --reason "..."' in refused.stderr
    created = alice.json(broker, "request", "create", "pg-jit", "--reason", "INC-8", "--for", "5m")
    rid = created["id"]
    own = alice.jitctl(broker, "request", "approve", rid)
    assert own.returncode == 4 and "cannot approve your own request" in own.stderr
    first = bob.jitctl(broker, "request", "approve", rid, "--reason", "ok")
    assert first.returncode == 0 and "needs 1 more approval(s) from dba" in first.stderr
    again = bob.jitctl(broker, "request", "approve", rid)
    assert again.returncode == 1 and "you already approved" in again.stderr
    second = carol.json(broker, "request", "approve", rid, "--reason", "agreed")
    assert second["status"] == "approved" and second["decided_by"] == "bob, carol"


def test_request_errors_exit_as_documented_with_a_hint(
    broker: BrokerProcess, people: dict[str, Person]
) -> None:
    """An unknown target is a usage error (2) pointing at `jitctl targets`; an unknown request
    id says where the ids are."""
    alice, bob = people["alice"], people["bob"]
    unknown = alice.jitctl(broker, "request", "create", "nope", "--reason", "INC-9")
    assert unknown.returncode == 2, unknown.stderr
    assert "no target named 'nope'" in unknown.stderr
    assert "hint: see `jitctl targets`" in unknown.stderr
    missing = bob.jitctl(broker, "request", "approve", "0123456789ab")
    assert missing.returncode == 1 and "no request 0123456789ab" in missing.stderr
    assert "hint: see `jitctl request ls`" in missing.stderr


def test_an_expired_grant_ends_a_live_psql_session_with_a_clear_message(
    broker: BrokerProcess, people: dict[str, Person]
) -> None:
    dan, bob, carol = people["dan"], people["bob"], people["carol"]
    grant = dan.api(
        broker, "POST", "/v1/requests", {"target": "pg-jit", "reason": "INC-9", "duration": 5}
    )
    for approver in (bob, carol):
        approver.api(broker, "POST", f"/v1/requests/{grant['id']}/approve", {"reason": "ok"})
    tunnel = dan.tunnel(broker, "pg-jit")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    psql = subprocess.Popen(
        ["psql", "-X", "-v", "ON_ERROR_STOP=0", dsn(tunnel.port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "PGPASSFILE": NO_PASSFILE, "PGSSLMODE": "disable"},
    )
    try:
        assert psql.stdin is not None and psql.stdout is not None
        psql.stdin.write("SELECT 'before' AS seen;\n")
        psql.stdin.flush()
        while "before" not in psql.stdout.readline():
            pass
        after = bob.api(broker, "GET", f"/v1/requests/{grant['id']}")
        time.sleep(max(0.0, after["expires_at"] - time.time()) + 1.0)
        psql.stdin.write("SELECT 'after' AS seen;\n")
        psql.stdin.flush()
        out, err = psql.communicate(timeout=15)
    finally:
        if psql.poll() is None:
            psql.kill()
        connect_err = tunnel.close()
    assert "after" not in out
    reason = f"access grant {grant['id']} to pg-jit expired at"
    assert "FATAL:  jitctl: " + reason in err, err
    assert "jitctl request create pg-jit" in err
    assert reason in connect_err  # `jitctl connect` says why the broker closed it
    (start,) = [r for r in broker.records("session.start") if r.payload.get("grant") == grant["id"]]
    (end,) = [r for r in broker.records("session.end") if r.session_id == start.session_id]
    assert reason in end.payload["reason"] and end.payload["status"] == "error"
    expired = [r for r in broker.records("approval.expired") if r.payload["id"] == grant["id"]]
    assert len(expired) == 1 and expired[0].payload["reason"] == "the grant ran out"


def test_request_watch_against_the_broker_approves_a_request_with_a_key(
    broker: BrokerProcess, people: dict[str, Person]
) -> None:
    pytest.importorskip("textual")
    from jitctl.client.requests import RequestsClient
    from jitctl.review.app import ReviewApp
    from jitctl.review.source import BrokerSource

    from .test_watch import rows, run, typed, until

    alice, bob = people["alice"], people["bob"]
    client = RequestsClient(broker.url, broker.ca_file, bob.token_file.read_text)
    created: dict[str, Any] = {}

    async def scenario(pilot: Any) -> None:
        await until(pilot, lambda: rows(pilot) == [])
        body = {"target": "pg-one", "reason": "INC-10", "duration": "10m"}
        created.update(alice.api(broker, "POST", "/v1/requests", body))
        await until(pilot, lambda: rows(pilot) == [created["id"]])
        await pilot.press("a")
        await typed(pilot, "ok")
        await until(pilot, lambda: rows(pilot) == [])

    run(ReviewApp(BrokerSource(client), interval=0.2), scenario)
    after = alice.api(broker, "GET", f"/v1/requests/{created['id']}")
    assert after["status"] == "approved" and after["decided_by"] == "bob" and after["active"]
