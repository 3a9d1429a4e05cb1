"""Edit metrics, following EasyEdit/KnowEdit (token accuracy) and ROME (n-gram entropy).

Every metric is defined in the README; the functions here are the single implementation.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

from dataclasses import dataclass, field

import torch

from editbench.core import ConfigError, EditRequest, ExamQuestion, setting
from editbench.harness.metric_registry import computed_per_edit, metric_names
from editbench.harness.generation import Answer, GenerationSpec, contains, exact_match, greedy_answers
from editbench.harness.models import LoadedModel, in_context
from editbench.harness.scoring import (
    TargetScore, encode_prompt_target, last_logits_after_prefix, length_batches, pad_right, score_targets,
)

# Teacher-forced metrics (the model is fed the gold answer and scored token by token), and what the
# model says (greedy answers, harness/generation.py) when an evaluation mode generates: declared in
# harness/metric_registry.py


def edit_metrics() -> tuple[str, ...]:
    """Every per-edit metric registered now (a metric registered after import included)."""
    return metric_names("token") + metric_names("generation")  # teacher-forced first, as results list them


@dataclass(frozen=True)
class EditEvidence:
    """One edit's teacher-forced scores, as a registered metric's `per_edit` function reads them."""

    request: EditRequest
    edit_prompt: TargetScore  # target_new after the edit prompt
    target_true: TargetScore | None  # target_true after the edit prompt (None without one)
    paraphrases: list[TargetScore]  # target_new after each rephrased prompt
    portability: list[TargetScore]  # each portability pair's answer after its question
    locality: list[float]  # per locality pair: the share of answer positions whose top-1 is unchanged


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _agreement(before: Sequence[int], now: Sequence[int]) -> float:
    """The share of a locality answer's positions whose top-1 token is unchanged."""
    same = [a == b for a, b in zip(before, now)]
    return sum(same) / len(same) if same else 0.0


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


def _gain(now: float | None, pre: float | None) -> float | None:
    """How much of the room left before the edit was gained: (x - x0) / (1 - x0), floored at 0.

    An edit whose answer was already right before (x0 = 1) counts as gained when it still is.
    """
    if now is None or pre is None:
        return None
    return now if pre >= 1.0 else max(0.0, (now - pre) / (1.0 - pre))


def _mean_logprob(score: TargetScore) -> float:
    return sum(score.logprobs) / len(score.logprobs)


