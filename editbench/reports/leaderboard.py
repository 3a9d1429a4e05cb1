"""`editbench report RUN_DIR`: leaderboard in Markdown, CSV, JSON and one self-contained HTML page,
plus figures (PNG and SVG): each metric against the number of edits, a radar chart per method."""
from __future__ import annotations

import base64
import html
from pathlib import Path

from editbench.core import DataError, setting
from editbench.harness.record import RunRecord
from editbench.harness.results import (
    protocol_label,
    atomic_write_json, atomic_write_text, find_results, load_results, remove_stale_temps,
)
from editbench.harness.store import check_same_setting, complete_only
from editbench.reports import drilldown, plots, tables
from editbench.reports.stats import CI_LEVEL, N_RESAMPLES, SCORE_BASES


def header_facts(results: list[RunRecord]) -> dict:
    """What the page's header says, from the records as load_results reads them (results.upgraded)."""
    first = results[0]
    pre, model, bench = first["pre"], first["model"], first["benchmark"]
    return {
        "model": model["name"],
        "model_type": model["model_type"],
        "parameters": model["parameters"],
        "fingerprint": model.get("fingerprint"),
        "protocols": sorted({protocol_label(r) for r in results}),
        "threads": first["machine"].get("threads"),
        "benchmark": bench.get("name"),
        "n_edits": first["n_edits"],
        "checkpoints": [cp["edits"] for cp in first["checkpoints"]],
        "seeds": sorted({r["seed"] for r in results}),
        "orders": max(1, len({r["order"] for r in results})),
        "exam": pre.get("exam"),
        "exam_accuracy_pre": pre.get("exam_accuracy"),
        "fluency_pre": pre.get("fluency"),
        "editbench": first["packages"].get("editbench"),
        "git_sha": first["git_sha"],
        "methods": list(dict.fromkeys(r["method"] for r in results)),
        "exam_questions": len(first["exam_questions"]),
        "exam_limit": bench.get("exam_limit"),
        "evaluation": first["evaluation"],
        "scoring_flops": pre.get("scoring_flops"),
        "compute_ceiling": first["compute_ceiling"] if all(r["compute_ceiling"] == first["compute_ceiling"]
                                                           for r in results) else {"source": "differs between runs"},
    }


def _header_lines(facts: dict) -> list[str]:
    return [
        f"model: {facts['model']} ({facts['model_type']}, {facts['parameters']:,} parameters, weights sha256 "
        f"{(facts.get('fingerprint') or 'unknown')[:16]})",
        f"benchmark: {facts['benchmark']}, protocol {', '.join(facts.get('protocols') or ['sequential'])}, "
        f"N = {facts['n_edits']} edits, checkpoints "
        f"{','.join(map(str, facts['checkpoints']))}, seed(s) {','.join(map(str, facts['seeds']))}, "
        f"edit orders {facts['orders']}",
        f"exam: {facts['exam']} ({facts.get('exam_questions') or 0} questions"
        + (f", subsampled: {facts['exam_limit']} per subject, seeded (exam_limit)" if facts.get("exam_limit") else "")
        + f"; pre-edit accuracy {tables._num(facts['exam_accuracy_pre'])}), "
        f"pre-edit fluency {tables._num(facts['fluency_pre'], 2)}",
        _evaluation_line(facts),
        _ceiling_line(facts.get("compute_ceiling") or {})
        + (f"; scoring every edit once (with fluency, exam, perplexity): {tables.flop_text(facts['scoring_flops'])}FLOPs"
           " (the pre-edit scoring, counted on a replay)" if facts.get("scoring_flops") else ""),
        f"editbench {facts['editbench']}, git {facts['git_sha'] or 'unknown'}, torch threads {facts.get('threads')}",
    ] + [f"not included (incomplete): {line}" for line in facts.get("left_out") or []]


def _ceiling_line(ceiling: dict) -> str:
    """The compute ceiling the runs recorded (harness/ceiling.py), or that there was none."""
    flops = ceiling.get("flops_per_edit")
    if flops is None:
        return f"compute ceiling: none ({ceiling.get('source') or 'not recorded'}): methods compared at any cost"
    by = f", set by {ceiling['set_by']}'s reference configuration" if ceiling.get("set_by") else ""
    return (f"compute ceiling: {tables.flop_text(flops)}FLOPs per edit ({ceiling.get('source')}{by}); ‡ marks a "
            "method over it")


