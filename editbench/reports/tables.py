"""Results -> rows -> Markdown / CSV / HTML tables.

A row is one method at one checkpoint. Per-edit metrics carry a 95% bootstrap interval over edits
(`<metric>_ci`); with several edit orders (`orders` K) rows of the same method and checkpoint are
combined into mean and standard deviation across orders (`<metric>_std`).
"""
from __future__ import annotations

import math
import html
from collections.abc import Mapping, Sequence
from typing import Any

from editbench.core import DataError
from editbench.harness.compute import ComputeCeiling
from editbench.harness.metric_registry import metric_names
from editbench.harness.metrics import edit_metrics, group_metrics
from editbench.harness.record import CheckpointRow, RunRecord
from editbench.harness.results import protocol_label
from editbench.reports.stats import SCORE_BASES, bootstrap_ci, exam_retention, mean_std, overall_score

# Metrics shown with their uncertainty (CI over edits, or std over orders): harness/metric_registry.py
UNCERTAIN = frozenset(metric_names(interval=True))
# The headline columns of each score basis: (reliability, generalization, locality, portability)
HEADLINE = {"generation": ("reliability_gen", "generalization_gen", "locality_gen", "portability_gen"),
            "token": ("reliability", "generalization", "locality", "portability")}


def recorded_basis(result: RunRecord) -> str:
    """The score basis a run recorded (runs from before generation metrics: token)."""
    return result["evaluation"]["score_basis"]


def choose_basis(results: Sequence[RunRecord], asked: str | None = None) -> str:
    """One basis for a whole report: the one asked for, else the one every run recorded, else token.
    Generation asked of a run that generated nothing is an error (it has no such numbers)."""
    recorded = {recorded_basis(r) for r in results}
    if asked is None:
        return recorded.pop() if len(recorded) == 1 else "token"
    if asked not in SCORE_BASES:
        raise DataError(f"score basis {asked!r} is unknown (valid: {', '.join(SCORE_BASES)})")
    if asked == "generation" and "token" in recorded:
        lacking = sorted({r["method"] for r in results if recorded_basis(r) == "token"})
        raise DataError(f"score basis 'generation': run(s) {', '.join(lacking)} were scored teacher-forced only "
                        "(no generated answers to rank by)")
    return asked


def _num(value, digits: int = 3) -> str:
    """'-' for no value; '—' for a value that is not a finite number (see the report's footnote)."""
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if math.isfinite(value) else "—"


def _signed(value) -> str:
    return "" if value is None else f" ({value:+.3f})"


def checkpoint_row(result: RunRecord, cp: CheckpointRow, basis: str | None = None) -> dict:
    """One flat row: a method at one checkpoint, with changes from pre-edit, CIs and the overall score
    on `basis` (default: the run's recorded one); `score_token` and `score_generation` are both kept.
    `result` as results.load_results reads it (results.upgraded: every structural field present)."""
    general, memory = cp["general"], result["memory"]
    fluency, fluency_pre = cp["fluency"], cp["fluency_pre"]
    exam, exam_pre = general["accuracy"], general["accuracy_pre"]
    edits = cp["edits"]
    row: dict[str, Any] = {
        "method": result["method"],
        "protocol": protocol_label(result),
        "edits": edits,
        "order": result["order"],
        "orders": 1,
        **{k: metric_value(cp, k) for k in edit_metrics()},
        "fluency": fluency,
        "fluency_pre": fluency_pre,
        "fluency_change": None if fluency is None or fluency_pre is None else fluency - fluency_pre,
        # collapse signals: held-out perplexity, the largest edited matrix's norm against θ₀'s
        "perplexity": cp["perplexity"],
        "perplexity_pre": cp["perplexity_pre"],
        "max_norm_ratio": cp["weights"]["max_norm_ratio"],
        "exam": general.get("exam"),
        "exam_accuracy": exam,
        "exam_accuracy_pre": exam_pre,
        "exam_change": None if exam is None or exam_pre is None else exam - exam_pre,
        "exam_retention": exam_retention(exam, exam_pre),
        "seconds_per_edit": cp["edit_seconds"] / edits if edits else None,
        "eval_seconds": cp.get("eval_seconds"),
        "flops_per_edit": cp.get("flops_per_edit"),
        "compute_ceiling": result["compute_ceiling"]["flops_per_edit"],
        "over_ceiling": over_ceiling(cp.get("flops_per_edit"), result["compute_ceiling"]["flops_per_edit"]),
        "failed_edits": result["failed_edits"],
        "diverged_edits": result["diverged_edits"],
        "noop_edits": result["noop_edits"],
        "peak_rss_mb": memory.get("cpu_rss_mb"),
        "cuda_max_allocated_mb": memory.get("cuda_max_allocated_mb"),
    }
    # per named group of locality / portability pairs (World 2.0, KnowEdit): e.g. locality_neighbourhood
    row.update(cp["groups"])
    # the gap between what teacher forcing credits and what the model says (a finding in itself)
    row["reliability_gap"] = None if row["reliability_gen"] is None else row["reliability"] - row["reliability_gen"]
    row["score_token"] = overall_score(row, "token")
    row["score_generation"] = overall_score(row, "generation") if row["reliability_gen"] is not None else None
    row["score_basis"] = basis or recorded_basis(result)
    row["score"] = row[f"score_{row['score_basis']}"]
    for k in edit_metrics():
        row[f"{k}_ci"] = list(bootstrap_ci([metric_value(e, k) for e in cp["per_edit"]], seed=result["seed"]) or []) or None
    return row


