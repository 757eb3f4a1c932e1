"""Column patterns from a target's masks: which result columns are masked."""

from __future__ import annotations

import pytest

from jitctl.config import Mask
from jitctl.errors import ConfigError
from jitctl.masking import BadColumnPattern, ColumnRule, MaskPolicy

CONFIG = [
    Mask(columns=["email", "*.ssn"], detectors=["EMAIL_ADDRESS"]),
    Mask(columns=["customers.card_number", "public.accounts.iban", "pii_*.*"]),
]


@pytest.mark.parametrize(
    ("table", "column", "masked"),
    [
        ("users", "email", True),  # `email`: any table
        (None, "email", True),  # ... or none (an expression named email)
        ("public.users", "EMAIL", True),  # case-insensitive
        ("users", "email_verified", False),  # whole names, not prefixes
        ("people", "ssn", True),  # `*.ssn`
        ("customers", "card_number", True),  # table-qualified
        ("sales.customers", "card_number", True),  # any schema
        ("orders", "card_number", False),  # another table
        (None, "card_number", True),  # unknown table: fail closed
        ("public.accounts", "iban", True),  # schema-qualified
        ("accounts", "iban", True),  # schema unknown: fail closed
        ("audit.accounts", "iban", False),  # another schema
        ("pii_people", "anything", True),  # globs in parts
        ("people", "anything", False),
    ],
)
def test_column_rules(table: str | None, column: str, masked: bool) -> None:
    policy = MaskPolicy.from_config(CONFIG)
    assert policy.columns_masked([(table, column)]) == [masked]


@pytest.mark.parametrize("pattern", ["", "a..b", "a.b.c.d", " . ", "customers."])
def test_bad_column_pattern_is_a_config_error(pattern: str) -> None:
    with pytest.raises(BadColumnPattern) as err:
        ColumnRule.parse(pattern)
    assert isinstance(err.value, ConfigError)
    assert repr(pattern) in err.value.message


def test_policy_from_config_unions_every_mask() -> None:
    policy = MaskPolicy.from_config(CONFIG)
    assert policy.active
    assert policy.detectors == ("EMAIL_ADDRESS",)
    assert [r.pattern for r in policy.rules][:2] == ["email", "*.ssn"]


@pytest.mark.parametrize(
    ("masks", "active"),
    [
        ([], False),
        ([Mask()], False),
        ([Mask(columns=["x"])], True),
        ([Mask(detectors=["IBAN_CODE"])], True),
    ],
)
def test_active_says_whether_there_is_anything_to_do(masks: list[Mask], active: bool) -> None:
    assert MaskPolicy.from_config(masks).active is active


def test_row_masker_follows_the_rules() -> None:
    policy = MaskPolicy.from_config(CONFIG)
    masker = policy.row_masker([("users", "id"), ("users", "email"), ("orders", "card_number")])
    assert masker.masked_columns == (False, True, False)
