"""The statement classifier: what every statement does, wherever it hides (notes §9, §10)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jitctl_postgres.classify import (
    MAX_CACHED_CHARS,
    Classification,
    classify,
    classify_function_call,
    clear_caches,
)

# (sql, top-level kind, every kind inside)
KINDS = [
    ("SELECT 1", "select", {"select"}),
    ("VALUES (1), (2)", "select", {"select"}),
    ("INSERT INTO t VALUES (1)", "insert", {"insert"}),
    ("INSERT INTO t SELECT * FROM s", "insert", {"insert", "select"}),
    (
        "INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = 1",
        "insert",
        {"insert", "update"},
    ),
    ("INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING", "insert", {"insert"}),
    ("UPDATE t SET a = 1 WHERE id = 2", "update", {"update"}),
    ("DELETE FROM t WHERE id IN (SELECT id FROM s)", "delete", {"delete", "select"}),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", "merge", {"merge", "delete"}),
    (
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = 1 "
        "WHEN NOT MATCHED THEN INSERT VALUES (s.id)",
        "merge",
        {"merge", "update", "insert"},
    ),
    ("TRUNCATE a, b", "truncate", {"truncate"}),
    ("DROP TABLE t", "drop", {"drop"}),
    ("DROP FUNCTION f(int)", "drop", {"drop"}),
    ("DROP DATABASE d", "drop", {"drop"}),
    ("DROP ROLE bob", "drop", {"drop"}),
    ("ALTER TABLE t ADD COLUMN c int", "alter", {"alter"}),
    ("ALTER TABLE t RENAME TO u", "alter", {"alter"}),
    ("ALTER SYSTEM SET work_mem = '1GB'", "alter", {"alter", "set"}),
    ("CREATE TABLE t (a int)", "create", {"create"}),
    ("CREATE INDEX i ON t (a)", "create", {"create"}),
    ("CREATE VIEW v AS SELECT * FROM t", "create", {"create", "select"}),
    ("CREATE TABLE x AS SELECT * FROM y", "create", {"create", "select"}),
    ("CREATE MATERIALIZED VIEW mv AS SELECT 1", "create", {"create", "select"}),
    ("SELECT * INTO n FROM t", "select", {"select", "create"}),
    ("CREATE EXTENSION dblink", "create", {"create"}),
    ("CREATE RULE r AS ON INSERT TO t DO INSTEAD DELETE FROM u", "create", {"create", "delete"}),
    ("GRANT SELECT ON t TO bob", "grant", {"grant"}),
    ("REVOKE admin FROM bob", "revoke", {"revoke"}),
    ("COPY t TO STDOUT", "copy", {"copy"}),
    ("COPY (DELETE FROM t RETURNING *) TO STDOUT", "copy", {"copy", "delete"}),
    ("CALL p(1)", "call", {"call"}),
    ("PREPARE x AS DELETE FROM t", "prepare", {"prepare", "delete"}),
    ("EXECUTE x(1)", "execute", {"execute"}),
    ("DEALLOCATE x", "deallocate", {"deallocate"}),
    ("EXPLAIN ANALYZE DELETE FROM t", "explain", {"explain", "delete"}),
    ("EXPLAIN SELECT 1", "explain", {"explain", "select"}),
    ("SET search_path = public", "set", {"set"}),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "set", {"set"}),
    ("RESET ALL", "reset", {"reset"}),
    ("SHOW search_path", "show", {"show"}),
    ("BEGIN", "begin", {"begin"}),
    ("START TRANSACTION READ ONLY", "begin", {"begin"}),
    ("COMMIT", "commit", {"commit"}),
    ("ROLLBACK TO SAVEPOINT a", "rollback", {"rollback"}),
    ("SAVEPOINT a", "savepoint", {"savepoint"}),
    ("RELEASE SAVEPOINT a", "release", {"release"}),
    ("LISTEN ch", "listen", {"listen"}),
    ("NOTIFY ch, 'x'", "notify", {"notify"}),
    ("VACUUM FULL t", "vacuum", {"vacuum"}),
    ("ANALYZE t", "analyze", {"analyze"}),
    ("DISCARD PLANS", "discard", {"discard"}),
    ("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", "lock", {"lock"}),
    ("DECLARE c CURSOR FOR SELECT * FROM t", "declare", {"declare", "select"}),
    ("FETCH 10 FROM c", "fetch", {"fetch"}),
    ("CHECKPOINT", "checkpoint", {"checkpoint"}),
    ("LOAD 'auto_explain'", "load", {"load"}),
    ("COMMENT ON TABLE t IS 'x'", "comment", {"comment"}),
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "select", {"select", "delete"}),
    ("WITH x AS (SELECT 1) DELETE FROM t", "delete", {"delete", "select"}),
    ("DO $$BEGIN DELETE FROM t; END$$", "do", {"do", "delete"}),
    ("DO $$BEGIN EXECUTE 'DROP TABLE ' || 't'; END$$", "do", {"do", "select", "unknown"}),
    ("DO LANGUAGE plpython3u $$plpy.execute('drop table t')$$", "do", {"do", "unknown"}),
]


@pytest.mark.parametrize(("sql", "kind", "kinds"), KINDS, ids=[k[0][:50] for k in KINDS])
def test_kind_and_every_kind_inside(sql: str, kind: str, kinds: set[str]) -> None:
    """The statement keeps its own kind, and `kinds` holds every kind found anywhere in it."""
    (info,) = classify(sql).statements
    assert (info.kind, info.kinds) == (kind, kinds)


# (sql, tables read, tables written)
TABLES = [
    ("SELECT * FROM a JOIN s.b ON true", {"a", "s.b"}, set()),
    ('SELECT * FROM "MixedCase"', {"mixedcase"}, set()),
    ("SELECT * FROM db.s.t", {"s.t"}, set()),
    ("INSERT INTO t SELECT * FROM t", {"t"}, {"t"}),
    ("UPDATE s.t SET a = u.a FROM u WHERE s.t.id = u.id", {"u"}, {"s.t"}),
    ("DELETE FROM t USING u WHERE t.id = u.id", {"u"}, {"t"}),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", {"s"}, {"t"}),
    ("TRUNCATE a, s.b", set(), {"a", "s.b"}),
    ("DROP TABLE a.b, c", set(), {"a.b", "c"}),
    ('DROP TABLE U&"d\\0061ta"', set(), {"data"}),
    # DROP TRIGGER, RULE and POLICY change the table they are on, as CREATE does
    ("DROP TRIGGER audit ON s.t", set(), {"s.t"}),
    ("CREATE TRIGGER audit AFTER INSERT ON s.t EXECUTE FUNCTION f()", set(), {"s.t"}),
    ("DROP RULE IF EXISTS r ON t", set(), {"t"}),
    ("DROP POLICY p ON db.s.t", set(), {"s.t"}),
    ("COPY t FROM STDIN", set(), {"t"}),
    ("COPY t TO STDOUT", {"t"}, set()),
    ("SELECT * INTO n FROM t", {"t"}, {"n"}),
    ("CREATE TABLE x AS SELECT * FROM y", {"y"}, {"x"}),
    ("ALTER TABLE t ENABLE RULE r", set(), {"t"}),
    ("ALTER TABLE t RENAME COLUMN a TO b", set(), {"t"}),
    # The server renames a table's or a view's column this way too (PostgreSQL 15).
    ("ALTER TYPE t RENAME ATTRIBUTE a TO b", set(), {"t"}),
    ("GRANT SELECT ON s.t TO bob", set(), {"s.t"}),
    ("WITH d AS (SELECT * FROM t) SELECT * FROM d", {"t"}, set()),
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", set(), {"t"}),
    # A CTE body does not see its own name unless RECURSIVE: the inner `secret` is the table.
    ("WITH secret AS (SELECT * FROM secret) SELECT * FROM secret", {"secret"}, set()),
    ("WITH RECURSIVE r AS (SELECT 1 UNION ALL SELECT * FROM r) SELECT * FROM r", set(), set()),
    # A CTE is only visible inside its own query, not to the outer FROM list.
    ("SELECT * FROM x, (WITH x AS (SELECT 1) SELECT * FROM x) y", {"x"}, set()),
    ('WITH "D" AS (SELECT 1) SELECT * FROM d', {"d"}, set()),
    ("SELECT * FROM s.d, (WITH d AS (SELECT 1) SELECT * FROM d) q", {"s.d"}, set()),
    ("DO $$BEGIN DELETE FROM t WHERE id IN (SELECT id FROM u); END$$", {"u"}, {"t"}),
]


@pytest.mark.parametrize(("sql", "read", "written"), TABLES, ids=[t[0][:50] for t in TABLES])
def test_tables_read_and_written(sql: str, read: set[str], written: set[str]) -> None:
    """Tables are schema-qualified when the SQL qualifies them, lower-cased, and not CTEs."""
    (info,) = classify(sql).statements
    assert (info.tables_read, info.tables_written) == (read, written)


# CREATE TYPE, and ALTER TYPE's ADD/ALTER/DROP ATTRIBUTE (the server refuses them on anything
# but a composite type), name a type, never a table, whichever form they take; a column type
# that is not built in still counts as a cast (sqlcalls.py). With CASCADE they also alter the
# type's typed tables, unnamed: test_classify_type_ddl.py.
# (sql, kind, classes, functions)
TYPE_DDL = [
    ("CREATE TYPE x AS (a int, b text)", "create", {"DDL"}, set()),
    ("CREATE TYPE s.x AS (a mytype, b text)", "create", {"DDL", "FUNCTION"}, {"cast(mytype)"}),
    ("CREATE TYPE e AS ENUM ('a', 'b')", "create", {"DDL"}, set()),
    ("CREATE TYPE r AS RANGE (subtype = int4)", "create", {"DDL"}, set()),
    # its input and output functions count as calls (test_classify_type_ddl.py)
    (
        "CREATE TYPE b (input = b_in, output = b_out)",
        "create",
        {"DDL", "FUNCTION"},
        {"b_in", "b_out"},
    ),
    ("ALTER TYPE x ADD ATTRIBUTE c int", "alter", {"DDL"}, set()),
    (
        "ALTER TYPE s.x ADD ATTRIBUTE c mytype CASCADE",
        "alter",
        {"DDL", "FUNCTION"},
        {"cast(mytype)"},
    ),
    ("ALTER TYPE x ALTER ATTRIBUTE c TYPE mytype", "alter", {"DDL", "FUNCTION"}, {"cast(mytype)"}),
    ("ALTER TYPE x DROP ATTRIBUTE c", "alter", {"DDL"}, set()),
    ("ALTER TYPE e ADD VALUE 'c'", "alter", {"DDL"}, set()),
]


@pytest.mark.parametrize(
    ("sql", "kind", "classes", "functions"), TYPE_DDL, ids=[t[0][:50] for t in TYPE_DDL]
)
def test_type_ddl_is_ddl_on_a_type_and_touches_no_table(
    sql: str, kind: str, classes: set[str], functions: set[str]
) -> None:
    (info,) = classify(sql).statements
    assert (info.kind, info.classes, info.functions) == (kind, classes, functions)
    assert (info.tables_read, info.tables_written) == (set(), set())


# (sql, flags that must be present)
FLAGS = [
    ("COPY t TO PROGRAM 'gzip > /tmp/x'", {"copy_program", "copy_to"}),
    ("COPY t FROM PROGRAM 'curl evil'", {"copy_program", "copy_from"}),
    ("COPY t FROM '/etc/passwd'", {"copy_file", "copy_from"}),
    ("COPY (SELECT 1) TO STDOUT WITH (FORMAT binary)", {"copy_to", "copy_binary"}),
    ("DO $$BEGIN EXECUTE 'x'; END$$", {"dynamic_sql"}),
    ("DO $$DECLARE r record; BEGIN FOR r IN EXECUTE 'x' LOOP END LOOP; END$$", {"dynamic_sql"}),
    ("DO $$DECLARE c refcursor; BEGIN OPEN c FOR EXECUTE 'x'; END$$", {"dynamic_sql"}),
    ("DO LANGUAGE plperl $$ spi_exec_query('drop table t') $$", {"dynamic_sql"}),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE plv8 AS 'return 1'", {"dynamic_sql"}),
    ("EXPLAIN ANALYZE DELETE FROM t", {"explain_analyze"}),
    ("EXPLAIN ANALYSE SELECT 1", {"explain_analyze"}),
    ("EXPLAIN (ANALYZE, BUFFERS) SELECT 1", {"explain_analyze"}),
    ("EXPLAIN (ANALYZE true) SELECT 1", {"explain_analyze"}),
    ("SELECT * INTO n FROM t", {"select_into"}),
    ("WITH d AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM d", {"writable_cte"}),
    ("SET ROLE admin", {"set_role"}),
    ("SET LOCAL ROLE admin", {"set_role"}),
    ("RESET ROLE", {"set_role"}),
    ("SELECT set_config('role', 'admin', false)", {"set_role", "dangerous_function"}),
    ("SET SESSION AUTHORIZATION bob", {"session_authorization"}),
    ("RESET SESSION AUTHORIZATION", {"session_authorization"}),
    ("DISCARD ALL", {"session_authorization"}),
    ("SET standard_conforming_strings = off", {"lexing_change"}),
    ("SET standard_conforming_strings TO DEFAULT", {"lexing_change"}),
    ("set LOCAL Standard_Conforming_Strings = 0", {"lexing_change"}),
    ("RESET standard_conforming_strings", {"lexing_change"}),
    ("SET escape_string_warning = off", {"lexing_change"}),
    ("SET backslash_quote = on", {"lexing_change"}),
    ("SET client_encoding = 'SJIS'", {"lexing_change"}),
    ("SET NAMES 'BIG5'", {"lexing_change"}),
    ("SELECT set_config('standard_conforming_strings', 'off', false)", {"lexing_change"}),
    ("SELECT pg_catalog.SET_CONFIG('STANDARD_CONFORMING_STRINGS', 'off', true)", {"lexing_change"}),
    # The setting's name is computed: it could be anything, so assume the worst.
    ("SELECT set_config(n, 'off', false) FROM (VALUES ('x')) v(n)", {"lexing_change", "set_role"}),
    ("SELECT set_config('standard_' || 'conforming_strings', 'off', false)", {"lexing_change"}),
    ("ALTER ROLE bob SET standard_conforming_strings = off", {"lexing_change"}),
    ("ALTER DATABASE d SET client_encoding = 'SJIS'", {"lexing_change"}),
    ("ALTER SYSTEM SET standard_conforming_strings = off", {"lexing_change"}),
    (
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET backslash_quote = on AS 'SELECT 1'",
        {"lexing_change"},
    ),
    (
        "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'",
        {"lexing_change"},
    ),
    ("DO $$BEGIN SET standard_conforming_strings = off; END$$", {"lexing_change"}),
    (
        "DO $$BEGIN PERFORM set_config('standard_conforming_strings', 'off', false); END$$",
        {"lexing_change"},
    ),
    ("SET search_path = evil, public", {"search_path"}),
    ("SET session_replication_role = replica", {"replication_role"}),
    ("SELECT pg_terminate_backend(42)", {"dangerous_function"}),
    ("SELECT PG_CATALOG.PG_READ_FILE('/etc/passwd')", {"dangerous_function"}),
    ("SELECT * FROM pg_ls_dir('.')", {"dangerous_function"}),
    ("SELECT query_to_xml_and_xmlschema('select 1', true, true, '')", {"dangerous_function"}),
    ("SELECT pg_advisory_xact_lock_shared(1)", {"dangerous_function"}),
    ("SELECT pg_sleep_for('1 minute')", {"dangerous_function"}),
    ("SELECT nextval('s')", {"dangerous_function"}),
    ("CALL dblink_exec('dbname=x', 'drop table t')", {"dangerous_function"}),
    ("DO $$BEGIN PERFORM lo_export(1, '/tmp/x'); END$$", {"dangerous_function"}),
    ("DO $$DECLARE v int := pg_sleep(1); BEGIN END$$", {"dangerous_function"}),
    ("DO $$DECLARE a int[]; BEGIN a[pg_sleep(1)] := 1; END$$", {"dangerous_function"}),
    ("UPDATE t SET a = 1", {"no_where"}),
    ("DELETE FROM t", {"no_where"}),
    ("SELECT * FROM t FOR UPDATE", {"row_lock"}),
]


@pytest.mark.parametrize(("sql", "flags"), FLAGS, ids=[f[0][:60] for f in FLAGS])
def test_risk_flags(sql: str, flags: set[str]) -> None:
    (info,) = classify(sql).statements
    assert flags <= info.flags


NOT_FLAGGED = [
    ("SET client_encoding = 'UTF8'", "lexing_change"),  # libpq's PQsetClientEncoding sends this
    ("SET NAMES 'utf-8'", "lexing_change"),
    ("RESET ALL", "lexing_change"),  # back to the session's start values, which were checked
    ("SET application_name = 'psql'", "lexing_change"),
    ("SELECT current_setting('standard_conforming_strings')", "lexing_change"),
    ("EXPLAIN (ANALYZE false) DELETE FROM t", "explain_analyze"),
    ("EXPLAIN (ANALYZE off) SELECT 1", "explain_analyze"),
    ("DELETE FROM t WHERE CURRENT OF c", "no_where"),
    ("SELECT count(*) FROM generate_series(1, 10)", "dangerous_function"),
    ("DISCARD PLANS", "session_authorization"),
]


@pytest.mark.parametrize(("sql", "flag"), NOT_FLAGGED, ids=[n[0][:60] for n in NOT_FLAGGED])
def test_harmless_statements_are_not_flagged(sql: str, flag: str) -> None:
    (info,) = classify(sql).statements
    assert flag not in info.flags


# A type named like a built-in one, in the session's temporary schema (searched for types
# before pg_catalog) or a schema a search_path lists first, is what `'x'::text` then runs.
SHADOWING = [
    "CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (f(VALUE))",
    "CREATE DOMAIN pg_temp._int4 AS pg_catalog.int4[] CHECK (f(VALUE))",  # '{1}'::_int4
    "CREATE DOMAIN serial AS int CHECK (f(VALUE))",  # no built-in serial type: any schema
    "create domain PG_TEMP.INT4 as integer",  # names are compared after case folding
    "CREATE TYPE pg_temp.text (input = f_in, output = f_out)",
    "CREATE TYPE pg_temp.text",  # a shell type
    "CREATE TYPE pg_temp.text AS (a int)",
    "CREATE TYPE pg_temp.bool AS ENUM ('yes', 'no')",
    "CREATE TYPE pg_temp.int4range AS RANGE (subtype = int4)",
    "CREATE TYPE r AS RANGE (subtype = int4, multirange_type_name = pg_temp.int4multirange)",
    "CREATE TYPE r AS RANGE (subtype = int4, multirange_type_name = 'int4multirange')",
    "ALTER TYPE pg_temp.t RENAME TO text",
    "ALTER DOMAIN pg_temp.d RENAME TO text",
    "ALTER TYPE s.text SET SCHEMA first_on_the_path",
    "ALTER DOMAIN s.text SET SCHEMA first_on_the_path",
    # A table's or view's row type takes its name: '(…)'::text reads a temporary table text's
    # row, and runs its columns' domain CHECKs.
    "CREATE TEMP TABLE text (a int)",
    "CREATE TABLE IF NOT EXISTS pg_temp.text (a int)",
    "CREATE TEMP VIEW text AS SELECT 1 AS a",
    "CREATE MATERIALIZED VIEW text AS SELECT 1 AS a",
    "CREATE FOREIGN TABLE text (a int) SERVER s",
    "CREATE TEMP TABLE text AS SELECT 1 AS a",
    "SELECT 1 AS a INTO TEMP text",
    "CREATE SCHEMA s CREATE TABLE text (a int)",
    "ALTER TABLE pg_temp.t RENAME TO text",
    "ALTER VIEW v RENAME TO text",
    "ALTER TABLE s.text SET SCHEMA first_on_the_path",
    "DO $$BEGIN CREATE DOMAIN pg_temp.text AS pg_catalog.text; END$$",
]


@pytest.mark.parametrize("sql", SHADOWING, ids=[s[:60] for s in SHADOWING])
def test_ddl_naming_a_type_like_a_built_in_one_is_flagged(sql: str) -> None:
    (info,) = classify(sql).statements
    assert "shadows_builtin_type" in info.flags


NOT_SHADOWING = [
    "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
    "CREATE DOMAIN posint AS int CHECK (VALUE > 0)",
    "CREATE TABLE t (id serial, a text, b int4[])",
    "CREATE TYPE \"Text\" AS ENUM ('a')",  # quoted: not the name `text` resolves to
    "CREATE DOMAIN cardinal_number AS int",  # information_schema's is free only qualified
    "CREATE TEMP SEQUENCE text",  # sequences have no row type (PostgreSQL 14 and later)
    "CREATE INDEX text ON t (a)",
    "ALTER TABLE t RENAME COLUMN a TO text",
    "ALTER TYPE t RENAME ATTRIBUTE a TO text",
    "ALTER DOMAIN d RENAME CONSTRAINT c TO text",
    "ALTER TABLE t SET SCHEMA s",
    "CREATE AGGREGATE text (int) (sfunc = f, stype = int)",
    "SELECT 'x'::text, '1'::int4, '{1}'::_int4",
]


@pytest.mark.parametrize("sql", NOT_SHADOWING, ids=[s[:60] for s in NOT_SHADOWING])
def test_ddl_naming_other_types_is_not_flagged(sql: str) -> None:
    (info,) = classify(sql).statements
    assert "shadows_builtin_type" not in info.flags


def test_functions_are_recorded_qualified_and_case_folded() -> None:
    info = classify('SELECT Lower(x), pg_catalog.NOW(), "MyFn"() FROM t').statements[0]
    assert info.functions == {"lower", "pg_catalog.now", "myfn"}
    assert "FUNCTION" in info.classes


def test_call_and_table_functions_are_recorded() -> None:
    assert classify("CALL s.p(1)").functions == {"s.p"}
    assert classify("SELECT * FROM pg_read_file('x')").functions == {"pg_read_file"}


# Calls with no function call in the text (sqlcalls.py): (sql, the names recorded).
HIDDEN_CALLS = [
    ("SELECT a === b FROM t", {"operator(===)"}),
    ("SELECT a OPERATOR(myschema.===) b", {"myschema.operator(===)"}),
    ("SELECT a OPERATOR(myschema.=) b", {"myschema.operator(=)"}),  # any schema but pg_catalog
    ("SELECT a OPERATOR(pg_catalog.===) b", {"pg_catalog.operator(===)"}),
    ("SELECT !== a", {"operator(!==)"}),  # prefix
    ("SELECT * FROM t WHERE a === ANY (ARRAY[1, 2])", {"operator(===)"}),
    ("SELECT * FROM t WHERE a !== ALL (SELECT b FROM u)", {"operator(!==)"}),
    ("SELECT * FROM t WHERE (a, b) === (SELECT 1, 2)", {"operator(===)"}),
    ("SELECT * FROM t ORDER BY a USING >>>", {"operator(>>>)"}),
    ("DELETE FROM t WHERE a <=> 1", {"operator(<=>)"}),
    ("SELECT * FROM t TABLESAMPLE system_rows (10)", {"tablesample(system_rows)"}),
    ("SELECT * FROM t TABLESAMPLE ext.bernoulli (1)", {"ext.tablesample(bernoulli)"}),
    ("SELECT 'x'::mytype", {"cast(mytype)"}),
    ("SELECT CAST(a AS s.MyType) FROM t", {"s.cast(mytype)"}),
    ("SELECT mytype 'literal'", {"cast(mytype)"}),
    ("SELECT '{x}'::status[]", {"cast(status)"}),  # an array's element type
    ("SELECT '1'::serial", {"cast(serial)"}),  # serial is built in only as a column's type
    ("SELECT CAST(a AS bigserial) FROM t", {"cast(bigserial)"}),
    ("SELECT * FROM f() AS t(a serial)", {"f", "cast(serial)"}),  # a column list, not a table
    ("CREATE TYPE pair AS (a serial)", {"cast(serial)"}),
    ("SELECT 'x'::\"Text\"", {"cast(text)"}),  # quoted: a user's type, not pg_catalog's text
    ("UPDATE t SET s = 'on'::status WHERE id = 1", {"cast(status)"}),
    ("SELECT * FROM XMLTABLE('/a' PASSING x COLUMNS c dom PATH 'b')", {"cast(dom)"}),
    ("SELECT * FROM f() AS r(a dom)", {"f", "cast(dom)"}),
    ("PREPARE p(dom) AS SELECT $1", {"cast(dom)"}),
    ("CREATE TABLE t (id serial, s status)", {"cast(status)"}),
    ("SELECT a === b::status, lower(c) FROM t", {"operator(===)", "cast(status)", "lower"}),
]


@pytest.mark.parametrize(("sql", "names"), HIDDEN_CALLS, ids=[h[0][:60] for h in HIDDEN_CALLS])
def test_operators_casts_and_sampling_methods_that_are_not_built_in_are_calls(
    sql: str, names: set[str]
) -> None:
    result = classify(sql)
    assert result.functions == names
    assert "FUNCTION" in result.statements[0].classes
    assert not result.reads_only


BUILTIN_NOT_CALLS = [
    "SELECT a = b, a <> b, a || b, -a, a ->> 'k', a @> b FROM t",
    "SELECT * FROM t WHERE x LIKE 'a%' OR x NOT ILIKE 'b' OR x ~ 'c' OR x !~* 'd'",
    "SELECT x IS DISTINCT FROM y, x IS NOT DISTINCT FROM y, NULLIF(x, y) FROM t",
    "SELECT * FROM t WHERE a IN (1, 2) AND b NOT IN (3) AND c BETWEEN 1 AND 2",
    "SELECT * FROM t WHERE a NOT BETWEEN SYMMETRIC 1 AND 2 AND b = ANY (ARRAY[1])",
    "SELECT * FROM t WHERE a IN (SELECT b FROM u) AND a < ALL (SELECT b FROM u)",
    "SELECT a OPERATOR(pg_catalog.=) b, a OPERATOR(=) b FROM t",
    "SELECT * FROM t ORDER BY a USING <, b DESC",
    "SELECT * FROM t TABLESAMPLE SYSTEM (1)",
    "SELECT * FROM t TABLESAMPLE bernoulli (5) REPEATABLE (1)",
    "SELECT * FROM t TABLESAMPLE pg_catalog.system (1)",
    "SELECT x::int, x::integer, 't'::regclass, 'f'::regproc, x::oid, x::name, x::text FROM t",
    "SELECT ARRAY[1]::int4[], '{}'::_int4, '{}'::text[][], x::pg_catalog.text FROM t",
    'SELECT x::double precision, x::varchar(3), x::char, x::"char", x::bit varying(2) FROM t',
    "SELECT x::timestamp with time zone, x::interval year to month, x::numeric(10, 2) FROM t",
    "SELECT date '2020-01-01', interval '1 day', x::jsonb, x::uuid, x::bytea FROM t",
    "SELECT x::information_schema.sql_identifier, CAST(x AS boolean) FROM t",
    "SELECT XMLSERIALIZE(CONTENT x AS text) FROM t",
    "SELECT 1 +++ 2",  # `+` of `+(+2)`: an operator name cannot end in + (sql-syntax §4.1.3)
]


@pytest.mark.parametrize("sql", BUILTIN_NOT_CALLS, ids=[b[:60] for b in BUILTIN_NOT_CALLS])
def test_built_in_operators_casts_and_sampling_methods_are_not_calls(sql: str) -> None:
    result = classify(sql)
    assert result.functions == set()
    assert result.reads_only


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE t (id serial, n bigserial, s smallserial)",
        "ALTER TABLE t ADD COLUMN n bigserial",
    ],
)
def test_serial_in_a_table_column_is_the_built_in_shorthand(sql: str) -> None:
    assert classify(sql).functions == set()


def test_what_psql_sends_for_a_table_description_calls_no_hidden_function() -> None:
    """Two of the queries psql 15's `\\d t` sends: OPERATOR(pg_catalog.~), pg_catalog casts."""
    sql = (
        "SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c "
        "LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relname OPERATOR(pg_catalog.~) '^(t)$' COLLATE pg_catalog.default "
        "AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 2, 3"
    )
    assert classify(sql).functions == {"pg_catalog.pg_table_is_visible"}
    sql = (
        "SELECT c.relchecks, c.relkind, '', c.reltablespace, CASE WHEN c.reloftype = 0 THEN '' "
        "ELSE c.reloftype::pg_catalog.regtype::pg_catalog.text END, am.amname "
        "FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_class tc ON (c.reltoastrelid = "
        "tc.oid) LEFT JOIN pg_catalog.pg_am am ON (c.relam = am.oid) WHERE c.oid = '16385'"
    )
    assert classify(sql).reads_only


