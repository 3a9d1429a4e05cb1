"""GPU check: the speed-ups of issue 16 on an accelerator, and the same numbers as the plain paths.

    python scripts/gpu_check.py [--device cuda] [--out DIR]

Needs the default and micro worlds in $EDITBENCH_CACHE (built on CPU: `make world WORLD=default`).
Prints one JSON report (also written to DIR/gpu_check.json):
- MEMIT's z for 100 requests of the default world: one request at a time (the reference loop) vs
  one padded pass (`optimise_targets`), seconds and the largest |z difference|;
- per-edit seconds of FT and ROME on a 12-layer pico model editing layer 9, with the frozen prefix
  off and on, and whether the deltas are equal;
- float32 vs bfloat16 for the batched z (largest difference, relative to |z|).
Without CUDA (or with --device cpu) it runs the same checks on the CPU, smaller, so it always runs.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device):
    _sync(device)
    start = time.perf_counter()
    value = fn()
    _sync(device)
    return value, time.perf_counter() - start


def mass_z(device: str, n: int, dtype: str = "float32") -> dict:
    from editbench.benchmarks.registry import world_benchmark
    from editbench.benchmarks.world_model import world_path
    from editbench.harness.arch import get_module, layer_path
    from editbench.harness.hparams import resolve_config
    from editbench.harness.models import load_model
    from editbench.methods.memit import MEMITConfig
    from editbench.methods.rewrite import context_templates, flat, optimise_target, optimise_targets

    world = world_path("default", log=lambda m: None)
    lm = load_model(str(world), device=device, dtype=dtype, hparams_key="world")
    requests = world_benchmark(world, n, seed=0).requests
    config, _ = resolve_config(MEMITConfig, "memit", "world", "qwen2")
    layer = config.layers[-1]
    block = get_module(lm.model, layer_path(lm.model, layer))
    templates = flat(context_templates(lm, config.context_template_lengths, {}, config.template_seed,
                                       config.context_template_source))
    optimise_targets(lm, block, requests[:2], templates, config.target_spec, layer)  # warm-up (kernels, allocator)
    one, one_s = _timed(lambda: [optimise_target(lm, block, r, templates, config.target_spec) for r in requests], device)
    many, many_s = _timed(lambda: optimise_targets(lm, block, requests, templates, config.target_spec, layer), device)
    diff = max((a.value.float() - b.value.float()).abs().max().item() for a, b in zip(one, many))
    scale = max(a.value.float().abs().max().item() for a in one)
    return {"requests": n, "dtype": dtype, "one_by_one_seconds": round(one_s, 3), "batched_seconds": round(many_s, 3),
            "speedup": round(one_s / many_s, 2), "max_abs_z_diff": diff, "max_abs_z": scale,
            "same_steps": [a.info["v_steps"] for a in one] == [b.info["v_steps"] for b in many]}


def deep_prefix(device: str, edits: int) -> dict:
    import speed
    from editbench.benchmarks.registry import world_benchmark
    from editbench.benchmarks.world_model import world_path
    from editbench.harness.prefix import FrozenPrefix

    world = world_path("micro", log=lambda m: None)
    lm = speed._deep_model(world)
    lm.model.to(device)
    requests = world_benchmark(world, edits, seed=0).requests
    out = {}
    for method, overrides in {"ft": {"layer": 9}, "rome": {"layers": [9], **speed._corpus(world)}}.items():
        editor = speed._editor(method, overrides)
        cache: dict = {}
        editor.prepare(lm, cache)
        editor.edit(lm, requests[:1], cache)  # warm-up
        enter, leave = FrozenPrefix.__enter__, FrozenPrefix.__exit__
        FrozenPrefix.__enter__, FrozenPrefix.__exit__ = (lambda self: self), (lambda self, *exc: None)
        try:
            slow, slow_s = _timed(lambda: [editor.edit(lm, [r], cache).tensors for r in requests], device)
        finally:
            FrozenPrefix.__enter__, FrozenPrefix.__exit__ = enter, leave
        fast, fast_s = _timed(lambda: [editor.edit(lm, [r], cache).tensors for r in requests], device)
        same = all(torch.equal(a[k], b[k]) for a, b in zip(slow, fast) for k in a)
        out[method] = {"full_seconds_per_edit": round(slow_s / edits, 4),
                       "prefix_seconds_per_edit": round(fast_s / edits, 4),
                       "speedup": round(slow_s / fast_s, 2), "bit_identical": same}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    on_gpu = torch.device(args.device).type == "cuda"
    report = {"device": torch.cuda.get_device_name() if on_gpu else "cpu", "torch": torch.__version__}
    report["mass_z"] = mass_z(args.device, 100 if on_gpu else 10)
    report["deep_prefix"] = deep_prefix(args.device, 10 if on_gpu else 3)
    if on_gpu:
        report["mass_z_bf16"] = mass_z(args.device, 100, "bfloat16")
        report["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
