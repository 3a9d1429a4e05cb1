"""The runner: N edits handed to an editor step by step as a protocol says, scored at checkpoints.

It never names a method or a protocol: the protocol (harness/protocols.py) lists the editor calls,
whether θ₀ is restored before each, and which end at a checkpoint; the editor keeps its own state.
"""
from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path
from typing import Any, Callable, Sequence, cast

import torch

from editbench.core import ConfigError, EditRequest, EditbenchError, Editor, setting
from editbench.harness import metrics
from editbench.harness.guard import UpdateGuard
from editbench.harness.machine import machine_record, peak_memory_mb, reset_peak_memory
from editbench.harness.interventions import Applied
from editbench.harness.models import LoadedModel
from editbench.harness.results import (
    EDITS_FILE,
    RESULTS_FILE,
    SCHEMA_VERSION,
    atomic_write_json,
    atomic_write_jsonl,
    git_sha,
    package_versions,
)
from editbench.harness.compute import NO_METER, FlopMeter, count_call
from editbench.harness.protocols import Protocol, Sequential, resolve_checkpoints
from editbench.harness.record import CheckpointRow, RunIdentity, RunRecord
from editbench.harness.store import NullStore, Snapshot, set_rng_states
from editbench.harness.suite import EvalSuite, requests_sha256, suite_sha256
from editbench.harness.scoring import generate_texts







def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)








