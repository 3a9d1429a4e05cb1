"""Uncertainty and ranking: seeded bootstrap intervals over edits, paired differences, the overall score.

Pure functions over lists of numbers (and torch for the resampling), so they are tested on invariants.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch

N_RESAMPLES = 2000  # bootstrap resamples per interval
CI_LEVEL = 0.95
# The ranking score (all parts in [0, 1], higher is better): the harmonic mean of what the edits
# achieved and what the model kept, so doing nothing and breaking everything both score 0. Its basis
# says what edit success and locality rest on: the model's generated answers (exact match, the
# default since teacher forcing overstates success, arXiv 2502.11177) or teacher-forced tokens.
SCORE_BASES = {
    # basis: (edit success: gains over the same edits' pre-edit scores, preservation)
    "generation": (("reliability_gen_gain", "generalization_gen_gain"), ("locality_gen", "exam_retention")),
    "token": (("reliability_gain", "generalization_gain"), ("locality", "exam_retention")),
}


def _clean(values: Sequence[float | None]) -> torch.Tensor:
    return torch.tensor([float(v) for v in values if v is not None], dtype=torch.float64)


def bootstrap_ci(values: Sequence[float | None], n_resamples: int = N_RESAMPLES, level: float = CI_LEVEL,
                 seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean (resampling edits with replacement). None if no values."""
    x = _clean(values)
    if x.numel() == 0:
        return None
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, x.numel(), (n_resamples, x.numel()), generator=gen)
    means = x[idx].mean(dim=1)
    tail = (1.0 - level) / 2
    lo, hi = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return lo, hi


def paired_diff_ci(a: Sequence[float | None], b: Sequence[float | None], n_resamples: int = N_RESAMPLES,
                   level: float = CI_LEVEL, seed: int = 0) -> tuple[float, tuple[float, float]] | None:
    """Mean of b - a over edits both scored, with a paired bootstrap interval (same edits, same order;
    None when no difference is a finite number: a NaN is no score)."""
    diffs = [y - x for x, y in zip(a, b) if x is not None and y is not None and math.isfinite(y - x)]
    interval = bootstrap_ci(diffs, n_resamples, level, seed)
    return None if interval is None else (sum(diffs) / len(diffs), interval)


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (0 for a single value) of the non-missing values."""
    x = [float(v) for v in values if v is not None]
    if not x:
        return None, None
    m = sum(x) / len(x)
    sd = math.sqrt(sum((v - m) ** 2 for v in x) / (len(x) - 1)) if len(x) > 1 else 0.0
    return m, sd


def exam_retention(accuracy: float | None, accuracy_pre: float | None) -> float | None:
    """Exam accuracy as a share of the pre-edit accuracy, capped at 1 (an edit may not buy capability)."""
    if accuracy is None or not accuracy_pre:
        return None
    return min(1.0, accuracy / accuracy_pre)


def _mean_of(row: dict, keys: Sequence[str]) -> float | None:
    parts = [row[k] for k in keys if row.get(k) is not None]
    return sum(parts) / len(parts) if parts else None


def overall_score(row: dict, basis: str = "token") -> float | None:
    """Harmonic mean of edit success and preservation (the two halves of SCORE_BASES[basis]).

    A side the row has no data for is left out (the score is then the other side); None when
    neither side has data. Harmonic, like F1: a method scores high only by doing both.
    """
    edit_keys, keep_keys = SCORE_BASES[basis]
    edit, keep = _mean_of(row, edit_keys), _mean_of(row, keep_keys)
    if edit is None or keep is None:
        return keep if edit is None else edit
    return 0.0 if edit + keep == 0 else 2 * edit * keep / (edit + keep)


def _resampled_means(values: Sequence[float | None], idx: torch.Tensor) -> torch.Tensor | None:
    """Mean over each resample's edits (edits without a value left out); None when no edit has one."""
    x = torch.tensor([float("nan") if v is None else float(v) for v in values], dtype=torch.float64)
    if torch.isnan(x).all():
        return None
    return x[idx].nanmean(dim=1)


def resampled_scores(per_edit: dict[str, Sequence[float | None]], fixed: dict[str, float | None], basis: str,
                     idx: torch.Tensor) -> torch.Tensor:
    """`overall_score` of one method under each resample of its edits ([R]). `per_edit`: metric ->
    per-edit values (the same edits, in the same order, for every method compared); `fixed`: metrics
    that are not per edit (exam retention) and stay as they are."""
    sides = []
    for keys in SCORE_BASES[basis]:
        parts = [m for m in (_resampled_means(per_edit[k], idx) if k in per_edit else None for k in keys)
                 if m is not None]
        parts += [torch.full((idx.shape[0],), float(value), dtype=torch.float64)
                  for k in keys if k not in per_edit and (value := fixed.get(k)) is not None]
        sides.append(torch.stack(parts).nanmean(dim=0) if parts else None)
    edit, keep = sides
    if edit is None and keep is None:  # nothing scored on either side: no score in any resample
        return torch.full((idx.shape[0],), float("nan"), dtype=torch.float64)
    if edit is None or keep is None:
        return cast(torch.Tensor, keep if edit is None else edit)
    total = edit + keep
    return torch.where(total > 0, 2 * edit * keep / total.clamp_min(1e-300), torch.zeros_like(total))


