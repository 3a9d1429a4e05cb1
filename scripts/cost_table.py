"""What editing costs at a real model's shapes, editbench beside EasyEdit (issue 31).

    python scripts/cost_table.py --shape meta-llama-3-8b --device cuda --dtype bfloat16 --edits 100 --step 100
    python scripts/cost_table.py --shape meta-llama-3-8b --scale tiny --edits 4 --step 2     # CPU, the test's size

Cost needs shapes, not trained weights: the model is built from a shipped config (scripts/shapes/,
architecture fields only) and initialised randomly with a fixed seed. Prompts are the micro world's
edits, tokenised by the world's tokenizer (ids < 512); the model keeps its real vocabulary size, so
its embedding and output layer cost what they cost on the real model (the world tokenizer touches
only their first rows). `--scale tiny` keeps the vocabulary and the architecture but shrinks depth and
width (4 layers, hidden 128), for CPUs and for the test that keeps this script from rotting.

Per editor (its reference YAML for this model, layers mapped by relative depth when scaled, early
stopping off so every run does the same number of optimisation steps) and its EasyEdit twin through
the bridge where EasyEdit ships a YAML for the model (EasyEdit's own early stops are in its code and
stay; a random model's loss never reaches them): seconds per edit at step 1 (one request per call)
and at step `--step` (one call of that many requests), key-statistics seconds for `--stats-samples`
corpus texts (their token count is reported), peak memory, and the evaluation seconds of one
checkpoint over the edits (teacher forcing and generation). Writes cost_table.json and .md.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

SHAPES = Path(__file__).resolve().parent / "shapes"
EASYEDIT_HPARAMS = Path(__file__).resolve().parents[2] / "shared" / "easyedit" / "hparams"
NATIVE = ("ft", "ft_l", "lora", "rsft", "rsft_merge", "rome", "memit", "alphaedit")
TWINS = {"rome": "ROME", "memit": "MEMIT", "alphaedit": "AlphaEdit"}
TINY = {"layers": 4, "hidden": 128, "heads": 4}
# config fields that name one layer or a list of layers, per method
LAYER_KEYS = ("layer", "layers")
NO_EARLY_STOP = {"ft": {"early_stop_loss": 0.0}, "ft_l": {"early_stop_loss": 0.0}, "rsft": {"tau": 1e-12},
                 "rsft_merge": {"tau": 1e-12}, "rome": {"early_stop_loss": 0.0}, "memit": {"early_stop_loss": 0.0},
                 "alphaedit": {"early_stop_loss": 0.0}}


def shape_config(name: str, scale: str | None, vocab: int | None = None) -> tuple[dict, int]:
    """The shipped config (and the original depth), shrunk when `scale` is 'tiny' (and the vocabulary
    cut to `vocab` when given: the test's size, not a cost figure)."""
    raw = json.loads((SHAPES / f"{name}.json").read_text())
    config = {k: v for k, v in raw.items() if not k.startswith("_")}
    if vocab is not None:
        config["vocab_size"] = vocab
    depth = config.get("num_hidden_layers") or config["n_layer"]
    if scale == "tiny":
        if config["model_type"] == "gptj":
            config.update(n_embd=TINY["hidden"], n_layer=TINY["layers"], n_head=TINY["heads"], rotary_dim=16)
        else:
            ratio = config["intermediate_size"] / config["hidden_size"]
            groups = config["num_attention_heads"] // config["num_key_value_heads"]
            config.update(hidden_size=TINY["hidden"], intermediate_size=int(TINY["hidden"] * ratio),
                          num_hidden_layers=TINY["layers"], num_attention_heads=TINY["heads"],
                          num_key_value_heads=max(1, TINY["heads"] // groups))
    elif scale is not None:
        raise SystemExit(f"--scale {scale!r}: only 'tiny' is known")
    return config, depth


def random_model(name: str, scale: str | None, dtype: str, device: str, vocab: int | None = None):
    from transformers import AutoConfig, AutoModelForCausalLM

    from editbench.benchmarks.world_model import world_path
    from editbench.harness.models import DTYPES, LoadedModel, load_model

    config, depth = shape_config(name, scale, vocab)
    torch.manual_seed(0)
    hf_config = AutoConfig.for_model(**config)
    model = AutoModelForCausalLM.from_config(hf_config, dtype=DTYPES[dtype]).to(device).eval()
    # EasyEdit names its statistics files after this (an empty name puts them at the file system's root)
    model.config._name_or_path = name
    for p in model.parameters():
        p.requires_grad_(False)
    world = world_path("micro", log=lambda m: None)
    tokenizer = load_model(str(world)).tokenizer
    return LoadedModel(model=model, tokenizer=tokenizer, name=name, hparams_key=name), depth, world


def scaled_layers(value, depth: int, now: int):
    """A reference layer index (or list) at the same relative depth of a model with `now` layers."""
    def one(layer: int) -> int:
        return min(now - 1, round(layer * now / depth))

    if isinstance(value, (list, tuple)):
        return sorted(dict.fromkeys(one(v) for v in value))
    return one(value)


def native_editor(method: str, lm, depth: int, corpus: Path, samples: int):
    from editbench.harness.hparams import make_editor

    base = make_editor(method, hparams_key=lm.hparams_key, model_type=lm.model.config.model_type)[0].config
    now = lm.model.config.num_hidden_layers if hasattr(lm.model.config, "num_hidden_layers") else lm.model.config.n_layer
    over = dict(NO_EARLY_STOP.get(method, {}))
    for key in LAYER_KEYS:
        if getattr(base, key, None) is not None and now != depth:
            over[key] = scaled_layers(getattr(base, key), depth, now)
    if hasattr(base, "mom2_corpus"):
        over.update(mom2_corpus=str(corpus), mom2_n_samples=samples)
    return make_editor(method, lm, overrides=over)


def twin_editor(method: str, lm, shape: str, depth: int, corpus: Path, samples: int):
    """The EasyEdit twin with EasyEdit's own YAML for this model, or None (and why)."""
    from editbench.core import get_editor_class
    from editbench.harness.hparams import load_yaml, resolve_config

    algo = TWINS.get(method)
    raw = json.loads((SHAPES / f"{shape}.json").read_text()).get("_easyedit_hparams") or {}
    if algo is None:
        return None, "no EasyEdit twin in the bridge"
    if algo not in raw:
        return None, f"EasyEdit ships no {algo} YAML for {shape}"
    path = EASYEDIT_HPARAMS / algo / raw[algo]
    if not path.is_file():
        return None, f"{path} is not here"
    reference = load_yaml(path)
    now = lm.model.config.num_hidden_layers if hasattr(lm.model.config, "num_hidden_layers") else lm.model.config.n_layer
    over = {"layers": scaled_layers(reference["layers"], depth, now), "v_loss_layer": now - 1,
            "mom2_n_samples": samples, "stats_corpus": str(corpus)}
    if "fp16" in reference:  # the model is already in the table's dtype
        over["fp16"] = False
    cls = get_editor_class(f"easyedit:{algo}")
    config, _ = resolve_config(cls.config_class, f"easyedit:{algo}", lm.hparams_key, lm.model.config.model_type,
                               explicit_file=path, overrides=over)
    editor = cls(config)
    editor.check_model(lm)
    return editor, str(path)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device: torch.device) -> float | None:
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # process peak (CPU)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(editor, lm, requests, step: int) -> dict:
    """Key statistics (prepare), then the edits one per call and `step` per call, each call's update
    applied and taken back (every call starts from θ₀: cost, not quality, is measured)."""
    from editbench.harness.interventions import BaseWeights

    device = lm.device
    cache: dict = {}
    _peak_reset(device)
    start = time.perf_counter()
    editor.prepare(lm, cache)
    _sync(device)
    stats_seconds = time.perf_counter() - start
    base = BaseWeights(lm.model)

    def calls(batches) -> float:
        total = 0.0
        for batch in batches:
            editor.reset_state()
            begin = time.perf_counter()
            delta = editor.edit(lm, batch, cache)
            _sync(device)
            total += time.perf_counter() - begin
            base.remember(delta.tensors)
            delta.apply(lm.model)
            base.restore()
        return total

    one = calls([[r] for r in requests])
    many = calls([requests[i:i + step] for i in range(0, len(requests), step)])
    return {"stats_seconds": round(stats_seconds, 3), "seconds_per_edit_step1": round(one / len(requests), 4),
            f"seconds_per_edit_step{step}": round(many / len(requests), 4), "peak_mb": _peak_mb(device)}


def evaluation_seconds(lm, requests) -> float:
    from editbench.harness import metrics
    from editbench.harness.generation import GenerationSpec

    spec = GenerationSpec()
    pre = metrics.locality_top1(lm, requests)
    answers = metrics.locality_answers(lm, requests, spec)
    start = time.perf_counter()
    metrics.edit_scores(lm, requests, pre, generation=spec, locality_pre_answers=answers)
    _sync(lm.device)
    return round(time.perf_counter() - start, 3)


def corpus_tokens(lm, corpus: Path, samples: int) -> int:
    texts = [line for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()][:samples]
    return sum(len(lm.tokenizer(t).input_ids) for t in texts)


def build_table(args) -> dict:
    from editbench.benchmarks.registry import world_benchmark

    torch.set_num_threads(args.threads)
    lm, depth, world = random_model(args.shape, args.scale, args.dtype, args.device, args.vocab)
    requests = world_benchmark(world, args.edits, seed=0).requests
    corpus = world / "corpus.txt"
    rows, skipped = [], []
    methods = [m for m in args.methods.split(",") if m] if args.methods else list(NATIVE)
    for method in methods:
        editor, source = native_editor(method, lm, depth, corpus, args.stats_samples)
        rows.append({"editor": method, "implementation": "editbench", "hparams": source,
                     **measure(editor, lm, requests, args.step)})
        if args.twins:
            twin, why = twin_editor(method, lm, args.shape, depth, corpus, args.stats_samples)
            if twin is None:
                skipped.append(f"easyedit twin of {method}: {why}")
            else:
                rows.append({"editor": f"easyedit:{TWINS[method]}", "implementation": "EasyEdit", "hparams": why,
                             **measure(twin, lm, requests, args.step)})
    return {
        "shape": args.shape, "scale": (args.scale or "full") + (f", vocabulary {args.vocab}" if args.vocab else ""), "dtype": args.dtype, "device": str(lm.device),
        "parameters": sum(p.numel() for p in lm.model.parameters()), "edits": args.edits, "step": args.step,
        "stats_samples": args.stats_samples, "stats_tokens": corpus_tokens(lm, corpus, args.stats_samples),
        "evaluation_seconds_per_checkpoint": evaluation_seconds(lm, requests),
        "rows": rows, "not_run": skipped, "machine": machine(lm.device), "date": time.strftime("%Y-%m-%d"),
    }


def machine(device: torch.device) -> dict:
    from editbench.harness.results import package_versions

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {"cpu": platform.processor() or platform.machine(), "gpu": gpu, "threads": torch.get_num_threads(),
            "packages": package_versions()}


def markdown(table: dict) -> str:
    step = table["step"]
    head = (f"# Editing cost: {table['shape']} ({table['scale']} shapes, {table['parameters']:,} parameters), "
            f"{table['dtype']} on {table['machine']['gpu'] or table['machine']['cpu']}, {table['date']}\n\n"
            f"{table['edits']} edits; step 1 = one request per call, step {step} = {step} requests per call; key "
            f"statistics over {table['stats_samples']} corpus texts ({table['stats_tokens']:,} tokens); evaluation "
            f"of one checkpoint over the {table['edits']} edits (teacher forcing + generation): "
            f"{table['evaluation_seconds_per_checkpoint']} s. torch {table['machine']['packages'].get('torch')}, "
            f"transformers {table['machine']['packages'].get('transformers')}, {table['machine']['threads']} "
            f"thread(s).\n\n")
    lines = [f"| editor | implementation | s/edit (step 1) | s/edit (step {step}) | key statistics s | peak MB |",
             "|---|---|---|---|---|---|"]
    for r in table["rows"]:
        lines.append(f"| {r['editor']} | {r['implementation']} | {r['seconds_per_edit_step1']} | "
                     f"{r[f'seconds_per_edit_step{step}']} | {r['stats_seconds']} | {r['peak_mb']} |")
    ratios = []
    by = {(r["editor"], r["implementation"]): r for r in table["rows"]}
    for native, algo in TWINS.items():
        ours, theirs = by.get((native, "editbench")), by.get((f"easyedit:{algo}", "EasyEdit"))
        if ours and theirs and theirs["seconds_per_edit_step1"]:
            ratios.append(f"- {native}: editbench / EasyEdit seconds per edit = "
                          f"{ours['seconds_per_edit_step1'] / theirs['seconds_per_edit_step1']:.2f} (step 1), "
                          f"{ours[f'seconds_per_edit_step{step}'] / theirs[f'seconds_per_edit_step{step}']:.2f} "
                          f"(step {step})")
    notes = "".join(f"- not run: {line}\n" for line in table["not_run"])
    return head + "\n".join(lines) + "\n\n" + ("\n".join(ratios) + "\n" if ratios else "") + notes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="meta-llama-3-8b", help=f"one of {sorted(p.stem for p in SHAPES.glob('*.json'))}")
    parser.add_argument("--scale", help="tiny: 4 layers, hidden 128, the real vocabulary (CPU, tests)")
    parser.add_argument("--vocab", type=int, help="cut the vocabulary to this size (>= 512, the world "
                        "tokenizer's): for the test that keeps this script working, not for cost figures")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--edits", type=int, default=100)
    parser.add_argument("--step", type=int, default=100, help="requests per call for the batched figure")
    parser.add_argument("--stats-samples", type=int, default=1000, help="corpus texts for key statistics")
    parser.add_argument("--methods", help="comma-separated editors (default: all eight)")
    parser.add_argument("--no-twins", dest="twins", action="store_false", help="editbench's editors only")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/cost"))
    args = parser.parse_args(argv)
    import os

    from editbench.benchmarks.world_model import world_path
    from editbench.harness.cache import cache_root

    world_path("micro", log=lambda m: None)  # the prompts' world, built once in the usual cache
    real = cache_root()
    with tempfile.TemporaryDirectory() as fresh:  # key statistics are timed, never read from an old cache
        (Path(fresh) / "world").symlink_to(real / "world", target_is_directory=True)
        os.environ["EDITBENCH_CACHE"] = fresh
        try:
            table = build_table(args)
        finally:
            os.environ["EDITBENCH_CACHE"] = str(real)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"cost_table-{args.shape}-{args.scale or 'full'}-{args.dtype}"
    (args.out / f"{stem}.json").write_text(json.dumps(table, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(table))
    print(markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