def over_ceiling(flops_per_edit: float | None, ceiling: float | None) -> bool:
    """Whether a method spent more FLOPs per edit than the run's compute ceiling (harness/ceiling.py)."""
    return ComputeCeiling(ceiling).over(flops_per_edit)


def metric_value(scores: Mapping[str, Any], metric: str) -> float | None:
    """A registered metric's value in a checkpoint or per-edit row (record.Scores; None: not scored)."""
    return scores.get(metric)


def combine_orders(rows: Sequence[dict]) -> list[dict]:
    """Rows of the same method and checkpoint from several edit orders -> one row of means (+ `_std`)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r.get("protocol"), r["edits"]), []).append(r)
    out = []
    for group in groups.values():
        if len(group) == 1:
            out.append(group[0])
            continue
        row = dict(group[0])
        for key, value in group[0].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("edits", "order",
                                                                                                "orders"):
                row[key], std = mean_std([g.get(key) for g in group])
                if key in UNCERTAIN:
                    row[f"{key}_std"] = std
        row["orders"], row["order"] = len(group), None
        row["over_ceiling"] = over_ceiling(row.get("flops_per_edit"), row.get("compute_ceiling"))
        for k in edit_metrics():
            row[f"{k}_ci"] = None  # across orders the spread is the std, not a CI over one order's edits
        out.append(row)
    return out


def final_rows(results: Sequence[RunRecord], basis: str | None = None) -> list[dict]:
    return combine_orders([checkpoint_row(r, r["checkpoints"][-1], basis) for r in results if r["checkpoints"]])


def all_rows(results: Sequence[RunRecord], basis: str | None = None) -> list[dict]:
    return combine_orders([checkpoint_row(r, cp, basis) for r in results for cp in r["checkpoints"]])


def with_spread(row: dict, key: str, digits: int = 3) -> str:
    """'0.842 [0.78, 0.90]' (CI over edits) or '0.842 ± 0.010' (std over orders) or '0.842'."""
    text = _num(row.get(key), digits)
    if row.get(f"{key}_std") is not None and row.get("orders", 1) > 1:
        return f"{text} ± {row[f'{key}_std']:.{digits}f}"
    ci = row.get(f"{key}_ci")
    return f"{text} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else text


def header(basis: str) -> list[str]:
    """Column names: the headline metrics on the score's basis, teacher-forced ones beside them."""
    if basis == "generation":
        return ["method", "protocol", "T", "score (gen)", "reliability (gen EM)", "generalization (gen EM)",
                "locality (gen)", "portability (gen EM)", "rel. tok", "rel. tok EM", "gap (tok − gen)",
                "gen. tok", "loc. tok", "port. tok", "efficacy", "fluency (Δ pre)", "exam acc. (Δ pre)", "s/edit",
                "FLOP/edit", "eval s", "peak MB"]
    return ["method", "protocol", "T", "score", "reliability", "rel. EM", "efficacy", "generalization", "locality",
            "portability", "fluency (Δ pre)", "exam acc. (Δ pre)", "s/edit", "FLOP/edit", "eval s", "peak MB"]


def _cells(r: dict) -> list[str]:
    first = [r["method"], str(r.get("protocol") or "sequential"), str(r["edits"]), with_spread(r, "score")]
    if r.get("score_basis") == "generation":
        return first + [with_spread(r, k) for k in HEADLINE["generation"]] + [
            _num(r["reliability"]), _num(r["reliability_em"]), _num(r.get("reliability_gap")),
            _num(r["generalization"]), _num(r["locality"]), _num(r["portability"]), _num(r.get("efficacy")),
            *_tail(r)]
    return first + [
        with_spread(r, "reliability"), _num(r["reliability_em"]), _num(r.get("efficacy")),
        with_spread(r, "generalization"), with_spread(r, "locality"), with_spread(r, "portability"), *_tail(r)]


def flop_text(flops: float | None) -> str:
    """FLOPs with an SI prefix, 3 significant digits: '8.29 G', '1.20 T'; '-' when not counted."""
    if flops is None:
        return "-"
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if flops >= scale:
            return f"{flops / scale:.3g} {prefix}"
    return f"{flops:.3g}"