def _evaluation_line(facts: dict) -> str:
    ev, basis = facts.get("evaluation") or {}, facts.get("score_basis", "token")
    mode = ev.get("mode", "teacher-forced")
    how = ("" if mode == "teacher-forced" else
           f" (greedy answers, stop at {', '.join(repr(s) for s in ev.get('stop_strings', []))} or EOS, at most "
           f"{ev.get('max_new_tokens')} new tokens" + (f", context {ev.get('context')}" if mode == "wild" else "")
           + ", SQuAD-normalised exact match)")
    asked = f"; prompts {ev['prompt_format']}" if ev.get("prompt_format") else ""
    return (f"evaluation: {mode}{how}{asked}; score basis: {basis} "
            f"({'generated exact match' if basis == 'generation' else 'teacher-forced token accuracy'})")


def explain(basis: str) -> str:
    edit, keep = SCORE_BASES[basis]
    return (
        f"score ({basis} basis) = harmonic mean of edit success (mean of {', '.join(edit)}: (x - x0)/(1 - x0) "
        f"against the same edits' pre-edit scores, floored at 0) and preservation (mean of {', '.join(keep)}; exam "
        f"retention = exam accuracy / pre-edit accuracy, capped at 1): doing nothing scores 0. "
        + ("gap = teacher-forced token accuracy − generated exact match on the edit prompt. " if basis == "generation"
           else "")
        + f"[a, b] = {int(CI_LEVEL * 100)}% percentile bootstrap interval over edits ({N_RESAMPLES} seeded "
        "resamples); ± = standard deviation across edit orders."
    )


RANKS_EXPLAIN = (
    f"Rank by score (1 = best) with its {int(CI_LEVEL * 100)}% percentile bootstrap interval: each of "
    f"{N_RESAMPLES} seeded resamples draws the same edits for every method, scores and ranks them (exam "
    "retention held as measured). vs next: the paired difference to the next-ranked method; ≈ where its "
    "interval holds 0 (not significant), > where it does not."
)

STABILITY_EXPLAIN = (
    "Each seed draws another sample of edits (the table above gives each method's mean and standard deviation "
    "across them); here each sample's own ranking, and how far the samples' rankings agree."
)

GROUPS_EXPLAIN = (
    "locality_neighbourhood: other people with the same relation and the same true object as the edited "
    "fact (CounterFact's neighbourhood prompts); locality_unrelated: other people's facts; portability_two_hop: "
    "questions whose answer follows from the new object (e.g. the country of the new home city); "
    "portability_alias: the edited fact asked with the person's alias."
)


def _html_page(facts: dict, final: list[dict], every: list[dict], figures: list[Path], drill: str = "",
               groups: str = "", basis: str = "token", interactive: str = "") -> str:
    images = "".join(
        f'<figure><img alt="{html.escape(p.stem)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{html.escape(p.stem)}</figcaption></figure>'
        for p in figures if p.suffix == ".png"
    )
    items = "".join(f"<li>{html.escape(line)}</li>" for line in _header_lines(facts))
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 6px}figure{display:inline-block;margin:4px}"
             "figure img{width:600px;height:auto}"
             "#edit-table th{cursor:pointer;background:#f3f3f3;position:sticky;top:0}"
             ".filters{margin:6px 0}.filters input,.filters select{margin-right:8px}")
    return (
        f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>editbench leaderboard</title>"
        f"<style>{style}</style></head><body><h1>editbench leaderboard</h1><ul>{items}</ul>"
        f"<p>{html.escape(explain(basis))}</p><h2>Final checkpoint</h2>{tables.html_table(final)}"
        + (f"<h2>Locality and portability by group</h2>{_md_table_html(groups)}" if groups else "") +
        f"<h2>Every checkpoint</h2>{tables.html_table(every)}"
        + (f"<h2>Curves (interactive: hover for the value and its interval, click a legend entry to hide "
           f"a method)</h2>{interactive}" if interactive else "")
        + f"<h2>Figures</h2>{images}{drill}</body></html>\n"
    )


FORMATS = ("md", "csv", "json", "html")


