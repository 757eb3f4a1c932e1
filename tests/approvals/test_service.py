"""The approvals service in process, on a real store and a real audit writer: who may decide,
what a vote does, grants that end, holds that wait — and the trail each step leaves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from jitctl.approvals.models import Kind, Status
from jitctl.approvals.rules import Problem
from jitctl.approvals.service import Approvals
from jitctl.approvals.store import open_approval_store
from jitctl.audit.keys import SigningKey
from jitctl.audit.records import Actor
from jitctl.audit.store import open_store
from jitctl.audit.writer import AuditWriter
from jitctl.broker.identity import Identity
from jitctl.config import parse_config
from jitctl.plugin import Hold

ALICE = Identity("alice", "https://idp", "alice@example.com", ("agents",))
ALICE_AGENT = Identity("agent-7", "https://ci", "alice@example.com", ("agents",))
BOB = Identity("bob", "https://idp", "bob@example.com", ("dba",))
CAROL = Identity("carol", "https://idp", "carol@example.com", ("dba",))
DAVE = Identity("dave", "https://idp", "dave@example.com", ("oncall", "agents"))

CONFIG = {
    "approvals": {"poll_interval": "100ms"},
    "targets": [
        {
            "name": "pg",
            "protocol": "postgres",
            "address": "127.0.0.1:5432",
            "allow_groups": ["agents"],
            "access": {
                "require_request": True,
                "approvers": ["dba"],
                "min_approvals": 2,
                "max_duration": "4h",
                "auto_approve_groups": ["oncall"],
                "approval_timeout": "1s",
            },
            "rules": [
                {"name": "ddl", "match": {"statement": ["alter"]}, "action": "approve"},
            ],
        }
    ],
}


class Broker:
    """One broker's approvals service and the audit store it writes."""

    def __init__(self, url: str, state: Path, audit: Callable[[Any], Any] = lambda w: w) -> None:
        self.url, self.state, self.audit = url, state, audit

    async def __aenter__(self) -> Approvals:
        state = self.state
        state.mkdir(parents=True, exist_ok=True)
        self.writer = AuditWriter(
            open_store(self.url), SigningKey.generate(), state / "checkpoint.json"
        )
        await self.writer.start()
        config = parse_config(CONFIG, "test")
        audit = self.audit(self.writer)
        self.service = Approvals(config, open_approval_store(self.url), audit, state.name)
        await self.service.start()
        return self.service

    async def __aexit__(self, *exc: object) -> None:
        await self.service.close()
        await self.writer.close()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 30))


def trail(url: str) -> list[tuple[str, dict[str, Any]]]:
    with open_store(url) as store:
        return [
            (r.kind, dict(r.payload))
            for r in store.iter_records()
            if r.kind.startswith("approval.")
        ]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'audit.db'}"


