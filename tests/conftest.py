"""Fixtures every test shares: a private JITCTL_HOME, network hygiene, a token issuer."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from jitctl.testing.issuer import TokenIssuer

# Read at import by google-auth: never probe the GCE metadata server from tests.
os.environ.setdefault("NO_GCE_CHECK", "true")
os.environ.setdefault("GCE_METADATA_HOST", "127.0.0.1:9")
os.environ.setdefault("GCE_METADATA_IP", "127.0.0.1:9")
os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)


@pytest.fixture(autouse=True)
def _private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own JITCTL_HOME; nothing touches the real user's state."""
    home = tmp_path / "jitctl-home"
    monkeypatch.setenv("JITCTL_HOME", str(home))
    for var in ("JITCTL_BROKER", "JITCTL_CA_FILE"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture(scope="session")
def token_issuer() -> Iterator[TokenIssuer]:
    with TokenIssuer() as issuer:
        yield issuer
