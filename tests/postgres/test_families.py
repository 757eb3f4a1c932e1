"""Table rules and inheritance: a deny or approve rule on a table also fits statements on its
partitions, children and parents (families.py, policy.py); an allow rule never fits more."""

from __future__ import annotations

from typing import Any

import pytest

from jitctl.config import Rule
from jitctl_postgres import families
from jitctl_postgres.classify import classify
from jitctl_postgres.families import Families, from_rows
from jitctl_postgres.policy import Policy

# public.payments (partitioned) > payments_2024, payments_2023; billing.ledger > ledger_eu
# (classic inheritance) > ledger_eu_fr; and an unrelated public.users.
FAMILIES = from_rows(
    [
        ("public", "payments_2024", "public", "payments"),
        ("public", "payments_2023", "public", "payments"),
        ("billing", "Ledger_EU", "billing", "ledger"),
        ("billing", "ledger_eu_fr", "billing", "Ledger_EU"),
    ]
)


def rule(action: str, name: str = "", **match: Any) -> Rule:
    return Rule.model_validate({"name": name, "match": match, "action": action})


def action(policy: Policy, sql: str, found: Families = FAMILIES) -> str:
    return policy.decide(classify(sql), (), found).action


@pytest.mark.parametrize(
    ("name", "relatives"),
    [
        ("payments", {"public.payments_2024", "public.payments_2023"}),
        ("public.payments", {"public.payments_2024", "public.payments_2023"}),
        ("payments_2024", {"public.payments"}),  # not its sibling payments_2023
        ("other.payments_2024", set()),  # another schema's table of that name
        ("ledger_eu", {"billing.ledger", "billing.ledger_eu_fr"}),  # case-folded
        ("billing.ledger", {"billing.ledger_eu", "billing.ledger_eu_fr"}),  # transitively
        ("ledger_eu_fr", {"billing.ledger", "billing.ledger_eu"}),
        ("users", set()),
    ],
)
def test_a_family_is_a_tables_ancestors_and_descendants(name: str, relatives: set[str]) -> None:
    assert FAMILIES.relatives(name) == relatives


PAYMENTS = Policy([rule("deny", "payments", tables=["payments"])])
PARTITION = Policy([rule("deny", "p2024", tables=["public.payments_2024"])])
LEAF = Policy([rule("approve", "fr", tables=["ledger_eu_fr"])])


@pytest.mark.parametrize(
    ("policy", "sql"),
    [
        (PAYMENTS, "SELECT * FROM payments_2024"),  # a partition's rows are the parent's
        (PAYMENTS, "UPDATE public.payments_2023 SET amount = 0"),
        (PARTITION, "SELECT * FROM payments"),  # reads the partition
        (PARTITION, "DELETE FROM payments"),
        (PARTITION, "TRUNCATE public.payments"),
        (PARTITION, "DROP TABLE payments"),  # drops its partitions without CASCADE
        (PARTITION, "ALTER TABLE payments ADD COLUMN note text"),
        (LEAF, "SELECT * FROM billing.ledger"),  # two levels up
        (LEAF, "DELETE FROM ledger_eu"),
    ],
)
def test_a_deny_or_approve_rule_fits_its_tables_family(policy: Policy, sql: str) -> None:
    assert action(policy, sql) != "allow"
    assert action(policy, sql, families.NONE) == "allow"  # as before: no catalog, no family


@pytest.mark.parametrize(
    ("policy", "sql"),
    [
        (PAYMENTS, "SELECT * FROM users"),
        (PARTITION, "SELECT * FROM payments_2023"),  # a sibling holds none of its rows
        (PARTITION, "SELECT * FROM other.payments"),  # another schema's payments
        (LEAF, "SELECT * FROM payments"),
    ],
)
def test_tables_outside_the_family_pass(policy: Policy, sql: str) -> None:
    assert action(policy, sql) == "allow"


