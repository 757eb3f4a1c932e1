"""The throwaway PostgreSQL helper that the audit, broker and demo tests share."""

from __future__ import annotations

import psycopg
import pytest

from jitctl.testing.postgres import PostgresServer, postgres_available


def test_logins_over_tcp_need_the_password(postgres_server: PostgresServer) -> None:
    assert postgres_server.execute("SELECT current_user") == [("jitctl",)]
    wrong = postgres_server.dsn.replace(postgres_server.password, "wrong")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong).close()


def test_each_database_from_create_database_is_fresh(postgres_server: PostgresServer) -> None:
    first, second = postgres_server.create_database(), postgres_server.create_database()
    assert first != second
    with psycopg.connect(first) as conn:
        conn.execute("CREATE TABLE t (x int)")
    with psycopg.connect(second) as conn:
        assert conn.execute("SELECT to_regclass('t')").fetchone() == (None,)


def test_extra_settings_apply_and_stop_leaves_nothing_behind() -> None:
    if (reason := postgres_available()) is not None:
        pytest.skip(reason)
    with PostgresServer(settings={"log_statement": "all", "application_name": "it's me"}) as pg:
        assert pg.execute("SHOW log_statement") == [("all",)]
        pg.execute("SELECT 'hello from the test'")
        assert "hello from the test" in pg.logfile.read_text()
        directory = pg.dir
        assert directory is not None and (directory / "data").is_dir()
    assert not directory.exists() and pg.dir is None
    pg.stop()  # twice is fine