def test_hidden_calls_survive_literal_free_reuse() -> None:
    """Operator and type names are part of a statement's shape, not constants (templates.py):
    a text differing only in literals reuses the result, one with another operator does not."""
    clear_caches()
    classify("SELECT * FROM t WHERE a === 1 AND s = 'x'::status")
    reused = classify("SELECT * FROM t WHERE a === 2 AND s = 'y'::status")
    assert reused.template is not None
    assert reused.functions == {"operator(===)", "cast(status)"}
    assert classify("SELECT * FROM t WHERE a = 3 AND s = 'y'::text").functions == set()
    clear_caches()


CLASSES = [
    ("SELECT a FROM t", {"READ"}),
    ("INSERT INTO t VALUES (1)", {"WRITE"}),
    ("COPY t FROM STDIN", {"WRITE"}),
    ("COPY t TO STDOUT", {"READ"}),
    ("DO $$BEGIN END$$", {"FUNCTION"}),
    ("GRANT SELECT ON t TO bob", {"ROLE"}),
    ("CREATE ROLE bob", {"ROLE"}),
    ("ALTER ROLE bob SET work_mem = '1MB'", {"ROLE", "MISC_SET"}),
    ("CREATE TABLE t (a int)", {"DDL"}),
    ("DROP TABLE t", {"DDL"}),
    ("SET work_mem = '1MB'", {"MISC_SET"}),
    ("VACUUM t", {"MISC"}),
    ("DISCARD ALL", {"MISC"}),
]


