"""Sweep reports: one table over the grid, a heat map per metric (or a line for a 1-D grid),
and a trade-off scatter of reliability against exam accuracy with every point labelled."""
from __future__ import annotations

from pathlib import Path

from editbench.core import DataError
from editbench.harness.results import SAFE_NAME, atomic_write_text, load_results, read_json
from editbench.reports import plots, tables

SWEEP_METRICS = ("reliability", "generalization", "locality", "exam_accuracy")
SWEEP_FILE = "sweep.json"


def _cells(sweep_dir: Path) -> tuple[list[str], list[dict]]:
    spec = read_json(sweep_dir / SWEEP_FILE)
    if not isinstance(spec, dict) or not isinstance(spec.get("cells"), list) or not isinstance(spec.get("keys"), list):
        raise DataError(f"{sweep_dir / SWEEP_FILE}: expected {{'keys': [...], 'cells': [...]}}")
    rows = []
    for i, cell in enumerate(spec["cells"]):
        name = cell.get("dir") if isinstance(cell, dict) else None
        if not isinstance(name, str) or not SAFE_NAME.match(name) or ".." in name:
            raise DataError(f"{sweep_dir / SWEEP_FILE}: field 'cells[{i}].dir' {name!r} is not a folder name of "
                            "this sweep")
        result = load_results(sweep_dir / name / "results.json")
        rows.append({**cell["values"], **tables.checkpoint_row(result, result["checkpoints"][-1])})
    return spec["keys"], rows


def write_sweep_report(sweep_dir: Path) -> list[Path]:
    import numpy as np

    plt = plots.pyplot()

    sweep_dir = Path(sweep_dir)
    keys, rows = _cells(sweep_dir)
    # the score is on the runs' basis (generated exact match unless they ran teacher-forced); the
    # generated columns follow the teacher-forced ones, which keep their places
    columns = [*keys, "score", "reliability", "reliability_em", "efficacy", "generalization", "locality",
               "exam_accuracy", "exam_change", "fluency", "seconds_per_edit"]
    columns += [c for c in ("reliability_gen", "generalization_gen", "locality_gen") if any(r.get(c) is not None
                                                                                             for r in rows)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(
            str(r[c]) if c in keys else tables._num(r.get(c)) for c in columns) + " |")
    outputs = [sweep_dir / "sweep.md", sweep_dir / "sweep.csv"]
    atomic_write_text(outputs[0], f"# sweep over {', '.join(keys)} ({rows[0]['method']}, N = {rows[0]['edits']})\n\n"
                      + "\n".join(lines) + "\n")
    atomic_write_text(outputs[1], tables.to_csv([{c: r.get(c) for c in columns} for r in rows]))

    for metric in SWEEP_METRICS:
        fig, ax = plt.subplots(figsize=(5, 4))
        if len(keys) == 2:
            xs = sorted({r[keys[1]] for r in rows})
            ys = sorted({r[keys[0]] for r in rows})
            grid = np.full((len(ys), len(xs)), np.nan)
            for r in rows:
                if r[metric] is not None:
                    grid[ys.index(r[keys[0]]), xs.index(r[keys[1]])] = r[metric]
            im = ax.imshow(grid, origin="lower", cmap="viridis", vmin=0, vmax=1, aspect="auto")
            ax.set_xticks(range(len(xs)), [str(x) for x in xs])
            ax.set_yticks(range(len(ys)), [str(y) for y in ys])
            ax.set_xlabel(keys[1])
            ax.set_ylabel(keys[0])
            for (i, j), v in np.ndenumerate(grid):
                ax.text(j, i, "-" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", color="w", fontsize=8)
            fig.colorbar(im, ax=ax, label=metric)
        else:
            points = sorted((r[keys[0]], r[metric]) for r in rows if r[metric] is not None)
            ax.plot([str(p[0]) for p in points], [p[1] for p in points], marker="o")
            ax.set_xlabel(keys[0])
            ax.set_ylabel(metric)
            ax.set_ylim(0, 1.05)
            ax.grid(alpha=0.3)
        ax.set_title(f"{metric} ({rows[0]['method']}, T={rows[0]['edits']})")
        fig.tight_layout()
        outputs += plots.save_figure(fig, sweep_dir, f"heatmap_{metric}")

    fig, ax = plt.subplots(figsize=(5, 4))
    for r in rows:
        if r["reliability"] is not None and r["exam_accuracy"] is not None:
            ax.scatter(r["exam_accuracy"], r["reliability"], color="tab:blue")
            ax.annotate(",".join(f"{k}={r[k]}" for k in keys), (r["exam_accuracy"], r["reliability"]), fontsize=6)
    ax.set_xlabel("exam accuracy")
    ax.set_ylabel("reliability")
    ax.grid(alpha=0.3)
    ax.set_title("trade-off: reliability vs general capability")
    fig.tight_layout()
    outputs += plots.save_figure(fig, sweep_dir, "tradeoff")
    return outputs
