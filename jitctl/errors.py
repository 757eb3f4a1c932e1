"""One error base class for everything a user can see.

Every error carries a message (what went wrong), a hint (what to do) and an exit code from
`ExitCode`. Only the CLI entry point (`jitctl.cli.main`) turns an error into text and a status;
everything below it raises.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence


class ExitCode(enum.IntEnum):
    """Exit statuses of the `jitctl` command; documented in docs/cli.md."""

    OK = 0
    ERROR = 1
    USAGE = 2
    AUTH = 3  # no identity, or the broker rejected it: log in again
    DENIED = 4  # identity fine, but policy or allow_groups said no
    APPROVAL = 5  # an approval was refused or timed out
    UNREACHABLE = 6  # the broker (or an upstream) could not be reached
    AUDIT_BROKEN = 7  # the audit trail failed verification
    CONFIG = 8  # a configuration file is invalid
    NOT_AVAILABLE = 9  # the command exists in the design but is not built yet
    # `jitctl exec` only, as `env` and shells have them: the wrapped command could not start.
    COMMAND_NOT_EXECUTABLE = 126
    COMMAND_NOT_FOUND = 127


class JitctlError(Exception):
    """Base of every error a user may see."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        text = f"error: {self.message}"
        if self.hint:
            text += f"\nhint: {self.hint}"
        return text


class UsageError(JitctlError):
    exit_code = ExitCode.USAGE


class AuthError(JitctlError):
    exit_code = ExitCode.AUTH


class CommandNotFound(JitctlError):
    exit_code = ExitCode.COMMAND_NOT_FOUND


class CommandNotExecutable(JitctlError):
    exit_code = ExitCode.COMMAND_NOT_EXECUTABLE


class DeniedError(JitctlError):
    exit_code = ExitCode.DENIED


class ApprovalError(JitctlError):
    exit_code = ExitCode.APPROVAL


class UnreachableError(JitctlError):
    exit_code = ExitCode.UNREACHABLE


class AuditBrokenError(JitctlError):
    exit_code = ExitCode.AUDIT_BROKEN


class ConfigError(JitctlError):
    exit_code = ExitCode.CONFIG

    def __init__(self, message: str, hint: str | None = None, problems: Sequence[str] = ()) -> None:
        super().__init__(message, hint)
        # One line per problem ("file: key: what is wrong"), for `check-config --json`.
        self.problems = list(problems) or [message]

    @classmethod
    def invalid(cls, problems: Sequence[str], hint: str) -> ConfigError:
        """A file refused as a whole: every problem on a line of its own."""
        return cls("invalid configuration\n  " + "\n  ".join(problems), hint, problems)


class NotAvailableError(JitctlError):
    """A command from the design whose implementation has not landed yet."""

    exit_code = ExitCode.NOT_AVAILABLE

    def __init__(self, command: str, issue: str) -> None:
        super().__init__(
            f"`jitctl {command}` is not available in this version of jitctl.",
            f"It arrives with {issue}; see the README's roadmap.",
        )
