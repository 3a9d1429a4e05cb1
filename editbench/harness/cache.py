"""Where editbench keeps what it builds once and reuses: world models, key statistics."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$EDITBENCH_CACHE`, else ~/.cache/editbench. Read at call time, so tests can redirect it."""
    return Path(os.environ.get("EDITBENCH_CACHE", Path.home() / ".cache" / "editbench"))
