"""`editbench report RUN_DIR`: leaderboard in Markdown, CSV, JSON and one self-contained HTML page,
plus figures (PNG and SVG): each metric against the number of edits, a radar chart per method."""
from __future__ import annotations

import base64
import html
from pathlib import Path

from editbench.core import DataError
from editbench.harness.results import (
    atomic_write_json, atomic_write_text, find_results, load_results, remove_stale_temps,
)
from editbench.harness.store import check_same_setting, complete_only
from editbench.reports import plots, tables
from editbench.reports.stats import CI_LEVEL, N_RESAMPLES, SCORE_EDIT, SCORE_KEEP


def header_facts(results: list[dict]) -> dict:
    first = results[0]
    pre = first.get("pre", {})
    return {
        "model": first["model"]["name"],
        "model_type": first["model"]["model_type"],
        "parameters": first["model"]["parameters"],
        "fingerprint": first["model"].get("fingerprint"),
        "protocols": sorted({r.get("protocol", "sequential") for r in results}),
        "threads": (first.get("machine") or {}).get("threads"),
        "benchmark": (first.get("benchmark") or {}).get("name"),
        "n_edits": first["n_edits"],
        "checkpoints": [cp["edits"] for cp in first["checkpoints"]],
        "seeds": sorted({r["seed"] for r in results}),
        "orders": max(1, len({r.get("order", 0) for r in results})),
        "exam": pre.get("exam"),
        "exam_accuracy_pre": pre.get("exam_accuracy"),
        "fluency_pre": pre.get("fluency"),
        "editbench": first["packages"].get("editbench"),
        "git_sha": first.get("git_sha"),
        "methods": list(dict.fromkeys(r["method"] for r in results)),
    }


def _header_lines(facts: dict) -> list[str]:
    return [
        f"model: {facts['model']} ({facts['model_type']}, {facts['parameters']:,} parameters, weights sha256 "
        f"{(facts.get('fingerprint') or 'unknown')[:16]})",
        f"benchmark: {facts['benchmark']}, protocol {', '.join(facts.get('protocols') or ['sequential'])}, "
        f"N = {facts['n_edits']} edits, checkpoints "
        f"{','.join(map(str, facts['checkpoints']))}, seed(s) {','.join(map(str, facts['seeds']))}, "
        f"edit orders {facts['orders']}",
        f"exam: {facts['exam']} (pre-edit accuracy {tables._num(facts['exam_accuracy_pre'])}), "
        f"pre-edit fluency {tables._num(facts['fluency_pre'], 2)}",
        f"editbench {facts['editbench']}, git {facts['git_sha'] or 'unknown'}, torch threads {facts.get('threads')}",
    ] + [f"not included (incomplete): {line}" for line in facts.get("left_out") or []]


EXPLAIN = (
    f"score = harmonic mean of edit success (mean of {', '.join(SCORE_EDIT)}: (x - x0)/(1 - x0) against the same "
    f"edits' pre-edit scores, floored at 0) and preservation (mean of {', '.join(SCORE_KEEP)}; exam retention = "
    f"exam accuracy / pre-edit accuracy, capped at 1): doing nothing scores 0. [a, b] = {int(CI_LEVEL * 100)}% percentile bootstrap interval over edits ({N_RESAMPLES} seeded "
    "resamples); ± = standard deviation across edit orders."
)


def _html_page(facts: dict, final: list[dict], every: list[dict], figures: list[Path]) -> str:
    images = "".join(
        f'<figure><img alt="{html.escape(p.stem)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{html.escape(p.stem)}</figcaption></figure>'
        for p in figures if p.suffix == ".png"
    )
    items = "".join(f"<li>{html.escape(line)}</li>" for line in _header_lines(facts))
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 6px}figure{display:inline-block;margin:4px}")
    return (
        f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>editbench leaderboard</title>"
        f"<style>{style}</style></head><body><h1>editbench leaderboard</h1><ul>{items}</ul>"
        f"<p>{html.escape(EXPLAIN)}</p><h2>Final checkpoint</h2>{tables.html_table(final)}"
        f"<h2>Every checkpoint</h2>{tables.html_table(every)}<h2>Figures</h2>{images}</body></html>\n"
    )


def write_report(run_dir: Path, log=None) -> list[Path]:
    run_dir = Path(run_dir)
    paths = find_results(run_dir)
    remove_stale_temps(run_dir)  # left by a report killed mid-way
    results, paths, left_out = complete_only([load_results(p) for p in paths], paths)
    for line in left_out:
        (log or (lambda m: None))(f"not in the report: {line}")
    if not results:
        raise DataError(f"{run_dir}: no complete run to report ({'; '.join(left_out)})")
    check_same_setting(results, paths)
    facts = header_facts(results)
    facts["left_out"] = left_out
    final, every = tables.final_rows(results), tables.all_rows(results)
    final.sort(key=lambda r: (r.get("protocol") or "", -(r["score"] if r["score"] is not None else -1)))
    figures = plots.metric_curves(every, run_dir) + plots.radar_charts(final, run_dir)
    md = (
        "# editbench leaderboard\n\n" + "".join(f"- {line}\n" for line in _header_lines(facts))
        + f"\n{EXPLAIN}\n\n## Final checkpoint (ranked by score)\n\n" + tables.markdown(final)
        + "\n## Every checkpoint\n\n" + tables.markdown(every) + "\n"
        + "".join(f"![{p.stem}]({p.name})\n" for p in figures if p.suffix == ".png")
    )
    outputs = [run_dir / n for n in ("leaderboard.md", "leaderboard.csv", "checkpoints.csv", "leaderboard.json",
                                     "leaderboard.html")]
    atomic_write_text(outputs[0], md)
    atomic_write_text(outputs[1], tables.to_csv(final))
    atomic_write_text(outputs[2], tables.to_csv(every))
    atomic_write_json(outputs[3], {"header": facts, "final": final, "checkpoints": every})
    atomic_write_text(outputs[4], _html_page(facts, final, every, figures))
    return outputs + figures
