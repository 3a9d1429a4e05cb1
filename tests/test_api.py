"""The Python API, as the README shows it (tests/test_api.py runs the README's example itself)."""
from __future__ import annotations

import re
from pathlib import Path

import torch

import editbench

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(micro_world, tmp_path, monkeypatch):
    block = re.search(r"## Python API\n.*?```python\n(.*?)```", README.read_text(), re.S)
    assert block, "README has no Python API example"
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), scope)  # noqa: S102 - the documented example
    frame = scope["frame"]
    assert set(frame["method"]) == {"noedit", "rome"} and {"reliability", "reliability_lo", "score"} <= set(frame)
    assert (tmp_path / "runs" / "api" / "rome" / "results.json").is_file()


def test_edit_and_undo_are_exact(micro_world):
    lm = editbench.load(Path(micro_world))  # a Path works as well as a str
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    [request] = editbench.world_edits(lm, 1, seed=3)
    done = editbench.edit(lm, "memit", request)
    assert done.delta.tensors and any(not torch.equal(before[k], v) for k, v in lm.model.state_dict().items())
    done.undo()
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())


def test_get_editor_picks_the_models_yaml_and_overrides(micro_world):
    lm = editbench.load(str(micro_world))
    editor = editbench.get_editor("rome", lm, v_lr=0.1)
    assert editor.config.v_lr == 0.1 and editor.config.context_template_source == "eos"  # the world YAML's
    assert lm.hparams_key == "world-micro"  # its own YAMLs first (world-micro.yaml), then the world ones
