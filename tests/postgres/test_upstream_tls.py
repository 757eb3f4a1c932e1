"""TLS from the broker to PostgreSQL (`postgres.tls`), against real servers.

One server takes TCP logins over TLS only (`hostssl`, `hostnossl ... reject`); a second has no
TLS at all. The server's own `pg_stat_ssl` is the ground truth for whether a session through
the gateway is encrypted; the trail's `session.start` must say the same.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jitctl.broker.tlsfiles import ensure_tls_files
from jitctl.testing.broker import BrokerProcess, check_config
from jitctl.testing.certs import client_certificate
from jitctl.testing.issuer import TokenIssuer
from jitctl.testing.postgres import PostgresServer, postgres_available
from jitctl.testing.postgres_broker import NO_PASSFILE, PASSWORD_ENV, tunnel_dsn

pytestmark = [
    pytest.mark.skipif(postgres_available() is not None, reason=f"{postgres_available()}"),
    pytest.mark.skipif(shutil.which("psql") is None, reason="psql is needed"),
]
psycopg = pytest.importorskip("psycopg")

PASSWORD = secrets.token_urlsafe(18)
CLIENT_ENV = {"PGPASSFILE": NO_PASSFILE, "PGPASSWORD": "", "PGCONNECT_TIMEOUT": "10"}

TARGET = """
[[targets]]
name = "{name}"
protocol = "postgres"
address = "127.0.0.1:{port}"
allow_groups = ["agents"]
credential = {{ user = "{user}", password_env = "PG_TEST_PASSWORD", database = "postgres" }}
{options}
"""


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[PostgresServer, PostgresServer]]:
    with (
        PostgresServer(tls=True, password=PASSWORD) as secure,
        PostgresServer(password=PASSWORD) as plain,
    ):
        yield secure, plain


@pytest.fixture(scope="module")
def mutual(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PostgresServer, Path, Path]]:
    """A TLS-only server that also wants a client certificate from `client CA`:
    (server, client cert, client key)."""
    with PostgresServer(tls=True, password=PASSWORD) as server:
        assert server.dir is not None
        ca, cert, key = client_certificate(tmp_path_factory.mktemp("client-cert"))
        trusted = server.dir / "tls" / "client-ca.pem"
        shutil.copy(ca, trusted)
        trusted.chmod(0o644)
        hba = server.dir / "data" / "pg_hba.conf"
        hba.write_text(
            hba.read_text().replace("scram-sha-256", "scram-sha-256 clientcert=verify-ca")
        )
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f"ALTER SYSTEM SET ssl_ca_file = '{trusted}'")
            conn.execute("SELECT pg_reload_conf()")
        yield server, cert, key


@pytest.fixture(scope="module")
def broker(
    servers: tuple[PostgresServer, PostgresServer],
    mutual: tuple[PostgresServer, Path, Path],
    token_issuer: TokenIssuer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BrokerProcess]:
    secure, plain = servers
    other_ca, _, _ = ensure_tls_files(tmp_path_factory.mktemp("other-ca"), ["127.0.0.1"])
    targets = {
        "full": (secure, f'postgres = {{ tls = "verify-full", tls_ca_file = "{secure.ca_file}" }}'),
        "ca": (secure, f'postgres = {{ tls = "verify-ca", tls_ca_file = "{secure.ca_file}" }}'),
        "prefer": (secure, ""),
        "clear": (secure, 'postgres = { tls = "disable" }'),
        "wrong-ca": (secure, f'postgres = {{ tls = "verify-full", tls_ca_file = "{other_ca}" }}'),
        "plain-prefer": (plain, ""),
        "plain-require": (plain, 'postgres = { tls = "require" }'),
        "mutual": (
            mutual[0],
            f'postgres = {{ tls = "verify-full", tls_ca_file = "{mutual[0].ca_file}", '
            f'tls_cert_file = "{mutual[1]}", tls_key_file = "{mutual[2]}" }}',
        ),
        "mutual-anonymous": (
            mutual[0],
            f'postgres = {{ tls = "verify-full", tls_ca_file = "{mutual[0].ca_file}" }}',
        ),
    }
    config = f'[[identity.issuers]]\nissuer = "{token_issuer.url}"\n' + "".join(
        TARGET.format(name=name, port=server.port, user=server.user, options=options)
        for name, (server, options) in targets.items()
    )
    # Not Postgres to jitctl (bytes only), for runs that mix it with Postgres targets.
    config += (
        f'[[targets]]\nname = "raw"\nprotocol = "tcp"\naddress = "127.0.0.1:{plain.port}"\n'
        'allow_groups = ["agents"]\n'
    )
    with BrokerProcess(
        config,
        state_dir=tmp_path_factory.mktemp("tlsbroker"),
        env={PASSWORD_ENV: secure.password},  # all three servers share it
    ) as process:
        process.login_with_token(token_issuer.mint(sub="agent-9", groups=["agents"], lifetime=3600))
        yield process


def dsn(port: int, **extra: str) -> str:
    return tunnel_dsn(port, "postgres", connect_timeout="10", **extra)


def query(broker: BrokerProcess, target: str, sql: str) -> list[tuple[object, ...]]:
    """`sql` through `jitctl connect TARGET` with psycopg (which never has the password)."""
    with (
        broker.tunnel(target) as tunnel,
        psycopg.connect(dsn(tunnel.port), autocommit=True) as conn,
    ):
        return list(conn.execute(sql).fetchall())


SSL_OF_MY_BACKEND = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
SSL_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"


def starts(broker: BrokerProcess, target: str) -> list[dict[str, object]]:
    return [dict(r.payload) for r in broker.records("session.start") if r.target == target]


@pytest.mark.parametrize("target", ["full", "ca", "prefer"])
def test_sessions_reach_a_tls_only_server_encrypted(broker: BrokerProcess, target: str) -> None:
    assert query(broker, target, SSL_OF_MY_BACKEND) == [(True, "TLSv1.3")]
    mode = {"full": "verify-full", "ca": "verify-ca", "prefer": "prefer"}[target]
    assert starts(broker, target)[-1]["upstream_tls"] == {"mode": mode, "version": "TLSv1.3"}


def test_prefer_falls_back_to_plain_tcp_and_the_trail_says_so(broker: BrokerProcess) -> None:
    assert query(broker, "plain-prefer", SSL_OF_MY_BACKEND) == [(False, None)]
    assert starts(broker, "plain-prefer")[-1]["upstream_tls"] == {
        "mode": "prefer",
        "version": None,
    }


def test_disable_sends_no_tls_request_and_the_server_refuses_it(broker: BrokerProcess) -> None:
    with pytest.raises(psycopg.OperationalError, match=r"pg_hba\.conf rejects connection"):
        query(broker, "clear", "SELECT 1")
    assert "upstream_tls" not in starts(broker, "clear")[-1]


def denials(broker: BrokerProcess, target: str) -> list[str]:
    return [str(r.payload["error"]) for r in broker.records("session.denied") if r.target == target]


def psql_through(broker: BrokerProcess, target: str) -> subprocess.CompletedProcess[str]:
    """What a person sees: `jitctl connect TARGET -- -c 'SELECT 1'` (psql as the client)."""
    return broker.jitctl("connect", target, "--", "-X", "-c", "SELECT 1", env=CLIENT_ENV)


def test_a_certificate_from_another_ca_refuses_the_session(broker: BrokerProcess) -> None:
    result = psql_through(broker, "wrong-ca")
    assert result.returncode != 0
    assert "certificate did not verify" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    (error,) = denials(broker, "wrong-ca")
    assert "over TLS" in error and "certificate did not verify" in error
    assert not starts(broker, "wrong-ca")


def test_require_refuses_a_server_without_tls(broker: BrokerProcess) -> None:
    result = psql_through(broker, "plain-require")
    assert result.returncode != 0
    assert "does not offer TLS" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    (error,) = denials(broker, "plain-require")
    assert "does not offer TLS" in error and "'require'" in error


def test_check_config_rejects_tls_files_that_do_not_load(tmp_path: Path) -> None:
    broken = tmp_path / "nothing.pem"
    config = tmp_path / "broker.toml"
    config.write_text(
        '[[identity.issuers]]\nissuer = "https://issuer.example"\n'
        + TARGET.format(
            name="pg",
            port=5432,
            user="u",
            options=f'postgres = {{ tls = "verify-full", tls_ca_file = "{broken}" }}',
        )
    )
    result = check_config(config)
    assert result.returncode != 0
    assert "postgres.tls_* files do not load" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_client_certificate_is_shown_to_a_server_that_asks_for_one(
    broker: BrokerProcess,
) -> None:
    assert query(broker, "mutual", SSL_OF_MY_BACKEND) == [(True, "TLSv1.3")]
    assert query(
        broker, "mutual", "SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    ) == [("/CN=jitctl",)]
    # Without it the same server turns the session away (its own FATAL reaches the client).
    with pytest.raises(psycopg.OperationalError, match="certificate"):
        query(broker, "mutual-anonymous", "SELECT 1")


def test_a_cancel_reaches_a_tls_only_server(broker: BrokerProcess) -> None:
    """The cancel's own connection to the server is a session of its own: TLS too."""
    before = len(starts(broker, "full"))
    with (
        broker.tunnel("full") as tunnel,
        psycopg.connect(dsn(tunnel.port), autocommit=True) as conn,
    ):
        timer = threading.Timer(1.0, conn.cancel)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(30)")
        timer.join()
        assert time.monotonic() - started < 20
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the session goes on
    cancels = broker.wait_for_records(lambda found: bool(found), "pg.cancel")
    assert cancels[-1].target == "full"
    sessions = starts(broker, "full")[before:]
    assert len(sessions) == 2  # the query's and the cancel's
    assert all(s["upstream_tls"] == {"mode": "verify-full", "version": "TLSv1.3"} for s in sessions)