def _tail(r: dict) -> list[str]:
    return [_num(r["fluency"], 2) + _signed(r["fluency_change"]),
        _num(r["exam_accuracy"]) + _signed(r["exam_change"]), _num(r["seconds_per_edit"], 3),
        flop_text(r.get("flops_per_edit")), _num(r["eval_seconds"], 1), _num(r.get("cuda_max_allocated_mb") or r.get("peak_rss_mb"), 0),
    ]


def _basis(rows: Sequence[dict]) -> str:
    return rows[0].get("score_basis", "token") if rows else "token"


def markdown(rows: Sequence[dict]) -> str:
    head = header(_basis(rows))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def html_table(rows: Sequence[dict]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header(_basis(rows)))
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def to_csv(rows: Sequence[dict]) -> str:
    if not rows:
        return ""
    import pandas as pd

    flat = [_bounds_as_columns(r) for r in rows]
    columns = list(dict.fromkeys(k for r in flat for k in r))  # first-seen order, as the rows have them
    return pd.DataFrame(flat, columns=columns).to_csv(index=False, lineterminator="\n")


def _bounds_as_columns(row: dict) -> dict:
    """`<metric>_ci: [lo, hi]` -> `<metric>_ci_lo`, `<metric>_ci_hi` (one number per CSV cell)."""
    out = {}
    for key, value in row.items():
        if key.endswith("_ci"):
            lo, hi = value if isinstance(value, (list, tuple)) and len(value) == 2 else (None, None)
            out[f"{key}_lo"], out[f"{key}_hi"] = lo, hi
        elif isinstance(value, (list, tuple)):
            out[key] = " ".join(str(x) for x in value)
        else:
            out[key] = value
    return out


def group_columns(rows: Sequence[dict]) -> list[str]:
    """The per-group metric columns any row has, locality groups first."""
    return sorted(group_metrics(rows), key=lambda k: (not k.startswith("locality_"), k))


def _group_cells(r: dict, columns: Sequence[str]) -> list[str]:
    return [r["method"], str(r.get("protocol") or "sequential"), str(r["edits"]), *(_num(r.get(c)) for c in columns)]


