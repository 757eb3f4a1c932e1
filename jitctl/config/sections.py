"""The file's top level: `[broker]`, `[identity]`, `[dev]`, `[audit]`, `[approvals]`, and
BrokerConfig, which holds every table and checks the rules that span them.

Rules:
- `[broker] listen` is HOST:PORT; `store` is empty (SQLite in state_dir) or a sqlite://,
  postgresql:// or postgres:// URL.
- An issuer is https:// (http:// only for loopback test issuers) and verifies with asymmetric
  algorithms only: an HS* key would be the issuer's public key (alg confusion).
- `broker.login_issuer` names one of the `[[identity.issuers]]`.
- Target names are unique; a target's `credential.gcp` names one of the `[[gcp.targets]]`, and
  one with no service account serves only http targets (Cloud SQL IAM login needs one).
- `[approvals]` limits: poll 50ms..60s, request_ttl 1m..30d, webhook_timeout 100ms..60s.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from jitctl.config._model import (
    Duration,
    KeyProblem,
    Model,
    check_unique_names,
    duration,
    optional_https_url,
)
from jitctl.config.gcp import GcpSection
from jitctl.config.targets import Target

DEFAULT_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
ASYMMETRIC = set(DEFAULT_ALGORITHMS) | {"PS384", "PS512", "ES512"}


class BrokerSection(Model):
    listen: str = "127.0.0.1:8443"
    state_dir: str = "/var/lib/jitctl"
    store: str = ""  # empty: sqlite in state_dir
    public_url: str = ""  # how clients reach the broker; default https://<listen>
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    login_issuer: str = ""  # which [[identity.issuers]] `jitctl login` uses
    tls_cert: str = ""  # PEM chain; empty: a local CA and certificate made in state_dir
    tls_key: str = ""
    shutdown_grace: Duration = 5.0
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"  # jitctl.eventloop

    _durations = field_validator("shutdown_grace", mode="before")(duration)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError("expected HOST:PORT, for example 127.0.0.1:8443")
        return value

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        if value and not value.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("expected sqlite:///path/to/audit.db or postgresql://...")
        return value


class Issuer(Model):
    issuer: str
    audience: str | list[str] = "jitctl"
    groups_claim: str = "groups"
    email_claim: str = "email"
    client_id: str = ""  # the CLI's client id at this IdP, for `jitctl login`
    scopes: list[str] = ["openid", "email", "profile", "offline_access"]
    algorithms: list[str] = DEFAULT_ALGORITHMS
    jwks_uri: str = ""  # default: from the issuer's discovery document
    leeway: Duration = 60.0
    jwks_cache: Duration = 600.0
    jwks_refetch_interval: Duration = 30.0
    max_token_lifetime: Duration = 86400.0
    ca_file: str = ""  # extra CA to trust for discovery/JWKS

    _durations = field_validator(
        "leeway", "jwks_cache", "jwks_refetch_interval", "max_token_lifetime", mode="before"
    )(duration)

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        if value.startswith("https://"):
            return value
        if value.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
            return value  # loopback test issuers only
        raise ValueError("must be an https:// URL (http:// is accepted only for loopback)")

    @field_validator("algorithms")
    @classmethod
    def _algorithms(cls, value: list[str]) -> list[str]:
        bad = [alg for alg in value if alg not in ASYMMETRIC]
        if bad:
            raise ValueError(
                f"{', '.join(bad)} not allowed; only asymmetric algorithms "
                f"({', '.join(sorted(ASYMMETRIC))}) can verify tokens from an issuer"
            )
        if not value:
            raise ValueError("at least one algorithm is required")
        return value


class IdentitySection(Model):
    issuers: list[Issuer] = []


class DevUser(Model):
    name: str
    email: str = ""
    groups: list[str] = []


class DevClient(Model):
    client_id: str
    client_secret: str
    subject: str = ""
    groups: list[str] = []


class DevSection(Model):
    users: list[DevUser] = []
    clients: list[DevClient] = []
    token_lifetime: Duration = 3600.0
    auto_approve_user: str = ""  # authorize without a form (tests, demo)

    _durations = field_validator("token_lifetime", mode="before")(duration)


class AuditSection(Model):
    checkpoint_every: int = Field(default=1000, ge=1)  # records between signed checkpoints
    checkpoint_interval: Duration = 10.0  # seconds between checkpoints while records arrive
    chunk_size: int = Field(default=16384, ge=256)

    _durations = field_validator("checkpoint_interval", mode="before")(duration)


class ApprovalsSection(Model):
    """`[approvals]`: settings shared by every target's requests (docs/approvals.md)."""

    webhook: str = ""  # Slack-compatible incoming webhook for targets without their own
    webhook_retries: int = Field(default=5, ge=0, le=20)  # after the first attempt
    webhook_timeout: Duration = 5.0
    poll_interval: Duration = 1.0  # how often brokers re-read decisions (SQLite; safety net)
    request_ttl: Duration = 86400.0  # an access request nobody decides expires after this

    _durations = field_validator("webhook_timeout", "poll_interval", "request_ttl", mode="before")(
        duration
    )
    _webhooks = field_validator("webhook")(optional_https_url)

    @model_validator(mode="after")
    def _limits(self) -> ApprovalsSection:
        if not 0.05 <= self.poll_interval <= 60:
            raise KeyProblem("approvals.poll_interval", "must be between 50ms and 60s")
        if not 60 <= self.request_ttl <= 30 * 86400:
            raise KeyProblem("approvals.request_ttl", "must be between 1m and 30d")
        if not 0.1 <= self.webhook_timeout <= 60:
            raise KeyProblem("approvals.webhook_timeout", "must be between 100ms and 60s")
        return self


class BrokerConfig(Model):
    broker: BrokerSection = BrokerSection()
    identity: IdentitySection = IdentitySection()
    dev: DevSection = DevSection()
    audit: AuditSection = AuditSection()
    targets: list[Target] = []
    gcp: GcpSection = GcpSection()
    approvals: ApprovalsSection = ApprovalsSection()

    @model_validator(mode="after")
    def _unique_targets(self) -> BrokerConfig:
        check_unique_names(self.targets, "targets", "target")
        names = {issuer.issuer for issuer in self.identity.issuers}
        if self.broker.login_issuer and self.broker.login_issuer not in names:
            raise KeyProblem(
                "broker.login_issuer",
                f"{self.broker.login_issuer!r} is not one of the [[identity.issuers]]",
            )
        return self

    @model_validator(mode="after")
    def _gcp_credentials(self) -> BrokerConfig:
        for index, target in enumerate(self.targets):
            name = target.credential.gcp
            if not name:
                continue
            gcp = self.gcp.target(name)
            if gcp is None:
                raise KeyProblem(
                    f"targets[{index}].credential.gcp",
                    f"{name!r} is not one of the [[gcp.targets]]",
                )
            if not gcp.service_account and target.protocol != "http":
                raise KeyProblem(
                    f"targets[{index}].credential.gcp",
                    f"gcp target {name!r} has no service_account; Cloud SQL IAM login needs one",
                )
        return self

    def target(self, name: str) -> Target | None:
        return next((t for t in self.targets if t.name == name), None)
