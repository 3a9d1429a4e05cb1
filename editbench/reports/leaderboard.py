"""`editbench report RUN_DIR`: leaderboard.md / .csv and one plot per metric against the number of edits."""
from __future__ import annotations

from pathlib import Path

from editbench.harness.results import atomic_write_text, find_results, load_results
from editbench.reports import tables

PLOT_METRICS = ("reliability", "generalization", "locality", "fluency", "exam_accuracy")


def _header(results: list[dict]) -> str:
    first = results[0]
    pre = first.get("pre", {})
    cps = ",".join(str(cp["edits"]) for cp in first["checkpoints"])
    return (
        f"# editbench leaderboard\n\n"
        f"- model: `{first['model']['name']}` ({first['model']['model_type']}, {first['model']['parameters']:,} parameters)\n"
        f"- benchmark: {first.get('benchmark', {}).get('name')}, N = {first['n_edits']} edits, checkpoints {cps}, "
        f"seed {first['seed']}\n"
        f"- pre-edit: exam `{pre.get('exam')}` accuracy {tables._num(pre.get('exam_accuracy'))}, "
        f"fluency {tables._num(pre.get('fluency'), 2)}\n"
        f"- editbench {first['packages'].get('editbench')}, git {first.get('git_sha') or 'unknown'}\n"
    )


def plot_metrics(rows: list[dict], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    paths = []
    for metric in PLOT_METRICS:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for method in dict.fromkeys(r["method"] for r in rows):
            points = [(r["edits"], r[metric]) for r in rows if r["method"] == method and r[metric] is not None]
            if points:
                ax.plot(*zip(*points), marker="o", label=method)
        ax.set_xscale("log")
        ax.set_xlabel("number of edits (T)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{metric}.png"
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.savefig(tmp, dpi=110)
        plt.close(fig)
        tmp.replace(path)
        paths.append(path)
    return paths


def write_report(run_dir: Path) -> list[Path]:
    run_dir = Path(run_dir)
    results = [load_results(p) for p in find_results(run_dir)]
    final, every = tables.final_rows(results), tables.all_rows(results)
    md = (
        _header(results)
        + "\n## Final checkpoint\n\n" + tables.markdown(final)
        + "\n## Every checkpoint\n\n" + tables.markdown(every)
        + "\n" + "".join(f"![{m}]({m}.png)\n" for m in PLOT_METRICS)
    )
    outputs = [run_dir / "leaderboard.md", run_dir / "leaderboard.csv", run_dir / "checkpoints.csv"]
    atomic_write_text(outputs[0], md)
    atomic_write_text(outputs[1], tables.to_csv(final))
    atomic_write_text(outputs[2], tables.to_csv(every))
    return outputs + plot_metrics(every, run_dir)
