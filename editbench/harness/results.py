"""The versioned results store: atomic writes, provenance (git sha, package versions)."""
from __future__ import annotations

import json
import math
import os
import re
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from editbench.core import DataError
from editbench.harness.record import CheckpointRow, PreEdit, RunRecord

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


def protocol_label(result: RunRecord) -> str:
    """How a run's protocol is named in reports and compared: with its step size when not 1."""
    return result.get("protocol_label") or result.get("protocol") or "sequential"


def publish_dir(tmp: Path, final: Path) -> Path:
    """Move a finished folder into place in one rename (readers see all of it or none); an old one of
    the same name (an earlier try, an incomplete copy) goes first."""
    import shutil

    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def read_jsonl(path: Path):
    """The records of a JSONL file, one line at a time (memory follows the records taken, not the
    file); a line that is not UTF-8 or not a JSON object is an error naming the file and line."""
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}: line {line_no} is not UTF-8 text (byte offset {exc.start} in the line); "
                                "convert the file to UTF-8") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: line {line_no} is not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}: line {line_no} is a JSON {type(record).__name__}, expected an object")
            yield line_no, record


# what atomic_path's mkstemp names look like: .<target name>.<8 random characters><target suffix>
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}(?P<suffix>\.[A-Za-z0-9]+)?$")


def remove_stale_temps(folder: Path) -> list[Path]:
    """Temporary files that a killed writer left in `folder` (its top level only)."""
    removed = []
    for path in Path(folder).glob(".*"):
        match = _TEMP_NAME.match(path.name)
        if path.is_file() and match and match["target"].endswith(match["suffix"] or ""):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


NON_FINITE_KEY = "non_finite"


def strict_json(obj: Any, where: str = "", found: list | None = None) -> Any:
    """`obj` with every NaN or infinite float replaced by None; the JSON paths replaced go to `found`.
    Bare NaN/Infinity tokens are not JSON, and a reader must not mistake them for numbers."""
    if isinstance(obj, float) and not math.isfinite(obj):
        if found is not None:
            found.append(f"{where or '.'} was {obj!r}")
        return None
    if isinstance(obj, dict):
        return {k: strict_json(v, f"{where}.{k}" if where else str(k), found) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v, f"{where}[{i}]", found) for i, v in enumerate(obj)]
    return obj


def dumps_strict(obj: Any, indent: int | None = None) -> str:
    """JSON text without NaN/Infinity; a dict records what was replaced under `non_finite`."""
    found: list[str] = []
    clean = strict_json(obj, found=found)
    if found and isinstance(clean, dict):
        clean[NON_FINITE_KEY] = [*clean.get(NON_FINITE_KEY, []), *found]
    return json.dumps(clean, indent=indent, allow_nan=False)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, dumps_strict(obj, indent=2) + "\n")


def atomic_write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(dumps_strict(r) + "\n" for r in rows))


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
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a JSON file") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte offset {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def load_results(path: Path) -> RunRecord:
    """Read one results.json, checking the schema version."""
    path = Path(path)
    data = read_json(path, "no such results file")
    if data.get("schema_version") not in READABLE_SCHEMAS:
        raise DataError(
            f"{path}: field 'schema_version' is {data.get('schema_version')!r}, this editbench reads "
            f"{', '.join(map(str, READABLE_SCHEMAS))}"
        )
    check_results_shape(data, path)
    return upgraded(data)


