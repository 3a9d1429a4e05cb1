"""The versioned results store: atomic writes, provenance (git sha, package versions)."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from editbench.core import DataError

# 2 added `status` (running | complete | failed), `plan` (what a resume must match) and `audit`;
# version 1 files (always complete) are still read.
SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)
RESULTS_FILE = "results.json"
EDITS_FILE = "edits.jsonl"


def plain_mode(directory: bool = False) -> int:
    """The permissions open()/mkdir() would give under the current umask (mkstemp/mkdtemp make private ones)."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temp path in the target's folder, renamed onto `path` if the block succeeds and removed if not:
    readers never see half a file. It keeps the suffix, so writers that go by extension still work."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, plain_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("editbench", "torch", "transformers", "peft", "tokenizers", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def read_json(path: Path, missing: str = "no such file") -> Any:
    """Parse a JSON file; a missing file or bad JSON is a one-line DataError naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: {missing}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def load_results(path: Path) -> dict:
    """Read one results.json, checking the schema version."""
    path = Path(path)
    data = read_json(path, "no such results file")
    if data.get("schema_version") not in READABLE_SCHEMAS:
        raise DataError(
            f"{path}: field 'schema_version' is {data.get('schema_version')!r}, this editbench reads "
            f"{', '.join(map(str, READABLE_SCHEMAS))}"
        )
    for key in ("method", "checkpoints"):
        if key not in data:
            raise DataError(f"{path}: field '{key}' is missing")
    return data


def find_results(run_dir: Path) -> list[Path]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: no such run directory")
    # <method>/results.json, or <method>/order-<k>/results.json with several edit orders
    paths = sorted([*run_dir.glob(f"*/{RESULTS_FILE}"), *run_dir.glob(f"*/order-*/{RESULTS_FILE}")])
    if not paths:
        raise DataError(f"{run_dir}: holds no */{RESULTS_FILE}")
    return paths