# -- TLS on the local leg (jitctl connect --local-tls) -----------------------------------------


def test_a_client_that_insists_on_tls_needs_local_tls(broker: BrokerProcess) -> None:
    with (
        broker.tunnel("prefer") as tunnel,
        pytest.raises(psycopg.OperationalError, match="server does not support SSL"),
    ):
        psycopg.connect(dsn(tunnel.port, sslmode="require"))


@pytest.mark.parametrize("mode", ["require", "verify-full"])
def test_local_tls_serves_require_and_verify_full_clients(broker: BrokerProcess, mode: str) -> None:
    with broker.tunnel("prefer", "--local-tls") as tunnel:
        root = {"sslrootcert": tunnel.address["sslrootcert"]} if mode == "verify-full" else {}
        with psycopg.connect(dsn(tunnel.port, sslmode=mode, **root), autocommit=True) as conn:
            assert conn.pgconn.ssl_in_use  # the local leg
            assert conn.execute(SSL_OF_MY_BACKEND).fetchall() == [(True, "TLSv1.3")]  # upstream


def test_local_tls_still_serves_plain_clients_and_refuses_stuffed_bytes(
    broker: BrokerProcess,
) -> None:
    import socket

    with broker.tunnel("prefer", "--local-tls") as tunnel:
        with psycopg.connect(dsn(tunnel.port, sslmode="disable")) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        # An SSLRequest with bytes behind it, sent before any answer: closed, no "S".
        with socket.create_connection(("127.0.0.1", tunnel.port), 10) as sock:
            sock.sendall(SSL_REQUEST + b"\x00\x00\x00\x08\x00\x03\x00\x00")
            assert sock.recv(10) == b""
    assert "sent data before its TLS handshake" in tunnel.stderr


