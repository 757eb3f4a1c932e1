"""The token store (keyring or 0600 file) and `current_token()` (refresh, workload tokens)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from jitctl.broker.devissuer import s256
from jitctl.client import tokens
from jitctl.client.tokens import TokenStore, current_token, oidc_record
from jitctl.errors import AuthError
from tests.identity_support import FakeBroker

URL = "https://broker.example:8443"


def _login(
    broker: FakeBroker, user: str = "alice", lifetime: float | None = None
) -> dict[str, Any]:
    """Tokens as a real PKCE login would get them, minted by the broker's dev issuer."""
    issuer = broker.issuer
    params = {
        "response_type": "code",
        "client_id": "jitctl",
        "scope": "openid offline_access",
        "redirect_uri": "http://127.0.0.1:9/cb",
        "code_challenge": s256("v" * 43),
        "code_challenge_method": "S256",
    }
    location = issuer.authorize(params, user)
    assert location is not None
    code = location.split("code=")[1].split("&")[0]
    body = issuer.token(
        {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": "jitctl",
            "redirect_uri": "http://127.0.0.1:9/cb",
            "code_verifier": "v" * 43,
        },
        None,
    )
    record = oidc_record(
        body,
        issuer=issuer.issuer_url,
        client_id="jitctl",
        token_endpoint=issuer.issuer_url + "/token",
    )
    if lifetime is not None:
        record["expires_at"] = time.time() + lifetime
    return record


def test_the_identity_goes_to_the_keyring_under_service_jitctl_and_the_broker_url(
    memory_keyring: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    where = TokenStore(URL).save({"mode": "env", "var": "TOKEN"})
    assert where == "keyring"
    assert json.loads(memory_keyring.get_password("jitctl", URL)) == {"mode": "env", "var": "TOKEN"}
    assert TokenStore(URL).load() == {"mode": "env", "var": "TOKEN"}
    assert not tokens.credentials_file().exists()
    assert capsys.readouterr().err == ""


def test_without_a_keyring_the_identity_goes_to_a_0600_file_with_one_warning(
    fail_keyring: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    TokenStore(URL).save({"mode": "env", "var": "A"})
    TokenStore("https://other:1").save({"mode": "env", "var": "B"})
    path = tokens.credentials_file()
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert TokenStore(URL).load() == {"mode": "env", "var": "A"}
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 1 and "no system keyring" in warnings[0] and str(path) in warnings[0]
    assert not list(path.parent.glob(".*.tmp"))  # the atomic write left nothing behind


def test_logout_forgets_the_identity_in_keyring_and_file(memory_keyring: Any) -> None:
    # A file copy left from a time without a keyring, then a login with one.
    records = {URL: {"mode": "env", "var": "OLD"}}
    tokens.write_private_json(tokens.credentials_file(), {"version": 1, "identities": records})
    TokenStore(URL).save({"mode": "env", "var": "NEW"})  # moves to the keyring, drops the file copy
    assert not tokens.credentials_file().exists()
    assert TokenStore(URL).delete() is True
    assert TokenStore(URL).load() is None
    assert TokenStore(URL).delete() is False


def test_a_valid_token_is_returned_without_asking_anyone(memory_keyring: Any) -> None:
    record = {
        "mode": "oidc",
        "id_token": "abc",
        "expires_at": time.time() + 600,
        "token_endpoint": "https://127.0.0.1:9/token",
        "refresh_token": "r",
    }
    TokenStore(URL).save(record)
    assert current_token(URL) == "abc"  # port 9 would refuse: nothing was called


def test_an_expired_login_is_refreshed_transparently_and_the_rotated_token_kept(
    fake_broker: FakeBroker, memory_keyring: Any
) -> None:
    record = _login(fake_broker, "carol", lifetime=10)  # inside the 30 s refresh margin
    TokenStore(fake_broker.url).save(record)
    token = current_token(fake_broker.url, fake_broker.ca_file)
    assert token != record["id_token"]
    assert fake_broker.issuer.verify(token)["sub"] == "carol"
    stored = TokenStore(fake_broker.url).load()
    assert stored["refresh_token"] != record["refresh_token"]
    assert stored["expires_at"] > time.time() + 3000
    assert current_token(fake_broker.url, fake_broker.ca_file) == token  # no second refresh


def test_a_refused_refresh_says_the_session_expired_and_to_log_in(
    fake_broker: FakeBroker, memory_keyring: Any
) -> None:
    record = _login(fake_broker, lifetime=-1)
    record["refresh_token"] = "revoked-or-unknown"
    TokenStore(fake_broker.url).save(record)
    with pytest.raises(AuthError, match="your session has expired") as info:
        current_token(fake_broker.url, fake_broker.ca_file)
    assert info.value.hint == "run `jitctl login`"


def test_a_reused_refresh_token_is_detected_and_ends_the_session(
    fake_broker: FakeBroker, memory_keyring: Any
) -> None:
    record = _login(fake_broker, lifetime=-1)
    TokenStore(fake_broker.url).save(record)
    current_token(fake_broker.url, fake_broker.ca_file)  # rotates
    TokenStore(fake_broker.url).save(record)  # a stale copy comes back (restored backup, ...)
    with pytest.raises(AuthError, match="reuse detected"):
        current_token(fake_broker.url, fake_broker.ca_file)


def test_not_logged_in_is_an_auth_error_pointing_at_login(memory_keyring: Any) -> None:
    with pytest.raises(AuthError, match="not logged in") as info:
        current_token(URL)
    assert info.value.hint == "run `jitctl login`"


def test_a_token_file_is_re_read_on_every_use_so_rotation_works(
    memory_keyring: Any, tmp_path: Path
) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    TokenStore(URL).save({"mode": "file", "path": str(path)})
    assert current_token(URL) == "first"
    path.write_text("second")
    assert current_token(URL) == "second"
    assert "first" not in memory_keyring.get_password("jitctl", URL)
    path.unlink()
    with pytest.raises(AuthError, match="cannot read the token file"):
        current_token(URL)


def test_a_token_env_var_is_read_at_use(
    memory_keyring: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    TokenStore(URL).save({"mode": "env", "var": "CI_TOKEN"})
    monkeypatch.setenv("CI_TOKEN", "tok-1")
    assert current_token(URL) == "tok-1"
    monkeypatch.delenv("CI_TOKEN")
    with pytest.raises(AuthError, match="CI_TOKEN holds no token"):
        current_token(URL)
