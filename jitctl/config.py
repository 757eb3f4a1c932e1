"""The broker's configuration file (TOML): its schema, defaults and validation.

Rules:
- Every key is known; an unknown key is an error, never silently ignored (a typo in a policy
  file must not turn a deny into nothing).
- A bad file is refused as a whole with one message per problem, each naming the file, the key
  path (``targets[1].address``) and what is wrong.
- Every key here is documented in docs/configuration.md.
"""

from __future__ import annotations

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


class RuleMatch(_Model):
    statement: list[str] = []
    tables: list[str] = []
    functions: list[str] = []
    groups: list[str] = []
    command: list[str] = []
    method: list[str] = []
    path: list[str] = []


class Rule(_Model):
    name: str = ""
    match: RuleMatch = RuleMatch()
    action: Literal["allow", "deny", "approve"]
    approvers: list[str] = []
    message: str = ""


class Mask(_Model):
    columns: list[str] = []
    detectors: list[str] = []


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

    _durations = field_validator("max_session", mode="before")(_duration)

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


class AuditSection(_Model):
    checkpoint_every: int = Field(default=1000, ge=1)  # records between signed checkpoints
    checkpoint_interval: Duration = 10.0  # seconds between checkpoints while records arrive
    chunk_size: int = Field(default=16384, ge=256)

    _durations = field_validator("checkpoint_interval", mode="before")(_duration)


class BrokerConfig(_Model):
    broker: BrokerSection = BrokerSection()
    identity: IdentitySection = IdentitySection()
    dev: DevSection = DevSection()
    audit: AuditSection = AuditSection()
    targets: list[Target] = []

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

    def target(self, name: str) -> Target | None:
        return next((t for t in self.targets if t.name == name), None)


class _KeyProblem(ValueError):
    """A cross-field problem that still belongs to one key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(problem)
        self.key = key
        self.problem = problem


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
