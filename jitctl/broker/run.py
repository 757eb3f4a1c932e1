"""`jitctl broker serve`: assemble a Runtime from config, bind, serve until SIGTERM/SIGINT.

Start-up order matters: bind first (the dev issuer's URL needs the real port when listening on
port 0), then the audit store (no store, no sessions), then announce readiness by writing
`<state_dir>/broker.json` (url, ca_file, pid) — tests and the CLI read it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from jitctl.config import BrokerConfig, Issuer, load_config
from jitctl.errors import ConfigError, UsageError
from jitctl.paths import dev_broker_dir, ensure_private_dir

log = logging.getLogger("jitctl.broker")

POINTER_FILE = "broker.json"

# CPython's default (700, 10, 10) runs a full collection after every ten young-generation ones
# once a quarter of the heap is new survivors. The Postgres plugin's caches (classifications,
# decisions and templates, by exact text) keep every new statement alive a while, so under
# `pgbench -S` the broker ran one or two full collections a second, each ~90 ms over ~100k
# objects: ~30 µs per transaction, a sixth of the event loop's CPU. A tenth of that rate
# brings collection to ~11 µs per transaction (both measured with gc.callbacks in a live
# broker). Cycles that outlive the young generations are rare here and wait longer, bounded by
# the same quarter-of-the-heap rule.
GC_THRESHOLDS = (700, 10, 100)


def tune_gc() -> None:
    """For a long-lived broker, once start-up is done: what start-up built (modules, config,
    plugins, the app) moves out of the collector's sight (`gc.freeze`), so the full
    collections that remain walk only what serving made; then fewer full collections."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _resolve(
    config_path: str | None, dev: bool, state_dir: str | None, listen: str | None
) -> tuple[BrokerConfig, Path]:
    if config_path:
        config = load_config(config_path)
    elif dev:
        config = BrokerConfig()
    else:
        raise UsageError(
            "no configuration given",
            "run `jitctl broker serve --config broker.toml`, or `--dev` for a local trial",
        )
    if listen:
        config = config.model_copy(
            update={"broker": config.broker.model_copy(update={"listen": listen})}
        )
    if state_dir:
        directory = Path(state_dir)
    elif dev and not config_path:
        directory = dev_broker_dir()
    else:
        directory = Path(config.broker.state_dir)
    try:
        ensure_private_dir(directory)
    except OSError as exc:
        raise ConfigError(
            f"cannot use state dir {directory}: {exc}", "pass --state-dir or fix broker.state_dir"
        ) from None
    return config, directory.resolve()


def _public_url(config: BrokerConfig, host: str, port: int) -> str:
    if config.broker.public_url:
        return config.broker.public_url.rstrip("/")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def _banner(runtime: Any, ca_file: Path | None) -> None:
    lines = [
        f"jitctl broker listening on {runtime.public_url}",
        f"  state dir: {runtime.state_dir}",
    ]
    if ca_file:
        lines.append(f"  TLS CA:    {ca_file}")
    if runtime.dev:
        users = ", ".join(
            f"{u.name} ({', '.join(u.groups) or 'no groups'})" for u in runtime.dev_issuer.users()
        )
        lines += [
            "",
            "  *** DEVELOPMENT MODE: a built-in OIDC issuer is running. Not for production. ***",
            f"  dev issuer: {runtime.dev_issuer.issuer_url}",
            f"  dev users:  {users}",
            "",
            "  log in from another terminal:",
            f"    jitctl login --broker {runtime.public_url}"
            + (f" --ca-file {ca_file}" if ca_file else ""),
            # Not a bare `jitctl login --device`: that finds only a broker in the default
            # state dir, and this one may run with --state-dir or --listen of its own.
            "    (add --device for the device grant)",
        ]
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()


