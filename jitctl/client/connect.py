"""`jitctl connect`: a local port for TARGET, and the usual client started against it."""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import signal
import sys

from jitctl import eventloop
from jitctl.client.tunnel import LocalListener, TunnelSpec, check_target, local_tls_for
from jitctl.errors import UsageError


def _say(message: str) -> None:
    sys.stderr.write(f"jitctl: {message}\n")
    sys.stderr.flush()


def tunnel_spec(target: str, reason: str = "", agent: str = "", command: str = "") -> TunnelSpec:
    from jitctl.client.settings import resolve
    from jitctl.client.tokens import current_token

    settings = resolve()
    return TunnelSpec(
        broker_url=settings.url,
        ca_file=settings.ca_file,
        target=target,
        # Asked again for every connection: refreshed logins and rotated token files apply.
        token=lambda: current_token(settings.url, settings.ca_file),
        reason=reason,
        agent=agent,
        command=command or shlex.join(["jitctl", *sys.argv[1:]]),
    )


async def run_connect(
    target: str,
    *,
    port: int = 0,
    reason: str = "",
    no_client: bool = False,
    json_out: bool = False,
    client_args: list[str] | None = None,
    any_local_user: bool = False,
    local_tls: bool = False,
) -> int:
    spec = tunnel_spec(target, reason)
    reply = await check_target(spec)  # fail early: auth, unknown target, not allowed
    protocol = str(reply.get("protocol", "tcp"))
    context, local_ca = local_tls_for({target: protocol}) if local_tls else (None, None)
    listener = LocalListener(
        spec,
        port,
        on_event=lambda message, trouble: _say(message),
        any_user=any_local_user,
        local_tls=context,
    )
    bound = await listener.start()
    address = {
        "target": target,
        "protocol": protocol,
        "host": "127.0.0.1",
        "port": bound,
        "correlation_id": spec.correlation_id,
    }
    ssh_config = None
    if protocol == "ssh" and reply.get("ssh_host_key"):
        from jitctl.client.ssh import host_alias, pin_host_key, write_ssh_config

        known_hosts = pin_host_key(target, str(reply["ssh_host_key"]))
        ssh_config = write_ssh_config(target, bound, known_hosts)
        address.update(ssh_config=str(ssh_config), ssh_host=host_alias(target))
    if local_ca is not None:  # for clients that check the local leg's certificate
        address["sslrootcert"] = str(local_ca)
    if protocol == "http":  # point any HTTP client (or SDK endpoint) here, no credential
        address["url"] = f"http://127.0.0.1:{bound}"
    starts_client = not no_client and (protocol == "postgres" or ssh_config is not None)
    if json_out:
        sys.stdout.write(json.dumps(address) + "\n")
    elif not starts_client:
        # With a client started, stdout is the client's: `jitctl connect web -- cat f > f.copy`
        # must copy the file, not a port line in front of it.
        sys.stdout.write(f"{address.get('url') or f'127.0.0.1:{bound}'}\n")
    sys.stdout.flush()
    try:
        if starts_client:
            if ssh_config is None:  # postgres
                return await _run_psql(bound, client_args or [])
            return await _run_ssh(str(ssh_config), str(address["ssh_host"]), client_args or [])
        if ssh_config is not None:
            _say(f"ssh -F {ssh_config} {address['ssh_host']}  (scp and sftp: the same -F and host)")
        _say(f"tunnel to {target} ({protocol}) listening on 127.0.0.1:{bound}; Ctrl-C closes it")
        await _wait_for_signal()
        return 0
    finally:
        await listener.close()
        if ssh_config is not None:
            ssh_config.unlink(missing_ok=True)


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _run_psql(port: int, args: list[str]) -> int:
    psql = shutil.which("psql")
    if psql is None:
        raise UsageError(
            "psql is not installed", f"use --no-client and point your client at 127.0.0.1:{port}"
        )
    # psql handles Ctrl-C itself (it sends a cancel request); we must not die of it first.
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    process = eventloop.spawn([psql, "-h", "127.0.0.1", "-p", str(port), *args])
    return await eventloop.wait(process)


async def _run_ssh(config: str, host: str, args: list[str]) -> int:
    ssh = shutil.which("ssh")
    if ssh is None:
        raise UsageError(
            "ssh is not installed (apt-get install openssh-client)",
            f"use --no-client and run: ssh -F {config} {host}",
        )
    # ssh handles Ctrl-C itself (passed to the remote terminal); we must not die of it first.
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    process = eventloop.spawn([ssh, "-F", config, host, *args])
    return await eventloop.wait(process)