def board_scores(methods: dict[str, tuple[dict, dict]], basis: str, n_resamples: int = N_RESAMPLES,
                 seed: int = 0) -> torch.Tensor:
    """[M, 1 + R]: each method's score on the edits as run (column 0) and under R seeded resamples of
    them, the same edits drawn for every method (paired). `methods` as for `rank_intervals`."""
    n_edits = {len(v) for per_edit, _ in methods.values() for v in per_edit.values()}
    if len(n_edits) != 1:
        raise ValueError(f"rank intervals need the same edits for every method (edit counts {sorted(n_edits)})")
    gen = torch.Generator().manual_seed(seed)
    n = n_edits.pop()
    idx = torch.cat([torch.arange(n)[None], torch.randint(0, n, (n_resamples, n), generator=gen)])
    return torch.stack([resampled_scores(*methods[m], basis, idx) for m in methods])


def tau_between_boards(a: dict[str, tuple[dict, dict]], b: dict[str, tuple[dict, dict]], basis: str,
                       n_resamples: int = N_RESAMPLES, level: float = CI_LEVEL, seed: int = 0) -> dict:
    """Kendall's tau-b between two leaderboards' scores of the methods both ran (two models or worlds,
    each on its own edits), with a percentile bootstrap interval: each resample redraws each board's
    edits (independently: the boards share no edits) and ranks both. NaN scores count as 0."""
    names = [m for m in a if m in b]
    if len(names) < 2:
        raise ValueError(f"two boards share {len(names)} method(s): Kendall's tau needs two")
    score_a = torch.nan_to_num(board_scores({m: a[m] for m in names}, basis, n_resamples, seed))
    score_b = torch.nan_to_num(board_scores({m: b[m] for m in names}, basis, n_resamples, seed + 1))
    taus = [kendall_tau(score_a[:, r].tolist(), score_b[:, r].tolist()) for r in range(score_a.shape[1])]
    drawn = torch.tensor([t for t in taus[1:] if t is not None], dtype=torch.float64)
    tail = (1.0 - level) / 2
    lo, hi = torch.quantile(drawn, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist() \
        if drawn.numel() else (None, None)
    return {"methods": names, "tau": taus[0], "tau_ci": [lo, hi],
            "scores_a": score_a[:, 0].tolist(), "scores_b": score_b[:, 0].tolist()}


def rank_intervals(methods: dict[str, tuple[dict, dict]], basis: str, n_resamples: int = N_RESAMPLES,
                   level: float = CI_LEVEL, seed: int = 0) -> dict[str, dict]:
    """Each method's rank by score (1 = best; ties share the better rank) with a percentile bootstrap
    interval: every resample draws the same edits for every method (paired), scores each and ranks
    them. `methods`: name -> (per-edit metric lists, fixed metrics), lists aligned across methods.
    Also, per method, whether its score differs significantly from the next-ranked one's (the paired
    bootstrap interval of the difference excludes 0)."""
    names = list(methods)
    scores = board_scores(methods, basis, n_resamples, seed)  # [M, 1 + R]
    ranks = 1 + (scores[None, :, :] > scores[:, None, :]).sum(dim=1)  # [M, 1 + R]: how many score higher
    tail = (1.0 - level) / 2
    q = torch.tensor([tail, 1 - tail], dtype=torch.float64)
    point = scores[:, 0]
    order = sorted(range(len(names)), key=lambda i: (-point[i].item(), i))
    out = {}
    for pos, i in enumerate(order):
        lo, hi = torch.quantile(ranks[i, 1:].double(), q).tolist()
        entry = {"rank": int(ranks[i, 0]), "rank_ci": [math.floor(lo), math.ceil(hi)]}
        if pos + 1 < len(order):
            diff = scores[i, 1:] - scores[order[pos + 1], 1:]
            d_lo, d_hi = torch.quantile(diff, q).tolist()
            entry["next"] = {"method": names[order[pos + 1]], "difference": round((point[i] - point[order[pos + 1]]).item(), 4),
                             "ci": [round(d_lo, 4), round(d_hi, 4)], "significant": d_lo > 0 or d_hi < 0}
        out[names[i]] = entry
    return out


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Kendall's tau-b between two scorings of the same items (ties in either count as neither
    concordant nor discordant, with tau-b's correction). None for fewer than two items or a constant."""
    n = len(a)
    if n != len(b):
        raise ValueError(f"kendall_tau: {n} vs {len(b)} items")
    concordant = discordant = ties_a = ties_b = 0
    for i in range(n):
        for j in range(i + 1, n):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif (da > 0) == (db > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    return None if denominator == 0 else (concordant - discordant) / denominator
