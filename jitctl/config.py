"""The broker's configuration file (TOML): its schema, defaults and validation.

Rules:
- Every key is known; an unknown key is an error, never silently ignored (a typo in a policy
  file must not turn a deny into nothing).
- A bad file is refused as a whole with one message per problem, each naming the file, the key
  path (``targets[1].address``) and what is wrong.
- Every key here is documented in docs/configuration.md.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from jitctl.durations import parse_duration
from jitctl.errors import ConfigError

PROTOCOLS = ("postgres", "ssh", "http", "tcp")
DEFAULT_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
ASYMMETRIC = set(DEFAULT_ALGORITHMS) | {"PS384", "PS512", "ES512"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _duration(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as 30s, 15m or 1h")
    return parse_duration(value)


Duration = Annotated[float, Field(ge=0)]


class BrokerSection(_Model):
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

    _durations = field_validator("shutdown_grace", mode="before")(_duration)

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


class Issuer(_Model):
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
    )(_duration)

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


class IdentitySection(_Model):
    issuers: list[Issuer] = []


class DevUser(_Model):
    name: str
    email: str = ""
    groups: list[str] = []


class DevClient(_Model):
    client_id: str
    client_secret: str
    subject: str = ""
    groups: list[str] = []


class DevSection(_Model):
    users: list[DevUser] = []
    clients: list[DevClient] = []
    token_lifetime: Duration = 3600.0
    auto_approve_user: str = ""  # authorize without a form (tests, demo)

    _durations = field_validator("token_lifetime", mode="before")(_duration)


class Credential(_Model):
    user: str = ""
    password_env: str = ""
    password_file: str = ""
    key_file: str = ""
    token_env: str = ""
    database: str = ""
    gcp: str = ""  # a [[gcp.targets]] name: Cloud SQL IAM login (docs/gcp.md)

    @model_validator(mode="after")
    def _gcp_alone(self) -> Credential:
        keys = ("user", "password_env", "password_file", "token_env")
        mixed = [k for k in keys if getattr(self, k)]
        if self.gcp and mixed:
            raise ValueError(
                f"gcp cannot be combined with {', '.join(mixed)} (the user name and password "
                "come from the service account: Cloud SQL IAM login)"
            )
        return self


class RuleMatch(_Model):
    statement: list[str] = []
    tables: list[str] = []
    functions: list[str] = []
    groups: list[str] = []
    command: list[str] = []
    method: list[str] = []
    path: list[str] = []
    body: dict[str, list[str]] = {}  # http: JSON body field (dotted path) -> value globs


class Rule(_Model):
    name: str = ""
    match: RuleMatch = RuleMatch()
    action: Literal["allow", "deny", "approve"]
    approvers: list[str] = []
    min_approvals: int = Field(default=1, ge=1, le=10)  # approve rules (docs/approvals.md)
    message: str = ""


class Mask(_Model):
    columns: list[str] = []
    detectors: list[str] = []


class HttpOptions(_Model):
    """`[targets.http]`: the HTTP reverse proxy (docs/http.md)."""

    auth_header: str = "Authorization"  # where the broker's credential goes
    auth_scheme: str = "Bearer"  # "" for a bare API key; "Basic" for credential.user:password
    drop_headers: list[str] = []  # more client headers to remove (Authorization etc. always are)
    drop_cookies: bool = True  # a client's cookies are a credential too
    record_headers: list[str] = [
        "content-type",
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "user-agent",
        "accept",
        "location",
        "x-request-id",
        "authorization",
        "cookie",
        "set-cookie",
    ]
    body_limit: int = Field(default=4096, ge=0, le=1 << 20)  # bytes of each body recorded
    mask_limit: int = Field(default=8 << 20, ge=1024, le=256 << 20)  # largest body masked
    # "all": every request is on record (durably) before it is forwarded; "changes": only
    # requests that can change something (not GET, HEAD, OPTIONS) wait, reads are recorded
    # when they end (faster; a broker crash can lose the record of a read in flight).
    write_ahead: Literal["all", "changes"] = "all"


class SshOptions(_Model):
    """`[targets.ssh]`: what an ssh target allows besides its exec rules (docs/ssh.md)."""

    host_keys: list[str] = []  # the host's public keys, "ssh-ed25519 AAAA..."
    known_hosts: str = ""  # or an OpenSSH known_hosts file; neither: trust on first use
    users: dict[str, str] = {}  # caller's group -> upstream user (else credential.user)
    shell: bool = True
    sftp: bool = True
    upload: bool = True
    download: bool = True
    forward: list[str] = []  # "HOST:PORT" globs for ssh -L / -W / -D
    remote_forward: list[str] = []  # "ADDRESS:PORT" globs for ssh -R

    @field_validator("host_keys")
    @classmethod
    def _host_keys(cls, value: list[str]) -> list[str]:
        for line in value:
            parts = line.split()
            if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-", "sk-")):
                raise ValueError(
                    f"expected a public key such as 'ssh-ed25519 AAAA...', got {line!r}"
                )
        return value

    @field_validator("forward", "remote_forward")
    @classmethod
    def _destinations(cls, value: list[str]) -> list[str]:
        for item in value:
            host, sep, port = item.rpartition(":")
            if not sep or not host or not port:
                raise ValueError(
                    f"expected HOST:PORT (globs allowed, e.g. 10.0.0.*:5432), got {item!r}"
                )
        return value


def _webhook(value: str) -> str:
    return _loopback_or_https(value) if value else value


class AccessRules(_Model):
    """`[targets.access]`: access requests and held statements (docs/approvals.md)."""

    require_request: bool = False  # sessions need an approved `jitctl request create`
    approvers: list[str] = []  # groups that may approve requests (and approve rules without own)
    min_approvals: int = Field(default=1, ge=1, le=10)  # distinct approvers per access request
    max_duration: Duration = 14400.0  # longest grant a request may ask for
    auto_approve_groups: list[str] = []  # requests from these groups are granted at once
    approval_timeout: Duration = 120.0  # a held statement not approved by then fails
    webhook: str = ""  # Slack-compatible incoming webhook for this target's requests

    _durations = field_validator("max_duration", "approval_timeout", mode="before")(_duration)
    _webhooks = field_validator("webhook")(_webhook)

    @model_validator(mode="after")
    def _limits(self) -> AccessRules:
        if not 60 <= self.max_duration <= 30 * 86400:
            raise _KeyProblem("max_duration", "must be between 1m and 30d", relative=True)
        if not 1 <= self.approval_timeout <= 3600:
            raise _KeyProblem(
                "approval_timeout",
                "must be between 1s and 1h (and below the server's statement and "
                "idle-in-transaction timeouts)",
                relative=True,
            )
        if self.require_request and not (self.approvers or self.auto_approve_groups):
            raise _KeyProblem(
                "require_request",
                "nobody could grant a request: set approvers or auto_approve_groups",
                relative=True,
            )
        return self


class Target(_Model):
    name: str = Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
    protocol: str
    address: str
    description: str = ""
    allow_groups: list[str] = []
    max_session: Duration = 3600.0
    credential: Credential = Credential()
    default_action: Literal["allow", "deny", "approve"] = "allow"
    rules: list[Rule] = []
    masks: list[Mask] = []
    record_rows: int = Field(default=0, ge=0, le=1000)  # postgres: first N masked rows per result
    ssh: SshOptions = SshOptions()
    http: HttpOptions = HttpOptions()
    access: AccessRules = AccessRules()

    _durations = field_validator("max_session", mode="before")(_duration)

    @model_validator(mode="after")
    def _approvers(self) -> Target:
        """Whatever waits for approval must have somebody who may give it (docs/approvals.md)."""
        for index, rule in enumerate(self.rules):
            if rule.action == "approve" and not (rule.approvers or self.access.approvers):
                raise _KeyProblem(
                    f"rules[{index}].approvers",
                    "an approve rule needs approvers (here, or in [targets.access] approvers)",
                    relative=True,
                )
        if self.default_action == "approve" and not self.access.approvers:
            raise _KeyProblem(
                "access.approvers",
                'default_action = "approve" needs approvers in [targets.access]',
                relative=True,
            )
        if self.access.approval_timeout >= self.max_session:
            raise _KeyProblem(
                "access.approval_timeout",
                "must be shorter than max_session (a held statement would outlive its session)",
                relative=True,
            )
        return self

    @field_validator("protocol")
    @classmethod
    def _protocol(cls, value: str) -> str:
        if value not in PROTOCOLS:
            raise ValueError(f"unknown protocol {value!r}; expected one of {', '.join(PROTOCOLS)}")
        return value

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not value.startswith(("http://", "https://")) and (
            not sep or not host or not port.isdigit()
        ):
            raise ValueError("expected HOST:PORT (or a URL for http targets)")
        return value


def _loopback_or_https(value: str) -> str:
    if value.startswith("https://"):
        return value.rstrip("/")
    if value.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
        return value.rstrip("/")  # loopback emulators only
    raise ValueError("must be an https:// URL (http:// is accepted only for loopback)")


GCP_WORKLOAD_AUDIENCE = re.compile(
    r"^//iam\.googleapis\.com/projects/(\d+)/locations/global/workloadIdentityPools/"
    r"([a-z0-9-]+)/providers/([a-z0-9-]+)$"
)
GCP_SERVICE_ACCOUNT = re.compile(r"^[a-z0-9][a-z0-9-]*@[a-z0-9][a-z0-9.-]*\.gserviceaccount\.com$")


class GcpBoundaryRule(_Model):
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


class GcpTarget(_Model):
    """Something `jitctl creds gcp --target NAME` mints a credential for."""

    name: str = Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
    description: str = ""
    allow_groups: list[str] = []
    audience: str
    service_account: str = ""
    scopes: list[str] = ["https://www.googleapis.com/auth/cloud-platform"]
    lifetime: Duration = 900.0
    boundary: list[GcpBoundaryRule] = []

    _durations = field_validator("lifetime", mode="before")(_duration)

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


class GcpSection(_Model):
    sts_endpoint: str = "https://sts.googleapis.com/v1/token"
    iam_endpoint: str = "https://iamcredentials.googleapis.com"
    issuer: str = ""  # iss of the broker's subject tokens; empty: <public_url>/gcp
    subject_token_lifetime: Duration = 300.0
    max_lifetime: Duration = 3600.0
    timeout: Duration = 15.0
    targets: list[GcpTarget] = []

    _durations = field_validator(
        "subject_token_lifetime", "max_lifetime", "timeout", mode="before"
    )(_duration)
    _endpoints = field_validator("sts_endpoint", "iam_endpoint")(_loopback_or_https)

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        return _loopback_or_https(value) if value else value

    @model_validator(mode="after")
    def _limits(self) -> GcpSection:
        from jitctl.durations import format_duration

        if not 60 <= self.subject_token_lifetime <= 3600:
            raise _KeyProblem("gcp.subject_token_lifetime", "must be between 1m and 1h")
        if not 60 <= self.max_lifetime <= 43200:
            raise _KeyProblem(
                "gcp.max_lifetime",
                "must be between 1m and 12h (beyond 1h, generateAccessToken needs the org policy "
                "constraints/iam.allowServiceAccountCredentialLifetimeExtension)",
            )
        seen: dict[str, int] = {}
        for index, target in enumerate(self.targets):
            key = f"gcp.targets[{index}]"
            if target.name in seen:
                raise _KeyProblem(
                    f"{key}.name",
                    f"duplicate gcp target name {target.name!r} (first used at "
                    f"gcp.targets[{seen[target.name]}])",
                )
            seen[target.name] = index
            if "lifetime" in target.model_fields_set and not target.service_account:
                raise _KeyProblem(
                    f"{key}.lifetime",
                    "applies only with service_account (a federated token lives as long as STS "
                    "says)",
                )
            if not 60 <= target.lifetime <= self.max_lifetime:
                raise _KeyProblem(
                    f"{key}.lifetime",
                    f"{format_duration(target.lifetime)} is outside 1m..gcp.max_lifetime "
                    f"({format_duration(self.max_lifetime)})",
                )
        return self

    def target(self, name: str) -> GcpTarget | None:
        return next((t for t in self.targets if t.name == name), None)


class AuditSection(_Model):
    checkpoint_every: int = Field(default=1000, ge=1)  # records between signed checkpoints
    checkpoint_interval: Duration = 10.0  # seconds between checkpoints while records arrive
    chunk_size: int = Field(default=16384, ge=256)

    _durations = field_validator("checkpoint_interval", mode="before")(_duration)


class ApprovalsSection(_Model):
    """`[approvals]`: settings shared by every target's requests (docs/approvals.md)."""

    webhook: str = ""  # Slack-compatible incoming webhook for targets without their own
    webhook_retries: int = Field(default=5, ge=0, le=20)  # after the first attempt
    webhook_timeout: Duration = 5.0
    poll_interval: Duration = 1.0  # how often brokers re-read decisions (SQLite; safety net)
    request_ttl: Duration = 86400.0  # an access request nobody decides expires after this

    _durations = field_validator("webhook_timeout", "poll_interval", "request_ttl", mode="before")(
        _duration
    )
    _webhooks = field_validator("webhook")(_webhook)

    @model_validator(mode="after")
    def _limits(self) -> ApprovalsSection:
        if not 0.05 <= self.poll_interval <= 60:
            raise _KeyProblem("approvals.poll_interval", "must be between 50ms and 60s")
        if not 60 <= self.request_ttl <= 30 * 86400:
            raise _KeyProblem("approvals.request_ttl", "must be between 1m and 30d")
        if not 0.1 <= self.webhook_timeout <= 60:
            raise _KeyProblem("approvals.webhook_timeout", "must be between 100ms and 60s")
        return self


