"""Figures for a paper (matplotlib; 300 dpi PNG and SVG) and for the HTML report (plotly, offline):
each metric against the number of edits, a radar per method at the final checkpoint.

- A colour, a marker and (past 18 methods) a line style per method that never repeat within a
  figure: Okabe & Ito's colour-blind-safe palette, then Tol's muted one; the same in every figure.
- Curves are faceted by family (weight editors; patch and context editors), with `noedit` drawn in
  each panel as the reference, so fourteen methods stay readable; no sideways jitter on the T axis.
- The x axis is logarithmic when the checkpoints span two decades or more, else linear; its ticks
  are the checkpoints themselves (1, 10, 100, 1000, not 10⁰, 10¹).
- Uncertainty (95 % CI over edits, or ± std over edit orders) as error bars. The legend sits
  outside the data.
- The HTML report has each curve again as an interactive plotly chart (hover: value and interval;
  click a legend entry to hide a method), its JavaScript inlined once: it works offline.
"""
from __future__ import annotations

import math
from pathlib import Path

from editbench.harness.metric_registry import curve_names
from editbench.harness.results import atomic_path

# the curves over T, in the order harness/metric_registry.py gives them (edit scores, collapse signals, cost)
CURVE_METRICS = curve_names()
RADAR_AXES = {"generation": ("reliability_gen", "generalization_gen", "locality_gen", "portability_gen", "fluency",
                             "exam_accuracy"),
              "token": ("reliability", "generalization", "locality", "portability", "fluency", "exam_accuracy")}
# Okabe & Ito's palette (colour-blind safe), then Paul Tol's muted one: 18 colours, so fourteen methods
# never share one; past 18 the colours come again with another line style
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
           "#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499",
           "#777777")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p", "H", "d", "8", "1", "2", "3")
LINESTYLES = ("-", "--", "-.", ":")
# the curves' panels: weight editors, and the editors that patch modules or put a context before the
# question; noedit is the reference line of every panel
FAMILIES = ("weight editors", "patch and context editors")
REFERENCE_METHOD = "noedit"
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
    """Colour, marker and line style of the index-th method: the colour and the marker distinct for the
    first 18, the (colour, line style) pair for the first 72."""
    return {"color": PALETTE[index % len(PALETTE)], "marker": MARKERS[index % len(MARKERS)],
            "linestyle": LINESTYLES[(index // len(PALETTE)) % len(LINESTYLES)]}


def family(method: str) -> str:
    """The panel of a method (a sweep cell 'rsft_merge density=0.2' goes by its method): by how its
    editor writes an edit; a name no editor has (an old run's) counts as a weight editor."""
    from editbench.core import WeightDelta, get_editor_class

    try:
        kind = get_editor_class(method.split()[0]).intervention
    except Exception:  # noqa: BLE001 - unknown or unloadable editor: drawn with the weight editors
        return FAMILIES[0]
    return FAMILIES[0] if kind == WeightDelta.kind else FAMILIES[1]


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


def _points(rows: list[dict], method: str, metric: str) -> tuple[list, list, list | None]:
    """T, the metric and its error bar (below, above) of one method's checkpoints."""
    points = [r for r in rows if r["method"] == method and r.get(metric) is not None]
    xs, ys = [r["edits"] for r in points], [r[metric] for r in points]
    bands = [_band(r, metric) for r in points]
    if not any(bands):
        return xs, ys, None
    return xs, ys, [[max(0.0, y - b[0]) if b else 0.0 for y, b in zip(ys, bands)],
                    [max(0.0, b[1] - y) if b else 0.0 for y, b in zip(ys, bands)]]


def _panels(methods: list[str]) -> list[tuple[str, list[str]]]:
    """(family, its methods) for each family with a method, noedit in every one as the reference."""
    reference = [m for m in methods if m == REFERENCE_METHOD]
    groups = [(f, [m for m in methods if m != REFERENCE_METHOD and family(m) == f]) for f in FAMILIES]
    groups = [(f, members + reference) for f, members in groups if members]
    return groups or [("methods", methods)]


def metric_curves(rows: list[dict], out_dir: Path, metrics: tuple[str, ...] = CURVE_METRICS) -> list[Path]:
    """One figure per metric: value against T, a panel per family, a line per method with its
    uncertainty as error bars."""
    plt = pyplot()
    paths = []
    methods = sorted({r["method"] for r in rows})
    styles = method_styles(rows)
    checkpoints = sorted({r["edits"] for r in rows})
    log = use_log_axis(checkpoints)
    for metric in metrics:
        present = [m for m in methods if any(r["method"] == m and r.get(metric) is not None for r in rows)]
        if not present:
            continue
        panels = _panels(present)
        fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels) + 1.2, 3.6), sharey=True, squeeze=False)
        for ax, (name, members) in zip(axes[0], panels):
            for method in members:
                xs, ys, err = _points(rows, method, metric)
                reference = method == REFERENCE_METHOD and len(members) > 1
                ax.errorbar(xs, ys, yerr=err, label=method, markersize=5, linewidth=1.4, capsize=2.5,
                            elinewidth=0.9, alpha=0.6 if reference else 0.95, **styles[method])
            ax.set_xscale("log" if log else "linear")
            ax.set_xticks(checkpoints, [str(t) for t in checkpoints])
            ax.minorticks_off()
            ax.set_xlabel("number of edits T")
            ax.set_title(name, fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=7)
        axes[0][0].set_ylabel(metric.replace("_", " "))
        fig.tight_layout()
        paths += save_figure(fig, out_dir, metric)
    return paths


