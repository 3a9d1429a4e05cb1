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


def test_the_cli_and_the_api_run_one_plan_alike(micro_world, tmp_path):
    """`editbench run ...` and `editbench.run(...)` with the same settings go through one run layer:
    the results files are identical but for the clock, the process and the audit's command line (the
    audit otherwise agrees: data hashes, device, threads)."""
    import json

    from conftest import strip_volatile
    from editbench.cli import main

    clock = {"created", "edit_seconds", "eval_seconds", "seconds", "memory", "command"}
    settings = dict(world="micro", edits=3, checkpoints=[1, 3], protocol="sequential", orders=2, seed=1,
                    overrides=["ft.steps=3"])
    assert main(["run", "--method", "ft", "--method", "noedit", "--world", "micro", "--edits", "3",
                 "--checkpoints", "1,3", "--orders", "2", "--seed", "1", "--set", "ft.steps=3",
                 "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    results = editbench.run(["ft", "noedit"], out=tmp_path / "api", **settings)
    files = sorted(p.relative_to(tmp_path / "cli") for p in (tmp_path / "cli").rglob("results.json"))
    assert len(files) == 4 and len(results) == 4
    for name in files:
        cli_run, api_run = (json.loads((tmp_path / side / name).read_text()) for side in ("cli", "api"))
        assert cli_run["audit"]["command"].startswith("editbench run --method ft")
        assert api_run["audit"]["command"].startswith("editbench.run(['ft', 'noedit']")
        assert strip_volatile(cli_run, clock) == strip_volatile(api_run, clock)
    # in memory (no out) the same record as load_results reads from disk
    from editbench.harness.results import load_results

    memory = editbench.run("noedit", **{**settings, "orders": 1, "overrides": []})
    disk = load_results(tmp_path / "api" / "noedit" / "order-0" / "results.json")
    assert strip_volatile(memory.results[0], clock | {"order"}) == strip_volatile(disk, clock | {"order"})


def test_run_leaves_the_process_settings_as_it_found_them(micro_world):
    """A notebook keeps its own thread count, root log handlers, warning filters and editbench logger."""
    import logging
    import warnings

    import torch

    import editbench

    # a first run imports what it needs: libraries add warning filters when first imported, which
    # is theirs to do; what is held here is what a run sets
    editbench.run(["noedit"], world="micro", edits=2, checkpoints=[2])
    torch.set_num_threads(2)
    root_handlers = list(logging.getLogger().handlers)
    library = logging.getLogger("editbench")
    library_handlers, library_level = list(library.handlers), library.level
    filters = list(warnings.filters)
    try:
        editbench.run(["noedit"], world="micro", edits=2, checkpoints=[2], threads=1, quiet=False)
        assert torch.get_num_threads() == 2
        assert logging.getLogger().handlers == root_handlers
        assert (library.handlers, library.level) == (library_handlers, library_level)
        assert warnings.filters == filters
    finally:
        torch.set_num_threads(1)
