"""`[targets.access]`, approve rules and `[approvals]`: accepted as documented, refused with the
file, the key and what is wrong (docs/configuration.md, docs/approvals.md)."""

from __future__ import annotations

from typing import Any

import pytest

from jitctl.config import parse_config
from jitctl.errors import ConfigError


def target(**extra: Any) -> dict[str, Any]:
    return {"name": "pg", "protocol": "postgres", "address": "db:5432", **extra}


def problem(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "broker.toml")
    lines = caught.value.message.splitlines()
    assert lines[0] == "invalid configuration" and len(lines) == 2, lines
    return lines[1].strip()


def test_the_documented_example_is_accepted() -> None:
    config = parse_config(
        {
            "approvals": {"webhook": "https://hooks.slack.com/services/T/B/x"},
            "targets": [
                target(
                    access={
                        "require_request": True,
                        "approvers": ["dba"],
                        "min_approvals": 2,
                        "max_duration": "4h",
                        "auto_approve_groups": ["oncall"],
                        "approval_timeout": "45s",
                    },
                    rules=[
                        {
                            "match": {"statement": ["alter"]},
                            "action": "approve",
                            "min_approvals": 2,
                        }
                    ],
                )
            ],
        },
        "broker.toml",
    )
    access = config.targets[0].access
    assert (access.max_duration, access.approval_timeout, access.min_approvals) == (14400, 45, 2)
    assert config.targets[0].rules[0].min_approvals == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"targets": [target(access={"max_duration": "10s"})]},
            "broker.toml: targets[0].access.max_duration: must be between 1m and 30d",
        ),
        (
            {"targets": [target(access={"approval_timeout": "2h"})]},
            "broker.toml: targets[0].access.approval_timeout: must be between 1s and 1h (and "
            "below the server's statement and idle-in-transaction timeouts)",
        ),
        (
            {"targets": [target(max_session="30s", access={"approval_timeout": "1m"})]},
            "broker.toml: targets[0].access.approval_timeout: must be shorter than max_session "
            "(a held statement would outlive its session)",
        ),
        (
            {"targets": [target(access={"require_request": True})]},
            "broker.toml: targets[0].access.require_request: nobody could grant a request: set "
            "approvers or auto_approve_groups",
        ),
        (
            {"targets": [target(access={"min_approvals": 0, "approvers": ["dba"]})]},
            "broker.toml: targets[0].access.min_approvals: Input should be greater than or "
            "equal to 1",
        ),
        (
            {"targets": [target(rules=[{"action": "approve", "match": {"statement": ["x"]}}])]},
            "broker.toml: targets[0].rules[0].approvers: an approve rule needs approvers (here, "
            "or in [targets.access] approvers)",
        ),
        (
            {"targets": [target(default_action="approve")]},
            'broker.toml: targets[0].access.approvers: default_action = "approve" needs '
            "approvers in [targets.access]",
        ),
        (
            {"targets": [target(access={"webhook": "http://hooks.example.com/x"})]},
            "broker.toml: targets[0].access.webhook: must be an https:// URL (http:// is "
            "accepted only for loopback)",
        ),
        (
            {"targets": [target(access={"approvers": "dba"})]},
            "broker.toml: targets[0].access.approvers: expected a list, got str 'dba'",
        ),
        (
            {"targets": [target(access={"approver": ["dba"]})]},
            "broker.toml: targets[0].access.approver: unknown key",
        ),
        (
            {"approvals": {"poll_interval": "0s"}},
            "broker.toml: approvals.poll_interval: must be between 50ms and 60s",
        ),
        (
            {"approvals": {"request_ttl": "10s"}},
            "broker.toml: approvals.request_ttl: must be between 1m and 30d",
        ),
    ],
)
def test_bad_approval_settings_are_refused_with_key_and_reason(
    data: dict[str, Any], message: str
) -> None:
    assert problem(data) == message
