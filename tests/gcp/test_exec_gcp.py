"""`jitctl exec --gcp NAME`: the wrapped command's google-auth gets tokens through jitctl, and the
config it used (no key, no token inside) is gone when the command ends."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

from jitctl.testing.broker import BrokerProcess
from jitctl.testing.gcp_emulator import GcpEmulator
from tests.gcp.support import READER, SUBJECT

CHILD = textwrap.dedent(
    """
    import json, os, sys
    import google.auth, google.auth.transport.requests
    path = os.environ["GOOGLE_APPLICATION_CREDENTIALS"]
    config = open(path).read()
    credentials, _ = google.auth.default(
        scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    credentials.refresh(google.auth.transport.requests.Request())
    json.dump({"token": credentials.token, "path": path, "config": config,
               "env": dict(os.environ)}, open(sys.argv[1], "w"))
    """
)


def test_exec_gives_the_command_gcp_credentials_that_refresh_through_jitctl(
    broker: BrokerProcess, emulator: GcpEmulator, tmp_path: Path
) -> None:
    script, out = tmp_path / "child.py", tmp_path / "out.json"
    script.write_text(CHILD)
    hygiene = {
        "NO_GCE_CHECK": "true",
        "GCE_METADATA_HOST": "127.0.0.1:9",
        "GCE_METADATA_IP": "127.0.0.1:9",
        "GOOGLE_CLOUD_PROJECT": "test-proj",
    }
    result = broker.jitctl(
        "exec",
        "--gcp",
        "reader",
        "--agent",
        "bq-bot",
        "--",
        sys.executable,
        str(script),
        str(out),
        env=hygiene,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(out.read_text())
    minted = emulator.find(seen["token"])
    assert minted is not None and minted.subject == SUBJECT and minted.service_account == READER
    for secret in ("PRIVATE KEY", "private_key", "refresh_token", "eyJ"):
        assert secret not in seen["config"]
        assert not any(secret in value for value in seen["env"].values())
    assert not Path(seen["path"]).exists(), "the external_account config outlived the command"
