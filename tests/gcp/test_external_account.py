"""`--format external-account`: a google-auth client with only that file refreshes through jitctl,
and nothing long-lived lands in the caller's files or environment."""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jitctl.errors import ExitCode
from jitctl.testing.broker import BrokerProcess
from jitctl.testing.gcp_emulator import GcpEmulator
from tests.gcp.support import AUDIENCE, READER, SUBJECT, audit_records, run_json

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
JWT_LIKE = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")


@pytest.fixture
def client_env(broker: BrokerProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The caller's shell: logged in to the broker (JITCTL_HOME), nothing else of ours."""
    monkeypatch.setenv("JITCTL_HOME", str(broker.home))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", broker.env["PYTHON_KEYRING_BACKEND"])
    for var in ("JITCTL_BROKER", "JITCTL_CA_FILE"):
        monkeypatch.delenv(var, raising=False)
    yield


def _write_config(broker: BrokerProcess, target: str, path: Path | None = None) -> dict[str, Any]:
    args = ["creds", "gcp", "--target", target, "--format", "external-account", "--json"]
    return run_json(broker, *args, *(["--output", str(path)] if path else []))


def test_a_google_auth_client_with_only_the_file_gets_and_refreshes_tokens_through_jitctl(
    broker: BrokerProcess,
    emulator: GcpEmulator,
    client_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written = _write_config(broker, "short")
    for name, value in written["env"].items():  # exactly what jitctl told the user to export
        monkeypatch.setenv(name, value)
    # Tokens of 228 s: google-auth counts them expired 3m45s early, i.e. 3 s after issue.
    monkeypatch.setattr(emulator, "federated_lifetime", 228)
    before = len(audit_records(broker, "gcp.subject_token"))

    import google.auth
    import google.auth.transport.requests
    from google.auth import pluggable

    credentials, project = google.auth.default(scopes=[CLOUD_PLATFORM])
    assert isinstance(credentials, pluggable.Credentials) and project == "test-proj"
    request = google.auth.transport.requests.Request()
    credentials.refresh(request)
    first = emulator.find(credentials.token)
    assert first is not None and first.kind == "service_account"
    assert first.subject == SUBJECT and first.service_account == READER
    assert first.lifetime == 228 and first.scopes == [CLOUD_PLATFORM]
    assert credentials.valid

    # expireTime is whole seconds, so the federated token (google-auth's own clock) may stay
    # fresh up to 1 s longer than the SA token: wait until both are past the threshold.
    time.sleep(max(0.0, first.expires_at + 1 - 225 - time.time()))
    assert credentials.expired
    credentials.refresh(request)
    second = emulator.find(credentials.token)
    assert second is not None and second.token != first.token and second.subject == SUBJECT
    assert credentials.valid
    # Each refresh ran `jitctl creds gcp-subject-token`: two subject tokens, both recorded.
    minted = audit_records(broker, "gcp.subject_token")[before:]
    assert [r.actor.subject for r in minted] == [SUBJECT, SUBJECT]
    assert {first.claims["jti"], second.claims["jti"]} == {
        r.payload["subject_token_jti"] for r in minted
    }


def test_the_config_names_jitctl_and_holds_no_key_and_no_token(
    broker: BrokerProcess, emulator: GcpEmulator, tmp_path: Path
) -> None:
    path = tmp_path / "adc.json"
    written = _write_config(broker, "reader", path)
    assert written["path"] == str(path) and path.stat().st_mode & 0o777 == 0o600
    config = json.loads(path.read_text())
    assert set(config) == {
        "type",
        "audience",
        "subject_token_type",
        "token_url",
        "credential_source",
        "service_account_impersonation_url",
        "service_account_impersonation",
        "universe_domain",
    }
    assert config["type"] == "external_account" and config["audience"] == AUDIENCE
    assert config["token_url"] == emulator.sts_endpoint
    assert config["service_account_impersonation"] == {"token_lifetime_seconds": 600}
    assert config["service_account_impersonation_url"].endswith(f"/{READER}:generateAccessToken")
    assert list(config["credential_source"]) == ["executable"]
    command = config["credential_source"]["executable"]["command"]
    assert command.startswith(f"{sys.executable} -m jitctl creds gcp-subject-token --target reader")
    text = path.read_text()
    for secret in ("PRIVATE KEY", "private_key", "client_secret", "refresh_token", "emu."):
        assert secret not in text
    assert not JWT_LIKE.search(text)
    assert set(written["env"]) == {
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES",
    }
    assert written["env"]["GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES"] == "1"


def test_no_flow_leaves_a_key_or_a_token_in_the_callers_files_or_environment(
    broker: BrokerProcess, emulator: GcpEmulator, client_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ_before = dict(os.environ)
    written = _write_config(broker, "reader")
    run_json(broker, "creds", "gcp", "--target", "reader", "--json")
    run_json(broker, "creds", "gcp", "--target", "bucket", "--json")
    for name, value in written["env"].items():
        monkeypatch.setenv(name, value)
    import google.auth
    import google.auth.transport.requests

    credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM])
    credentials.refresh(google.auth.transport.requests.Request())
    # The environment gained only the two variables the user was told to set.
    added = set(os.environ) - set(environ_before)
    assert added <= set(written["env"])
    assert all(not JWT_LIKE.search(v) and "emu." not in v for v in os.environ.values())
    # The caller's files: the login pointer and the external_account config, no key, no token.
    tokens = [t.token for t in emulator.issued]
    for file in Path(broker.home).rglob("*"):
        if not file.is_file():
            continue
        text = file.read_text(errors="replace")
        assert "PRIVATE KEY" not in text, file
        assert not any(token in text for token in tokens), file
    # The broker's signing key stays in its state dir, readable by the broker alone.
    key = broker.state_dir / "gcp-subject-key.pem"
    assert key.stat().st_mode & 0o777 == 0o600


def test_the_executable_prints_only_json_even_when_jitctl_would_warn(
    broker: BrokerProcess, emulator: GcpEmulator
) -> None:
    """google-auth reads the executable's stderr as stdout: a keyring warning would break it."""
    result = broker.jitctl("creds", "gcp-subject-token", "--target", "reader")
    assert result.returncode == 0 and result.stderr == ""
    response = json.loads(result.stdout)
    assert response["version"] == 1 and response["success"] is True
    assert response["token_type"] == "urn:ietf:params:oauth:token-type:jwt"
    assert 0 < response["expiration_time"] - time.time() <= 300
    claims = json.loads(base64.urlsafe_b64decode(response["id_token"].split(".")[1] + "=="))
    assert claims["sub"] == SUBJECT and claims["aud"] == "https:" + AUDIENCE


def test_a_failing_executable_reaches_the_client_library_with_jitctls_reason(
    broker: BrokerProcess, client_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = _write_config(broker, "reader")
    for name, value in written["env"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("JITCTL_HOME", str(tmp_path / "logged-out"))
    import google.auth
    import google.auth.transport.requests
    from google.auth import exceptions

    credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM])
    with pytest.raises(exceptions.RefreshError) as caught:
        credentials.refresh(google.auth.transport.requests.Request())
    message = str(caught.value)
    assert f"non-zero return code {int(ExitCode.AUTH)}" in message
    assert "you are not logged in to" in message and "run `jitctl login`" in message


def test_without_the_opt_in_google_auth_refuses_executables(
    broker: BrokerProcess, client_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = _write_config(broker, "reader")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", written["path"])
    import google.auth
    import google.auth.transport.requests
    from google.auth import exceptions

    credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM])
    with pytest.raises(
        exceptions.GoogleAuthError, match="GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES"
    ):
        credentials.refresh(google.auth.transport.requests.Request())


def test_a_target_with_a_boundary_cannot_become_an_external_account(broker: BrokerProcess) -> None:
    result = broker.jitctl("creds", "gcp", "--target", "bucket", "--format", "external-account")
    assert result.returncode == ExitCode.USAGE
    assert "has a credential access boundary, which an external_account config cannot carry" in (
        result.stderr
    )
    assert (
        audit_records(broker, "gcp.credential.error")[-1].payload["purpose"] == "external-account"
    )