def test_the_reason_names_the_relative_the_rule_lists() -> None:
    decision = PARTITION.decide(classify("SELECT * FROM payments"), (), FAMILIES)
    assert decision.rule == "p2024"
    assert "payments is in the inheritance family of public.payments_2024" in decision.reason


def test_an_allow_rule_never_fits_more() -> None:
    """Every table the text names must still be listed: the family widens nothing."""
    policy = Policy([rule("allow", tables=["payments_2024"])], default_action="deny")
    assert action(policy, "SELECT * FROM payments") == "deny"
    assert action(policy, "SELECT * FROM payments_2024") == "allow"
    on_parent = Policy([rule("allow", tables=["payments"])], default_action="deny")
    assert action(on_parent, "SELECT * FROM payments") == "allow"
    assert action(on_parent, "SELECT * FROM payments_2024") == "deny"


def test_unknown_families_make_every_table_rule_fit_every_table() -> None:
    """The catalog could not be read: any table may be a partition of a listed one."""
    decision = PAYMENTS.decide(classify("SELECT * FROM users"), (), families.UNKNOWN)
    assert decision.action == "deny"
    assert "jitctl could not read which tables inherit from which" in decision.reason
    assert action(PAYMENTS, "SELECT 1", families.UNKNOWN) == "allow"  # names no table
    statement_only = Policy([rule("deny", statement=["delete"])])
    assert action(statement_only, "SELECT * FROM users", families.UNKNOWN) == "allow"
    allow = Policy([rule("allow", tables=["users"])], default_action="deny")
    assert action(allow, "SELECT * FROM users", families.UNKNOWN) == "allow"


def test_only_deny_and_approve_table_rules_need_families() -> None:
    assert PAYMENTS.needs_families and LEAF.needs_families
    assert not Policy(
        [rule("allow", tables=["t"]), rule("deny", statement=["drop"])]
    ).needs_families


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE payments_2030 PARTITION OF payments FOR VALUES FROM (1) TO (2)",
        "CREATE TABLE c () INHERITS (payments)",
        "ALTER TABLE payments ATTACH PARTITION c FOR VALUES FROM (1) TO (2)",
        "ALTER TABLE payments DETACH PARTITION c",
        "ALTER TABLE c INHERIT payments",
        "ALTER TABLE c NO INHERIT payments",
    ],
)
def test_a_link_made_in_the_session_joins_the_tables_it_names(sql: str) -> None:
    assert "inheritance" in classify(sql).flags
    info = classify(sql).statements[0]
    linked = FAMILIES.linked(info.tables_read | info.tables_written)
    name = "c" if " c" in sql else "payments_2030"
    assert action(PAYMENTS, f"SELECT * FROM {name}", linked) == "deny"
    assert action(PAYMENTS, f"SELECT * FROM public.{name}", linked) == "deny"
    assert action(PAYMENTS, f"SELECT * FROM {name}") == "allow"


def test_equal_links_share_one_object() -> None:
    """Decisions are cached per families object: sessions that found the same links share."""
    rows = [("public", "payments_2024", "public", "payments")]
    assert from_rows(rows) is from_rows(list(rows))
    joined = FAMILIES.linked(["c", "payments"])
    assert (
        joined is FAMILIES.linked(["payments", "c"]) and joined.linked(["c", "payments"]) is joined
    )


@pytest.mark.parametrize(
    ("name", "ancestors"),
    [
        ("payments_2024", {"public.payments"}),
        ("payments", set()),
        ("ledger_eu_fr", {"billing.ledger", "billing.ledger_eu"}),
        ("billing.ledger_eu", {"billing.ledger"}),  # not its child ledger_eu_fr
    ],
)
def test_only_reaches_a_tables_ancestors(name: str, ancestors: set[str]) -> None:
    assert FAMILIES.ancestors(name) == ancestors


