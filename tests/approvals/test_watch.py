"""`jitctl request watch` driven with Textual's pilot: items appear as they arrive, the selected
one shows its exact text and who asks, a key approves or denies with a reason, and a decided
item disappears; a refused decision says why."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

pytest.importorskip("textual")

from jitctl.errors import DeniedError
from jitctl.review.app import ReviewApp
from jitctl.review.screens.reason import ReasonScreen
from jitctl.review.widgets.pending import PendingTable


def held(rid: str, text: str, agent: str = "triage-bot") -> dict[str, Any]:
    return {
        "id": rid,
        "kind": "statement",
        "target": "pg-prod",
        "status": "pending",
        "requester": {
            "subject": "agent-7",
            "email": "alice@example.com",
            "agent": agent,
            "command": "python agent.py --fix",
        },
        "reason": "INC-7",
        "approvers": ["dba"],
        "min_approvals": 1,
        "approvals": 0,
        "deadline": 1_800_000_000.0,
        "text": text,
        "details": {"rule": "ddl", "reason": "ALTER needs approval"},
    }


class FakeBroker:
    """A source as the broker would answer: pending items; decisions change them."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.decisions: list[tuple[str, str, str]] = []
        self.refuse: dict[str, str] = {}
        self.lock = threading.Lock()

    def pending(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(i) for i in self.items.values() if i["status"] == "pending"]

    def decide(self, request_id: str, action: str, reason: str) -> dict[str, Any]:
        if request_id in self.refuse:
            raise DeniedError(self.refuse[request_id])
        with self.lock:
            self.decisions.append((request_id, action, reason))
            item = self.items[request_id]
            item["status"] = "approved" if action == "approve" else "denied"
            item["decided_by"] = "bob"
            item["decision_reason"] = reason
            return dict(item)


def run(app: ReviewApp, scenario: Callable[[Any], Awaitable[None]]) -> None:
    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await scenario(pilot)

    asyncio.run(main())


async def until(pilot: Any, condition: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not met in time")


async def typed(pilot: Any, text: str) -> None:
    for char in text:
        await pilot.press(char if char != " " else "space")
    await pilot.press("enter")


def rows(pilot: Any) -> list[str]:
    return pilot.app.query_one(PendingTable).ids  # type: ignore[no-any-return]


def detail(pilot: Any) -> str:
    return str(pilot.app.query_one("#detail").render())


def status(pilot: Any) -> str:
    return str(pilot.app.query_one("#status").render())


def test_an_item_appears_is_approved_with_a_key_and_disappears() -> None:
    broker = FakeBroker()

    async def scenario(pilot: Any) -> None:
        assert rows(pilot) == []
        broker.items["a1"] = held("a1", "ALTER TABLE customers ADD COLUMN tier text")
        await until(pilot, lambda: rows(pilot) == ["a1"])  # arrives on the next refresh
        text = detail(pilot)
        assert "ALTER TABLE customers ADD COLUMN tier text" in text
        assert "triage-bot" in text and "python agent.py --fix" in text and "INC-7" in text
        await pilot.press("a")
        await until(pilot, lambda: isinstance(pilot.app.screen, ReasonScreen))
        await typed(pilot, "additive column")
        await until(pilot, lambda: rows(pilot) == [])
        assert broker.decisions == [("a1", "approve", "additive column")]
        assert "a1 is approved (bob): additive column" in status(pilot)

    run(ReviewApp(broker, interval=0.1), scenario)


def test_deny_needs_a_reason_and_escape_cancels() -> None:
    broker = FakeBroker()
    broker.items["d1"] = held("d1", "ALTER TABLE orders DROP COLUMN note")
    broker.items["d2"] = held("d2", "ALTER TABLE orders ADD COLUMN x int", agent="other-bot")

    async def scenario(pilot: Any) -> None:
        await until(pilot, lambda: len(rows(pilot)) == 2)
        await pilot.press("d")
        await until(pilot, lambda: isinstance(pilot.app.screen, ReasonScreen))
        await pilot.press("enter")  # empty: stays open
        assert isinstance(pilot.app.screen, ReasonScreen)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(pilot.app.screen, ReasonScreen))
        assert broker.decisions == []
        selected = pilot.app.query_one(PendingTable).selected()
        await pilot.press("d")
        await until(pilot, lambda: isinstance(pilot.app.screen, ReasonScreen))
        await typed(pilot, "drops data")
        await until(pilot, lambda: selected not in rows(pilot))
        assert broker.decisions == [(selected, "deny", "drops data")]
        assert len(rows(pilot)) == 1

    run(ReviewApp(broker, interval=0.1), scenario)


def test_a_refused_decision_says_why_and_keeps_the_item() -> None:
    broker = FakeBroker()
    broker.items["s1"] = held("s1", "ALTER TABLE t ADD c int")
    broker.refuse["s1"] = "you cannot approve your own request s1; another approver must"

    async def scenario(pilot: Any) -> None:
        await until(pilot, lambda: rows(pilot) == ["s1"])
        await pilot.press("a")
        await until(pilot, lambda: isinstance(pilot.app.screen, ReasonScreen))
        await typed(pilot, "mine")
        await until(pilot, lambda: "cannot approve your own request" in status(pilot))
        assert rows(pilot) == ["s1"]

    run(ReviewApp(broker, interval=0.1), scenario)
