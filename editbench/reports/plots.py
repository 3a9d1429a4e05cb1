"""Figures for a paper (matplotlib; 300 dpi PNG and SVG): each metric against the number of edits,
and one radar figure comparing every method at the final checkpoint.

- Colour-blind-safe colours (Okabe & Ito) with a distinct marker and line style per method, so
  methods stay apart in print and in grey; methods with the same numbers are drawn side by side
  (a small horizontal dodge) instead of on top of each other.
- The x axis is logarithmic when the checkpoints span two decades or more, else linear; its ticks
  are the checkpoints themselves (1, 10, 100, 1000, not 10⁰, 10¹).
- Uncertainty (95 % CI over edits, or ± std over edit orders) as error bars, which do not blur
  into each other the way eight shaded bands do. The legend sits outside the data.
"""
from __future__ import annotations

import math
from pathlib import Path

from editbench.harness.results import atomic_path

CURVE_METRICS = ("score", "reliability_gen", "generalization_gen", "locality_gen", "portability_gen",
                 "reliability", "generalization", "locality", "portability", "reliability_gap", "fluency",
                 "exam_accuracy", "perplexity", "max_norm_ratio",  # collapse signals
                 "seconds_per_edit", "eval_seconds")  # cost: editing per edit so far, this checkpoint's scoring
RADAR_AXES = {"generation": ("reliability_gen", "generalization_gen", "locality_gen", "portability_gen", "fluency",
                             "exam_accuracy"),
              "token": ("reliability", "generalization", "locality", "portability", "fluency", "exam_accuracy")}
# Okabe & Ito's palette (colour-blind safe), black last, then Tol's wine and grey so ten methods get
# ten colours; beyond that the same colours with other line styles
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000", "#882255",
           "#999999")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<")
LINESTYLES = ("-", "--", "-.", ":")
DPI = 300
# fluency on the radar: 1 at the pre-edit entropy, 0 at half of it (repetitive, collapsed text)
FLUENCY_FLOOR_SHARE = 0.5


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # SVG keeps its text as text: editable, searchable in a paper
    return plt


def save_figure(fig, out_dir: Path, stem: str) -> list[Path]:
    """Write stem.png (300 dpi) and stem.svg atomically, nothing clipped; close the figure."""
    paths = []
    for suffix in (".png", ".svg"):
        path = Path(out_dir) / f"{stem}{suffix}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=DPI, bbox_inches="tight")
        paths.append(path)
    pyplot().close(fig)
    return paths


