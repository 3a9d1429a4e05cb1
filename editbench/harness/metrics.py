"""Edit metrics, following EasyEdit/KnowEdit (token accuracy) and ROME (n-gram entropy).

Every metric is defined in the README; the functions here are the single implementation.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

from editbench.core import EditRequest, ExamQuestion
from editbench.harness.models import LoadedModel
from editbench.harness.scoring import TargetScore, score_targets


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


# --------------------------------------------------------------------------- per-edit scores


def _grouped(lm: LoadedModel, groups: list[list[tuple[str, str]]]) -> list[list[TargetScore]]:
    """Score many (prompt, answer) lists in one batched pass and split the result back per group."""
    flat = [pair for group in groups for pair in group]
    scores = score_targets(lm, flat) if flat else []
    out, pos = [], 0
    for group in groups:
        out.append(scores[pos : pos + len(group)])
        pos += len(group)
    return out


def edit_scores(
    lm: LoadedModel, requests: Sequence[EditRequest], locality_pre: list[list[list[int]]] | None
) -> list[dict]:
    """Per-edit reliability, reliability_em, generalization, locality and portability.

    - reliability: mean over target tokens of [top-1 == target_new token] after the prompt.
    - generalization: the same on each rephrase prompt, averaged over rephrases.
    - locality: share of locality-answer positions whose top-1 equals the pre-edit top-1.
    - portability: token accuracy on the portability pairs.
    A metric the record has no data for is None.
    """
    rel = _grouped(lm, [[(r.prompt, r.target_new)] for r in requests])
    gen = _grouped(lm, [[(p, r.target_new) for p in r.rephrase_prompts] for r in requests])
    port = _grouped(lm, [list(r.portability) for r in requests])
    loc_now = locality_top1(lm, requests)
    rows = []
    for i, r in enumerate(requests):
        loc = None
        if locality_pre is not None and r.locality:
            hits = [a == b for pre, now in zip(locality_pre[i], loc_now[i]) for a, b in zip(pre, now)]
            loc = mean(hits)
        rows.append(
            {
                "case_id": r.case_id,
                "reliability": rel[i][0].token_accuracy,
                "reliability_em": float(rel[i][0].exact),
                "generalization": mean([s.token_accuracy for s in gen[i]]),
                "locality": loc,
                "portability": mean([s.token_accuracy for s in port[i]]),
            }
        )
    return rows


def locality_top1(lm: LoadedModel, requests: Sequence[EditRequest]) -> list[list[list[int]]]:
    """Teacher-forced top-1 tokens on each locality answer: per request, per pair, per position."""
    return [[s.top1 for s in group] for group in _grouped(lm, [list(r.locality) for r in requests])]


def aggregate(rows: Sequence[dict], keys: Sequence[str]) -> dict[str, float | None]:
    """Mean of each key over the rows that have a value for it (None when none has)."""
    return {k: mean([row[k] for row in rows if row.get(k) is not None]) for k in keys}


# --------------------------------------------------------------------------- fluency

_WORD = re.compile(r"\w+|[^\w\s]")


def ngram_entropy(text: str, ns: Sequence[int] = (2, 3), weights: Sequence[float] = (2 / 3, 4 / 3)) -> float:
    """ROME's fluency: mean over n of weight_n * entropy (bits) of the text's word n-gram distribution."""
    words = _WORD.findall(text.lower())
    terms = []
    for n, w in zip(ns, weights):
        grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
        total = sum(grams.values())
        h = -sum(c / total * math.log2(c / total) for c in grams.values()) if total else 0.0
        terms.append(w * h)
    return sum(terms) / len(terms)


def fluency(texts: Sequence[str]) -> float | None:
    return mean([ngram_entropy(t) for t in texts])


# --------------------------------------------------------------------------- general capability


def exam_predictions(lm: LoadedModel, questions: Sequence[ExamQuestion]) -> list[int]:
    """Cloze scoring: the option whose text has the highest total log-likelihood after the question."""
    pairs = [(q.question, opt) for q in questions for opt in q.options]
    scores = score_targets(lm, pairs) if pairs else []
    preds, pos = [], 0
    for q in questions:
        totals = [sum(s.logprobs) for s in scores[pos : pos + len(q.options)]]
        preds.append(max(range(len(totals)), key=totals.__getitem__))
        pos += len(q.options)
    return preds


def exam_accuracy(lm: LoadedModel, questions: Sequence[ExamQuestion]) -> float | None:
    preds = exam_predictions(lm, questions)
    return mean([float(p == q.answer_index) for p, q in zip(preds, questions)])
