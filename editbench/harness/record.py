"""The run record: what `results.json` and `edits.jsonl` hold, key by key (schema version 2).

The runner builds these dicts, the store writes them, reports, tune and the Python API read them;
the JSON is plain (these are `TypedDict`s, not classes), so files written before this module read
the same. A key missing from a `total=False` record is one older files or some runs lack (e.g.
generation metrics under teacher-forced scoring). tests/test_record.py checks that a real run writes
no key that is not declared here.
"""
from __future__ import annotations

from typing import NotRequired, TypedDict


class Scores(TypedDict, total=False):
    """Per-edit means (a checkpoint) or one edit's values (`per_edit`, and edit rows with the
    `immediate_` prefix). Token metrics are teacher-forced; `_gen` ones score the generated answer."""

    reliability: float  # mean probability-normalised token accuracy of the new target on the edit prompt
    reliability_em: float  # every target token the argmax (teacher-forced exact match)
    efficacy: float  # P(new target) > P(old target) on the edit prompt (CounterFact's efficacy score)
    generalization: float  # token accuracy on paraphrases of the edit prompt
    locality: float  # unrelated prompts' top-1 tokens unchanged from the unedited model
    portability: float  # token accuracy on questions that follow from the edit (multi-hop, aliases)
    reliability_gain: float  # reliability minus its value before the edit
    generalization_gain: float
    reliability_gen: float  # the greedy answer to the edit prompt equals the new target (normalised EM)
    generalization_gen: float  # the same on paraphrases
    locality_gen: float  # the unrelated prompts' greedy answers unchanged
    portability_gen: float
    reliability_gen_contains: float  # the new target appears in the greedy answer
    generalization_gen_contains: float
    reliability_gen_gain: float
    generalization_gen_gain: float


class ExamAtCheckpoint(TypedDict):
    exam: NotRequired[str]  # the exam's name ('' when none; absent in older files)
    accuracy: float | None  # now
    accuracy_pre: float | None  # before the first edit
    by_category: dict[str, float]
    by_category_pre: dict[str, float]


class WeightDrift(TypedDict):
    """Collapse signals: each edited matrix against θ₀."""

    max_norm_ratio: float | None  # the largest ‖W_T‖ / ‖W_0‖ over the edited matrices
    max_update_norm: float | None  # the largest ‖W_T − W_0‖
    matrices: dict[str, dict[str, float | None]]  # per parameter name: norm_ratio, update_norm


class PerEdit(Scores, total=False):
    case_id: str  # the edit's id in its benchmark


class CheckpointRow(Scores, total=False):
    """One checkpoint: the scores of every edit made so far (or, under the immediate and independent
    protocols, each edit's scores right after its own call), the model's general state, the cost."""

    edits: int  # T: edits made when scored
    fluency: float | None  # n-gram entropy of generated texts (ROME's)
    fluency_pre: float | None
    perplexity: float | None  # on held-out text never trained on nor edited (a collapse signal)
    perplexity_pre: float | None
    general: ExamAtCheckpoint
    edit_seconds: float  # editing time up to T (excluding scoring)
    eval_seconds: float  # this checkpoint's scoring time
    flops_per_edit: int  # mean FLOPs per edit over the counted calls so far (harness/compute.py; absent: none)
    flops_counted_edits: int  # the edits those counted calls made
    weights: WeightDrift
    per_edit: list[PerEdit]  # what bootstrap intervals and the paired tests resample
    groups: dict[str, float | None]  # locality / portability per named group of pairs (e.g. locality_neighbourhood)
    scored_edits: int  # with eval_sample: how many of the first T edits were scored (per_edit holds them)


class ModelInfo(TypedDict):
    name: str  # what was loaded (path or hub id)
    hparams_key: str  # which YAMLs it gets (world-micro, a model name, an architecture)
    model_type: str
    parameters: int
    fingerprint: str  # sha256 of the unedited weights
    provenance: NotRequired[dict | None]  # a named artifact's origin (e.g. 'dequantized from Q4_1'), else None


