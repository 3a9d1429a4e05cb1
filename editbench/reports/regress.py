"""The regression gate: a run compared with a baseline (a stored file, a run directory, or the same
suite run at a reference commit on this machine), metric by metric, method by method.

Per-edit metrics are compared edit by edit with a paired bootstrap over edits: a metric regresses
when its mean change is below -tolerance *and* the 95% interval of the change lies below 0, so the
noise of a few flipped edits cannot trip the gate while a real drop does. Whole-model metrics (exam
accuracy, fluency) are one number each and compared against their tolerance.

Exit codes of `editbench regress`: 0 nothing regressed, 1 something regressed, 2 unusable input
(missing baseline, a different benchmark, N, protocol or model fingerprint, schema mismatch), each
stated in one line.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from editbench.core import ConfigError, DataError
from editbench.harness.cache import cache_root
from editbench.harness.metric_registry import PER_EDIT_FAMILIES, default_tolerances, metric_names
from editbench.harness.results import (
    READABLE_SCHEMAS, SCHEMA_VERSION, atomic_write_json, find_results, load_results, protocol_label, read_json,
)
from editbench.reports import tables
from editbench.reports.stats import paired_diff_ci

BASELINE_KIND = "editbench-baseline"
BASELINE_VERSION = 2  # 2: fingerprint, protocol, machine and per-edit values
# what is gated, and its default tolerances: the metrics harness/metric_registry.py gives a tolerance
PER_EDIT = metric_names(*PER_EDIT_FAMILIES, gated=True)  # compared edit by edit
WHOLE_MODEL = metric_names("model", gated=True)  # compared as one number
GATED = PER_EDIT + WHOLE_MODEL
# The suite `make regress` runs: every registered editor on the micro world, 20 edits, seed 0.
# Only the final checkpoint is gated, so the suite scores only that one.
DEFAULT_SUITE = ("--method", "all", "--world", "micro", "--edits", "20", "--checkpoints", "20", "--seed", "0")
# Both sides of `--against` run with one torch thread each, side by side on two cores: the same
# thread count on both sides (numbers depend on it), and the reference's cached results stay valid.
SUITE_THREADS = "1"


def load_tolerances(path: Path | None = None, overrides: dict[str, float] | None = None) -> dict[str, float]:
    """The registry's default tolerances, then a YAML file's (METRIC: VALUE), then `overrides`."""
    raw: dict = dict(default_tolerances())
    if path is not None:
        try:
            raw.update(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})
        except FileNotFoundError:
            raise DataError(f"{path}: no such tolerances file") from None
    source = str(path) if path is not None else "the metric registry's tolerances"
    unknown = [k for k in {**raw, **(overrides or {})} if k not in GATED]
    if unknown:
        raise DataError(f"{source}: unknown metric(s) {', '.join(unknown)} (valid: {', '.join(GATED)})")
    merged = {**raw, **(overrides or {})}
    bad = [k for k, v in merged.items() if not isinstance(v, (int, float)) or v < 0]
    if bad:
        raise DataError(f"{source}: tolerance for {', '.join(bad)} must be a number >= 0")
    return {k: float(merged.get(k, 0.0)) for k in GATED}


def summarise_run(run_dir: Path) -> dict:
    """A run directory in baseline form: what the numbers depend on, final metrics and per-edit values."""
    paths = find_results(run_dir)
    results = [load_results(p) for p in paths]
    unfinished = [f"{p.parent.name} ({r['status']})" for p, r in zip(paths, results) if r["status"] != "complete"]
    if unfinished:
        raise DataError(f"{run_dir}: not every run is complete: {', '.join(unfinished)}")
    results = [r for r in results if r["order"] == 0]  # the benchmark's own order
    first = results[0]
    bench = first["benchmark"]
    methods = {}
    for r, row in zip(results, [tables.checkpoint_row(r, r["checkpoints"][-1]) for r in results]):
        final = r["checkpoints"][-1]
        methods[r["method"]] = {
            **{k: row.get(k) for k in GATED},
            "per_edit": {k: [tables.metric_value(e, k) for e in final["per_edit"]] for k in PER_EDIT},
            "case_ids": [e.get("case_id") for e in final["per_edit"]],
        }
    return {
        "kind": BASELINE_KIND,
        "schema_version": SCHEMA_VERSION,
        "baseline_version": BASELINE_VERSION,
        "benchmark": bench.get("name"),
        "world": bench.get("world"),
        "model": first["model"]["name"] if bench.get("world") is None else None,
        "fingerprint": first["model"].get("fingerprint"),
        "protocol": protocol_label(first),
        "n_edits": first["n_edits"],
        "seed": first["seed"],
        "checkpoint": first["checkpoints"][-1]["edits"] if first["checkpoints"] else None,
        "machine": first.get("machine"),
        "packages": first.get("packages"),
        "git_sha": first.get("git_sha"),
        "methods": methods,
    }


def load_baseline(path: Path) -> dict:
    path = Path(path)
    if path.is_dir():
        return summarise_run(path)
    data = read_json(path, "baseline does not exist")
    if data.get("kind") != BASELINE_KIND:
        raise DataError(f"baseline {path}: field 'kind' is {data.get('kind')!r}, expected {BASELINE_KIND!r}")
    if data.get("schema_version") not in READABLE_SCHEMAS:
        raise DataError(f"baseline {path}: field 'schema_version' is {data.get('schema_version')!r}, "
                        f"this editbench reads {', '.join(map(str, READABLE_SCHEMAS))}")
    if data.get("baseline_version") != BASELINE_VERSION:
        raise DataError(f"baseline {path}: field 'baseline_version' is {data.get('baseline_version')!r}, this "
                        f"editbench reads {BASELINE_VERSION}; refresh it with `make baseline`")
    return data


def check_comparable(run: dict, base: dict, same_weights: bool = True) -> None:
    """Refuse (DataError, exit 2) what cannot be compared. `same_weights` False: the baseline is the
    same suite at another commit, whose code may build a different world; that is a change to judge."""
    for key in ("benchmark", "world", "protocol", "n_edits", "checkpoint", "seed"):
        if run.get(key) != base.get(key):
            raise DataError(f"run and baseline differ in '{key}': run {run.get(key)!r}, baseline {base.get(key)!r}")
    if same_weights and run.get("fingerprint") != base.get("fingerprint"):
        raise DataError(
            f"run and baseline were scored on different weights (sha256 {str(run.get('fingerprint'))[:16]} vs "
            f"{str(base.get('fingerprint'))[:16]}), so absolute numbers cannot be compared; compare with a "
            "reference commit on this machine instead: editbench regress --against REF (make regress)")


@dataclass
class Finding:
    method: str
    metric: str
    baseline: float | None
    value: float | None
    tolerance: float
    status: str  # ok | regressed | improved | new | missing | not run
    change: float | None = None
    interval: tuple[float, float] | None = None  # paired bootstrap interval of the change, per-edit metrics


def _aligned(old: dict, new: dict, metric: str) -> tuple[list, list] | None:
    """The two runs' per-edit values of `metric`, when both have them for the same edits in the same order."""
    a, b = (old.get("per_edit") or {}).get(metric), (new.get("per_edit") or {}).get(metric)
    if not a or not b or len(a) != len(b):
        return None
    ids_a, ids_b = old.get("case_ids") or [], new.get("case_ids") or []
    if ids_a and ids_b and all(ids_a) and all(ids_b) and ids_a != ids_b:
        return None
    return a, b


