"""Figures (matplotlib, PNG and SVG): metrics against the number of edits with uncertainty bands,
and a radar chart per method at the final checkpoint."""
from __future__ import annotations

import math
from pathlib import Path

from editbench.harness.results import atomic_path

CURVE_METRICS = ("score", "reliability", "generalization", "locality", "portability", "fluency", "exam_accuracy")
RADAR_AXES = ("reliability", "generalization", "locality", "fluency", "exam_accuracy")


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out_dir: Path, stem: str) -> list[Path]:
    """Write stem.png and stem.svg atomically (temp name, then rename); close the figure."""
    paths = []
    for suffix in (".png", ".svg"):
        path = Path(out_dir) / f"{stem}{suffix}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
        paths.append(path)
    pyplot().close(fig)
    return paths


def _band(row: dict, metric: str) -> tuple[float, float] | None:
    if row.get(f"{metric}_std") is not None and row.get("orders", 1) > 1:
        return row[metric] - row[f"{metric}_std"], row[metric] + row[f"{metric}_std"]
    ci = row.get(f"{metric}_ci")
    return (ci[0], ci[1]) if ci else None


def metric_curves(rows: list[dict], out_dir: Path) -> list[Path]:
    """One figure per metric: value against T (log axis), a line per method, CI (or ±std) band."""
    plt = pyplot()
    paths = []
    for metric in CURVE_METRICS:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        drawn = False
        for method in dict.fromkeys(r["method"] for r in rows):
            points = [r for r in rows if r["method"] == method and r.get(metric) is not None]
            if not points:
                continue
            drawn = True
            line = ax.plot([r["edits"] for r in points], [r[metric] for r in points], marker="o", label=method)[0]
            bands = [(r["edits"], _band(r, metric)) for r in points if _band(r, metric)]
            if bands:
                ax.fill_between([b[0] for b in bands], [b[1][0] for b in bands], [b[1][1] for b in bands],
                                color=line.get_color(), alpha=0.15, linewidth=0)
        if not drawn:
            plt.close(fig)
            continue
        ax.set_xscale("log")
        ax.set_xlabel("number of edits (T)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths += save_figure(fig, out_dir, metric)
    return paths


def radar_value(row: dict, axis: str) -> float:
    """Axis value in [0, 1]: fluency as a share of its pre-edit value, the others as they are."""
    if axis == "fluency":
        now, pre = row.get("fluency"), row.get("fluency_pre")
        return min(1.0, now / pre) if now is not None and pre else 0.0
    value = row.get(axis)
    return 0.0 if value is None else float(value)


def radar_charts(final: list[dict], out_dir: Path) -> list[Path]:
    """A radar chart per method at the final checkpoint (fluency relative to pre-edit)."""
    plt = pyplot()
    paths = []
    angles = [2 * math.pi * i / len(RADAR_AXES) for i in range(len(RADAR_AXES))]
    for row in final:
        values = [radar_value(row, a) for a in RADAR_AXES]
        fig = plt.figure(figsize=(4, 4))
        ax = fig.add_subplot(polar=True)
        ax.plot(angles + angles[:1], values + values[:1], marker="o")
        ax.fill(angles + angles[:1], values + values[:1], alpha=0.2)
        ax.set_xticks(angles, [a.replace("_accuracy", "") for a in RADAR_AXES], fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(f"{row['method']} (T={row['edits']})", fontsize=10)
        fig.tight_layout()
        paths += save_figure(fig, out_dir, f"radar_{row['method']}")
    return paths
