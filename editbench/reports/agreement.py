"""Do two leaderboards rank the editors alike? Kendall's tau between the final scores of the methods
both ran (e.g. the synthetic world against a real model), with a bootstrap interval over each board's
own edits, and each method's rank on both sides: what one board predicts about the other."""
from __future__ import annotations

from pathlib import Path

from editbench.core import DataError
from editbench.harness.results import find_results, load_results
from editbench.harness.store import complete_only
from editbench.reports import tables
from editbench.reports.stats import N_RESAMPLES, tau_between_boards


def final_board(run_dir: Path, basis: str) -> tuple[dict, dict[str, dict]]:
    """A run folder's methods at their final checkpoint (first seed and order): the resampling's
    view (tables.board) and each method's row."""
    paths = find_results(Path(run_dir))
    results, _, _ = complete_only([load_results(p) for p in paths], paths)
    if not results:
        raise DataError(f"{run_dir}: no complete results")
    results = tables.first_sample(results)
    rows = tables.final_rows(results, basis)
    methods, _ = tables.board(rows, results, basis)
    return methods, {r["method"]: r for r in rows}


def agreement(run_a: Path, run_b: Path, basis: str = "generation", n_resamples: int = N_RESAMPLES,
              seed: int = 0) -> dict:
    """Kendall's tau (and its interval) between two run folders' rankings, with both sides' ranks."""
    board_a, rows_a = final_board(run_a, basis)
    board_b, rows_b = final_board(run_b, basis)
    found = tau_between_boards(board_a, board_b, basis, n_resamples, seed=seed)
    names = found["methods"]
    rank = lambda scores: {m: 1 + sum(o > s for o in scores) for m, s in zip(names, scores)}  # noqa: E731
    rank_a, rank_b = rank(found["scores_a"]), rank(found["scores_b"])
    per_method = [{"method": m, "score_a": rows_a[m]["score"], "rank_a": rank_a[m], "score_b": rows_b[m]["score"],
                   "rank_b": rank_b[m], "moved": rank_b[m] - rank_a[m]} for m in sorted(names, key=lambda m: rank_a[m])]
    return {"run_a": str(run_a), "run_b": str(run_b), "basis": basis, "tau": found["tau"], "tau_ci": found["tau_ci"],
            "n_resamples": n_resamples, "methods": per_method}


def markdown(found: dict) -> str:
    lines = ["| method | score A | rank A | score B | rank B | moved |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {tables._num(r['score_a'])} | {r['rank_a']} | {tables._num(r['score_b'])} | "
              f"{r['rank_b']} | {r['moved']:+d} |" for r in found["methods"]]
    lo, hi = found["tau_ci"]
    interval = "-" if lo is None else f"[{lo:.2f}, {hi:.2f}]"
    lines += ["", f"A = {found['run_a']}, B = {found['run_b']}; score basis {found['basis']}. Kendall's tau-b "
              f"{tables._num(found['tau'], 2)}, 95% interval {interval} ({found['n_resamples']} resamples of "
              "each board's own edits)."]
    return "\n".join(lines) + "\n"