class RunIdentity(TypedDict):
    """What makes two runs the same run: a resume must match it exactly, regress compares it."""

    method: str
    config: dict
    protocol: str
    n_edits: int
    checkpoints: list[int]
    seed: int
    fingerprint: str
    requests_sha256: str  # the edits, in order, by content
    guard: dict
    suite_sha256: str  # fluency prompts, exam questions, evaluation mode
    step_size: NotRequired[int]  # a step size set for the protocol
    eval_sample: NotRequired[int]  # retention scored on a sample of this many edits


class PreEdit(TypedDict, total=False):
    fluency: float | None
    perplexity: float | None
    perplexity_texts: int  # how many held-out texts it is measured on
    fluency_tokens: int
    exam: str
    exam_accuracy: float | None
    exam_by_category: dict[str, float]
    exam_mode: str
    exam_shots: int
    seconds: float
    scoring_flops: int  # FLOPs of this pre-edit scoring (every edit, fluency, exam, perplexity), counted on a replay


class RunRecord(TypedDict, total=False):
    """`results.json`: one method (config cell) on one edit order."""

    schema_version: int
    method: str
    config: dict  # the editor's config as run (every field)
    protocol: str  # sequential, batch, independent, immediate
    step_size: int | None  # edits per editor call (the protocol's K, else the method's batch_size; batch: none)
    protocol_label: str  # as reports name it: 'sequential', 'sequential K=100'
    model: ModelInfo
    n_edits: int
    seed: int
    git_sha: str | None
    packages: dict[str, str | None]  # torch, transformers, ... versions (None: not installed)
    machine: dict  # threads, cpu_capability, device, cpu, arch, kernel_env (harness/machine.py)
    created: str
    evaluation: dict  # scoring mode, generation settings, the score's basis
    plan: RunIdentity
    exam_questions: list[str]  # which exam questions were scored (a seeded subset with exam_limit)
    failed_edits: int  # editor calls that raised (their edits scored as unedited)
    diverged_edits: int  # updates the guard judged diverged
    noop_edits: int  # calls of an editor meant to write that changed no weight
    guard: dict  # the update guard's bound and policy
    # the FLOPs per edit a method may spend here (flops_per_edit None: no ceiling), source, set_by
    compute_ceiling: dict
    checkpoints: list[CheckpointRow]
    pre: PreEdit
    memory: dict  # peak memory (cpu_rss_mb, cuda_max_allocated_mb)
    resumed: list[dict]  # each continuation: after which checkpoint, when
    # written by the run layer (session.py) from the plan
    benchmark: dict  # name, world, source, records, skipped_records, limit, shuffle, split, exam_limit
    order: int  # the edit order (0: the benchmark's)
    audit: dict  # command, cwd, device, dtype, threads, data_sha256, already_answered (edits left out)
    hparams: dict | None  # the YAML's source and what its tuning found (floor_passed, floor_em)
    status: str  # running, complete, failed
    error: dict  # a failed run's type, message, traceback tail


class EditRow(TypedDict, total=False):
    """A line of `edits.jsonl`: one edit as its editor call left it. Editors add their own
    diagnostics (e.g. ROME's v_loss, v_norm, delta_norm), kept beside these keys."""

    index: int  # position in the edit order
    batch: int  # the editor call (protocol step) that made it
    status: str  # ok, failed, diverged, no-op
    error: str | None
    case_id: str
    prompt: str
    subject: str
    target_new: str
    target_true: str | None
    prediction_before: str | None  # teacher-forced argmax tokens at the target's positions
    prediction_after: str | None
    generated_before: str | None  # the raw greedy continuation
    generated_after: str | None
    answer_after: str | None  # the generated answer as scored (cut at the sentence end)
    truncated_tokens: int  # tokens cut from the left to fit the context (truncate = left)
    flops: int  # a counted call's FLOPs over its requests (counted calls only)
    # and every Scores key prefixed `immediate_`: this edit scored right after its own call
