"""`[gcp]`: GCP workload identity federation, and the `[[gcp.targets]]` it mints credentials for
(docs/gcp.md).

Rules:
- `audience` is the WIF provider's full resource name with the project *number*; a
  `service_account`, when given, is a *.gserviceaccount.com email.
- Lifetimes: subject tokens 1m..1h; `max_lifetime` 1m..12h (beyond 1h the org policy must allow
  it); a target's `lifetime` applies only with a service account and lies in 1m..max_lifetime.
- A Credential Access Boundary holds at most 10 rules, each with full resource names and
  `inRole:` permissions.
- Endpoints and the issuer are https:// (http:// only for loopback emulators).
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from jitctl.config._model import (
    Duration,
    KeyProblem,
    Model,
    check_unique_names,
    duration,
    https_url,
    optional_https_url,
)
from jitctl.durations import format_duration

GCP_WORKLOAD_AUDIENCE = re.compile(
    r"^//iam\.googleapis\.com/projects/(\d+)/locations/global/workloadIdentityPools/"
    r"([a-z0-9-]+)/providers/([a-z0-9-]+)$"
)
GCP_SERVICE_ACCOUNT = re.compile(r"^[a-z0-9][a-z0-9-]*@[a-z0-9][a-z0-9.-]*\.gserviceaccount\.com$")


class GcpBoundaryRule(Model):
    """One Credential Access Boundary rule (google.auth.downscoped.AccessBoundaryRule)."""

    resource: str
    permissions: list[str]
    condition: str = ""  # a CEL expression (availabilityCondition)

    @field_validator("resource")
    @classmethod
    def _resource(cls, value: str) -> str:
        if not value.startswith("//"):
            raise ValueError(
                "expected a full resource name such as "
                "//storage.googleapis.com/projects/_/buckets/BUCKET"
            )
        return value

    @field_validator("permissions")
    @classmethod
    def _permissions(cls, value: list[str]) -> list[str]:
        if not value or not all(p.startswith("inRole:") for p in value):
            raise ValueError("expected one or more inRole:roles/... entries")
        return value


class GcpTarget(Model):
    """Something `jitctl creds gcp --target NAME` mints a credential for."""

    name: str = Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
    description: str = ""
    allow_groups: list[str] = []
    audience: str
    service_account: str = ""
    scopes: list[str] = ["https://www.googleapis.com/auth/cloud-platform"]
    lifetime: Duration = 900.0
    boundary: list[GcpBoundaryRule] = []

    _durations = field_validator("lifetime", mode="before")(duration)

    @field_validator("audience")
    @classmethod
    def _audience(cls, value: str) -> str:
        if not GCP_WORKLOAD_AUDIENCE.match(value):
            raise ValueError(
                "expected //iam.googleapis.com/projects/<PROJECT_NUMBER>/locations/global/"
                "workloadIdentityPools/<POOL>/providers/<PROVIDER> (the project number, not its id)"
            )
        return value

    @field_validator("service_account")
    @classmethod
    def _service_account(cls, value: str) -> str:
        if value and not GCP_SERVICE_ACCOUNT.match(value):
            raise ValueError(
                "expected a service account email such as reader@my-project.iam.gserviceaccount.com"
            )
        return value

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        if not value or not all(value):
            raise ValueError("at least one scope is required")
        return value

    @field_validator("boundary")
    @classmethod
    def _boundary(cls, value: list[GcpBoundaryRule]) -> list[GcpBoundaryRule]:
        if len(value) > 10:
            raise ValueError("at most 10 rules (the limit of a Credential Access Boundary)")
        return value


class GcpSection(Model):
    sts_endpoint: str = "https://sts.googleapis.com/v1/token"
    iam_endpoint: str = "https://iamcredentials.googleapis.com"
    issuer: str = ""  # iss of the broker's subject tokens; empty: <public_url>/gcp
    subject_token_lifetime: Duration = 300.0
    max_lifetime: Duration = 3600.0
    timeout: Duration = 15.0
    targets: list[GcpTarget] = []

    _durations = field_validator(
        "subject_token_lifetime", "max_lifetime", "timeout", mode="before"
    )(duration)
    _endpoints = field_validator("sts_endpoint", "iam_endpoint")(https_url)

    _issuer = field_validator("issuer")(optional_https_url)

    @model_validator(mode="after")
    def _limits(self) -> GcpSection:
        if not 60 <= self.subject_token_lifetime <= 3600:
            raise KeyProblem("gcp.subject_token_lifetime", "must be between 1m and 1h")
        if not 60 <= self.max_lifetime <= 43200:
            raise KeyProblem(
                "gcp.max_lifetime",
                "must be between 1m and 12h (beyond 1h, generateAccessToken needs the org policy "
                "constraints/iam.allowServiceAccountCredentialLifetimeExtension)",
            )
        check_unique_names(self.targets, "gcp.targets", "gcp target")
        for index, target in enumerate(self.targets):
            key = f"gcp.targets[{index}]"
            if "lifetime" in target.model_fields_set and not target.service_account:
                raise KeyProblem(
                    f"{key}.lifetime",
                    "applies only with service_account (a federated token lives as long as STS "
                    "says)",
                )
            if not 60 <= target.lifetime <= self.max_lifetime:
                raise KeyProblem(
                    f"{key}.lifetime",
                    f"{format_duration(target.lifetime)} is outside 1m..gcp.max_lifetime "
                    f"({format_duration(self.max_lifetime)})",
                )
        return self

    def target(self, name: str) -> GcpTarget | None:
        return next((t for t in self.targets if t.name == name), None)
