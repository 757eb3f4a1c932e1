"""`jitctl exec`: run a command (usually an agent) with recorded tunnels and no upstream secrets.

Rules:
- Identity without a human: `--token-file`/`--token-env` for this run (nothing stored), the
  ambient GitHub Actions OIDC token when `ACTIONS_ID_TOKEN_REQUEST_URL` is set and an audience
  is configured (`--audience` or `JITCTL_OIDC_AUDIENCE`), else the stored login.
- One tunnel per target; the child's environment points at them (DATABASE_URL and PG* for
  Postgres, <NAME>_URL for HTTP, <NAME>_SSH_CONFIG/_SSH_HOST for SSH with the gateway's host
  key pinned, <NAME>_HOST/_PORT for anything). Nothing in that environment is
  an upstream credential: the broker authenticates upstream itself.
- `--local-tls`: the Postgres tunnels speak TLS on the local leg as `jitctl connect --local-tls`
  does, and the environment says so (sslmode=verify-full and sslrootcert=<the local CA> in the
  URLs, PGSSLMODE and PGSSLROOTCERT): a client that insists on TLS gets it. Other tunnels stay
  as they are; the flag is refused when no target is Postgres.
- Every session opened for this run carries the agent label, the command line, the reason and
  one correlation id.
- `--gcp NAME`: GOOGLE_APPLICATION_CREDENTIALS points at an external_account config whose
  credential source is jitctl itself (refreshed through the broker as this identity, never a
  key); the file is removed when the command ends.
- Signals to jitctl are passed to the child; the tunnels close after it exits; jitctl exits
  with the child's status (128+N when a signal killed it).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from jitctl.client.tunnel import LocalListener, TunnelSpec, check_target, local_tls_for
from jitctl.errors import AuthError, CommandNotExecutable, CommandNotFound, UsageError

FORWARDED_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


def env_name(target: str) -> str:
    """pg-prod -> PG_PROD"""
    return re.sub(r"[^A-Za-z0-9]", "_", target).upper()


def github_actions_token(audience: str) -> str:
    """The workload token GitHub Actions hands a job with `permissions: id-token: write`."""
    import httpx

    url = os.environ["ACTIONS_ID_TOKEN_REQUEST_URL"]
    bearer = os.environ.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "")
    separator = "&" if "?" in url else "?"
    try:
        response = httpx.get(
            f"{url}{separator}audience={audience}",
            headers={"Authorization": f"Bearer {bearer}"},
            timeout=10,
        )
        response.raise_for_status()
        token = response.json()["value"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise AuthError(
            f"cannot get the GitHub Actions OIDC token: {exc}",
            "give the job `permissions: id-token: write`",
        ) from None
    return str(token)


def token_source(
    broker_url: str,
    ca_file: str | None,
    token_file: str | None,
    token_env: str | None,
    audience: str | None,
) -> Callable[[], str]:
    if token_file:
        path = Path(token_file)

        def from_file() -> str:
            try:
                return path.read_text().strip()
            except OSError as exc:
                raise AuthError(f"cannot read the token file {path}: {exc.strerror}") from None

        return from_file
    if token_env:

        def from_env() -> str:
            value = os.environ.get(token_env, "").strip()
            if not value:
                raise AuthError(f"environment variable {token_env} holds no token")
            return value

        return from_env
    audience = audience or os.environ.get("JITCTL_OIDC_AUDIENCE")
    if audience and os.environ.get("ACTIONS_ID_TOKEN_REQUEST_URL"):
        return lambda: github_actions_token(audience)
    from jitctl.client.tokens import current_token

    return lambda: current_token(broker_url, ca_file)


def child_environment(
    base: dict[str, str], tunnels: list[dict[str, Any]], correlation_id: str
) -> dict[str, str]:
    env = dict(base)
    env["JITCTL_CORRELATION_ID"] = correlation_id
    postgres_seen = False
    for tunnel in tunnels:
        name, host, port = env_name(tunnel["target"]), "127.0.0.1", tunnel["port"]
        env[f"{name}_HOST"], env[f"{name}_PORT"] = host, str(port)
        protocol = tunnel["protocol"]
        if protocol == "postgres":
            user = tunnel.get("user") or "jitctl"
            database = tunnel.get("database") or user
            root = tunnel.get("sslrootcert")  # set with --local-tls
            tls = (
                {"sslmode": "verify-full", "sslrootcert": root} if root else {"sslmode": "disable"}
            )
            # quote, not urlencode's default quote_plus: libpq decodes %XX but not "+".
            query = urlencode(tls, quote_via=quote, safe="/")
            # Percent-encoded: a user such as `svc@corp` or a database such as `a#b` would
            # otherwise end the URL's part early, and libpq would connect as someone else.
            who, where = quote(user, safe=""), quote(database, safe="")
            url = f"postgresql://{who}@{host}:{port}/{where}?{query}"
            env[f"{name}_URL"] = url
            if not postgres_seen:  # the first Postgres target is the default one
                postgres_seen = True
                env.update(
                    {
                        "DATABASE_URL": url,
                        "PGHOST": host,
                        "PGPORT": str(port),
                        "PGUSER": user,
                        "PGDATABASE": database,
                        "PGSSLMODE": tls["sslmode"],
                    }
                )
                if root:
                    env["PGSSLROOTCERT"] = root
                env.pop("PGPASSWORD", None)  # never let a stray password reach the upstream leg
        elif protocol == "http":
            env[f"{name}_URL"] = f"http://{host}:{port}"
        elif protocol == "ssh" and tunnel.get("ssh_host_key"):
            from jitctl.client.ssh import tunnel_environment

            # `ssh -F $<NAME>_SSH_CONFIG $<NAME>_SSH_HOST`: the gateway's host key is pinned.
            ssh_env, config = tunnel_environment(
                name, tunnel["target"], port, tunnel["ssh_host_key"]
            )
            env.update(ssh_env)
            tunnel["ssh_config"] = str(config)
        else:
            env[f"{name}_ADDR"] = f"{host}:{port}"
    return env


async def run_exec(
    command: list[str],
    *,
    targets: list[str],
    reason: str,
    agent: str,
    json_out: bool,
    token_file: str | None = None,
    token_env: str | None = None,
    audience: str | None = None,
    gcp: str | None = None,
    local_tls: bool = False,
) -> int:
    if not command:
        raise UsageError(
            "no command to run", "write it after --: jitctl exec -t pg -- python agent.py"
        )
    from jitctl.client.settings import resolve

    settings = resolve()
    token = token_source(settings.url, settings.ca_file, token_file, token_env, audience)
    correlation_id = uuid.uuid4().hex
    command_line = shlex.join(command)
    listeners: list[LocalListener] = []
    gcp_dir: Path | None = None
    tunnels: list[dict[str, Any]] = []
    try:
        checked: list[tuple[TunnelSpec, dict[str, Any]]] = []
        for target in targets:  # all of them before any listener: a refusal opens nothing
            spec = TunnelSpec(
                broker_url=settings.url,
                ca_file=settings.ca_file,
                target=target,
                token=token,
                reason=reason,
                agent=agent,
                command=command_line,
                correlation_id=correlation_id,
            )
            try:
                checked.append((spec, await check_target(spec)))
            except AuthError as exc:
                if not (token_file or token_env):
                    raise
                # Not a login to renew: the workload token this command was given is at fault.
                given = token_file or f"${token_env}"
                raise AuthError(exc.message, f"check the workload token in {given}") from None
        protocols = {spec.target: str(reply.get("protocol", "tcp")) for spec, reply in checked}
        context, local_ca = local_tls_for(protocols) if local_tls else (None, None)
        for spec, reply in checked:
            postgres = protocols[spec.target] == "postgres"
            listener = LocalListener(spec, on_event=_quiet, local_tls=context if postgres else None)
            port = await listener.start()
            listeners.append(listener)
            tunnel = {
                "target": spec.target,
                "protocol": protocols[spec.target],
                "host": "127.0.0.1",
                "port": port,
                "user": reply.get("user", ""),
                "database": reply.get("database", ""),
                "ssh_host_key": reply.get("ssh_host_key", ""),
            }
            if postgres and local_ca is not None:  # as `jitctl connect --local-tls --json`
                tunnel["sslrootcert"] = str(local_ca)
            tunnels.append(tunnel)
        env = child_environment(dict(os.environ), tunnels, correlation_id)
        if gcp is not None:
            gcp_dir = Path(tempfile.mkdtemp(prefix="jitctl-gcp-"))
            env.update(await asyncio.to_thread(_gcp_environment, settings, token, gcp, gcp_dir))
        if json_out:
            sys.stdout.write(
                json.dumps({"correlation_id": correlation_id, "tunnels": tunnels}) + "\n"
            )
            sys.stdout.flush()
        return await _run_child(command, env)
    finally:
        if gcp_dir is not None:
            shutil.rmtree(gcp_dir, ignore_errors=True)
        for listener in listeners:
            await listener.close()
        for tunnel in tunnels:  # the ssh config names a port that is closed now
            if tunnel.get("ssh_config"):
                Path(tunnel["ssh_config"]).unlink(missing_ok=True)


def _gcp_environment(
    settings: Any, token: Callable[[], str], target: str, where: Path
) -> dict[str, str]:
    """An external_account config (no key, no token: client libraries run `jitctl creds
    gcp-subject-token` to refresh, as this identity) in a private directory, and the two
    variables that make google-auth use it."""
    from jitctl.client import gcp

    info = gcp.request_subject_token(settings.url, settings.ca_file, token(), target or None)
    command = gcp.executable_command(str(info["target"]), settings.url, settings.ca_file)
    path = where / "gcp-external-account.json"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(gcp.external_account_config(info, command), out)
    return {"GOOGLE_APPLICATION_CREDENTIALS": str(path), gcp.ALLOW_EXECUTABLES: "1"}


def _quiet(message: str, trouble: bool) -> None:
    """The wrapped command owns the terminal: jitctl speaks only when something went wrong."""
    if trouble:
        sys.stderr.write(f"jitctl: {message}\n")


async def _run_child(command: list[str], env: dict[str, str]) -> int:
    from jitctl import eventloop

    try:
        process = eventloop.spawn(command, env)  # not the loop's: see jitctl.eventloop
    except FileNotFoundError:
        raise CommandNotFound(
            f"command not found: {command[0]}", "check the command after --, and PATH"
        ) from None
    except PermissionError:
        raise CommandNotExecutable(
            f"permission denied running {command[0]}", "is it an executable file?"
        ) from None
    loop = asyncio.get_running_loop()
    for sig in FORWARDED_SIGNALS:
        loop.add_signal_handler(sig, _forward, process, sig)
    try:
        status = await eventloop.wait(process)
    finally:
        for sig in FORWARDED_SIGNALS:
            loop.remove_signal_handler(sig)
    return 128 - status if status < 0 else status


def _forward(process: subprocess.Popen[bytes], sig: int) -> None:
    if process.returncode is None:
        process.send_signal(sig)