def _finite_or_none(value):
    return value if not isinstance(value, float) or math.isfinite(value) else None


def _judge(method: str, metric: str, old: dict, new: dict, tolerance: float, seed: int) -> Finding:
    before, value = _finite_or_none(old.get(metric)), _finite_or_none(new.get(metric))
    if before is None or value is None:  # a NaN is no value: against a number it is a regression
        status = "ok" if before is None and value is None else "missing"
        return Finding(method, metric, before, value, tolerance, status)
    pairs = _aligned(old, new, metric) if metric in PER_EDIT else None
    found = paired_diff_ci(*pairs, seed=seed) if pairs else None
    if found is not None:
        change, (lo, hi) = found
        status = ("regressed" if change < -tolerance and hi < 0 else
                  "improved" if change > tolerance and lo > 0 else "ok")
        return Finding(method, metric, before, value, tolerance, status, change, (lo, hi))
    change = value - before
    status = "regressed" if change < -tolerance else "improved" if change > tolerance else "ok"
    return Finding(method, metric, before, value, tolerance, status, change)


def compare(run: dict, base: dict, tolerances: dict[str, float]) -> list[Finding]:
    findings = []
    seed = run.get("seed") or 0
    for method, new in run["methods"].items():
        old = base["methods"].get(method)
        for metric in GATED:
            if old is None:
                findings.append(Finding(method, metric, None, new.get(metric), tolerances[metric], "new"))
            else:
                findings.append(_judge(method, metric, old, new, tolerances[metric], seed))
    for method in base["methods"]:
        if method not in run["methods"]:
            findings.append(Finding(method, "-", None, None, 0.0, "not run"))
    return findings


def regressed(findings: list[Finding]) -> bool:
    # a metric the baseline had and the run lost counts as a regression too
    return any(f.status in ("regressed", "missing") for f in findings)


def identical(run: dict, base: dict) -> bool:
    """Every gated number and every per-edit value the same: the code changed nothing measurable."""
    keep = ("methods",)
    return {k: run.get(k) for k in keep} == {k: base.get(k) for k in keep}


