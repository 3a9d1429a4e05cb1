"""The Python API (re-exported by `editbench/__init__.py`): the CLI's building blocks for a notebook.

    import editbench
    lm = editbench.load("world:micro")                     # builds and caches the world on first use
    req = editbench.Request(case_id="1", prompt="Kamiven Dortal lives in the city of",
                            subject="Kamiven Dortal", target_new="Oskerby")
    done = editbench.edit(lm, "rome", req)                 # hparams: the YAML for this model
    done.undo()                                            # the weights exactly as before
    results = editbench.run(["noedit", "rome"], world="micro", edits=10, out="runs/nb")  # as the CLI
    results.to_frame()                                     # one row per method and checkpoint (pandas)
    editbench.load_results("runs/nb").to_frame()           # the same from disk (or from the CLI's runs)

Paths may be `str` or `Path`. Nothing here is imported by the harness or the CLI's internals.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from editbench.core import ConfigError, EditbenchError, EditRequest, Editor, Intervention
from editbench.benchmarks.world_model import world_path  # part of the API
from editbench.core import WeightDelta  # noqa: F401 - part of the API (an Edit's delta before interventions)
from editbench.harness.interventions import Applied
from editbench.harness.models import LoadedModel, load_model
from editbench.plan import RunPlan  # noqa: F401 - part of the API
from editbench.reports.frames import Results, load_results  # noqa: F401 - part of the API

Request = EditRequest
WORLD_PREFIX = "world:"


def load(source: str | Path, device: str = "cpu", dtype: str = "float32") -> LoadedModel:
    """A model to edit: 'world:micro' / 'world:default' / 'world:large' (shipped with the package,
    checked by sha256), a named real model ('smollm2-135m': converted once from its package's GGUF), a
    world folder, a local model folder or a Hugging Face id. World models get the world's YAMLs; others
    the YAML for their name or architecture (see `get_editor`)."""
    text = str(source)
    if text.startswith(WORLD_PREFIX):
        path = world_path(text[len(WORLD_PREFIX):] or "default", log=lambda msg: None)
        return load_model(str(path), device=device, dtype=dtype)
    return load_model(text, device=device, dtype=dtype)  # a world folder gets its world's YAMLs


def get_editor(name: str, model: LoadedModel | None = None, protocol: str = "sequential",
               hparams: str | Path | None = None, **overrides) -> Editor:
    """The editor `name` with its hyper-parameters: `hparams` (a YAML file), else the YAML for this
    model (editbench/hparams/<name>/<model>.yaml: by model name, then architecture; the world YAMLs
    for a world), else the method's defaults; keyword arguments override single keys. With a model,
    the config is checked against it (layers, modules) at once."""
    from editbench.harness.hparams import make_editor

    return make_editor(name, model, hparams, overrides, protocol)[0]


@dataclass
class Edit:
    """An applied edit: its intervention (a weight delta or a module patch), and what `undo` puts back."""

    model: LoadedModel
    delta: Intervention
    applied: Applied = field(repr=False)
    undone: bool = False

    def undo(self) -> None:
        """Put the model back as it was before the edit, bit for bit (weights copied back, a patch's
        hook removed)."""
        if self.undone:
            raise ConfigError("this edit was already undone")
        self.applied.restore()
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
    applied = Applied(model.model, model)
    delta.commit(applied, model.model)
    return Edit(model=model, delta=delta, applied=applied)


def world_edits(model: LoadedModel | str, n: int, seed: int = 0, split: str = "edit") -> list[EditRequest]:
    """`n` counterfactual edits of a world ('world:SIZE', a world folder, or a model loaded from one)."""
    from editbench.benchmarks.registry import world_benchmark

    return world_benchmark(_world_folder(model), n, seed, split).requests


def _world_folder(model: LoadedModel | str | Path) -> Path:
    if isinstance(model, LoadedModel):
        folder = Path(model.name)
    elif str(model).startswith(WORLD_PREFIX):
        folder = world_path(str(model)[len(WORLD_PREFIX):] or "default", log=lambda msg: None)
    else:
        folder = Path(model)
    if not (folder / "world.json").is_file():
        raise ConfigError(f"{folder} is not a world folder (no world.json): world edits need a world model")
    return folder


def run(methods: str | Iterable[str], model: LoadedModel | str | None = None,
        requests: Sequence[EditRequest] | None = None, **settings) -> Results:
    """Each method over the same edits, exactly as `editbench run` (one run layer: plan.py,
    session.py). Keyword arguments are the run plan's fields, e.g. `world="micro", edits=20,
    checkpoints=[1, 20], protocol="batch", out="runs/nb", jobs=2, resume=True` (docs/python-api.md
    lists them); without `out` nothing is written. `model`: a loaded model (shared, put back to θ₀
    after each method) or a name; `requests`: your own edits instead of the plan's benchmark."""
    from editbench.session import RunSession, apply_process_settings, process_state_kept

    given = model if isinstance(model, LoadedModel) else None
    if model is not None:
        settings["model"] = given.name if given is not None else str(model)
    settings.setdefault("quiet", True)
    call = ", ".join([repr(methods), *(f"{k}={v!r}" for k, v in settings.items())])
    plan = RunPlan(methods=(methods,) if isinstance(methods, str) else tuple(methods), command=f"editbench.run({call})",
                   **settings)
    with process_state_kept():
        apply_process_settings(plan)
        outcome = RunSession(plan, model=given, requests=requests).run()
    if outcome.failures:
        raise EditbenchError(f"{len(outcome.failures)} run(s) failed: " + "; ".join(outcome.failures))
    return Results(outcome.results)
