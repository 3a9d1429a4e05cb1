"""The Python API (re-exported by `editbench/__init__.py`): the CLI's building blocks for a notebook.

    import editbench
    lm = editbench.load("world:micro")                     # builds and caches the world on first use
    req = editbench.Request(case_id="1", prompt="Kamiven Dortal lives in the city of",
                            subject="Kamiven Dortal", target_new="Oskerby")
    done = editbench.edit(lm, "rome", req)                 # hparams: the YAML for this model
    done.undo()                                            # the weights exactly as before
    results = editbench.run(lm, ["noedit", "rome"], editbench.world_edits(lm, 10), out="runs/nb")
    results.to_frame()                                     # one row per method and checkpoint (pandas)
    editbench.load_results("runs/nb").to_frame()           # the same from disk (or from the CLI's runs)

Paths may be `str` or `Path`. Nothing here is imported by the harness or the CLI's internals.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch

from editbench.core import ConfigError, EditRequest, Editor, WeightDelta, get_editor_class
from editbench.harness.models import LoadedModel, load_model

Request = EditRequest
WORLD_PREFIX = "world:"


def load(source: str | Path, device: str = "cpu", dtype: str = "float32") -> LoadedModel:
    """A model to edit: 'world:micro' / 'world:default' / 'world:large' (built and cached on first
    use), a world folder, a local model folder or a Hugging Face id. World models get the world's
    YAMLs; others the YAML for their name or architecture (see `get_editor`)."""
    text = str(source)
    if text.startswith(WORLD_PREFIX):
        from editbench.benchmarks.world import world_config
        from editbench.benchmarks.world_model import ensure_world

        path = ensure_world(world_config(text[len(WORLD_PREFIX):] or "default"), log=lambda msg: None)
        return load_model(str(path), device=device, dtype=dtype)
    return load_model(text, device=device, dtype=dtype)  # a world folder gets its world's YAMLs


def get_editor(name: str, model: LoadedModel | None = None, protocol: str = "sequential",
               hparams: str | Path | None = None, **overrides) -> Editor:
    """The editor `name` with its hyper-parameters: `hparams` (a YAML file), else the YAML for this
    model (editbench/hparams/<name>/<model>.yaml: by model name, then architecture; the world YAMLs
    for a world), else the method's defaults; keyword arguments override single keys. With a model,
    the config is checked against it (layers, modules) at once."""
    from editbench.harness.hparams import resolve_config

    cls = get_editor_class(name)
    key = model.hparams_key if model is not None else "world"
    model_type = model.model.config.model_type if model is not None else ""
    config, _ = resolve_config(cls.config_class, name, key, model_type, Path(hparams) if hparams else None,
                               overrides, protocol=protocol)
    editor = cls(config)
    if model is not None:
        editor.check_model(model)
    return editor


@dataclass
class Edit:
    """An applied edit: its weight change, and what `undo` puts back."""

    model: LoadedModel
    delta: WeightDelta
    before: dict[str, torch.Tensor] = field(repr=False)
    undone: bool = False

    @torch.no_grad()
    def undo(self) -> None:
        """Put every weight the edit changed back to its value before, bit for bit."""
        if self.undone:
            raise ConfigError("this edit was already undone")
        params = dict(self.model.model.named_parameters())
        for name, value in self.before.items():
            params[name].copy_(value)
        self.undone = True


def edit(model: LoadedModel, editor: str | Editor, requests: EditRequest | Sequence[EditRequest],
         **overrides) -> Edit:
    """Write `requests` into the model in one editor call (like one step of a run) and return the
    `Edit`; a name gets `get_editor(name, model, **overrides)`. The update is checked (known
    parameters, shapes, finite values) before anything changes."""
    if isinstance(editor, str):
        editor = get_editor(editor, model, **overrides)
    batch = [requests] if isinstance(requests, EditRequest) else list(requests)
    cache: dict = {}
    editor.prepare(model, cache)
    delta = editor.edit(model, batch, cache)
    delta.validate(model.model)
    params = dict(model.model.named_parameters())
    before = {name: params[name].detach().clone() for name in delta.tensors}
    delta.apply(model.model, validated=True)
    return Edit(model=model, delta=delta, before=before)


def world_edits(model: LoadedModel | str, n: int, seed: int = 0, split: str = "edit") -> list[EditRequest]:
    """`n` counterfactual edits of a world ('world:SIZE', a world folder, or a model loaded from one)."""
    from editbench.benchmarks.registry import world_benchmark

    return world_benchmark(_world_folder(model), n, seed, split).requests


def _world_folder(model: LoadedModel | str | Path) -> Path:
    if isinstance(model, LoadedModel):
        folder = Path(model.name)
    elif str(model).startswith(WORLD_PREFIX):
        from editbench.benchmarks.world import world_config
        from editbench.benchmarks.world_model import ensure_world

        folder = ensure_world(world_config(str(model)[len(WORLD_PREFIX):] or "default"), log=lambda msg: None)
    else:
        folder = Path(model)
    if not (folder / "world.json").is_file():
        raise ConfigError(f"{folder} is not a world folder (no world.json): world edits need a world model")
    return folder


class Results:
    """Results of one or more runs (one per method, order or cell), as the CLI writes them."""

    def __init__(self, results: list[dict]) -> None:
        self.results = results

    def __len__(self) -> int:
        return len(self.results)

    def to_frame(self):
        """One row per method and checkpoint: every metric, its interval bounds, the score (pandas)."""
        import pandas as pd

        from editbench.reports import tables

        return pd.DataFrame([_flat(row) for row in tables.all_rows(self.results)])

    def edits_frame(self):
        """One row per method, checkpoint and edit: the per-edit scores at that checkpoint (pandas)."""
        import pandas as pd

        rows = [{"method": r["method"], "order": r.get("order", 0), "T": cp["edits"], **edit}
                for r in self.results for cp in r["checkpoints"] for edit in cp.get("per_edit", [])]
        return pd.DataFrame(rows)


def _flat(row: dict) -> dict:
    """Interval lists become `<metric>_lo` / `<metric>_hi` columns."""
    out = {}
    for key, value in row.items():
        if key.endswith("_ci"):
            metric = key[:-3]
            out[f"{metric}_lo"], out[f"{metric}_hi"] = (value or (None, None))[:2]
        else:
            out[key] = value
    return out


def load_results(run_dir: str | Path) -> Results:
    """Every complete run under `run_dir` (`<method>/results.json`, `<method>/order-K/...`)."""
    from editbench.harness.results import find_results, load_results as read
    from editbench.harness.store import complete_only

    paths = find_results(Path(run_dir))
    results, _, _ = complete_only([read(p) for p in paths], paths)
    return Results(results)


def run(model: LoadedModel, methods: str | Iterable[str], requests: Sequence[EditRequest],
        checkpoints: Sequence[int] | None = None, seed: int = 0, out: str | Path | None = None,
        protocol: str = "sequential", fluency_prompts: Sequence[str] | None = None,
        overwrite: bool = False) -> Results:
    """Each method over the same `requests` with the sequential (or batch) protocol, scored at
    `checkpoints` (default: powers of ten up to N), on the one loaded model (put back to θ₀ after
    each method). On a world model the world's exam is scored too. With `out`, each method is saved
    as the CLI saves it (`<out>/<method>/results.json`, `edits.jsonl`), so `editbench report OUT` works;
    a method folder that already holds results is an error unless `overwrite`."""
    import shutil

    from editbench.benchmarks.registry import FLUENCY_TOKENS, world_exam
    from editbench.harness.protocols import get_protocol
    from editbench.harness.runner import EvalSuite, Runner
    from editbench.harness.store import RunStore

    names = [methods] if isinstance(methods, str) else list(methods)
    requests = list(requests)
    world = (Path(model.name) / "world.json").is_file()
    exam = world_exam(Path(model.name)) if world else None
    prompts = list(fluency_prompts) if fluency_prompts is not None else \
        list(dict.fromkeys(r.subject if world else r.prompt for r in requests))[:8]
    suite = EvalSuite(prompts, FLUENCY_TOKENS, exam.name if exam else "", exam.questions if exam else [])
    results = []
    for name in names:
        editor = get_editor(name, model, protocol=protocol)
        runner = Runner(model, editor, requests, suite, checkpoints, seed, log=lambda msg: None,
                        protocol=get_protocol(protocol))
        store = None
        if out is not None:
            folder = Path(out) / name
            if folder.exists() and any(folder.iterdir()):
                if not overwrite:
                    raise ConfigError(f"{folder} already holds results (pass overwrite=True to replace them)")
                shutil.rmtree(folder)
            store = RunStore(Path(out) / name, meta={"benchmark": {"name": "world" if world else "requests",
                                                                 "source": model.name}})
        try:
            result, _ = runner.run(store)
        finally:
            runner.restore_base()
        results.append(result)
    return Results(results)
