"""The regression gate: a run compared with a stored baseline, metric by metric, method by method.

Exit codes of `editbench regress`: 0 nothing regressed, 1 something regressed, 2 unusable input
(missing baseline, different benchmark or N, schema mismatch), each stated in one line.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from editbench.core import DataError
from editbench.harness.results import SCHEMA_VERSION, find_results, load_results, read_json
from editbench.reports import tables

BASELINE_KIND = "editbench-baseline"
GATED = ("reliability", "reliability_em", "generalization", "locality", "portability", "exam_accuracy", "fluency")
DEFAULT_TOLERANCES = Path(__file__).resolve().parent / "tolerances.yaml"


def load_tolerances(path: Path | None = None, overrides: dict[str, float] | None = None) -> dict[str, float]:
    path = Path(path or DEFAULT_TOLERANCES)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise DataError(f"{path}: no such tolerances file") from None
    unknown = [k for k in {**raw, **(overrides or {})} if k not in GATED]
    if unknown:
        raise DataError(f"{path}: unknown metric(s) {', '.join(unknown)} (valid: {', '.join(GATED)})")
    merged = {**raw, **(overrides or {})}
    bad = [k for k, v in merged.items() if not isinstance(v, (int, float)) or v < 0]
    if bad:
        raise DataError(f"{path}: tolerance for {', '.join(bad)} must be a number >= 0")
    return {k: float(merged.get(k, 0.0)) for k in GATED}


def summarise_run(run_dir: Path) -> dict:
    """A run directory in baseline form: identity of the setting, and final-checkpoint metrics per method."""
    results = [load_results(p) for p in find_results(run_dir)]
    first = results[0]
    rows = tables.final_rows(results)
    return {
        "kind": BASELINE_KIND,
        "schema_version": SCHEMA_VERSION,
        "benchmark": (first.get("benchmark") or {}).get("name"),
        "world": (first.get("benchmark") or {}).get("world"),
        "model": first["model"]["name"] if (first.get("benchmark") or {}).get("world") is None else None,
        "n_edits": first["n_edits"],
        "seed": first["seed"],
        "checkpoint": first["checkpoints"][-1]["edits"] if first["checkpoints"] else None,
        "methods": {r["method"]: {k: r.get(k) for k in GATED} for r in rows},
    }


def load_baseline(path: Path) -> dict:
    path = Path(path)
    if path.is_dir():
        return summarise_run(path)
    data = read_json(path, "baseline does not exist")
    if data.get("kind") != BASELINE_KIND:
        raise DataError(f"baseline {path}: field 'kind' is {data.get('kind')!r}, expected {BASELINE_KIND!r}")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise DataError(f"baseline {path}: field 'schema_version' is {data.get('schema_version')!r}, "
                        f"this editbench writes {SCHEMA_VERSION}")
    return data


def check_comparable(run: dict, base: dict) -> None:
    for key in ("benchmark", "world", "n_edits", "checkpoint"):
        if run.get(key) != base.get(key):
            raise DataError(f"run and baseline differ in '{key}': run {run.get(key)!r}, baseline {base.get(key)!r}")


@dataclass
class Finding:
    method: str
    metric: str
    baseline: float | None
    value: float | None
    tolerance: float
    status: str  # ok | regressed | improved | new | missing

    @property
    def change(self) -> float | None:
        return None if self.value is None or self.baseline is None else self.value - self.baseline


def compare(run: dict, base: dict, tolerances: dict[str, float]) -> list[Finding]:
    findings = []
    for method, metrics in run["methods"].items():
        old = base["methods"].get(method)
        for metric in GATED:
            value = metrics.get(metric)
            if old is None:
                findings.append(Finding(method, metric, None, value, tolerances[metric], "new"))
                continue
            before = old.get(metric)
            if before is None or value is None:
                status = "ok" if before is None and value is None else "missing"
            elif before - value > tolerances[metric]:
                status = "regressed"
            elif value - before > tolerances[metric]:
                status = "improved"
            else:
                status = "ok"
            findings.append(Finding(method, metric, before, value, tolerances[metric], status))
    for method in base["methods"]:
        if method not in run["methods"]:
            findings.append(Finding(method, "-", None, None, 0.0, "not run"))
    return findings


def regressed(findings: list[Finding]) -> bool:
    # a metric the baseline had and the run lost counts as a regression too
    return any(f.status in ("regressed", "missing") for f in findings)


def report(findings: list[Finding]) -> str:
    def num(v):
        return "-" if v is None else f"{v:.3f}"

    lines = ["| method | metric | baseline | run | change | tolerance | status |", "|---|---|---|---|---|---|---|"]
    shown = [f for f in findings if f.status != "ok"] or findings
    for f in shown:
        change = "-" if f.change is None else f"{f.change:+.3f}"
        lines.append(f"| {f.method} | {f.metric} | {num(f.baseline)} | {num(f.value)} | {change} | "
                     f"{f.tolerance:g} | {f.status} |")
    ok = sum(f.status == "ok" for f in findings)
    verdict = "REGRESSION" if regressed(findings) else "no regression"
    return "\n".join(lines) + f"\n\n{verdict}: {ok} of {len(findings)} checks within tolerance\n"
