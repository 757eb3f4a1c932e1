"""A session learns its target's inheritance families from the catalog before the client's
first ReadyForQuery, and decides every statement with them (catalog.py, families.py)."""

from __future__ import annotations

from typing import Any

import pytest

from jitctl.config import Rule
from jitctl_postgres.classify import classify, classify_function_call
from jitctl_postgres.enforcement import FAIL_TEXT
from jitctl_postgres.families import FAMILIES_SQL
from jitctl_postgres.policy import Policy
from jitctl_postgres.state import Services

from . import wire as w


def rule(action: str, **match: Any) -> Rule:
    return Rule.model_validate({"name": "r", "match": match, "action": action})


def harness(*rules: Rule, masks: w.Masks | None = None, bytewise: bool = False) -> w.Harness:
    services = Services(classify, classify_function_call, Policy(list(rules)), masks)
    return w.Harness(services, bytewise=bytewise)


def opened(h: w.Harness, *early: bytes) -> bytes:
    """Startup up to the server's first ReadyForQuery (with `early` client bytes sent along);
    what went up since the login. What the client got so far must not hold a ReadyForQuery
    when jitctl sent its catalog query."""
    h.client(w.startup(user="alice", database="app"), *early)
    h.take_up()
    h.server(w.AUTH_OK, w.key(), w.ready())
    up, down = h.take_up(), h.take_down()
    assert down.endswith(w.ready()) == (up == b"")
    return up


LINKS = (
    w.row_description("nspname", "relname", "nspname", "relname"),
    w.data_row(b"public", b"payments_2024", b"public", b"payments"),
    w.complete("SELECT 1"),
    w.ready(),
)
DENY_PARTITION = rule("deny", tables=["payments_2024"])


@pytest.mark.parametrize("bytewise", [False, True], ids=["chunks", "bytewise"])
def test_the_links_are_read_before_the_clients_first_ready_for_query(bytewise: bool) -> None:
    h = harness(DENY_PARTITION, bytewise=bytewise)
    assert opened(h) == w.q(FAMILIES_SQL)  # the client's ReadyForQuery waits for the links
    h.server(*LINKS)
    assert h.take_down() == w.ready()  # the catalog's own rows never reach the client
    assert h.last("pg.catalog") == {"inheritance_links": 1}
    assert h.last("pg.statement")["internal"] is True
    h.client(w.q("DELETE FROM payments"))
    assert h.take_up() == w.q(FAIL_TEXT)
    assert (
        "payments is in the inheritance family of public.payments_2024"
        in (h.last("pg.blocked")["reason"])
    )
    h.server(w.error("42601", "syntax error"), w.ready())
    h.take_down()
    h.client(w.q("SELECT * FROM payments_2023"))
    assert h.take_up() == w.q("SELECT * FROM payments_2023")


def test_client_bytes_sent_early_wait_for_the_links() -> None:
    """A client that pipelines before ReadyForQuery is decided with the links, not without."""
    h = harness(DENY_PARTITION)
    assert opened(h, w.q("SELECT * FROM payments")) == w.q(FAMILIES_SQL)
    h.server(*LINKS)
    assert h.take_up() == w.q(FAIL_TEXT)


def test_a_catalog_it_cannot_read_makes_every_table_rule_fit_every_table() -> None:
    h = harness(DENY_PARTITION)
    opened(h)
    h.server(w.error("42501", "permission denied for table pg_inherits"), w.ready())
    assert h.take_down() == w.ready()
    assert h.last("pg.catalog") == {"inheritance_links": None}
    failed = next(r for r in h.records if r.kind == "pg.catalog")
    assert "permission denied" in failed.payload["error"]
    h.client(w.q("SELECT * FROM users"))
    assert h.take_up() == w.q(FAIL_TEXT)
    assert "could not read which tables inherit" in h.last("pg.blocked")["reason"]
    h.server(w.error("42601", "syntax error"), w.ready())
    h.client(w.q("SELECT 1"))
    assert h.take_up() == w.q("SELECT 1")


def test_no_deny_or_approve_table_rule_no_catalog_query() -> None:
    h = harness(rule("allow", tables=["t"]), rule("deny", statement=["drop"]))
    assert opened(h) == b""  # and the client got its ReadyForQuery at once


def test_a_link_made_in_the_session_counts_from_then_on() -> None:
    h = harness(rule("deny", statement=["select"], tables=["payments"]))
    opened(h)
    h.server(*LINKS)
    create = "CREATE TABLE payments_2030 PARTITION OF payments FOR VALUES FROM (1) TO (2)"
    h.client(w.q(f"{create}; SELECT * FROM payments_2030"))
    assert h.take_up() == w.q(FAIL_TEXT)  # the same text's later statement sees the link
    h.server(w.error("42601", "syntax error"), w.ready())
    h.client(w.q(create))
    assert h.take_up() == w.q(create)
    h.server(w.complete("CREATE TABLE"), w.ready())
    h.client(w.q("SELECT * FROM public.payments_2030"))
    assert h.take_up() == w.q(FAIL_TEXT)


def test_a_masked_target_reads_its_tables_and_links_in_one_query() -> None:
    h = harness(DENY_PARTITION, masks=w.Masks())
    sent = opened(h)
    assert b"pg_attribute" in sent and FAMILIES_SQL.encode() in sent
    h.server(
        w.row_description("oid", "nspname", "relname"),
        w.data_row(b"16384", b"public", b"payments"),
        w.complete("SELECT 1"),
        w.row_description("attrelid", "attnum", "attname"),
        w.complete("SELECT 0"),
        w.row_description("oid"),
        w.complete("SELECT 0"),
        *LINKS,
    )
    assert h.take_down() == w.ready()
    assert h.last("pg.catalog") == {"tables": 1, "inheritance_links": 1}
    h.client(w.q("SELECT * FROM payments"))
    assert h.take_up() == w.q(FAIL_TEXT)


def test_only_on_the_parent_passes_a_rule_on_its_partition_and_is_recorded_as_before() -> None:
    """`ONLY payments` reads none of payments_2024's rows; the trail's `tables` is unchanged."""
    h = harness(DENY_PARTITION)
    opened(h)
    h.server(*LINKS)
    h.take_down()
    h.client(w.q("SELECT * FROM ONLY payments"))
    assert h.take_up() == w.q("SELECT * FROM ONLY payments")
    assert h.last("pg.statement")["tables"] == ["payments"]
    h.server(w.complete("SELECT 0"), w.ready())
    h.take_down()
    h.client(w.q("SELECT * FROM ONLY payments_2024"))
    assert h.take_up() == w.q(FAIL_TEXT)
    assert h.last("pg.blocked")["tables"] == ["payments_2024"]