class BrokerConfig(_Model):
    broker: BrokerSection = BrokerSection()
    identity: IdentitySection = IdentitySection()
    dev: DevSection = DevSection()
    audit: AuditSection = AuditSection()
    targets: list[Target] = []
    gcp: GcpSection = GcpSection()
    approvals: ApprovalsSection = ApprovalsSection()

    @model_validator(mode="after")
    def _unique_targets(self) -> BrokerConfig:
        seen: dict[str, int] = {}
        for index, target in enumerate(self.targets):
            if target.name in seen:
                raise _KeyProblem(
                    f"targets[{index}].name",
                    f"duplicate target name {target.name!r} "
                    f"(first used at targets[{seen[target.name]}])",
                )
            seen[target.name] = index
        names = {issuer.issuer for issuer in self.identity.issuers}
        if self.broker.login_issuer and self.broker.login_issuer not in names:
            raise _KeyProblem(
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
                raise _KeyProblem(
                    f"targets[{index}].credential.gcp",
                    f"{name!r} is not one of the [[gcp.targets]]",
                )
            if not gcp.service_account and target.protocol != "http":
                raise _KeyProblem(
                    f"targets[{index}].credential.gcp",
                    f"gcp target {name!r} has no service_account; Cloud SQL IAM login needs one",
                )
        return self

    def target(self, name: str) -> Target | None:
        return next((t for t in self.targets if t.name == name), None)


class _KeyProblem(ValueError):
    """A cross-field problem that still belongs to one key (`relative`: a key inside the
    table being validated, e.g. a target's `access.max_duration`)."""

    def __init__(self, key: str, problem: str, relative: bool = False) -> None:
        super().__init__(problem)
        self.key = key
        self.problem = problem
        self.relative = relative


_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
}


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith(("function-", "union[")) or part in ("str", "list[str]"):
            continue
        else:
            path += ("." if path else "") + part
    return path or "(top level)"