def test_two_approvals_from_two_different_approvers_grant_access(url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Broker(url, tmp_path / "a") as service:
            request = await service.request_access(ALICE, "pg", "INC-7", 1800)
            assert request.status is Status.PENDING and request.min_approvals == 2
            with pytest.raises(Problem, match="cannot approve your own request") as own:
                await service.decide(request.id, ALICE, "approve", "")
            assert own.value.status == 403
            with pytest.raises(Problem, match="cannot approve your own") as agent:
                await service.decide(request.id, ALICE_AGENT, "approve", "same email, other token")
            assert agent.value.error == "self_approval"
            with pytest.raises(Problem, match="may not approve") as outsider:
                await service.decide(request.id, DAVE, "approve", "")
            assert outsider.value.error == "not_an_approver"
            first = await service.decide(request.id, BOB, "approve", "looks fine")
            assert first.status is Status.PENDING and first.approvals == 1
            with pytest.raises(Problem, match="already approved") as twice:
                await service.decide(request.id, BOB, "approve", "again")
            assert twice.value.status == 409
            assert await service.active_grant(ALICE, "pg") is None
            second = await service.decide(request.id, CAROL, "approve", "agreed")
            assert second.status is Status.APPROVED and second.decided_by == "bob, carol"
            assert second.expires_at is not None and second.expires_at > time.time() + 1700
            grant = await service.active_grant(ALICE, "pg")
            assert grant is not None and grant.id == request.id

    run(scenario)
    kinds = [kind for kind, _ in trail(url)]
    assert kinds == [
        "approval.requested",
        "approval.approved",
        "approval.approved",
        "approval.granted",
    ]
    approved = [p for k, p in trail(url) if k == "approval.approved"]
    assert [(p["approvals"], p["needed"], p["reason"]) for p in approved] == [
        (1, 2, "looks fine"),
        (2, 2, "agreed"),
    ]


def test_a_deny_needs_a_reason_and_ends_the_request(url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Broker(url, tmp_path / "a") as service:
            request = await service.request_access(ALICE, "pg", "INC-7", 600)
            with pytest.raises(Problem, match="reason is required"):
                await service.decide(request.id, BOB, "deny", " ")
            denied = await service.decide(request.id, BOB, "deny", "not during the freeze")
            assert denied.status is Status.DENIED
            with pytest.raises(Problem, match="already denied"):
                await service.decide(request.id, CAROL, "approve", "")

    run(scenario)
    assert ("approval.denied", "not during the freeze") in [
        (k, p.get("reason")) for k, p in trail(url)
    ]


def test_requests_are_checked_before_they_are_filed(url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Broker(url, tmp_path / "a") as service:
            with pytest.raises(Problem, match=r"grants at most 4h at a time \(asked for 5h\)"):
                await service.request_access(ALICE, "pg", "INC-7", 5 * 3600)
            with pytest.raises(Problem, match="reason is required"):
                await service.request_access(ALICE, "pg", "", 60)
            with pytest.raises(Problem, match="may not reach 'pg' at all"):
                await service.request_access(BOB, "pg", "why not", 60)
            with pytest.raises(Problem, match="no target named 'nope'"):
                await service.request_access(ALICE, "nope", "x", 60)

    run(scenario)
    assert trail(url) == []


def test_auto_approve_groups_are_granted_at_once(url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Broker(url, tmp_path / "a") as service:
            request = await service.request_access(DAVE, "pg", "paged: INC-9", 900)
            assert request.status is Status.APPROVED and request.decided_by == "auto"
            assert await service.active_grant(DAVE, "pg") is not None

    run(scenario)
    assert [k for k, _ in trail(url)] == ["approval.requested", "approval.granted"]
    assert trail(url)[1][1]["auto"] is True


def test_sessions_riding_a_grant_hear_when_it_expires_or_is_revoked(
    url: str, tmp_path: Path
) -> None:
    ended: list[str] = []

    async def scenario() -> None:
        async with Broker(url, tmp_path / "a") as service:
            short = await service.request_access(DAVE, "pg", "quick look", 1)
            service.watch_grant(short, ended.append)
            long = await service.request_access(DAVE, "pg", "longer", 600)
            service.watch_grant(long, ended.append)
            await asyncio.sleep(1.3)
            assert len(ended) == 1 and f"access grant {short.id} to pg expired at" in ended[0]
            assert "jitctl request create pg" in ended[0]
            await service.revoke(long.id, BOB, "incident over")
            for _ in range(40):
                if len(ended) == 2:
                    break
                await asyncio.sleep(0.05)
            assert ended[1].startswith(f"access grant {long.id} to pg was revoked by bob@")
            assert "incident over" in ended[1]

    run(scenario)
    kinds = [k for k, _ in trail(url)]
    assert kinds.count("approval.expired") == 1 and kinds[-1] == "approval.revoked"


def _hold(text: str = "ALTER TABLE t ADD c int") -> Hold:
    from jitctl.approvals.models import new_id

    return Hold(new_id(), text, {"rule": "ddl", "kind": "alter", "reason": "ALTER needs approval"})


ACTOR = Actor("agent-7", email="alice@example.com", agent="triage-bot", reason="INC-7")


def test_a_held_statement_nobody_answers_expires_at_its_deadline(url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Broker(url, tmp_path / "a") as service:
            target = service.config.target("pg")
            request = await service.hold(ACTOR, target, "sess-1", _hold(), timeout=0.5)
            assert request.kind is Kind.STATEMENT and request.approvers == ("dba",)
            started = time.monotonic()
            decided = await service.await_decision(request.id, asyncio.Event())
            assert decided is not None and decided.status is Status.EXPIRED
            assert 0.4 < time.monotonic() - started < 5  # at its 0.5 s deadline, not never

    run(scenario)
    assert [k for k, _ in trail(url)] == ["approval.requested", "approval.expired"]


def test_a_decision_made_by_another_broker_on_the_same_store_wakes_the_waiter(
    url: str, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with Broker(url, tmp_path / "a") as a, Broker(url, tmp_path / "b") as b:
            target = a.config.target("pg")
            request = await a.hold(ACTOR, target, "sess-1", _hold(), timeout=20)
            waiting = asyncio.ensure_future(a.await_decision(request.id, asyncio.Event()))
            await asyncio.sleep(0.2)
            assert not waiting.done()
            await b.decide(request.id, BOB, "approve", "additive column")
            decided = await asyncio.wait_for(waiting, 2)  # SQLite: polled every 100 ms
            assert decided is not None and decided.status is Status.APPROVED
            await a.executed(decided, "sess-1")

    run(scenario)
    assert [k for k, _ in trail(url)] == [
        "approval.requested",
        "approval.approved",
        "approval.granted",
        "approval.executed",
    ]


class SlowGrants:
    """The audit writer, taking its time over `approval.granted`."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.writer, name)

    async def append(self, record: Any) -> Any:
        if record.kind == "approval.granted":
            await asyncio.sleep(0.5)  # several poll intervals
        return await self.writer.append(record)


@pytest.mark.parametrize(
    "audit",
    [
        pytest.param(lambda writer: writer, id="woken-by-the-approval"),
        # The waiter's poll reads the approved row while the grant is still being recorded.
        pytest.param(SlowGrants, id="poll-sees-the-approval-early"),
    ],
)
def test_a_waiter_records_its_execution_after_the_grant(
    url: str, tmp_path: Path, audit: Callable[[Any], Any]
) -> None:
    """On one broker the trail reads approval.granted, then the execution: the gateway resumes
    a held statement the moment its waiter returns, so the waiter must return only after the
    approval's records are written, whether a wakeup or its own poll found the decision."""

    async def scenario() -> None:
        async with Broker(url, tmp_path / "a", audit=audit) as service:
            target = service.config.target("pg")
            request = await service.hold(ACTOR, target, "sess-1", _hold(), timeout=20)

            async def gateway() -> None:
                decided = await service.await_decision(request.id, asyncio.Event())
                assert decided is not None and decided.status is Status.APPROVED
                await service.executed(decided, "sess-1")

            waiting = asyncio.ensure_future(gateway())
            await asyncio.sleep(0.05)
            await service.decide(request.id, BOB, "approve", "additive column")
            await asyncio.wait_for(waiting, 2)

    run(scenario)
    assert [k for k, _ in trail(url)] == [
        "approval.requested",
        "approval.approved",
        "approval.granted",
        "approval.executed",
    ]


def test_a_hold_whose_session_ends_is_cancelled(url: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Broker(url, tmp_path / "a") as service:
            target = service.config.target("pg")
            request = await service.hold(ACTOR, target, "sess-1", _hold(), timeout=20)
            ended = asyncio.Event()
            waiting = asyncio.ensure_future(service.await_decision(request.id, ended))
            await asyncio.sleep(0.1)
            ended.set()
            assert await asyncio.wait_for(waiting, 2) is None
            after = await service.get(request.id, BOB)
            assert after.status is Status.CANCELLED
            with pytest.raises(Problem, match="already cancelled"):
                await service.decide(request.id, BOB, "approve", "")

    run(scenario)
    assert [k for k, _ in trail(url)][-1] == "approval.cancelled"
