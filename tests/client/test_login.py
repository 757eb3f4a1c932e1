"""The CLI's login flows against the real dev issuer, over real TLS on loopback."""

from __future__ import annotations

import ssl
import threading
from typing import Any

import httpx
import jwt
import pytest

from jitctl.client import login as flows
from jitctl.client.api import BrokerClient
from jitctl.errors import AuthError, ExitCode, UnreachableError
from tests.identity_support import FakeBroker, play_browser


def _provider(broker: FakeBroker) -> flows.Provider:
    with BrokerClient(broker.url, broker.ca_file) as api:
        return flows.discover(api.info()["login"], broker.ca_file)


def _in_background(action: Any) -> Any:
    """open_url callback: run the scripted browser beside the waiting login, keep its answer."""
    seen: dict[str, Any] = {}

    def opener(url: str) -> None:
        def run() -> None:
            seen["url"] = url
            seen["answer"] = action(url)

        threading.Thread(target=run, daemon=True).start()

    opener.seen = seen  # type: ignore[attr-defined]
    return opener


def test_pkce_login_end_to_end_yields_an_id_token_for_the_chosen_user(
    fake_broker: FakeBroker,
) -> None:
    provider = _provider(fake_broker)
    opener = _in_background(lambda url: play_browser(url, fake_broker.ca_file, "bob"))
    lines: list[str] = []
    tokens = flows.login_pkce(provider, open_url=opener, say=lines.append, timeout=10)
    claims = fake_broker.issuer.verify(tokens["id_token"])
    assert claims["sub"] == "bob" and tokens["refresh_token"]
    assert opener.seen["url"] in lines[0]  # the URL is always printed
    assert "close this tab" in opener.seen["answer"].text
    query = opener.seen["url"]
    assert (
        "code_challenge_method=S256" in query and "redirect_uri=http%3A%2F%2F127.0.0.1%3A" in query
    )


def test_pkce_login_with_a_forged_state_is_refused(fake_broker: FakeBroker) -> None:
    provider = _provider(fake_broker)

    def forge(url: str) -> httpx.Response:
        with httpx.Client(verify=ssl.create_default_context(cafile=fake_broker.ca_file)) as http:
            location = http.get(url + "&login_hint=alice").headers["location"]
        forged = location.replace("state=", "state=evil")
        return httpx.get(forged)

    with pytest.raises(AuthError, match="state mismatch"):
        flows.login_pkce(provider, open_url=_in_background(forge), say=lambda _: None, timeout=10)


def test_pkce_login_refused_by_the_issuer_says_why(fake_broker: FakeBroker) -> None:
    provider = _provider(fake_broker)
    opener = _in_background(lambda url: play_browser_denied(url, fake_broker.ca_file))
    with pytest.raises(AuthError, match="refused the login: no development user") as info:
        flows.login_pkce(provider, open_url=opener, say=lambda _: None, timeout=10)
    assert info.value.exit_code == ExitCode.AUTH


def play_browser_denied(url: str, ca_file: str) -> httpx.Response:
    with httpx.Client(verify=ssl.create_default_context(cafile=ca_file)) as http:
        location = http.get(url + "&login_hint=mallory").headers["location"]
        return http.get(location)


def test_pkce_login_without_a_browser_answer_times_out_clearly(fake_broker: FakeBroker) -> None:
    provider = _provider(fake_broker)
    with pytest.raises(AuthError, match="timed out") as info:
        flows.login_pkce(provider, open_url=lambda url: None, say=lambda _: None, timeout=0.3)
    assert "--device" in (info.value.hint or "")