@pytest.mark.parametrize(("sql", "classes"), CLASSES, ids=[c[0] for c in CLASSES])
def test_pgaudit_classes(sql: str, classes: set[str]) -> None:
    assert classify(sql).statements[0].classes == classes


def test_every_statement_of_a_multi_statement_text_is_classified_with_its_own_text() -> None:
    result = classify("SELECT 1;  /* x */ DROP TABLE t;;\n-- c\nDELETE FROM ü WHERE a = 'é';")
    assert [s.kind for s in result.statements] == ["select", "drop", "delete"]
    assert [s.text for s in result.statements] == [
        "SELECT 1",
        "DROP TABLE t",  # libpg_query starts a statement at its first token
        "DELETE FROM ü WHERE a = 'é'",
    ]
    assert result.kinds == {"select", "drop", "delete"}
    assert result.tables == {"t", "ü"}


def test_statement_text_is_sliced_by_bytes_for_non_ascii_text() -> None:
    """libpg_query reports byte offsets; slicing characters would cut the wrong statement."""
    result = classify("SELECT 'éééé'; DROP TABLE ü; SELECT '✓'")
    assert [s.text for s in result.statements] == ["SELECT 'éééé'", "DROP TABLE ü", "SELECT '✓'"]


def test_empty_and_comment_only_text_has_no_statements() -> None:
    for sql in ("", "  ", ";", "-- nothing\n", "/* nothing */"):
        assert classify(sql) == Classification((), None)


