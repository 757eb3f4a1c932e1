"""The postgres core's side of held statements, byte for byte against a scripted server (and
fed one byte at a time too): the held message and everything behind it wait, the client is
told what it waits for, approval releases exactly the bytes it sent, refusal fails it on the
server like a block."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jitctl.plugin import Close, Direction, Forward, Hold, Review, SessionContext, Shutdown
from jitctl_postgres.core import PostgresCore
from jitctl_postgres.enforcement import FAIL_TEXT
from tests.postgres import wire as w

APPROVED = Review(True, "approved", "additive column", ("bob",))
DENIED = Review(False, "denied", "not during the freeze", ("carol",))
EXPIRED = Review(False, "expired", "nobody approved it within 5s")


class Holding(w.Harness):
    """The test harness with approvals offered, as the gateway offers them."""

    def __init__(self, bytewise: bool = False) -> None:
        super().__init__(bytewise=bytewise)
        context = SessionContext(
            session_id="sess-1",
            target=SimpleNamespace(name="pg", record_rows=0),
            groups=("agents",),
            settings={
                "credential": dict(w.CREDENTIAL),
                "cancel_registry": self.registry,
                "approvals": {"timeout": 5.0},
            },
        )
        self.core = PostgresCore(context, w.services(), clock=lambda: self.time)

    def holds(self) -> list[Hold]:
        return [c for c in self.commands if isinstance(c, Hold)]

    def resume(self, review: Review) -> Holding:
        self._run(self.core.resume(self.holds()[-1].hold_id, review))
        return self

    def ready(self) -> Holding:
        self.connect()
        return self


@pytest.fixture(params=[False, True], ids=["chunks", "bytewise"])
def h(request: pytest.FixtureRequest) -> Holding:
    return Holding(bytewise=bool(request.param)).ready()


def test_a_held_query_and_everything_behind_it_wait_and_the_client_is_told(h: Holding) -> None:
    h.client(w.q("select 1"), w.q("VACUUM t"), w.q("select 2"))
    assert h.take_up() == w.q("select 1")  # what came before still runs
    (hold,) = h.holds()
    assert hold.text == "VACUUM t" and hold.details["rule"] == "ask"
    assert hold.details["kind"] == "vacuum" and hold.details["protocol"] == "simple"
    (notice,) = w.split_messages(h.take_down())
    fields = w.error_fields(notice)
    assert notice[:1] == b"N" and fields["S"] == "NOTICE"
    assert fields["M"].startswith(f"jitctl: waiting for approval of request {hold.hold_id}: ")
    assert f"request_id={hold.hold_id}" in fields["D"] and "timeout_s=5" in fields["D"]
    assert f"jitctl request approve {hold.hold_id}" in fields["H"]
    held = h.last("pg.held")
    assert held["hold"] == hold.hold_id and held["text"] == "VACUUM t"
    h.client(w.q("select 3"))  # later messages wait too
    h.server(w.row_description("a"), w.data_row(b"1"), w.complete("SELECT 1"), w.ready())
    assert h.take_up() == b""


def test_approval_releases_exactly_the_bytes_sent_then_what_waited(h: Holding) -> None:
    h.client(w.q("VACUUM  t /* as typed */"), w.q("select 2"))
    h.take_down()
    assert h.take_up() == b""
    h.resume(APPROVED)
    assert h.take_up() == w.q("VACUUM  t /* as typed */") + w.q("select 2")
    statement, after = [r.payload for r in h.records if r.kind == "pg.statement"]
    assert statement["decision"] == "approved" and statement["approved_by"] == ["bob"]
    assert statement["approval"] == h.holds()[0].hold_id and after["decision"] == "allow"
    assert [r.durable for r in h.records if r.kind == "pg.statement"] == [True, True]
    h.server(w.complete("VACUUM"), w.ready(), w.complete("SELECT 1"), w.ready())
    assert w.split_messages(h.take_down()) == [
        w.complete("VACUUM"),
        w.ready(),
        w.complete("SELECT 1"),
        w.ready(),
    ]


@pytest.mark.parametrize(
    ("review", "says"),
    [
        (DENIED, "was denied by carol: not during the freeze"),
        (EXPIRED, "timed out: nobody approved it within 5s"),
    ],
)
def test_refusal_fails_it_on_the_server_like_a_block(review: Review, says: str) -> None:
    h = Holding().ready()
    h.client(w.q("BEGIN"))
    h.server(w.complete("BEGIN"), w.ready("T"))
    h.take_down()
    h.client(w.q("VACUUM t"), w.q("select 2"))
    h.take_up()
    h.take_down()
    h.resume(review)
    assert h.take_up() == w.q(FAIL_TEXT) + w.q("select 2")
    blocked = h.last("pg.blocked")
    assert blocked["decision"] == "unapproved" and says in blocked["reason"]
    h.server(
        w.error("42601", 'syntax error at or near "JITCTL_DENIED_BY_POLICY"'),
        w.ready("E"),
        w.error("25P02", "current transaction is aborted"),
        w.ready("E"),
    )
    error, z, aborted, _ = w.split_messages(h.take_down())
    fields = w.error_fields(error)
    assert fields["C"] == "42501" and fields["M"].startswith("jitctl: statement not approved: ")
    assert says in fields["M"] and z == w.ready("E")  # Postgres's own transaction state
    assert w.error_fields(aborted)["C"] == "25P02"


def test_a_held_parse_holds_its_bind_execute_sync_and_approval_registers_it(h: Holding) -> None:
    h.client(w.parse("VACUUM t"), w.bind(), w.describe("P"), w.execute(), w.SYNC)
    assert h.take_up() == b"" and len(h.holds()) == 1
    h.take_down()
    h.resume(APPROVED)
    assert h.take_up() == w.parse("VACUUM t") + w.bind() + w.describe("P") + w.execute() + w.SYNC
    h.server(w.PARSE_OK, w.BIND_OK, w.NO_DATA, w.complete("VACUUM"), w.ready())
    statement = h.last("pg.statement")
    assert statement["text"] == "VACUUM t" and statement["decision"] == "approved"


def test_a_refused_parse_blocks_its_name_for_good() -> None:
    h = Holding().ready()
    h.client(w.parse("VACUUM t", name="s1"), w.SYNC)
    h.take_down()
    h.resume(DENIED)
    assert h.take_up() == w.parse(FAIL_TEXT, name="s1") + w.SYNC
    h.server(w.error("42601", "syntax error"), w.ready())
    assert "not approved" in w.error_fields(w.split_messages(h.take_down())[0])["M"]
    h.client(w.bind("s1"), w.execute(), w.SYNC)  # no second hold: the name stays refused
    assert len(h.holds()) == 1
    h.server(w.error("26000", 'prepared statement "s1" does not exist'), w.ready())
    assert "not approved" in w.error_fields(w.split_messages(h.take_down())[0])["M"]


def test_a_second_held_statement_behind_the_first_holds_again_in_order(h: Holding) -> None:
    h.client(w.q("VACUUM a"), w.q("VACUUM b"), w.q("select 3"))
    h.take_down()
    h.resume(APPROVED)
    assert h.take_up() == w.q("VACUUM a")
    assert [x.text for x in h.holds()] == ["VACUUM a", "VACUUM b"]
    h.resume(DENIED)
    assert h.take_up() == w.q(FAIL_TEXT) + w.q("select 3")


def test_client_eof_while_held_waits_for_the_release(h: Holding) -> None:
    h.client(w.q("VACUUM t"), w.TERMINATE)
    h._run(h.core.client_eof())
    assert h.shutdowns == []
    h.resume(APPROVED)
    assert h.take_up() == w.q("VACUUM t") + w.TERMINATE and h.shutdowns == ["up"]


def test_a_stale_or_unknown_hold_id_changes_nothing(h: Holding) -> None:
    h.client(w.q("VACUUM t"))
    assert h.core.resume("not-it", APPROVED) == []
    assert h.take_up() == b""


def test_without_approvals_offered_an_approve_rule_is_refused_at_once() -> None:
    h = w.Harness().connect()
    h.client(w.q("VACUUM t"))
    assert h.take_up() == w.q(FAIL_TEXT)
    assert not [c for c in h.commands if isinstance(c, Hold)]


def test_terminate_sends_a_fatal_with_the_reason_then_closes(h: Holding) -> None:
    out = list(h.core.terminate("access grant 1a2b expired at 12:00:00 UTC"))
    forward, close = out[-2:]
    assert isinstance(forward, Forward) and forward.direction is Direction.DOWN
    fields = w.error_fields(forward.data)
    assert fields["S"] == "FATAL" and fields["C"] == "57P01"
    assert fields["M"] == "jitctl: access grant 1a2b expired at 12:00:00 UTC"
    assert isinstance(close, Close) and close.error
    assert h.core.client_data(w.q("select 1")) == []
    assert not any(isinstance(c, Shutdown) for c in out)


# -- whatever the chunking, holds keep order and release exactly what was sent ---------------------

STREAM = st.lists(
    st.sampled_from(
        [
            w.q("select 1"),
            w.q("VACUUM a"),
            w.parse("VACUUM b"),
            w.parse("select 2"),
            w.bind(),
            w.execute(),
            w.SYNC,
            w.q("VACUUM c; select 3"),
        ]
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(
    messages=STREAM,
    cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=20),
    verdicts=st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_held_messages_go_up_in_order_as_sent_or_as_the_failing_rewrite(
    messages: list[bytes], cuts: list[int], verdicts: list[bool]
) -> None:
    h = Holding().ready()
    data = b"".join(messages)
    pos = 0
    for size in [*cuts, len(data)]:  # the client's bytes, cut anywhere
        h.client(data[pos : pos + size])
        pos += size
        if pos >= len(data):
            break
    answered = 0
    while len(h.holds()) > answered:  # decide each hold as it comes, in order
        review = APPROVED if verdicts[answered] else DENIED
        answered += 1
        h.resume(review)
    sent = w.split_messages(h.take_up())
    assert len(sent) == len(messages)  # nothing lost, nothing added, nothing reordered
    held = iter(verdicts)
    for original, forwarded in zip(messages, sent, strict=True):
        if b"VACUUM" in original:
            if next(held):
                assert forwarded == original
            else:
                assert FAIL_TEXT.encode() in forwarded and forwarded[:1] == original[:1]
        else:
            assert forwarded == original
