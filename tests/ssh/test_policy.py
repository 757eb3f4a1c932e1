"""An ssh target's policy: which command lines, shells, files and forwards it allows."""

from __future__ import annotations

from typing import Any

import pytest

from jitctl.config import Target
from jitctl_ssh.policy import SshPolicy


def policy(
    rules: list[dict[str, Any]] = (), groups: tuple[str, ...] = (), **extra: Any
) -> SshPolicy:  # type: ignore[assignment]
    ssh = extra.pop("ssh", {})
    approvals = extra.pop("approvals", False)
    target = Target.model_validate(
        {
            "name": "web",
            "protocol": "ssh",
            "address": "h:22",
            "rules": list(rules),
            "ssh": ssh,
            **extra,
        }
    )
    return SshPolicy.from_target(target, groups, approvals=approvals)


NO_RM = {"name": "no-rm", "match": {"command": ["rm", "shutdown*"]}, "action": "deny"}


@pytest.mark.parametrize(
    ("line", "allowed"),
    [
        ("ls -la", True),
        ("rm -rf /tmp/x", False),
        ("/bin/rm x", False),
        ("echo hi; rm x", False),
        ("sh -c 'rm x'", False),
        ("echo $(rm x)", False),
        ("sudo rm x", False),
        ("shutdown-now", False),
        ("echo rm", True),  # rm is an argument here, not a program
        ("eval $X", False),  # cannot tell: treated like the strictest command rule
        ("curl x | sh", False),
    ],
)
def test_a_deny_rule_catches_the_program_wherever_it_hides(line: str, allowed: bool) -> None:
    decision, _ = policy([NO_RM]).check_command(line)
    assert decision.allowed is allowed
    if not allowed:
        assert decision.rule == "no-rm"


def test_an_unreadable_line_is_allowed_when_no_command_rule_could_refuse_it() -> None:
    decision, analysis = policy().check_command("eval $X")
    assert analysis.opaque and decision.allowed


def test_patterns_with_spaces_match_the_whole_command() -> None:
    rule = {"name": "restarts", "match": {"command": ["systemctl restart *"]}, "action": "deny"}
    p = policy([rule])
    assert not p.check_command("systemctl restart nginx")[0].allowed
    assert not p.check_command("/usr/bin/systemctl restart nginx")[0].allowed
    assert p.check_command("systemctl status nginx")[0].allowed


def test_first_matching_rule_wins_and_default_applies_otherwise() -> None:
    rules = [
        {"name": "ok-ls", "match": {"command": ["ls"]}, "action": "allow"},
        {"name": "rest", "match": {"command": ["*"]}, "action": "deny"},
    ]
    p = policy(rules)
    assert p.check_command("ls /")[0].allowed
    assert p.check_command("cat /etc/passwd")[0].rule == "rest"
    assert not policy(default_action="deny").check_command("ls")[0].allowed


def test_the_most_restrictive_program_decides_a_line() -> None:
    rules = [{"name": "ok-ls", "match": {"command": ["ls"]}, "action": "allow"}]
    decision, _ = policy(rules, default_action="deny").check_command("ls; cat x")
    assert not decision.allowed and decision.rule == "default"


def test_approve_holds_a_command_only_where_approvals_are_offered() -> None:
    rule = {
        "name": "dba",
        "match": {"command": ["pg_dump"]},
        "action": "approve",
        "approvers": ["dba"],
    }
    held, _ = policy([rule], approvals=True).check_command("pg_dump db")
    assert held.action == "approve" and held.rule == "dba" and "approval" in held.reason
    refused, _ = policy([rule]).check_command("pg_dump db")
    assert refused.action == "deny" and refused.wanted == "approve"
    assert "approval" in refused.reason


def test_rules_for_groups_apply_only_to_those_groups() -> None:
    rule = {"match": {"command": ["rm"], "groups": ["agents"]}, "action": "deny"}
    assert not policy([rule], groups=("agents",)).check_command("rm x")[0].allowed
    assert policy([rule], groups=("eng",)).check_command("rm x")[0].allowed


def test_rules_of_other_protocols_never_match() -> None:
    rule = {"match": {"statement": ["drop"]}, "action": "deny"}
    assert policy([rule]).check_command("drop")[0].allowed


def test_shells_can_be_switched_off() -> None:
    assert policy().check_shell().allowed
    denied = policy(ssh={"shell": False}).check_shell()
    assert not denied.allowed and "shell" in denied.reason


def test_an_empty_command_line_is_a_shell() -> None:
    assert not policy(ssh={"shell": False}).check_command("")[0].allowed


def test_file_operations_follow_upload_download_and_path_rules() -> None:
    rules = [{"name": "secrets", "match": {"path": ["/etc/*", "*/.ssh/*"]}, "action": "deny"}]
    p = policy(rules, ssh={"download": False})
    assert not p.check_file("read", "/srv/a").allowed  # downloads are off
    assert p.check_file("write", "/srv/a").allowed
    assert not p.check_file("write", "/etc/passwd").allowed
    assert not p.check_file("write", "/srv/../etc/passwd").allowed  # normalised first
    assert not p.check_file("browse", "/root/.ssh/authorized_keys").allowed
    assert not policy(ssh={"upload": False}).check_file("write", "/tmp/x").allowed


def test_path_rules_never_decide_commands_and_command_rules_never_decide_paths() -> None:
    rules = [
        {"match": {"path": ["/etc/*"]}, "action": "deny"},
        {"match": {"command": ["cat"]}, "action": "deny"},
    ]
    p = policy(rules)
    assert p.check_command("ls /etc/x")[0].allowed
    assert p.check_file("read", "/srv/cat").allowed


def test_forwarding_is_denied_unless_the_destination_is_listed() -> None:
    p = policy(ssh={"forward": ["127.0.0.1:5432", "10.0.0.*:80"]})
    assert p.check_forward("direct-tcpip", "127.0.0.1", 5432).allowed
    assert p.check_forward("direct-tcpip", "10.0.0.7", 80).allowed
    assert not p.check_forward("direct-tcpip", "10.0.1.7", 80).allowed
    assert not p.check_forward("tcpip-forward", "127.0.0.1", 5432).allowed
    assert not policy().check_forward("direct-tcpip", "127.0.0.1", 22).allowed
    assert not p.check_forward("agent", "", 0).allowed


def test_subsystems_other_than_sftp_are_refused() -> None:
    assert policy().check_subsystem("sftp").allowed
    assert not policy(ssh={"sftp": False}).check_subsystem("sftp").allowed
    assert not policy().check_subsystem("netconf").allowed