@pytest.mark.parametrize(
    ("policy", "sql"),
    [
        (PARTITION, "SELECT * FROM ONLY payments"),  # the parent's own rows, no partition's
        (PARTITION, "DELETE FROM ONLY public.payments"),
        (PARTITION, "UPDATE ONLY payments SET amount = 0"),
        (PARTITION, "TRUNCATE ONLY payments"),
        (PARTITION, "LOCK TABLE ONLY payments"),
        (PARTITION, "MERGE INTO ONLY payments p USING users u ON true WHEN MATCHED THEN DELETE"),
        (PARTITION, "TRUNCATE ONLY payments, users"),  # ONLY is per table; users has no child
        (LEAF, "SELECT * FROM ONLY billing.ledger"),
        (LEAF, "DELETE FROM ONLY ledger_eu"),  # ledger_eu_fr is its child
        (LEAF, "DO $$BEGIN DELETE FROM ONLY ledger_eu; END$$"),  # in a body too
    ],
)
def test_only_keeps_a_rule_on_a_descendant_out(policy: Policy, sql: str) -> None:
    assert action(policy, sql) == "allow"
    assert action(policy, sql, families.UNKNOWN) != "allow"  # no catalog: still fails closed


@pytest.mark.parametrize(
    ("policy", "sql"),
    [
        (PAYMENTS, "SELECT * FROM ONLY payments_2024"),  # a partition's rows are the parent's
        (PAYMENTS, "DELETE FROM ONLY public.payments_2023"),
        (Policy([rule("deny", tables=["billing.ledger"])]), "TRUNCATE ONLY ledger_eu_fr"),
        (Policy([rule("deny", tables=["ledger_eu_fr"])]), "UPDATE ONLY ledger_eu_fr SET a = 1"),
    ],
)
def test_only_still_fits_a_rule_on_an_ancestor_or_the_table(policy: Policy, sql: str) -> None:
    assert action(policy, sql) == "deny"


def test_the_reason_for_only_names_the_ancestor() -> None:
    decision = PAYMENTS.decide(classify("SELECT * FROM ONLY payments_2024"), (), FAMILIES)
    assert "payments_2024 is in the inheritance family of public.payments" in decision.reason


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM ONLY payments UNION ALL SELECT * FROM payments",
        "SELECT * FROM ONLY payments, payments* p",  # `payments*` is payments and its partitions
        "UPDATE ONLY payments SET amount = 0 FROM payments p WHERE p.year = payments.year",
        "DELETE FROM ONLY payments WHERE year IN (SELECT year FROM public.payments)",
        "WITH d AS (DELETE FROM payments) SELECT * FROM ONLY payments",
        "TRUNCATE ONLY payments, payments",
        "DO $$BEGIN DELETE FROM ONLY payments; DELETE FROM payments; END$$",
    ],
)
def test_a_table_named_with_and_without_only_reaches_its_whole_family(sql: str) -> None:
    assert action(PARTITION, sql) == "deny"


@pytest.mark.parametrize(
    "sql",
    [
        # PostgreSQL 15.18 drops and alters a partitioned table's foreign key in its
        # partitions too, ONLY or not: ALTER TABLE (and CREATE INDEX) keep the whole family.
        "ALTER TABLE ONLY payments DROP CONSTRAINT payments_fk",
        "ALTER TABLE ONLY payments ALTER CONSTRAINT payments_fk DEFERRABLE",
        "CREATE INDEX ON ONLY payments (year)",
    ],
)
def test_alter_table_only_still_reaches_the_partitions(sql: str) -> None:
    assert action(PARTITION, sql) == "deny"


def test_only_and_its_absence_never_share_a_template() -> None:
    """Texts differing only in constants share a classification (templates.py); ONLY is no
    constant, so the first text's reach never decides the other's."""
    assert action(PARTITION, "SELECT * FROM payments WHERE year = 1") == "deny"
    assert action(PARTITION, "SELECT * FROM ONLY payments WHERE year = 2") == "allow"
    assert action(PARTITION, "SELECT * FROM ONLY payments WHERE year = 3") == "allow"
    assert action(PARTITION, "SELECT * FROM payments WHERE year = 4") == "deny"