def edit_scores(
    lm: LoadedModel, requests: Sequence[EditRequest], locality_pre: list[list[list[int]]] | None,
    pre_rows: Sequence[dict] | None = None, generation: GenerationSpec | None = None,
    locality_pre_answers: list[list[str]] | None = None,
) -> list[dict]:
    """Per-edit scores (each defined in the README's metrics table):

    - reliability: mean over target tokens of [top-1 == target_new token] after the prompt.
    - reliability_em: 1 if every target token is top-1.
    - efficacy (CounterFact's ES, as ROME computes it): 1 if the mean per-token log-probability of
      target_new after the prompt is above that of target_true; None without target_true.
    - generalization: reliability on each rephrase prompt, averaged over rephrases.
    - locality: per locality pair, the share of its answer positions whose top-1 equals the pre-edit
      top-1; then the mean over pairs (EasyEdit: per prompt, then over prompts).
    - portability: token accuracy per portability pair, averaged over pairs.
    - locality_<group> / portability_<group>: the same over the pairs of one named group (the
      request's locality_groups / portability_groups), e.g. locality_neighbourhood, portability_two_hop.
    - reliability_gain / generalization_gain: `_gain` against the same edit's pre-edit value
      (`pre_rows`, scores of the unedited model), so free credit on multi-token names does not count.
    With a `generation` spec, the same edits are also scored on what the model says (`_generation_scores`).
    A metric the record has no data for is None. `prediction` is not a metric: the model's top-1
    tokens at the target's positions (teacher forced), decoded, for reading an edit's outcome.
    """
    # a context in force (a retrieval editor's memory) is put before every question of the edits
    shown = _shown_questions(lm, requests)
    # every prompt of every metric in one sorted, padded stream (one pass), split back per metric
    kinds = [[[(shown(r.prompt), r.target_new)] for r in requests],
             [[(shown(r.prompt), r.target_true)] if r.target_true else [] for r in requests],
             [[(shown(p), r.target_new) for p in r.rephrase_prompts] for r in requests],
             [[(shown(p), a) for p, a in r.portability] for r in requests]]
    if locality_pre is not None:
        kinds.append([[(shown(p), a) for p, a in r.locality] for r in requests])
    scored = _grouped(lm, [group for kind in kinds for group in kind])
    n = len(requests)
    rel, true, gen, port = (scored[k * n:(k + 1) * n] for k in range(4))
    loc_now = [[s.top1 for s in group] for group in scored[4 * n:]] if locality_pre is not None else None
    declared = computed_per_edit()  # read once per call, not per edit
    rows = []
    for i, r in enumerate(requests):
        loc, per_pair = None, []
        if locality_pre is not None and loc_now is not None and r.locality:
            per_pair = [_agreement(pre, now) for pre, now in zip(locality_pre[i], loc_now[i])]
            loc = mean(per_pair)
        port_pairs = [s.token_accuracy for s in port[i]]
        row: dict[str, Any] = {
            "case_id": r.case_id,
            "reliability": rel[i][0].token_accuracy,
            "reliability_em": float(rel[i][0].exact),
            "efficacy": float(_mean_logprob(rel[i][0]) > _mean_logprob(true[i][0])) if true[i] else None,
            "generalization": mean([s.token_accuracy for s in gen[i]]),
            "locality": loc,
            "portability": mean(port_pairs),
            "prediction": _decoded(lm.tokenizer, rel[i][0].top1),
        }
        row.update(_group_means("locality", r.locality_groups, per_pair))
        row.update(_group_means("portability", r.portability_groups, port_pairs))
        evidence = EditEvidence(r, rel[i][0], true[i][0] if true[i] else None, gen[i], port[i], per_pair)
        row.update({name: compute(evidence) for name, compute in declared.items()})
        pre = pre_rows[i] if pre_rows is not None else {}
        row["reliability_gain"] = _gain(row["reliability"], pre.get("reliability"))
        row["generalization_gain"] = _gain(row["generalization"], pre.get("generalization"))
        rows.append(row)
    context = getattr(lm, "context", None)
    if context is not None:  # what the context in force put before each of the edit's questions
        for row, r in zip(rows, requests):
            row["retrieved"] = _shown(context.shown, r)
    if generation is not None:
        gen_rows = _generation_scores(lm, requests, generation, locality_pre_answers, shown)
        for row, gen_row, pre in zip(rows, gen_rows, pre_rows or [{}] * len(rows)):
            row.update(gen_row)
            row["reliability_gen_gain"] = _gain(row["reliability_gen"], pre.get("reliability_gen"))
            row["generalization_gen_gain"] = _gain(row["generalization_gen"], pre.get("generalization_gen"))
    return rows


def _shown_questions(lm: LoadedModel, requests: Sequence[EditRequest]):
    """question -> the text the model is shown for it: the question itself, or, with a context in
    force (`lm.context`), the context's text for it (all of the edits' questions at once)."""
    if getattr(lm, "context", None) is None:
        return lambda question: question
    questions = sorted({q for r in requests for q in (r.prompt, *r.rephrase_prompts, *(p for p, _ in r.portability),
                                                       *(p for p, _ in r.locality))})
    texts = dict(zip(questions, in_context(lm, questions)))
    return texts.__getitem__


def _shown(shown: dict[str, list[str]], request: EditRequest) -> dict:
    return {"reliability": shown.get(request.prompt), "generalization": [shown.get(p) for p in request.rephrase_prompts],
            "locality": [shown.get(p) for p, _ in request.locality],
            "portability": [shown.get(p) for p, _ in request.portability]}


def spoken(target: str, tokenizer) -> str:
    """The gold answer as a free answer is compared with it: without the end-of-sequence text a target
    may end with (answer_end eos writes complete answers; the generated answer is cut there)."""
    eos = getattr(tokenizer, "eos_token", None)
    return target[: -len(eos)] if eos and target.endswith(eos) else target


def _questions(request: EditRequest, with_locality: bool, tokenizer) -> list[tuple[str, str, str]]:
    """(kind, question, gold answer) of every prompt of an edit that is answered freely."""
    target = spoken(request.target_new, tokenizer)
    out = [("reliability", request.prompt, target)]
    out += [("generalization", p, target) for p in request.rephrase_prompts]
    out += [("portability", p, a) for p, a in request.portability]
    if with_locality:
        out += [("locality", p, a) for p, a in request.locality]
    return out


