"""The postgres plugin: a recording, policy-enforcing, masking proxy for the Postgres wire protocol.

The core (`core.PostgresCore`) is sans-I/O like every jitctl core; this module only wires it to
the real services: the statement classifier (`classify.py`), the policy (`policy.py`) and the
target's mask policy (`jitctl.masking`). They are built once per target object and shared by its
sessions (all three are pure and cache by text). See docs/postgres.md.
"""

from __future__ import annotations

from typing import Any

from jitctl.plugin import SessionContext

from .core import PostgresCore
from .state import Services

__all__ = ["PostgresCore", "PostgresPlugin", "Services", "plugin", "services_for"]

_SERVICES: dict[int, tuple[Any, Services]] = {}


def services_for(target: Any) -> Services:
    """The classifier, policy and masks for `target` (cached per target object)."""
    cached = _SERVICES.get(id(target))
    if cached is not None and cached[0] is target:
        return cached[1]
    from .classify import classify, classify_function_call
    from .policy import Policy

    masks = None
    if getattr(target, "masks", None):
        from jitctl.masking import MaskPolicy

        masks = MaskPolicy.from_config(target.masks)
    services = Services(
        classify=classify,
        classify_function_call=classify_function_call,
        policy=Policy(target.rules, target.default_action),
        masks=masks,
    )
    if len(_SERVICES) > 256:
        _SERVICES.clear()
    _SERVICES[id(target)] = (target, services)
    return services


def _unusable(*_: Any) -> Any:
    raise AssertionError("a broken target's services are never called")


_REFUSE = Services(classify=_unusable, classify_function_call=_unusable, policy=None)


class PostgresPlugin:
    name = "postgres"

    def validate_target(self, target: Any) -> None:
        """Build the target's policy and masks once at broker start, so a rule with an unknown
        statement word or a mask with an unknown detector stops the broker, not a session."""
        services_for(target)

    def new_core(self, context: SessionContext) -> PostgresCore:
        try:
            services = services_for(context.target)
        except Exception as exc:  # a target whose rules or masks do not load
            # Fail closed, and say why: the client's startup gets a FATAL naming the problem.
            return PostgresCore(context, _REFUSE, broken=f"{type(exc).__name__}: {exc}")
        return PostgresCore(context, services)


plugin = PostgresPlugin()
