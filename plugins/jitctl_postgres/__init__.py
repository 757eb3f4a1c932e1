"""The postgres plugin: a recording, policy-enforcing, masking proxy for the Postgres wire protocol.

The core (`core.PostgresCore`) is sans-I/O like every jitctl core; this module only wires it to
the real services: the statement classifier (`classify.py`), the policy (`policy.py`) and the
target's mask policy (`jitctl.masking`). They are built once per target object and shared by its
sessions (all three are pure and cache by text). See docs/postgres.md.
"""

from __future__ import annotations

import ssl
from typing import Any

from jitctl.plugin import SessionContext, StartTls, per_target

from .core import PostgresCore
from .state import Services

__all__ = [
    "PostgresCore",
    "PostgresPlugin",
    "Services",
    "plugin",
    "services_for",
    "upstream_tls",
]


@per_target
def services_for(target: Any) -> Services:
    """The classifier, policy and masks for `target` (built once per target object)."""
    from .classify import classify, classify_function_call
    from .policy import Policy

    masks = None
    if getattr(target, "masks", None):
        from jitctl.masking import MaskPolicy

        masks = MaskPolicy.from_config(target.masks)
    return Services(
        classify=classify,
        classify_function_call=classify_function_call,
        policy=Policy(target.rules, target.default_action),
        masks=masks,
    )


SSL_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"  # length 8, code 80877103


@per_target
def upstream_tls(target: Any) -> StartTls | None:
    """How the gateway asks `target`'s server for TLS (`postgres.tls`, libpq's sslmode words);
    None for "disable". Built once per target object: loading CA files is not per session."""
    options = target.postgres
    if options.tls == "disable":
        return None
    return StartTls(
        request=SSL_REQUEST,
        accepted=b"S",
        declined=b"N",
        context=_tls_context(options),
        server_hostname=target.address.rpartition(":")[0].strip("[]"),
        required=options.tls != "prefer",
        mode=options.tls,
    )


def _tls_context(options: Any) -> ssl.SSLContext:
    """As libpq reads sslmode: "prefer" and "require" encrypt without checking who answers;
    "verify-ca" checks the chain (against `tls_ca_file`, else the system's CAs);
    "verify-full" checks the host name too. Raises ConfigError for a file that does not load."""
    from jitctl.broker.tlsfiles import upstream_context

    return upstream_context(
        "postgres.tls_* files",
        ca_file=options.tls_ca_file,
        cert_file=options.tls_cert_file,
        key_file=options.tls_key_file,
        check_chain=options.tls in ("verify-ca", "verify-full"),
        check_name=options.tls == "verify-full",
    )


def _unusable(*_: Any) -> Any:
    raise AssertionError("a broken target's services are never called")


_REFUSE = Services(classify=_unusable, classify_function_call=_unusable, policy=None)


class PostgresPlugin:
    name = "postgres"

    def validate_target(self, target: Any) -> None:
        """Build the target's policy and masks once at broker start, so a rule with an unknown
        statement word or a mask with an unknown detector stops the broker, not a session."""
        services_for(target)
        upstream_tls(target)

    def upstream_tls(self, target: Any) -> StartTls | None:
        return upstream_tls(target)

    def new_core(self, context: SessionContext) -> PostgresCore:
        try:
            services = services_for(context.target)
        except Exception as exc:  # a target whose rules or masks do not load
            # Fail closed, and say why: the client's startup gets a FATAL naming the problem.
            return PostgresCore(context, _REFUSE, broken=f"{type(exc).__name__}: {exc}")
        return PostgresCore(context, services)


plugin = PostgresPlugin()
