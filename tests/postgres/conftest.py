"""Make `jitctl_postgres` importable even when the editable install predates the package.

`pip install -e .` maps the plugin packages that existed when it ran; until it is re-run after
plugins/jitctl_postgres was added, the package is found through plugins/ on sys.path.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("jitctl_postgres") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))