class Runner:
    def __init__(
        self,
        lm: LoadedModel,
        editor: Editor,
        requests: Sequence[EditRequest],
        suite: EvalSuite,
        checkpoints: Sequence[int] | None = None,
        seed: int = 0,
        log: Callable[[str], None] = print,
        protocol: Protocol | None = None,
        label: str | None = None,
        progress: Callable[[int, int], Any] | None = None,
        guard: UpdateGuard | None = None,
        on_checkpoint: Callable[[RunRecord, CheckpointRow], None] | None = None,
        eval_sample: int | None = None,
        flops: FlopMeter | None = None,
    ) -> None:
        self.lm = lm
        self.editor = editor
        self.protocol = protocol or Sequential()
        self.requests = list(requests)
        self.suite = suite
        self.checkpoints = resolve_checkpoints(checkpoints, len(self.requests))
        self.seed = seed
        self.log = log
        self.guard = guard or UpdateGuard()
        self.label = label or editor.name  # names the run in log lines (method, sweep cell, order)
        # progress(total edits, edits already done) -> an object with update(n) and close(), e.g. tqdm
        self.progress = progress or (lambda total, done: _NoBar())
        # on_checkpoint(results so far, checkpoint row), after each checkpoint is saved; what it raises
        # ends the run (a tuning trial that its pruner stops)
        self.on_checkpoint = on_checkpoint or (lambda results, row: None)
        # retention scored on a seeded sample of this many earlier edits at every checkpoint but the
        # last (which scores all): the evaluation cost stays flat in T on long streams
        if eval_sample is not None and eval_sample < 1:
            raise ConfigError(f"{setting('eval_sample')} must be >= 1, got {eval_sample}")
        self.eval_sample = eval_sample
        # which editor calls are replayed to count their FLOPs (harness/compute.py); none by default
        self.flops = flops or NO_METER
        self._counted_steps: set[int] = set()
        # Caches belong to the run (key statistics, context templates), never to a module.
        self.cache: dict = {}
        # what differs from θ₀ (touched parameters, installed patches): the batch protocol's resets,
        # `restore_base`, checkpoints and resume
        self.base = Applied(lm.model, lm)
        self._prepared_exam: metrics.PreparedExam | None = None

    def _fluency(self) -> float | None:
        if not self.suite.fluency_prompts:
            return None
        texts = generate_texts(self.lm, self.suite.fluency_prompts, self.suite.fluency_tokens, seed=self.seed)
        return metrics.fluency(texts)

    def _exam(self) -> dict:
        if self._prepared_exam is None:
            return {"accuracy": None, "by_category": {}}
        return metrics.exam_scores(self.lm, self._prepared_exam)

    def _pre_scores(self) -> dict:
        """The unedited model's scores: its own answers on every edit (for the gains: free credit is not
        an edit), its locality predictions, fluency and exam."""
        t0 = time.perf_counter()
        locality = metrics.locality_top1(self.lm, self.requests)
        spec = self.suite.generation
        rows = metrics.edit_scores(self.lm, self.requests, None, generation=spec)
        answers = metrics.locality_answers(self.lm, self.requests, spec) if spec is not None else None
        fluency, exam = self._fluency(), self._exam()
        return {"locality": locality, "locality_answers": answers, "edits": rows, "fluency": fluency, "exam": exam,
                "perplexity": self._perplexity(), "seconds": round(time.perf_counter() - t0, 3)}

    def _perplexity(self) -> float | None:
        return metrics.perplexity(self.lm, self.suite.perplexity_texts) if self.suite.perplexity_texts else None

    def _scores(self, indices: Sequence[int], pre: dict) -> list[dict]:
        """Per-edit scores of these edits on the model as it is now, against their pre-edit values."""
        answers = pre.get("locality_answers")
        return metrics.edit_scores(self.lm, [self.requests[i] for i in indices], [pre["locality"][i] for i in indices],
                                   [pre["edits"][i] for i in indices], generation=self.suite.generation,
                                   locality_pre_answers=None if answers is None else [answers[i] for i in indices])

    def _sample(self, done: int) -> list[int] | None:
        """The edits a retention checkpoint scores: a seeded sample of `eval_sample` of the first
        `done` (sorted; seeded by the run's seed and T, so a resumed run draws the same), or None for
        all of them (no sample set, not more edits than it, or the final checkpoint)."""
        if self.eval_sample is None or done <= self.eval_sample or done == self.checkpoints[-1]:
            return None
        return sorted(random.Random(f"editbench-eval-sample-{self.seed}-{done}").sample(range(done), self.eval_sample))

    def _header(self, fingerprint: str) -> RunRecord:
        config = dataclasses.asdict(self.editor.config)
        return {
            "schema_version": SCHEMA_VERSION,
            "method": self.editor.name,
            "config": config,
            "protocol": self.protocol.name,
            # edits per editor call, as reports name the protocol (e.g. 'sequential K=100')
            "step_size": self.protocol.call_size(self.editor.config.batch_size) if self.protocol.takes_step_size
            else None,
            "protocol_label": self.protocol.label(self.editor.config.batch_size),
            "model": {"name": self.lm.name, "hparams_key": self.lm.hparams_key,
                      "model_type": self.lm.model.config.model_type,
                      "parameters": sum(p.numel() for p in self.lm.model.parameters()),
                      "fingerprint": fingerprint, "provenance": self.lm.provenance},
            "n_edits": len(self.requests),
            "seed": self.seed,
            "git_sha": git_sha(),
            "packages": package_versions(),
            "machine": machine_record(str(self.lm.device)),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "evaluation": self.suite.evaluation(),
            "plan": self._identity(config, fingerprint),
            # which questions the exam used (with exam_limit, a seeded subset per subject)
            "exam_questions": [q.qid for q in self.suite.exam],
            "failed_edits": 0,
            "diverged_edits": 0,
            "noop_edits": 0,  # calls of an editor meant to write that changed no weight
            "guard": dataclasses.asdict(self.guard),
            "compute_ceiling": self.flops.ceiling.record(),
            "checkpoints": [],
        }

    def _identity(self, config: dict, fingerprint: str) -> RunIdentity:
        """What makes two runs the same run: a resume must match it exactly."""
        identity: RunIdentity = {
            "method": self.editor.name, "config": config, "protocol": self.protocol.name,
            "n_edits": len(self.requests), "checkpoints": list(self.checkpoints), "seed": self.seed,
            "fingerprint": fingerprint, "requests_sha256": requests_sha256(self.requests),
            "guard": dataclasses.asdict(self.guard), "suite_sha256": suite_sha256(self.suite)}
        if self.protocol.step_size is not None:  # set for the protocol (the method's batch_size is in config)
            identity["step_size"] = self.protocol.step_size
        if self.eval_sample is not None:
            identity["eval_sample"] = self.eval_sample
        return identity

    def run(self, store=None) -> tuple[RunRecord, list[dict]]:
        """Every step of the protocol; with a store (harness/store.py), each checkpoint is saved as it
        is scored and an interrupted run continues from its last checkpoint (none: in memory only).
        Returns the record and the edit rows (record.EditRow's keys plus each editor's diagnostics)."""
        store = store if store is not None else NullStore()
        seed_everything(self.seed)
        peak_reset = reset_peak_memory(self.lm.device)
        fingerprint = self.lm.fingerprint()  # of the unedited weights
        self.editor.reset_state()
        results = self._header(fingerprint)
        point = store.resume_point(results)
        if point is not None and point.complete:
            self.log(f"{self.label}: already complete, kept")
            return point.recorded, point.edit_rows
        pre = self._begin(results, store, point)
        steps = self.protocol.steps(self.checkpoints, self.editor.config.batch_size)
        self.editor.prepare(self.lm, self.cache)  # on θ₀, before any edit (and before a resume's weights)
        done = self._resumed(results, point)
        self._counted_steps = self.flops.counted_steps(len(steps))
        bar = self.progress(sum(len(s.indices) for s in steps), sum(len(s.indices) for s in steps[:done.next_step]))
        try:
            for step_no in range(done.next_step, len(steps)):
                step = steps[step_no]
                immediate = self._take_step(step, step_no, pre, done)
                bar.update(len(step.indices))
                if step.checkpoint is not None:
                    self._keep_checkpoint(step, step_no, pre, done, immediate, results, store, peak_reset)
        finally:
            bar.close()
        store.finish(results, done.edit_rows)
        return results, done.edit_rows

    def _begin(self, results: RunRecord, store, point) -> dict:
        """The pre-edit scores (a resumed run's saved ones), recorded and logged before the first step."""
        if self.suite.exam:  # tokenised once; scored pre-edit and at every checkpoint
            self._prepared_exam = metrics.prepare_exam(self.lm, self.suite.exam, self.suite.exam_mode)
        pre = point.pre if point is not None else self._pre_scores()
        if point is None and self.flops.scoring:  # scoring's cost, from a replay of the pre-edit scoring
            pre["scoring_flops"] = count_call(self._pre_scores)
        results["pre"] = {"fluency": pre["fluency"], "perplexity": pre.get("perplexity"),
                          "perplexity_texts": len(self.suite.perplexity_texts), "fluency_tokens": self.suite.fluency_tokens,
                          "exam": self.suite.exam_name, "exam_accuracy": pre["exam"]["accuracy"],
                          "exam_by_category": pre["exam"]["by_category"], "exam_mode": self.suite.exam_mode,
                          "exam_shots": self.suite.exam_shots, "seconds": pre["seconds"],
                          **({"scoring_flops": pre["scoring_flops"]} if "scoring_flops" in pre else {})}
        # a resumed run's results hold its saved checkpoints from their first write: killed again before
        # the next one (or between its last checkpoint and its final write), it resumes again
        if point is not None:
            _tally(results, list(point.checkpoint_rows), list(point.edit_rows))
        store.start(results, pre, point)
        self.log(f"{self.label} pre-edit: fluency={_fmt(pre['fluency'])} exam={_fmt(pre['exam']['accuracy'])} "
                 f"({pre['seconds']:.1f}s)")
        return pre

    def _resumed(self, results: RunRecord, point) -> _Progress:
        """Where the steps start: the first, or after a resumed run's last saved checkpoint (its weights,
        editor state and rows put back)."""
        if point is None:
            return _Progress()
        self._restore(self.base, point)
        done = _Progress(list(point.edit_rows), list(point.checkpoint_rows), point.edit_seconds, point.next_step)
        self.log(f"{self.label}: resumed after checkpoint T={done.checkpoint_rows[-1]['edits']}")
        return done

    def _take_step(self, step, step_no: int, pre: dict, done: _Progress) -> list:
        """One protocol step (a reset to θ₀ first where the protocol says); its immediate scores."""
        if step.reset:  # back to θ₀, and the editor forgets what it kept
            self.base.restore()
            self.editor.reset_state()
        if step.restart_clock:
            done.edit_seconds = 0.0
        seconds, immediate = self._step(step, step_no, pre, self.base, done.edit_rows)
        done.edit_seconds += seconds
        return immediate

    def _keep_checkpoint(self, step, step_no: int, pre: dict, done: _Progress, immediate: list,
                         results: RunRecord, store, peak_reset: bool) -> None:
        """Score checkpoint T, add it to the results, save it (with the state to resume from), log it."""
        if step.scores == "immediate":  # each edit as scored right after its own call
            scored = immediate_rows(done.edit_rows, range(step.checkpoint))
        elif step.indices == range(0, step.checkpoint):  # one call over the first T edits: scored
            scored = immediate
        else:
            scored = None
        row, line = self._checkpoint(step.checkpoint, pre, done.edit_seconds, scored, done.edit_rows)
        done.checkpoint_rows.append(row)
        _tally(results, done.checkpoint_rows, done.edit_rows)
        results["memory"] = peak_memory_mb(self.lm.device, since_reset=peak_reset)
        # saved before the line is printed: a line seen is a checkpoint kept
        snapshot = self._snapshot(step_no + 1, done.edit_seconds, self.base) if store.saves_state else None
        store.checkpoint(results, done.edit_rows, snapshot, self.lm, step.checkpoint)
        self.log(line)
        self.on_checkpoint(results, row)

    def restore_base(self) -> None:
        """Put every parameter this run's updates touched back to θ₀, bit for bit, so the next run can
        use the same loaded model (one load per command instead of one per method)."""
        self.base.restore()

    def _step(self, step, step_no: int, pre: dict, base: Applied, edit_rows: list[dict]) -> tuple[float, list]:
        """One editor call: edit, validate, apply, and score its requests at once. Returns its seconds
        and those scores."""
        idx = step.indices
        batch = [self.requests[i] for i in idx]
        flops = self._count_flops(batch) if step_no in self._counted_steps else None
        t_edit = time.perf_counter()
        error, status = None, "ok"
        try:
            delta = self.editor.edit(self.lm, batch, self.cache)
            delta.validate(self.lm.model)
            diverged = self.guard.verdict(delta, self.lm.model)
            if diverged:
                error, status = f"diverged: {diverged}", "diverged"
                self.log(f"{self.label} edit step {step_no} diverged ({self.guard.policy}): {diverged}")
            if not diverged or self.guard.policy == "apply":
                delta.commit(base, self.lm.model)
            if status == "ok" and self.editor.writes_weights and not delta.changes_model():
                error, status = "no-op: the editor changed nothing", "no-op"
                self.log(f"{self.label} edit step {step_no} changed nothing (no-op)")
        except EditbenchError as exc:
            error, delta, status = str(exc), None, "failed"
            self.log(f"{self.label} edit step {step_no} failed: {error}")
        seconds = time.perf_counter() - t_edit
        immediate = self._scores(idx, pre)
        for j, row in enumerate(immediate):
            info = delta.info[j] if delta is not None and j < len(delta.info) else {}
            request, before = batch[j], pre["edits"][idx[j]]
            edit_rows.append(
                {"index": idx[j], "batch": step_no, "status": status, "error": error,
                 **{f"{IMMEDIATE}{k}": row.get(k) for k in (*metrics.edit_metrics(), *metrics.group_metrics([row]))},
                 "case_id": row["case_id"],
                 # what the edit asked and what the model said at the target's positions (teacher forced)
                 # and on its own (generated, raw), before and after
                 "prompt": request.prompt, "subject": request.subject, "target_new": request.target_new,
                 "target_true": request.target_true, "prediction_before": before.get("prediction"),
                 "prediction_after": row["prediction"], "generated_before": before.get("generated"),
                 "generated_after": row.get("generated"), "answer_after": row.get("answer"), **info,
                 **({"truncated_tokens": batch[j].truncated_tokens} if batch[j].truncated_tokens else {}),
                 # a context editor's drill-down: what was put before each of this edit's questions
                 **({"retrieved": row["retrieved"]} if "retrieved" in row else {}),
                 # the call's counted FLOPs, shared by its requests (counted calls only)
                 **({"flops": round(flops / len(batch))} if flops is not None else {})}
            )
        return seconds, immediate

    def _count_flops(self, batch: list[EditRequest]) -> int | None:
        """The FLOPs of this call, from a replay (harness/compute.py); None when the replay fails (the
        real call then fails or succeeds on its own)."""
        try:
            flops = self.flops.count(self.editor, self.lm, batch, self.cache)
        except Exception as exc:  # noqa: BLE001 - counting never decides a run
            self.log(f"{self.label}: FLOPs not counted ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0]})")
            return None
        self.flops.check(flops, len(batch), self.label)  # a tune's trial over the ceiling stops here
        return flops

    def _snapshot(self, next_step: int, edit_seconds: float, base: Applied) -> Snapshot:
        return Snapshot(next_step=next_step, edit_seconds=edit_seconds, weights=base.weights.current(),
                        editor_state=self.editor.state_dict(), patches=base.saved())

    @torch.no_grad()
    def _restore(self, base: Applied, point) -> None:
        """Put the saved edited weights, module patches, editor state and RNG states back (θ₀ is
        remembered first)."""
        params = dict(self.lm.model.named_parameters())
        unknown = [n for n in point.weights if n not in params]
        if unknown:
            raise ConfigError(f"saved state names parameters this model lacks: {unknown[:3]}")
        base.remember(point.weights)
        for name, value in point.weights.items():
            params[name].copy_(value.to(device=params[name].device, dtype=params[name].dtype))
        base.load([{**p, "tensors": {k: v.to(self.lm.device) for k, v in p["tensors"].items()}}
                   for p in point.patches])
        self.editor.load_state_dict({k: v.to(self.lm.device) for k, v in point.editor_state.items()})
        set_rng_states(point.rng["plain"], point.rng["tensors"])

    def _checkpoint(self, done, pre, edit_seconds, rows=None, edit_rows=()) -> tuple[CheckpointRow, str]:
        t0 = time.perf_counter()
        sampled = None
        if rows is None:
            sampled = self._sample(done)
            rows = self._scores(sampled or range(done), pre)
        scores = metrics.aggregate(rows, [k for k in metrics.edit_metrics() if any(k in r for r in rows)])
        groups = metrics.group_metrics(rows)
        fluency_now, exam_now, perplexity_now = self._fluency(), self._exam(), self._perplexity()
        eval_seconds = time.perf_counter() - t0
        # the metric keys come from the registry (record.Scores declares each): a dict, typed after
        row = cast(CheckpointRow, {
            "edits": done,
            **scores,
            "fluency": fluency_now,
            "fluency_pre": pre["fluency"],
            "perplexity": perplexity_now,
            "perplexity_pre": pre.get("perplexity"),
            "general": {"exam": self.suite.exam_name, "accuracy": exam_now["accuracy"],
                        "accuracy_pre": pre["exam"]["accuracy"], "by_category": exam_now["by_category"],
                        "by_category_pre": pre["exam"]["by_category"]},
            "edit_seconds": round(edit_seconds, 3),
            "eval_seconds": round(eval_seconds, 3),
            **_flops_summary(edit_rows),
            # collapse signals: each edited matrix's norm against θ₀'s, and its distance from θ₀
            "weights": _drift_summary(self.base.weights.drift()),
            # Per-edit retention scores let reports bootstrap confidence intervals over edits.
            "per_edit": [{"case_id": r["case_id"], **{k: r[k] for k in (*metrics.edit_metrics(), *groups) if k in r}}
                         for r in rows],
        })
        if groups:  # locality and portability per named group of pairs (e.g. neighbourhood, two_hop)
            row["groups"] = metrics.aggregate(rows, groups)
        if sampled is not None:  # retention of a seeded sample of the first T edits (intervals widen)
            row["scored_edits"] = len(sampled)
        line = (
            f"{self.label} T={done}: " + " ".join(f"{k}={_fmt(v)}" for k, v in scores.items()
                                                  if not k.endswith(("_gain", "_contains")))
            + f" fluency={_fmt(fluency_now)} exam={_fmt(exam_now['accuracy'])} edit_s={edit_seconds:.1f} "
            f"eval_s={eval_seconds:.1f}"
        )
        return row, line