def style(index: int) -> dict:
    """Colour, marker and line style of the index-th method (distinct for the first 40)."""
    return {"color": PALETTE[index % len(PALETTE)], "marker": MARKERS[index % len(MARKERS)],
            "linestyle": LINESTYLES[(index // len(PALETTE)) % len(LINESTYLES)]}


def method_styles(rows: list[dict]) -> dict[str, dict]:
    """One style per method, by its name's place in sorted order: the same in every figure of a report."""
    return {m: style(k) for k, m in enumerate(sorted({r["method"] for r in rows}))}


def _band(row: dict, metric: str) -> tuple[float, float] | None:
    if row.get(f"{metric}_std") is not None and row.get("orders", 1) > 1:
        return row[metric] - row[f"{metric}_std"], row[metric] + row[f"{metric}_std"]
    ci = row.get(f"{metric}_ci")
    return (ci[0], ci[1]) if ci else None


def use_log_axis(checkpoints: list[int]) -> bool:
    return min(checkpoints) > 0 and max(checkpoints) / min(checkpoints) >= 100


def _dodged(xs: list[float], k: int, n: int, log: bool, span: float) -> list[float]:
    """Shift the k-th of n methods a little sideways (a constant factor on a log axis)."""
    offset = (k - (n - 1) / 2) * (0.025 if n > 1 else 0.0)
    return [x * 10 ** offset if log else x + offset * span * 0.4 for x in xs]


def metric_curves(rows: list[dict], out_dir: Path, metrics: tuple[str, ...] = CURVE_METRICS) -> list[Path]:
    """One figure per metric: value against T, a line per method, its uncertainty as error bars."""
    plt = pyplot()
    paths = []
    methods = sorted({r["method"] for r in rows})
    styles = method_styles(rows)
    checkpoints = sorted({r["edits"] for r in rows})
    log = use_log_axis(checkpoints)
    span = (max(checkpoints) - min(checkpoints)) / max(1, len(checkpoints)) if checkpoints else 1.0
    for metric in metrics:
        series = [(k, m, [r for r in rows if r["method"] == m and r.get(metric) is not None])
                  for k, m in enumerate(methods)]
        series = [s for s in series if s[2]]
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        for k, method, points in series:
            xs = _dodged([r["edits"] for r in points], k, len(methods), log, span)
            ys = [r[metric] for r in points]
            bands = [_band(r, metric) for r in points]
            err = None
            if any(bands):
                err = [[max(0.0, y - b[0]) if b else 0.0 for y, b in zip(ys, bands)],
                       [max(0.0, b[1] - y) if b else 0.0 for y, b in zip(ys, bands)]]
            ax.errorbar(xs, ys, yerr=err, label=method, markersize=5, linewidth=1.4, capsize=2.5, elinewidth=0.9,
                        alpha=0.95, **styles[method])
        ax.set_xscale("log" if log else "linear")
        ax.set_xticks(checkpoints, [str(t) for t in checkpoints])
        ax.minorticks_off()
        ax.set_xlabel("number of edits T")
        ax.set_ylabel(metric.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
        paths += save_figure(fig, out_dir, metric)
    return paths


def radar_value(row: dict, axis: str) -> float:
    """Axis value in [0, 1]. Fluency: 1 at the pre-edit entropy, 0 at FLUENCY_FLOOR_SHARE of it, so a
    model that writes repetitive text shows a collapsed spoke (a plain ratio would still read 0.8)."""
    if axis == "fluency":
        now, pre = row.get("fluency"), row.get("fluency_pre")
        if now is None or not pre:
            return 0.0
        floor = FLUENCY_FLOOR_SHARE * pre
        return min(1.0, max(0.0, (now - floor) / (pre - floor)))
    value = row.get(axis)
    return 0.0 if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def radar_charts(final: list[dict], out_dir: Path) -> list[Path]:
    """One radar figure with every method at the final checkpoint, on one 0-1 scale (the headline
    metrics of the rows' score basis)."""
    if not final:
        return []
    plt = pyplot()
    styles = method_styles(final)
    basis = final[0].get("score_basis", "token")
    axes = [a for a in RADAR_AXES[basis] if any(r.get(a) is not None for r in final)]
    angles = [2 * math.pi * i / len(axes) for i in range(len(axes))]
    fig = plt.figure(figsize=(6.5, 4.8))
    ax = fig.add_subplot(polar=True)
    for row in final:
        values = [radar_value(row, a) for a in axes]
        ax.plot(angles + angles[:1], values + values[:1], label=f"{row['method']} (T={row['edits']})",
                linewidth=1.4, markersize=4, **styles[row["method"]])
    labels = [a.replace("_accuracy", "").replace("_gen", "\n(gen EM)").replace("fluency", "fluency\n(vs pre-edit)")
              for a in axes]
    ax.set_xticks(angles, labels, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_yticks([0.25, 0.5, 0.75, 1.0], ["0.25", "0.5", "0.75", "1"], fontsize=7, color="#555555")
    ax.set_rlabel_position(100)  # the scale between two spokes, clear of their labels
    ax.legend(loc="upper left", bbox_to_anchor=(1.12, 1.05), frameon=False, fontsize=8)
    return save_figure(fig, out_dir, "radar")


def gap_chart(final: list[dict], out_dir: Path) -> list[Path]:
    """Per method at the final checkpoint: teacher-forced token accuracy minus generated exact match,
    on the edit prompts and on their rephrases. Bars above 0 are credit the model would not earn by
    answering on its own."""
    rows = [r for r in final if r.get("reliability_gen") is not None]
    if not rows:
        return []
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    xs = range(len(rows))
    for offset, (metric, label) in zip((-0.2, 0.2), (("reliability", "edit prompt"),
                                                     ("generalization", "rephrases"))):
        gaps = [(r[metric] or 0.0) - (r[f"{metric}_gen"] or 0.0) for r in rows]
        ax.bar([x + offset for x in xs], gaps, width=0.4, label=label,
               color=PALETTE[0] if metric == "reliability" else PALETTE[1])
    ax.axhline(0, color="#555555", linewidth=0.8)
    ax.set_xticks(list(xs), [f"{r['method']}" for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("token accuracy − generated EM")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(frameon=False, fontsize=8)
    return save_figure(fig, out_dir, "gap")


def trace_figure(record: dict, out_dir: Path) -> list[Path]:
    """Causal tracing (editbench trace): per kind of restored state, the average indirect effect of each
    layer at the last subject token and at the last token (ROME's Figure 2 in one row)."""
    aie = record["average_indirect_effect"]
    plt = pyplot()
    fig, axes = plt.subplots(1, len(aie), figsize=(3.4 * len(aie), 2.8), sharey=True)
    titles = {"hidden": "hidden state (one layer)", "mlp": "MLP output (window)", "attn": "attention output (window)"}
    for ax, (kind, by_position) in zip(axes if len(aie) > 1 else [axes], aie.items()):
        for k, (position, label) in enumerate((("last_subject", "last subject token"), ("last", "last token"))):
            values = by_position[position]
            ax.plot(range(len(values)), values, label=label, linewidth=1.4, markersize=3, **style(k))
        ax.set_title(titles.get(kind, kind), fontsize=9)
        ax.set_xlabel("layer")
        ax.grid(alpha=0.3)
    first = axes[0] if len(aie) > 1 else axes
    first.set_ylabel("average indirect effect")
    first.legend(frameon=False, fontsize=7)
    settings = record["settings"]
    fig.suptitle(f"{Path(record['model']['name']).name}: {record['facts_known']} known facts, {settings['samples']} corrupted "
                 f"runs each, noise {settings['noise']:.3g}, window {settings['window']}", fontsize=9, y=1.04)
    return save_figure(fig, out_dir, "trace")
