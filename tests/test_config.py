"""Bad config files are refused with a message naming the file, the key and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitctl.config import load_config
from jitctl.errors import ConfigError, ExitCode
from jitctl.testing.broker import check_config

GOOD = """
[broker]
listen = "127.0.0.1:8443"
state_dir = "/var/lib/jitctl"

[[identity.issuers]]
issuer = "https://idp.example.com"
audience = "jitctl"
groups_claim = "groups"

[[targets]]
name = "pg-prod"
protocol = "postgres"
address = "10.0.0.5:5432"
allow_groups = ["eng", "agents"]
max_session = "1h"
credential = { user = "app", password_env = "PG_PROD_PASSWORD" }

[[targets.rules]]
match = { statement = ["drop", "truncate"] }
action = "deny"

[[targets.rules]]
match = { statement = ["alter", "create"] }
action = "approve"
approvers = ["dba"]

[[targets.masks]]
columns = ["email", "*.ssn", "customers.card_number"]
detectors = ["EMAIL_ADDRESS", "CREDIT_CARD_NUMBER"]
"""

TARGET = '[[targets]]\nname = "a"\nprotocol = "tcp"\naddress = "h:1"\n'

CASES = [
    ("unknown key", TARGET + 'adress = "h:2"\n', "targets[0].adress: unknown key"),
    ("unknown section", "[brokr]\n", "brokr: unknown key"),
    (
        "wrong type",
        '[[targets]]\nname = "a"\nprotocol = "tcp"\naddress = 5432\n',
        "targets[0].address: expected a string, got int 5432",
    ),
    (
        "target without address",
        '[[targets]]\nname = "a"\nprotocol = "tcp"\n',
        "targets[0].address: required key is missing",
    ),
    (
        "duplicate target name",
        TARGET + TARGET,
        "targets[1].name: duplicate target name 'a' (first used at targets[0])",
    ),
    (
        "unknown protocol",
        '[[targets]]\nname = "a"\nprotocol = "smtp"\naddress = "h:1"\n',
        "targets[0].protocol: unknown protocol 'smtp'; expected one of postgres, ssh, http, tcp",
    ),
    (
        "bad duration",
        TARGET + 'max_session = "forever"\n',
        "targets[0].max_session: 'forever' is not a duration",
    ),
    (
        "bad rule action",
        TARGET + '[[targets.rules]]\naction = "maybe"\n',
        "targets[0].rules[0].action: 'maybe' is not allowed",
    ),
    (
        "symmetric algorithm",
        '[[identity.issuers]]\nissuer = "https://i"\nalgorithms = ["HS256"]\n',
        "identity.issuers[0].algorithms: HS256 not allowed",
    ),
    (
        "plain http issuer",
        '[[identity.issuers]]\nissuer = "http://idp.example.com"\n',
        "identity.issuers[0].issuer: must be an https:// URL",
    ),
    (
        "unknown event loop",
        '[broker]\nevent_loop = "trio"\n',
        "broker.event_loop: 'trio' is not allowed; input should be 'auto', 'uvloop' or 'asyncio'",
    ),
    ("not toml", "[[targets]\n", "not valid TOML"),
]


def test_the_design_example_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "broker.toml"
    path.write_text(GOOD)
    config = load_config(path)
    assert config.targets[0].rules[1].approvers == ["dba"]
    assert config.targets[0].max_session == 3600


@pytest.mark.parametrize(("name", "text", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_config_is_refused_naming_file_and_key(tmp_path: Path, name, text, message) -> None:
    path = tmp_path / "broker.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert str(path) in excinfo.value.message
    assert message in excinfo.value.message


def test_check_config_command_exits_8_and_prints_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "broker.toml"
    path.write_text(CASES[0][1])
    result = check_config(path)
    assert result.returncode == ExitCode.CONFIG
    assert f"{path}: targets[0].adress: unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_accepts_a_good_file_with_json(tmp_path: Path) -> None:
    import json

    path = tmp_path / "broker.toml"
    path.write_text(GOOD)
    result = check_config(path, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["targets"] == [{"name": "pg-prod", "protocol": "postgres"}]
    assert json.loads(result.stdout)["warnings"] == [] and "warning" not in result.stderr


def test_check_config_warns_that_without_an_issuer_nobody_can_log_in(tmp_path: Path) -> None:
    """Valid (a --dev broker adds its own issuer), but a production broker would verify no
    token: say so rather than print "valid" alone."""
    path = tmp_path / "broker.toml"
    path.write_text(GOOD[: GOOD.index("[[identity.issuers]]")] + GOOD[GOOD.index("[[targets]]") :])
    result = check_config(path)
    assert result.returncode == 0, result.stderr
    assert "warning: no [[identity.issuers]]: no token will verify" in result.stderr
    assert "valid (0 issuer(s), 1 target(s))" in result.stderr


def test_check_config_warns_about_options_another_protocol_reads(tmp_path: Path) -> None:
    """`http = {...}` on a postgres target does nothing: say so (a misplaced write_ahead
    would otherwise look set)."""
    path = tmp_path / "broker.toml"
    path.write_text(
        '[[identity.issuers]]\nissuer = "https://issuer.example"\n'
        '[[targets]]\nname = "p"\nprotocol = "postgres"\naddress = "h:1"\n'
        'http = { write_ahead = "changes" }\npostgres = { write_ahead = "changes" }\n'
        '[[targets]]\nname = "h"\nprotocol = "http"\naddress = "http://h:1"\nrecord_rows = 2\n'
    )
    result = check_config(path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: targets[0] (p): `http` is for http targets; this one is postgres, so it is "
        "ignored",
        "warning: targets[1] (h): `record_rows` is for postgres targets; this one is http, so it "
        "is ignored",
    ]


def test_check_config_json_describes_a_bad_file_too(tmp_path: Path) -> None:
    """`--json` prints its one document for a bad file as well, problems listed, exit 8."""
    import json

    path = tmp_path / "broker.toml"
    path.write_text(CASES[0][1])
    result = check_config(path, "--json")
    assert result.returncode == ExitCode.CONFIG
    document = json.loads(result.stdout)
    assert document["valid"] is False
    assert f"{path}: targets[0].adress: unknown key" in document["problems"]
    assert "unknown key" in result.stderr


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[[targets.rules]]\nmatch = { statement = ["dorp"] }\naction = "deny"\n', "dorp"),
        ('[[targets.masks]]\ndetectors = ["NOPE"]\n', "unknown detector 'NOPE'"),
    ],
)
def test_postgres_rules_and_masks_are_checked_before_the_broker_starts(
    tmp_path: Path, extra: str, message: str
) -> None:
    path = tmp_path / "broker.toml"
    path.write_text('[[targets]]\nname = "p"\nprotocol = "postgres"\naddress = "h:1"\n' + extra)
    result = check_config(path)
    assert result.returncode == ExitCode.CONFIG
    assert "targets[0] (p):" in result.stderr and message in result.stderr


def test_check_config_warns_when_a_cloud_sql_token_would_reach_an_unverified_server(
    tmp_path: Path,
) -> None:
    """The IAM token is the login password: only a verified server may receive it."""
    ca = tmp_path / "server-ca.pem"
    ca.write_bytes(Path(certifi_where()).read_bytes())
    target = (
        '[[targets]]\nname = "{name}"\nprotocol = "postgres"\naddress = "10.0.0.7:5432"\n'
        'credential = {{ gcp = "orders-sql", database = "orders" }}\n{tls}\n'
    )
    path = tmp_path / "broker.toml"
    path.write_text(
        '[[identity.issuers]]\nissuer = "https://issuer.example"\n'
        + target.format(name="weak", tls="")
        + target.format(name="plain", tls='postgres = { tls = "disable" }')
        + target.format(
            name="checked", tls=f'postgres = {{ tls = "verify-ca", tls_ca_file = "{ca}" }}'
        )
        + '[[gcp.targets]]\nname = "orders-sql"\n'
        'audience = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/'
        'providers/b"\nservice_account = "orders-app@orders-prod.iam.gserviceaccount.com"\n'
    )
    result = check_config(path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    named = [w.split(":")[1].strip() for w in warnings]
    assert named == ["targets[0] (weak)", "targets[1] (plain)"]
    assert 'postgres.tls = "prefer", which checks no certificate' in warnings[0]
    assert 'tls = "verify-ca"' in warnings[1]


def certifi_where() -> str:
    """Any PEM bundle will do for a CA file that must load."""
    import ssl

    paths = ssl.get_default_verify_paths()
    return paths.cafile or paths.openssl_cafile
