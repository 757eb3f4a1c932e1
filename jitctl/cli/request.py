"""`jitctl request ...`: just-in-time access requests and statement approvals (docs/approvals.md).

Data to stdout (`create` prints the new id, `ls` a table, `--json` one document), talk to
stderr. Exit codes: 3 not logged in, 4 not allowed (self-approval, not an approver), 2 a bad
request, 1 already decided, 6 broker unreachable.
"""

from __future__ import annotations

from typing import Any

import typer

from jitctl.approvals.text import clock, describe, status_line
from jitctl.cli._render import emit_json, need_terminal, say, table

app = typer.Typer(help="Just-in-time access requests and approvals.", no_args_is_help=True)


def _client() -> Any:
    from jitctl.client.requests import RequestsClient

    return RequestsClient.from_settings()


@app.command("create")
def create(
    target: str = typer.Argument(..., help="The target to ask access to."),
    reason: str = typer.Option(..., "--reason", help="Why; approvers read it, the trail keeps it."),
    for_: str = typer.Option("30m", "--for", help="How long the grant should last."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Ask for access to TARGET; prints the request id."""
    request = _client().create(target, reason, for_)
    if json_out:
        emit_json(request)
        return
    print(request["id"])
    say(status_line(request))
    if request["status"] == "pending":
        say(f"approvers run: jitctl request approve {request['id']}")


@app.command("ls")
def ls(
    mine: bool = typer.Option(False, "--mine", help="Only requests you made."),
    pending: bool = typer.Option(False, "--pending", help="Only requests still waiting."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """List the requests you made or may decide, newest first."""
    found = _client().list(mine=mine, pending=pending)
    if json_out:
        emit_json({"requests": found})
        return
    rows = [
        (
            r["id"],
            r["target"],
            r["status"],
            r["requester"].get("email") or r["requester"].get("subject"),
            r["requester"].get("agent", ""),
            describe(r),
            f"{r['approvals']}/{r['min_approvals']}",
            clock(r.get("deadline") if r["status"] == "pending" else r.get("expires_at")),
        )
        for r in found
    ]
    columns = ("id", "target", "status", "requester", "agent", "what", "ok", "until")
    table(None, columns, rows)


def _decide(request_id: str, action: str, reason: str, json_out: bool) -> None:
    request = _client().decide(request_id, action, reason)
    if json_out:
        emit_json(request)
    else:
        say(status_line(request))


@app.command("approve")
def approve(
    request_id: str = typer.Argument(..., help="A request id (from `ls`, a notice or a webhook)."),
    reason: str = typer.Option("", "--reason", help="Why you approve; recorded."),
    json_out: bool = typer.Option(False, "--json", help="Print the request as JSON."),
) -> None:
    """Approve a request or a held statement (never your own)."""
    _decide(request_id, "approve", reason, json_out)


@app.command("deny")
def deny(
    request_id: str = typer.Argument(...),
    reason: str = typer.Option(..., "--reason", help="Why; the requester is told."),
    json_out: bool = typer.Option(False, "--json", help="Print the request as JSON."),
) -> None:
    """Deny a request or a held statement (a held statement then fails)."""
    _decide(request_id, "deny", reason, json_out)


@app.command("revoke")
def revoke(
    request_id: str = typer.Argument(...),
    reason: str = typer.Option("", "--reason", help="Why; recorded and shown to the sessions."),
    json_out: bool = typer.Option(False, "--json", help="Print the request as JSON."),
) -> None:
    """Revoke a grant (sessions riding on it end) or withdraw a pending request."""
    _decide(request_id, "revoke", reason, json_out)


@app.command("watch")
def watch(
    interval: float = typer.Option(1.0, "--interval", help="Seconds between refreshes."),
) -> None:
    """Live view of pending requests for approvers: a approves, d denies (with a reason)."""
    need_terminal("jitctl request watch", "`jitctl request ls --pending` (or --json)")
    try:
        from jitctl.review.app import ReviewApp
    except ImportError as exc:  # textual is optional for everything else
        from jitctl.errors import JitctlError

        raise JitctlError(
            f"`jitctl request watch` needs textual ({exc})", "pip install textual"
        ) from None
    from jitctl.review.source import BrokerSource

    ReviewApp(BrokerSource(_client()), interval=interval).run()
