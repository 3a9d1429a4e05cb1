"""Where editbench keeps what it builds once and reuses (world models, key statistics), and the two
things every cache entry needs: a content hash to verify it by, and a lock so that two processes
needing the same entry build it once (the second waits, then reuses it)."""
from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from editbench.core import ConfigError


class CacheError(ConfigError):
    """The cache cannot hold what must be built (one line, exit 2)."""


def cache_root() -> Path:
    """`$EDITBENCH_CACHE`, else ~/.cache/editbench. Read at call time, so tests can redirect it."""
    return Path(os.environ.get("EDITBENCH_CACHE", Path.home() / ".cache" / "editbench"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """{relative path: sha256} of every file under `folder` (hidden temporary files and `skip` left out)."""
    folder = Path(folder)
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel in skip or any(part.startswith(".") for part in Path(rel).parts):
            continue
        out[rel] = sha256_file(path)
    return out


@contextmanager
def build_lock(target: Path, log: Callable[[str], None] | None = None) -> Iterator[None]:
    """An exclusive lock next to `target` (a cache file or folder) while it is checked or built."""
    from filelock import FileLock, Timeout

    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(target.parent / f".{target.name}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if log:
                log(f"waiting for another process that is building {target}")
            lock.acquire()
    except OSError as exc:  # a read-only (e.g. shared) cache, or one this user may not write
        raise CacheError(f"the cache {cache_root()} cannot be written ({exc.strerror or type(exc).__name__}), and "
                         f"{target.name} must be built there: point EDITBENCH_CACHE at a writable folder") from None
    try:
        yield
    finally:
        lock.release()
