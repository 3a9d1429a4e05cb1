"""Timing of the editors' hot paths, for before/after comparisons (`make bench` runs the pytest side).

    OMP_NUM_THREADS=1 python scripts/speed.py [deep|mass|all] [--repeat K]

- deep: per-edit seconds of ft, ft_l, rsft, rome and memit on a 12-layer pico Qwen2 model (the
  micro world's tokenizer, random weights) editing layer 9, sequential, one request per call;
- mass: one MEMIT call of 100 requests on the default world (its YAML), from θ₀;
- exam: C-Eval 5-shot letter scoring on a pico model with a long context, full vs shared prefix;
- generation: one checkpoint's edit scoring on the default world (100 edits, every prompt of
  every edit), teacher forcing alone vs teacher forcing + greedy answers, and evaluation batch
  sizes 1 and 64 giving the same answers.
Prints one JSON object; every figure is the minimum over --repeat runs (noise only adds time).
The numbers the editors produce are printed too (sums of the deltas), so two trees can be checked
to compute the same thing.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch


def _deep_model(world_path, context: int = 256):
    from editbench.harness.models import LoadedModel, load_model
    from editbench.testing import pico_model

    base = load_model(str(world_path), hparams_key="world")
    model = pico_model("qwen2", vocab_size=base.model.config.vocab_size, hidden=128, seed=0, intermediate_size=512,
                       num_hidden_layers=12, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=context, tie_word_embeddings=True)
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedModel(model=model, tokenizer=base.tokenizer, name="pico-12", hparams_key="pico-12")


def _editor(method: str, overrides: dict):
    from editbench.harness.hparams import make_editor

    return make_editor(method, overrides=overrides, model_type="qwen2")[0]


def _corpus(world_path) -> dict:
    return {"mom2_corpus": str(world_path / "corpus.txt"), "mom2_n_samples": 400}


def deep(world_path, repeat: int) -> dict:
    from editbench.benchmarks.registry import world_benchmark

    lm = _deep_model(world_path)
    requests = world_benchmark(world_path, 6, seed=0).requests
    plans = {
        "ft": {"layer": 9}, "ft_l": {"layer": 9}, "rsft": {"layer": 9},
        "rome": {"layers": [9], **_corpus(world_path)}, "memit": {"layers": [8, 9], **_corpus(world_path)},
    }
    out = {}
    for method, overrides in plans.items():
        editor = _editor(method, overrides)
        cache: dict = {}
        editor.prepare(lm, cache)
        best, checksum = float("inf"), None
        for _ in range(repeat):
            start = time.perf_counter()
            deltas = [editor.edit(lm, [r], cache) for r in requests]
            best = min(best, (time.perf_counter() - start) / len(requests))
            checksum = sum(float(t.double().sum()) for d in deltas for t in d.tensors.values())
        out[method] = {"seconds_per_edit": round(best, 4), "delta_sum": checksum}
    return out


def mass(world_path, repeat: int) -> dict:
    from editbench.benchmarks.registry import world_benchmark
    from editbench.harness.models import load_model

    lm = load_model(str(world_path), hparams_key="world")
    requests = world_benchmark(world_path, 100, seed=0).requests
    editor = _editor("memit", {})
    cache: dict = {}
    editor.prepare(lm, cache)
    best, checksum = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        delta = editor.edit(lm, requests, cache)
        best = min(best, time.perf_counter() - start)
        checksum = sum(float(t.double().sum()) for t in delta.tensors.values())
    return {"memit_100_seconds": round(best, 3), "delta_sum": checksum}


def exam(world_path, repeat: int) -> dict:
    """C-Eval 5-shot letter scoring (5 questions per subject, ../shared/data/ceval or $EDITBENCH_DATA)
    on a pico model with a 2,048-token context, full passes vs the shared prefix, same answers."""
    import os
    from pathlib import Path

    from editbench.benchmarks.exams import load_exam
    from editbench.harness import metrics

    data = Path(os.environ.get("EDITBENCH_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
    if not (data / "ceval").is_dir():
        return {"skipped": f"no C-Eval folder under {data}"}
    lm = _deep_model(world_path, context=2048)
    questions = load_exam("ceval", data / "ceval", shots=5, limit_per_subject=5, seed=0).questions
    prepared = metrics.prepare_exam(lm, questions, "letter")
    out, answers = {}, {}
    for shared in (False, True):
        import inspect

        if "shared_prefix" not in inspect.signature(metrics._letter_predictions).parameters:
            if shared:
                break
            run = lambda: metrics._letter_predictions(lm, prepared)  # noqa: E731 - the code before the change
        else:
            run = lambda: metrics._letter_predictions(lm, prepared, shared_prefix=shared)  # noqa: E731
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            answers[shared] = run()
            best = min(best, time.perf_counter() - start)
        out["shared_prefix_seconds" if shared else "full_seconds"] = round(best, 3)
    out["questions"] = len(questions)
    out["prompt_tokens_mean"] = round(sum(map(len, prepared.prompt_ids)) / len(prepared.prompt_ids), 1)
    if True in answers:
        out["same_answers"] = answers[True] == answers[False]
    return out


def generation(world_path, repeat: int) -> dict:
    from editbench.benchmarks.registry import world_benchmark
    from editbench.harness import metrics
    from editbench.harness.generation import GenerationSpec
    from editbench.harness.models import load_model

    lm = load_model(str(world_path), hparams_key="world")
    requests = world_benchmark(world_path, 100, seed=0).requests
    spec = GenerationSpec()
    locality_top1 = metrics.locality_top1(lm, requests)
    locality_answers = metrics.locality_answers(lm, requests, spec)

    def scored(with_generation: bool):
        return metrics.edit_scores(lm, requests, locality_top1, generation=spec if with_generation else None,
                                   locality_pre_answers=locality_answers if with_generation else None)

    out, rows = {}, {}
    for key, with_generation in (("teacher_forced_seconds", False), ("with_generation_seconds", True)):
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            rows[key] = scored(with_generation)
            best = min(best, time.perf_counter() - start)
        out[key] = round(best, 3)
    out["ratio"] = round(out["with_generation_seconds"] / out["teacher_forced_seconds"], 2)
    out["questions_generated"] = sum(1 + len(r.rephrase_prompts) + len(r.portability) + len(r.locality)
                                     for r in requests)
    lm.eval_batch_size = 1
    one = metrics.edit_scores(lm, requests, locality_top1, generation=spec, locality_pre_answers=locality_answers)
    out["same_answers_batch_1_and_64"] = [r["generated"] for r in one] == \
        [r["generated"] for r in rows["with_generation_seconds"]]
    out["reliability_gen"] = metrics.mean([r["reliability_gen"] for r in one])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", nargs="?", default="all", choices=("deep", "mass", "exam", "generation", "all"))
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    from editbench.benchmarks.world_model import world_path

    report = {"threads": torch.get_num_threads()}
    if args.what in ("deep", "all"):
        report["deep"] = deep(world_path("micro", log=lambda m: None), args.repeat)
    if args.what in ("exam", "all"):
        report["exam"] = exam(world_path("micro", log=lambda m: None), args.repeat)
    if args.what in ("generation", "all"):
        report["generation"] = generation(world_path("default", log=lambda m: None), args.repeat)
    if args.what in ("mass", "all"):
        report["mass"] = mass(world_path("default", log=lambda m: None), args.repeat)
    json.dump(report, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
