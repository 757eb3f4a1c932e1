"""Where jitctl keeps things on the user's machine.

`JITCTL_HOME` overrides everything (tests and the demo point it at a temporary directory);
otherwise the XDG state directory (~/.local/state/jitctl).
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    explicit = os.environ.get("JITCTL_HOME")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "jitctl"


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) readable only by the user."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def dev_broker_dir() -> Path:
    """The state dir `jitctl broker serve --dev` uses unless told otherwise."""
    return home() / "dev-broker"