def _describe(error: Any) -> tuple[str, str]:
    loc = tuple(error["loc"])
    kind = error["type"]
    given = error.get("input")
    if kind == "missing":
        return _key_path(loc), "required key is missing"
    if kind == "extra_forbidden":
        return _key_path(loc), "unknown key"
    if kind in _TYPE_WORDS:
        return _key_path(loc), f"expected {_TYPE_WORDS[kind]}, got {type(given).__name__} {given!r}"
    if kind == "literal_error":
        return _key_path(loc), f"{given!r} is not allowed; {error['msg'].lower()}"
    if kind == "string_pattern_mismatch":
        return _key_path(loc), f"{given!r} may hold only letters, digits, '.', '_' and '-'"
    if kind == "value_error":
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, _KeyProblem):
            if cause.relative and loc:
                return f"{_key_path(loc)}.{cause.key}", cause.problem
            return cause.key, cause.problem
        return _key_path(loc), str(cause) if cause else error["msg"]
    return _key_path(loc), error["msg"]


def parse_config(data: dict[str, Any], source: str) -> BrokerConfig:
    try:
        return BrokerConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key, problem = _describe(error)
            problems.append(f"{source}: {key}: {problem}")
        # With one union member per type, pydantic may report one key twice; say it once.
        problems = list(dict.fromkeys(problems))
        raise ConfigError(
            "invalid configuration\n  " + "\n  ".join(problems),
            "fix the keys above; docs/configuration.md documents every key",
        ) from None


def load_config(path: str | Path) -> BrokerConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file", "check the path given to --config") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", "fix the syntax at that line") from None
    return parse_config(data, str(path))