def groups_markdown(rows: Sequence[dict]) -> str:
    """Locality and portability per group of pairs; empty when no run has named groups."""
    columns = group_columns(rows)
    if not columns:
        return ""
    header = ["method", "protocol", "T", *columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_group_cells(r, columns)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def summary_table(results: Sequence[RunRecord]) -> str:
    """The final rows, and a line per method whose updates failed or diverged."""
    rows = final_rows(results)
    notes = [f"{r['method']}: {r.get('failed_edits') or 0} failed, {r.get('diverged_edits') or 0} diverged and "
             f"{r.get('noop_edits') or 0} no-op edit(s) of {r['edits']}" for r in rows
             if r.get("failed_edits") or r.get("diverged_edits") or r.get("noop_edits")]
    return markdown(rows) + "".join(f"{line}\n" for line in notes)


def ranking(rows: Sequence[dict], results: Sequence[RunRecord], basis: str) -> list[dict]:
    """Rank intervals (reports/stats.rank_intervals) of the final rows, per protocol and T: each
    method's per-edit scores at that checkpoint (its first edit order), on the edits every method
    scored. Rows are ranked best first."""
    from editbench.reports.stats import rank_intervals

    results = first_sample(results)
    out = []
    for protocol, t in dict.fromkeys((r.get("protocol"), r["edits"]) for r in rows):
        group = [r for r in rows if (r.get("protocol"), r["edits"]) == (protocol, t)]
        methods, shared = board(group, results, basis)
        if len(group) < 2 or not shared:
            continue
        seed = results[0]["seed"]
        for method, entry in sorted(rank_intervals(methods, basis, seed=seed).items(), key=lambda kv: kv[1]["rank"]):
            row = next(r for r in group if r["method"] == method)
            hparams = next(x for x in results if x["method"] == method).get("hparams") or {}
            out.append({"method": method, "protocol": protocol, "edits": t, "score": row["score"], **entry,
                        "shared_edits": len(shared), "under_floor": hparams.get("floor_passed") is False,
                        "floor_em": hparams.get("floor_em"), "floor_edits": hparams.get("floor_edits"),
                        "over_ceiling": row.get("over_ceiling", False), "flops_per_edit": row.get("flops_per_edit"),
                        "compute_ceiling": row.get("compute_ceiling")})
    return out


def first_sample(results: Sequence[RunRecord]) -> list[RunRecord]:
    """The runs of one edit sample: the first seed's first edit order (what rank intervals resample)."""
    first = min((r["seed"], r["order"]) for r in results)
    return [r for r in results if (r["seed"], r["order"]) == first]


def board(group: Sequence[dict], results: Sequence[RunRecord], basis: str) -> tuple[dict[str, tuple[dict, dict]], list]:
    """The methods of one protocol and checkpoint (`group`: their rows) as the resampling sees them:
    name -> (per-edit lists of the score's metrics on the edits every method scored, metrics held at
    their aggregate); and those shared edits' case ids."""
    per_edit = {}
    for r in group:
        result = next(x for x in results if x["method"] == r["method"] and protocol_label(x) == r["protocol"])
        cp = next((c for c in result["checkpoints"] if c["edits"] == r["edits"]), None)
        per_edit[r["method"]] = {e["case_id"]: e for e in (cp["per_edit"] if cp is not None else [])}
    shared = [c for c in next(iter(per_edit.values()), {}) if all(c in p for p in per_edit.values())]
    keys = [k for side in SCORE_BASES[basis] for k in side if k != "exam_retention"]
    methods = {}
    for r in group:
        lists = {k: [metric_value(per_edit[r["method"]][c], k) for c in shared] for k in keys}
        # a metric the run kept no per-edit values of is held at its aggregate, as exam retention is
        fixed = {k: r.get(k) for k in (*keys, "exam_retention") if k not in lists or
                 all(v is None for v in lists[k])}
        methods[r["method"]] = ({k: v for k, v in lists.items() if k not in fixed}, fixed)
    return methods, shared


def ranking_markdown(ranked: Sequence[dict]) -> str:
    """rank, [interval], score and the paired difference to the next-ranked method (≈: not significant)."""
    if not ranked:
        return ""
    lines = ["| rank | 95% interval | method | protocol | T | score | vs next: difference [95% CI] |",
             "|---|---|---|---|---|---|---|"]
    for r in ranked:
        nxt = r.get("next")
        versus = "-" if nxt is None else (
            f"{'>' if nxt['significant'] else '≈'} {nxt['method']}: {nxt['difference']:+.3f} "
            f"[{nxt['ci'][0]:+.3f}, {nxt['ci'][1]:+.3f}]")
        name = r["method"] + (" †" if r.get("under_floor") else "") + (" ‡" if r.get("over_ceiling") else "")
        lines.append(f"| {r['rank']} | [{r['rank_ci'][0]}, {r['rank_ci'][1]}] | {name} | {r['protocol']} | "
                     f"{r['edits']} | {_num(r['score'])} | {versus} |")
    lines += ["", *(f"† {r['method']}: no config of its search space passed the single-edit floor when tuned; "
                    f"ranked at the config with the best dev score (generated EM {r['floor_em']} on "
                    f"{r['floor_edits']} independent dev edits)" for r in ranked if r.get("under_floor")),
              *(f"‡ {r['method']}: {flop_text(r['flops_per_edit'])}FLOPs per edit, over the compute ceiling of "
                f"{flop_text(r['compute_ceiling'])}FLOPs: not the same race (its shipped configuration; "
                "harness/ceiling.py)" for r in ranked if r.get("over_ceiling"))]
    return "\n".join(lines).rstrip("\n") + "\n"


def rank_stability(results: Sequence[RunRecord], basis: str) -> str:
    """With runs of several seeds (edit samples: `make leaderboard SEEDS=3`): each method's rank per
    sample, and Kendall's tau between the samples' rankings. Empty for one seed."""
    from editbench.reports.stats import kendall_tau

    seeds = sorted({r["seed"] for r in results})
    if len(seeds) < 2:
        return ""
    scores = {s: {r["method"]: r["score"] for r in final_rows([x for x in results if x["seed"] == s], basis)}
              for s in seeds}
    methods = [m for m in dict.fromkeys(r["method"] for r in results) if all(m in scores[s] for s in seeds)]
    ranks = {s: {m: 1 + sum((scores[s][o] or 0) > (scores[s][m] or 0) for o in methods) for m in methods}
             for s in seeds}
    methods.sort(key=lambda m: sum(ranks[s][m] for s in seeds))
    lines = ["| method | " + " | ".join(f"rank, seed {s}" for s in seeds) + " | mean rank |",
             "|" + "---|" * (len(seeds) + 2)]
    lines += [f"| {m} | " + " | ".join(str(ranks[s][m]) for s in seeds)
              + f" | {sum(ranks[s][m] for s in seeds) / len(seeds):.2f} |" for m in methods]
    taus = [(s, t, kendall_tau([scores[s][m] or 0 for m in methods], [scores[t][m] or 0 for m in methods]))
            for i, s in enumerate(seeds) for t in seeds[i + 1:]]
    lines += ["", "Kendall's tau between samples: " + ", ".join(
        f"seeds {s} and {t}: {_num(tau, 2)}" for s, t, tau in taus)]
    return "\n".join(lines) + "\n"
