"""Which broker the CLI talks to, and when a CA is trusted without being named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jitctl import paths
from jitctl.client import settings
from jitctl.errors import UsageError


def _dev_pointer(url: str, ca: str = "/dev-state/ca.pem") -> None:
    directory = paths.ensure_private_dir(paths.dev_broker_dir())
    (directory / "broker.json").write_text(json.dumps({"url": url, "ca_file": ca, "pid": 1}))


def test_the_flag_wins_over_env_remembered_and_dev(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JITCTL_BROKER", "https://env.example")
    settings.remember(settings.BrokerSettings("https://remembered.example", None, "flag"))
    _dev_pointer("https://127.0.0.1:8443")
    chosen = settings.resolve("https://flag.example:8443/", "ca.pem")
    assert chosen.url == "https://flag.example:8443" and chosen.source == "flag"
    assert chosen.ca_file == str(Path("ca.pem").resolve())


def test_env_then_remembered_then_the_dev_pointer(monkeypatch: pytest.MonkeyPatch) -> None:
    _dev_pointer("https://127.0.0.1:8443")
    assert settings.resolve().source == "dev"
    settings.remember(settings.BrokerSettings("https://remembered.example", "/r/ca.pem", "flag"))
    remembered = settings.resolve()
    assert (remembered.url, remembered.ca_file) == ("https://remembered.example", "/r/ca.pem")
    monkeypatch.setenv("JITCTL_BROKER", "https://env.example")
    monkeypatch.setenv("JITCTL_CA_FILE", "/env/ca.pem")
    assert settings.resolve() == settings.BrokerSettings(
        "https://env.example", "/env/ca.pem", "env"
    )


def test_the_dev_ca_is_trusted_only_for_the_exact_loopback_dev_url() -> None:
    _dev_pointer("https://127.0.0.1:8443", "/dev-state/ca.pem")
    assert settings.resolve("https://127.0.0.1:8443").ca_file == "/dev-state/ca.pem"
    assert settings.resolve("https://127.0.0.1:9999").ca_file is None
    _dev_pointer("https://broker.example:8443", "/dev-state/ca.pem")
    assert settings.resolve("https://broker.example:8443").ca_file is None  # not loopback


def test_with_no_broker_known_the_error_says_how_to_name_one() -> None:
    with pytest.raises(UsageError) as info:
        settings.resolve()
    assert "jitctl login --broker URL" in (info.value.hint or "")


@pytest.mark.parametrize("url", ["http://broker.example", "ftp://x", "https://b.example/api"])
def test_a_broker_url_must_be_https_and_bare(url: str) -> None:
    with pytest.raises(UsageError):
        settings.resolve(url)


def test_plain_http_is_allowed_on_loopback() -> None:
    assert settings.resolve("http://127.0.0.1:8080").url == "http://127.0.0.1:8080"


def test_remembering_writes_a_private_file() -> None:
    settings.remember(settings.BrokerSettings("https://b.example", None, "flag"))
    assert settings.client_file().stat().st_mode & 0o777 == 0o600