def test_a_code_redeemed_with_another_verifier_is_refused(fake_broker: FakeBroker) -> None:
    """PKCE binds the code to this login: a stolen code is useless without the verifier."""
    provider = _provider(fake_broker)
    _, challenge = flows.pkce_pair()
    other, _ = flows.pkce_pair()
    redirect = "http://127.0.0.1:9/callback"
    with httpx.Client(verify=ssl.create_default_context(cafile=fake_broker.ca_file)) as http:
        location = http.get(
            provider.authorization_endpoint,
            params={
                "response_type": "code",
                "client_id": "jitctl",
                "redirect_uri": redirect,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "login_hint": "alice",
            },
        ).headers["location"]
        code = httpx.URL(location).params["code"]
        answer = http.post(
            provider.token_endpoint,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect,
                "code_verifier": other,
                "client_id": "jitctl",
            },
        )
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_device_login_polls_until_approved_and_slows_down_by_five_seconds(
    fake_broker: FakeBroker,
) -> None:
    provider = _provider(fake_broker)
    lines: list[str] = []
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        # No real waiting: the first two polls come too fast (slow_down), then approve.
        sleeps.append(seconds)
        if len(sleeps) == 3:
            user_code = lines[0].rsplit(" ", 1)[-1]
            assert fake_broker.approve_device(user_code, "carol") == 200

    tokens = flows.login_device(provider, say=lines.append, sleep=sleep)
    assert fake_broker.issuer.verify(tokens["id_token"])["sub"] == "carol"
    assert "user_code=" in lines[0]
    assert sleeps == [1.0, 1.0, 6.0]  # pending, slow_down, then +5 s for good


def test_device_login_denied_ends_with_a_clear_auth_error(fake_broker: FakeBroker) -> None:
    provider = _provider(fake_broker)
    lines: list[str] = []

    def sleep(seconds: float) -> None:
        fake_broker.approve_device(lines[0].rsplit(" ", 1)[-1], action="deny")

    with pytest.raises(AuthError, match="denied") as info:
        flows.login_device(provider, say=lines.append, sleep=sleep)
    assert info.value.exit_code == ExitCode.AUTH


def test_device_login_that_nobody_approves_expires(tmp_path: Any) -> None:
    with FakeBroker(tmp_path / "b", device_lifetime=0.2) as broker:
        provider = _provider(broker)
        with pytest.raises(AuthError, match="expired"):
            flows.login_device(
                provider, say=lambda _: None, sleep=lambda s: __import__("time").sleep(0.25)
            )


def test_discovery_must_name_the_issuer_the_broker_announced(fake_broker: FakeBroker) -> None:
    login = {"issuer": fake_broker.url + "/dev/oidc/", "client_id": "jitctl"}
    assert flows.discover(login, fake_broker.ca_file).issuer == fake_broker.issuer.issuer_url
    with pytest.raises(AuthError, match="no identity provider"):
        flows.discover(None, fake_broker.ca_file)


def test_broker_client_maps_401_to_auth_error_with_the_brokers_reason(
    fake_broker: FakeBroker,
) -> None:
    expired = fake_broker.issuer.mint("alice", email=None, groups=[], lifetime=-120)
    with (
        BrokerClient(fake_broker.url, fake_broker.ca_file) as api,
        pytest.raises(AuthError) as info,
    ):
        api.whoami(expired)
    assert "token expired" in info.value.message and info.value.hint == "run `jitctl login`"


def test_broker_client_without_the_ca_explains_tls_and_points_at_ca_file(
    fake_broker: FakeBroker,
) -> None:
    with BrokerClient(fake_broker.url, None) as api, pytest.raises(UnreachableError) as info:
        api.info()
    assert "certificate" in info.value.message
    assert "jitctl login --ca-file" in (info.value.hint or "")
    assert "JITCTL_CA_FILE" in (info.value.hint or "")
    assert info.value.exit_code == ExitCode.UNREACHABLE


def test_broker_client_to_a_closed_port_is_unreachable_naming_the_url() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"https://127.0.0.1:{sock.getsockname()[1]}"
    with BrokerClient(url) as api, pytest.raises(UnreachableError, match=url) as info:
        api.info()
    # Most commands take no --broker flag: the hint says where the URL is set.
    assert "running" in (info.value.hint or "") and "JITCTL_BROKER" in (info.value.hint or "")
    assert "jitctl login --broker URL" in (info.value.hint or "")


def test_targets_come_back_filtered_by_the_callers_groups(fake_broker: FakeBroker) -> None:
    token = fake_broker.issuer.mint("alice", email=None, groups=["eng"])
    with BrokerClient(fake_broker.url, fake_broker.ca_file) as api:
        assert [t["name"] for t in api.targets(token)] == ["pg-prod"]
    assert jwt.get_unverified_header(token)["kid"] == fake_broker.issuer.kid