def interactive_curves(rows: list[dict], metrics: tuple[str, ...] = CURVE_METRICS) -> str:
    """The curves as plotly charts for the HTML page, plotly's JavaScript inlined once (no network):
    hover shows each point's value and interval, a click on a legend entry hides its method."""
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs

    methods = sorted({r["method"] for r in rows})
    styles = method_styles(rows)
    checkpoints = sorted({r["edits"] for r in rows})
    log = use_log_axis(checkpoints)
    charts = []
    for metric in metrics:
        traces = []
        for method in methods:
            xs, ys, err = _points(rows, method, metric)
            if not xs:
                continue
            lo = [y - e for y, e in zip(ys, err[0])] if err else ys
            hi = [y + e for y, e in zip(ys, err[1])] if err else ys
            traces.append(go.Scatter(
                x=xs, y=ys, name=method, mode="lines+markers", line={"color": styles[method]["color"]},
                error_y={"type": "data", "symmetric": False, "array": err[1], "arrayminus": err[0]} if err else None,
                customdata=list(zip(lo, hi)),
                hovertemplate=f"{method}<br>T=%{{x}}<br>{metric}=%{{y:.3f}} [%{{customdata[0]:.3f}}, "
                              "%{customdata[1]:.3f}]<extra></extra>"))
        if not traces:
            continue
        fig = go.Figure(traces)
        fig.update_layout(title=metric.replace("_", " "), xaxis_title="number of edits T", height=380, width=760,
                          xaxis={"type": "log" if log else "linear", "tickvals": checkpoints,
                                 "ticktext": [str(t) for t in checkpoints]}, margin={"t": 40, "b": 40},
                          legend={"itemclick": "toggle", "itemdoubleclick": "toggleothers"})
        charts.append(fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))
    if not charts:
        return ""
    return f"<script>{get_plotlyjs()}</script>" + "".join(f'<div class="chart">{c}</div>' for c in charts)


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
    """Small multiples: one radar per method at the final checkpoint on one 0-1 scale (the headline
    metrics of the rows' score basis), the top-ranked method's polygon in grey behind each."""
    if not final:
        return []
    plt = pyplot()
    styles = method_styles(final)
    basis = final[0].get("score_basis", "token")
    axes = [a for a in RADAR_AXES[basis] if any(r.get(a) is not None for r in final)]
    angles = [2 * math.pi * i / len(axes) for i in range(len(axes))]
    leader = max(final, key=lambda r: -1.0 if r.get("score") is None else float(r["score"]))
    cols = min(4, len(final))
    rows_n = math.ceil(len(final) / cols)
    fig = plt.figure(figsize=(2.6 * cols, 2.7 * rows_n))
    labels = [a.replace("_accuracy", "").replace("_gen", "\n(gen)").replace("reliability", "rel.")
              .replace("generalization", "gen.").replace("portability", "port.").replace("locality", "loc.")
              for a in axes]
    for i, row in enumerate(final):
        ax = fig.add_subplot(rows_n, cols, i + 1, polar=True)
        if row is not leader:
            ref = [radar_value(leader, a) for a in axes]
            ax.fill(angles + angles[:1], ref + ref[:1], color="#bbbbbb", alpha=0.35, linewidth=0)
        values = [radar_value(row, a) for a in axes]
        ax.plot(angles + angles[:1], values + values[:1], linewidth=1.4, markersize=3, **styles[row["method"]])
        ax.fill(angles + angles[:1], values + values[:1], color=styles[row["method"]]["color"], alpha=0.15)
        ax.set_xticks(angles, labels, fontsize=6)
        ax.set_ylim(0, 1)
        ax.set_yticks([0.5, 1.0], ["", ""])
        ax.set_title(f"{row['method']} (T={row['edits']})", fontsize=8, pad=10)
    fig.suptitle(f"final checkpoint, 0-1 per axis; grey: {leader['method']} (top score)", fontsize=9)
    fig.tight_layout()
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


def pareto_front(points: list[tuple[float, float, str]]) -> list[str]:
    """The methods no other method beats on both axes: fewer FLOPs per edit (x) and a higher score (y)."""
    front, best = [], -math.inf
    for x, y, name in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append(name)
            best = y
    return front


def cost_chart(final: list[dict], out_dir: Path) -> list[Path]:
    """Per method at the final checkpoint: the score against the counted FLOPs per edit (log axis), the
    Pareto front (no method cheaper and better) joined and labelled in bold."""
    rows = [r for r in final if r.get("flops_per_edit") and r.get("score") is not None]
    if not rows:
        return []
    plt = pyplot()
    styles = method_styles(final)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    points = [(float(r["flops_per_edit"]), float(r["score"]), r["method"]) for r in rows]
    front = pareto_front(points)
    for x, y, name in points:
        st = styles[name]
        ax.scatter([x], [y], color=st["color"], marker=st["marker"], s=36, zorder=3)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7,
                    fontweight="bold" if name in front else "normal")
    line = sorted((p for p in points if p[2] in front), key=lambda p: p[0])
    ax.plot([p[0] for p in line], [p[1] for p in line], color="#555555", linewidth=0.8, linestyle="--",
            zorder=2, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("FLOPs per edit (counted, log scale)")
    ax.set_ylabel(f"score ({rows[0].get('score_basis', 'token')} basis)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(frameon=False, fontsize=8)
    return save_figure(fig, out_dir, "cost")


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
