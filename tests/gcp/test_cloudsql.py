"""Cloud SQL IAM database authentication: a fresh sqlservice.login token as the password.

Cloud SQL itself is emulated by a real PostgreSQL whose role password is the token, valid until
the token expires (notes §9; `cloudsql_login_hook`). Three levels:
- the whole path: psycopg -> `jitctl connect` -> the broker -> the Postgres plugin, which logs in
  upstream with the minted token as the service account's Cloud SQL user;
- the tunnel hook through a `tcp` target (the mint and its records, any protocol);
- `gcp_database_credential` called directly, as the Postgres plugin's caller does.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from jitctl.broker.gcp import broker_of, cloudsql_username, gcp_database_credential
from jitctl.broker.identity import Identity, Verifier
from jitctl.config import parse_config
from jitctl.testing.broker import BrokerProcess
from jitctl.testing.gcp_emulator import GcpEmulator, cloudsql_login_hook
from jitctl.testing.issuer import TokenIssuer
from jitctl.testing.postgres import PostgresServer, postgres_available
from jitctl.testing.servers import roundtrip
from tests.gcp.support import AUDIENCE, SQL_SA, SUBJECT, audit_records

SQL_LOGIN = "https://www.googleapis.com/auth/sqlservice.login"


def test_username_follows_cloud_sql_rules() -> None:
    assert cloudsql_username("sql-login@proj.iam.gserviceaccount.com") == "sql-login@proj.iam"
    assert cloudsql_username("alice@example.com") == "alice@example.com"  # an IAM user


def test_a_session_to_an_iam_target_mints_a_login_token_for_the_caller(
    broker: BrokerProcess, emulator: GcpEmulator
) -> None:
    with broker.tunnel("pg-iam") as tunnel:
        assert roundtrip(tunnel.port, b"hello") == b"hello"
    session_id = tunnel.stderr.split("session ", 1)[1].split()[0]
    record = next(r for r in audit_records(broker, "gcp.credential") if r.session_id == session_id)
    assert record.target == "pg-iam" and record.actor.subject == SUBJECT
    assert record.payload["purpose"] == "cloudsql-login"
    assert record.payload["principal"] == SQL_SA and record.payload["scopes"] == [SQL_LOGIN]
    jti = record.payload["subject_token_jti"]
    issued = next(
        t for t in emulator.issued if t.kind == "service_account" and t.claims["jti"] == jti
    )
    assert issued.scopes == [SQL_LOGIN]
    assert issued.subject == SUBJECT and issued.service_account == SQL_SA
    assert issued.lifetime == 300  # the sql gcp target's lifetime


def test_a_refused_login_token_refuses_the_session_with_the_upstream_reason(
    broker: BrokerProcess,
) -> None:
    with broker.tunnel("pg-iam-denied") as tunnel:
        assert roundtrip(tunnel.port, b"hello") == b""
    err = tunnel.stderr
    assert "cannot get a GCP IAM login for pg-iam-denied: IAM Credentials refused" in err
    assert "PERMISSION_DENIED" in err
    denied = audit_records(broker, "session.denied")[-1]
    assert denied.target == "pg-iam-denied" and denied.payload["code"] == "denied"
    error = audit_records(broker, "gcp.credential.error")[-1]
    assert error.target == "pg-iam-denied" and error.payload["purpose"] == "cloudsql-login"
    assert error.payload["stage"] == "iam"


@pytest.mark.skipif(postgres_available() is not None, reason=str(postgres_available()))
def test_the_database_credential_logs_in_to_postgres_as_the_service_account(
    tmp_path: Path,
) -> None:
    """`gcp_database_credential` directly (the Postgres plugin will read its `password`)."""
    import psycopg

    from jitctl.broker.gateway_glue import open_audit

    async def scenario(pg: PostgresServer, gcp: GcpEmulator) -> dict[str, str]:
        config = parse_config(
            {
                "gcp": {
                    "sts_endpoint": gcp.sts_endpoint,
                    "iam_endpoint": gcp.iam_endpoint,
                    "targets": [{"name": "sql", "audience": AUDIENCE, "service_account": SQL_SA}],
                },
                "targets": [
                    {
                        "name": "orders-db",
                        "protocol": "postgres",
                        "address": f"{pg.host}:{pg.port}",
                        "allow_groups": ["eng"],
                        "credential": {"gcp": "sql", "database": "postgres"},
                    }
                ],
            },
            "test",
        )
        from jitctl.broker.runtime import Runtime

        runtime = Runtime(config=config, state_dir=tmp_path, verifier=Verifier([]))
        runtime.public_url = "https://broker.internal:8443"
        runtime.audit = await open_audit(config, tmp_path)
        try:
            gcp.add_provider(
                AUDIENCE, issuer=broker_of(runtime).issuer, jwks=broker_of(runtime).signer.jwks()
            )
            gcp.add_service_account(SQL_SA, members=[gcp.principal(AUDIENCE, "alice")])
            identity = Identity(subject="alice", issuer="https://idp.example.com", groups=("eng",))
            target = config.target("orders-db")
            return await gcp_database_credential(runtime, target, identity)
        finally:
            await runtime.audit.close()

    with PostgresServer() as pg, GcpEmulator() as gcp:
        gcp.on_sql_login = cloudsql_login_hook(pg)
        credential = asyncio.run(scenario(pg, gcp))
        assert credential["user"] == "sql-login@analytics-prod.iam"
        assert credential["database"] == "postgres"
        dsn = {"host": pg.host, "port": pg.port, "dbname": credential["database"]}
        with psycopg.connect(
            user=credential["user"], password=credential["password"], **dsn
        ) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (credential["user"],)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(user=credential["user"], password="not-the-token", **dsn).close()
        issued = gcp.find(credential["password"])
        assert issued is not None and issued.subject == "alice" and issued.scopes == [SQL_LOGIN]

    from jitctl.audit.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'audit.db'}", create=False)
    (record,) = list(store.iter_records(kinds=["gcp.credential"]))
    assert record.actor.subject == "alice" and record.target == "orders-db"
    assert record.payload["purpose"] == "cloudsql-login"
    assert credential["password"] not in json.dumps(record.payload)


E2E_CONFIG = """
[[identity.issuers]]
issuer = "{issuer}"