def report(findings: list[Finding], same: bool = False) -> str:
    def num(v):
        return "-" if v is None else f"{v:.3f}"

    lines = ["| method | metric | baseline | run | change | 95% CI of change | tolerance | status |",
             "|---|---|---|---|---|---|---|---|"]
    shown = [f for f in findings if f.status != "ok"] or ([] if same else findings)
    for f in shown:
        change = "-" if f.change is None else f"{f.change:+.3f}"
        interval = "-" if f.interval is None else f"[{f.interval[0]:+.3f}, {f.interval[1]:+.3f}]"
        lines.append(f"| {f.method} | {f.metric} | {num(f.baseline)} | {num(f.value)} | {change} | {interval} | "
                     f"{f.tolerance:g} | {f.status} |")
    ok = sum(f.status == "ok" for f in findings)
    if regressed(findings):
        named = ", ".join(f"{f.method}/{f.metric}" for f in findings if f.status in ("regressed", "missing"))
        verdict = f"REGRESSION in {named}"
    else:
        verdict = "no regression" + (" (no change: every number identical)" if same else "")
    table = "\n".join(lines) + "\n\n" if len(lines) > 2 else ""
    return table + f"{verdict}: {ok} of {len(findings)} checks within tolerance\n"


# --------------------------------------------------------------------------- against a reference commit


def repo_root() -> Path:
    """The git checkout this editbench runs from (the working tree the gate judges)."""
    here = Path(__file__).resolve().parents[2]
    out = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=here, capture_output=True, text=True)
    if out.returncode != 0:
        raise ConfigError(f"regress --against needs editbench in a git checkout ({here} is not one)")
    return Path(out.stdout.strip())


def resolve_ref(root: Path, ref: str) -> str:
    out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=root,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise ConfigError(f"regress --against {ref!r}: no such commit in {root}")
    return out.stdout.strip()


def run_suite(tree: Path, suite: list[str], out: Path, log=print) -> None:
    """`editbench run` with the code of `tree` (its own package and hparams), into `out`."""
    env = {**os.environ, "PYTHONPATH": str(tree) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": SUITE_THREADS, "MKL_NUM_THREADS": SUITE_THREADS}
    cmd = [sys.executable, "-m", "editbench", "run", *suite, "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise DataError(f"the suite failed in {tree} (exit {proc.returncode}): {last}")


def _suite_key(sha: str, suite: list[str]) -> str:
    import torch

    blob = json.dumps({"sha": sha, "suite": suite, "threads": SUITE_THREADS, "torch": torch.__version__,
                       "python": sys.version.split()[0]})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def reference_run(ref: str, suite: list[str], log=print) -> Path:
    """The suite's results at commit `ref`, run in a temporary git worktree on this machine.

    A commit's code never changes, so its results are kept under <cache>/regress/ keyed by the commit,
    the suite, the thread count and the torch and Python versions, and reused.
    """
    root = repo_root()
    sha = resolve_ref(root, ref)
    cached = cache_root() / "regress" / f"{sha[:12]}-{_suite_key(sha, suite)}"
    if (cached / "suite.json").is_file():
        log(f"reference {ref} ({sha[:12]}): results from cache {cached}")
        return cached
    log(f"reference {ref} ({sha[:12]}): running the suite in a temporary worktree")
    work = Path(tempfile.mkdtemp(prefix="editbench-ref-"))
    tree = work / "tree"
    try:
        add = subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(tree), sha], cwd=root,
                             capture_output=True, text=True)
        if add.returncode != 0:
            raise ConfigError(f"git worktree add failed: {add.stderr.strip().splitlines()[-1:]}")
        staging = work / "results"
        run_suite(tree, suite, staging, log)
        atomic_write_json(staging / "suite.json", {"sha": sha, "suite": suite})
        cached.parent.mkdir(parents=True, exist_ok=True)
        if cached.exists():
            shutil.rmtree(cached)
        shutil.move(str(staging), str(cached))
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=root, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return cached


def _build_world_first(suite: list[str], log=print) -> None:
    """Build the suite's world once before the two suites start, rather than twice side by side."""
    if "--model" in suite:
        return
    from editbench.benchmarks.world_model import world_path

    size = suite[suite.index("--world") + 1] if "--world" in suite[:-1] else "default"
    world_path(size, log=log)


def against(ref: str, suite: list[str], out: Path, log=print) -> tuple[dict, dict]:
    """The suite at `ref` and in the working tree (side by side when the reference is not cached):
    (working tree summary, reference summary)."""
    from concurrent.futures import ThreadPoolExecutor

    _build_world_first(suite, log)
    log(f"working tree: running the suite into {out}")
    with ThreadPoolExecutor(max_workers=2) as pool:
        ref_dir = pool.submit(reference_run, ref, suite, log)
        here = pool.submit(run_suite, repo_root(), suite, out, log)
        here.result()
        return summarise_run(out), summarise_run(ref_dir.result())
