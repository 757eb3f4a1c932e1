"""An ssh target's policy: exec command lines, shells, file operations, forwarding.

Pure: built from the target's configuration (plain data) and the caller's groups; every check
returns a `Decision` and touches nothing.

Rules (`[[targets.rules]]`, first match wins, no match -> `default_action`):
- A rule matches when every key it sets matches. `command` patterns match programs of an exec
  command line, `path` patterns match file paths of sftp/scp operations, `groups` the caller's
  groups. A rule that sets `command` never matches a file operation and one that sets `path`
  never matches a command; a rule that sets a key of another protocol (`statement`, `tables`,
  `functions`, `method`) never matches anything here.
- A command line runs several programs (cmdline.py); each is decided on its own and the most
  restrictive answer wins (deny > approve > allow). A line the analyser cannot read fully
  (`opaque`) is decided as the most restrictive rule that could match it.
- `approve` holds an exec command for a person's approval when the broker offers approvals
  (`approvals=True`); otherwise, and always for shells and file operations (they cannot be
  held), it is answered as a deny that says so.

Command patterns (shell-style globs, `fnmatch`, case-sensitive): a pattern without a space
matches the program (`rm` matches `rm -rf x` and `/bin/rm x`); a pattern with spaces matches the
whole argv joined by single spaces, with the program's directory dropped (`systemctl restart *`).
Path patterns are globs over normalised absolute paths (`/etc/*`, `*/.ssh/*`); `*` crosses `/`.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from jitctl_ssh.cmdline import Analysis, analyse

_SEVERITY = {"allow": 0, "approve": 1, "deny": 2}
_OTHER_PROTOCOL_KEYS = ("statement", "tables", "functions", "method")


@dataclass(frozen=True)
class Decision:
    action: str  # "allow" | "deny" | "approve" (exec commands, when approvals are offered)
    rule: str = ""  # the rule's name, "default", or the option that decided
    reason: str = ""  # for the actor and the trail
    wanted: str = ""  # what the rule asked for when it differs from `action` ("approve")

    @property
    def allowed(self) -> bool:
        return self.action == "allow"

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"decision": self.action, "rule": self.rule}
        if self.reason:
            out["reason"] = self.reason
        if self.wanted:
            out["wanted"] = self.wanted
        return out


ALLOW = Decision("allow", "default")


@dataclass(frozen=True)
class _Rule:
    name: str
    action: str
    message: str
    commands: tuple[str, ...]
    paths: tuple[str, ...]
    groups: tuple[str, ...]
    foreign: bool  # sets keys of another protocol


@dataclass
class SshPolicy:
    rules: list[_Rule] = field(default_factory=list)
    default_action: str = "allow"
    groups: tuple[str, ...] = ()
    shell: bool = True
    sftp: bool = True
    upload: bool = True
    download: bool = True
    forward: tuple[str, ...] = ()
    remote_forward: tuple[str, ...] = ()
    approvals: bool = False  # exec commands may be held for approval

    @classmethod
    def from_target(
        cls, target: Any, groups: Sequence[str] = (), *, approvals: bool = False
    ) -> SshPolicy:
        rules = []
        for index, rule in enumerate(getattr(target, "rules", ()) or ()):
            match = rule.match
            rules.append(
                _Rule(
                    name=rule.name or f"rule {index + 1}",
                    action=rule.action,
                    message=rule.message,
                    commands=tuple(match.command),
                    paths=tuple(match.path),
                    groups=tuple(match.groups),
                    foreign=any(getattr(match, key, None) for key in _OTHER_PROTOCOL_KEYS),
                )
            )
        ssh = getattr(target, "ssh", None)
        return cls(
            rules=rules,
            default_action=getattr(target, "default_action", "allow"),
            groups=tuple(groups),
            shell=getattr(ssh, "shell", True),
            sftp=getattr(ssh, "sftp", True),
            upload=getattr(ssh, "upload", True),
            download=getattr(ssh, "download", True),
            forward=tuple(getattr(ssh, "forward", ()) or ()),
            remote_forward=tuple(getattr(ssh, "remote_forward", ()) or ()),
            approvals=approvals,
        )

    # -- exec -----------------------------------------------------------------------------------

    def check_command(self, line: str) -> tuple[Decision, Analysis]:
        analysis = analyse(line)
        worst: Decision | None = None
        for argv in analysis.commands:
            decision = self._first_match(
                lambda r, argv=argv: _command_matches(r.commands, argv), "command"
            )
            if decision.action != "allow":
                verdict = "needs an approval" if decision.action == "approve" else "is not allowed"
                decision = Decision(
                    decision.action,
                    decision.rule,
                    f"{_short(argv)!r} {verdict} here"
                    + (f" ({decision.reason})" if decision.reason else ""),
                )
            worst = _worse(worst, decision)
        if analysis.opaque:
            decision = self._most_restrictive_command_rule()
            if decision.action != "allow":
                decision = Decision(
                    decision.action,
                    decision.rule,
                    "cannot tell what this command line runs ("
                    + "; ".join(analysis.opaque)
                    + "), so it is treated like the strictest rule for commands",
                )
            worst = _worse(worst, decision)
        if worst is None:  # an empty line: sshd starts the login shell
            return self.check_shell(), analysis
        return _final(worst, self.approvals), analysis

    def _most_restrictive_command_rule(self) -> Decision:
        best = Decision(self.default_action, "default")
        for rule in self.rules:
            if rule.foreign or rule.paths or not self._groups_match(rule):
                continue
            if _SEVERITY[rule.action] > _SEVERITY[best.action]:
                best = Decision(rule.action, rule.name, rule.message)
        return best

    # -- shells, subsystems ---------------------------------------------------------------------

    def check_shell(self) -> Decision:
        if not self.shell:
            return Decision(
                "deny", "ssh.shell", "interactive shells are off for this target; run commands"
            )
        return Decision("allow", "ssh.shell")

    def check_subsystem(self, name: str) -> Decision:
        if name != "sftp":
            return Decision("deny", "subsystem", f"the {name!r} subsystem is not relayed")
        if not self.sftp:
            return Decision("deny", "ssh.sftp", "sftp is off for this target")
        return Decision("allow", "ssh.sftp")

    # -- file operations ------------------------------------------------------------------------

    def check_file(self, kind: str, path: str) -> Decision:
        """`kind`: "read" (file contents leave the host), "write" (anything that changes the
        host's files) or "browse" (names and attributes)."""
        if kind == "write" and not self.upload:
            return Decision("deny", "ssh.upload", "uploads and changes to files are off")
        if kind == "read" and not self.download:
            return Decision("deny", "ssh.download", "downloads are off for this target")
        normal = normalise_path(path)
        decision = self._first_match(lambda r: _path_matches(r.paths, normal), "path")
        if decision.action != "allow":
            decision = Decision(
                decision.action,
                decision.rule,
                f"{normal} is not allowed" + (f" ({decision.reason})" if decision.reason else ""),
            )
        return _final(decision, False)

    @property
    def has_path_rules(self) -> bool:
        return any(rule.paths for rule in self.rules)

    # -- forwarding -----------------------------------------------------------------------------

    def check_forward(self, kind: str, host: str, port: int) -> Decision:
        """`kind`: "direct-tcpip" (ssh -L/-W/-D), "tcpip-forward" (ssh -R); anything else
        (agent, X11, unix sockets) is always denied."""
        allowed = {"direct-tcpip": self.forward, "tcpip-forward": self.remote_forward}.get(kind)
        if not allowed:
            return Decision("deny", "ssh.forward", f"{kind} forwarding is not allowed")
        where = f"{host}:{port}"
        for pattern in allowed:
            if fnmatch.fnmatchcase(where, pattern):
                return Decision("allow", "ssh.forward")
        return Decision("deny", "ssh.forward", f"{kind} to {where} is not in the allowed list")

    # -- rule matching --------------------------------------------------------------------------

    def _groups_match(self, rule: _Rule) -> bool:
        return not rule.groups or bool(set(rule.groups) & set(self.groups))

    def _first_match(self, matches: Any, key: str) -> Decision:
        for rule in self.rules:
            if rule.foreign or not self._groups_match(rule):
                continue
            own = rule.commands if key == "command" else rule.paths
            other = rule.paths if key == "command" else rule.commands
            if other:
                continue
            if own and not matches(rule):
                continue
            return Decision(rule.action, rule.name, rule.message)
        return Decision(self.default_action, "default")


def _worse(a: Decision | None, b: Decision) -> Decision:
    if a is None or _SEVERITY[b.action] > _SEVERITY[a.action]:
        return b
    return a


def _final(decision: Decision, approvals: bool) -> Decision:
    if decision.action == "approve" and not approvals:
        return Decision(
            "deny",
            decision.rule,
            (decision.reason + "; " if decision.reason else "")
            + "this needs an approval, which this broker cannot hold here",
            wanted="approve",
        )
    return decision


def _short(argv: Sequence[str]) -> str:
    text = " ".join(argv)
    return text if len(text) <= 80 else text[:77] + "..."


def _command_matches(patterns: Sequence[str], argv: Sequence[str]) -> bool:
    if not argv:
        return False
    program = argv[0]
    base = posixpath.basename(program)
    joined = " ".join([base, *argv[1:]])
    full = " ".join(argv)
    for pattern in patterns:
        if " " in pattern.strip():
            if fnmatch.fnmatchcase(joined, pattern) or fnmatch.fnmatchcase(full, pattern):
                return True
        elif fnmatch.fnmatchcase(base, pattern) or fnmatch.fnmatchcase(program, pattern):
            return True
    return False


def normalise_path(path: str, home: str = "") -> str:
    """An absolute, normalised path; a relative one is taken from `home` ("/" if unknown)."""
    if not path.startswith("/"):
        path = posixpath.join(home or "/", path)
    normal = posixpath.normpath(path)
    return "/" + normal.lstrip("/")


def _path_matches(patterns: Sequence[str], path: str) -> bool:
    return any(fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(path + "/", p) for p in patterns)