def _answers(lm: LoadedModel, questions: list[tuple[str, str, str]], spec: GenerationSpec) -> list[Answer]:
    """Greedy answers; each question's token limit follows its gold answer's length as the model would
    tokenise it after the question."""
    lengths = [len(encode_prompt_target(lm.tokenizer, q, gold)[1]) for _, q, gold in questions]
    return greedy_answers(lm, [q for _, q, _ in questions], lengths, spec)


def locality_answers(lm: LoadedModel, requests: Sequence[EditRequest], spec: GenerationSpec) -> list[list[str]]:
    """The unedited model's free answers to each locality prompt: per request, per pair."""
    flat = [("locality", p, a) for r in requests for p, a in r.locality]
    answers = iter(_answers(lm, flat, spec)) if flat else iter(())
    return [[next(answers).answer for _ in r.locality] for r in requests]


def already_answered(lm: LoadedModel, requests: Sequence[EditRequest], spec: GenerationSpec | None) -> list[bool]:
    """Per request: does this (unedited) model already make the edit? With a generation spec, its greedy
    answer to the prompt equals target_new as reliability_gen compares them; without one, every
    target_new token is top-1 (reliability_em). Such an edit tests no editor: the benchmarks leave it out."""
    if not requests:
        return []
    if spec is None:
        return [s.exact for s in score_targets(lm, [(r.prompt, r.target_new) for r in requests])]
    golds = [spoken(r.target_new, lm.tokenizer) for r in requests]
    answers = _answers(lm, [("reliability", r.prompt, gold) for r, gold in zip(requests, golds)], spec)
    return [exact_match(a.answer, gold) for a, gold in zip(answers, golds)]


def _generation_scores(lm: LoadedModel, requests: Sequence[EditRequest], spec: GenerationSpec,
                       locality_pre: list[list[str]] | None, shown=lambda question: question) -> list[dict]:
    """Per edit, on the model's greedy answers (definitions in docs/metrics.md):

    - reliability_gen: 1 if the answer to the edit prompt equals target_new after normalisation;
      reliability_gen_contains: 1 if it contains it (as whole words).
    - generalization_gen(_contains): the same on each rephrase prompt, averaged over rephrases.
    - portability_gen: exact match per portability pair, averaged; portability_<group>_gen per group.
    - locality_gen: per locality pair, 1 if the normalised answer equals the unedited model's
      (`locality_pre`), averaged; locality_<group>_gen per group.
    - generated: the answer to the edit prompt as generated (raw text) and as compared (answer).
    """
    per_request = [_questions(r, locality_pre is not None, lm.tokenizer) for r in requests]
    flat = [(kind, shown(q), gold) for qs in per_request for kind, q, gold in qs]
    answers = iter(_answers(lm, flat, spec)) if flat else iter(())
    rows = []
    for i, (r, qs) in enumerate(zip(requests, per_request)):
        got: dict[str, list[tuple[Answer, str]]] = {}
        for kind, _, gold in qs:
            got.setdefault(kind, []).append((next(answers), gold))
        em = {k: [float(exact_match(a.answer, g)) for a, g in v] for k, v in got.items()}
        within = {k: [float(contains(a.answer, g)) for a, g in v] for k, v in got.items()}
        loc = [float(exact_match(a.answer, before)) for (a, _), before in
               zip(got.get("locality", []), locality_pre[i])] if locality_pre is not None else []
        first = got["reliability"][0][0]
        row = {"reliability_gen": em["reliability"][0], "reliability_gen_contains": within["reliability"][0],
               "generalization_gen": mean(em.get("generalization", [])),
               "generalization_gen_contains": mean(within.get("generalization", [])),
               "portability_gen": mean(em.get("portability", [])), "locality_gen": mean(loc),
               "generated": first.raw, "answer": first.answer}
        row.update(_group_means("locality", r.locality_groups, loc, suffix="_gen"))
        row.update(_group_means("portability", r.portability_groups, em.get("portability", []), suffix="_gen"))
        rows.append(row)
    return rows


def _decoded(tokenizer, ids: list[int]) -> str | None:
    """The text of token ids, for reading an edit's outcome; None for a tokenizer that cannot decode."""
    decode = getattr(tokenizer, "decode", None)
    return decode(ids) if callable(decode) else None


