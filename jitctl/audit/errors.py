"""The one error the audit package raises for a store it cannot use.

Callers fail closed on it: the gateway refuses new sessions and stops forwarding open ones, and
the CLI prints the message (which store, what failed) with a hint.
"""

from __future__ import annotations

from jitctl.errors import JitctlError


class AuditUnavailable(JitctlError):
    """The audit store cannot be read or written; nothing may proceed unrecorded."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(
            message,
            hint
            or "check that the audit store is reachable and writable; no session may run "
            "while the trail cannot be written",
        )