def test_create_function_bodies_are_classified_at_create_time() -> None:
    """A later `SELECT f()` is opaque, so what the body does is known when it is created."""
    plpgsql = "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$BEGIN TRUNCATE t; END$$"
    sql_string = "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'DELETE FROM t RETURNING 1'"
    atomic = "CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC DROP TABLE t; END"
    trigger = (
        "CREATE FUNCTION trg() RETURNS trigger LANGUAGE plpgsql AS "
        "$$BEGIN DELETE FROM audit WHERE id = OLD.id; RETURN NEW; END$$"
    )
    assert classify(plpgsql).kinds == {"create", "truncate"}
    assert classify(sql_string).kinds == {"create", "delete"}
    assert classify(atomic).kinds >= {"create", "drop"}
    assert classify(trigger).kinds >= {"create", "delete"}
    assert classify("CREATE FUNCTION f() RETURNS int LANGUAGE c AS 'lib', 'sym'").kinds == {
        "create"
    }


def test_function_bodies_we_cannot_read_are_opaque_not_unparseable() -> None:
    """The body does not run yet: "unknown" (which deny rules match), not a parse failure."""
    for sql in (
        # libpg_query's PL/pgSQL compiler rejects this; the server accepts it
        "CREATE FUNCTION f(VARIADIC r int[]) RETURNS int LANGUAGE plpgsql "
        "AS $$BEGIN RETURN 1; END$$",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'DELET FROM t'",
        "CREATE FUNCTION f() RETURNS int LANGUAGE plperl AS 'return 1'",
    ):
        result = classify(sql)
        assert (result.error, result.kinds) == (None, {"create", "unknown"}), sql
        assert "dynamic_sql" in result.flags and "unparseable" not in result.flags