def _group_means(metric: str, groups: Sequence[str], values: Sequence[float],
                 suffix: str = "") -> dict[str, float | None]:
    """{metric_group(suffix): mean of the values of that group's pairs}; nothing when values or groups are absent."""
    if not values or not groups:
        return {}
    by_group: dict[str, list[float]] = {}
    for group, value in zip(groups, values):
        by_group.setdefault(group, []).append(value)
    return {f"{metric}_{group}{suffix}": mean(vals) for group, vals in sorted(by_group.items())}


def group_metrics(rows: Sequence[dict]) -> list[str]:
    """The per-group metric names present in any row (locality_<group>, portability_<group> and their _gen
    forms; not the overall metrics, intervals or spreads), sorted."""
    overall = set(edit_metrics())  # read once, not per key
    return sorted({k for row in rows for k in row if k.startswith(("locality_", "portability_"))
                   and k not in overall and not k.endswith(("_ci", "_std"))})


def locality_top1(lm: LoadedModel, requests: Sequence[EditRequest]) -> list[list[list[int]]]:
    """Teacher-forced top-1 tokens on each locality answer: per request, per pair, per position."""
    return [[s.top1 for s in group] for group in _grouped(lm, [list(r.locality) for r in requests])]


def aggregate(rows: Sequence[dict], keys: Sequence[str]) -> dict[str, float | None]:
    """Mean of each key over the rows that have a value for it (None when none has)."""
    return {k: mean([row[k] for row in rows if row.get(k) is not None]) for k in keys}


# --------------------------------------------------------------------------- fluency


def _word_tokenizer():
    """nltk.word_tokenize without its downloaded punkt model: an untrained Punkt sentence splitter
    (the same algorithm without learned abbreviations), then NLTK's Treebank-style word tokenizer
    on each sentence, as word_tokenize does."""
    from nltk.tokenize import NLTKWordTokenizer, PunktSentenceTokenizer

    sentences, words = PunktSentenceTokenizer(), NLTKWordTokenizer()
    return lambda text: [w for sent in sentences.tokenize(text) for w in words.tokenize(sent)]


def ngram_entropy(text: str, ns: Sequence[int] = (2, 3), weights: Sequence[float] = (2 / 3, 4 / 3),
                  tokenize=None) -> float:
    """ROME's `compute_n_gram_entropy` (experiments/py/eval_utils_counterfact.py): for each n, the
    entropy in bits of the text's word n-gram frequency distribution (`compute_freq`: nltk words,
    case kept), times its weight; the arithmetic mean over n."""
    words = (tokenize or _word_tokenizer())(text)
    terms = []
    for n, w in zip(ns, weights):
        grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
        total = sum(grams.values())
        h = -sum(c / total * math.log2(c / total) for c in grams.values()) if total else 0.0
        terms.append(w * h)
    return sum(terms) / len(terms)


def perplexity(lm: LoadedModel, texts: Sequence[str]) -> float | None:
    """exp of the mean next-token negative log-likelihood over held-out texts (every token after each
    text's first word): a collapse signal that moves before the edit metrics do (arXiv 2402.09656)."""
    pairs = [(head, " " + tail) for head, _, tail in (text.strip().partition(" ") for text in texts) if tail]
    if not pairs:
        return None
    logprobs = [lp for score in score_targets(lm, pairs) for lp in score.logprobs]
    return math.exp(-sum(logprobs) / len(logprobs))


def fluency(texts: Sequence[str]) -> float | None:
    """Mean n-gram entropy over texts (ROME's `n_gram_entropy`, agg='arith')."""
    tokenize = _word_tokenizer()
    return mean([ngram_entropy(t, tokenize=tokenize) for t in texts])


# --------------------------------------------------------------------------- general capability


EXAM_MODES = ("letter", "cloze")


@dataclass
class PreparedExam:
    """An exam tokenised once per run, then scored at every checkpoint."""

    mode: str
    questions: list[ExamQuestion]
    prompt_ids: list[list[int]] = field(default_factory=list)  # letter mode
    letter_ids: list[list[int]] = field(default_factory=list)  # letter mode: the token of each option letter


def _letter_token(tokenizer, prompt: str, prompt_ids: list[int], letter: str, sep: str) -> int:
    """The first token the model would write for `sep + letter` after `prompt` (split off the joint encoding)."""
    full = tokenizer(prompt + sep + letter).input_ids
    if full[: len(prompt_ids)] == prompt_ids and len(full) > len(prompt_ids):
        return full[len(prompt_ids)]
    return tokenizer(sep + letter, add_special_tokens=False).input_ids[0]


