"""`jitctl login`, `logout`, `whoami`, `targets`: who am I, and what may I reach."""

from __future__ import annotations

import time
from typing import Any

import typer

from jitctl.cli._render import emit_json, kv, say, table


def register(app: typer.Typer) -> None:
    app.command("login")(login)
    app.command("logout")(logout)
    app.command("whoami")(whoami)
    app.command("targets")(targets)


def _when(epoch: Any) -> str:
    from datetime import datetime

    from jitctl.durations import format_duration

    if not isinstance(epoch, int | float):
        return "unknown"
    stamp = datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")
    left = epoch - time.time()
    return f"{stamp} (in {format_duration(left)})" if left > 0 else f"{stamp} (expired)"


def login(
    broker: str | None = typer.Option(None, "--broker", help="Broker URL, remembered for later."),
    ca_file: str | None = typer.Option(
        None, "--ca-file", help="CA bundle that signed the broker's certificate."
    ),
    device: bool = typer.Option(
        False, "--device", help="Use the device grant (headless machines)."
    ),
    token_file: str | None = typer.Option(
        None, "--token-file", help="Use the workload token in this file (re-read on every use)."
    ),
    token_env: str | None = typer.Option(
        None, "--token-env", help="Use the workload token in this environment variable."
    ),
    no_browser: bool = typer.Option(
        False, "--no-browser", help="Print the login URL instead of opening a browser."
    ),
) -> None:
    """Get an identity: OIDC auth code + PKCE (default), device grant, or a workload token."""
    from pathlib import Path

    from jitctl.client import login as flows
    from jitctl.client import settings as client_settings
    from jitctl.client.api import BrokerClient
    from jitctl.client.tokens import TokenStore, bearer_of, oidc_record, read_workload_token
    from jitctl.errors import UsageError

    if sum(bool(x) for x in (device, token_file, token_env)) > 1:
        raise UsageError("choose one of --device, --token-file and --token-env")
    chosen = client_settings.resolve(broker, ca_file)
    record: dict[str, Any]
    with BrokerClient(chosen.url, chosen.ca_file) as api:
        if token_file or token_env:
            if token_file:
                record = {"mode": "file", "path": str(Path(token_file).expanduser().resolve())}
            else:
                record = {"mode": "env", "var": token_env}
            token = read_workload_token(record)
        else:
            provider = flows.discover(api.info().get("login"), chosen.ca_file)
            if device:
                tokens = flows.login_device(provider, say=say)
            else:
                tokens = flows.login_pkce(provider, open_browser=not no_browser, say=say)
            record = oidc_record(
                tokens,
                issuer=provider.issuer,
                client_id=provider.client_id,
                token_endpoint=provider.token_endpoint,
            )
            token = bearer_of(record)
        who = api.whoami(token)  # a bad token fails here, with the broker's reason
    TokenStore(chosen.url).save(record)
    client_settings.remember(chosen)
    groups = ", ".join(who.get("groups") or []) or "(none)"
    say(
        f"Logged in to {chosen.url} as {who.get('subject')}"
        + (f" <{who['email']}>" if who.get("email") else "")
        + f"; groups: {groups}; valid until {_when(who.get('expires_at'))}"
    )


def logout() -> None:
    """Forget the stored identity."""
    from jitctl.client import settings as client_settings
    from jitctl.client.tokens import TokenStore

    chosen = client_settings.resolve()
    if TokenStore(chosen.url).delete():
        say(f"Logged out of {chosen.url}.")
    else:
        say(f"You were not logged in to {chosen.url}.")


def _session() -> tuple[Any, str, Any]:
    from jitctl.client import settings as client_settings
    from jitctl.client.api import BrokerClient
    from jitctl.client.tokens import current_token

    chosen = client_settings.resolve()
    token = current_token(chosen.url, chosen.ca_file)
    return chosen, token, BrokerClient(chosen.url, chosen.ca_file)


def whoami(json_out: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """Show the identity the broker sees: subject, email, groups, issuer, expiry."""
    chosen, token, api = _session()
    with api:
        who = api.whoami(token)
    document = {
        "subject": who.get("subject"),
        "email": who.get("email"),
        "groups": who.get("groups", []),
        "issuer": who.get("issuer"),
        "expires_at": who.get("expires_at"),
        "broker": chosen.url,
    }
    if json_out:
        emit_json(document)
        return
    kv(
        [
            ("subject", document["subject"]),
            ("email", document["email"] or "-"),
            ("groups", ", ".join(document["groups"]) or "-"),
            ("issuer", document["issuer"]),
            ("expires", _when(document["expires_at"])),
            ("broker", chosen.url),
        ]
    )


def rules_summary(target: dict[str, Any]) -> str:
    """One line per target: each rule's action and what it matches, then the default."""
    parts = []
    for rule in target.get("rules", []):
        words = [v for values in (rule.get("match") or {}).values() for v in values]
        what = ",".join(words) or rule.get("name") or "anything"
        parts.append(f"{rule.get('action')} {what}")
    parts.append(f"default {target.get('default_action', 'allow')}")
    if target.get("masks"):
        parts.append("masked")
    access = target.get("access") or {}
    if access.get("require_request"):
        approvers = ",".join(access.get("approvers") or []) or "approvers"
        parts.append(f"needs a request ({approvers})")
    return "; ".join(parts)


def targets(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """List the targets this identity may reach, and under which rules."""
    from jitctl.durations import format_duration

    chosen, token, api = _session()
    with api:
        found = api.targets(token)
    if json_out:
        emit_json({"broker": chosen.url, "targets": found})
        return
    if not found:
        say(
            "No targets: none of this broker's targets allow your groups "
            "(`jitctl whoami` shows them).\n"
            "hint: targets, and the groups each allows, are set in the broker's config file "
            "(docs/configuration.md)"
        )
        return
    rows = [
        [
            t.get("name"),
            t.get("protocol"),
            rules_summary(t),
            format_duration(float(t.get("max_session") or 0)),
        ]
        for t in found
    ]
    columns = ["name", "protocol", "rules", "max session"]
    # The config's `description` is what tells a newcomer which target is which.
    if any(t.get("description") for t in found):
        columns.append("description")
        for row, t in zip(rows, found, strict=True):
            row.append(t.get("description") or "")
    table(None, columns, rows)