def test_sql_passed_to_query_functions_is_classified() -> None:
    """dblink and query_to_xml run their string argument as SQL: classify it like EXECUTE."""
    remote = classify("SELECT dblink_exec('dbname=postgres', 'DROP TABLE t')").statements[0]
    assert ("drop" in remote.kinds, remote.tables_written) == (True, {"t"})
    hidden = classify("SELECT query_to_xml('SELECT * FROM secrets', true, true, '')")
    assert hidden.tables == {"secrets"}
    computed = classify("SELECT dblink_exec('dbname=postgres', 'DROP ' || 'TABLE t')")
    assert "unknown" in computed.kinds and "dynamic_sql" in computed.flags


def test_do_body_execute_of_a_literal_names_what_it_runs() -> None:
    info = classify("DO $$BEGIN EXECUTE 'DROP TABLE t'; END$$").statements[0]
    assert {"drop", "unknown"} <= info.kinds
    assert "dynamic_sql" in info.flags
    assert info.tables_written == {"t"}


def test_do_body_quoted_every_way_is_read_the_same() -> None:
    """$$, $tag$, '' and E'' quoting of a DO body all yield the same body."""
    for sql in (
        "DO $$BEGIN DELETE FROM t; END$$",
        "DO $body$BEGIN DELETE FROM t; END$body$",
        "DO 'BEGIN DELETE FROM t; END'",
        "DO E'BEGIN DELETE FROM \\x74; END'",
        "DO $jitctl$BEGIN DELETE FROM t; END$jitctl$",  # our own wrapping tag
        "DO LANGUAGE plpgsql $$BEGIN DELETE FROM t; END$$",
    ):
        info = classify(sql).statements[0]
        assert ("delete" in info.kinds, info.tables_written) == (True, {"t"}), sql