def write_report(run_dir: Path, log=None, formats: tuple[str, ...] = FORMATS, metrics: tuple[str, ...] | None = None,
                 checkpoint: int | None = None, score_basis: str | None = None) -> list[Path]:
    """The leaderboard of every complete run in `run_dir`. `formats`: which files; `metrics`: which
    figures (default all); `checkpoint`: the T of the ranked table (default each run's last);
    `score_basis`: generation or token (default: what the runs recorded)."""
    run_dir = Path(run_dir)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise DataError(f"report {setting('format')} {','.join(unknown)}: unknown (valid: {', '.join(FORMATS)})")
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
    basis = facts["score_basis"] = tables.choose_basis(results, score_basis)
    every = tables.all_rows(results, basis)
    if checkpoint is None:
        final = tables.final_rows(results, basis)
    else:
        final = [r for r in every if r["edits"] == checkpoint]
        if not final:
            raise DataError(f"report {setting('checkpoint')} {checkpoint}: no run has it (checkpoints: "
                            f"{','.join(map(str, sorted({r['edits'] for r in every})))})")
    final.sort(key=lambda r: (r.get("protocol") or "", -(r["score"] if r["score"] is not None else -1)))
    chosen = plots.CURVE_METRICS if metrics is None else tuple(metrics)
    bad = [m for m in chosen if m not in plots.CURVE_METRICS]
    if bad:
        raise DataError(f"report {setting('metrics')} {','.join(bad)}: unknown (valid: {', '.join(plots.CURVE_METRICS)})")
    figures = plots.metric_curves(every, run_dir, chosen) + plots.radar_charts(final, run_dir) \
        + plots.gap_chart(final, run_dir) + plots.cost_chart(final, run_dir)
    comparison = _comparison(run_dir)
    categories = _exam_categories(results)
    groups = tables.groups_markdown(final)
    ranked = tables.ranking(final, results, basis)
    ranks = tables.ranking_markdown(ranked)
    stability = tables.rank_stability(results, basis)
    md = (
        "# editbench leaderboard\n\n" + "".join(f"- {line}\n" for line in _header_lines(facts))
        + f"\n{explain(basis)}\n\n## Final checkpoint (ranked by score)\n\n" + tables.markdown(final)
        + (f"\n## Rank intervals\n\n{RANKS_EXPLAIN}\n\n{ranks}" if ranks else "")
        + (f"\n## Rank stability across edit samples\n\n{STABILITY_EXPLAIN}\n\n{stability}" if stability else "")
        + (f"\n## Locality and portability by group (final checkpoint)\n\n{GROUPS_EXPLAIN}\n\n"
           + groups if groups else "")
        + (f"\n## Comparison\n\n{comparison}" if comparison else "")
        + (f"\n## Exam by category (final checkpoint; pre-edit in brackets)\n\n{categories}" if categories else "")
        + "\n## Every checkpoint\n\n" + tables.markdown(every) + "\n"
        + "".join(f"![{p.stem}]({p.name})\n" for p in figures if p.suffix == ".png")
    )
    outputs = []
    if "md" in formats:
        outputs.append(run_dir / "leaderboard.md")
        atomic_write_text(outputs[-1], md)
    if "csv" in formats:
        outputs += [run_dir / "leaderboard.csv", run_dir / "checkpoints.csv"]
        atomic_write_text(outputs[-2], tables.to_csv(final))
        atomic_write_text(outputs[-1], tables.to_csv(every))
    if "json" in formats:
        outputs.append(run_dir / "leaderboard.json")
        atomic_write_json(outputs[-1], {"header": facts, "final": final, "ranking": ranked, "checkpoints": every})
    if "html" in formats:
        drill = drilldown.html_section([row for result, path in zip(results, paths)
                                        for row in drilldown.edit_rows(result, path)])
        extra = "".join(f"<h2>{title}</h2>{_md_table_html(text)}" for title, text in
                        (("Rank intervals", ranks), ("Comparison", comparison), ("Exam by category (final checkpoint; pre-edit in brackets)",
                                                      categories)) if text)
        outputs.append(run_dir / "leaderboard.html")
        atomic_write_text(outputs[-1], _html_page(facts, final, every, figures, extra + drill, groups, basis,
                                                  plots.interactive_curves(every, chosen)))
    return outputs + figures


def _comparison(run_dir: Path) -> str:
    """comparison.md's table when `editbench compare` wrote one into this folder."""
    path = run_dir / "comparison.md"
    if not path.is_file():
        return ""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("|")]
    return "\n".join(lines) + "\n" if lines else ""


def _exam_categories(results: list[RunRecord]) -> str:
    """Per method, the exam accuracy of each category at the final checkpoint (pre-edit in brackets)."""
    finals = [(r["method"], r["checkpoints"][-1]["general"]) for r in results if r["checkpoints"]]
    cats = sorted({c for _, g in finals for c in g["by_category"]})
    if not cats:
        return ""
    lines = ["| method | " + " | ".join(cats) + " |", "|" + "---|" * (len(cats) + 1)]
    for method, g in finals:
        now, pre = g["by_category"], g["by_category_pre"]
        lines.append(f"| {method} | " + " | ".join(
            f"{tables._num(now.get(c))} [{tables._num(pre.get(c))}]" for c in cats) + " |")
    return "\n".join(lines) + "\n"


def _md_table_html(text: str) -> str:
    """A Markdown pipe table as an HTML table (the report's own tables only: no escaping pipes inside)."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.strip().splitlines()
            if not set(line.replace("|", "").strip()) <= {"-"}]
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