# -- TLS on the local leg of a wrapped command (jitctl exec --local-tls) -------------------------

# Connects with nothing but the URLs `jitctl exec` exported, DATABASE_URL (the first Postgres
# target) and FULL_URL (the second), PGSSL* unset so the URLs alone must carry the TLS settings;
# prints, per URL, the URL, the local leg's TLS and the upstream's.
URL_CLIENT = f"""
import json, os, psycopg
for name in ("PGSSLMODE", "PGSSLROOTCERT"):
    del os.environ[name]
seen = {{}}
for name in ("DATABASE_URL", "FULL_URL"):
    with psycopg.connect(os.environ[name], autocommit=True) as conn:
        local = conn.pgconn.ssl_in_use
        seen[name] = [os.environ[name], local, *conn.execute({SSL_OF_MY_BACKEND!r}).fetchone()]
print(json.dumps(seen))
"""


def wrapped_env() -> dict[str, str]:
    """No PG* setting of the test's own environment reaches the wrapped command."""
    return {**{k: "" for k in os.environ if k.startswith("PG")}, **CLIENT_ENV}


def test_exec_local_tls_gives_a_wrapped_command_urls_that_insist_on_verified_tls(
    broker: BrokerProcess,
) -> None:
    result = broker.jitctl(
        "exec", "-t", "prefer", "-t", "full", "--local-tls", "--json", "--",
        sys.executable, "-c", URL_CLIENT,
        env=wrapped_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    announced, printed = result.stdout.splitlines()
    tunnels = {t["target"]: t for t in json.loads(announced)["tunnels"]}
    ca = broker.home / "local-tls" / "ca.pem"
    assert tunnels["prefer"]["sslrootcert"] == tunnels["full"]["sslrootcert"] == str(ca)
    seen = json.loads(printed)
    for name, target in (("DATABASE_URL", "prefer"), ("FULL_URL", "full")):
        url, local, upstream, version = seen[name]
        port = tunnels[target]["port"]
        assert url.endswith(f":{port}/postgres?sslmode=verify-full&sslrootcert={ca}"), url
        assert (local, upstream, version) == (True, True, "TLSv1.3")


def test_exec_local_tls_points_psql_at_tls_through_pg_variables_alone(
    broker: BrokerProcess,
) -> None:
    psql = 'psql -X -c "\\conninfo" && printenv PGSSLMODE PGSSLROOTCERT'
    result = broker.jitctl(
        "exec", "-t", "prefer", "--local-tls", "--", "sh", "-c", psql, env=wrapped_env()
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    conninfo, mode, root = result.stdout.splitlines()[-3:]
    assert conninfo.startswith("SSL connection (protocol: TLSv1.3"), result.stdout
    assert (mode, root) == ("verify-full", str(broker.home / "local-tls" / "ca.pem"))


def test_exec_without_local_tls_exports_sslmode_disable_as_before(broker: BrokerProcess) -> None:
    show = "import os; print(os.environ['DATABASE_URL'], os.environ['PGSSLMODE'])"
    result = broker.jitctl(
        "exec", "-t", "prefer", "--", sys.executable, "-c", show, env=wrapped_env()
    )
    assert result.returncode == 0, result.stderr
    url, mode = result.stdout.split()
    assert url.endswith("/postgres?sslmode=disable") and mode == "disable"


def test_exec_local_tls_leaves_the_other_tunnels_of_a_mixed_run_alone(
    broker: BrokerProcess,
) -> None:
    result = broker.jitctl(
        "exec", "-t", "raw", "-t", "prefer", "--local-tls", "--json", "--", "true",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    tunnels = {t["target"]: t for t in json.loads(result.stdout)["tunnels"]}
    assert "sslrootcert" in tunnels["prefer"] and "sslrootcert" not in tunnels["raw"]


@pytest.mark.parametrize("mode", ["require", "verify-full"])
def test_local_tls_serves_direct_tls_clients(broker: BrokerProcess, mode: str) -> None:
    """PostgreSQL 17's `sslnegotiation=direct`: the client opens with its ClientHello, no
    SSLRequest (the libpq psycopg ships is 17 or later); jitctl connect takes the handshake on
    the bytes it already read and answers ALPN `postgresql`, as libpq demands."""
    assert psycopg.pq.version() >= 170000, "psycopg's libpq predates direct TLS"
    with broker.tunnel("prefer", "--local-tls") as tunnel:
        root = {"sslrootcert": tunnel.address["sslrootcert"]} if mode == "verify-full" else {}
        conninfo = dsn(tunnel.port, sslmode=mode, sslnegotiation="direct", **root)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            assert conn.pgconn.ssl_in_use  # the local leg
            assert conn.execute(SSL_OF_MY_BACKEND).fetchall() == [(True, "TLSv1.3")]  # upstream
            big = conn.execute("SELECT repeat('x', 200000)").fetchone()
            assert big is not None and len(big[0]) == 200_000  # many records each way


def test_direct_tls_with_an_untrusted_ca_fails_with_a_reason(
    broker: BrokerProcess, servers: tuple[PostgresServer, PostgresServer]
) -> None:
    """A client that checks the local certificate against another CA (the upstream server's)
    refuses it; jitctl connect says why on stderr instead of leaving a bare closed socket."""
    other_ca = str(servers[0].ca_file)
    with broker.tunnel("prefer", "--local-tls") as tunnel:
        conninfo = dsn(
            tunnel.port, sslmode="verify-full", sslnegotiation="direct", sslrootcert=other_ca
        )
        with pytest.raises(psycopg.OperationalError, match="SSL error"):
            psycopg.connect(conninfo)
    assert "TLS with the local client failed" in tunnel.stderr


def test_direct_tls_without_local_tls_is_refused_with_what_to_do(broker: BrokerProcess) -> None:
    """Without --local-tls the ClientHello travels to the broker as the startup's first bytes:
    refused there, and jitctl connect's stderr says to add --local-tls."""
    with broker.tunnel("prefer") as tunnel:
        conninfo = dsn(tunnel.port, sslmode="require", sslnegotiation="direct")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(conninfo)
    assert "sslnegotiation=direct" in tunnel.stderr and "--local-tls" in tunnel.stderr
