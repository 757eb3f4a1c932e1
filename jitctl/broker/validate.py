"""Checks of a config that need the protocol plugins: run at start and by `check-config`.

The config schema (jitctl.config) knows the keys; a plugin knows what its rules and masks
mean (a statement word the Postgres classifier has never heard of, a detector that does not
exist). A plugin may offer `validate_target(target)`, raising ConfigError; a target whose
protocol has no plugin installed is reported, since every session to it would be refused.
Keys only another protocol reads (`http` options on a postgres target) are reported: they do
nothing where they are. So is a Cloud SQL IAM login whose token would go to a server whose
certificate nobody checks. A config with no issuer is reported too: outside `--dev` (whose
built-in issuer is added at start) no token would verify, so nobody could log in or connect.
"""

from __future__ import annotations

from jitctl.config import BrokerConfig, Target
from jitctl.errors import ConfigError
from jitctl.plugin import UnknownProtocol, load_plugin


def validate_targets(config: BrokerConfig, source: str) -> list[str]:
    """Raise ConfigError naming every bad target; return warnings (missing plugins, keys
    of another protocol's)."""
    problems: list[str] = []
    warnings: list[str] = []
    for index, target in enumerate(config.targets):
        warnings += _foreign_options(index, target) + _token_in_reach(index, target)
        try:
            plugin = load_plugin(target.protocol)
        except UnknownProtocol:
            warnings.append(
                f"targets[{index}] ({target.name}): no plugin for protocol "
                f"{target.protocol!r} is installed; sessions to it will be refused"
            )
            continue
        except Exception as exc:
            warnings.append(f"targets[{index}] ({target.name}): plugin failed to load: {exc}")
            continue
        check = getattr(plugin, "validate_target", None)
        if check is None:
            continue
        try:
            check(target)
        except ConfigError as exc:
            problems.append(f"{source}: targets[{index}] ({target.name}): {exc.message}")
        except (ValueError, LookupError) as exc:
            problems.append(f"{source}: targets[{index}] ({target.name}): {exc}")
    if problems:
        raise ConfigError.invalid(
            problems, "fix the rules and masks above; docs/configuration.md documents them"
        )
    return warnings


# Target keys that only one protocol reads: set on another, they do nothing.
PROTOCOL_KEYS = {"postgres": "postgres", "record_rows": "postgres", "ssh": "ssh", "http": "http"}


def _foreign_options(index: int, target: Target) -> list[str]:
    return [
        f"targets[{index}] ({target.name}): `{key}` is for {protocol} targets; this one is "
        f"{target.protocol}, so it is ignored"
        for key, protocol in PROTOCOL_KEYS.items()
        if key in target.model_fields_set and target.protocol != protocol
    ]


def _token_in_reach(index: int, target: Target) -> list[str]:
    """A Cloud SQL IAM login sends an access token as the password: over plain TCP, or TLS
    that checks no certificate, whoever answers in the server's place can use it."""
    if target.protocol != "postgres" or not target.credential.gcp:
        return []
    if target.postgres.tls in ("verify-ca", "verify-full"):
        return []
    return [
        f"targets[{index}] ({target.name}): the Cloud SQL IAM token is sent as the password "
        f'with postgres.tls = "{target.postgres.tls}", which checks no certificate; set '
        'tls = "verify-ca" and tls_ca_file to the instance\'s server CA (docs/gcp.md)'
    ]


def identity_warnings(config: BrokerConfig) -> list[str]:
    """Warnings about who can log in (run without --dev: the dev issuer is not in `config`)."""
    if config.identity.issuers:
        return []
    return [
        "no [[identity.issuers]]: no token will verify, so nobody can log in or connect "
        "(only `jitctl broker serve --dev` adds its built-in issuer)"
    ]
