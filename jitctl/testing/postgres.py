"""A throwaway PostgreSQL server from the machine's own binaries, for tests and the demo.

    reason = postgres_available()            # None when a server can be started here
    with PostgresServer(settings={"log_statement": "all"}) as pg:
        pg.dsn                                 # postgresql://jitctl:<password>@127.0.0.1:<port>/postgres
        url = pg.create_database()             # a fresh, empty database; returns its DSN
        pg.execute("SELECT 1")                 # [(1,)]
        pg.logfile.read_text()                 # the server log (statements, with log_statement=all)

Rules:
- Binaries come from PATH (`initdb`, `pg_ctl`) or the newest /usr/lib/postgresql/*/bin.
- PostgreSQL refuses to run as root, so as root every server command runs as the `postgres` OS
  user through `runuser -u postgres --`, and the temporary directory is handed to that user.
- It listens on 127.0.0.1 on a free port, with its unix socket inside the temporary directory.
  TCP logins use scram-sha-256 as the superuser `jitctl` with a random password; the unix socket
  trusts local users (handy for `psql -h <dir>`).
- `tls=True` turns TLS on with a certificate for 127.0.0.1 from a throwaway CA (`ca_file`), and
  pg_hba.conf then takes TCP logins over TLS only (`hostssl`; `hostnossl` is rejected).
- By default it trades durability for speed (fsync=off, synchronous_commit=off,
  full_page_writes=off): it is thrown away. Pass `durable=True` to measure real commits, and
  `settings` for any other server setting (they are written to postgresql.conf).
- Nothing is left behind: `stop()` (or leaving the `with` block, or interpreter exit) stops the
  server and deletes the directory.
- No binaries, or root without a `postgres` user: `PostgresUnavailable` with the reason, so a
  caller can skip or fall back; `postgres_available()` gives the same reason without starting.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jitctl.errors import JitctlError

_FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class PostgresUnavailable(JitctlError):
    """No PostgreSQL server can be started on this machine (the message says why)."""


def find_bin_dir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, or None."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        real = Path(on_path).resolve().parent
        if (real / "postgres").exists():
            return real
    candidates = glob.glob("/usr/lib/postgresql/*/bin")
    candidates.sort(key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    for candidate in reversed(candidates):
        path = Path(candidate)
        if all((path / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
            return path
    return None


def postgres_available() -> str | None:
    """None when `PostgresServer` can run here, else the reason it cannot."""
    if find_bin_dir() is None:
        return "no PostgreSQL binaries (initdb, pg_ctl, postgres) on PATH or in /usr/lib/postgresql"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` OS user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root and `runuser` is missing"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory; see the module docstring."""

    def __init__(
        self,
        *,
        settings: Mapping[str, str] | None = None,
        durable: bool = False,
        user: str = "jitctl",
        password: str | None = None,
        base_dir: str | Path | None = None,
        start_timeout: float = 60.0,
        tls: bool = False,
    ) -> None:
        self.settings = {**({} if durable else _FAST), **(settings or {})}
        self.tls = tls
        self.ca_file = Path()  # with tls: the CA that signed the server's certificate
        self.user = user
        self.password = password or secrets.token_urlsafe(18)
        self.host = "127.0.0.1"
        self.port = 0
        self.start_timeout = start_timeout
        self._base_dir = base_dir
        self._as_postgres = os.geteuid() == 0
        self.dir: Path | None = None
        self.logfile = Path()
        self._running = False

    # -- addresses ------------------------------------------------------------------------

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def dsn_for(self, dbname: str) -> str:
        return (
            f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/{quote(dbname, safe='')}"
        )

    @property
    def socket_dir(self) -> Path:
        assert self.dir is not None, "server not started"
        return self.dir

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> PostgresServer:
        reason = postgres_available()
        if reason is not None:
            raise PostgresUnavailable(
                reason, "install PostgreSQL (Debian: apt-get install postgresql)"
            )
        bin_dir = find_bin_dir()
        assert bin_dir is not None
        self._bin = bin_dir
        parent = self._base_dir or ("/tmp" if self._as_postgres else None)
        self.dir = Path(tempfile.mkdtemp(prefix="jitctl-pg-", dir=parent))
        atexit.register(self.stop)
        try:
            self._initdb()
            for attempt in range(3):  # another process may grab the free port before we bind it
                self.port = _free_port()
                self._write_port()
                if self._pg_ctl("start", check=attempt == 2):
                    break
            self._running = True
        except BaseException:
            self.stop()
            raise
        return self

    def _initdb(self) -> None:
        assert self.dir is not None
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        self.logfile = self.dir / "postgres.log"
        self.logfile.touch()
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            for path in (self.dir, pwfile, self.logfile):
                os.chown(path, pw.pw_uid, pw.pw_gid)
            self.dir.chmod(0o755)  # the test process (root) and other users may read the log
            self.logfile.chmod(0o644)
        self._run(
            [
                "initdb",
                "-D",
                str(self.dir / "data"),
                "-U",
                self.user,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",  # the cluster is thrown away; saves seconds on slow disks
                "--no-instructions",
            ]
        )
        pwfile.unlink()
        lines = [
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.dir}'",
            *(
                f"{key} = '{str(value).replace(chr(39), chr(39) * 2)}'"
                for key, value in self.settings.items()
            ),
        ]
        if self.tls:
            lines += self._tls_files()
        with open(self.dir / "data" / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# jitctl.testing.postgres\n" + "\n".join(lines) + "\n")

    def _tls_files(self) -> list[str]:
        """A CA and a server certificate (for 127.0.0.1, ::1, localhost); TLS-only TCP logins."""
        from jitctl.broker.tlsfiles import ensure_tls_files

        assert self.dir is not None
        folder = self.dir / "tls"
        folder.mkdir()
        self.ca_file, cert, key = ensure_tls_files(folder, ["127.0.0.1"])
        key.chmod(0o600)  # the server refuses a key others may read
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            for path in (folder, cert, key):
                os.chown(path, pw.pw_uid, pw.pw_gid)
            self.ca_file.chmod(0o644)
            folder.chmod(0o755)
        (self.dir / "data" / "pg_hba.conf").write_text(
            "local all all trust\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
            "hostssl all all ::1/128 scram-sha-256\n"
            "hostnossl all all all reject\n"
        )
        return ["ssl = on", f"ssl_cert_file = '{cert}'", f"ssl_key_file = '{key}'"]

    def _write_port(self) -> None:
        assert self.dir is not None
        # postgresql.auto.conf is read last, so a retry simply overrides the port.
        auto = self.dir / "data" / "postgresql.auto.conf"
        auto.write_text(f"port = {self.port}\n")
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(auto, pw.pw_uid, pw.pw_gid)

    def _pg_ctl(self, action: str, *, check: bool) -> bool:
        assert self.dir is not None
        args = ["pg_ctl", "-D", str(self.dir / "data"), "-w", "-t", str(int(self.start_timeout))]
        if action == "start":
            args += ["-l", str(self.logfile), "start"]
        else:
            args += ["-m", "fast", action]
        return self._run(args, check=check)

    def _run(self, args: Sequence[str], *, check: bool = True) -> bool:
        command = [str(self._bin / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(
            command, capture_output=True, text=True, cwd=self.dir, timeout=self.start_timeout + 30
        )
        if result.returncode != 0 and check:
            log = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
            raise PostgresUnavailable(
                f"`{args[0]} {args[-1]}` failed (exit {result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}\n{log}".strip()
            )
        return result.returncode == 0

    def stop(self) -> None:
        """Stop the server and delete its directory; safe to call twice."""
        if self.dir is None:
            return
        if self._running:
            with contextlib.suppress(Exception):
                self._pg_ctl("stop", check=False)
            self._running = False
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    def __enter__(self) -> PostgresServer:
        return self.start() if self.dir is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers --------------------------------------------------------------------------

    def execute(
        self, sql: str, params: Sequence[Any] | None = None, *, dbname: str = "postgres"
    ) -> list[tuple[Any, ...]]:
        """Run one statement as the superuser (autocommit); the rows it returns, if any."""
        import psycopg

        with psycopg.connect(self.dsn_for(dbname), autocommit=True) as conn:
            cursor = conn.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description else []

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a random name unless given); returns its DSN."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        self.execute(f'CREATE DATABASE "{name}"')
        return self.dsn_for(name)

    def drop_database(self, name: str) -> None:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