[gcp]
sts_endpoint = "{sts}"
iam_endpoint = "{iam}"

[[gcp.targets]]
name = "orders-sql"
audience = "{audience}"
service_account = "{sa}"
lifetime = "5m"

[[targets]]
name = "orders-db"
protocol = "postgres"
address = "{host}:{port}"
allow_groups = ["eng"]
credential = {{ gcp = "orders-sql", database = "postgres" }}
"""
ORDERS_SA = "orders-app@orders-prod.iam.gserviceaccount.com"


@pytest.mark.skipif(postgres_available() is not None, reason=str(postgres_available()))
def test_psycopg_through_the_postgres_gateway_logs_in_with_the_iam_token(
    token_issuer: TokenIssuer, tmp_path: Path
) -> None:
    """The client knows no password; upstream, the service account logs in with the token."""
    import httpx
    import psycopg

    from jitctl.plugin import UnknownProtocol, load_plugin

    try:
        load_plugin("postgres")
    except UnknownProtocol:
        pytest.skip("the postgres plugin is not installed")
    with PostgresServer() as pg, GcpEmulator() as gcp:
        gcp.on_sql_login = cloudsql_login_hook(pg)
        config = E2E_CONFIG.format(
            issuer=token_issuer.url,
            sts=gcp.sts_endpoint,
            iam=gcp.iam_endpoint,
            audience=AUDIENCE,
            sa=ORDERS_SA,
            host=pg.host,
            port=pg.port,
        )
        with BrokerProcess(config, state_dir=tmp_path / "broker") as broker:
            jwks = httpx.get(broker.url + "/gcp/jwks", verify=broker.verify(), timeout=10).json()
            gcp.add_provider(AUDIENCE, issuer=broker.url + "/gcp", jwks=jwks)
            gcp.add_service_account(ORDERS_SA, members=[gcp.principal(AUDIENCE, "alice")])
            broker.login_with_token(token_issuer.mint(sub="alice", groups=["eng"], lifetime=600))
            with (
                broker.tunnel("orders-db") as tunnel,
                psycopg.connect(
                    host="127.0.0.1",
                    port=tunnel.port,
                    user="alice",
                    password="unused",
                    dbname="postgres",
                    sslmode="disable",
                ) as conn,
            ):
                row = conn.execute("SELECT current_user").fetchone()
            assert row == ("orders-app@orders-prod.iam",)
            (record,) = audit_records(broker, "gcp.credential")
        assert record.actor.subject == "alice" and record.target == "orders-db"
        assert record.payload["purpose"] == "cloudsql-login" and record.session_id
        (issued,) = [t for t in gcp.issued if t.kind == "service_account"]
        assert issued.subject == "alice" and issued.scopes == [SQL_LOGIN]
