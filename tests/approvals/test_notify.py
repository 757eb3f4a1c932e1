"""Webhooks: Slack-compatible JSON, retried with backoff against a real local HTTP server that
fails first; a webhook that never answers is logged and dropped, and never holds up a request."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from jitctl.approvals.models import Kind, Request, Status
from jitctl.approvals.notify import Notifier, message_for
from jitctl.audit.records import Actor


class Hook:
    """A webhook receiver answering the statuses in `script`, then 200."""

    def __init__(self, script: list[int]) -> None:
        self.script = list(script)
        self.bodies: list[dict[str, Any]] = []
        self.times: list[float] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.bodies.append(json.loads(body))
                hook.times.append(time.monotonic())
                status = hook.script.pop(0) if hook.script else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T000/B000/secret"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    receiver = Hook([500, 503])
    yield receiver
    receiver.close()


STATEMENT = Request(
    id="3f9c0a1b2c3d",
    kind=Kind.STATEMENT,
    target="pg-prod",
    status=Status.PENDING,
    requester=Actor(
        "agent-7",
        email="alice@example.com",
        agent="triage-bot",
        command="python agent.py --fix",
        reason="INC-7",
    ),
    reason="INC-7",
    created_at=1_800_000_000.0,
    deadline=1_800_000_120.0,
    approvers=("dba",),
    text="ALTER TABLE customers ADD COLUMN tier text",
    details={"rule": "ddl", "kind": "alter"},
)


def test_a_failing_webhook_is_retried_with_backoff_until_it_answers(hook: Hook) -> None:
    async def scenario() -> bool:
        notifier = Notifier(retries=3, base_delay=0.05)
        task = notifier.send(hook.url, message_for("requested", STATEMENT))
        assert task is not None
        delivered = await asyncio.wait_for(task, 5)
        await notifier.close()
        return delivered

    assert asyncio.run(scenario()) is True
    assert len(hook.bodies) == 3 and hook.bodies[0] == hook.bodies[2]
    gaps = [b - a for a, b in zip(hook.times, hook.times[1:], strict=False)]
    assert gaps[1] > gaps[0] * 1.5  # backoff doubles


def test_the_message_is_slack_json_with_what_an_approver_needs() -> None:
    body = message_for("requested", STATEMENT)
    assert set(body) == {"text", "blocks"}
    assert "alice@example.com (agent triage-bot)" in body["text"]
    assert "3f9c0a1b2c3d" in body["text"]
    flat = json.dumps(body["blocks"])
    for needed in (
        "ALTER TABLE customers ADD COLUMN tier text",
        "triage-bot",
        "python agent.py --fix",
        "INC-7",
        "jitctl request approve 3f9c0a1b2c3d",
        "`ddl`",
    ):
        assert needed in flat
    assert [b["type"] for b in body["blocks"]] == ["header", "section", "section", "context"]


def test_a_webhook_that_never_answers_is_logged_and_given_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> bool:
        notifier = Notifier(retries=2, base_delay=0.01, timeout=0.5)
        task = notifier.send("http://127.0.0.1:9/nothing-listens", {"text": "x"})
        assert task is not None
        delivered = await asyncio.wait_for(task, 5)
        await notifier.close()
        return delivered

    with caplog.at_level(logging.WARNING, logger="jitctl.approvals"):
        assert asyncio.run(scenario()) is False
    failures = [r for r in caplog.records if getattr(r, "event", "") == "approvals.webhook_failed"]
    assert [r.attempt for r in failures] == [1, 2, 3]  # type: ignore[attr-defined]
    assert failures[-1].getMessage().endswith("notification dropped")
    assert "nothing-listens" not in caplog.text  # the URL's path is its secret


def test_a_request_is_filed_while_its_webhook_is_still_failing(hook: Hook, tmp_path: Path) -> None:
    """End to end in process: the request exists and is recorded at once; the webhook
    arrives later, after its retries."""
    from jitctl.approvals.service import Approvals
    from jitctl.approvals.store import open_approval_store
    from jitctl.audit.keys import SigningKey
    from jitctl.audit.store import open_store
    from jitctl.audit.writer import AuditWriter
    from jitctl.broker.identity import Identity
    from jitctl.config import parse_config

    hook.script = [500, 500, 500]
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    config = parse_config(
        {
            "approvals": {"webhook": hook.url},
            "targets": [
                {
                    "name": "pg",
                    "protocol": "tcp",
                    "address": "127.0.0.1:1",
                    "allow_groups": ["agents"],
                    "access": {"require_request": True, "approvers": ["dba"]},
                }
            ],
        },
        "test",
    )

    async def scenario() -> None:
        writer = AuditWriter(open_store(url), SigningKey.generate(), tmp_path / "cp.json")
        await writer.start()
        notifier = Notifier(retries=5, base_delay=0.1)
        service = Approvals(config, open_approval_store(url), writer, "a", notifier=notifier)
        started = time.monotonic()
        alice = Identity("alice", "https://idp", "alice@example.com", ("agents",))
        request = await service.request_access(alice, "pg", "INC-7", 600)
        # Retries alone (0.1+0.2+0.4+0.8+1.6 s) would take 3 s: well under that means not waiting.
        assert time.monotonic() - started < 2.0
        assert hook.bodies == [] or len(hook.bodies) == 1
        assert (await service.get(request.id, alice)).status is Status.PENDING
        for _ in range(100):
            if len(hook.bodies) == 4:
                break
            await asyncio.sleep(0.05)
        await service.close()
        await writer.close()

    asyncio.run(scenario())
    assert len(hook.bodies) == 4 and "asks to access pg" in hook.bodies[-1]["text"]