async def _main(config: BrokerConfig, state_dir: Path, dev: bool) -> None:
    from jitctl.broker.app import create_app
    from jitctl.broker.identity import Verifier
    from jitctl.broker.runtime import Runtime
    from jitctl.broker.server import BrokerServer
    from jitctl.broker.tlsfiles import ensure_tls_files, server_context

    host, _, port_text = config.broker.listen.rpartition(":")
    host = host.strip("[]")
    ca_file: Path | None = None
    if config.broker.tls_cert and config.broker.tls_key:
        cert, key = Path(config.broker.tls_cert), Path(config.broker.tls_key)
    else:
        ca_file, cert, key = ensure_tls_files(state_dir, [host])
    ssl_context = server_context(cert, key)

    from jitctl.broker.gateway_glue import attach_gateway, broker_id, open_audit

    runtime = Runtime(
        config=config, state_dir=state_dir, verifier=Verifier(config.identity.issuers), dev=dev
    )
    runtime.broker_id = broker_id(state_dir)
    runtime.audit = await open_audit(config, state_dir)
    from jitctl.broker.approvals_api import open_approvals

    runtime.approvals = await open_approvals(runtime)  # requests and holds (docs/approvals.md)
    server = BrokerServer(ssl_context, attach_gateway(runtime))
    # Bind before building the app: the dev issuer's URL needs the real port.
    try:
        port = server.bind(host, int(port_text))
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {config.broker.listen}: {exc.strerror or exc}",
            "pick another broker.listen (or --listen 127.0.0.1:0 for any free port)",
        ) from None
    runtime.public_url = _public_url(config, host, port)
    if dev:
        from jitctl.broker.devissuer import DevIssuer

        runtime.dev_issuer = DevIssuer(runtime.public_url + "/dev/oidc", config.dev, state_dir)
        runtime.verifier.add_static_issuer(
            Issuer(issuer=runtime.dev_issuer.issuer_url, audience=runtime.dev_issuer.client_id),
            runtime.dev_issuer.jwks(),
        )
    from jitctl.broker.gcp_api import install as install_gcp

    runtime.app_extensions.append(install_gcp)  # GCP federation (docs/gcp.md)
    from jitctl.broker.approvals_api import install as install_approvals

    runtime.app_extensions.append(install_approvals)  # /v1/requests (docs/approvals.md)
    server.set_app(create_app(runtime))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    pointer = state_dir / POINTER_FILE
    pointer.write_text(
        json.dumps(
            {
                "url": runtime.public_url,
                "ca_file": str(ca_file) if ca_file else None,
                "pid": os.getpid(),
                "dev": dev,
            }
        )
    )
    from jitctl.eventloop import name as loop_name

    log.info(
        "broker started",
        extra={
            "event": "broker.start",
            "url": runtime.public_url,
            "dev": dev,
            "event_loop": loop_name(loop),
        },
    )
    _banner(runtime, ca_file)
    tune_gc()
    try:
        await server.serve(stop)
    finally:
        log.info("broker stopping", extra={"event": "broker.stop"})
        await server.shutdown(config.broker.shutdown_grace)
        if runtime.approvals is not None:
            await runtime.approvals.close()
        if runtime.audit is not None:
            await runtime.audit.close()
        await runtime.verifier.aclose()
        try:
            if json.loads(pointer.read_text()).get("pid") == os.getpid():
                pointer.unlink()
        except (OSError, ValueError):
            pass


def serve(config_path: str | None, dev: bool, state_dir: str | None, listen: str | None) -> None:
    from jitctl.broker.logs import setup_logging
    from jitctl.broker.validate import identity_warnings, validate_targets

    config, directory = _resolve(config_path, dev, state_dir, listen)
    setup_logging(config.broker.log_level)
    warnings = [] if dev else identity_warnings(config)
    for warning in warnings + validate_targets(config, config_path or "(dev defaults)"):
        log.warning(warning, extra={"event": "config.warning"})
    from jitctl import eventloop

    eventloop.run(_main(config, directory, dev), config.broker.event_loop)
