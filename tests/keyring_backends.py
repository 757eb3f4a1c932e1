"""A keyring backend for tests: PYTHON_KEYRING_BACKEND=tests.keyring_backends.MemoryKeyring.

It keeps passwords in a dict; with JITCTL_TEST_KEYRING_FILE set it keeps them in that JSON file
instead, so CLI subprocesses of one test share a "system keyring". Priority 1 makes it count
as a real (recommended) backend.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError


class MemoryKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self._data: dict[str, str] = {}

    def _load(self) -> dict[str, str]:
        path = os.environ.get("JITCTL_TEST_KEYRING_FILE")
        if not path:
            return self._data
        try:
            return dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError):
            return {}

    def _store(self, data: dict[str, str]) -> None:
        path = os.environ.get("JITCTL_TEST_KEYRING_FILE")
        if path:
            Path(path).write_text(json.dumps(data))
        else:
            self._data = data

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}\0{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data[f"{service}\0{username}"] = password
        self._store(data)

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        if data.pop(f"{service}\0{username}", None) is None:
            raise PasswordDeleteError("no such password")
        self._store(data)