def _flops_summary(edit_rows: Sequence[dict]) -> dict:
    """FLOPs per edit so far: the mean over the edits of the counted calls, and how many were counted."""
    counted = [r["flops"] for r in edit_rows if r.get("flops") is not None]
    if not counted:
        return {}
    return {"flops_per_edit": round(sum(counted) / len(counted)), "flops_counted_edits": len(counted)}


def _drift_summary(matrices: dict) -> dict:
    """The largest norm ratio and update norm over the edited matrices, and each matrix's."""
    ratios = [m["norm_ratio"] for m in matrices.values() if m["norm_ratio"] is not None]
    updates = [m["update_norm"] for m in matrices.values() if m["update_norm"] is not None]
    return {"max_norm_ratio": max(ratios, default=None), "max_update_norm": max(updates, default=None),
            "matrices": matrices}


IMMEDIATE = "immediate_"  # edit rows hold each edit's scores right after its own call under this prefix


def immediate_rows(edit_rows: Sequence[dict], indices: Sequence[int]) -> list[dict]:
    """Per-edit score rows of these edits as scored right after their own call (the latest call that
    got each, which is the only one outside the batch protocol)."""
    latest = {row["index"]: row for row in edit_rows}
    return [{"case_id": latest[i]["case_id"],
             **{k[len(IMMEDIATE):]: v for k, v in latest[i].items() if k.startswith(IMMEDIATE)}} for i in indices]


@dataclasses.dataclass
class _Progress:
    """How far a run has got: its edit rows, scored checkpoints, editing seconds and next step."""

    edit_rows: list[dict] = dataclasses.field(default_factory=list)  # record.EditRow + editor diagnostics
    checkpoint_rows: list[CheckpointRow] = dataclasses.field(default_factory=list)
    edit_seconds: float = 0.0
    next_step: int = 0


def _tally(results: RunRecord, checkpoint_rows: list[CheckpointRow], edit_rows: list[dict]) -> None:
    """The checkpoints scored so far and the count of each kind of unsuccessful editor call."""
    results["checkpoints"] = checkpoint_rows
    results["failed_edits"] = sum(r["status"] == "failed" for r in edit_rows)
    results["diverged_edits"] = sum(r["status"] == "diverged" for r in edit_rows)
    results["noop_edits"] = sum(r["status"] == "no-op" for r in edit_rows)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass




def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def write_run(out_dir: Path, results: dict, edit_rows: list[dict]) -> Path:
    out_dir = Path(out_dir)
    atomic_write_jsonl(out_dir / EDITS_FILE, edit_rows)
    atomic_write_json(out_dir / RESULTS_FILE, results)
    return out_dir / RESULTS_FILE


