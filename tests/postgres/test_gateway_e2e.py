"""The postgres plugin end to end: psql, psycopg and pgbench -> `jitctl connect` -> the broker
(a subprocess) -> a real PostgreSQL. The server's own log (`log_statement=all`) is the ground
truth for what ran; the trail is read from the broker's audit store.

One PostgreSQL, one broker and one `jitctl connect` serve the whole module. The clients never
get the upstream password: their environment has no PGPASSWORD and no password file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jitctl.testing.broker import BrokerProcess
from jitctl.testing.issuer import TokenIssuer
from jitctl.testing.postgres import PostgresServer, postgres_available
from jitctl.testing.postgres_broker import NO_PASSFILE, postgres_broker, tunnel_dsn

pytestmark = [
    pytest.mark.skipif(postgres_available() is not None, reason=f"{postgres_available()}"),
    pytest.mark.skipif(
        shutil.which("psql") is None or shutil.which("pgbench") is None,
        reason="psql and pgbench are needed",
    ),
]
psycopg = pytest.importorskip("psycopg")

SUBJECT = "agent-7"
EMAIL = "alice@example.com"
CARD = "4111 1111 1111 1111"
SECRETS = (EMAIL, CARD, "bob@example.org", "4012888888881881")

CONFIG = """
[[identity.issuers]]
issuer = "{issuer}"

[[targets]]
name = "pg"
protocol = "postgres"
address = "127.0.0.1:{port}"
allow_groups = ["agents"]
record_rows = 3
credential = {{ user = "{user}", password_env = "PG_TEST_PASSWORD", database = "app" }}

[[targets.rules]]
name = "no-destroy"
match = {{ statement = ["drop", "truncate", "delete"] }}
action = "deny"

[[targets.masks]]
columns = ["customers.email"]
detectors = ["CREDIT_CARD_NUMBER", "EMAIL_ADDRESS"]

