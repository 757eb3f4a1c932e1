"""`jitctl creds gcp` end to end: CLI -> broker subprocess -> google-auth -> the emulator."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt

from jitctl.errors import ExitCode
from jitctl.testing.broker import BrokerProcess
from jitctl.testing.gcp_emulator import GcpEmulator
from jitctl.testing.issuer import TokenIssuer
from tests.gcp.support import AUDIENCE, FORBIDDEN, READER, SUBJECT, audit_records, run_json


def test_federated_token_names_the_callers_subject(
    broker: BrokerProcess, emulator: GcpEmulator
) -> None:
    answer = run_json(broker, "creds", "gcp", "--target", "federated", "--json")
    issued = emulator.find(answer["access_token"])
    assert issued is not None and issued.kind == "federated"
    assert issued.subject == SUBJECT
    assert answer["principal"] == emulator.principal(AUDIENCE, SUBJECT) == issued.principal
    assert answer["service_account"] is None and answer["boundary"] is None
    assert abs(answer["expires_at"] - (time.time() + 3600)) < 30
    assert answer["expire_time"].endswith("Z")
    # The subject token STS saw was the broker's, naming the caller and the grant.
    assert issued.claims["iss"] == broker.url + "/gcp"
    assert issued.claims["aud"] == "https:" + AUDIENCE
    assert issued.claims["target"] == "federated"
    assert issued.claims["grant"] == answer["grant_id"]
    assert issued.claims["email"] == "a7@example.com"
    assert issued.claims["exp"] - issued.claims["iat"] <= 300


def test_impersonation_gives_the_service_accounts_token_with_the_target_lifetime(
    broker: BrokerProcess, emulator: GcpEmulator
) -> None:
    answer = run_json(broker, "creds", "gcp", "--target", "reader", "--json")
    issued = emulator.find(answer["access_token"])
    assert issued is not None and issued.kind == "service_account"
    assert issued.service_account == READER and answer["principal"] == READER
    assert issued.subject == SUBJECT  # the emulator's log names the person behind it
    assert issued.lifetime == 600
    assert answer["expires_at"] == issued.expires_at
    assert (
        answer["scopes"] == issued.scopes == ["https://www.googleapis.com/auth/bigquery.readonly"]
    )
    # google-auth asked STS for the iam scope only, and IAM for lifetime 600s.
    generate = [r for r in emulator.requests if r["path"].endswith(":generateAccessToken")][-1]
    assert generate["fields"]["lifetime"] == "600s"
    assert generate["fields"]["delegates"] is None
    federated = emulator.find(
        next(t.source for t in emulator.issued if t.token == answer["access_token"])
    )
    assert federated is not None and federated.scopes == ["https://www.googleapis.com/auth/iam"]


def test_boundary_reaches_sts(broker: BrokerProcess, emulator: GcpEmulator) -> None:
    answer = run_json(broker, "creds", "gcp", "--target", "bucket", "--json")
    issued = emulator.find(answer["access_token"])
    assert issued is not None and issued.kind == "downscoped"
    assert issued.subject == SUBJECT and issued.service_account == READER
    rule = issued.boundary["accessBoundaryRules"][0]  # type: ignore[index]
    assert rule["availableResource"] == "//storage.googleapis.com/projects/_/buckets/reports"
    assert rule["availablePermissions"] == ["inRole:roles/storage.objectViewer"]
    assert rule["availabilityCondition"]["expression"].startswith("resource.name.startsWith(")
    assert answer["boundary"][0]["resource"] == rule["availableResource"]
    # The downscoped token dies with its source (STS sends no expires_in).
    source = emulator.find(issued.source)
    assert source is not None and answer["expires_at"] == source.expires_at


def test_plain_output_is_the_token_alone_and_the_expiry_goes_to_stderr(
    broker: BrokerProcess, emulator: GcpEmulator
) -> None:
    result = broker.jitctl("creds", "gcp", "--target", "federated")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert emulator.find(token) is not None
    assert "valid until" in result.stderr and "principal://" in result.stderr


def test_output_file_is_private(broker: BrokerProcess, tmp_path: Path) -> None:
    path = tmp_path / "token"
    result = broker.jitctl("creds", "gcp", "--target", "federated", "--output", str(path))
    assert result.returncode == 0, result.stderr
    assert path.stat().st_mode & 0o777 == 0o600
    assert result.stdout == ""


def test_every_mint_is_recorded_without_the_token(broker: BrokerProcess) -> None:
    answer = run_json(broker, "creds", "gcp", "--target", "reader", "--json")
    records = audit_records(broker, "gcp.credential")
    record = next(r for r in records if r.payload["grant_id"] == answer["grant_id"])
    assert record.actor.subject == SUBJECT and record.actor.email == "a7@example.com"
    assert record.target == "reader"
    assert record.payload["principal"] == READER
    assert record.payload["scopes"] == answer["scopes"]
    assert record.payload["expires_at"] == answer["expires_at"]
    assert record.payload["federated_principal"].endswith("/subject/" + SUBJECT)
    everything = json.dumps([r.payload for r in audit_records(broker)])
    assert answer["access_token"] not in everything


def test_several_targets_and_none_chosen_is_a_usage_error(broker: BrokerProcess) -> None:
    result = broker.jitctl("creds", "gcp")
    assert result.returncode == ExitCode.USAGE
    assert "choose a gcp target with --target: federated, reader" in result.stderr


# -- refusals: each a clear message, a documented exit code and a record ----------------------


def _last_error(broker: BrokerProcess) -> dict[str, object]:
    record = audit_records(broker, "gcp.credential.error")[-1]
    return {"target": record.target, "subject": record.actor.subject, **record.payload}


def test_target_outside_the_callers_groups_is_denied(broker: BrokerProcess) -> None:
    result = broker.jitctl("creds", "gcp", "--target", "dba-only")
    assert result.returncode == ExitCode.DENIED
    assert (
        "agent-7 may not use gcp target 'dba-only' (needs one of the groups: dba)" in result.stderr
    )
    error = _last_error(broker)
    assert error["target"] == "dba-only" and error["stage"] == "policy"
    assert error["subject"] == SUBJECT and error["error"] == "denied"


def test_unknown_target_is_a_usage_error(broker: BrokerProcess) -> None:
    result = broker.jitctl("creds", "gcp", "--target", "nope")
    assert result.returncode == ExitCode.USAGE
    assert "no gcp target named 'nope'" in result.stderr


def test_sts_rejecting_the_subject_token_carries_its_reason(broker: BrokerProcess) -> None:
    result = broker.jitctl("creds", "gcp", "--target", "untrusted")
    assert result.returncode == ExitCode.ERROR
    assert (
        "no GCP credential: STS refused the token exchange: invalid_grant: The key ID"
        in result.stderr
    )
    assert "hint: the WIF provider must trust the broker's issuer and JWKS" in result.stderr
    error = _last_error(broker)
    assert error["stage"] == "sts" and error["target"] == "untrusted"
    upstream = error["upstream"]
    assert isinstance(upstream, dict) and upstream["service"] == "sts"
    assert upstream["error"] == "invalid_grant"
    assert upstream["description"].startswith("The key ID")


def test_an_audience_sts_does_not_know_is_reported_as_sts_says(broker: BrokerProcess) -> None:
    result = broker.jitctl("creds", "gcp", "--target", "deleted-provider")
    assert result.returncode == ExitCode.ERROR
    assert (
        'STS refused the token exchange: invalid_target: The target service indicated by the "'
        'audience" parameters is invalid.' in result.stderr
    )
    assert _last_error(broker)["stage"] == "sts"


def test_sts_attribute_condition_refusal_is_a_denial(broker: BrokerProcess) -> None:
    result = broker.jitctl("creds", "gcp", "--target", "conditioned")
    assert result.returncode == ExitCode.DENIED
    assert (
        "STS refused the token exchange: unauthorized_client: The given credential is rejected "
        "by the attribute condition." in result.stderr
    )
    assert _last_error(broker)["error"] == "upstream_denied"


def test_iam_permission_denied_carries_googles_reason(broker: BrokerProcess) -> None:
    result = broker.jitctl("creds", "gcp", "--target", "forbidden")
    assert result.returncode == ExitCode.DENIED
    assert (
        f"IAM Credentials refused generateAccessToken for {FORBIDDEN}: PERMISSION_DENIED: "
        "Permission 'iam.serviceAccounts.getAccessToken' denied on resource "
        "(or it may not exist)." in result.stderr
    )
    assert "roles/iam.workloadIdentityUser" in result.stderr
    error = _last_error(broker)
    assert error["stage"] == "iam" and error["error"] == "upstream_denied"
    assert error["upstream"]["error"] == "PERMISSION_DENIED"  # type: ignore[index]


def test_the_callers_own_expired_token_is_refused_and_recorded(
    broker: BrokerProcess, token_issuer: TokenIssuer, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(token_issuer.mint(sub="late-agent", groups=["agents"], lifetime=600))
    env = {"JITCTL_HOME": str(tmp_path / "home")}
    assert broker.jitctl("login", "--token-file", str(token_file), env=env).returncode == 0
    token_file.write_text(
        token_issuer.mint(sub="late-agent", groups=["agents"], iat=1, nbf=1, exp=100)
    )
    result = broker.jitctl("creds", "gcp", "--target", "federated", env=env)
    assert result.returncode == ExitCode.AUTH
    assert "the broker rejected your identity" in result.stderr and "expired" in result.stderr
    assert "run `jitctl login`" in result.stderr
    error = _last_error(broker)
    assert error["stage"] == "identity" and error["subject"] == ""
    assert error["unverified_subject"] == "late-agent" and error["target"] == "federated"


def test_no_route_hands_out_a_token_for_an_unverified_caller(broker: BrokerProcess) -> None:
    import httpx

    forged = jwt.encode({"sub": SUBJECT, "exp": time.time() + 60}, "k" * 32, algorithm="HS256")
    for path in ("/v1/creds/gcp", "/v1/creds/gcp/subject-token"):
        response = httpx.post(
            broker.url + path,
            json={"target": "federated"},
            verify=broker.verify(),
            headers={"Authorization": f"Bearer {forged}"},
        )
        assert response.status_code == 401
        assert "access_token" not in response.text and "subject_token" not in response.text