def test_nested_do_blocks_are_followed_to_a_limit() -> None:
    inner = "DELETE FROM t"
    for level in range(3):
        tag = f"$l{level}$"
        inner = f"DO {tag}BEGIN {inner}; END{tag}"
    assert "delete" in classify(inner).kinds
    deep = "SELECT 1"
    for level in range(12):
        tag = f"$l{level}$"
        deep = f"DO {tag}BEGIN EXECUTE 'x'; {deep}; END{tag}"
    result = classify(deep)
    assert "unparseable" in result.flags
    assert result.error is not None and "nested" in result.error


def test_scs_off_split_parses_as_one_select() -> None:
    """§9: with scs=on (pglast's only mode) the whole text is one SELECT of a string literal.

    The server with scs=off would end the literal at `\\'` and run DROP TABLE t. Nothing in this
    parse shows the DROP; what protects us is that `SET standard_conforming_strings` is flagged
    (and denied by the policy), and the gateway kills a session reporting scs=off.
    """
    result = classify("SELECT 'a\\'' ; DROP TABLE t; --'")
    assert [s.kind for s in result.statements] == ["select"]
    assert result.kinds == {"select"}
    assert "lexing_change" in classify("SET standard_conforming_strings = off").flags


UNPARSEABLE = [
    "SELEC 1",
    "select 1 from x where",
    "/* unterminated /* nested */ DROP TABLE t",
    "SELECT 'unterminated",
    "SELECT 1\x00; DROP TABLE t",
    "DROP TABLE t\x00",
    "SELECT '\udc80'",
    "DO $$BEGIN DELETE FRM t; END$$",
    "DO $$BEGIN RETURN 1; END$$",
    "SELECT " + "1 + " * 20000 + "1",
]


