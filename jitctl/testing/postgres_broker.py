"""A broker in front of a throwaway PostgreSQL, and a client's way in through its tunnel.

    # CONFIG: broker TOML naming "{issuer}", "{port}", "{user}" (and any `fields`); its
    # Postgres targets read `password_env = "PG_TEST_PASSWORD"`.
    with postgres_broker(CONFIG, server, token_issuer, state_dir=tmp) as broker:
        broker.login_with_token(token_issuer.mint(sub="agent-7", groups=["agents"]))
        with broker.tunnel("pg") as tunnel:
            psycopg.connect(tunnel_dsn(tunnel.port, "postgres"))

Rules:
- The broker alone knows the upstream password: it is in the broker's environment as
  PASSWORD_ENV (`PG_TEST_PASSWORD`, which the config's credentials name), never in the config
  file, and never in a client's environment (`BrokerProcess.env` leaves it out).
- A client logs in as `agent` with no password and a password file that does not exist
  (libpq skips a missing file silently), so a session that works proves the gateway logged in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from jitctl.testing.broker import BrokerProcess

if TYPE_CHECKING:
    from jitctl.testing.issuer import TokenIssuer
    from jitctl.testing.postgres import PostgresServer

PASSWORD_ENV = "PG_TEST_PASSWORD"
# One Postgres target "pg" for group "agents" on database postgres: a test appends its rules.
TARGET = """
[[identity.issuers]]
issuer = "{issuer}"

[[targets]]
name = "pg"
protocol = "postgres"
address = "127.0.0.1:{port}"
allow_groups = ["agents"]
credential = {{ user = "{user}", password_env = "PG_TEST_PASSWORD", database = "postgres" }}
"""
NO_PASSFILE = "/nonexistent/jitctl-test/pgpass"


def postgres_broker(
    template: str,
    server: PostgresServer,
    issuer: TokenIssuer,
    *,
    state_dir: Path,
    **fields: str,
) -> BrokerProcess:
    """A broker (start it with `with`) on `template` filled in with `issuer`'s `{issuer}`,
    `server`'s `{port}` and `{user}`, and `fields`; `server`'s password in PASSWORD_ENV."""
    config = template.format(issuer=issuer.url, port=server.port, user=server.user, **fields)
    return BrokerProcess(config, state_dir=state_dir, env={PASSWORD_ENV: server.password})


@contextlib.contextmanager
def agent_tunnels(
    template: str,
    server: PostgresServer,
    issuer: TokenIssuer,
    *,
    state_dir: Path,
    targets: tuple[str, ...] = ("pg",),
) -> Iterator[dict[str, int]]:
    """`postgres_broker` started, `agent-7` (group `agents`) logged in, and a tunnel open to
    each of `targets`: their local ports by target name."""
    with postgres_broker(template, server, issuer, state_dir=state_dir) as broker:
        broker.login_with_token(issuer.mint(sub="agent-7", groups=["agents"]))
        with contextlib.ExitStack() as tunnels:
            ports = {
                name: tunnels.enter_context(broker.tunnel(name, "--reason", "e2e")).port
                for name in targets
            }
            yield ports


def tunnel_dsn(port: int, dbname: str, **extra: str) -> str:
    """The libpq DSN of a client reaching a tunnel's local end on `port` (`extra`: more
    keywords, e.g. `sslmode="require"`)."""
    parts = {
        "host": "127.0.0.1",
        "port": str(port),
        "user": "agent",
        "dbname": dbname,
        "passfile": NO_PASSFILE,
        **extra,
    }
    return " ".join(f"{key}={value}" for key, value in parts.items())
