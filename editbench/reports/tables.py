"""Results -> rows -> Markdown / CSV tables."""
from __future__ import annotations

import csv
import io
from typing import Sequence

METRIC_COLUMNS = ("reliability", "reliability_em", "generalization", "locality", "portability")


def _num(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _signed(value) -> str:
    return "" if value is None else f" ({value:+.3f})"


def checkpoint_row(result: dict, cp: dict) -> dict:
    """One flat row: a method at one checkpoint, with changes from pre-edit for fluency and exam."""
    general = cp.get("general") or {}
    fluency, fluency_pre = cp.get("fluency"), cp.get("fluency_pre")
    exam, exam_pre = general.get("accuracy"), general.get("accuracy_pre")
    edits = cp["edits"]
    return {
        "method": result["method"],
        "edits": edits,
        **{k: cp.get(k) for k in METRIC_COLUMNS},
        "fluency": fluency,
        "fluency_pre": fluency_pre,
        "fluency_change": None if fluency is None or fluency_pre is None else fluency - fluency_pre,
        "exam": general.get("exam"),
        "exam_accuracy": exam,
        "exam_accuracy_pre": exam_pre,
        "exam_change": None if exam is None or exam_pre is None else exam - exam_pre,
        "seconds_per_edit": cp["edit_seconds"] / edits if edits else None,
        "eval_seconds": cp.get("eval_seconds"),
        "failed_edits": result.get("failed_edits"),
    }


def final_rows(results: Sequence[dict]) -> list[dict]:
    return [checkpoint_row(r, r["checkpoints"][-1]) for r in results if r["checkpoints"]]


def all_rows(results: Sequence[dict]) -> list[dict]:
    return [checkpoint_row(r, cp) for r in results for cp in r["checkpoints"]]


def markdown(rows: Sequence[dict]) -> str:
    header = ["method", "edits", "reliability", "rel. EM", "generalization", "locality", "portability",
              "fluency (Δ pre)", "exam acc. (Δ pre)", "s/edit", "eval s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [
            r["method"], str(r["edits"]), _num(r["reliability"]), _num(r["reliability_em"]),
            _num(r["generalization"]), _num(r["locality"]), _num(r["portability"]),
            _num(r["fluency"], 2) + _signed(r["fluency_change"]),
            _num(r["exam_accuracy"]) + _signed(r["exam_change"]),
            _num(r["seconds_per_edit"], 3), _num(r["eval_seconds"], 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[dict]) -> str:
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def summary_table(results: Sequence[dict]) -> str:
    return markdown(final_rows(results))