def upgraded(data: dict) -> RunRecord:
    """A record as this editbench writes it, from any readable version, so that readers subscript its
    fields instead of guessing: a version-1 file (always complete, teacher-forced scores) and keys
    that runs of some kinds leave out get their meaning spelled out once, here."""
    record = cast(RunRecord, {**data, "schema_version": SCHEMA_VERSION})
    record.setdefault("status", "complete")
    record.setdefault("order", 0)
    record.setdefault("protocol", "sequential")
    record.setdefault("protocol_label", record["protocol"])
    # a run from before evaluation modes was scored teacher-forced
    record["evaluation"] = {"mode": "teacher-forced", "score_basis": "token", **(data.get("evaluation") or {})}
    record["memory"] = dict(data.get("memory") or {})
    record["machine"] = dict(data.get("machine") or {})
    record["benchmark"] = dict(data.get("benchmark") or {})
    record["exam_questions"] = list(data.get("exam_questions") or [])
    record.setdefault("git_sha", None)
    record["hparams"] = dict(data.get("hparams") or {})
    record["pre"] = cast(PreEdit, dict(data.get("pre") or {}))
    record["failed_edits"] = data.get("failed_edits") or 0
    record["diverged_edits"] = data.get("diverged_edits") or 0
    record["noop_edits"] = data.get("noop_edits") or 0
    # a run from before compute ceilings ran under none (harness/ceiling.py)
    record["compute_ceiling"] = {"flops_per_edit": None, "source": "not recorded", "set_by": None,
                                 **(data.get("compute_ceiling") or {})}
    record["checkpoints"] = [upgraded_checkpoint(cp) for cp in data["checkpoints"]]
    return record


def upgraded_checkpoint(cp: dict) -> CheckpointRow:
    row = cast(CheckpointRow, {"fluency": None, "fluency_pre": None, "perplexity": None, "perplexity_pre": None,
                               **cp})
    row["general"] = {"accuracy": None, "accuracy_pre": None, "by_category": {}, "by_category_pre": {},
                      **(cp.get("general") or {})}
    row["weights"] = {"max_norm_ratio": None, "max_update_norm": None, "matrices": {}, **(cp.get("weights") or {})}
    row["per_edit"] = list(cp.get("per_edit") or [])
    row["groups"] = dict(cp.get("groups") or {})
    return row


# A method or cell name becomes part of file names (figures): letters, digits and . _ : + = , - [ ] only.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+=,\[\]-]*$")
# What a report reads from every results file, with the type it must have.
REQUIRED = {"method": str, "n_edits": int, "seed": int, "checkpoints": list, "model": dict, "packages": dict}
REQUIRED_MODEL = {"name": str, "model_type": str, "parameters": int}
REQUIRED_CHECKPOINT = {"edits": int, "edit_seconds": (int, float)}


def check_results_shape(data: Any, path: Path) -> None:
    """One line naming the file and field when a results file lacks what reports read."""
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")

    def need(obj: dict, fields: dict, where: str) -> None:
        for key, kind in fields.items():
            if key not in obj:
                raise DataError(f"{path}: field '{where}{key}' is missing")
            if not isinstance(obj[key], kind) or isinstance(obj[key], bool):
                raise DataError(f"{path}: field '{where}{key}' has type {type(obj[key]).__name__}")

    need(data, REQUIRED, "")
    need(data["model"], REQUIRED_MODEL, "model.")
    for i, cp in enumerate(data["checkpoints"]):
        if not isinstance(cp, dict):
            raise DataError(f"{path}: field 'checkpoints[{i}]' is not an object")
        need(cp, REQUIRED_CHECKPOINT, f"checkpoints[{i}].")
    if not SAFE_NAME.match(data["method"]) or ".." in data["method"]:
        raise DataError(f"{path}: field 'method' {data['method']!r} is not a safe name (letters, digits, . _ : + = , -)")
    found: list[str] = []
    strict_json(data, found=found)
    if found:  # editbench never writes NaN or Infinity (it writes null and lists them under non_finite)
        raise DataError(f"{path}: field '{found[0].split(' was ')[0]}' is {found[0].split(' was ')[1]}, not a number "
                        "editbench writes: the file was damaged or edited by hand"
                        + (f" ({len(found) - 1} more such field(s))" if len(found) > 1 else ""))


def find_results(run_dir: Path) -> list[Path]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: no such run directory")
    # <method>/results.json, or <method>/order-<k>/results.json with several edit orders, each possibly
    # under seed-<s>/ (make leaderboard SEEDS=3: one folder per sample of edits)
    paths = sorted(p for pattern in (f"*/{RESULTS_FILE}", f"*/order-*/{RESULTS_FILE}")
                   for prefix in ("", "seed-*/") for p in run_dir.glob(prefix + pattern))
    if not paths:
        raise DataError(f"{run_dir}: holds no */{RESULTS_FILE}")
    return paths
