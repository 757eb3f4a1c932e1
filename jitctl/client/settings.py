"""Which broker the CLI talks to, and which CA vouches for it.

Resolution, first match wins:
1. `--broker URL` (with `--ca-file`);
2. `JITCTL_BROKER` (with `JITCTL_CA_FILE`);
3. the broker remembered by the last successful `jitctl login` (`$JITCTL_HOME/client.json`);
4. the local dev broker's pointer file (`dev_broker_dir()/broker.json`, written by
   `jitctl broker serve --dev`).

The CA: an explicit `--ca-file`, else `JITCTL_CA_FILE`, else the one remembered with that URL,
else — the dev trust rule — the pointer file's `ca_file` when the URL is loopback and is exactly
the dev broker's URL. Nothing else is trusted implicitly: a dev CA is never used for a remote URL.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jitctl import paths
from jitctl.errors import UsageError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class BrokerSettings:
    url: str
    ca_file: str | None
    source: str  # "flag" | "env" | "remembered" | "dev"


def normalize_url(url: str) -> str:
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(
            f"{url!r} is not a broker URL", "write it like https://broker.example.com:8443"
        )
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        raise UsageError(f"{url}: a broker must be reached over https://", "use https://")
    if parts.path or parts.query:
        raise UsageError(f"{url}: a broker URL has no path", "drop everything after host:port")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def client_file() -> Path:
    return paths.home() / "client.json"


def dev_pointer() -> dict[str, Any] | None:
    """The dev broker's pointer file ({"url", "ca_file", "pid"}), if there is one."""
    data = _read_json(paths.dev_broker_dir() / "broker.json")
    if not data or not isinstance(data.get("url"), str):
        return None
    return data


def _dev_ca(url: str) -> str | None:
    pointer = dev_pointer()
    if pointer is None or urlsplit(url).hostname not in LOOPBACK:
        return None
    try:
        same = normalize_url(pointer["url"]) == url
    except UsageError:
        return None
    ca = pointer.get("ca_file")
    return ca if same and isinstance(ca, str) and ca else None


def _ca_for(url: str, explicit: str | None) -> str | None:
    if explicit:
        return str(Path(explicit).expanduser().resolve())
    if env := os.environ.get("JITCTL_CA_FILE"):
        return env
    remembered = _read_json(client_file()) or {}
    if remembered.get("broker_url") == url and remembered.get("ca_file"):
        return str(remembered["ca_file"])
    return _dev_ca(url)


def resolve(broker: str | None = None, ca_file: str | None = None) -> BrokerSettings:
    """The broker to use; raises UsageError when none is known."""
    if broker:
        url = normalize_url(broker)
        return BrokerSettings(url, _ca_for(url, ca_file), "flag")
    if env := os.environ.get("JITCTL_BROKER"):
        url = normalize_url(env)
        return BrokerSettings(url, _ca_for(url, ca_file), "env")
    remembered = _read_json(client_file())
    if remembered and isinstance(remembered.get("broker_url"), str):
        url = normalize_url(remembered["broker_url"])
        return BrokerSettings(url, _ca_for(url, ca_file), "remembered")
    pointer = dev_pointer()
    if pointer is not None:
        url = normalize_url(pointer["url"])
        return BrokerSettings(url, _ca_for(url, ca_file), "dev")
    raise UsageError(
        "no broker is known",
        "run `jitctl login --broker URL` (or start one with `jitctl broker serve --dev`)",
    )


def remember(settings: BrokerSettings) -> None:
    """Make `settings` the default broker for later commands."""
    from jitctl.client.tokens import write_private_json

    write_private_json(client_file(), {"broker_url": settings.url, "ca_file": settings.ca_file})
