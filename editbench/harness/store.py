"""One run directory: its lock, its status, what each checkpoint leaves behind, and the resume.

After every checkpoint the directory holds, each file written atomically:
- `results.json` (`status`: running | complete | failed) and `edits.jsonl` up to that checkpoint;
- `state/ckpt-NNNNN/`: what a resume needs to continue exactly where the run was: the current value
  of every parameter an editor has touched since θ₀ (`weights.safetensors`; values, not differences,
  because θ₀ + (θ − θ₀) is not θ bit for bit in floating point), the editor's own cross-call state
  (`editor.safetensors`), the RNG states and the position in the protocol's steps (`progress.json`);
- `state/pre.json`: the unedited model's scores (computed once, reused on resume);
- `state/latest.json`: which `ckpt-*` folder is complete, written last, so a crash at any moment
  leaves a resumable directory (rows written past the last complete checkpoint are dropped).

The runner hands the store plain values (`Snapshot`) and gets plain values back (`ResumePoint`); the
store never sees an editor, a protocol or a method name.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any, Iterable, cast

import torch

from editbench.core import ConfigError, DataError, setting
from editbench.harness.record import RunRecord
from editbench.harness.results import (
    EDITS_FILE,
    RESULTS_FILE,
    atomic_write_json,
    atomic_write_jsonl,
    plain_mode,
    protocol_label,
    publish_dir,
    read_json,
    read_jsonl,
)

STATE_DIR = "state"
LATEST_FILE = "latest.json"
PRE_FILE = "pre.json"
LOCK_FILE = ".editbench.lock"


@dataclass
class Snapshot:
    """What the runner hands the store at a checkpoint."""

    next_step: int  # the protocol step to run next
    edit_seconds: float
    weights: dict[str, torch.Tensor]  # current value of every parameter touched since θ₀
    editor_state: dict[str, torch.Tensor]
    # installed module patches and context: intervention kind, module, adaptor, settings (JSON), tensors
    patches: list[dict] = field(default_factory=list)


@dataclass
class ResumePoint:
    """What a resumed run starts from: the last complete checkpoint."""

    next_step: int
    edit_seconds: float
    weights: dict[str, torch.Tensor]
    editor_state: dict[str, torch.Tensor]
    edit_rows: list[dict]
    checkpoint_rows: list[dict]
    pre: dict
    rng: dict = field(default_factory=dict)
    complete: bool = False  # the run had finished: nothing to do
    recorded: dict | None = None  # its results.json, when complete
    patches: list[dict] = field(default_factory=list)  # as in Snapshot


# --------------------------------------------------------------------------- RNG states


def rng_states() -> tuple[dict, dict[str, torch.Tensor]]:
    """Python's and torch's global generator states (JSON part, tensor part)."""
    import numpy as np

    version, internal, gauss = random.getstate()
    np_state = cast(tuple, np.random.get_state())  # the legacy tuple (name, keys, pos, has_gauss, gauss)
    plain = {"python": [version, list(internal), gauss],
             "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])]}
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    return plain, tensors


def set_rng_states(plain: dict, tensors: dict[str, torch.Tensor]) -> None:
    import numpy as np

    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["rng.torch"].cpu())
    cuda = sorted(k for k in tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k].cpu() for k in cuda])


# --------------------------------------------------------------------------- tensor files


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    # safetensors wants contiguous tensors that share no storage
    save_file({k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}, str(path))
    os.chmod(path, plain_mode())


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        return {}
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for a truncated or garbled file
        raise DataError(f"{path}: unreadable saved state ({exc})") from None


# --------------------------------------------------------------------------- the store


class NullStore:
    """A run kept in memory only (the Python API without an output folder): the runner's calls to a
    store do nothing, so the runner's loop has one path; `record` is what `results.json` would hold."""

    where = None
    started = False
    saves_state = False  # the runner need not copy weights and editor state at checkpoints

    def __init__(self, meta: dict | None = None) -> None:
        self.meta = dict(meta or {})

    def resume_point(self, results: dict) -> None:
        return None

    def start(self, results: dict, pre: dict, point) -> None:
        self.started = True

    def checkpoint(self, results: dict, edit_rows: list[dict], snapshot, lm=None, checkpoint: int | None = None):
        pass

    def finish(self, results: dict, edit_rows: list[dict]) -> None:
        pass

    def fail(self, error: BaseException) -> None:
        pass

    def record(self, results: dict) -> dict:
        return {**results, **self.meta, "status": "complete"}