[[targets]]
name = "pg-reads"
protocol = "postgres"
address = "127.0.0.1:{port}"
allow_groups = ["agents"]
credential = {{ user = "{user}", password_env = "PG_TEST_PASSWORD", database = "app" }}
postgres = {{ write_ahead = "changes" }}
"""


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    settings = {"log_statement": "all", "log_line_prefix": "%m [%p] app=%a "}
    with PostgresServer(settings=settings) as server:
        with psycopg.connect(server.dsn + "?application_name=setup", autocommit=True) as conn:
            conn.execute("CREATE DATABASE app")
        setup = server.dsn_for("app") + "?application_name=setup"
        with psycopg.connect(setup, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE customers (id int PRIMARY KEY, name text, email text, note text)"
            )
            conn.execute(
                "INSERT INTO customers VALUES (1, 'Alice', %s, %s), (2, 'Bob', %s, %s)",
                [EMAIL, f"card {CARD}", "bob@example.org", "card 4012888888881881"],
            )
            conn.execute("CREATE TABLE victims (id int)")
            conn.execute("INSERT INTO victims SELECT generate_series(1, 10)")
            conn.execute("CREATE TABLE orders (id int, item text)")
        env = {**os.environ, "PGPASSWORD": server.password, "PGAPPNAME": "setup"}
        subprocess.run(
            [
                "pgbench",
                "-i",
                "-s",
                "1",
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                str(server.port),
                "-U",
                server.user,
                "app",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        yield server


@pytest.fixture(scope="module")
def broker(
    pg: PostgresServer, token_issuer: TokenIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerProcess]:
    state_dir = tmp_path_factory.mktemp("pgbroker")
    with postgres_broker(CONFIG, pg, token_issuer, state_dir=state_dir) as process:
        process.login_with_token(token_issuer.mint(sub=SUBJECT, groups=["agents"], lifetime=3600))
        yield process


@pytest.fixture(scope="module")
def port(broker: BrokerProcess) -> Iterator[int]:
    with broker.tunnel("pg", "--reason", "e2e") as tunnel:
        yield tunnel.port


def client_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return {**env, "PGPASSFILE": NO_PASSFILE, "PGSSLMODE": "prefer", "PGCONNECT_TIMEOUT": "10"}


def dsn(port: int, **extra: str) -> str:
    return tunnel_dsn(port, "app", **extra)


def psql(port: int, *commands: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    args = ["psql", "-X", "-v", "ON_ERROR_STOP=0", dsn(port)]
    for command in commands:
        args += ["-c", command]
    return subprocess.run(
        args, input=stdin, capture_output=True, text=True, env=client_env(), timeout=60
    )


@pytest.fixture
def whole_module(request: pytest.FixtureRequest) -> None:
    """The test_zz_ checks read the trail every other test here left: alone (-k) they skip."""
    module = request.module
    selected = {i.originalname for i in request.session.items if i.module is module}  # type: ignore[attr-defined]
    if selected != {name for name in vars(module) if name.startswith("test_")}:
        pytest.skip("checks the trail the whole module leaves: run the module without -k")


# -- clients work -------------------------------------------------------------------------------


def test_psql_describes_selects_and_transacts_without_the_upstream_password(port: int) -> None:
    result = psql(
        port,
        r"\d",
        "SELECT id, name FROM customers ORDER BY id",
        "BEGIN",
        "INSERT INTO orders VALUES (1, 'tea')",
        "COMMIT",
        "SELECT count(*) FROM orders",
    )
    assert result.returncode == 0, result.stderr
    assert "customers" in result.stdout and "victims" in result.stdout
    assert "Alice" in result.stdout and "COMMIT" in result.stdout
    assert re.search(r"count\s*-+\s*1\b", result.stdout)


def test_psql_copy_in_and_out(port: int) -> None:
    copied_in = psql(
        port, r"\copy orders (id, item) from stdin", stdin="2\tcoffee\n3\tjuice\n\\.\n"
    )
    assert copied_in.returncode == 0 and "COPY 2" in copied_in.stdout, copied_in.stderr
    out = psql(port, r"\copy (SELECT id, item FROM orders ORDER BY id) to stdout")
    assert out.stdout.splitlines()[-2:] == ["2\tcoffee", "3\tjuice"]
    masked = psql(port, r"\copy customers to stdout")
    assert masked.returncode == 0 and "Alice" in masked.stdout
    assert not any(secret in masked.stdout for secret in SECRETS)


def test_ctrl_c_in_psql_cancels_pg_sleep(port: int, broker: BrokerProcess) -> None:
    started = time.monotonic()
    process = subprocess.Popen(
        ["psql", "-X", dsn(port), "-c", "SELECT pg_sleep(30)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=client_env(),
    )
    broker.wait_for_records(
        lambda found: any("pg_sleep(30)" in str(r.payload.get("text")) for r in found),
        "pg.statement",
    )
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=20)
    assert "canceling statement due to user request" in err
    assert time.monotonic() - started < 20
    assert any(r.payload.get("found") for r in broker.records("pg.cancel"))


def test_psycopg_cancel_interrupts_a_running_statement(port: int, broker: BrokerProcess) -> None:
    def cancel_once_running(conn: Any) -> None:
        broker.wait_for_records(
            lambda found: any("pg_sleep(29)" in str(r.payload.get("text")) for r in found),
            "pg.statement",
        )
        time.sleep(0.2)
        conn.cancel()

    with psycopg.connect(dsn(port)) as conn:
        canceller = threading.Thread(target=cancel_once_running, args=(conn,))
        canceller.start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(29)")
        canceller.join()
        conn.rollback()
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_psycopg_text_binary_and_pipeline_results(port: int) -> None:
    with psycopg.connect(dsn(port), autocommit=True) as conn:
        rows = conn.execute("SELECT id, name, %s::int8 FROM customers ORDER BY id", [7]).fetchall()
        assert rows == [(1, "Alice", 7), (2, "Bob", 7)]
        binary = conn.cursor(binary=True)
        binary.execute(
            "SELECT id, name, now() > '2000-01-01'::timestamptz FROM customers WHERE id = %s", [2]
        )
        assert binary.fetchall() == [(2, "Bob", True)]
        with conn.pipeline():
            cursors = [conn.execute("SELECT %s::int * 2", [i]) for i in range(20)]
        assert [c.fetchone()[0] for c in cursors] == [i * 2 for i in range(20)]  # type: ignore[index]


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_runs_in_every_protocol_mode(port: int, mode: str) -> None:
    result = subprocess.run(
        ["pgbench", "-n", "-M", mode, "-c", "2", "-j", "2", "-t", "40", dsn(port)],
        capture_output=True,
        text=True,
        env=client_env(),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "number of failed transactions: 0" in result.stdout


# -- policy --------------------------------------------------------------------------------------

DISGUISES = [
    "DROP TABLE victims",
    "/* harmless */ dRoP tAbLe victims",
    "SELECT 1; DELETE FROM victims",
    "WITH gone AS (DELETE FROM victims RETURNING *) SELECT count(*) FROM gone",
    "DO $$ BEGIN EXECUTE 'drop table victims'; END $$",
    "PREPARE wipe AS DELETE FROM victims",
    "EXPLAIN ANALYZE DELETE FROM victims",
    "TRUNCATE victims",
    "SET standard_conforming_strings = off",
    "select set_config('standard_conforming_strings', 'off', false)",
]


@pytest.mark.parametrize("text", DISGUISES)
def test_destructive_statements_are_blocked_in_every_disguise(port: int, text: str) -> None:
    result = psql(port, text)
    assert "jitctl: statement denied by policy" in result.stderr, result.stderr + result.stdout


def test_blocked_statements_through_the_extended_protocol_and_prepare(
    port: int, pg: PostgresServer
) -> None:
    with psycopg.connect(dsn(port), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="denied by policy"):
            conn.execute("DELETE FROM victims WHERE id = %s", [1])
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM victims WHERE id > %s", [0], prepare=True)
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            conn.execute("EXECUTE wipe")  # its PREPARE was blocked: the name never existed
        assert conn.execute("SELECT count(*) FROM victims").fetchone() == (10,)
    assert pg.execute("SELECT count(*) FROM victims", dbname="app") == [(10,)]


def test_large_object_fast_path_calls_are_refused(port: int, tmp_path: Path) -> None:
    """psql's \\lo_import uses the FunctionCall message: no SQL text, so it is refused."""
    source = tmp_path / "blob.txt"
    source.write_text("exfiltration vehicle")
    result = psql(port, f"\\lo_import {source}", "SELECT 1 AS alive")
    assert "denied by policy" in result.stderr and "FunctionCall" in result.stderr
    assert "alive" in result.stdout


