"""Measures a model's compute ceiling by its rule and each method's FLOPs per edit beside it.

The rule (editbench/harness/ceiling.py): the ceiling is the largest FLOPs per edit among the methods'
reference configurations on that model, a reference configuration being the published one a method's
search space is centred on (`SearchSpace.reference_params`: trial 0 of every `editbench tune`), on top of
the model's YAML for the fields the space does not set. Each is counted as a leaderboard counts it:
sequential protocol, one edit per call, `--count-flops` on every call of `--edits` dev edits, one thread.
The shipped YAMLs are counted the same way, so the output says which of them lie over the ceiling.

    python scripts/ceiling.py --world micro [--edits 3] [--write]
    python scripts/ceiling.py --model smollm2-135m --benchmark zsre --data ../shared/data/zsre/zsre_3k.json

`--write` stores the entry in editbench/hparams/ceilings.yaml (under the model's hparams key).
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time

import editbench
from editbench.core import get_editor_class
from editbench.harness.ceiling import CEILING_RULE, ceiling_entry, write_entry
from editbench.harness.results import git_sha
from editbench.tuning_session import tune_methods


def reference_overrides(method: str, n_layers: int) -> tuple[str, ...]:
    """METHOD.KEY=VALUE strings that put `method` at its search space's reference point."""
    space = get_editor_class(method).search_space
    values = space.values_of(space.reference_params(n_layers), n_layers)
    return tuple(f"{method}.{key}={json.dumps(list(v) if isinstance(v, tuple) else v)}" for key, v in values.items())


def flops_per_edit(method: str, overrides: tuple[str, ...], subject: dict, edits: int) -> tuple[float, float]:
    """(FLOPs per edit over every call, seconds) of `edits` sequential dev edits."""
    started = time.perf_counter()
    results = editbench.run(method, split="dev", edits=edits, checkpoints=(edits,), count_flops=edits,
                            overrides=overrides, threads=1, **subject)
    final = results.results[0]["checkpoints"][-1]
    return float(final["flops_per_edit"]), time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="default")
    parser.add_argument("--model", default=None)
    parser.add_argument("--benchmark", default=None)
    parser.add_argument("--data", default=None)
    parser.add_argument("--prompt-format", default=None)
    parser.add_argument("--answer-end", default=None)
    parser.add_argument("--edits", type=int, default=3)
    parser.add_argument("--methods", nargs="*", default=["all"])
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    subject = ({"model": args.model, "benchmark": args.benchmark, "data": args.data} if args.model
               else {"world": args.world})
    subject.update({k: v for k, v in (("prompt_format", args.prompt_format), ("answer_end", args.answer_end)) if v})
    lm = editbench.load(args.model) if args.model else editbench.load(editbench.world_path(args.world))
    n_layers, key = lm.model.config.num_hidden_layers, lm.hparams_key
    del lm
    reference, shipped = {}, {}
    for method in tune_methods(args.methods):
        reference[method], seconds = flops_per_edit(method, reference_overrides(method, n_layers), subject, args.edits)
        shipped[method], shipped_seconds = flops_per_edit(method, (), subject, args.edits)
        print(f"{method:10s} reference {reference[method]:.4g} ({seconds:.1f}s)   shipped {shipped[method]:.4g} "
              f"({shipped_seconds:.1f}s)", flush=True)
    entry = ceiling_entry(reference, shipped, edits=args.edits, date=datetime.date.today().isoformat(),
                          sha=git_sha())
    print(f"{key}: ceiling {entry['flops_per_edit']:.4g} FLOPs per edit, set by {entry['set_by']} ({CEILING_RULE})")
    over = {m: f for m, f in shipped.items() if f > entry["flops_per_edit"]}
    print("shipped YAMLs over it: " + (", ".join(f"{m} ({f:.4g})" for m, f in over.items()) or "none"))
    if args.write:
        write_entry(key, entry)
    return 0


if __name__ == "__main__":
    sys.exit(main())
