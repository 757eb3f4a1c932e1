"""The postgres core against a scripted upstream, byte for byte (every test also runs with the
input fed one byte at a time: the outcome must not depend on how TCP cut the stream)."""

from __future__ import annotations

import hashlib

import pytest
from scramp import ScramMechanism

from jitctl.plugin import Direction, Forward, Record, RemoteProtocolError
from jitctl_postgres.enforcement import FAIL_TEXT
from jitctl_postgres.messages import startup_message
from jitctl_postgres.state import Services

from . import wire as w


@pytest.fixture(params=[False, True], ids=["chunks", "bytewise"])
def bytewise(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def harness(bytewise: bool, **kw: object) -> w.Harness:
    return w.Harness(bytewise=bytewise, **kw)  # type: ignore[arg-type]


# -- startup ------------------------------------------------------------------------------------


def test_ssl_and_gssenc_requests_are_answered_n_then_startup_is_rebuilt(bytewise: bool) -> None:
    h = harness(bytewise)
    h.client(w.GSSENC, w.SSL)
    assert h.take_down() == b"NN"
    h.client(
        w.startup(
            user="alice",
            database="mine",
            application_name="psql",
            client_encoding="SJIS",
            search_path="evil",
            _pq_x="1",
        )
    )
    assert h.take_up() == startup_message(
        {"user": "broker", "database": "app", "client_encoding": "UTF8", "application_name": "psql"}
    )
    start = h.last("pg.startup")
    assert start["client_user"] == "alice" and start["upstream_user"] == "broker"
    assert start["application_name"] == "psql" and "search_path" in start["stripped"]
    assert h.records[0].durable


def test_database_falls_back_to_the_clients_when_the_credential_has_none(bytewise: bool) -> None:
    h = harness(bytewise, credential={"user": "broker", "password": "x", "database": ""})
    h.client(w.startup(user="alice", database="reports"))
    assert b"database\0reports\0" in h.take_up()


def test_repeated_ssl_request_is_a_protocol_error() -> None:
    h = w.Harness()
    h.client(w.SSL)
    with pytest.raises(RemoteProtocolError):
        h.client(w.SSL)


@pytest.mark.parametrize(
    ("params", "sqlstate", "named"),
    [
        ({"replication": "database"}, "28000", "replication"),
        ({"options": "-c search_path=evil"}, "0A000", "search_path"),
        ({"options": "-c standard_conforming_strings=off"}, "0A000", "standard_conforming_strings"),
        ({"options": "--role=admin"}, "0A000", "role"),
        ({"options": "-B 100"}, "0A000", "-B"),
    ],
)
def test_startup_refusals_are_fatal_and_close(
    params: dict[str, str], sqlstate: str, named: str
) -> None:
    h = w.Harness()
    h.client(w.startup(user="alice", **params))
    assert h.up == b""
    fields = w.error_fields(h.take_down())
    assert fields["S"] == "FATAL" and fields["C"] == sqlstate and named in fields["M"]
    assert h.closed is not None and h.closed.error
    assert "pg.refused" in h.kinds()


def test_allowed_options_become_upstream_parameters(bytewise: bool) -> None:
    h = harness(bytewise)
    h.client(
        w.startup(user="a", options="-c statement_timeout=5s --DateStyle=ISO", replication="false")
    )
    up = h.take_up()
    assert b"statement_timeout\x005s\0" in up and b"DateStyle\0ISO\0" in up
    assert b"replication" not in up and b"options" not in up


def test_newer_minor_version_is_negotiated_down_to_3_0() -> None:
    h = w.Harness()
    body = (196610).to_bytes(4, "big") + b"user\0a\0_pq_.x\0y\0\0"
    h.client((len(body) + 4).to_bytes(4, "big") + body)
    down = h.take_down()
    assert down[:1] == b"v" and down[5:9] == (0).to_bytes(4, "big") and b"_pq_.x" in down
    assert b"_pq_" not in h.take_up()


@pytest.mark.parametrize(
    "packet",
    [w.untyped(1234), w.untyped(80877103, b"x"), b"\0\0\0\3abc", w.untyped(80877102, b"short")],
)
def test_garbage_first_packets_are_protocol_errors(packet: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        w.Harness().client(packet)


def test_a_tls_handshake_first_says_to_use_local_tls(bytewise: bool) -> None:
    """A ClientHello where the startup belongs (sslnegotiation=direct without --local-tls): the
    error names what happened and what to do, not a startup length of 369 million."""
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32)
    with pytest.raises(RemoteProtocolError, match=r"sslnegotiation=direct.*--local-tls"):
        harness(bytewise).client(hello)


# -- upstream authentication --------------------------------------------------------------------


def test_cleartext_and_md5_use_the_broker_credential(bytewise: bool) -> None:
    h = harness(bytewise)
    h.client(w.startup(user="alice", password="client-secret")).take_up()
    h.server(w.auth(3))
    assert h.take_up() == b"p\0\0\0\x0bs3cret\0"
    h2 = harness(bytewise)
    h2.client(w.startup(user="alice")).take_up()
    h2.server(w.auth(5, b"salt"))
    inner = hashlib.md5(b"s3cretbroker").hexdigest()
    expected = b"md5" + hashlib.md5(inner.encode() + b"salt").hexdigest().encode() + b"\0"
    assert h2.take_up()[5:] == expected
    assert h.down == b"" and h2.down == b""  # nothing reaches the client before AuthenticationOk


def _scram_server(password: str = "s3cret"):  # type: ignore[no-untyped-def]
    mechanism = ScramMechanism()
    salt, stored, server_key, iterations = mechanism.make_auth_info(password, iteration_count=4096)
    return mechanism.make_server(lambda _user: (salt, stored, server_key, iterations))


def _sasl(h: w.Harness, password: str = "s3cret", tamper: bool = False) -> None:
    h.client(w.startup(user="alice")).take_up()
    h.server(w.auth(10, b"SCRAM-SHA-256\0\0"))
    first = h.take_up()
    assert first[:1] == b"p" and b"SCRAM-SHA-256\0" in first
    server = _scram_server(password)
    server.set_client_first(first[5 + 14 + 4 :].decode())
    h.server(w.auth(11, server.get_server_first().encode()))
    final = h.take_up()
    server.set_client_final(final[5:].decode())
    signature = server.get_server_final()
    if tamper:
        signature = signature[:-4] + ("AAAA" if not signature.endswith("AAAA") else "BBBB")
    h.server(w.auth(12, signature.encode()))


def test_scram_sha_256_authenticates_and_the_client_gets_authentication_ok(bytewise: bool) -> None:
    h = harness(bytewise)
    _sasl(h)
    h.server(w.AUTH_OK)
    assert h.take_down() == w.AUTH_OK
    assert h.closed is None


def test_scram_with_a_wrong_password_fails_closed() -> None:
    h = w.Harness()
    with pytest.raises(Exception):  # noqa: B017 - scramp refuses the proof server-side
        _sasl(h, password="other")


def test_a_forged_server_signature_is_an_authentication_failure() -> None:
    h = w.Harness()
    _sasl(h, tamper=True)
    fields = w.error_fields(h.take_down())
    assert fields["S"] == "FATAL" and "upstream authentication failed" in fields["M"]
    assert h.closed is not None


def test_upstream_auth_error_reaches_the_client_as_fatal_naming_the_cause(bytewise: bool) -> None:
    h = harness(bytewise)
    h.client(w.startup(user="alice")).take_up()
    h.server(w.error("28P01", 'password authentication failed for user "broker"', "FATAL"))
    fields = w.error_fields(h.take_down())
    assert fields["M"].startswith("jitctl: upstream authentication failed: password authentication")
    assert h.closed is not None


def test_no_password_in_the_credential_is_a_clear_failure() -> None:
    h = w.Harness(credential={"user": "broker", "password": "", "database": ""})
    h.client(w.startup(user="a")).server(w.auth(3))
    assert "credential has none" in w.error_fields(h.take_down())["M"]


@pytest.mark.parametrize("code", [2, 7, 9, 99])
def test_unsupported_auth_methods_fail(code: int) -> None:
    h = w.Harness()
    h.client(w.startup(user="a")).server(w.auth(code))
    assert "unsupported authentication" in w.error_fields(h.take_down())["M"]


# -- after authentication: keys, parameters, cancel ---------------------------------------------


def test_backend_key_is_replaced_and_registered_then_removed(bytewise: bool) -> None:
    h = harness(bytewise)
    h.client(w.startup(user="a")).take_up()
    h.server(w.AUTH_OK, w.param("server_version", "15"), w.key(4242, 0x01020304), w.ready())
    down = w.split_messages(h.take_down())
    assert [m[:1] for m in down] == [b"R", b"S", b"K", b"Z"]
    proxy = down[2][5:]
    assert proxy != (4242).to_bytes(4, "big") + (0x01020304).to_bytes(4, "big")
    entry = h.registry[proxy]
    assert entry["upstream"] == (4242).to_bytes(4, "big") + (0x01020304).to_bytes(4, "big")
    assert entry["target"] == "pg"
    h.core.session_ended()
    assert proxy not in h.registry


def test_cancel_request_with_a_known_key_is_forwarded_with_the_upstream_key(bytewise: bool) -> None:
    registry: dict[bytes, object] = {}
    first = w.Harness(registry=registry).connect()
    proxy = next(iter(registry))
    h = harness(bytewise, registry=registry)
    h.client(w.untyped(80877102, proxy))
    assert h.take_up() == w.untyped(
        80877102, (4242).to_bytes(4, "big") + (0x01020304).to_bytes(4, "big")
    )
    assert h.last("pg.cancel")["found"] is True and h.last("pg.cancel")["session"] == "sess-1"
    assert h.shutdowns == ["up"] and h.closed is None
    h._run(h.core.upstream_eof())
    assert h.closed is not None and not h.closed.error
    assert first.closed is None


@pytest.mark.parametrize("other_target", [False, True])
def test_cancel_request_with_an_unknown_key_is_recorded_and_closed(other_target: bool) -> None:
    registry: dict[bytes, object] = {}
    w.Harness(registry=registry, target="other").connect()
    proxy = next(iter(registry)) if other_target else b"\0" * 8
    h = w.Harness(registry=registry)
    h.client(w.untyped(80877102, proxy))
    assert h.up == b"" and h.last("pg.cancel")["found"] is False and h.closed is not None


@pytest.mark.parametrize(
    ("name", "value"), [("standard_conforming_strings", "off"), ("client_encoding", "SJIS")]
)
def test_lexing_parameter_changes_end_the_session(name: str, value: str, bytewise: bool) -> None:
    h = harness(bytewise).connect()
    h.client(w.q("select f()"))
    h.server(w.param(name, value), w.row_description("f"))
    fields = w.error_fields(h.take_down())
    assert fields["S"] == "FATAL" and name in fields["M"]
    assert h.closed is not None and h.last("pg.parameter")["action"] == "closed"


def test_client_bytes_sent_before_ready_wait_for_it() -> None:
    h = w.Harness()
    h.client(w.startup(user="a") + w.q("select 1")).take_up()
    h.server(w.AUTH_OK)
    assert h.take_up() == b""
    h.server(w.key(), w.ready())
    assert h.take_up() == w.q("select 1")


# -- simple query -------------------------------------------------------------------------------


def _statement_records(h: w.Harness) -> list[Record]:
    return [r for r in h.records if r.kind == "pg.statement"]


def _reads_harness(write_ahead: str = "changes") -> w.Harness:
    """The real classifier: which statements are plain reads is its call (`reads_only`)."""
    from jitctl_postgres.classify import classify, classify_function_call

    services = Services(classify, classify_function_call, w.Policy())
    return w.Harness(services, write_ahead=write_ahead).connect()


READS = [
    "select abalance from pgbench_accounts where aid = 5",
    "SELECT a.x, b.y FROM a JOIN b USING (id) WHERE a.z > 3 ORDER BY 1 LIMIT 10",
    "show search_path",
    "select 1; show work_mem",
    "with t as (select * from accounts) select * from t",
    "table accounts",
    "values (1), (2)",
    "select coalesce(a, b), current_user from accounts",  # constructs, not function calls
]
NOT_READS = [
    "delete from accounts where id = 1",
    "select 1; delete from accounts",
    "select nextval('s')",  # a function: any call may write
    "select count(*) from accounts",
    "select * from generate_series(1, 3)",  # a function in FROM
    "select * from accounts a, lateral evil(a.id) e",
    "select x from accounts group by x having evil(x)",
    "select * from accounts where id in (select evil())",
    "fetch all from c",
    "select * from accounts for update",  # a row lock
    "select * into copy_of from accounts",  # SELECT INTO creates a table
    "with gone as (delete from accounts returning *) select * from gone",  # writable CTE
    "explain analyze select 1",  # runs the statement; not a plain read
    "selec 1",  # unparseable: the most dangerous class
    "copy accounts to stdout",
    "begin",
    "set work_mem = '1GB'",
    "do $$ begin perform 1; end $$",
]


@pytest.mark.parametrize("text", READS)
def test_changes_mode_lets_a_plain_read_go_before_its_record_is_durable(text: str) -> None:
    """`postgres.write_ahead = "changes"`: the read's record is queued (it rides the next
    commit) and says it was not written ahead; the query goes up in the same batch."""
    h = _reads_harness()
    h.client(w.q(text))
    (statement,) = _statement_records(h)
    assert not statement.durable and statement.payload["write_ahead"] is False
    assert h.take_up() == w.q(text)


@pytest.mark.parametrize("text", NOT_READS)
def test_changes_mode_still_writes_ahead_whatever_is_not_a_plain_read(text: str) -> None:
    h = _reads_harness()
    h.client(w.q(text))
    (record,) = [r for r in h.records if r.kind in ("pg.statement", "pg.blocked")]
    assert record.durable and "write_ahead" not in record.payload


@pytest.mark.parametrize("text", READS[:2])
def test_default_mode_writes_reads_ahead_too(text: str) -> None:
    h = _reads_harness("all")
    h.client(w.q(text))
    (statement,) = _statement_records(h)
    assert statement.durable and "write_ahead" not in statement.payload


def test_changes_mode_applies_to_the_extended_protocol_per_prepared_statement() -> None:
    h = _reads_harness()
    h.client(
        w.parse("select * from accounts where id = $1", "r"), w.parse("update a set x = 1", "d")
    )
    for name in ("r", "d", "r"):
        h.client(w.bind(name, params=[b"1"] if name == "r" else []), w.execute(), w.SYNC)
    assert [(r.durable, r.payload["statement"]) for r in _statement_records(h)] == [
        (False, "r"),
        (True, "d"),
        (False, "r"),
    ]


def _parsed(h: w.Harness, text: str, name: str) -> None:
    h.client(w.parse(text, name), w.SYNC)
    h.server(w.message(b"1", b""), w.ready())
    h.take_up()
    h.take_down()


@pytest.mark.parametrize("mode", ["all", "changes"])
def test_a_parse_of_a_name_that_exists_does_not_change_what_its_executes_record(mode: str) -> None:
    """The server refuses a Parse of a name it already has (42P05) and goes on running the
    first statement; a client pipelining Bind/Execute behind the refused Parse must not get
    the second text recorded, nor the write-ahead wait skipped for a write."""
    h = _reads_harness(mode)
    _parsed(h, "update a set x = 1", "s")
    h.client(w.parse("select 1", "s"), w.SYNC, w.bind("s"), w.execute(), w.SYNC)
    (statement,) = _statement_records(h)
    assert statement.payload["text"] == "update a set x = 1" and statement.durable
    refused = w.error("42P05", 'prepared statement "s" already exists')
    h.server(refused, w.ready(), w.message(b"2", b""), w.complete("UPDATE 1"), w.ready())
    h.client(w.bind("s"), w.execute(), w.SYNC)
    assert _statement_records(h)[-1].payload["text"] == "update a set x = 1"


@pytest.mark.parametrize(
    "sql", ["prepare s as update a set x = 1", "deallocate s", "deallocate all", "discard all"]
)
def test_changes_mode_waits_for_named_statements_once_sql_manages_names(sql: str) -> None:
    """SQL PREPARE/DEALLOCATE/DISCARD change the server's statement names behind the
    protocol's back (the book does not follow them): from then on an Execute of a named
    statement may run something other than the text last parsed under its name, so it waits."""
    h = _reads_harness()
    _parsed(h, "select * from accounts where id = $1", "r")
    h.client(w.q(sql))
    h.client(w.bind("r", params=[b"1"]), w.execute(), w.SYNC)
    assert _statement_records(h)[-1].durable
    h.client(w.parse("select 2", ""), w.bind(""), w.execute(), w.SYNC)
    assert not _statement_records(h)[-1].durable  # the unnamed statement is always replaced


def test_changes_mode_writes_ahead_a_statement_that_was_not_prepared_here() -> None:
    h = _reads_harness()
    h.client(w.bind("elsewhere"), w.execute(), w.SYNC)
    (statement,) = _statement_records(h)
    assert statement.durable


def test_allowed_query_is_recorded_durably_before_it_is_forwarded(bytewise: bool) -> None:
    h = harness(bytewise).connect()
    h.client(w.q("select 1"))
    statement = [c for c in h.commands if isinstance(c, Record) and c.kind == "pg.statement"][-1]
    forward = [c for c in h.commands if isinstance(c, Forward) and c.direction is Direction.UP][-1]
    assert statement.durable and h.commands.index(statement) < h.commands.index(forward)
    assert statement.payload["text"] == "select 1" and statement.payload["decision"] == "allow"
    assert h.take_up() == w.q("select 1")
    h.time += 0.25
    reply = w.row_description("x") + w.data_row(b"1") + w.complete("SELECT 1") + w.ready()
    h.server(reply)
    assert h.take_down() == reply
    result = h.last("pg.result")
    assert result["rows"] == 1 and result["tag"] == "SELECT 1" and result["columns"] == ["x"]
    assert result["duration_ms"] == 250.0


def test_denied_query_is_failed_by_the_server_and_the_error_rewritten(bytewise: bool) -> None:
    h = harness(bytewise).connect()
    h.client(w.q("begin"))
    h.server(w.complete("BEGIN"), w.ready("T"))
    h.take_down()
    h.take_up()
    h.client(w.q("select 1; DELETE FROM t"))
    assert h.take_up() == w.q(FAIL_TEXT)
    blocked = h.last("pg.blocked")
    assert blocked["rule"] == "no-destroy" and blocked["text"] == "select 1; DELETE FROM t"
    h.server(
        w.error("42601", 'syntax error at or near "JITCTL_DENIED_BY_POLICY"', P="1"), w.ready("E")
    )
    error, z = w.split_messages(h.take_down())
    fields = w.error_fields(error)
    assert fields["C"] == "42501" and fields["S"] == "ERROR" and "P" not in fields
    assert fields["M"] == "jitctl: statement denied by policy: DELETE is denied"
    assert "no-destroy" in fields["D"]
    assert z == w.ready("E")  # the server's own status: the transaction is aborted


def test_approval_required_is_refused_for_now_with_its_own_message() -> None:
    h = w.Harness().connect()
    h.client(w.q("VACUUM t"))
    assert h.take_up() == w.q(FAIL_TEXT)
    h.server(w.error("42601", "syntax error"), w.ready())
    fields = w.error_fields(w.split_messages(h.take_down())[0])
    assert "approval required: VACUUM needs approval" in fields["M"]
    assert h.last("pg.blocked")["decision"] == "approve"


def test_multi_statement_results_are_recorded_per_statement(bytewise: bool) -> None:
    h = harness(bytewise).connect()
    h.client(w.q("select 1; select 2"))
    h.server(
        w.row_description("a"),
        w.data_row(b"1"),
        w.complete("SELECT 1"),
        w.row_description("b"),
        w.data_row(b"2"),
        w.data_row(b"3"),
        w.complete("SELECT 2"),
        w.ready(),
    )
    results = [r.payload for r in h.records if r.kind == "pg.result"]
    assert [(r["index"], r["rows"], r["columns"]) for r in results] == [
        (0, 1, ["a"]),
        (1, 2, ["b"]),
    ]


def test_empty_query_and_errors_keep_the_pipeline_in_step(bytewise: bool) -> None:
    h = harness(bytewise).connect()
    h.client(w.q(""), w.q("select 1/0"), w.q("select 2"))
    h.server(
        w.EMPTY,
        w.ready(),
        w.error("22012", "division by zero"),
        w.ready(),
        w.row_description("x"),
        w.data_row(b"2"),
        w.complete("SELECT 1"),
        w.ready(),
    )
    results = [r.payload for r in h.records if r.kind == "pg.result"]
    assert results[1]["error"]["sqlstate"] == "22012" and results[2]["rows"] == 1
    assert h.core.state.book.fifo == type(h.core.state.book.fifo)()


# -- extended protocol --------------------------------------------------------------------------


def test_extended_execution_is_recorded_with_text_and_params(bytewise: bool) -> None:
    h = harness(bytewise).connect()
    msgs = (
        w.parse("select $1, $2", types=[25, 17]),
        w.bind(params=[b"hello", b"\x00\xff"], formats=[0, 1]),
        w.describe("P"),
        w.execute(),
        w.SYNC,
    )
    h.client(*msgs)
    assert h.take_up() == b"".join(msgs)
    statement = h.last("pg.statement")
    assert statement["text"] == "select $1, $2" and statement["protocol"] == "extended"
    assert statement["params"] == ["hello", "\\x00ff"]
    h.server(
        w.PARSE_OK,
        w.BIND_OK,
        w.row_description("a", "b"),
        w.data_row(b"hello", b"x"),
        w.complete("SELECT 1"),
        w.ready(),
    )
    assert h.last("pg.result")["rows"] == 1 and h.last("pg.result")["statement"] == statement["seq"]


def test_denied_parse_fails_on_the_server_and_the_rest_is_discarded(bytewise: bool) -> None:
    h = harness(bytewise).connect()
    h.client(
        w.parse("delete from t where id = $1", types=[23]),
        w.bind(params=[b"1"]),
        w.describe("P"),
        w.execute(),
        w.SYNC,
    )
    up = w.split_messages(h.take_up())
    assert up[0] == w.parse(FAIL_TEXT, types=[23])
    h.server(w.error("42601", "syntax error"), w.ready())
    error, z = w.split_messages(h.take_down())
    assert w.error_fields(error)["C"] == "42501" and z == w.ready()
    assert not h.core.state.book.fifo


def test_blocked_named_statement_stays_blocked(bytewise: bool) -> None:
    h = harness(bytewise).connect()
    h.client(w.parse("drop table t", name="s1"), w.SYNC)
    h.server(w.error("42601", "syntax error"), w.ready())
    h.take_down()
    # A later Bind: the server says the statement does not exist; the client hears "denied".
    h.client(w.bind("s1"), w.execute(), w.SYNC)
    h.server(w.error("26000", 'prepared statement "s1" does not exist'), w.ready())
    assert w.error_fields(w.split_messages(h.take_down())[0])["C"] == "42501"
    # A later Parse cannot recreate the name, even with harmless text.
    h.client(w.parse("select 1", name="s1"), w.SYNC)
    assert w.split_messages(h.take_up())[-2] == w.parse(FAIL_TEXT, name="s1")
    assert "blocked earlier" in h.last("pg.blocked")["reason"]


def test_pipeline_error_discards_until_sync_and_later_rows_are_attributed(bytewise: bool) -> None:
    h = harness(bytewise, svc=w.services(masks=w.Masks())).connect_masked()
    h.client(
        w.parse("select email from t"),
        w.bind(),
        w.describe("P"),
        w.execute(),
        w.parse("select 1/0"),
        w.bind(),
        w.describe("P"),
        w.execute(),
        w.parse("select email from t"),
        w.bind(),
        w.execute(),
        w.SYNC,
        w.parse("select name from t"),
        w.bind(),
        w.describe("P"),
        w.execute(),
        w.SYNC,
    )
    first_seq = [r.payload["seq"] for r in h.records if r.kind == "pg.statement"][-4]
    h.server(
        w.PARSE_OK,
        w.BIND_OK,
        w.row_description("email"),
        w.data_row(b"a@b.c"),
        w.complete("SELECT 1"),
        w.PARSE_OK,
        w.BIND_OK,
        w.row_description("?column?"),
        w.error("22012", "division by zero"),
        w.ready(),
        w.PARSE_OK,
        w.BIND_OK,
        w.row_description("name"),
        w.data_row(b"bob x@y.z"),
        w.complete("SELECT 1"),
        w.ready(),
    )
    down = h.take_down()
    assert b"a@b.c" not in down and b"x@y.z" not in down and b"bob [EMAIL]" in down
    results = [r.payload for r in h.records if r.kind == "pg.result"]
    assert results[0]["statement"] == first_seq and results[0]["masked"] == {"COLUMN": 1}
    assert any(r.get("skipped") for r in results)  # the third execution never ran
    assert not h.core.state.book.fifo


def test_function_call_is_failed_by_the_server_as_a_function_call(bytewise: bool) -> None:
    h = harness(bytewise).connect()
    h.client(w.function_call(764, [b"\0\0\0\1"]))
    up = h.take_up()
    assert up == w.function_call(0, [b"\0\0\0\1"])
    h.server(w.error("42883", "function with OID 0 does not exist"), w.ready())
    assert w.error_fields(w.split_messages(h.take_down())[0])["C"] == "42501"
    assert h.last("pg.blocked")["function_oid"] == 764


def test_copy_in_through_extended_protocol_with_libpqs_double_sync(bytewise: bool) -> None:
    """The server ignores the Sync sent before the COPY data; libpq sends another after it."""
    h = harness(bytewise).connect()
    h.client(w.parse("copy t from stdin"), w.bind(), w.describe("P"), w.execute(), w.SYNC)
    h.server(w.PARSE_OK, w.BIND_OK, w.NO_DATA, w.copy_response(b"G", 2))
    h.client(w.copy_data(b"1\ta\n"), w.copy_data(b"2\tb\n"), w.COPY_DONE, w.SYNC)
    h.server(w.complete("COPY 2"), w.ready())
    h.client(w.q("select 1"))
    h.server(w.row_description("x"), w.data_row(b"1"), w.complete("SELECT 1"), w.ready())
    copy = next(r.payload for r in h.records if r.kind == "pg.result")
    assert copy["copy"] == {"direction": "in", "bytes": 8, "messages": 2}
    assert not h.core.state.book.fifo and h.closed is None


def test_copy_out_lines_are_masked_on_a_masked_target(bytewise: bool) -> None:
    h = harness(bytewise, svc=w.services(masks=w.Masks())).connect_masked(
        tables=[(16384, "public", "t")], attrs=[(16384, 1, "id"), (16384, 2, "email")]
    )
    h.client(w.q("copy t to stdout"))
    h.server(
        w.copy_response(b"H", 2),
        w.copy_data(b"1\tx@y.z\n"),
        w.SERVER_COPY_DONE,
        w.complete("COPY 1"),
        w.ready(),
    )
    down = h.take_down()
    assert b"x@y.z" not in down and b"1\t[MASKED]\n" in down
    # The catalog names the fields, so the record's counts name the column.
    assert h.last("pg.result")["masked"] == {"COLUMN:email": 1}


def test_binary_copy_out_is_refused_on_a_masked_target() -> None:
    h = w.Harness(svc=w.services(masks=w.Masks())).connect_masked()
    h.client(w.q("copy t to stdout (format binary)"))
    assert h.take_up() == w.q(FAIL_TEXT)


# -- masking --------------------------------------------------------------------------------------


def test_text_and_binary_values_are_masked_before_the_client_and_the_trail(bytewise: bool) -> None:
    h = harness(bytewise, svc=w.services(masks=w.Masks()), record_rows=5).connect_masked(
        tables=[(16384, "public", "t")]
    )
    h.client(w.parse("select"), w.bind(results=[1]), w.describe("P"), w.execute(), w.SYNC)
    h.server(
        w.PARSE_OK,
        w.BIND_OK,
        w.row_description(
            ("email", 16384, 25, 1), ("note", 0, 25, 1), ("n", 16384, 20, 1), ("doc", 0, 3802, 1)
        ),
        w.data_row(b"a@b.c", b"mail x@y.z", b"\0" * 8, b'\x01{"k": "q@r.s"}'),
        w.complete("SELECT 1"),
        w.ready(),
    )
    down = h.take_down()
    assert b"a@b.c" not in down and b"x@y.z" not in down and b"q@r.s" not in down
    assert b'\x01{"k": [EMAIL]' in down
    recorded = repr([r.payload for r in h.records])
    assert "a@b.c" not in recorded and "x@y.z" not in recorded
    assert h.last("pg.result")["rows_sample"][0][0] == "[MASKED]"


def test_binary_non_text_value_in_a_masked_column_becomes_null() -> None:
    h = w.Harness(svc=w.services(masks=w.Masks(columns={"card"}))).connect_masked()
    h.client(w.parse("select"), w.bind(results=[1]), w.describe("P"), w.execute(), w.SYNC)
    h.server(
        w.PARSE_OK,
        w.BIND_OK,
        w.row_description(("card", 0, 20, 1)),
        w.data_row(b"\0\0\0\0\0\0\0\x07"),
        w.complete("SELECT 1"),
        w.ready(),
    )
    assert w.data_row(None) in h.take_down()


def test_unknown_table_oid_matches_table_qualified_masks() -> None:
    h = w.Harness(svc=w.services(masks=w.Masks(columns={"t.email"}))).connect_masked()
    h.client(w.q("select"))
    h.server(
        w.row_description(("email", 99999, 25, 0)),
        w.data_row(b"secret"),
        w.complete("SELECT 1"),
        w.ready(),
    )
    assert b"secret" not in h.take_down()


def test_errors_notices_and_notifications_are_masked() -> None:
    h = w.Harness(svc=w.services(masks=w.Masks())).connect_masked()
    h.server(w.notice("hello a@b.c"), w.message_a(7, "chan", "to x@y.z"))
    down = h.take_down()
    assert b"a@b.c" not in down and b"x@y.z" not in down
    h.client(w.q("select cast(email as int)"))
    h.server(w.error("22P02", 'invalid input syntax for type integer: "a@b.c"'), w.ready())
    assert b"a@b.c" not in h.take_down() and "a@b.c" not in repr(h.records)


def test_masked_rows_over_the_cap_end_the_session() -> None:
    from jitctl_postgres.backend import MASK_CAP

    h = w.Harness(svc=w.services(masks=w.Masks())).connect_masked()
    h.client(w.q("select"))
    h.server(w.row_description("x"))
    h.take_down()
    h.server(b"D" + (MASK_CAP + 100).to_bytes(4, "big") + b"\0\1")
    assert w.error_fields(h.take_down())["S"] == "FATAL" and h.closed is not None


def test_unmasked_large_rows_stream_through_before_they_are_complete() -> None:
    h = w.Harness().connect()
    h.client(w.q("select big"))
    h.server(w.row_description("x"))
    row = w.data_row(b"z" * 1_000_000)
    h.server(row[:600_000])
    assert len(h.down) > 500_000  # forwarded before the row is complete
    h.server(row[600_000:], w.complete("SELECT 1"), w.ready())
    assert bytes(h.take_down()).endswith(w.ready()) and h.last("pg.result")["rows"] == 1


def test_catalog_query_runs_before_the_first_ready_on_masked_targets(bytewise: bool) -> None:
    h = harness(bytewise, svc=w.services(masks=w.Masks()))
    h.client(w.startup(user="a")).take_up()
    h.server(w.AUTH_OK, w.key(), w.ready())
    assert b"pg_class" in h.take_up()
    assert not h.take_down().endswith(w.ready())  # held
    h.server(
        w.row_description("oid", "nspname", "relname"),
        w.data_row(b"16384", b"public", b"t"),
        w.complete("SELECT 1"),
        w.row_description("attrelid", "attname"),
        w.complete("SELECT 0"),
        w.row_description("oid"),
        w.complete("SELECT 0"),
        w.ready(),
    )
    assert h.take_down() == w.ready()
    assert h.core.state.tables == {16384: "public.t"}


# -- protocol errors ------------------------------------------------------------------------------


def test_unknown_client_message_is_a_protocol_error() -> None:
    h = w.Harness().connect()
    with pytest.raises(RemoteProtocolError):
        h.client(b"?\0\0\0\4")


@pytest.mark.parametrize(
    "reply",
    [w.PARSE_OK, w.ready(), w.data_row(b"1"), b"R\0\0\0\x08\0\0\0\0", b"!\0\0\0\4", b"D\0\0\0\2"],
)
def test_responses_nobody_asked_for_are_protocol_errors(reply: bytes) -> None:
    h = w.Harness().connect()
    with pytest.raises(RemoteProtocolError):
        h.server(reply)


def test_terminate_and_eof_are_passed_on() -> None:
    h = w.Harness().connect()
    h.client(w.TERMINATE)
    assert h.take_up() == w.TERMINATE
    h._run(h.core.client_eof())
    h._run(h.core.upstream_eof())
    assert h.shutdowns == ["up", "down"]


def test_a_target_whose_policy_does_not_load_refuses_sessions_and_says_why() -> None:
    from types import SimpleNamespace

    from jitctl.plugin import SessionContext
    from jitctl_postgres import plugin

    target = SimpleNamespace(name="pg", rules=[object()], default_action="nonsense", masks=[])
    core = plugin.new_core(SessionContext(session_id="s", target=target))
    out = list(core.client_data(w.startup(user="a")))
    fatal = next(c for c in out if isinstance(c, Forward)).data
    assert (
        w.error_fields(fatal)["S"] == "FATAL" and "cannot be loaded" in w.error_fields(fatal)["M"]
    )
    assert any(type(c).__name__ == "Close" for c in out)
