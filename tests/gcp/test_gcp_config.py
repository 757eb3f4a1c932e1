"""`[gcp]` and `credential.gcp` are validated: each bad key is named with what is wrong."""

from __future__ import annotations

import pytest

from jitctl.config import parse_config
from jitctl.errors import ConfigError

AUDIENCE = "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/p/providers/b"
SA = "reader@proj.iam.gserviceaccount.com"


def _gcp(**target: object) -> dict[str, object]:
    return {"gcp": {"targets": [{"name": "g", "audience": AUDIENCE, **target}]}}


def test_a_full_section_loads() -> None:
    config = parse_config(
        {
            "gcp": {
                "sts_endpoint": "https://sts.googleapis.com/v1/token",
                "iam_endpoint": "http://127.0.0.1:9999",
                "subject_token_lifetime": "2m",
                "targets": [
                    {
                        "name": "g",
                        "audience": AUDIENCE,
                        "service_account": SA,
                        "lifetime": "30m",
                        "allow_groups": ["eng"],
                        "boundary": [
                            {
                                "resource": "//storage.googleapis.com/projects/_/buckets/b",
                                "permissions": ["inRole:roles/storage.objectViewer"],
                            }
                        ],
                    }
                ],
            },
            "targets": [
                {
                    "name": "db",
                    "protocol": "postgres",
                    "address": "10.0.0.7:5432",
                    "credential": {"gcp": "g", "database": "orders"},
                }
            ],
        },
        "broker.toml",
    )
    target = config.gcp.target("g")
    assert target is not None and target.lifetime == 1800
    assert target.scopes == ["https://www.googleapis.com/auth/cloud-platform"]
    assert config.gcp.subject_token_lifetime == 120
    assert config.targets[0].credential.gcp == "g"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            _gcp(audience="projects/my-proj/pools/p"),
            "gcp.targets[0].audience: expected //iam.googleapis.com/projects/<PROJECT_NUMBER>/"
            "locations/global/workloadIdentityPools/<POOL>/providers/<PROVIDER> (the project "
            "number, not its id)",
        ),
        (
            _gcp(service_account="reader@gmail.com"),
            "gcp.targets[0].service_account: expected a service account email such as "
            "reader@my-project.iam.gserviceaccount.com",
        ),
        (
            _gcp(lifetime="10m"),
            "gcp.targets[0].lifetime: applies only with service_account (a federated token lives "
            "as long as STS says)",
        ),
        (
            _gcp(service_account=SA, lifetime="2h"),
            "gcp.targets[0].lifetime: 2h is outside 1m..gcp.max_lifetime (1h)",
        ),
        (_gcp(scopes=[]), "gcp.targets[0].scopes: at least one scope is required"),
        (
            _gcp(boundary=[{"resource": "//storage.googleapis.com/x", "permissions": ["x"]}]),
            "gcp.targets[0].boundary[0].permissions: expected one or more inRole:roles/... entries",
        ),
        (
            _gcp(boundary=[{"resource": "bucket-b", "permissions": ["inRole:roles/x"]}]),
            "gcp.targets[0].boundary[0].resource: expected a full resource name such as "
            "//storage.googleapis.com/projects/_/buckets/BUCKET",
        ),
        (
            _gcp(boundary=[{"resource": "//s/b", "permissions": ["inRole:r"]}] * 11),
            "gcp.targets[0].boundary: at most 10 rules (the limit of a Credential Access Boundary)",
        ),
        (_gcp(audiense=AUDIENCE), "gcp.targets[0].audiense: unknown key"),
        (
            {"gcp": {"sts_endpoint": "http://sts.example.com/v1/token"}},
            "gcp.sts_endpoint: must be an https:// URL (http:// is accepted only for loopback)",
        ),
        (
            {"gcp": {"max_lifetime": "13h"}},
            "gcp.max_lifetime: must be between 1m and 12h (beyond 1h, generateAccessToken needs "
            "the org policy constraints/iam.allowServiceAccountCredentialLifetimeExtension)",
        ),
        (
            {"gcp": {"targets": [{"name": "g", "audience": AUDIENCE}] * 2}},
            "gcp.targets[1].name: duplicate gcp target name 'g' (first used at gcp.targets[0])",
        ),
        (
            {
                "targets": [
                    {
                        "name": "db",
                        "protocol": "postgres",
                        "address": "h:5432",
                        "credential": {"gcp": "nope"},
                    }
                ]
            },
            "targets[0].credential.gcp: 'nope' is not one of the [[gcp.targets]]",
        ),
        (
            {
                **_gcp(),
                "targets": [
                    {
                        "name": "db",
                        "protocol": "postgres",
                        "address": "h:5432",
                        "credential": {"gcp": "g"},
                    }
                ],
            },
            "targets[0].credential.gcp: gcp target 'g' has no service_account; Cloud SQL IAM "
            "login needs one",
        ),
        (
            {
                "targets": [
                    {
                        "name": "db",
                        "protocol": "postgres",
                        "address": "h:5432",
                        "credential": {"gcp": "g", "password_env": "PW"},
                    }
                ]
            },
            "targets[0].credential: gcp cannot be combined with password_env (the user name and "
            "password come from the service account: Cloud SQL IAM login)",
        ),
    ],
)
def test_bad_gcp_config_is_refused_with_the_key_and_the_reason(
    data: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "broker.toml")
    assert f"broker.toml: {message}" in caught.value.message