class RunStore:
    """The files of one run (one method, one order, one config cell) in `directory`."""

    saves_state = True

    def __init__(self, directory: Path, meta: dict | None = None, save_model_at: Iterable[int] = (),
                 resume: bool = False) -> None:
        self.dir = Path(directory)
        self.meta = dict(meta or {})  # merged into results.json (benchmark, audit)
        self.save_model_at = set(save_model_at)
        self.resume = resume
        self._results: dict | None = None
        self._edit_rows: list[dict] = []
        self.started = False  # set once this run has written anything

    @property
    def where(self) -> Path:
        return self.dir / RESULTS_FILE

    def record(self, results: dict) -> dict:
        """What `results.json` holds once the run is complete."""
        return {**results, **self.meta, "status": "complete"}

    @property
    def state_dir(self) -> Path:
        return self.dir / STATE_DIR

    def status(self) -> str | None:
        """The recorded status, or None when the folder holds no results."""
        path = self.dir / RESULTS_FILE
        if not path.is_file():
            return None
        return read_json(path).get("status", "complete")  # schema 1 files were written when complete

    # -- the runner's calls, in order

    def resume_point(self, results: dict) -> ResumePoint | None:
        """With resume on: where an earlier run of the same plan stopped (its last complete checkpoint,
        or a `complete` point when it finished); None to start afresh. A different plan is an error."""
        return self._resume_point(results) if self.resume else None

    def start(self, results: dict, pre: dict, point: ResumePoint | None) -> None:
        """Record the start (or the continuation) of the run: status running."""
        self.started = True
        if point is not None:  # say in the results that (and where) the run was continued
            earlier = read_json(self.dir / RESULTS_FILE).get("resumed", [])
            results["resumed"] = [*earlier, {"after_checkpoint": point.checkpoint_rows[-1]["edits"],
                                              "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}]
        if point is None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            for stale in [*self.state_dir.glob("ckpt-*"), *self.state_dir.glob(".ckpt-*")]:
                shutil.rmtree(stale)
            (self.state_dir / LATEST_FILE).unlink(missing_ok=True)
            atomic_write_json(self.state_dir / PRE_FILE, pre)
        self._write(results, point.edit_rows if point else [], "running")

    def checkpoint(self, results: dict, edit_rows: list[dict], snapshot: Snapshot, lm=None,
                   checkpoint: int | None = None) -> None:
        """Everything needed to continue after this checkpoint, then the results that show it."""
        n = len(results["checkpoints"])
        final = self.state_dir / f"ckpt-{n:05d}"
        tmp = self.state_dir / f".ckpt-{n:05d}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        plain_rng, tensor_rng = rng_states()
        _save_tensors(tmp / "weights.safetensors", snapshot.weights)
        _save_tensors(tmp / "editor.safetensors", {**snapshot.editor_state, **tensor_rng})
        _save_tensors(tmp / "patches.safetensors", {f"{i}/{name}": t for i, p in enumerate(snapshot.patches)
                                                    for name, t in p["tensors"].items()})
        atomic_write_json(tmp / "progress.json", {
            "next_step": snapshot.next_step, "edit_seconds": snapshot.edit_seconds, "edit_rows": len(edit_rows),
            "checkpoints": n, "rng": plain_rng, "editor_state_keys": sorted(snapshot.editor_state),
            "patches": [{k: v for k, v in p.items() if k != "tensors"} for p in snapshot.patches]})
        publish_dir(tmp, final)
        if lm is not None and checkpoint in self.save_model_at:
            self.save_model(lm, checkpoint)
        self._write(results, edit_rows, "running")
        atomic_write_json(self.state_dir / LATEST_FILE, {"checkpoint_dir": final.name})
        for old in self.state_dir.glob("ckpt-*"):  # only the latest complete one is needed
            if old != final:
                shutil.rmtree(old, ignore_errors=True)

    def finish(self, results: dict, edit_rows: list[dict]) -> None:
        self._write(results, edit_rows, "complete")

    def fail(self, error: BaseException) -> None:
        """Record the failure in results.json, keeping every checkpoint already scored. Before the run
        has started (e.g. its plan did not match the recorded one), nothing is written."""
        if not self.started:
            return
        results = self._results or {}
        tail = traceback.format_exception(type(error), error, error.__traceback__)[-3:]
        results = {**results, "error": {"type": type(error).__name__, "message": str(error).splitlines()[0]
                                        if str(error) else type(error).__name__, "traceback_tail": "".join(tail)}}
        self._write(results, self._edit_rows, "failed")

    def save_model(self, lm, checkpoint: int) -> Path:
        """The edited model as `save_pretrained` writes it, tokenizer included, for other tools."""
        final = self.dir / f"model-T{checkpoint}"
        tmp = self.dir / f".model-T{checkpoint}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        lm.model.save_pretrained(tmp)
        lm.tokenizer.save_pretrained(tmp)
        publish_dir(tmp, final)
        return final

    # -- internals

    def _write(self, results: dict, edit_rows: list[dict], status: str) -> None:
        self._results, self._edit_rows = results, list(edit_rows)
        atomic_write_jsonl(self.dir / EDITS_FILE, edit_rows)
        atomic_write_json(self.dir / RESULTS_FILE, {**self.record(results), "status": status})

    def _resume_point(self, results: dict) -> ResumePoint | None:
        """The last complete checkpoint of an earlier run of the same plan, or None (start afresh)."""
        latest = self.state_dir / LATEST_FILE
        results_path = self.dir / RESULTS_FILE
        if not results_path.is_file():
            return None
        recorded = read_json(results_path)
        _check_same_plan(recorded.get("plan"), results["plan"], results_path)
        if recorded.get("status") == "complete":
            return ResumePoint(next_step=-1, edit_seconds=0.0, weights={}, editor_state={},
                               edit_rows=_read_jsonl(self.dir / EDITS_FILE), checkpoint_rows=recorded["checkpoints"],
                               pre=recorded.get("pre", {}), complete=True,
                               recorded=recorded)
        if not latest.is_file() or not (self.state_dir / PRE_FILE).is_file():
            return None  # it stopped before its first checkpoint: start again
        ckpt = self.state_dir / read_json(latest)["checkpoint_dir"]
        progress = read_json(ckpt / "progress.json")
        tensors = _load_tensors(ckpt / "editor.safetensors")
        rng = {k: tensors.pop(k) for k in [k for k in tensors if k.startswith("rng.")]}
        edit_rows = _read_jsonl(self.dir / EDITS_FILE)[: progress["edit_rows"]]
        if len(edit_rows) < progress["edit_rows"] or len(recorded.get("checkpoints", [])) < progress["checkpoints"]:
            raise DataError(f"{self.dir}: results end before the saved state's checkpoint; resume is not possible "
                            f"(pass {setting('overwrite')} to start again)")
        return ResumePoint(
            next_step=progress["next_step"], edit_seconds=progress["edit_seconds"],
            weights=_load_tensors(ckpt / "weights.safetensors"), editor_state=tensors, edit_rows=edit_rows,
            checkpoint_rows=recorded["checkpoints"][: progress["checkpoints"]],
            pre=read_json(self.state_dir / PRE_FILE), rng={"plain": progress["rng"], "tensors": rng},
            patches=_read_patches(ckpt, progress.get("patches", [])))


def _read_patches(ckpt: Path, entries: list[dict]) -> list[dict]:
    """The module patches a checkpoint saved: each entry's fields with its tensors back."""
    if not entries:
        return []
    tensors = _load_tensors(ckpt / "patches.safetensors")
    return [{**entry, "tensors": {k.partition("/")[2]: t for k, t in tensors.items() if k.partition("/")[0] == str(i)}}
            for i, entry in enumerate(entries)]


def _read_jsonl(path: Path) -> list[dict]:
    return [record for _, record in read_jsonl(path)] if path.is_file() else []


def _check_same_plan(recorded: dict | None, planned: dict, path: Path) -> None:
    """A resume continues the same run only: same method, config, edits, checkpoints, weights, exam."""
    if recorded is None:
        raise ConfigError(f"{path}: written by an editbench without resume support; pass {setting('overwrite')} to run again")
    planned = json.loads(json.dumps(planned))  # as it reads back from JSON (tuples become lists)
    differ = [k for k in sorted(set(recorded) | set(planned)) if recorded.get(k) != planned.get(k)]
    if differ:
        k = differ[0]
        raise ConfigError(f"{path}: cannot resume, this run's {k} differs from the recorded one "
                          f"({_short(recorded.get(k))} -> {_short(planned.get(k))}); pass {setting('overwrite')} to start again")


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


# --------------------------------------------------------------------------- locks and targets


class RunDirLock:
    """An exclusive lock on an output folder; a second run into it fails at once, naming the holder."""

    def __init__(self, directory: Path) -> None:
        from filelock import FileLock

        self.dir = Path(directory)
        self.path = self.dir / LOCK_FILE
        self._lock = FileLock(str(self.path) + ".flock")

    def __enter__(self) -> "RunDirLock":
        from filelock import Timeout

        self.created = not self.dir.exists()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ConfigError(f"{setting('out')} {self.dir}: exists and is not a directory") from None
        except PermissionError:
            raise ConfigError(f"{setting('out')} {self.dir}: cannot create it (permission denied)") from None
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            try:
                holder = self.path.read_text().strip() or "unknown"
            except OSError:
                holder = "unknown"
            raise ConfigError(f"{setting('out')} {self.dir} is in use by another editbench run (PID {holder}); wait for it "
                              f"or choose another {setting('out')}") from None
        except PermissionError:
            raise ConfigError(f"{setting('out')} {self.dir}: cannot write there (permission denied)") from None
        self.path.write_text(str(os.getpid()))
        return self

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)
        self._lock.release()
        lock_file = Path(self._lock.lock_file)
        if self.created and {p.name for p in self.dir.iterdir()} <= {lock_file.name}:
            # the run stopped before writing anything: leave no trace of it
            lock_file.unlink(missing_ok=True)
            self.dir.rmdir()


def existing_results(directories: Iterable[Path]) -> list[Path]:
    """The folders among `directories` (or their order-k folders) that already hold results."""
    found = []
    for d in directories:
        d = Path(d)
        if (d / RESULTS_FILE).is_file() or any(d.glob(f"order-*/{RESULTS_FILE}")):
            found.append(d)
    return found


# --------------------------------------------------------------------------- what may share a report

def _setting(result: Mapping[str, Any]) -> dict:
    bench = result.get("benchmark") or {}
    plan = result.get("plan") or {}
    return {
        "benchmark": [bench.get("name"), bench.get("world"), bench.get("source"), bench.get("split")],
        "model fingerprint": (result.get("model") or {}).get("fingerprint"),
        "N": result.get("n_edits"),
        "protocol": protocol_label(cast(RunRecord, result)),
        "checkpoints": plan.get("checkpoints") or [cp.get("edits") for cp in result.get("checkpoints", [])],
    }


def check_same_setting(results: Sequence[Mapping[str, Any]], paths: list[Path]) -> None:
    """Runs that differ in benchmark, weights, N, protocol or checkpoints cannot share one table."""
    first = _setting(results[0])
    for result, path in zip(results[1:], paths[1:]):
        other = _setting(result)
        for key in first:
            if other[key] != first[key]:
                raise DataError(f"{path} differs from {paths[0]} in {key} ({_short(other[key])} vs "
                                f"{_short(first[key])}); report runs of one setting per folder")


def complete_only(results: list[RunRecord], paths: list[Path]) -> tuple[list[RunRecord], list[Path], list[str]]:
    """The complete runs, and one line for each run left out (running or failed)."""
    keep, keep_paths, left = [], [], []
    for result, path in zip(results, paths):
        status = result.get("status", "complete")
        if status == "complete":
            keep.append(result)
            keep_paths.append(path)
        else:
            error = (result.get("error") or {}).get("message")
            left.append(f"{path.parent.name}: {status}" + (f" ({error})" if error else "")
                        + f", {len(result.get('checkpoints', []))} checkpoint(s) scored")
    return keep, keep_paths, left
