"""The broker's configuration file (TOML): its schema, defaults and validation.

Rules:
- Every key is known; an unknown key is an error, never silently ignored (a typo in a policy
  file must not turn a deny into nothing).
- A bad file is refused as a whole with one message per problem, each naming the file, the key
  path (``targets[1].address``) and what is wrong.
- Every key here is documented in docs/configuration.md.

Where things are (each module states its own rules): `sections` the top-level tables and
BrokerConfig, `targets` the `[[targets]]` and their policy, `gcp` the `[gcp]` federation,
`loading` reading a file and wording its problems, `_model` what every section is made of.
Import from `jitctl.config`; the names below are its public surface.
"""

from __future__ import annotations

from jitctl.config._model import Duration
from jitctl.config.gcp import (
    GCP_SERVICE_ACCOUNT,
    GCP_WORKLOAD_AUDIENCE,
    GcpBoundaryRule,
    GcpSection,
    GcpTarget,
)
from jitctl.config.loading import load_config, parse_config
from jitctl.config.sections import (
    ASYMMETRIC,
    DEFAULT_ALGORITHMS,
    ApprovalsSection,
    AuditSection,
    BrokerConfig,
    BrokerSection,
    DevClient,
    DevSection,
    DevUser,
    IdentitySection,
    Issuer,
)
from jitctl.config.targets import (
    PROTOCOLS,
    AccessRules,
    Credential,
    HttpOptions,
    Mask,
    PostgresOptions,
    Rule,
    RuleMatch,
    SshOptions,
    Target,
)

__all__ = [
    "ASYMMETRIC",
    "DEFAULT_ALGORITHMS",
    "GCP_SERVICE_ACCOUNT",
    "GCP_WORKLOAD_AUDIENCE",
    "PROTOCOLS",
    "AccessRules",
    "ApprovalsSection",
    "AuditSection",
    "BrokerConfig",
    "BrokerSection",
    "Credential",
    "DevClient",
    "DevSection",
    "DevUser",
    "Duration",
    "GcpBoundaryRule",
    "GcpSection",
    "GcpTarget",
    "HttpOptions",
    "IdentitySection",
    "Issuer",
    "Mask",
    "PostgresOptions",
    "Rule",
    "RuleMatch",
    "SshOptions",
    "Target",
    "load_config",
    "parse_config",
]
