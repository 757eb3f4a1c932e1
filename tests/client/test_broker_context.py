"""`jitctl connect` opens a tunnel per local connection: its TLS context for the broker is made
once per CA file, and made again when that file is replaced."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from jitctl.broker.tlsfiles import ensure_tls_files
from jitctl.client.tunnel import _broker_context


def _ca(directory: Path) -> Path:
    directory.mkdir()
    return ensure_tls_files(directory, ["127.0.0.1"])[0]


def test_one_context_per_ca_file_until_the_file_is_replaced(tmp_path: Path) -> None:
    ca = _ca(tmp_path / "one")
    first = _broker_context(str(ca))
    assert _broker_context(str(ca)) is first
    assert len(first.get_ca_certs()) == 1

    other = _ca(tmp_path / "two")
    assert _broker_context(str(other)) is not first  # another file
    before = ca.stat().st_mtime_ns
    shutil.copyfile(other, ca)  # the broker's CA replaced while connect runs
    # The file system's clock ticks coarser than nanoseconds: a copy within the same tick
    # would keep the old mtime. A real replacement comes later than that.
    os.utime(ca, ns=(before + 10**9, before + 10**9))
    renewed = _broker_context(str(ca))
    assert renewed is not first
    assert renewed.get_ca_certs() == _broker_context(str(other)).get_ca_certs()


def test_a_missing_ca_file_is_named_not_cached(tmp_path: Path) -> None:
    missing = tmp_path / "gone.pem"
    with pytest.raises(OSError):
        _broker_context(str(missing))
    ca = _ca(tmp_path / "tls")
    shutil.copyfile(ca, missing)
    assert len(_broker_context(str(missing)).get_ca_certs()) == 1


def test_without_a_ca_file_the_system_store_is_loaded_once() -> None:
    assert _broker_context(None) is _broker_context(None)
