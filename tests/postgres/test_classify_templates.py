"""Literal-insensitive reuse of classifications (templates.py): a text that reuses another's
classification gets exactly what classifying it from scratch would give, and statements whose
meaning depends on a constant never reuse anything."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jitctl_postgres.classify import Classification, classify, clear_caches
from jitctl_postgres.policy import Policy

from .test_classify import FLAGS, KINDS, NOT_FLAGGED, TABLES, UNPARSEABLE
from .test_policy import DISGUISES, GUARDS, HIDDEN_WRITES, LEXING, NO_DESTROY, ORDINARY, rule


@pytest.fixture(autouse=True)
def _cold() -> Iterator[None]:
    clear_caches()
    yield
    clear_caches()


def scratch(sql: str) -> Classification:
    """`sql` classified with every cache empty (the reference every reuse must equal)."""
    clear_caches()
    return classify(sql)


def after(warm: str, probe: str) -> Classification:
    """`probe` classified right after `warm`, from otherwise empty caches."""
    clear_caches()
    classify(warm)
    return classify(probe)


POLICIES = [
    NO_DESTROY,
    Policy([rule("allow", "reads", statement=["select"]), rule("deny", "rest")]),
    Policy([rule("deny", "no-t", tables=["t"]), rule("approve", "fns", functions=["pg_*"])]),
]


def assert_same(got: Classification, sql: str) -> None:
    decisions = [policy.decide(got, ("agents",)) for policy in POLICIES]
    expected = scratch(sql)
    assert got == expected  # statements (texts included) and error
    assert decisions == [policy.decide(expected, ("agents",)) for policy in POLICIES]


# (warm, probe): the probe's tree differs from the warm text's only in constants, offsets,
# comments and whitespace, and its walk reads neither: it reuses the warm text's result.
SHARED = [
    (
        "SELECT abalance FROM pgbench_accounts WHERE aid = 24708;",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 7;",
    ),
    ("SELECT * FROM t WHERE a = 1", "/* é */\n select  *  from t where a = -22 -- x"),
    ("SELECT * FROM t WHERE a = 'x'", 'SELECT * FROM t WHERE a = $q$\'";}{"location":1}}$q$'),
    ("SELECT * FROM t WHERE a = 'x'", "SELECT * FROM t WHERE a = E'\\\\\\'\\x41'"),
    ("SELECT * FROM t WHERE a = 'x'", 'SELECT * FROM t WHERE a = \'"}},"stmt_len":1}]}\''),
    ("SELECT * FROM t WHERE a = 'x'", "SELECT * FROM t WHERE a = U&'d\\0061ta'"),
    ("UPDATE t SET a = 'é' WHERE id = 1", "UPDATE t SET a = 'ééé€' WHERE id = 22;"),
    ("INSERT INTO t VALUES (1, 'a', NULL)", "INSERT INTO t VALUES (2.5e3, '', true);"),
    ("DELETE FROM t WHERE id = 1", "DELETE FROM t WHERE id = 99"),
    ("SELECT * FROM t WHERE a IN (1, 2)", "SELECT * FROM t WHERE a IN ('x', 'y')"),
    ("SELECT date '2020-01-01'", "SELECT date '1999-12-31'"),
    ("SELECT lower('A')", "SELECT lower('B')"),
    ("SELECT pg_sleep(1)", "SELECT pg_sleep(100)"),
    ("SELECT nextval('a')", "SELECT nextval('b')"),
    ("SELECT 1", "SELECT 2;"),
    ("BEGIN", "  begin ;"),
    # §9's standard_conforming_strings=off split: one SELECT of one literal to the parser, as
    # from scratch (the guard on the SET that would make the server see a DROP is what stops
    # it, test_policy.py); sharing the shape adds no lexing assumption.
    ("SELECT 'a\\'", "SELECT 'a\\'' ; DROP TABLE t; --'"),
]


@pytest.mark.parametrize(("warm", "probe"), SHARED, ids=[p for _, p in SHARED])
def test_a_text_differing_only_in_constants_reuses_the_result_exactly(
    warm: str, probe: str
) -> None:
    got = after(warm, probe)
    assert got.template is not None, "expected a template hit"
    assert_same(got, probe)


# (warm, probe): the meaning depends on a constant, a body, or the text itself (or the trees
# differ): never reused, always what classifying from scratch gives.
NOT_SHARED = [
    (
        "SELECT set_config('search_path', 'x', false)",
        "SELECT set_config('standard_conforming_strings', 'off', false)",
    ),
    ("SELECT set_config('a.b', 'x', false)", "SELECT set_config('role', 'postgres', false)"),
    ("SET client_encoding = 'UTF8'", "SET client_encoding = 'SJIS'"),
    ("SET NAMES 'UTF8'", "SET NAMES 'GBK'"),
    ("SET standard_conforming_strings = on", "SET standard_conforming_strings = off"),
    ("ALTER ROLE CURRENT_USER SET work_mem = '1MB'", "ALTER ROLE CURRENT_USER SET work_mem = 'x'"),
    ("SELECT dblink_exec('c', 'SELECT 1')", "SELECT dblink_exec('c', 'DROP TABLE t')"),
    (
        "SELECT query_to_xml('SELECT 1', true, false, '')",
        "SELECT query_to_xml('DELETE FROM t', true, false, '')",
    ),
    ("DO $$BEGIN PERFORM 1; END$$", "DO $$BEGIN DROP TABLE t; END$$"),
    ("DO 'BEGIN PERFORM 1; END'", "DO 'BEGIN TRUNCATE t; END'"),
    ("DO $$BEGIN EXECUTE 'SELECT 1'; END$$", "DO $$BEGIN EXECUTE 'DROP TABLE t'; END$$"),
    (
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'DELETE FROM t RETURNING 1'",
    ),
    ("COPY t TO STDOUT (FORMAT 'text')", "COPY t TO STDOUT (FORMAT 'binary')"),
    ("COPY t TO '/tmp/x'", "COPY t TO PROGRAM 'id'"),
    ("EXPLAIN (ANALYZE 'off') DELETE FROM t", "EXPLAIN (ANALYZE 'on') DELETE FROM t"),
    ("SELECT 1", "SELECT 1; DROP TABLE t"),
    ("SELECT 'x'", "SELECT 'x' -- ; DROP TABLE t\n; DROP TABLE t"),
    ("SELECT 1::float(5)", "SELECT 1::float(0)"),
    ("SELECT 'a'", "SELECT E'\\xff'"),
    ("SELECT * FROM U&\"t!0061b\" UESCAPE '!'", "SELECT * FROM U&\"t!0061b\" UESCAPE '#'"),
    ("SELECT * FROM t", "SELECT * FROM u"),
    ("SELECT a FROM t", "SELECT a AS b FROM t"),
    ("DELETE FROM t WHERE a = 1", "DELETE FROM t"),
    ("PREPARE p AS SELECT 1", "PREPARE p AS SELECT 2"),
    ("SELECT 1", "SELECT 1\x00"),
]


@pytest.mark.parametrize(("warm", "probe"), NOT_SHARED, ids=[p for _, p in NOT_SHARED])
def test_statements_whose_meaning_a_constant_can_change_are_classified_from_scratch(
    warm: str, probe: str
) -> None:
    got = after(warm, probe)
    assert got.template is None
    assert_same(got, probe)


def test_a_dangerous_setting_is_caught_after_a_harmless_one_of_the_same_shape() -> None:
    classify("SELECT set_config('search_path', 'public', false)")
    got = classify("SELECT set_config('standard_conforming_strings', 'off', false)")
    assert "lexing_change" in got.flags
    assert NO_DESTROY.decide(got, ()).rule == "builtin: lexing_change"


def test_a_reused_decision_names_the_new_text() -> None:
    classify("DELETE FROM t WHERE id = 1")
    got = classify("DELETE FROM t WHERE id = 2")
    decision = NO_DESTROY.decide(got, ())
    assert (decision.action, decision.statement) == ("deny", "DELETE FROM t WHERE id = 2")


CORPUS = sorted(
    {
        *(k[0] for k in KINDS),
        *(t[0] for t in TABLES),
        *(f[0] for f in FLAGS),
        *(n[0] for n in NOT_FLAGGED),
        *UNPARSEABLE,
        *DISGUISES,
        *LEXING,
        *ORDINARY,
        *(g[0] for g in GUARDS),
        *HIDDEN_WRITES,
    }
)


def variants(sql: str) -> list[str]:
    """Texts near `sql`: other digits (in constants, names and dollar tags alike), other
    string contents, comments and whitespace around it."""
    return [
        re.sub(r"\d", lambda m: str((int(m.group()) + 7) % 10), sql),
        re.sub(r"'[^']*'", "'x''y\\\\'", sql),
        re.sub(r"'[^']*'", "'DROP TABLE t'", sql),
        f"/* c */ {sql} -- c",
        f"{sql};",
    ]


@pytest.mark.parametrize("sql", CORPUS, ids=[repr(c[:50]) for c in CORPUS])
def test_every_classifier_and_policy_case_is_unchanged_next_to_its_variants(sql: str) -> None:
    """Each case of the classifier and policy tests, and texts near it, warmed both ways."""
    for variant in variants(sql):
        assert_same(after(sql, variant), variant)
        assert_same(after(variant, sql), sql)


SHAPES = [
    "SELECT * FROM t WHERE a = {} AND b = {}",
    "UPDATE t SET a = {} WHERE id = {}",
    "INSERT INTO t VALUES ({}, {})",
    "DELETE FROM t WHERE a = {} OR a = {}",
    "SELECT set_config({}, {}, false)",
    "SELECT dblink_exec({}, {})",
    "DO {} LANGUAGE {}",
    "COPY t TO STDOUT (FORMAT {}, DELIMITER {})",
    "EXPLAIN (ANALYZE {}, VERBOSE {}) DELETE FROM t",
    "SET client_encoding = {}; SELECT {}",
]
TEXTS = st.text(st.characters(exclude_characters="\x00"), max_size=24)
LITERALS = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    TEXTS.map(lambda s: "'" + s.replace("'", "''") + "'"),
    TEXTS.map(lambda s: "E'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"),
    TEXTS.filter(lambda s: "$q$" not in s and not s.endswith("$")).map(lambda s: f"$q${s}$q$"),
    st.sampled_from(["NULL", "true", "'standard_conforming_strings'", "'off'", "'SJIS'"]),
    st.sampled_from(["'binary'", "'DROP TABLE t'", "'BEGIN DELETE FROM t; END'", "'plpgsql'"]),
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SHAPES), st.tuples(LITERALS, LITERALS), st.tuples(LITERALS, LITERALS))
def test_any_two_literal_fillings_of_a_shape_classify_as_from_scratch(
    shape: str, first: tuple[str, str], second: tuple[str, str]
) -> None:
    warm, probe = shape.format(*first), shape.format(*second)
    assert_same(after(warm, probe), probe)


def test_one_shape_serves_every_literal_of_pgbench_s() -> None:
    first = classify("SELECT abalance FROM pgbench_accounts WHERE aid = 1;")
    for aid in (2, 30, 400, 99999):
        got = classify(f"SELECT abalance FROM pgbench_accounts WHERE aid = {aid};")
        assert got.template is first
        assert got.statements[0].text == f"SELECT abalance FROM pgbench_accounts WHERE aid = {aid}"
