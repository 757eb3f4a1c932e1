"""Shared pieces for the login tests: an in-process broker stand-in and a scripted "browser".

`FakeBroker` serves, over real TLS on 127.0.0.1, the real `DevIssuer` router at /dev/oidc and
the three /v1 endpoints the CLI calls (info, whoami, targets) per the broker's contract. It runs
in a uvicorn thread, so tests can reach inside the issuer (short lifetimes, approvals) and stay
fast. End-to-end tests use the real broker (`jitctl.testing.broker.BrokerProcess`) instead.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from jitctl.broker.devissuer import DevIssuer
from jitctl.broker.tlsfiles import ensure_tls_files
from jitctl.config import DevSection

TARGETS = [
    {
        "name": "pg-prod",
        "protocol": "postgres",
        "description": "production database",
        "max_session": 3600.0,
        "default_action": "allow",
        "rules": [{"name": "", "match": {"statement": ["drop", "truncate"]}, "action": "deny"}],
        "masks": [{"columns": ["email"], "detectors": []}],
        "allow_groups": ["eng"],
    },
    {
        "name": "billing-api",
        "protocol": "http",
        "description": "",
        "max_session": 1800.0,
        "default_action": "deny",
        "rules": [],
        "masks": [],
        "allow_groups": ["dba"],
    },
]


class FakeBroker:
    def __init__(self, state_dir: Path, dev: DevSection | None = None, **issuer_kwargs: Any):
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        ca, cert, key = ensure_tls_files(state_dir, ["127.0.0.1"])
        self.ca_file = str(ca)
        self.issuer = DevIssuer(
            self.url + "/dev/oidc", dev or DevSection(), state_dir, **issuer_kwargs
        )
        self.app = self._app()
        config = uvicorn.Config(
            self.app, ssl_certfile=str(cert), ssl_keyfile=str(key), log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def _app(self) -> FastAPI:
        app = FastAPI()
        issuer = self.issuer
        app.include_router(issuer.router(), prefix="/dev/oidc")

        def identity(request: Request) -> dict[str, Any]:
            token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            try:
                return issuer.verify(token)
            except jwt.ExpiredSignatureError:
                raise _Rejected("token expired") from None
            except jwt.InvalidTokenError as exc:
                raise _Rejected(str(exc)) from None

        @app.exception_handler(_Rejected)
        async def rejected(request: Request, exc: _Rejected) -> JSONResponse:
            return JSONResponse({"error": "invalid_token", "reason": exc.reason}, status_code=401)

        @app.get("/v1/info")
        def info() -> dict[str, Any]:
            login = {
                "issuer": issuer.issuer_url,
                "client_id": "jitctl",
                "scopes": ["openid", "email", "profile", "offline_access"],
            }
            return {"version": "test", "dev": True, "login": login}

        @app.get("/v1/whoami")
        def whoami(request: Request) -> dict[str, Any]:
            claims = identity(request)
            return {
                "subject": claims["sub"],
                "email": claims.get("email", ""),
                "groups": claims.get("groups", []),
                "issuer": claims["iss"],
                "expires_at": claims["exp"],
            }

        @app.get("/v1/targets")
        def targets(request: Request) -> dict[str, Any]:
            groups = set(identity(request).get("groups", []))
            return {
                "targets": [
                    {k: v for k, v in t.items() if k != "allow_groups"}
                    for t in TARGETS
                    if groups & set(t["allow_groups"])
                ]
            }

        return app

    def __enter__(self) -> FakeBroker:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("fake broker did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def http(self) -> httpx.Client:
        return httpx.Client(verify=ssl.create_default_context(cafile=self.ca_file), timeout=10)

    def approve_device(self, user_code: str, user: str = "alice", action: str = "approve") -> int:
        """Approve (or deny) a device login the way a person would: one POST of the form."""
        with self.http() as http:
            response = http.post(
                self.issuer.issuer_url + "/device",
                data={"user_code": user_code, "user": user, "action": action},
            )
        return response.status_code


class _Rejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def play_browser(authorize_url: str, ca_file: str, login_hint: str = "alice") -> httpx.Response:
    """Do what a browser does: open the authorize URL (a dev user chosen by login_hint), then
    follow the 302 to the CLI's loopback callback. Returns the callback's response."""
    with httpx.Client(verify=ssl.create_default_context(cafile=ca_file), timeout=10) as http:
        answer = http.get(authorize_url + "&login_hint=" + login_hint, follow_redirects=False)
        assert answer.status_code == 302, answer.text
        return http.get(answer.headers["location"])


# -- fixtures (imported by tests/client/conftest.py and tests/cli/conftest.py) -------------


@pytest.fixture
def memory_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The test keyring as this process's backend (and, by env, for CLI subprocesses)."""
    import keyring
    import keyring.core

    from jitctl.client import tokens
    from tests.keyring_backends import MemoryKeyring

    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "tests.keyring_backends.MemoryKeyring")
    monkeypatch.setattr(tokens, "_warned", False)
    previous = keyring.core._keyring_backend
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.core._keyring_backend = previous


@pytest.fixture
def fail_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """keyring's fail backend: what a headless box without D-Bus gets."""
    import keyring
    import keyring.core
    from keyring.backends import fail

    from jitctl.client import tokens

    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.setattr(tokens, "_warned", False)
    previous = keyring.core._keyring_backend
    backend = fail.Keyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.core._keyring_backend = previous


@pytest.fixture
def fake_broker(tmp_path: Path) -> Iterator[FakeBroker]:
    with FakeBroker(tmp_path / "broker") as broker:
        yield broker
