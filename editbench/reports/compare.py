"""Comparison studies: methods run on the same edits in the same order, side by side, each against
the first method, with paired bootstrap intervals of the per-edit differences."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from editbench.core import DataError
from editbench.harness.results import atomic_write_json, atomic_write_text, find_results, load_results
from editbench.reports import tables
from editbench.reports.stats import CI_LEVEL, N_RESAMPLES, paired_diff_ci
from editbench.harness.record import RunRecord

PER_EDIT = ("reliability", "generalization", "locality", "portability")
WHOLE_MODEL = ("fluency", "exam_accuracy")


def comparison_rows(results: list[RunRecord], methods: list[str] | None = None) -> list[dict]:
    """Rows of every method against the reference: the first of `methods` (default: the first result)."""
    by_method = {r["method"]: r for r in results if r.get("order", 0) == 0}
    names = [m for m in (methods or by_method) if m in by_method]
    missing = [m for m in (methods or []) if m not in by_method]
    if missing or len(names) < 2:
        raise DataError(f"comparison needs results of at least two methods (missing: {', '.join(missing) or '-'})")
    reference, *others = [by_method[m] for m in names]
    ref_cp = reference["checkpoints"][-1]
    ref_row = tables.checkpoint_row(reference, ref_cp)
    rows = []
    for other in others:
        cp = other["checkpoints"][-1]
        ids_ref = [r.get("case_id") for r in ref_cp["per_edit"]]
        row = tables.checkpoint_row(other, cp)
        out: dict[str, Any] = {"method": other["method"], "reference": reference["method"], "edits": cp["edits"]}
        for metric in PER_EDIT:
            a = [tables.metric_value(e, metric) for e in ref_cp["per_edit"]]
            b = [tables.metric_value(e, metric) for e in cp["per_edit"]]
            if len(a) != len(b) or ids_ref != [e.get("case_id") for e in cp["per_edit"]]:
                raise DataError(f"{other['method']} and {reference['method']} were not run on the same edits")
            found = paired_diff_ci(a, b, seed=other["seed"])
            out[metric] = row.get(metric)
            out[f"{metric}_ref"] = ref_row.get(metric)
            out[f"{metric}_diff"] = found[0] if found else None
            out[f"{metric}_diff_ci"] = list(found[1]) if found else None
            out[f"{metric}_significant"] = bool(found and (found[1][0] > 0 or found[1][1] < 0))
        for metric in WHOLE_MODEL:  # one number per model: a difference without an interval
            out[metric], out[f"{metric}_ref"] = row.get(metric), ref_row.get(metric)
            both = out[metric] is not None and out[f"{metric}_ref"] is not None
            out[f"{metric}_diff"] = out[metric] - out[f"{metric}_ref"] if both else None
        rows.append(out)
    return rows


def markdown(rows: list[dict]) -> str:
    header = ["method", "vs", "T", *PER_EDIT, *WHOLE_MODEL]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["method"], r["reference"], str(r["edits"])]
        for metric in PER_EDIT:
            ci = r[f"{metric}_diff_ci"]
            if r[f"{metric}_diff"] is None:
                cells.append("-")
                continue
            mark = " *" if r[f"{metric}_significant"] else ""
            cells.append(f"{r[metric]:.3f} vs {r[metric + '_ref']:.3f}: {r[metric + '_diff']:+.3f} "
                         f"[{ci[0]:+.3f}, {ci[1]:+.3f}]{mark}")
        for metric in WHOLE_MODEL:
            d = r[f"{metric}_diff"]
            cells.append("-" if d is None else f"{r[metric]:.3f} vs {r[metric + '_ref']:.3f}: {d:+.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_comparison(run_dir: Path, methods: list[str] | None = None) -> list[Path]:
    run_dir = Path(run_dir)
    results = [load_results(p) for p in find_results(run_dir)]
    rows = comparison_rows(results, methods)
    text = (
        f"# editbench comparison (reference: {rows[0]['reference'] if rows else results[0]['method']})\n\n"
        f"Per-edit metrics: method vs reference, difference, {int(CI_LEVEL * 100)}% paired bootstrap interval over "
        f"the same edits ({N_RESAMPLES} resamples); * = the interval excludes zero. Fluency and exam are one number "
        "per model, so only their difference is shown.\n\n" + markdown(rows)
    )
    outputs = [run_dir / "comparison.md", run_dir / "comparison.json"]
    atomic_write_text(outputs[0], text)
    atomic_write_json(outputs[1], rows)
    return outputs