@pytest.mark.parametrize("sql", UNPARSEABLE, ids=[repr(u[:40]) for u in UNPARSEABLE])
def test_unparseable_text_is_one_unknown_statement_with_an_error(sql: str) -> None:
    result = classify(sql)
    assert result.error
    assert "unparseable" in result.flags
    assert "unknown" in result.kinds
    if not sql.startswith(("DO", "CREATE")):
        (info,) = result.statements
        assert (info.kind, info.kinds, info.flags) == ("unknown", {"unknown"}, {"unparseable"})


def test_parse_error_says_where() -> None:
    assert classify("SELECT 1 FRM t").error == 'syntax error at or near "t" at character 14'


def test_function_call_message_is_its_own_kind() -> None:
    (info,) = classify_function_call(764).statements
    assert info.kind == "function_call"
    assert info.flags == {"fastpath_function_call"}
    assert info.functions == {"oid:764"}


def test_results_are_cached_by_exact_text() -> None:
    assert classify("SELECT 42") is classify("SELECT 42")
    assert classify("SELECT 42") is not classify("SELECT  42")
    long_sql = "SELECT " + " + ".join(["1"] * (MAX_CACHED_CHARS // 3))
    assert len(long_sql) > MAX_CACHED_CHARS
    assert classify(long_sql) == classify(long_sql)  # classified each time, not kept


FRAGMENTS = [
    *("SELECT ", "DELETE FROM t", "DROP TABLE t", "DO ", "$$", "$a$", "'", "''", "E'\\''"),
    *(";", " ", "\n", "/*", "*/", "--", 'U&"\\0061"', "WITH d AS (", ")", "BEGIN ", "END"),
    *("EXECUTE ", "PREPARE p AS ", "EXPLAIN ANALYZE ", "(", "1", "x", "\x00", "\udcff", "é"),
]


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(st.characters(exclude_categories=())),
        st.lists(st.sampled_from(FRAGMENTS)).map("".join),
    )
)
def test_classify_never_raises(sql: str) -> None:
    """Arbitrary text (NUL, lone surrogates, SQL fragments) yields a result, never an error."""
    result = classify(sql)
    assert isinstance(result, Classification)
    if result.error is not None:
        assert "unparseable" in result.flags and "unknown" in result.kinds
    for info in result.statements:
        assert info.kinds and info.kind