def prepare_exam(lm: LoadedModel, questions: Sequence[ExamQuestion], mode: str = "cloze") -> PreparedExam:
    if mode not in EXAM_MODES:
        raise ConfigError(f"exam mode {mode!r} is unknown (valid: {', '.join(EXAM_MODES)})")
    prepared = PreparedExam(mode, list(questions))
    if mode == "letter":
        for q in questions:
            if not q.prompt:
                raise ConfigError(f"exam question {q.qid!r} has no letter-mode prompt; use cloze scoring")
            ids = lm.tokenizer(q.prompt).input_ids
            letters = [_letter_token(lm.tokenizer, q.prompt, ids, letter, q.letter_sep)
                       for letter in "ABCDEFGH"[: len(q.options)]]
            if len(set(letters)) < len(letters):
                raise ConfigError(f"exam question {q.qid!r}: the option letters do not start with distinct tokens "
                                  f"for this tokenizer ({letters}); use {setting('exam_mode')} cloze")
            prepared.prompt_ids.append(ids)
            prepared.letter_ids.append(letters)
    return prepared


@torch.no_grad()
def _letter_predictions(lm: LoadedModel, prepared: PreparedExam, batch_size: int = 8,
                        shared_prefix: bool = True) -> list[int]:
    """Argmax over the option letters' next-token logits after each prompt (C-Eval/MMLU reference scoring).

    Prompts longer than the model's context keep their last tokens (the question and answer cue).
    The questions of one subject share their instructions and k-shot examples: with `shared_prefix`,
    that prefix's key/value cache is computed once per subject and each question runs only its own
    tokens (harness/scoring.last_logits_after_prefix); the same answers as full passes (tested).
    """
    limit = getattr(getattr(lm.model, "config", None), "max_position_embeddings", None)
    seqs = [ids[-limit:] if limit else ids for ids in prepared.prompt_ids]
    preds = [0] * len(seqs)

    def pick(i: int, last: torch.Tensor) -> None:
        preds[i] = int(last[torch.tensor(prepared.letter_ids[i], device=last.device)].argmax())

    groups: dict[str, list[int]] = {}
    for i, q in enumerate(prepared.questions):
        groups.setdefault(q.subject, []).append(i)
    rest = []
    for members in groups.values():
        done = shared_prefix and last_logits_after_prefix(lm, [seqs[i] for i in members], batch_size)
        if done:
            for i, last in zip(members, done):
                pick(i, last)
        else:
            rest += members
    order = sorted(rest, key=lambda i: -len(seqs[i]))
    for chunk in length_batches(order, [len(s) for s in seqs], batch_size, getattr(lm, "eval_token_budget", None)):
        ids, mask = pad_right([seqs[i] for i in chunk], lm.tokenizer.pad_token_id, lm.device)
        logits = lm.model(input_ids=ids, attention_mask=mask).logits
        for row, i in enumerate(chunk):
            pick(i, logits[row, len(seqs[i]) - 1])
    return preds


def _cloze_predictions(lm: LoadedModel, questions: Sequence[ExamQuestion]) -> list[int]:
    """The option whose text has the highest total log-likelihood after the question."""
    pairs = [(q.question, opt) for q in questions for opt in q.options]
    scores = score_targets(lm, pairs) if pairs else []
    preds, pos = [], 0
    for q in questions:
        totals = [sum(s.logprobs) for s in scores[pos : pos + len(q.options)]]
        preds.append(max(range(len(totals)), key=totals.__getitem__))
        pos += len(q.options)
    return preds


def exam_predictions(lm: LoadedModel, prepared: PreparedExam) -> list[int]:
    if prepared.mode == "letter":
        return _letter_predictions(lm, prepared)
    return _cloze_predictions(lm, prepared.questions)


def exam_scores(lm: LoadedModel, prepared: PreparedExam) -> dict:
    """Accuracy overall (mean over questions) and per category."""
    hits = [float(p == q.answer_index) for p, q in zip(exam_predictions(lm, prepared), prepared.questions)]
    by_category: dict[str, list[float]] = {}
    for hit, q in zip(hits, prepared.questions):
        by_category.setdefault(q.category or "-", []).append(hit)
    return {"accuracy": mean(hits), "by_category": {c: mean(v) for c, v in sorted(by_category.items())}}


def exam_accuracy(lm: LoadedModel, questions: Sequence[ExamQuestion], mode: str = "cloze") -> float | None:
    return exam_scores(lm, prepare_exam(lm, questions, mode))["accuracy"]