def test_startup_options_that_change_lexing_or_roles_are_refused(port: int) -> None:
    for options in (
        "-c standard_conforming_strings=off",
        "-c role=postgres",
        "-c search_path=evil",
    ):
        with pytest.raises(psycopg.OperationalError, match="not allowed"):
            psycopg.connect(dsn(port, options=f"'{options}'"))
    with pytest.raises(psycopg.OperationalError, match="replication"):
        psycopg.connect(dsn(port, replication="database"))
    with psycopg.connect(dsn(port, options="'-c statement_timeout=5000'")) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("5s",)


def test_a_block_inside_begin_aborts_the_transaction_like_postgres(port: int) -> None:
    with psycopg.connect(dsn(port)) as conn:
        conn.execute("SELECT 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("TRUNCATE victims")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM victims").fetchone() == (10,)
    result = psql(port, "BEGIN", "DROP TABLE victims", "SELECT 1", "ROLLBACK", "SELECT 2 AS two")
    assert "25P02" in result.stderr or "current transaction is aborted" in result.stderr
    assert "two" in result.stdout


# -- masking --------------------------------------------------------------------------------------


def test_masked_values_never_reach_the_clients(port: int) -> None:
    query = (
        "SELECT id, email, note, email AS alias, 'x ' || note AS derived FROM customers ORDER BY id"
    )
    text = psql(port, query).stdout
    with psycopg.connect(dsn(port), autocommit=True) as conn:
        as_text = conn.execute(query).fetchall()
        binary = conn.cursor(binary=True)
        as_binary = binary.execute(query).fetchall()
        copy_out = b""
        with conn.cursor().copy("COPY customers TO STDOUT") as copy:
            for block in copy:
                copy_out += bytes(block)
        binary_copy = conn.cursor().copy("COPY customers TO STDOUT (FORMAT binary)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="binary COPY"), binary_copy:
            pass
        with pytest.raises(psycopg.errors.InvalidTextRepresentation) as caught:
            conn.execute("SELECT email::int FROM customers")
    seen = text + repr(as_text) + repr(as_binary) + copy_out.decode() + str(caught.value)
    for secret in SECRETS:
        assert secret not in seen
    assert "[MASKED]" in text and "[CREDIT_CARD_NUMBER]" in text
    assert as_text[0][1] == "[MASKED]" and as_binary[0][1] == "[MASKED]"


# -- the ground truth: the server's log against the trail (runs last) --------------------------


def _server_statements(pg: PostgresServer) -> list[tuple[str, str]]:
    """(application_name, text) of every statement the server logged as run."""
    entries: list[list[str]] = []
    for line in pg.logfile.read_text(errors="replace").splitlines():
        if line.startswith("\t") and entries:
            entries[-1].append(line[1:])
            continue
        match = re.search(r" app=(\S*) LOG:  (?:statement|execute [^:]+): (.*)$", line)
        entries.append([match.group(1), match.group(2)] if match else [])
    return [(e[0], "\n".join(e[1:])) for e in entries if e]


AGENT = """
import os, sys, psycopg
with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
    print(conn.execute("SELECT count(*) FROM customers").fetchone()[0])
    print(conn.execute("SELECT email FROM customers ORDER BY id LIMIT 1").fetchone()[0])
sys.exit(5)
"""


def test_an_agent_through_jitctl_exec_needs_only_database_url(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    """The agent's status and stdout come back unchanged, masked, and no password reaches it."""
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    result = broker.jitctl(
        "exec",
        "-t",
        "pg",
        "--agent",
        "pg-bot",
        "--",
        sys.executable,
        str(script),
        env={k: "" for k in os.environ if k.startswith("PG")},
    )
    assert result.returncode == 5, result.stderr
    count, email = result.stdout.split()
    assert int(count) >= 2 and email != EMAIL and EMAIL not in result.stdout
    executed = [r for r in broker.records("pg.statement") if r.actor.agent == "pg-bot"]
    assert any("count(*)" in r.payload.get("text", "") for r in executed)


def test_a_pipelined_parse_of_an_existing_name_does_not_change_what_is_recorded(
    port: int, broker: BrokerProcess
) -> None:
    """libpq pipeline: Parse "s" (an UPDATE), Sync; Parse "s" again (a SELECT: the server
    refuses, 42P05), Sync; Execute "s", Sync, all sent before any answer. The server runs the
    UPDATE; the trail must say so (test_zz_ also finds the UPDATE's text in the trail)."""
    update = "UPDATE orders SET item = item WHERE id = -1"
    with psycopg.connect(dsn(port), autocommit=True) as conn:
        pgconn = conn.pgconn
        pgconn.enter_pipeline_mode()
        pgconn.send_prepare(b"dup", update.encode())
        pgconn.pipeline_sync()
        pgconn.send_prepare(b"dup", b"SELECT 1")
        pgconn.pipeline_sync()
        pgconn.send_query_prepared(b"dup", None)
        pgconn.pipeline_sync()
        pgconn.flush()
        statuses = []
        while len(statuses) < 6:  # three results and three sync points
            pgconn.consume_input()
            while not pgconn.is_busy():
                result = pgconn.get_result()
                if result is None:
                    continue
                statuses.append((result.status, result.command_status))
                if len(statuses) == 6:
                    break
        pgconn.exit_pipeline_mode()
    assert statuses[2][0] == psycopg.pq.ExecStatus.FATAL_ERROR  # the second Parse
    assert statuses[4][1] == b"UPDATE 0"  # the Execute ran the first statement
    executed = [r for r in broker.records("pg.statement") if r.payload.get("statement") == "dup"]
    assert [r.payload["text"] for r in executed] == [update]


def test_plain_reads_do_not_wait_for_their_record_on_a_changes_target(
    broker: BrokerProcess,
) -> None:
    """`postgres.write_ahead = "changes"`: plain reads go up at once and are still recorded
    (the test_zz_ check below finds them next to what the server ran); everything else waits."""
    with (
        broker.tunnel("pg-reads", "--reason", "e2e") as tunnel,
        psycopg.connect(dsn(tunnel.port), autocommit=True) as conn,
    ):
        conn.execute("SELECT bid FROM pgbench_branches WHERE bid = %s", [1])
        conn.execute("SELECT count(*) FROM pgbench_branches")  # a function call
        conn.execute("UPDATE pgbench_branches SET filler = 'reads' WHERE bid = 1")
        conn.execute("SHOW work_mem")
    ahead = {
        r.payload["text"]: r.payload.get("write_ahead", True)
        for r in broker.records("pg.statement")
        if r.target == "pg-reads" and r.payload.get("decision") == "allow"
    }
    assert ahead["SELECT bid FROM pgbench_branches WHERE bid = $1"] is False
    assert ahead["SHOW work_mem"] is False
    assert ahead["SELECT count(*) FROM pgbench_branches"] is True
    assert ahead["UPDATE pgbench_branches SET filler = 'reads' WHERE bid = 1"] is True


def test_zz_every_statement_the_server_ran_is_in_the_trail_with_its_caller(
    pg: PostgresServer, broker: BrokerProcess, whole_module: None
) -> None:
    recorded = broker.records("pg.statement")
    texts = {r.payload.get("text") for r in recorded}
    assert all(r.actor is not None and r.actor.subject == SUBJECT for r in recorded)
    ran = [(app, text) for app, text in _server_statements(pg) if app != "setup"]
    assert len(ran) > 100
    missing = [text for _, text in ran if text not in texts]
    assert not missing, missing[:5]


def test_zz_the_trail_holds_no_masked_value_and_verifies(
    broker: BrokerProcess, whole_module: None
) -> None:
    dump = "\n".join(
        json.dumps(dict(r.payload), default=str) + r.data.decode("utf-8", "replace")
        for r in broker.records()
    )
    for secret in SECRETS:
        assert secret not in dump
    results = [r.payload for r in broker.records("pg.result") if r.payload.get("masked")]
    assert results and any("rows_sample" in r for r in results)
    blocked = broker.records("pg.blocked")
    assert len(blocked) >= len(DISGUISES)
    verify = broker.jitctl("audit", "verify", "--state-dir", str(broker.state_dir))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_zz_the_victims_survived(pg: PostgresServer) -> None:
    assert pg.execute("SELECT count(*) FROM victims", dbname="app") == [(10,)]
    assert Path(pg.logfile).exists()
