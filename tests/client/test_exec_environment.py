"""The environment `jitctl exec` gives a wrapped command: what libpq makes of it."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from jitctl.client.execute import child_environment


def _postgres_tunnel(**extra: str) -> dict[str, object]:
    return {"target": "pg-prod", "protocol": "postgres", "port": 6543, **extra}


@pytest.mark.parametrize(
    ("user", "database"),
    [
        ("svc@corp.example", "orders"),
        ("app", "sales/eu"),
        ("dba:ro", "stock?x=1"),
        ("name with space", "db#1"),
        ("plain", "plain"),
    ],
)
def test_the_url_names_the_same_user_and_database_as_the_pg_variables(
    user: str, database: str
) -> None:
    env = child_environment({}, [_postgres_tunnel(user=user, database=database)], "c1")
    parsed = conninfo_to_dict(env["DATABASE_URL"])  # libpq's own parser
    assert parsed["user"] == env["PGUSER"] == user
    assert parsed["dbname"] == env["PGDATABASE"] == database
    assert parsed["host"] == "127.0.0.1" and parsed["port"] == "6543"
    assert parsed["sslmode"] == "disable"
    assert env["PG_PROD_URL"] == env["DATABASE_URL"]


def test_with_local_tls_the_url_carries_the_ca_file_whatever_its_path() -> None:
    root = "/home/a user/.jitctl/local-tls/ca.pem"
    env = child_environment({}, [_postgres_tunnel(user="u@x", sslrootcert=root)], "c1")
    parsed = conninfo_to_dict(env["DATABASE_URL"])
    assert parsed["sslmode"] == "verify-full" and parsed["sslrootcert"] == root
    assert parsed["user"] == "u@x" and parsed["dbname"] == "u@x"
