"""Webhook notifications: Slack-compatible JSON (`{"text", "blocks"}`), retried, never in the way.

Rules:
- `send` only queues: a request is stored and recorded before anyone is notified, and nothing
  waits for a webhook. Deliveries run as background tasks (at most `CONCURRENCY` at once).
- A delivery is retried on a transport error, a timeout, 429 or a 5xx, with exponential backoff
  (`base_delay`, doubling, capped at 30 s) up to `webhook_retries` more times; other 4xx answers
  are not retried. Every failure is logged (`approvals.webhook_failed`, with the attempt); the
  final one says the notification was dropped — the request itself is untouched.
- The payload is what Slack's incoming webhooks take (`text` as the fallback, `blocks` for the
  layout); Mattermost, Rocket.Chat and most chat bridges take the same. Statement text is cut
  at `TEXT_CAP` characters in the message (Slack's 3000-character section limit); approvers
  read the exact text with `jitctl request ls` / `watch`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from jitctl.approvals.models import Kind, Request

log = logging.getLogger("jitctl.approvals")

CONCURRENCY = 8
MAX_QUEUED = 1000
TEXT_CAP = 2500


class Notifier:
    def __init__(
        self,
        *,
        retries: int = 5,
        timeout: float = 5.0,
        base_delay: float = 0.5,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.retries, self.timeout, self.base_delay = retries, timeout, base_delay
        self._sleep = sleep
        self._tasks: set[asyncio.Task[bool]] = set()
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._client: Any = None

    def send(self, url: str, message: dict[str, Any]) -> asyncio.Task[bool] | None:
        """Queue one delivery; returns its task (True once delivered), None when dropped."""
        if not url:
            return None
        if len(self._tasks) >= MAX_QUEUED:
            log.warning(
                "webhook backlog full; notification dropped",
                extra={"event": "approvals.webhook_dropped", "url": _safe(url)},
            )
            return None
        task = asyncio.ensure_future(self._deliver(url, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self, grace: float = 2.0) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    async def _deliver(self, url: str, message: dict[str, Any]) -> bool:
        import httpx

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        async with self._slots:
            delay = self.base_delay
            for attempt in range(1, self.retries + 2):
                problem = ""
                try:
                    response = await self._client.post(url, json=message)
                    if response.is_success:
                        return True
                    problem = f"HTTP {response.status_code}"
                    retry = response.status_code == 429 or response.status_code >= 500
                except httpx.HTTPError as exc:
                    problem, retry = f"{type(exc).__name__}: {exc}", True
                last = not retry or attempt > self.retries
                log.warning(
                    "webhook delivery failed" + ("; notification dropped" if last else ""),
                    extra={
                        "event": "approvals.webhook_failed",
                        "url": _safe(url),
                        "attempt": attempt,
                        "error": problem,
                    },
                )
                if last:
                    return False
                await self._sleep(delay)
                delay = min(delay * 2, 30.0)
        return False


def _safe(url: str) -> str:
    """A webhook URL's secret is its path: log only the host."""
    from urllib.parse import urlsplit

    return urlsplit(url).netloc


def _when(epoch: float | None) -> str:
    if not epoch:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _who(request: Request) -> str:
    actor = request.requester
    who = actor.email or actor.subject
    return f"{who} (agent {actor.agent})" if actor.agent else who


def message_for(event: str, request: Request, by: str = "", reason: str = "") -> dict[str, Any]:
    """The webhook body for `event` ("requested", "approved", "denied", "expired", "revoked")."""
    what = "run a statement on" if request.kind is Kind.STATEMENT else "access"
    if event == "requested":
        text = f"jitctl: {_who(request)} asks to {what} {request.target} (request {request.id})"
    else:
        text = f"jitctl: request {request.id} ({request.target}) {event}"
        text += f" by {by}" if by else ""
        text += f": {reason}" if reason else ""
    if event != "requested":
        return {"text": text, "blocks": [_section(text)]}
    if request.kind is Kind.STATEMENT:
        shown = request.text[:TEXT_CAP]
        if len(request.text) > TEXT_CAP:
            shown += " …(cut; see `jitctl request ls`)"
        rule = request.details.get("rule") or "default"
        body = f"*Statement* held by rule `{rule}`:\n```{shown}```"
    else:
        from jitctl.durations import format_duration

        body = f"*Access* to `{request.target}` for {format_duration(request.duration)}"
    actor = request.requester
    fields = [f"*Requester*\n{actor.email or actor.subject}", f"*Reason*\n{request.reason or '-'}"]
    if actor.agent:
        fields.append(f"*Agent*\n{actor.agent}")
    if actor.command:
        fields.append(f"*Command*\n`{actor.command[:300]}`")
    decide = (
        f"`jitctl request approve {request.id} --reason ...` · "
        f"`jitctl request deny {request.id} --reason ...` · "
        f"waits until {_when(request.deadline)}"
    )
    return {
        "text": text,
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": f"Approval needed: {request.target}"},
            },
            _section(body),
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": decide}]},
        ],
    }


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}
