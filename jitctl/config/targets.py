"""`[[targets]]`: what a target is, who may reach it, and the policy its sessions run under.

Rules:
- A target's `name` is unique in the file (checked by BrokerConfig) and made of letters, digits,
  ".", "_" and "-"; `protocol` is one of PROTOCOLS; `address` is HOST:PORT or, for http, a URL.
- Whatever can wait for approval has somebody who may give it: an approve rule needs approvers
  (its own or `[targets.access]`), and so does `default_action = "approve"`.
- A held statement cannot outlive its session: `access.approval_timeout` < `max_session`.
- `credential.gcp` stands alone: the user name and password come from the service account.
- Protocol options live in their own table (`[targets.ssh]`, `[targets.http]`) and are
  interpreted by that protocol's plugin.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from jitctl.config._model import Duration, KeyProblem, Model, duration, optional_https_url

PROTOCOLS = ("postgres", "ssh", "http", "tcp")


class Credential(Model):
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


class RuleMatch(Model):
    statement: list[str] = []
    tables: list[str] = []
    functions: list[str] = []
    groups: list[str] = []
    command: list[str] = []
    method: list[str] = []
    path: list[str] = []
    body: dict[str, list[str]] = {}  # http: JSON body field (dotted path) -> value globs


class Rule(Model):
    name: str = ""
    match: RuleMatch = RuleMatch()
    action: Literal["allow", "deny", "approve"]
    approvers: list[str] = []
    min_approvals: int = Field(default=1, ge=1, le=10)  # approve rules (docs/approvals.md)
    message: str = ""


class Mask(Model):
    columns: list[str] = []
    detectors: list[str] = []


class UpstreamTlsFiles(Model):
    """The files of the broker's TLS to a target's upstream (`http` and `postgres` options):
    the CA(s) its certificate must chain to (else the system's CAs), and a client certificate
    for upstreams that ask for one (mutual TLS)."""

    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""

    @model_validator(mode="after")
    def _tls_files(self) -> UpstreamTlsFiles:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file go together: set both or neither")
        return self


class HttpOptions(UpstreamTlsFiles):
    """`[targets.http]`: the HTTP reverse proxy (docs/http.md); TLS files for https."""

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


class PostgresOptions(UpstreamTlsFiles):
    """`[targets.postgres]`: the Postgres gateway (docs/postgres.md); TLS files for `tls`."""

    # "all": every statement is on record (durably) before the server sees it; "changes": a
    # statement the classifier proves is a plain read (SELECT or SHOW, no function call, no
    # locking clause, no INTO, nothing written) is forwarded at once and its record rides the
    # next commit (faster; a broker crash can lose the record of a read in flight).
    write_ahead: Literal["all", "changes"] = "all"
    # TLS from the broker to the server, with libpq's sslmode words: "prefer" asks for TLS and
    # takes plain TCP if the server has none; "require" refuses plain TCP but checks no
    # certificate; "verify-ca" checks the chain against `tls_ca_file` (else the system's CAs);
    # "verify-full" also checks the host name of `address`.
    tls: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] = "prefer"

    @model_validator(mode="after")
    def _tls_mode(self) -> PostgresOptions:
        if self.tls == "disable" and (self.tls_ca_file or self.tls_cert_file):
            raise ValueError('tls = "disable" uses no certificate: drop the tls_*_file keys')
        return self


class SshOptions(Model):
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


class AccessRules(Model):
    """`[targets.access]`: access requests and held statements (docs/approvals.md)."""

    require_request: bool = False  # sessions need an approved `jitctl request create`
    approvers: list[str] = []  # groups that may approve requests (and approve rules without own)
    min_approvals: int = Field(default=1, ge=1, le=10)  # distinct approvers per access request
    max_duration: Duration = 14400.0  # longest grant a request may ask for
    auto_approve_groups: list[str] = []  # requests from these groups are granted at once
    approval_timeout: Duration = 120.0  # a held statement not approved by then fails
    webhook: str = ""  # Slack-compatible incoming webhook for this target's requests

    _durations = field_validator("max_duration", "approval_timeout", mode="before")(duration)
    _webhooks = field_validator("webhook")(optional_https_url)

    @model_validator(mode="after")
    def _limits(self) -> AccessRules:
        if not 60 <= self.max_duration <= 30 * 86400:
            raise KeyProblem("max_duration", "must be between 1m and 30d", relative=True)
        if not 1 <= self.approval_timeout <= 3600:
            raise KeyProblem(
                "approval_timeout",
                "must be between 1s and 1h (and below the server's statement and "
                "idle-in-transaction timeouts)",
                relative=True,
            )
        if self.require_request and not (self.approvers or self.auto_approve_groups):
            raise KeyProblem(
                "require_request",
                "nobody could grant a request: set approvers or auto_approve_groups",
                relative=True,
            )
        return self


class Target(Model):
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
    postgres: PostgresOptions = PostgresOptions()
    ssh: SshOptions = SshOptions()
    http: HttpOptions = HttpOptions()
    access: AccessRules = AccessRules()

    _durations = field_validator("max_session", mode="before")(duration)

    @model_validator(mode="after")
    def _approvers(self) -> Target:
        """Whatever waits for approval must have somebody who may give it (docs/approvals.md)."""
        for index, rule in enumerate(self.rules):
            if rule.action == "approve" and not (rule.approvers or self.access.approvers):
                raise KeyProblem(
                    f"rules[{index}].approvers",
                    "an approve rule needs approvers (here, or in [targets.access] approvers)",
                    relative=True,
                )
        if self.default_action == "approve" and not self.access.approvers:
            raise KeyProblem(
                "access.approvers",
                'default_action = "approve" needs approvers in [targets.access]',
                relative=True,
            )
        if self.access.approval_timeout >= self.max_session:
            raise KeyProblem(
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
