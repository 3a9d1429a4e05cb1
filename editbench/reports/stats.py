"""Uncertainty and ranking: seeded bootstrap intervals over edits, paired differences, the overall score.

Pure functions over lists of numbers (and torch for the resampling), so they are tested on invariants.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

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
    """Mean of b - a over edits both scored, with a paired bootstrap interval (same edits, same order)."""
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if not pairs:
        return None
    diffs = [y - x for x, y in pairs]
    return sum(diffs) / len(diffs), bootstrap_ci(diffs, n_resamples, level, seed)


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
